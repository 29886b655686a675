/* Parallel batch validation: a reader thread, checker threads, and the calling thread writing the
 * results in order. Memory is bounded by the chunks in flight. */
#include "engine/validate.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "batch/results.h"

enum { CHUNK_LINES = 256, CHUNKS_PER_THREAD = 4 };

typedef struct vline {
    char *text;
    size_t len;
    long line;
    bool too_long;
    enroll_request *req;
    policy_decision decision;
    error_list errors;
} vline;

typedef struct chunk {
    vline lines[CHUNK_LINES];
    size_t count;
    bool checked;
    struct chunk *next_todo, *next_ordered;
} chunk;

typedef struct validation {
    line_checker *checker;
    ndjson_reader *reader;
    size_t max_line;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    chunk *todo_head, *todo_tail;       /* read, not yet checked */
    chunk *ordered_head, *ordered_tail; /* every chunk in flight, in batch order */
    size_t in_flight, max_in_flight;
    bool reading_done, read_failed;
    /* Template names as JSON text, made once (used by the writer thread only). */
    const config_template *named[16];
    char *name_json[16];
} validation;

static void *reader_main(void *arg)
{
    validation *v = arg;
    bool more = true;
    while (more) {
        chunk *c = calloc(1, sizeof *c);
        if (c == NULL) {
            more = false;
            pthread_mutex_lock(&v->lock);
            v->read_failed = true;
            pthread_mutex_unlock(&v->lock);
            break;
        }
        while (c->count < CHUNK_LINES) {
            const char *text;
            size_t len;
            long line;
            ndjson_status st = ndjson_next(v->reader, &text, &len, &line);
            if (st == NDJSON_EOF || st == NDJSON_ERROR) {
                more = false;
                if (st == NDJSON_ERROR) {
                    pthread_mutex_lock(&v->lock);
                    v->read_failed = true;
                    pthread_mutex_unlock(&v->lock);
                }
                break;
            }
            vline *l = &c->lines[c->count++];
            l->line = line;
            l->too_long = st == NDJSON_TOO_LONG;
            if (!l->too_long) {
                l->text = malloc(len + 1);
                if (l->text != NULL) {
                    memcpy(l->text, text, len);
                    l->len = len;
                }
            }
        }
        pthread_mutex_lock(&v->lock);
        while (v->in_flight >= v->max_in_flight)
            pthread_cond_wait(&v->changed, &v->lock);
        v->in_flight++;
        if (v->todo_tail)
            v->todo_tail->next_todo = c;
        else
            v->todo_head = c;
        v->todo_tail = c;
        if (v->ordered_tail)
            v->ordered_tail->next_ordered = c;
        else
            v->ordered_head = c;
        v->ordered_tail = c;
        pthread_cond_broadcast(&v->changed);
        pthread_mutex_unlock(&v->lock);
    }
    pthread_mutex_lock(&v->lock);
    v->reading_done = true;
    pthread_cond_broadcast(&v->changed);
    pthread_mutex_unlock(&v->lock);
    return NULL;
}

static void check_chunk(validation *v, chunk *c)
{
    for (size_t i = 0; i < c->count; i++) {
        vline *l = &c->lines[i];
        if (l->too_long) {
            error_list_add(&l->errors, HSE_LINE_TOO_LONG, NULL, "the line is longer than %zu bytes",
                           v->max_line);
        } else if (l->text == NULL) {
            error_list_add(&l->errors, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        } else {
            l->req =
                line_check_alone(v->checker, l->text, l->len, l->line, &l->decision, &l->errors);
        }
        free(l->text);
        l->text = NULL;
    }
}

static void *checker_main(void *arg)
{
    validation *v = arg;
    pthread_mutex_lock(&v->lock);
    for (;;) {
        while (v->todo_head == NULL && !v->reading_done)
            pthread_cond_wait(&v->changed, &v->lock);
        chunk *c = v->todo_head;
        if (c == NULL)
            break;
        v->todo_head = c->next_todo;
        if (v->todo_head == NULL)
            v->todo_tail = NULL;
        pthread_mutex_unlock(&v->lock);
        check_chunk(v, c);
        pthread_mutex_lock(&v->lock);
        c->checked = true;
        pthread_cond_broadcast(&v->changed);
    }
    pthread_mutex_unlock(&v->lock);
    return NULL;
}

static const char *template_json(validation *v, const config_template *t)
{
    for (size_t i = 0; i < 16; i++) {
        if (v->named[i] == t)
            return v->name_json[i];
        if (v->named[i] == NULL) {
            json_t *s = json_string(t->name);
            v->named[i] = t;
            v->name_json[i] = json_dumps(s, JSON_ENCODE_ANY);
            json_decref(s);
            return v->name_json[i];
        }
    }
    return NULL;
}

/* The result line of one request; valid lines, the great majority, skip building JSON. */
static void write_result(validation *v, FILE *out, const vline *l)
{
    const enroll_request *req = l->req;
    const policy_decision *d = &l->decision;
    const char *name = d->template_ ? template_json(v, d->template_) : NULL;
    if (l->errors.count == 0 && req != NULL && req->id != NULL && d->pattern != NULL &&
        name != NULL) {
        /* Ids are [A-Za-z0-9._-] (checked), so they need no JSON escaping. */
        fprintf(out,
                "{\"Id\":\"%s\",\"Line\":%ld,\"Status\":\"valid\",\"Template\":%s,"
                "\"EnrollmentPatternId\":%lld}\n",
                req->id, l->line, name, d->pattern->id);
        return;
    }
    json_t *result =
        result_new(req ? req->id : NULL, l->line, l->errors.count ? "invalid" : "valid");
    if (d->template_ != NULL)
        json_object_set_new(result, "Template", json_string(d->template_->name));
    if (d->pattern != NULL)
        json_object_set_new(result, "EnrollmentPatternId", json_integer(d->pattern->id));
    result_set_errors(result, l->errors.items, l->errors.count);
    char *json = json_dumps(result, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (json != NULL) {
        fputs(json, out);
        fputc('\n', out);
    }
    free(json);
    json_decref(result);
}

int validate_batch(line_checker *checker, ndjson_reader *reader, FILE *out, int threads,
                   validate_counts *counts)
{
    validation v = {.checker = checker, .reader = reader, .max_line = reader->max_line};
    if (threads < 1)
        threads = 1;
    v.max_in_flight = (size_t)threads * CHUNKS_PER_THREAD;
    pthread_mutex_init(&v.lock, NULL);
    pthread_cond_init(&v.changed, NULL);
    pthread_t reader_thread, *workers = calloc((size_t)threads, sizeof *workers);
    int started = 0;
    pthread_create(&reader_thread, NULL, reader_main, &v);
    for (int i = 0; workers != NULL && i < threads; i++)
        if (pthread_create(&workers[i], NULL, checker_main, &v) == 0)
            started++;
    if (started == 0) /* no thread could start: check here */
        checker_main(&v);

    pthread_mutex_lock(&v.lock);
    for (;;) {
        while ((v.ordered_head == NULL && !v.reading_done) ||
               (v.ordered_head != NULL && !v.ordered_head->checked))
            pthread_cond_wait(&v.changed, &v.lock);
        chunk *c = v.ordered_head;
        if (c == NULL)
            break;
        v.ordered_head = c->next_ordered;
        if (v.ordered_head == NULL)
            v.ordered_tail = NULL;
        pthread_mutex_unlock(&v.lock);
        for (size_t i = 0; i < c->count; i++) {
            vline *l = &c->lines[i];
            line_check_in_order(checker, l->req, &l->decision, &l->errors);
            write_result(&v, out, l);
            l->errors.count ? counts->invalid++ : counts->valid++;
            request_free(l->req);
            error_list_free(&l->errors);
        }
        free(c);
        pthread_mutex_lock(&v.lock);
        v.in_flight--;
        pthread_cond_broadcast(&v.changed);
    }
    bool failed = v.read_failed;
    pthread_mutex_unlock(&v.lock);
    pthread_join(reader_thread, NULL);
    for (int i = 0; i < started; i++)
        pthread_join(workers[i], NULL);
    free(workers);
    for (size_t i = 0; i < 16; i++)
        free(v.name_json[i]);
    pthread_mutex_destroy(&v.lock);
    pthread_cond_destroy(&v.changed);
    return failed ? -1 : 0;
}
