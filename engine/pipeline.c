/* Reader loop, bounded job queue, worker threads, per-line validation failures. */
#include "engine/pipeline.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch/linecheck.h"
#include "batch/ndjson.h"
#include "ca/connector.h"
#include "engine/enroll.h"
#include "engine/lane_tuner.h"
#include "engine/metrics.h"
#include "batch/log.h"
#include "engine/progress.h"
#include "engine/queue.h"
#include "engine/recovery.h"

/* --rate: waits for the scheduled time of the k-th admitted request and returns it (not the time
 * it woke up), so that latency counts from the schedule: a request held back by a slow CA or a
 * full queue is late, and its wait is part of what is measured (no coordinated omission). */
static uint64_t paced_admission(run *r, uint64_t *schedule_start, long k)
{
    if (*schedule_start == 0)
        *schedule_start = run_clock_ns();
    uint64_t due = *schedule_start + (uint64_t)((double)k * 1e9 / r->opt.rate);
    while (!atomic_load(&r->stop)) {
        uint64_t now = run_clock_ns();
        if (now >= due)
            break;
        uint64_t wait = due - now;
        if (wait > 100000000u) /* wake at least every 100 ms to notice a stop */
            wait = 100000000u;
        nanosleep(&(struct timespec){.tv_sec = (time_t)(wait / 1000000000u),
                                     .tv_nsec = (long)(wait % 1000000000u)},
                  NULL);
    }
    return due;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    job *j;
    while ((j = queue_take(&w->run->queue)) != NULL) {
        bool finished = true;
        if (j->answered)
            enroll_answered(w, j);
        else
            finished = enroll_job(w, j);
        if (finished)
            queue_job_done(&w->run->queue);
    }
    return NULL;
}

static void report_line_failure(run *r, const char *id, long line, const error_list *errors)
{
    if (recovery_line_done(r, line)) {
        atomic_fetch_add(&r->stats.skipped, 1);
        return; /* reported by the interrupted run */
    }
    run_metrics_error(r, errors->items[0].code);
    json_t *result = result_new(id, line, "failed");
    result_set_errors(result, errors->items, errors->count);
    recovery_done(r, id, line, result, true);
    if (results_write(&r->results, result) != 0)
        log_error("cannot write %s/results.ndjson", r->out.path);
    json_decref(result);
    atomic_fetch_add(&r->stats.failed, 1);
    run_note_failure(r, errors->items[0].code, line, id, errors->items[0].message);
    char line_text[24];
    snprintf(line_text, sizeof line_text, "%ld", line);
    const char *fields[] = {"line", line_text, "id", id ? id : "", "code", errors->items[0].code,
                            NULL};
    log_fields(LOG_VERBOSE, fields, "line %ld%s%s: %s: %s%s", line, id ? " " : "", id ? id : "",
               errors->items[0].code, errors->items[0].message,
               errors->count > 1 ? " (and more)" : "");
}

/* HSM operations in flight when neither --hsm-concurrency nor Hsm.Concurrency says: enough to
 * keep a network HSM with a few milliseconds per call busy at the engine's CPU rate; the run
 * raises it while that makes it faster (engine/lane_tuner.h), up to HSM_CONCURRENCY_AUTO_MAX. */
#define HSM_CONCURRENCY_DEFAULT  32
#define HSM_CONCURRENCY_AUTO_MAX 256

/* Whether the operator chose the lanes (then the run keeps them). */
static bool lanes_fixed(const run *r)
{
    return r->opt.hsm_concurrency > 0 || r->cfg->hsm.concurrency > 0;
}

/* The most lanes every token's session limit allows (leaving one session for the login and
 * one for the CAs and `serve` of the same process), and Hsm.MaxSessions; at most want. */
static int lane_room(const run *r, long long want, bool say)
{
    if (r->cfg->hsm.max_sessions > 0 && want > r->cfg->hsm.max_sessions - 1) {
        /* Hsm.MaxSessions: the run's sessions per token, its login session included. */
        want = r->cfg->hsm.max_sessions > 1 ? r->cfg->hsm.max_sessions - 1 : 1;
        if (say)
            log_info("Hsm.MaxSessions %lld: %lld HSM operations in flight",
                     r->cfg->hsm.max_sessions, want);
    }
    for (size_t t = 0; t < r->hsm->token_count; t++) {
        unsigned long max = r->hsm->tokens[t].desc.max_rw_sessions;
        long long room = max > 2 ? (long long)max - 2 : 1;
        if (max > 0 && room < want) {
            if (say)
                log_info("token \"%s\" allows %lu read/write sessions: %lld HSM operations in "
                         "flight",
                         r->hsm->tokens[t].desc.label, max, room);
            want = room;
        }
    }
    return (int)want;
}

/* How many lanes (worker threads with their own sessions) the run starts: the HSM concurrency,
 * at least one per CPU permit, within lane_room. */
static int lane_count(const run *r)
{
    long long want = r->opt.hsm_concurrency > 0    ? r->opt.hsm_concurrency
                     : r->cfg->hsm.concurrency > 0 ? r->cfg->hsm.concurrency
                                                   : HSM_CONCURRENCY_DEFAULT;
    if (want < r->opt.workers)
        want = r->opt.workers;
    return lane_room(r, want, true);
}

/* 0, -1 with err, or -2 when the module refused a session for lack of them (CKR_SESSION_COUNT):
 * the caller runs with fewer lanes. */
static int open_worker_sessions(run *r, worker *w, enroll_error *err)
{
    w->sessions = calloc(r->hsm->token_count, sizeof *w->sessions);
    if (w->sessions == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    for (size_t t = 0; t < r->hsm->token_count; t++) {
        hsm_error herr;
        if (hsm_session_open(&r->hsm->tokens[t], &w->sessions[t], &herr) != 0) {
            enroll_error_set(err, HSE_HSM_SESSION, NULL, "%s", herr.message);
            return herr.rv == CKR_SESSION_COUNT ? -2 : -1;
        }
    }
    w->key_token = (size_t)w->index % r->hsm->spread_token_count;
    return 0;
}

static void close_worker_sessions(run *r, worker *w)
{
    if (w->sessions == NULL)
        return;
    for (size_t t = 0; t < r->hsm->token_count; t++)
        hsm_session_close(&w->sessions[t]);
    free(w->sessions);
    w->sessions = NULL;
}

/* Restarts the HSM module between two jobs (hsm_context_restart): drains the pipeline, closes
 * every worker's sessions, restarts, lets the connectors find their keys again, reopens. */
static int restart_hsm(run *r, worker *workers, int nworkers, enroll_error *err)
{
    queue_wait_idle(&r->queue);
    uint64_t t0 = run_clock_ns();
    for (int i = 0; i < nworkers; i++)
        close_worker_sessions(r, &workers[i]);
    store_registry_reset(&r->stores); /* its handles die with the module's state */
    int rc = hsm_context_restart(r->hsm, err);
    if (rc == 0)
        rc = connectors_hsm_restarted(&r->ca, err);
    for (int i = 0; rc == 0 && i < nworkers; i++)
        rc = open_worker_sessions(r, &workers[i], err);
    log_verbose("HSM module restarted (%ld so far) in %.1f ms%s", r->hsm->restarts,
                (double)(run_clock_ns() - t0) / 1e6, rc == 0 ? "" : ": failed");
    return rc;
}

/* The lane tuner's raise: workers nworkers..want-1 get their sessions and threads (workers has
 * room for them). A module out of sessions, or a thread that cannot start, ends the raises. */
static void add_lanes(run *r, worker *workers, int *nworkers, int *started, int want,
                      lane_tuner *tuner)
{
    int n = *nworkers;
    for (int i = n; i < want; i++) {
        enroll_error e = {0};
        workers[i].run = r;
        workers[i].index = i;
        int opened = open_worker_sessions(r, &workers[i], &e);
        if (opened == 0 &&
            pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) == 0) {
            n++;
            continue;
        }
        close_worker_sessions(r, &workers[i]);
        log_verbose("lanes: no more than %d (%s)", n,
                    opened == 0 ? "cannot start a thread" : e.message);
        tuner->settled = true;
        break;
    }
    if (n == *nworkers)
        return;
    throttle_add_lanes(&r->throttle, n);
    queue_raise_capacity(&r->queue,
                         (size_t)n * 2 + (r->ca.http != NULL ? (size_t)r->opt.inflight : 0));
    *started += n - *nworkers;
    *nworkers = n;
    r->lanes = n;
}

int pipeline_run(run *r, enroll_error *err)
{
    ndjson_reader *reader = &r->reader; /* opened by run_open */
    int nworkers = lane_count(r);
    int cap = lanes_fixed(r) ? nworkers : lane_room(r, HSM_CONCURRENCY_AUTO_MAX, false);
    if (cap < nworkers)
        cap = nworkers;
    worker *workers = calloc((size_t)cap, sizeof *workers);
    if (workers == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    if (store_registry_init(&r->stores, r->cfg) != 0) {
        free(workers);
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    int rc = 0;
    int started = 0;
    for (int i = 0; i < nworkers; i++) {
        workers[i].run = r;
        workers[i].index = i;
        int opened = open_worker_sessions(r, &workers[i], err);
        if (opened == -2 && i > 0) {
            /* The module has no more sessions: fewer operations in flight, not a failure. */
            log_info("the module refused session %d (CKR_SESSION_COUNT): %d HSM operations in "
                     "flight",
                     i + 1, i);
            close_worker_sessions(r, &workers[i]);
            enroll_error_clear(err);
            nworkers = i;
            break;
        }
        if (opened != 0) {
            rc = -1;
            nworkers = i + 1; /* closes what this one opened, too */
            break;
        }
    }
    r->lanes = nworkers;
    r->lanes_first = nworkers;
    sem_init(&r->cpu_gate, 0, (unsigned)(r->opt.workers < nworkers ? r->opt.workers : nworkers));
    throttle_init(&r->throttle, nworkers);
    /* Two jobs per lane keep the lanes busy; network CAs add --inflight jobs waiting on
     * answers. More would only add latency (a job admitted waits its turn). */
    queue_init(&r->queue,
               (size_t)nworkers * 2 + (r->ca.http != NULL ? (size_t)r->opt.inflight : 0));
    log_verbose("%d lanes (HSM operations in flight), %d CPU permits", nworkers, r->opt.workers);
    for (int i = 0; rc == 0 && i < nworkers; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            enroll_error_set(err, HSE_THREAD, NULL, "cannot start worker threads");
            rc = -1;
            break;
        }
        started++;
    }
    progress *prog = rc == 0 ? progress_start(r) : NULL;
    lane_tuner tuner;
    lane_tuner_init(&tuner, !lanes_fixed(r) && nworkers < cap, nworkers, cap, run_clock_ns(), 0);

    line_checker checker;
    line_checker_init(&checker, r->cfg, &r->defaults, r->opt.default_ca, recovery_run_id(r));
    const char *text;
    size_t len;
    long line;
    ndjson_status st;
    long admitted = 0, session_keys = 0;
    uint64_t schedule_start = 0; /* --rate: request k is admitted at schedule_start + k/rate */
    error_list errors = {0};
    while (rc == 0 && !atomic_load(&r->stop) &&
           (st = ndjson_next(reader, &text, &len, &line)) != NDJSON_EOF) {
        if (st == NDJSON_ERROR) {
            enroll_error_set(err, HSE_BATCH_UNREADABLE, NULL, "cannot read %s after line %ld",
                             r->opt.batch_path, line);
            rc = -1;
            break;
        }
        /* --shard: another engine's line (a line too long to read goes by its number). */
        if (!shard_owns(&r->opt.shard, st == NDJSON_TOO_LONG ? NULL : text,
                        st == NDJSON_TOO_LONG ? 0 : len, line))
            continue;
        atomic_fetch_add(&r->stats.lines, 1);
        errors.count = 0;
        if (st == NDJSON_TOO_LONG) {
            error_list_add(&errors, HSE_LINE_TOO_LONG, NULL, "the line is longer than %zu bytes",
                           reader->max_line);
            report_line_failure(r, NULL, line, &errors);
            continue;
        }
        uint64_t t0 = run_clock_ns();
        policy_decision decision;
        const char *id;
        enroll_request *req =
            line_check(&checker, (char *)text, len, line, &decision, &errors, &id);
        job *j = NULL;
        if (req != NULL && errors.count == 0) {
            j = calloc(1, sizeof *j);
            if (j == NULL)
                error_list_add(&errors, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        }
        run_metrics_stage(r, STAGE_PARSE, run_clock_ns() - t0);
        if (j == NULL) {
            report_line_failure(r, id, line, &errors);
            request_free(req);
            continue;
        }
        j->req = req;
        j->policy = decision;
        recovery_state known = r->journal != NULL ? recovery_lookup(r, j) : RECOVERY_NEW;
        if (known == RECOVERY_DONE || known == RECOVERY_UNKNOWN) {
            if (known == RECOVERY_DONE)
                atomic_fetch_add(&r->stats.skipped, 1);
            else
                recovery_report_unknown(r, j);
            request_free(req);
            free(j);
            continue;
        }
        bool session_key = req->operation != OP_CSR && req->storage != STORAGE_TOKEN;
        j->started_ns =
            r->opt.rate > 0 ? paced_admission(r, &schedule_start, admitted) : run_clock_ns();
        queue_admit(&r->queue, j);
        admitted++;
        int want = lane_tuner_tick(&tuner, nworkers, run_clock_ns(), queue_finished(&r->queue),
                                   atomic_load(&r->throttle.slowdowns) > 0);
        if (want > nworkers)
            add_lanes(r, workers, &nworkers, &started, want, &tuner);
        if (session_key && r->hsm->restart_every > 0 && ++session_keys >= r->hsm->restart_every) {
            session_keys = 0;
            if (restart_hsm(r, workers, nworkers, err) != 0) {
                rc = -1;
                break;
            }
        }
    }
    error_list_free(&errors);
    /* Stopped (a signal, a full disk): how many of the run's lines were not started, for the
     * summary; standard input is not read further (it may never end). */
    if (rc == 0 && atomic_load(&r->stop) && strcmp(r->opt.batch_path, "-") != 0) {
        long rest = 0;
        while ((st = ndjson_next(reader, &text, &len, &line)) != NDJSON_EOF && st != NDJSON_ERROR)
            rest += shard_owns(&r->opt.shard, st == NDJSON_TOO_LONG ? NULL : text,
                               st == NDJSON_TOO_LONG ? 0 : len, line);
        r->stats.not_started = st == NDJSON_ERROR ? -1 : rest;
    }
    queue_close(&r->queue);
    for (int i = 0; i < started; i++)
        pthread_join(workers[i].thread, NULL);
    progress_stop(prog);
    for (int i = 0; i < nworkers; i++)
        close_worker_sessions(r, &workers[i]);
    free(workers);
    line_checker_free(&checker);
    store_registry_free(&r->stores);
    queue_destroy(&r->queue);
    sem_destroy(&r->cpu_gate);
    throttle_destroy(&r->throttle);
    log_verbose("%ld requests admitted to the workers", admitted);
    return rc;
}
