/* The run's live metrics: stage histograms, error codes, requests in the HSM and at each CA,
 * rendered as Prometheus text (exposition format 0.0.4), and the progress line's bottleneck. */
#include "engine/metrics.h"

#include <string.h>

#include "ca/connector.h"

/* Upper bounds of the stage histograms, in seconds (then +Inf). */
static const double bucket_le[RUN_METRICS_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

const char *run_stage_name(run_stage stage)
{
    static const char *const names[STAGE_COUNT] = {"Parse",  "Keygen", "Csr",    "Submit",
                                                   "Bundle", "Write",  "Journal"};
    return stage >= 0 && stage < STAGE_COUNT ? names[stage] : "?";
}

void run_metrics_init(run *r)
{
    pthread_mutex_init(&r->stats.codes_lock, NULL);
}

void run_metrics_free(run *r)
{
    pthread_mutex_destroy(&r->stats.codes_lock);
}

void run_metrics_stage(run *r, run_stage stage, uint64_t ns)
{
    atomic_fetch_add(&r->stats.stage_ns[stage], ns);
    double s = (double)ns / 1e9;
    int b = 0;
    while (b < RUN_METRICS_BUCKETS && s > bucket_le[b])
        b++;
    atomic_fetch_add(&r->stats.stage_buckets[stage][b], 1);
}

void run_metrics_error(run *r, const char *code)
{
    if (strncmp(code, "HSM_", 4) == 0)
        atomic_fetch_add(&r->stats.hsm_errors, 1);
    pthread_mutex_lock(&r->stats.codes_lock);
    int i = 0;
    while (i < RUN_METRICS_CODES - 1 && r->stats.codes[i][0] != '\0' &&
           strcmp(r->stats.codes[i], code) != 0)
        i++;
    if (r->stats.codes[i][0] == '\0')
        snprintf(r->stats.codes[i], sizeof r->stats.codes[i], "%s",
                 i == RUN_METRICS_CODES - 1 ? "OTHER" : code);
    r->stats.code_counts[i]++;
    pthread_mutex_unlock(&r->stats.codes_lock);
}

/* A label value: backslash, quote and newline escaped. */
static void label(FILE *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fputc('\\', out);
        if (*v == '\n')
            fputs("\\n", out);
        else
            fputc(*v, out);
    }
}

static long ca_waiting(run *r)
{
    long n = 0;
    size_t cas = r->cfg->ca_count < RUN_METRICS_CAS ? r->cfg->ca_count : RUN_METRICS_CAS;
    for (size_t i = 0; i < cas; i++)
        if (r->cfg->cas[i].type != CA_TYPE_LOCAL)
            n += atomic_load(&r->stats.ca_in_flight[i]);
    return n;
}

const char *run_metrics_bottleneck(run *r)
{
    long lanes = r->lanes > 0 ? r->lanes : 1;
    long busy = atomic_load(&r->stats.hsm_busy);
    long waiting = ca_waiting(r);
    if (r->ca.http != NULL && waiting >= (long)r->opt.inflight * 9 / 10 && waiting > 0)
        return "CA";
    if (busy >= lanes * 9 / 10 && busy > 0)
        return "HSM";
    if (waiting > busy && waiting >= lanes)
        return "CA";
    return "CPU";
}

void run_metrics_render(FILE *out, void *arg)
{
    run *r = arg;
    run_stats *st = &r->stats;
    fputs("# HELP hsmenroll_requests_total Requests finished, by status.\n"
          "# TYPE hsmenroll_requests_total counter\n",
          out);
    static const char *const names[] = {"issued", "failed", "pending", "skipped"};
    long values[] = {atomic_load(&st->issued), atomic_load(&st->failed), atomic_load(&st->pending),
                     atomic_load(&st->skipped)};
    for (int i = 0; i < 4; i++)
        fprintf(out, "hsmenroll_requests_total{status=\"%s\"} %ld\n", names[i], values[i]);
    fputs("# HELP hsmenroll_request_errors_total Failed requests, by error code.\n"
          "# TYPE hsmenroll_request_errors_total counter\n",
          out);
    pthread_mutex_lock(&st->codes_lock);
    for (int i = 0; i < RUN_METRICS_CODES && st->codes[i][0] != '\0'; i++) {
        fputs("hsmenroll_request_errors_total{code=\"", out);
        label(out, st->codes[i]);
        fprintf(out, "\"} %ld\n", st->code_counts[i]);
    }
    pthread_mutex_unlock(&st->codes_lock);
    fprintf(out,
            "# HELP hsmenroll_hsm_errors_total Requests failed by the HSM (HSM_* codes).\n"
            "# TYPE hsmenroll_hsm_errors_total counter\nhsmenroll_hsm_errors_total %ld\n",
            atomic_load(&st->hsm_errors));
    fprintf(out,
            "# HELP hsmenroll_hsm_in_flight Requests in an HSM key stage now.\n"
            "# TYPE hsmenroll_hsm_in_flight gauge\nhsmenroll_hsm_in_flight %ld\n"
            "# HELP hsmenroll_hsm_lanes HSM operations that may be in flight.\n"
            "# TYPE hsmenroll_hsm_lanes gauge\nhsmenroll_hsm_lanes %d\n",
            atomic_load(&st->hsm_busy), r->lanes);
    fputs("# HELP hsmenroll_ca_in_flight Requests sent to a CA and not answered yet.\n"
          "# TYPE hsmenroll_ca_in_flight gauge\n",
          out);
    size_t cas = r->cfg->ca_count < RUN_METRICS_CAS ? r->cfg->ca_count : RUN_METRICS_CAS;
    for (size_t i = 0; i < cas; i++) {
        fputs("hsmenroll_ca_in_flight{ca=\"", out);
        label(out, r->cfg->cas[i].name);
        fprintf(out, "\"} %ld\n", atomic_load(&st->ca_in_flight[i]));
    }
    fputs("# HELP hsmenroll_ca_retries_total Attempts to a network CA made again (429s "
          "included).\n# TYPE hsmenroll_ca_retries_total counter\n",
          out);
    for (size_t i = 0; i < cas; i++) {
        ca_net_counters c;
        if (connector_net_counters(&r->ca, i, &c) != 0)
            continue;
        fputs("hsmenroll_ca_retries_total{ca=\"", out);
        label(out, r->cfg->cas[i].name);
        fprintf(out, "\"} %lu\n", c.retries);
        fputs("hsmenroll_ca_throttled_total{ca=\"", out);
        label(out, r->cfg->cas[i].name);
        fprintf(out, "\"} %lu\n", c.throttled);
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double elapsed = r->started.tv_sec == 0 ? 0
                                            : (double)(now.tv_sec - r->started.tv_sec) +
                                                  (double)(now.tv_nsec - r->started.tv_nsec) / 1e9;
    fprintf(out,
            "# HELP hsmenroll_certificates_per_second Certificates issued per second since the "
            "pipeline started.\n# TYPE hsmenroll_certificates_per_second gauge\n"
            "hsmenroll_certificates_per_second %.3f\n",
            elapsed > 0 ? (double)atomic_load(&st->issued) / elapsed : 0.0);
    fputs("# HELP hsmenroll_stage_seconds Time of one request in one stage.\n"
          "# TYPE hsmenroll_stage_seconds histogram\n",
          out);
    for (int s = 0; s < STAGE_COUNT; s++) {
        uint64_t cum = 0;
        for (int b = 0; b <= RUN_METRICS_BUCKETS; b++) {
            cum += atomic_load(&st->stage_buckets[s][b]);
            if (b < RUN_METRICS_BUCKETS)
                fprintf(out, "hsmenroll_stage_seconds_bucket{stage=\"%s\",le=\"%g\"} %llu\n",
                        run_stage_name(s), bucket_le[b], (unsigned long long)cum);
            else
                fprintf(out, "hsmenroll_stage_seconds_bucket{stage=\"%s\",le=\"+Inf\"} %llu\n",
                        run_stage_name(s), (unsigned long long)cum);
        }
        fprintf(out, "hsmenroll_stage_seconds_sum{stage=\"%s\"} %.9f\n", run_stage_name(s),
                (double)atomic_load(&st->stage_ns[s]) / 1e9);
        fprintf(out, "hsmenroll_stage_seconds_count{stage=\"%s\"} %llu\n", run_stage_name(s),
                (unsigned long long)cum);
    }
}
