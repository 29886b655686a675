/* Result lines: building them and appending them to results.ndjson. */
#include "results.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json_out.h"

int results_open(results_writer *w, const output_dir *dir, const char *name, enroll_error *err)
{
    memset(w, 0, sizeof *w);
    int fd = output_open_private(dir->fd, dir->path, name, 0, true, HSE_WRITE_FAILED, err);
    if (fd < 0)
        return -1;
    if ((w->file = fdopen(fd, "w")) == NULL) {
        enroll_error_set(err, HSE_WRITE_FAILED, NULL, "cannot create %s/%s: %s", dir->path, name,
                         strerror(errno));
        close(fd);
        return -1;
    }
    pthread_mutex_init(&w->lock, NULL);
    return 0;
}

int results_write(results_writer *w, json_t *line)
{
    char *text = json_out_compact(line); /* json_dumps(line, JSON_COMPACT), faster */
    if (text == NULL)
        return -1;
    const char *status = json_string_value(json_object_get(line, "Status"));
    pthread_mutex_lock(&w->lock);
    int rc =
        (fputs(text, w->file) >= 0 && fputc('\n', w->file) != EOF && fflush(w->file) == 0) ? 0 : -1;
    if (status != NULL && strcmp(status, "issued") == 0)
        w->issued++;
    else if (status != NULL && (strcmp(status, "failed") == 0 || strcmp(status, "invalid") == 0))
        w->failed++;
    else
        w->other++;
    pthread_mutex_unlock(&w->lock);
    free(text);
    return rc;
}

int results_close(results_writer *w)
{
    if (w->file == NULL)
        return 0;
    int rc = (fflush(w->file) == 0 && fsync(fileno(w->file)) == 0) ? 0 : -1;
    if (fclose(w->file) != 0)
        rc = -1;
    w->file = NULL;
    pthread_mutex_destroy(&w->lock);
    return rc;
}

json_t *result_new(const char *id, long line, const char *status)
{
    return json_pack("{s:o, s:I, s:s}", "Id", id ? json_string(id) : json_null(), "Line",
                     (json_int_t)line, "Status", status);
}

static json_t *error_object(const enroll_error *err)
{
    json_t *e = json_pack("{s:s, s:s}", "Code", err->code[0] ? err->code : "ERROR", "Message",
                          err->message);
    if (err->field[0])
        json_object_set_new(e, "Field", json_string(err->field));
    return e;
}

void result_set_error(json_t *result, const enroll_error *err)
{
    json_object_set_new(result, "Error", error_object(err));
}

void result_set_errors(json_t *result, const enroll_error *errors, size_t count)
{
    if (count == 0)
        return;
    result_set_error(result, &errors[0]);
    if (count < 2)
        return;
    json_t *all = json_array();
    for (size_t i = 0; i < count; i++)
        json_array_append_new(all, error_object(&errors[i]));
    json_object_set_new(result, "Errors", all);
}
