/* `hsmenroll run`: set-up (configuration, tokens, login, CAs, output directory), the pipeline,
 * the summary and the exit code. Nothing is written to OUTDIR before the HSM login succeeded. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "batch/log.h"
#include "engine/run.h"

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
    "      --home DIR          engine home of the embedded default (default $HSMENROLL_HOME,\n"
    "                          else ${XDG_DATA_HOME:-~/.local/share}/hsmenroll)\n"
    "  -w, --workers N         threads for the CPU-heavy stages (PBKDF2, bundles; default: one\n"
    "                          per CPU)\n"
    "      --hsm-concurrency N HSM operations in flight: lanes with their own PKCS#11\n"
    "                          sessions (default Hsm.Concurrency, else 32, within the token's\n"
    "                          session limit; at least --workers)\n"
    "      --inflight M        requests in flight to network CAs (default 64)\n"
    "      --metrics-listen A:P  serve Prometheus metrics at http://A:P/metrics during the run\n"
    "      --ca NAME           CA for lines that name none (\"host\\\\logical\" or \"logical\")\n"
    "      --template NAME     template for lines that name neither Template nor\n"
    "                          EnrollmentPatternId\n"
    "      --pattern ID        enrollment pattern for such lines\n"
    "      --progress WHEN     auto (on a terminal), always or never\n"
    "      --force             start over in an OUTDIR that already holds results.ndjson\n"
    "      --resume            continue the interrupted run of OUTDIR from its journal: what\n"
    "                          was done is skipped, what was issued is delivered, the rest is\n"
    "                          done, nothing twice\n"
    "      --retry-failed      with --resume: also try again the requests that failed, and\n"
    "                          those left uncertain with a CA that answers a repeat once\n"
    "      --salvage           with --resume: a damaged journal keeps every record it can\n"
    "                          verify; requests whose records were lost are left alone\n"
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
    "  -v, --verbose           details: each failed line, stage times (-vv: debug: each\n"
    "                          request's stages, PKCS#11 calls, HTTP requests to a CA)\n"
    "      --log-format FMT    text (default) or json: one JSON object a log line\n"
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
    if (r == NULL || run_stop(r)) {
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

/* The command that finishes a stopped run: the same batch, output, configuration, home,
 * journal, shard and defaults, with --resume. */
static void resume_command(const run_options *opt, char *buf, size_t size)
{
    buf[0] = '\0';
    cli_append_word(buf, size, cli_program);
    cli_append_word(buf, size, "run");
    cli_append_word(buf, size, opt->batch_path);
    const char *pairs[][2] = {
        {"-o", opt->out_dir},      {"--config", opt->config_path},
        {"--home", opt->home},     {"--journal", opt->journal_path},
        {"--ca", opt->default_ca}, {"--template", opt->default_template},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        if (pairs[i][1] != NULL) {
            cli_append_word(buf, size, pairs[i][0]);
            cli_append_word(buf, size, pairs[i][1]);
        }
    char number[48];
    if (opt->default_pattern >= 0) {
        snprintf(number, sizeof number, "%lld", opt->default_pattern);
        cli_append_word(buf, size, "--pattern");
        cli_append_word(buf, size, number);
    }
    if (shard_format(&opt->shard, number, sizeof number) != NULL) {
        cli_append_word(buf, size, "--shard");
        cli_append_word(buf, size, number);
    }
    cli_append_word(buf, size, "--resume");
}

static void print_stopped(const run_options *opt, const run_summary *sum)
{
    char command[8192];
    resume_command(opt, command, sizeof command);
    char not_started[64] = "the rest of the batch";
    if (sum->not_started >= 0)
        snprintf(not_started, sizeof not_started, "%ld request%s", sum->not_started,
                 sum->not_started == 1 ? "" : "s");
    log_warning("stopped before the end: %s not started%s%s; finish the run with: %s", not_started,
                sum->abandoned > 0 ? ", some left half-done" : "",
                strcmp(opt->batch_path, "-") == 0 ? " (give the same standard input again)" : "",
                command);
}

/* The failures by code, with the first line of each, so that a failed request is never only a
 * number; every line's own error is in results.ndjson (and shown with -v). */
static void print_failures(run *r, const run_summary *sum)
{
    run_failure_code codes[8];
    size_t n = run_get_failures(r, codes, 8);
    for (size_t i = 0; i < n && i < 8; i++) {
        char count[24], line[24];
        snprintf(count, sizeof count, "%ld", codes[i].count);
        snprintf(line, sizeof line, "%ld", codes[i].first_line);
        const char *fields[] = {"code", codes[i].code, "count",           count, "line",
                                line,   "id",          codes[i].first_id, NULL};
        log_fields(LOG_WARNING, fields, "%ld failed with %s, first line %ld%s%s: %s",
                   codes[i].count, codes[i].code, codes[i].first_line,
                   codes[i].first_id[0] ? " " : "", codes[i].first_id, codes[i].first_message);
    }
    if (n > 8)
        log_warning("and %zu more codes", n - 8);
    if (n > 0)
        log_warning("every failed line's error is in %s/results.ndjson (-v lists them here)",
                    sum->out_dir);
}

static void print_summary(const run_summary *sum)
{
    char pending_text[160] = "";
    int used = 0;
    if (sum->pending > 0)
        used += snprintf(pending_text, sizeof pending_text, ", %ld pending", sum->pending);
    if (sum->skipped > 0)
        used += snprintf(pending_text + used, sizeof pending_text - (size_t)used,
                         ", %ld done before", sum->skipped);
    if (sum->uncertain > 0)
        used += snprintf(pending_text + used, sizeof pending_text - (size_t)used, ", %ld uncertain",
                         sum->uncertain);
    if (sum->abandoned > 0)
        snprintf(pending_text + used, sizeof pending_text - (size_t)used, ", %ld left for --resume",
                 sum->abandoned);
    long total = sum->issued + sum->failed + sum->pending;
    double seconds = sum->seconds;
    log_info("%ld request%s: %ld issued%s, %ld failed in %.2f s (%.1f certificates/s); results "
             "in %s/results.ndjson",
             total, total == 1 ? "" : "s", sum->issued, pending_text, sum->failed, seconds,
             seconds > 0 ? sum->issued / seconds : 0.0, sum->out_dir);
    char line[256];
    int n = 0;
    for (int s = 0; s < STAGE_COUNT; s++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%s %.1f ms", s ? ", " : "",
                      run_stage_name(s), sum->stage_mean_ms[s]);
    log_verbose("mean time per request by stage: %s", line);
}

int cli_run(int argc, char **argv)
{
    const char *stats_path = NULL;
    static const struct option options[] = {
        {"out", required_argument, NULL, 'o'},
        {"config", required_argument, NULL, 'c'},
        {"home", required_argument, NULL, 'H'},
        {"workers", required_argument, NULL, 'w'},
        {"inflight", required_argument, NULL, 'i'},
        {"hsm-concurrency", required_argument, NULL, 'C'},
        {"metrics-listen", required_argument, NULL, 'm'},
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
        {"salvage", no_argument, NULL, 'V'},
        {"journal", required_argument, NULL, 'J'},
        {"no-journal", no_argument, NULL, 'N'},
        {"stats-json", required_argument, NULL, 'S'},
        {"rate", required_argument, NULL, 'r'},
        {"shard", required_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    run_options opt = {.out_dir = "out", .inflight = 64, .default_pattern = -1};
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
        case 'o': /* "out/" is "out": messages then name out/results.ndjson, not out//... */
            for (size_t n = strlen(optarg); n > 1 && optarg[n - 1] == '/'; n--)
                optarg[n - 1] = '\0';
            opt.out_dir = optarg;
            break;
        case 'w':
            if (parse_int(optarg, 1, 1024, &value) != 0) {
                cli_say("hsmenroll run: --workers takes a number from 1 to 1024\n");
                return EXIT_NOTHING_DONE;
            }
            opt.workers = (int)value;
            break;
        case 'm':
            opt.metrics_listen = optarg;
            break;
        case 'C':
            if (parse_int(optarg, 1, 1024, &value) != 0) {
                cli_say("hsmenroll run: --hsm-concurrency takes a number from 1 to 1024\n");
                return EXIT_NOTHING_DONE;
            }
            opt.hsm_concurrency = (int)value;
            break;
        case 'i':
            if (parse_int(optarg, 1, 100000, &value) != 0) {
                cli_say("hsmenroll run: --inflight takes a number from 1 to 100000\n");
                return EXIT_NOTHING_DONE;
            }
            opt.inflight = (int)value;
            break;
        case 'A':
            opt.default_ca = optarg;
            break;
        case 'T':
            opt.default_template = optarg;
            break;
        case 'P':
            if (parse_int(optarg, 0, INT64_MAX, &value) != 0) {
                cli_say("hsmenroll run: --pattern takes a pattern Id\n");
                return EXIT_NOTHING_DONE;
            }
            opt.default_pattern = value;
            break;
        case 'p':
            if (strcmp(optarg, "auto") == 0)
                opt.progress = PROGRESS_AUTO;
            else if (strcmp(optarg, "always") == 0)
                opt.progress = PROGRESS_ALWAYS;
            else if (strcmp(optarg, "never") == 0)
                opt.progress = PROGRESS_NEVER;
            else {
                cli_say("hsmenroll run: --progress is auto, always or never\n");
                return EXIT_NOTHING_DONE;
            }
            break;
        case 'f':
            opt.force = true;
            break;
        case 'R':
            opt.resume = true;
            break;
        case 'F':
            opt.retry_failed = true;
            break;
        case 'V':
            opt.salvage = true;
            break;
        case 'J':
            opt.journal_path = optarg;
            break;
        case 'N':
            opt.no_journal = true;
            break;
        case 'S':
            stats_path = optarg;
            break;
        case 'D':
            if (shard_parse(optarg, &opt.shard) != 0) {
                cli_say("hsmenroll run: --shard takes I/N, 0 <= I < N <= 65536 (e.g. "
                        "--shard 2/8)\n");
                return EXIT_NOTHING_DONE;
            }
            break;
        case 'r': {
            char *end;
            double rate = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || !(rate >= 0.001 && rate <= 1e7)) {
                cli_say("hsmenroll run: --rate takes requests per second, 0.001 to "
                        "10000000\n");
                return EXIT_NOTHING_DONE;
            }
            opt.rate = rate;
            break;
        }
        }
    }
    if (optind != argc - 1) {
        return cli_usage_error(run_usage, "give exactly one batch file (or - for standard input)");
    }
    opt.batch_path = argv[optind];
    opt.config_path = common.config_path;
    opt.home = common.home;
    cli_set_verbosity(common.quiet, common.verbose);
    if (((opt.retry_failed || opt.salvage) && !opt.resume) || (opt.resume && opt.force) ||
        (opt.no_journal && (opt.resume || opt.journal_path))) {
        cli_say("hsmenroll run: --retry-failed and --salvage need --resume; --resume "
                "excludes --force; "
                "--no-journal excludes --resume and --journal\n");
        return EXIT_NOTHING_DONE;
    }
    char results_path[4096], journal_path[4096];
    snprintf(results_path, sizeof results_path, "%s/results.ndjson", opt.out_dir);
    snprintf(journal_path, sizeof journal_path, "%s/journal.ndjson", opt.out_dir);
    const char *outputs[][2] = {
        {results_path, "results file"},
        {opt.journal_path ? opt.journal_path : journal_path, "journal"},
        {stats_path, "--stats-json file"},
    };
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++)
        if (cli_refuse_overlap("run", opt.batch_path, "the batch", outputs[i][0], outputs[i][1]) !=
                0 ||
            cli_refuse_overlap("run", opt.config_path, "the configuration", outputs[i][0],
                               outputs[i][1]) != 0)
            return EXIT_NOTHING_DONE;
    if (stats_path != NULL && (cli_refuse_overlap("run", stats_path, "the --stats-json file",
                                                  results_path, "results file") != 0 ||
                               cli_refuse_overlap("run", stats_path, "the --stats-json file",
                                                  outputs[1][0], "journal") != 0))
        return EXIT_NOTHING_DONE;
    if (strcmp(opt.batch_path, "-") != 0 && access(opt.batch_path, R_OK) != 0) {
        log_error("cannot read batch %s: %s", opt.batch_path, strerror(errno));
        return EXIT_NOTHING_DONE;
    }

    run *r = NULL;
    enroll_error err;
    enroll_error_clear(&err);
    exit_code = EXIT_NOTHING_DONE;
    if (run_open(&r, &opt, &err) != 0)
        goto done;
    install_stop_signals(r); /* from here on a signal leaves the run resumable */
    if (run_execute(r, &err) != 0)
        goto done;
    exit_code = run_finish(r);
    run_summary sum;
    run_get_summary(r, &sum);
    print_summary(&sum);
    print_failures(r, &sum);
    if (exit_code == EXIT_STOPPED)
        print_stopped(&opt, &sum);
    if (stats_path != NULL) {
        json_t *doc = run_stats_json(r);
        if (doc == NULL ||
            json_dump_file(doc, stats_path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
            log_error("cannot write %s", stats_path);
        json_decref(doc);
    }
done:
    if (err.code[0] != '\0')
        log_error("%s", err.message);
    stop_target = NULL;
    run_close(r);
    return exit_code;
}
