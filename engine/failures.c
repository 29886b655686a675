/* The failures of a run by code, for the summary (engine/run.h run_get_failures): a count and
 * the first (lowest) line of each code, noted by the reader and the workers under one lock. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/run_state.h"

void run_note_failure(run *r, const char *code, long line, const char *id, const char *message)
{
    pthread_mutex_lock(&r->failures_lock);
    run_failure_code *f = NULL;
    for (size_t i = 0; i < r->failure_kinds && f == NULL; i++)
        if (strcmp(r->failures[i].code, code) == 0)
            f = &r->failures[i];
    if (f == NULL && r->failure_kinds < RUN_FAILURE_KINDS) {
        f = &r->failures[r->failure_kinds++];
        snprintf(f->code, sizeof f->code, "%s", code);
    }
    if (f != NULL) {
        if (f->count++ == 0 || line < f->first_line) {
            f->first_line = line;
            snprintf(f->first_id, sizeof f->first_id, "%s", id ? id : "");
            snprintf(f->first_message, sizeof f->first_message, "%s", message);
        }
    }
    pthread_mutex_unlock(&r->failures_lock);
}

static int by_count(const void *a, const void *b)
{
    const run_failure_code *x = a, *y = b;
    return x->count != y->count ? (x->count < y->count ? 1 : -1) : strcmp(x->code, y->code);
}

size_t run_get_failures(run *r, run_failure_code *out, size_t max)
{
    pthread_mutex_lock(&r->failures_lock);
    size_t n = r->failure_kinds;
    qsort(r->failures, n, sizeof r->failures[0], by_count);
    memcpy(out, r->failures, (n < max ? n : max) * sizeof *out);
    pthread_mutex_unlock(&r->failures_lock);
    return n;
}
