/* results.ndjson (SPEC section 6): one JSON line per request, written whole under a lock, in the
 * order requests finish; file mode 0600 (it can hold generated passwords). */
#ifndef HSMENROLL_BATCH_RESULTS_H
#define HSMENROLL_BATCH_RESULTS_H

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>

#include "formats/error.h"
#include "output.h"

typedef struct results_writer {
    FILE *file;
    pthread_mutex_t lock;
    long issued, failed, other;
} results_writer;

/* Creates (truncating) name in dir. 0, or -1 with err. (A resumed run rewrites it whole from its
 * journal, then goes on writing.) */
int results_open(results_writer *w, const output_dir *dir, const char *name, enroll_error *err);
/* Writes one line and counts it by its Status; takes no reference. 0, or -1 (write error). */
int results_write(results_writer *w, json_t *line);
/* Flushes, fsyncs and closes. 0 or -1. */
int results_close(results_writer *w);

/* {"Id": id or null, "Line": line, "Status": status} */
json_t *result_new(const char *id, long line, const char *status);
/* Adds "Error": {"Code", "Message", "Field"}. */
void result_set_error(json_t *result, const enroll_error *err);
/* Adds "Error" (the first) and, when there are several, "Errors" (all of them, in order). */
void result_set_errors(json_t *result, const enroll_error *errors, size_t count);

#endif
