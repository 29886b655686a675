/* Progress display thread. The batch size for the ETA is counted here, off the reader's path. */
#include "engine/progress.h"
#include "engine/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch/log.h"
#include "batch/ndjson.h"
#include "batch/shard.h"

enum { PROGRESS_PLAIN_INTERVAL_MS = 10000 };

struct progress {
    run *run;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    long total;    /* non-blank lines of the batch (of the shard's with --shard), -1 unknown */
    bool terminal; /* redraw one line on a terminal; otherwise one plain line per interval */
};

/* The lines this run has to do: the batch's non-blank lines, only the shard's with --shard
 * (read with the same reader and shard rule as the pipeline). */
static long count_lines(const run *r)
{
    if (strcmp(r->opt.batch_path, "-") == 0)
        return -1;
    ndjson_reader reader;
    enroll_error err;
    if (ndjson_open(&reader, r->opt.batch_path, 0, &err) != 0)
        return -1;
    long n = 0, line;
    const char *text;
    size_t len;
    ndjson_status st;
    while ((st = ndjson_next(&reader, &text, &len, &line)) != NDJSON_EOF && st != NDJSON_ERROR)
        n += shard_owns(&r->opt.shard, st == NDJSON_TOO_LONG ? NULL : text,
                        st == NDJSON_TOO_LONG ? 0 : len, line);
    ndjson_close(&reader);
    return st == NDJSON_ERROR ? -1 : n;
}

static void draw(progress *p, double elapsed)
{
    run *r = p->run;
    long issued = atomic_load(&r->stats.issued), failed = atomic_load(&r->stats.failed);
    long now_done = issued + failed + atomic_load(&r->stats.pending);
    /* Of the whole batch: a resumed run counts what was done before. */
    long done = now_done + atomic_load(&r->stats.skipped);
    double rate = elapsed > 0 ? issued / elapsed : 0;
    char eta[32] = "";
    if (p->total > 0 && now_done > 0 && done < p->total) {
        double left = (p->total - done) * (elapsed / now_done);
        snprintf(eta, sizeof eta, ", ETA %ld:%02ld", (long)left / 60, (long)left % 60);
    }
    char text[160];
    if (p->total > 0)
        snprintf(text, sizeof text, "%ld/%ld done, %ld failed, %.1f certificates/s%s, bound by %s",
                 done, p->total, failed, rate, eta, run_metrics_bottleneck(r));
    else
        snprintf(text, sizeof text, "%ld done, %ld failed, %.1f certificates/s, bound by %s", done,
                 failed, rate, run_metrics_bottleneck(r));
    if (!p->terminal) {
        log_info("progress: %s", text);
        return;
    }
    char line[200];
    snprintf(line, sizeof line, "\r\033[K%s", text);
    (void)!write(STDERR_FILENO, line, strlen(line));
}

static void *progress_main(void *arg)
{
    progress *p = arg;
    p->total = count_lines(p->run);
    /* A terminal is redrawn four times a second; a file or pipe gets a line every 10 s. */
    long interval_ms = p->terminal ? 250 : PROGRESS_PLAIN_INTERVAL_MS;
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += interval_ms / 1000;
        until.tv_nsec += (interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->wake, &p->lock, &until);
        if (p->stop)
            break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double elapsed = (double)(now.tv_sec - p->run->started.tv_sec) +
                         (double)(now.tv_nsec - p->run->started.tv_nsec) / 1e9;
        if (p->terminal)
            log_set_progress_active(1);
        draw(p, elapsed);
    }
    pthread_mutex_unlock(&p->lock);
    if (!p->terminal) { /* the last figures, so even a short run shows its line */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        draw(p, (double)(now.tv_sec - p->run->started.tv_sec) +
                    (double)(now.tv_nsec - p->run->started.tv_nsec) / 1e9);
    }
    if (p->terminal) {
        (void)!write(STDERR_FILENO, "\r\033[K", 4);
        log_set_progress_active(0);
    }
    return NULL;
}

progress *progress_start(run *r)
{
    bool show =
        r->opt.progress == PROGRESS_ALWAYS ||
        (r->opt.progress == PROGRESS_AUTO && isatty(STDERR_FILENO) && log_get_level() >= LOG_INFO);
    if (!show)
        return NULL;
    progress *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->run = r;
    p->terminal = isatty(STDERR_FILENO);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (pthread_create(&p->thread, NULL, progress_main, p) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

void progress_stop(progress *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p);
}
