/* The run API (engine/run.h): set-up of one run in the order that keeps a failed start harmless
 * (nothing is written to OUTDIR before the HSM login succeeded), the pipeline, the summary and
 * the figures. */
#include "engine/run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "batch/log.h"
#include "ca/connector.h"
#include "engine/fault_hooks.h"
#include "engine/metrics.h"
#include "engine/metrics_http.h"
#include "engine/pipeline.h"
#include "engine/recovery.h"
#include "engine/run_state.h"
#include "engine/setup.h"

/* An OUTDIR (or --journal) holding what an earlier run left: refused, or with --force moved
 * aside (OUTDIR/earlier-<UTC time>/, JOURNAL.earlier-<UTC time>) so that no bundle, result or
 * journal of it is lost and `token gc` can still tell its keys from orphans. */
static int earlier_outputs(run *r, enroll_error *err)
{
    char first[256];
    size_t count = output_dir_earlier(&r->out, first, sizeof first);
    bool results = faccessat(r->out.fd, "results.ndjson", F_OK, 0) == 0;
    bool own_journal = r->opt.journal_path != NULL && access(r->journal_path, F_OK) == 0;
    if (count == 0 && !own_journal)
        return 0;
    if (!r->opt.force) {
        if (results)
            enroll_error_set(err, HSE_OUTPUT_DIR, NULL,
                             "%s already holds the results of a run: --resume to finish it, "
                             "another -o, or --force to move them aside and start over",
                             r->opt.out_dir);
        else if (count > 0)
            enroll_error_set(err, HSE_OUTPUT_DIR, NULL,
                             "%s holds %zu file%s of an earlier run (%s%s): another -o, or "
                             "--force to move them aside and start over",
                             r->opt.out_dir, count, count == 1 ? "" : "s", first,
                             count > 1 ? ", ..." : "");
        else
            enroll_error_set(err, HSE_OUTPUT_DIR, NULL,
                             "the journal %s exists (an earlier run's): --resume to finish it, "
                             "another --journal, or --force to move it aside and start over",
                             r->journal_path);
        return -1;
    }
    char stamp[32], aside[64];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    /* Two --force runs within one second: the second takes earlier-<time>-2, and so on; an
     * earlier journal moved aside is never written over either. */
    for (int n = 1; n < 1000; n++) {
        if (n == 1)
            snprintf(aside, sizeof aside, "earlier-%s", stamp);
        else
            snprintf(aside, sizeof aside, "earlier-%s-%d", stamp, n);
        char journal_to[sizeof r->journal_path + 64];
        snprintf(journal_to, sizeof journal_to, "%s.%s", r->journal_path, aside);
        if (faccessat(r->out.fd, aside, F_OK, AT_SYMLINK_NOFOLLOW) != 0 &&
            (!own_journal || access(journal_to, F_OK) != 0))
            break;
    }
    size_t moved = 0;
    if (count > 0) {
        if (output_dir_move_aside(&r->out, aside, &moved, err) != 0)
            return -1;
        log_info("--force: moved the %zu file%s of the earlier run into %s/%s", moved,
                 moved == 1 ? "" : "s", r->opt.out_dir, aside);
    }
    if (own_journal) {
        char to[sizeof r->journal_path + 64];
        snprintf(to, sizeof to, "%s.%s", r->journal_path, aside);
        if (rename(r->journal_path, to) != 0) {
            enroll_error_set(err, HSE_OUTPUT_DIR, NULL, "cannot move the journal %s aside: %s",
                             r->journal_path, strerror(errno));
            return -1;
        }
        log_info("--force: moved the earlier journal to %s", to);
    }
    log_info("--force: the keys of the earlier run stay in their tokens, nothing is deleted; "
             "`hsmenroll token gc` with its journal and results lists those no run delivered");
    return 0;
}

int run_open(run **out, const run_options *opt, enroll_error *err)
{
    run *r = calloc(1, sizeof *r);
    *out = r;
    if (r == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    r->entered_ns = run_clock_ns();
    r->stats.not_started = -1;
    pthread_mutex_init(&r->failures_lock, NULL);
    run_metrics_init(r);
    r->out.fd = -1;
    fault_hooks_load();
    r->opt = *opt;
    if (r->opt.inflight <= 0)
        r->opt.inflight = 64;
    if (r->opt.out_dir == NULL)
        r->opt.out_dir = "out";
    if (r->opt.workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        r->opt.workers = n > 0 ? (int)n : 1;
    }
    if (((r->opt.retry_failed || r->opt.salvage) && !r->opt.resume) ||
        (r->opt.resume && r->opt.force) ||
        (r->opt.no_journal && (r->opt.resume || r->opt.journal_path))) {
        enroll_error_set(err, HSE_USAGE, NULL,
                         "--retry-failed and --salvage need --resume; --resume excludes --force; "
                         "--no-journal excludes --resume and --journal");
        return -1;
    }
    if (strcmp(r->opt.batch_path, "-") != 0 && access(r->opt.batch_path, R_OK) != 0) {
        enroll_error_set(err, HSE_BATCH_UNREADABLE, NULL, "cannot read batch %s: %s",
                         r->opt.batch_path, strerror(errno));
        return -1;
    }
    /* The batch's shape before anything is made: a JSON array or CSV is one mistake, not one
     * error per line, and a corrected rerun must not find an OUTDIR in its way. */
    if (ndjson_open(&r->reader, r->opt.batch_path, 0, err) != 0)
        return -1;
    r->reader_open = true;
    if (ndjson_check_shape(&r->reader, r->opt.batch_path, err) != 0)
        return -1;
    engine_setup *s = &r->setup;
    r->setup_done = true;
    if (setup_config(s, r->opt.config_path, r->opt.home, err) != 0)
        return -1;
    if (r->opt.module != NULL)
        s->cfg->hsm.module = r->opt.module;
    if (setup_check_defaults(s->cfg, r->opt.default_template, r->opt.default_pattern, err) != 0 ||
        setup_module(s, s->embedded, err) != 0 || setup_login(s, err) != 0 ||
        setup_local_cas(s, s->embedded, err) != 0)
        return -1;
    r->cfg = s->cfg;
    r->hsm = &s->hsm;
    r->defaults.template_name = r->opt.default_template;
    r->defaults.pattern_id = r->opt.default_pattern;
    r->defaults.password_length = s->cfg->settings.password_length;
    if (output_dir_open(&r->out, r->opt.out_dir, true, err) != 0)
        return -1;
    if (r->opt.journal_path != NULL)
        snprintf(r->journal_path, sizeof r->journal_path, "%s", r->opt.journal_path);
    else
        snprintf(r->journal_path, sizeof r->journal_path, "%s/journal.ndjson", r->opt.out_dir);
    if (r->opt.resume && access(r->journal_path, F_OK) != 0) {
        /* Interrupted before its journal existed: nothing was sent anywhere, start it. */
        log_info("no journal at %s yet: starting the run", r->journal_path);
        r->opt.resume = false;
        r->opt.force = true;
    }
    if (!r->opt.resume && earlier_outputs(r, err) != 0)
        return -1;
    /* A damaged journal stops the resume before the results file is opened anew. */
    if (r->opt.resume && recovery_preflight(r, r->journal_path, r->opt.salvage, err) != 0)
        return -1;
    if (results_open(&r->results, &r->out, "results.ndjson", err) != 0)
        return -1;
    r->results_open = true;
    if (r->opt.resume) {
        if (recovery_resume(r, r->journal_path, r->opt.retry_failed, err) != 0)
            return -1;
    } else if (!r->opt.no_journal && recovery_start(r, r->journal_path, err) != 0) {
        return -1; /* the wrapping key is made by the first export request, if any */
    }
    r->ca.cfg = r->cfg;
    r->ca.tokens = r->hsm->tokens;
    r->ca.token_count = r->hsm->token_count;
    r->ca.inflight = r->opt.inflight;
    if (connectors_open(&r->ca, err) != 0)
        return -1;
    if (r->opt.metrics_listen != NULL) {
        r->metrics = metrics_http_start(r->opt.metrics_listen, run_metrics_render, r, err);
        if (r->metrics == NULL)
            return -1;
        log_info("metrics at http://%.*s:%u/metrics",
                 (int)(strrchr(r->opt.metrics_listen, ':') - r->opt.metrics_listen),
                 r->opt.metrics_listen, metrics_http_port(r->metrics));
    }
    log_verbose("%d CPU workers, %zu key token(s), module %s", r->opt.workers,
                s->hsm.key_token_count, hsm_module_path(s->hsm.module));
    return 0;
}

int run_execute(run *r, enroll_error *err)
{
    clock_gettime(CLOCK_MONOTONIC, &r->started);
    uint64_t t0 = run_clock_ns();
    int rc = pipeline_run(r, err);
    r->seconds = (run_clock_ns() - t0) / 1e9;
    return rc;
}

bool run_stop(run *r)
{
    return atomic_exchange(&r->stop, 1) != 0;
}

int run_finish(run *r)
{
    connectors_close(&r->ca); /* every job is done */
    if (recovery_close(r) != 0) {
        log_error("the journal could not be written whole");
        atomic_store(&r->stop, 1);
    }
    int exit_code = atomic_load(&r->stats.failed) + atomic_load(&r->stats.earlier_failed) +
                                atomic_load(&r->stats.uncertain) >
                            0
                        ? EXIT_SOME_FAILED
                        : EXIT_ALL_DONE;
    if (atomic_load(&r->stop))
        exit_code = EXIT_STOPPED;
    if (r->results_open) {
        r->results_open = false;
        if (results_close(&r->results) != 0) {
            log_error("cannot write %s/results.ndjson", r->out.path);
            exit_code = EXIT_NOTHING_DONE;
        }
    }
    return exit_code;
}

void run_get_summary(run *r, run_summary *out)
{
    memset(out, 0, sizeof *out);
    out->issued = atomic_load(&r->stats.issued);
    out->failed = atomic_load(&r->stats.failed);
    out->pending = atomic_load(&r->stats.pending);
    out->skipped = atomic_load(&r->stats.skipped);
    out->earlier_failed = atomic_load(&r->stats.earlier_failed);
    out->abandoned = atomic_load(&r->stats.abandoned);
    out->not_started = atomic_load(&r->stop) ? r->stats.not_started : 0;
    out->seconds = r->seconds;
    long total = out->issued + out->failed + out->pending;
    for (int s = 0; s < STAGE_COUNT; s++)
        out->stage_mean_ms[s] =
            atomic_load(&r->stats.stage_ns[s]) / 1e6 / (double)(total ? total : 1);
    out->uncertain = atomic_load(&r->stats.uncertain);
    out->exit_code =
        out->failed + out->earlier_failed + out->uncertain > 0 ? EXIT_SOME_FAILED : EXIT_ALL_DONE;
    if (atomic_load(&r->stop))
        out->exit_code = EXIT_STOPPED;
    out->out_dir = r->out.path;
}

json_t *run_stats_json(run *r)
{
    run_summary sum;
    run_get_summary(r, &sum);
    const latency_histogram *h = &r->stats.latency;
    long total = sum.issued + sum.failed + sum.pending;
    json_t *stages = json_object();
    for (int s = 0; s < STAGE_COUNT; s++)
        json_object_set_new(stages, run_stage_name(s), json_real(sum.stage_mean_ms[s]));
    uint64_t n = atomic_load(&h->total);
    json_t *latency = json_pack(
        "{s:f, s:f, s:f, s:f, s:f}", "Mean", n ? atomic_load(&h->sum_ns) / 1e6 / (double)n : 0.0,
        "P50", latency_quantile(h, 0.50) / 1e6, "P95", latency_quantile(h, 0.95) / 1e6, "P99",
        latency_quantile(h, 0.99) / 1e6, "Max", latency_quantile(h, 1.0) / 1e6);
    json_t *cdf = json_array();
    uint64_t seen = 0;
    for (int i = 0; i < LATENCY_BUCKETS && n > 0; i++) {
        uint64_t c = atomic_load(&h->counts[i]);
        if (c == 0)
            continue;
        seen += c;
        json_array_append_new(
            cdf, json_pack("[f, f]", latency_bucket_low(i) / 1e6, (double)seen / (double)n));
    }
    uint64_t first = atomic_load(&r->stats.first_issued_ns);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double seconds = sum.seconds;
    json_t *doc = json_pack(
        "{s:I, s:I, s:I, s:f, s:f, s:o, s:o, s:o, s:o, s:f, s:i, s:i, s:i}", "Requests",
        (json_int_t)total, "Issued", (json_int_t)sum.issued, "Failed", (json_int_t)sum.failed,
        "Seconds", seconds, "CertificatesPerSecond", seconds > 0 ? sum.issued / seconds : 0.0,
        "FirstCertificateMs", first ? json_real((first - r->entered_ns) / 1e6) : json_null(),
        "LatencyMs", latency, "StageMeanMs", stages, "LatencyCdf", cdf, "PeakRssMiB",
        ru.ru_maxrss / 1024.0, "Workers", r->opt.workers, "HsmLanes", (int)r->lanes,
        "HsmLanesFirst", r->lanes_first);
    /* The module's busy answers (engine/throttle.h): met, slow-downs, fewest operations in
     * flight. Only when there were any. */
    if (doc != NULL && atomic_load(&r->throttle.answers) > 0)
        json_object_set_new(doc, "HsmBusy",
                            json_pack("{s:I, s:I, s:i}", "Answers",
                                      (json_int_t)atomic_load(&r->throttle.answers), "Slowdowns",
                                      (json_int_t)atomic_load(&r->throttle.slowdowns),
                                      "LowestInFlight", atomic_load(&r->throttle.lowest)));
    return doc;
}

void run_close(run *r)
{
    if (r == NULL)
        return;
    metrics_http_stop(r->metrics); /* before what it reads goes */
    if (r->results_open)
        results_close(&r->results);
    connectors_close(&r->ca);
    recovery_close(r);
    json_decref(r->earlier_results);
    output_dir_close(&r->out);
    if (r->reader_open)
        ndjson_close(&r->reader);
    if (r->setup_done)
        setup_free(&r->setup);
    pthread_mutex_destroy(&r->failures_lock);
    run_metrics_free(r);
    free(r);
}

unsigned run_metrics_port(const run *r)
{
    return r != NULL ? metrics_http_port(r->metrics) : 0;
}
