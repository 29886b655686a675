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

struct progress {
    run *run;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    long total; /* non-blank lines of the batch, -1 unknown */
};

static long count_lines(const char *path)
{
    if (strcmp(path, "-") == 0)
        return -1;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    char buf[1 << 16];
    long n = 0;
    size_t got;
    bool blank = true;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < got; i++) {
            if (buf[i] == '\n') {
                n += !blank;
                blank = true;
            } else if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\r') {
                blank = false;
            }
        }
    }
    n += !blank;
    fclose(f);
    return n;
}

static void draw(progress *p, double elapsed)
{
    run *r = p->run;
    long issued = atomic_load(&r->stats.issued), failed = atomic_load(&r->stats.failed);
    long done = issued + failed;
    double rate = elapsed > 0 ? issued / elapsed : 0;
    char eta[32] = "";
    if (p->total > 0 && done > 0 && done < p->total) {
        double left = (p->total - done) * (elapsed / done);
        snprintf(eta, sizeof eta, ", ETA %ld:%02ld", (long)left / 60, (long)left % 60);
    }
    char line[200];
    if (p->total > 0)
        snprintf(line, sizeof line,
                 "\r\033[K%ld/%ld done, %ld failed, %.1f certificates/s%s, bound by %s", done,
                 p->total, failed, rate, eta, run_metrics_bottleneck(r));
    else
        snprintf(line, sizeof line,
                 "\r\033[K%ld done, %ld failed, %.1f certificates/s, bound by %s", done, failed,
                 rate, run_metrics_bottleneck(r));
    (void)!write(STDERR_FILENO, line, strlen(line));
}

static void *progress_main(void *arg)
{
    progress *p = arg;
    p->total = count_lines(p->run->opt.batch_path);
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250 * 1000000L;
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
        log_set_progress_active(1);
        draw(p, elapsed);
    }
    pthread_mutex_unlock(&p->lock);
    (void)!write(STDERR_FILENO, "\r\033[K", 4);
    log_set_progress_active(0);
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
