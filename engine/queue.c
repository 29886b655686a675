/* The run's bounded job queue: the reader admits new jobs (waiting while the queue is full), the
 * CA side puts answered jobs back at the front, the workers take them. */
#include "engine/queue.h"

#include <string.h>

#include "engine/run_state.h"

void queue_init(job_queue *q, size_t capacity)
{
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->ready, NULL);
    pthread_cond_init(&q->room, NULL);
    q->capacity = capacity;
}

void queue_destroy(job_queue *q)
{
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->ready);
    pthread_cond_destroy(&q->room);
}

static void push_locked(job_queue *q, job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    pthread_cond_signal(&q->ready);
}

/* Admits a new job, waiting while capacity jobs are in flight. */
void queue_admit(job_queue *q, job *j)
{
    pthread_mutex_lock(&q->lock);
    while (q->in_flight >= q->capacity)
        pthread_cond_wait(&q->room, &q->lock);
    q->in_flight++;
    push_locked(q, j);
    pthread_mutex_unlock(&q->lock);
}

void queue_requeue(job_queue *q, job *j)
{
    pthread_mutex_lock(&q->lock);
    /* Answered jobs go first: they hold memory and are closest to done. */
    j->next = q->head;
    q->head = j;
    if (q->tail == NULL)
        q->tail = j;
    pthread_cond_signal(&q->ready);
    pthread_mutex_unlock(&q->lock);
}

/* The next job, or NULL when the queue is closed and every admitted job has finished. */
job *queue_take(job_queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->head == NULL && !(q->closed && q->in_flight == 0))
        pthread_cond_wait(&q->ready, &q->lock);
    job *j = q->head;
    if (j != NULL) {
        q->head = j->next;
        if (q->head == NULL)
            q->tail = NULL;
    }
    pthread_mutex_unlock(&q->lock);
    return j;
}

void queue_job_done(job_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->in_flight--;
    atomic_fetch_add_explicit(&q->finished, 1, memory_order_relaxed);
    pthread_cond_signal(&q->room);
    if (q->closed && q->in_flight == 0)
        pthread_cond_broadcast(&q->ready);
    pthread_mutex_unlock(&q->lock);
}

void queue_close(job_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pthread_cond_broadcast(&q->ready);
    pthread_mutex_unlock(&q->lock);
}

/* Waits until every admitted job has finished: the workers wait in queue_take, and no job holds
 * a session or an object handle. Only the reader admits, so nothing starts meanwhile. */
void queue_wait_idle(job_queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->in_flight > 0)
        pthread_cond_wait(&q->room, &q->lock);
    pthread_mutex_unlock(&q->lock);
}

long queue_finished(job_queue *q)
{
    return atomic_load_explicit(&q->finished, memory_order_relaxed);
}

void queue_raise_capacity(job_queue *q, size_t capacity)
{
    pthread_mutex_lock(&q->lock);
    if (capacity > q->capacity) {
        q->capacity = capacity;
        pthread_cond_broadcast(&q->room);
    }
    pthread_mutex_unlock(&q->lock);
}
