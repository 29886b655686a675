/* The run API: one batch run from its options to its figures, as the `run` command, `bench` and
 * the tests drive it. run_open sets everything up (configuration, module, login, CAs, output
 * directory, journal) and writes nothing before the HSM login succeeded; run_execute runs the
 * pipeline; run_close frees it all. */
#ifndef HSMENROLL_ENGINE_RUN_H
#define HSMENROLL_ENGINE_RUN_H

#include <jansson.h>
#include <stdbool.h>

#include "batch/shard.h"
#include "formats/error.h"

typedef enum progress_mode { PROGRESS_AUTO = 0, PROGRESS_ALWAYS, PROGRESS_NEVER } progress_mode;

typedef struct run_options {
    const char *batch_path;  /* file, or "-" for standard input */
    const char *config_path; /* --config, or NULL: the embedded default */
    const char *home;        /* --home of the embedded default, or NULL */
    const char *out_dir;
    int workers;         /* CPU threads for the CPU-heavy stages (bundle); 0: one per CPU */
    int hsm_concurrency; /* HSM operations in flight (lanes, each with its own sessions); 0: the
                          * configuration's Hsm.Concurrency, else the default */
    int inflight;        /* requests in flight to network CAs (default 64) */
    const char *metrics_listen; /* "ADDR:PORT": serve Prometheus text at /metrics while the run
                                 * is open (port 0: any free one, see run_metrics_port) */
    const char *module;         /* PKCS#11 module replacing the configuration's Hsm.Module (bench's
                                 * latency wrapper), or NULL */
    const char *default_ca;
    const char *default_template;
    long long default_pattern; /* -1: none */
    progress_mode progress;
    bool force;               /* start over in an OUTDIR that holds results */
    bool resume;              /* continue the run journaled in OUTDIR (or journal_path) */
    bool retry_failed;        /* with resume: requests that failed are tried again */
    bool salvage;             /* with resume: a damaged journal keeps what it can verify */
    bool no_journal;          /* no journal (benchmarks of its cost); the run cannot be resumed */
    const char *journal_path; /* default OUTDIR/journal.ndjson */
    shard_spec shard;         /* --shard I/N: only the lines of shard I (count 0: all) */
    double rate;              /* admit at most this many requests per second (0: no limit); each
                               * request's latency counts from its scheduled admission */
} run_options;

/* Time spent per stage, summed over jobs (nanoseconds), for the summary and `bench`. */
typedef enum run_stage {
    STAGE_PARSE = 0,
    STAGE_KEYGEN,
    STAGE_CSR,
    STAGE_SUBMIT,
    STAGE_BUNDLE,
    STAGE_WRITE,
    STAGE_JOURNAL, /* K, S, I and D records, from building the record to its sync */
    STAGE_COUNT
} run_stage;

/* The stage's name in `run --stats-json` and `bench`: "Parse", "Keygen", ... "Journal". */
const char *run_stage_name(run_stage stage);

/* Exit statuses of a run (and of every subcommand). */
enum { EXIT_ALL_DONE = 0, EXIT_SOME_FAILED = 1, EXIT_NOTHING_DONE = 2, EXIT_STOPPED = 3 };

typedef struct run run;

/* Sets up a run of opt (copied; its strings are borrowed until run_close): configuration,
 * module, tokens and login, local CAs, the output directory, results, the journal (new or
 * resumed) and the CA connectors. 0, or -1 with err (nothing was done: exit 2). *out is set in
 * both cases and must be closed. */
int run_open(run **out, const run_options *opt, enroll_error *err);
/* Runs the batch to its end (or until run_stop). 0, or -1 with err (the batch could not be
 * read). */
int run_execute(run *r, enroll_error *err);
/* Asks the run to take no new lines; the requests in progress finish and are journaled.
 * Async-signal-safe. Returns true when a stop had been asked already. */
bool run_stop(run *r);
/* Syncs the journal and closes the results: the run's exit status (run_summary.exit_code).
 * Called by run_close when not called before. */
int run_finish(run *r);
void run_close(run *r);

/* The counts of a run, after run_execute. */
typedef struct run_summary {
    long issued, failed, pending;
    long skipped;        /* resumed run: finished before */
    long earlier_failed; /* resumed run: failed before and not retried */
    long abandoned;      /* stopped mid-way: left for --resume */
    long not_started;    /* stopped: lines of the batch (the shard) not started; -1 unknown */
    long uncertain;      /* the CA may have issued them and cannot say: kept, not failed */
    double seconds;      /* run_execute's time */
    double stage_mean_ms[STAGE_COUNT];
    int exit_code; /* EXIT_ALL_DONE, EXIT_SOME_FAILED or EXIT_STOPPED (EXIT_NOTHING_DONE when the
                      results could not be written) */
    const char *out_dir;
} run_summary;
void run_get_summary(run *r, run_summary *out);

/* The failures of a run by code, for the summary: how many, and the first (lowest line) of each. */
typedef struct run_failure_code {
    char code[40];
    long count;
    long first_line;
    char first_id[80];
    char first_message[320];
} run_failure_code;
/* Copies up to max codes (most frequent first) into out; returns how many there are in all. */
size_t run_get_failures(run *r, run_failure_code *out, size_t max);

/* The run's figures as one JSON object (run --stats-json, and what `bench` reads): rate,
 * latency percentiles and CDF, mean time per stage, time to the first certificate, peak RSS. */
json_t *run_stats_json(run *r);

/* The port of the run's /metrics listener (run_options.metrics_listen), 0 when none. */
unsigned run_metrics_port(const run *r);

#endif
