/* Fuzz target: `hsmenroll merge` (batch/merge.h merge_results) on shard results made from the
 * input. The input's first line is the batch (its lines split at '|'), the rest is one shard's
 * results.ndjson; the merged output goes to a memory file, and the report's counts must add up:
 * every request line of the batch is missing, doubled or has one result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "batch/merge.h"
#include "support.h"

static int memfile(const char *name, const char *data, size_t len, char *path, size_t size)
{
    int fd = memfd_create(name, 0);
    if (fd < 0)
        return -1;
    if (len > 0 && write(fd, data, len) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    snprintf(path, size, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nl = memchr(text, '\n', size);
    size_t batch_len = nl ? (size_t)(nl - text) : size;
    char *batch = malloc(batch_len + 1);
    if (batch == NULL)
        return 0;
    for (size_t i = 0; i < batch_len; i++)
        batch[i] = text[i] == '|' ? '\n' : text[i];
    batch[batch_len] = '\0';
    const char *results = nl ? nl + 1 : "";
    size_t results_len = nl ? size - batch_len - 1 : 0;
    char batch_path[64], results_path[64];
    int bfd = memfile("fuzz-batch", batch, batch_len, batch_path, sizeof batch_path);
    int rfd = memfile("fuzz-results", results, results_len, results_path, sizeof results_path);
    FILE *merged = tmpfile();
    if (bfd >= 0 && rfd >= 0 && merged != NULL) {
        const char *paths[] = {results_path, results_path}; /* given twice: all doubled */
        enroll_error err;
        json_t *report = merge_results(batch_path, paths, 1 + (size & 1), merged, &err);
        if (report != NULL) {
            json_int_t lines = json_integer_value(json_object_get(report, "Lines"));
            json_int_t with = json_integer_value(json_object_get(report, "Results"));
            json_int_t missing = json_integer_value(json_object_get(report, "MissingCount"));
            if (with + missing != lines)
                abort(); /* every line has a result or is missing */
            json_decref(report);
        }
    }
    if (merged != NULL)
        fclose(merged);
    if (bfd >= 0)
        close(bfd);
    if (rfd >= 0)
        close(rfd);
    free(batch);
    return 0;
}
