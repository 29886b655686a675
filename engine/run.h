/* The shared state of one `run`: options, configuration, HSM context, CA connectors, outputs,
 * the job queue and counters; and the two moving parts, workers (one PKCS#11 session per token
 * each) and jobs (one request on its way through keygen, CSR, CA and delivery). */
#ifndef HSMENROLL_ENGINE_RUN_H
#define HSMENROLL_ENGINE_RUN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "batch/config.h"
#include "batch/output.h"
#include "batch/policy.h"
#include "batch/request.h"
#include "batch/results.h"
#include "batch/shard.h"
#include "hsm_context.h"
#include "latency.h"
#include "store.h"

typedef enum progress_mode { PROGRESS_AUTO = 0, PROGRESS_ALWAYS, PROGRESS_NEVER } progress_mode;

typedef struct run_options {
    const char *batch_path; /* file, or "-" for standard input */
    const char *out_dir;
    int workers;  /* 0: one per CPU */
    int inflight; /* requests in flight to network CAs (default 64) */
    const char *default_ca;
    const char *default_template;
    long long default_pattern; /* -1: none */
    progress_mode progress;
    bool force;               /* start over in an OUTDIR that holds results */
    bool resume;              /* continue the run journaled in OUTDIR (or journal_path) */
    bool retry_failed;        /* with resume: requests that failed are tried again */
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

typedef struct run_stats {
    _Atomic long lines; /* request lines read (not blank) */
    _Atomic long issued;
    _Atomic long failed;
    _Atomic long pending;        /* taken by the CA, not issued yet (approval, validation) */
    _Atomic long skipped;        /* resumed run: finished before */
    _Atomic long earlier_failed; /* resumed run: failed before and not retried */
    _Atomic long abandoned;      /* stopped mid-way (disk full, journal failure): resumable */
    _Atomic uint64_t stage_ns[STAGE_COUNT];
    latency_histogram latency;        /* admission to result, of issued requests */
    _Atomic uint64_t first_issued_ns; /* run_clock_ns() of the first certificate delivered */
} run_stats;

struct ca_connector;
struct job;

typedef struct job_queue {
    pthread_mutex_t lock;
    pthread_cond_t ready; /* a job (or the end) is available */
    pthread_cond_t room;  /* admission: fewer than capacity jobs in flight */
    struct job *head, *tail;
    size_t in_flight, capacity;
    bool closed;
} job_queue;

typedef struct run {
    run_options opt;
    const config *cfg;
    hsm_context *hsm;
    struct ca_connector **connectors; /* one per cfg->cas entry; NULL when not opened */
    output_dir out;
    results_writer results;
    request_defaults defaults;
    run_stats stats;
    job_queue queue;
    struct http_loop *http;      /* the network connectors' event loop; NULL when none is used */
    struct run_journal *journal; /* NULL: no journal */
    store_registry stores;       /* certificate stores' alias indexes (reenrollment) */
    _Atomic int stop;            /* take no new lines: a signal, a full disk, a failed journal */
    struct timespec started;
    long total_lines; /* for the progress ETA; -1 when unknown */
} run;

typedef struct worker {
    run *run;
    int index;
    hsm_session *sessions; /* one per token of run->hsm, same order */
    size_t key_token;      /* the key token this worker generates in */
    pthread_t thread;
} worker;

typedef enum key_export_kind {
    KEY_EXPORT_NONE = 0,
    KEY_EXPORT_PKCS8,
    KEY_EXPORT_EDDSA_RAW
} key_export_kind;

typedef struct job {
    enroll_request *req;
    policy_decision policy;
    size_t token; /* index of the key token */
    hsm_keypair pair;
    bool have_pair;
    key_export_kind export_kind;
    unsigned char *wrapped_key; /* the key, AES-KWP wrapped under the run's KEK */
    size_t wrapped_len;
    char *key_uri;
    X509_REQ *csr;
    X509 *cert;
    STACK_OF(X509) * chain;
    long long keyfactor_id, request_id;
    enroll_error err;
    bool failed;
    bool answered; /* the CA has answered a SUBMIT_PENDING submission (or it failed) */
    bool pending;  /* the CA took the request but has not issued yet (approval, validation) */
    char disposition[40];          /* the CA's RequestDisposition when pending */
    char disposition_message[200]; /* and its DispositionMessage */
    uint64_t started_ns;
    uint64_t submitted_ns;    /* when the job went to its CA */
    unsigned char key_id[16]; /* CKA_ID of its key when journaled (recovery_key_id) */
    bool restored;            /* taken up from the journal of an interrupted run */
    bool restored_issued;     /* ... with its certificate already issued */
    bool earlier_submission;  /* the interrupted run had sent it to a network CA already */
    store_target *targets;    /* PFX delivery into certificate stores (NULL: none) */
    size_t target_count;
    struct job *next;
} job;

uint64_t run_clock_ns(void);

/* The stage's name in `run --stats-json` and `bench`: "Parse", "Keygen", ... "Journal". */
const char *run_stage_name(run_stage stage);

#endif
