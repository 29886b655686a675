/* The run's bounded job queue: at most `capacity` jobs admitted and not finished, so memory stays
 * flat whatever the batch size. Answered jobs go to the front. Thread-safe. */
#ifndef HSMENROLL_ENGINE_QUEUE_H
#define HSMENROLL_ENGINE_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct job;

typedef struct job_queue {
    pthread_mutex_t lock;
    pthread_cond_t ready; /* a job (or the end) is available */
    pthread_cond_t room;  /* admission: fewer than capacity jobs in flight */
    struct job *head, *tail;
    size_t in_flight, capacity;
    _Atomic long finished; /* jobs done since queue_init: read without the lock (queue_finished) */
    bool closed;
} job_queue;

void queue_init(job_queue *q, size_t capacity);
void queue_destroy(job_queue *q);
/* Admits a new job, waiting while capacity jobs are in flight. */
void queue_admit(job_queue *q, struct job *j);
/* Puts a job whose CA answered back on the queue, ahead of new ones. */
void queue_requeue(job_queue *q, struct job *j);
/* The next job, or NULL when the queue is closed and every admitted job has finished. */
struct job *queue_take(job_queue *q);
/* A taken job has finished (its result is written): room for one more. */
void queue_job_done(job_queue *q);
/* No more admissions: queue_take returns NULL once every admitted job has finished. */
void queue_close(job_queue *q);
/* Waits until every admitted job has finished. */
void queue_wait_idle(job_queue *q);
/* Jobs finished so far (no lock: the reader asks after every admission). */
long queue_finished(job_queue *q);
/* Room for more jobs in flight (more lanes): capacity raised to at least capacity. */
void queue_raise_capacity(job_queue *q, size_t capacity);

#endif
