/* HSM operations in flight when the module says it is busy (CKR_SESSION_COUNT,
 * CKR_DEVICE_MEMORY on a call): the lanes take a place before their HSM stages, the number of
 * places is halved at each busy answer and given back one at a time as calls succeed, and the
 * refused request waits a growing backoff and is tried again instead of failing. */
#ifndef HSMENROLL_ENGINE_THROTTLE_H
#define HSMENROLL_ENGINE_THROTTLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* Busy answers one request may meet before it fails with the module's answer. */
#define THROTTLE_RETRIES 12

typedef struct hsm_throttle {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int active;             /* under lock: lanes in an HSM stage now */
    int limit;              /* under lock: places; lanes at first */
    int lanes;              /* under lock: set by throttle_init, raised by throttle_add_lanes */
    long ok_since;          /* under lock: successes since the last change */
    _Atomic long answers;   /* busy answers met */
    _Atomic long slowdowns; /* times the limit was lowered */
    _Atomic int lowest;     /* lowest limit reached */
} hsm_throttle;

void throttle_init(hsm_throttle *t, int lanes);
void throttle_destroy(hsm_throttle *t);
/* More lanes (engine/lane_tuner.c): as many more places, unless the module was busy. */
void throttle_add_lanes(hsm_throttle *t, int lanes);
/* Waits for a place. */
void throttle_enter(hsm_throttle *t);
/* Gives the place back; ok: the stage's HSM calls succeeded (raises the limit after enough). */
void throttle_leave(hsm_throttle *t, bool ok);
/* The module answered busy (what: the failed call and its answer): lowers the limit, logs it,
 * and sleeps the backoff of this attempt (1, 2, ...) before the caller retries. Call without
 * holding a place. */
void throttle_busy(hsm_throttle *t, const char *what, int attempt);

#endif
