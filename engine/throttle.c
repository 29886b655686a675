/* The HSM throttle (throttle.h): a counting gate whose size follows the module's busy answers,
 * multiplicative decrease on a busy answer and additive increase after a run of successes. */
#include "engine/throttle.h"

#include <errno.h>
#include <time.h>

#include "batch/log.h"

void throttle_init(hsm_throttle *t, int lanes)
{
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    t->active = 0;
    t->lanes = t->limit = lanes > 0 ? lanes : 1;
    t->ok_since = 0;
    atomic_store(&t->answers, 0);
    atomic_store(&t->slowdowns, 0);
    atomic_store(&t->lowest, t->limit);
}

void throttle_destroy(hsm_throttle *t)
{
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
}

void throttle_add_lanes(hsm_throttle *t, int lanes)
{
    pthread_mutex_lock(&t->lock);
    if (t->limit == t->lanes)
        t->limit = lanes; /* at full speed: the new lanes too; else they come back as calls do */
    t->lanes = lanes;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

void throttle_enter(hsm_throttle *t)
{
    pthread_mutex_lock(&t->lock);
    while (t->active >= t->limit)
        pthread_cond_wait(&t->cond, &t->lock);
    t->active++;
    pthread_mutex_unlock(&t->lock);
}

void throttle_leave(hsm_throttle *t, bool ok)
{
    pthread_mutex_lock(&t->lock);
    t->active--;
    /* One place back after as many successes as eight rounds of the current places: slow
     * enough that a module at its limit is not pushed over it again at once. */
    if (ok && t->limit < t->lanes && ++t->ok_since >= 8L * t->limit) {
        t->limit++;
        t->ok_since = 0;
        log_debug("HSM operations in flight raised to %d of %d", t->limit, t->lanes);
        if (t->limit == t->lanes)
            log_info("the HSM keeps up again: %d HSM operations in flight", t->limit);
    }
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

void throttle_busy(hsm_throttle *t, const char *what, int attempt)
{
    atomic_fetch_add(&t->answers, 1);
    pthread_mutex_lock(&t->lock);
    /* Half of what was in flight when the module refused, at least one. */
    int in_flight = t->active + 1 < t->limit ? t->active + 1 : t->limit;
    int next = in_flight / 2 > 0 ? in_flight / 2 : 1;
    if (next < t->limit) {
        log_warning("the HSM is busy (%s): slowing down to %d HSM operations in flight (was %d)",
                    what, next, t->limit);
        t->limit = next;
        atomic_fetch_add(&t->slowdowns, 1);
        if (next < atomic_load(&t->lowest))
            atomic_store(&t->lowest, next);
    }
    t->ok_since = 0;
    pthread_mutex_unlock(&t->lock);
    /* 10 ms, doubled at each attempt up to 1 s, with jitter so that the lanes do not come
     * back together. */
    long ms = 10L << (attempt > 1 ? (attempt - 1 < 7 ? attempt - 1 : 7) : 0);
    if (ms > 1000)
        ms = 1000;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = ms / 2 + now.tv_nsec % (ms / 2 + 1);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
