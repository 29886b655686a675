/* `hsmenroll run`: set-up (configuration, tokens, login, CAs, output directory), the pipeline,
 * the summary and the exit code. Nothing is written to OUTDIR before the HSM login succeeded. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"
#include "connector.h"
#include "log.h"
#include "pipeline.h"
#include "recovery.h"
#include "setup.h"

static const char run_usage[] =
    "usage: hsmenroll run BATCH.ndjson|- [options]\n"
    "\n"
    "Enrolls every request line of BATCH (NDJSON, one Keyfactor-style request per line; '-' reads\n"
    "standard input): a key pair generated in the HSM, a CSR signed there, the certificate from\n"
    "the CA, and the bundle written to OUTDIR as <Id>.pfx, <Id>.pem or <Id>.der, with one result\n"
    "line per request in OUTDIR/results.ndjson.\n"
    "\n"
    "options:\n"
    "  -o, --out OUTDIR        output directory (default ./out; created if missing)\n"
    "  -c, --config FILE       configuration document (default: the embedded default)\n"
    "      --home DIR          engine home of the embedded default (default ./.hsmenroll,\n"
    "                          or $HSMENROLL_HOME)\n"
    "  -w, --workers N         worker threads, each with its own PKCS#11 session (default: one\n"
    "                          per CPU)\n"
    "      --inflight M        requests in flight to network CAs (default 64)\n"
    "      --ca NAME           CA for lines that name none (\"host\\\\logical\" or \"logical\")\n"
    "      --template NAME     template for lines that name neither Template nor\n"
    "                          EnrollmentPatternId\n"
    "      --pattern ID        enrollment pattern for such lines\n"
    "      --progress WHEN     auto (on a terminal), always or never\n"
    "      --force             start over in an OUTDIR that already holds results.ndjson\n"
    "      --resume            continue the interrupted run of OUTDIR from its journal: what\n"
    "                          was done is skipped, what was issued is delivered, the rest is\n"
    "                          done, nothing twice\n"
    "      --retry-failed      with --resume: also try again the requests that failed\n"
    "      --journal FILE      the run's journal (default OUTDIR/journal.ndjson)\n"
    "      --no-journal        no journal: faster to start, but the run cannot be resumed\n"
    "      --shard I/N         take only shard I (0 to N-1) of the batch: the lines whose Id\n"
    "                          hashes to I (SHA-256 mod N; lines without an Id by line\n"
    "                          number), so N engines reading the same file share it out;\n"
    "                          each needs its own OUTDIR (see `hsmenroll merge`)\n"
    "      --rate R            admit R requests per second at most, on a fixed schedule (to\n"
    "                          spare a CA, or to benchmark one: latency counts from each\n"
    "                          request's scheduled time, so a stalled CA shows in it)\n"
    "      --stats-json FILE   write the run's figures there: rate, latency percentiles and\n"
    "                          CDF, mean time per stage, time to the first certificate, RSS\n"
    "  -q, --quiet             errors only\n"
    "  -v, --verbose           more detail (twice: debug, including each failed line)\n"
    "  -h, --help              this text\n"
    "\n"
    "PIN: $HSMENROLL_PIN (or the variable the configuration names in Hsm.PinEnv), else the PIN\n"
    "file (Hsm.PinFile; for the embedded default HOME/pin, generated on first use).\n"
    "Exit status: 0 every request issued, 1 some requests failed (the others were issued),\n"
    "2 nothing done (usage, configuration, HSM module or login, output directory), 3 stopped\n"
    "early (SIGINT/SIGTERM, full disk): run again with --resume to finish.\n"
    "SIGINT or SIGTERM: no new lines are taken, the requests in progress are finished; a\n"
    "second signal stops at once (still resumable).\n";

/* SIGINT/SIGTERM: the first asks the reader to take no new lines (the requests in progress are
 * finished and journaled); the second ends the process at once, which the journal survives. */
static run *volatile stop_target;

static void on_stop_signal(int sig)
{
    (void)sig;
    run *r = stop_target;
    if (r == NULL || atomic_exchange(&r->stop, 1) != 0) {
        static const char msg[] = "hsmenroll: stopped at once; run again with --resume\n";
        (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
        _exit(EXIT_STOPPED);
    }
    static const char msg[] = "hsmenroll: stopping: finishing the requests in progress (again "
                              "to stop at once)\n";
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
}

static void install_stop_signals(run *r)
{
    stop_target = r;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void print_summary(run *r, double seconds)
{
    long issued = atomic_load(&r->stats.issued), failed = atomic_load(&r->stats.failed);
    long pending = atomic_load(&r->stats.pending);
    char pending_text[160] = "";
    int used = 0;
    if (pending > 0)
        used += snprintf(pending_text, sizeof pending_text, ", %ld pending", pending);
    long skipped = atomic_load(&r->stats.skipped), abandoned = atomic_load(&r->stats.abandoned);
    if (skipped > 0)
        used += snprintf(pending_text + used, sizeof pending_text - (size_t)used,
                         ", %ld done before", skipped);
    if (abandoned > 0)
        snprintf(pending_text + used, sizeof pending_text - (size_t)used, ", %ld left for --resume",
                 abandoned);
    long total = issued + failed + pending;
    log_info("%ld request%s: %ld issued%s, %ld failed in %.2f s (%.1f certificates/s); results "
             "in %s/results.ndjson",
             total, total == 1 ? "" : "s", issued, pending_text, failed, seconds,
             seconds > 0 ? issued / seconds : 0.0, r->out.path);
    char line[256];
    int n = 0;
    for (int s = 0; s < STAGE_COUNT; s++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%s %.1f ms", s ? ", " : "",
                      run_stage_name(s),
                      atomic_load(&r->stats.stage_ns[s]) / 1e6 / (total ? total : 1));
    log_debug("mean time per request by stage: %s", line);
}

/* The run's figures as one JSON object (run --stats-json, and what `bench` reads): rate,
 * latency percentiles and CDF, mean time per stage, time to the first certificate, peak RSS. */
static int write_stats(run *r, const char *path, double seconds, uint64_t entered)
{
    const latency_histogram *h = &r->stats.latency;
    long issued = atomic_load(&r->stats.issued), failed = atomic_load(&r->stats.failed);
    long total = issued + failed + atomic_load(&r->stats.pending);
    json_t *stages = json_object();
    for (int s = 0; s < STAGE_COUNT; s++)
        json_object_set_new(
            stages, run_stage_name(s),
            json_real(atomic_load(&r->stats.stage_ns[s]) / 1e6 / (double)(total ? total : 1)));
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
    json_t *doc =
        json_pack("{s:I, s:I, s:I, s:f, s:f, s:o, s:o, s:o, s:o, s:f, s:i}", "Requests",
                  (json_int_t)total, "Issued", (json_int_t)issued, "Failed", (json_int_t)failed,
                  "Seconds", seconds, "CertificatesPerSecond", seconds > 0 ? issued / seconds : 0.0,
                  "FirstCertificateMs", first ? json_real((first - entered) / 1e6) : json_null(),
                  "LatencyMs", latency, "StageMeanMs", stages, "LatencyCdf", cdf, "PeakRssMiB",
                  ru.ru_maxrss / 1024.0, "Workers", r->opt.workers);
    int rc = doc ? json_dump_file(doc, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : -1;
    json_decref(doc);
    return rc;
}

int cli_run(int argc, char **argv)
{
    uint64_t entered = run_clock_ns();
    const char *stats_path = NULL;
    static const struct option options[] = {
        {"out", required_argument, NULL, 'o'},
        {"config", required_argument, NULL, 'c'},
        {"home", required_argument, NULL, 'H'},
        {"workers", required_argument, NULL, 'w'},
        {"inflight", required_argument, NULL, 'i'},
        {"ca", required_argument, NULL, 'A'},
        {"template", required_argument, NULL, 'T'},
        {"pattern", required_argument, NULL, 'P'},
        {"progress", required_argument, NULL, 'p'},
        {"force", no_argument, NULL, 'f'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"resume", no_argument, NULL, 'R'},
        {"retry-failed", no_argument, NULL, 'F'},
        {"journal", required_argument, NULL, 'J'},
        {"no-journal", no_argument, NULL, 'N'},
        {"stats-json", required_argument, NULL, 'S'},
        {"rate", required_argument, NULL, 'r'},
        {"shard", required_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    run r;
    memset(&r, 0, sizeof r);
    r.opt.out_dir = "out";
    r.opt.inflight = 64;
    r.opt.default_pattern = -1;
    cli_common common = {0};
    int c, exit_code;
    long long value;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT "o:w:", options, NULL)) != -1) {
        int handled = cli_common_option(c, optarg, run_usage, &common, &exit_code);
        if (handled < 0)
            return exit_code;
        if (handled)
            continue;
        switch (c) {
        case 'o':
            r.opt.out_dir = optarg;
            break;
        case 'w':
            if (parse_int(optarg, 1, 1024, &value) != 0) {
                fprintf(stderr, "hsmenroll run: --workers takes a number from 1 to 1024\n");
                return EXIT_NOTHING_DONE;
            }
            r.opt.workers = (int)value;
            break;
        case 'i':
            if (parse_int(optarg, 1, 100000, &value) != 0) {
                fprintf(stderr, "hsmenroll run: --inflight takes a number from 1 to 100000\n");
                return EXIT_NOTHING_DONE;
            }
            r.opt.inflight = (int)value;
            break;
        case 'A':
            r.opt.default_ca = optarg;
            break;
        case 'T':
            r.opt.default_template = optarg;
            break;
        case 'P':
            if (parse_int(optarg, 0, INT64_MAX, &value) != 0) {
                fprintf(stderr, "hsmenroll run: --pattern takes a pattern Id\n");
                return EXIT_NOTHING_DONE;
            }
            r.opt.default_pattern = value;
            break;
        case 'p':
            if (strcmp(optarg, "auto") == 0)
                r.opt.progress = PROGRESS_AUTO;
            else if (strcmp(optarg, "always") == 0)
                r.opt.progress = PROGRESS_ALWAYS;
            else if (strcmp(optarg, "never") == 0)
                r.opt.progress = PROGRESS_NEVER;
            else {
                fprintf(stderr, "hsmenroll run: --progress is auto, always or never\n");
                return EXIT_NOTHING_DONE;
            }
            break;
        case 'f':
            r.opt.force = true;
            break;
        case 'R':
            r.opt.resume = true;
            break;
        case 'F':
            r.opt.retry_failed = true;
            break;
        case 'J':
            r.opt.journal_path = optarg;
            break;
        case 'N':
            r.opt.no_journal = true;
            break;
        case 'S':
            stats_path = optarg;
            break;
        case 'D':
            if (shard_parse(optarg, &r.opt.shard) != 0) {
                fprintf(stderr, "hsmenroll run: --shard takes I/N, 0 <= I < N <= 65536 (e.g. "
                                "--shard 2/8)\n");
                return EXIT_NOTHING_DONE;
            }
            break;
        case 'r': {
            char *end;
            double rate = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || !(rate >= 0.001 && rate <= 1e7)) {
                fprintf(stderr, "hsmenroll run: --rate takes requests per second, 0.001 to "
                                "10000000\n");
                return EXIT_NOTHING_DONE;
            }
            r.opt.rate = rate;
            break;
        }
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "hsmenroll run: give exactly one batch file (or - for standard input)\n\n");
        fputs(run_usage, stderr);
        return EXIT_NOTHING_DONE;
    }
    r.opt.batch_path = argv[optind];
    cli_set_verbosity(common.quiet, common.verbose);
    install_stop_signals(&r); /* from here on a signal leaves the run resumable */
    if (r.opt.workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        r.opt.workers = n > 0 ? (int)n : 1;
    }
    if ((r.opt.retry_failed && !r.opt.resume) || (r.opt.resume && r.opt.force) ||
        (r.opt.no_journal && (r.opt.resume || r.opt.journal_path))) {
        fprintf(stderr, "hsmenroll run: --retry-failed needs --resume; --resume excludes --force; "
                        "--no-journal excludes --resume and --journal\n");
        return EXIT_NOTHING_DONE;
    }
    if (strcmp(r.opt.batch_path, "-") != 0 && access(r.opt.batch_path, R_OK) != 0) {
        log_error("cannot read batch %s: %s", r.opt.batch_path, strerror(errno));
        return EXIT_NOTHING_DONE;
    }

    engine_setup s;
    enroll_error err;
    enroll_error_clear(&err);
    exit_code = EXIT_NOTHING_DONE;
    bool results_open_ok = false;
    if (setup_config(&s, common.config_path, common.home, &err) != 0 ||
        setup_module(&s, s.embedded, &err) != 0 || setup_login(&s, &err) != 0 ||
        setup_local_cas(&s, s.embedded, &err) != 0)
        goto done;
    r.cfg = s.cfg;
    r.hsm = &s.hsm;
    r.defaults.template_name = r.opt.default_template;
    r.defaults.pattern_id = r.opt.default_pattern;
    r.defaults.password_length = s.cfg->settings.password_length;
    if (output_dir_open(&r.out, r.opt.out_dir, true, &err) != 0)
        goto done;
    char journal_path[4096];
    if (r.opt.journal_path != NULL)
        snprintf(journal_path, sizeof journal_path, "%s", r.opt.journal_path);
    else
        snprintf(journal_path, sizeof journal_path, "%s/journal.ndjson", r.opt.out_dir);
    if (r.opt.resume && access(journal_path, F_OK) != 0) {
        /* Interrupted before its journal existed: nothing was sent anywhere, start it. */
        log_info("no journal at %s yet: starting the run", journal_path);
        r.opt.resume = false;
        r.opt.force = true;
    }
    if (!r.opt.force && !r.opt.resume && faccessat(r.out.fd, "results.ndjson", F_OK, 0) == 0) {
        enroll_error_set(&err, "OUTPUT_DIR", NULL,
                         "%s already holds the results of a run: --resume to finish it, another "
                         "-o, or --force to start over",
                         r.opt.out_dir);
        goto done;
    }
    if (results_open(&r.results, &r.out, "results.ndjson", &err) != 0)
        goto done;
    results_open_ok = true;
    if (r.opt.resume) {
        if (recovery_resume(&r, journal_path, r.opt.retry_failed, &err) != 0)
            goto done;
    } else if (hsm_context_prepare_export(&s.hsm, &err) != 0 ||
               (!r.opt.no_journal && recovery_start(&r, journal_path, &err) != 0)) {
        goto done;
    }
    if (connectors_open(&r, &err) != 0)
        goto done;
    log_debug("%d workers, %zu key token(s), module %s", r.opt.workers, s.hsm.key_token_count,
              hsm_module_path(s.hsm.module));
    clock_gettime(CLOCK_MONOTONIC, &r.started);
    uint64_t t0 = run_clock_ns();
    if (pipeline_run(&r, &err) != 0)
        goto done;
    double seconds = (run_clock_ns() - t0) / 1e9;
    connectors_close(&r); /* every job is done */
    if (recovery_close(&r) != 0) {
        log_error("the journal could not be written whole");
        atomic_store(&r.stop, 1);
    }
    exit_code = atomic_load(&r.stats.failed) + atomic_load(&r.stats.earlier_failed) > 0
                    ? EXIT_SOME_FAILED
                    : EXIT_ALL_DONE;
    if (atomic_load(&r.stop))
        exit_code = EXIT_STOPPED;
    if (results_close(&r.results) != 0) {
        log_error("cannot write %s/results.ndjson", r.out.path);
        exit_code = EXIT_NOTHING_DONE;
    }
    results_open_ok = false;
    print_summary(&r, seconds);
    if (stats_path != NULL && write_stats(&r, stats_path, seconds, entered) != 0)
        log_error("cannot write %s", stats_path);
done:
    if (err.code[0] != '\0')
        log_error("%s", err.message);
    if (results_open_ok)
        results_close(&r.results);
    connectors_close(&r);
    recovery_close(&r);
    stop_target = NULL;
    output_dir_close(&r.out);
    setup_free(&s);
    return exit_code;
}
