/* The shared state of one run, private to engine/ (the API is engine/run.h): options,
 * configuration, HSM context, CA connectors, outputs, the job queue and counters; and the two
 * moving parts, workers (one PKCS#11 session per token each) and jobs (one request on its way
 * through keygen, CSR, CA and delivery). */
#ifndef HSMENROLL_ENGINE_RUN_STATE_H
#define HSMENROLL_ENGINE_RUN_STATE_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "batch/config.h"
#include "batch/ndjson.h"
#include "batch/output.h"
#include "batch/policy.h"
#include "batch/request.h"
#include "batch/results.h"
#include "batch/shard.h"
#include "ca/connector.h"
#include "engine/hsm_context.h"
#include "engine/latency.h"
#include "engine/queue.h"
#include "engine/run.h"
#include "engine/setup.h"
#include "engine/store.h"
#include "engine/throttle.h"

#define RUN_METRICS_CAS     32 /* CAs with their own in-flight gauge (the first 32) */
#define RUN_METRICS_BUCKETS 14 /* stage histogram buckets (engine/metrics.c) */
#define RUN_METRICS_CODES   64 /* distinct error codes counted (then "OTHER") */

typedef struct run_stats {
    _Atomic long lines; /* request lines read (not blank) */
    _Atomic long issued;
    _Atomic long failed;
    _Atomic long pending;        /* taken by the CA, not issued yet (approval, validation) */
    _Atomic long skipped;        /* resumed run: finished before */
    _Atomic long earlier_failed; /* resumed run: failed before and not retried */
    _Atomic long abandoned;      /* stopped mid-way (disk full, journal failure): resumable */
    long not_started; /* stopped: lines of the run not read (-1 unknown); set by pipeline_run */
    _Atomic long uncertain; /* the CA may have issued it; nobody knows (kept, not failed) */
    _Atomic uint64_t stage_ns[STAGE_COUNT];
    latency_histogram latency;        /* admission to result, of issued requests */
    _Atomic uint64_t first_issued_ns; /* run_clock_ns() of the first certificate delivered */
    /* Live metrics (engine/metrics.c renders them; the stages update them). */
    _Atomic long hsm_busy;                      /* jobs in a key stage (keygen, wrap, CSR) now */
    _Atomic long ca_in_flight[RUN_METRICS_CAS]; /* per configuration CA: sent, not answered */
    _Atomic uint64_t stage_buckets[STAGE_COUNT][RUN_METRICS_BUCKETS + 1]; /* +1: +Inf */
    _Atomic long hsm_errors;    /* failed requests whose code is HSM_* */
    pthread_mutex_t codes_lock; /* error codes of failed requests and their counts */
    char codes[RUN_METRICS_CODES][40];
    long code_counts[RUN_METRICS_CODES];
} run_stats;

struct job;

enum { RUN_FAILURE_KINDS = 32 };

struct run {
    run_options opt;
    engine_setup setup; /* configuration, module, tokens: set up by run_open */
    bool setup_done;
    bool results_open;
    ndjson_reader reader; /* the batch, opened and its shape checked by run_open; read by
                           * pipeline_run (the reader thread) */
    bool reader_open;
    char journal_path[4096];
    uint64_t entered_ns; /* run_open was called (for FirstCertificateMs) */
    double seconds;      /* run_execute's pipeline time */
    const config *cfg;
    hsm_context *hsm;
    ca_env ca; /* the CA connectors and their event loop */
    output_dir out;
    results_writer results;
    request_defaults defaults;
    run_stats stats;
    job_queue queue;
    struct run_journal *journal; /* NULL: no journal */
    json_t *earlier_results;     /* --salvage: the old results.ndjson lines by Id (recovery.c) */
    store_registry stores;       /* certificate stores' alias indexes (reenrollment) */
    _Atomic int stop;            /* take no new lines: a signal, a full disk, a failed journal */
    struct timespec started;
    long total_lines; /* for the progress ETA; -1 when unknown */
    /* Failures by code (run_note_failure, from the reader and the workers, under the lock). */
    pthread_mutex_t failures_lock;
    run_failure_code failures[RUN_FAILURE_KINDS];
    size_t failure_kinds;
    /* Set by pipeline_run before the workers start; lanes and lanes_first read-only afterwards
     * but for the lane tuner's raises (engine/lane_tuner.h, from the reader thread). */
    _Atomic int lanes; /* worker threads, one set of sessions each: HSM operations in flight */
    int lanes_first;   /* lanes at the start */
    sem_t cpu_gate;    /* opt.workers permits: the CPU-heavy stages run on one thread per core */
    hsm_throttle throttle; /* HSM stages in flight, lowered when the module is busy: set up by
                            * pipeline_run, used by the workers (enroll.c) */
    struct metrics_http *metrics; /* --metrics-listen (run.c), NULL: none */
};

/* Counts a failed request under its code for the summary (any thread). */
void run_note_failure(run *r, const char *code, long line, const char *id, const char *message);

typedef struct worker {
    run *run;
    int index;
    hsm_session *sessions; /* one per token of run->hsm, same order */
    size_t key_token;      /* the key token this worker generates in */
    pthread_t thread;
} worker;

/* How a job's exported key is held (journaled as a number: values never change). */
typedef enum key_export_kind {
    KEY_EXPORT_NONE = 0,
    KEY_EXPORT_PKCS8,          /* PKCS#8, RFC 5649 wrapped */
    KEY_EXPORT_EDDSA_RAW,      /* the raw EdDSA seed, RFC 5649 wrapped in process */
    KEY_EXPORT_PKCS8_KW_PKCS7, /* PKCS#8, RFC 3394 over PKCS#7 padding (standard 0x210A) */
    KEY_EXPORT_PKCS8_CBC_PAD,  /* PKCS#8, AES-CBC-PAD: IV then ciphertext */
} key_export_kind;

/* One request on its way through the run. A job is owned by one thread at a time: the reader
 * (pipeline.c) admits it, a worker takes it through the stages (enroll.c), a network CA's event
 * loop holds it while its answer is awaited, then a worker delivers and frees it. Each field says
 * which stage writes it; later stages only read it. */
typedef struct job {
    /* Admission (pipeline.c), or recovery_lookup (recovery.c) for a resumed request. */
    enroll_request *req;
    policy_decision policy;
    uint64_t started_ns;
    bool restored;           /* taken up from the journal of an interrupted run */
    bool restored_issued;    /* ... with its certificate already issued */
    bool earlier_submission; /* the interrupted run had sent it to a network CA already */
    /* Key stage (enroll.c generate / take_csr; recovery.c when restored). */
    size_t token; /* index of the key token */
    hsm_keypair pair;
    bool have_pair;
    key_export_kind export_kind;
    unsigned char *wrapped_key; /* the key, AES-KWP wrapped under the run's KEK */
    size_t wrapped_len;
    /* The export key in clear from its proof (enroll.c prove_export), kept only for a CA that
     * answers at once (the embedded CA), so that its delivery, a moment later on the same
     * thread, does not unwrap it again; NULL otherwise. Freed by deliver or free_job. */
    EVP_PKEY *proven_key;
    char *key_uri;
    unsigned char key_id[16]; /* CKA_ID of its key when journaled (recovery_key_id) */
    store_target *targets;    /* PFX delivery into certificate stores (NULL: none) */
    size_t target_count;
    /* CSR stage (enroll.c). */
    X509_REQ *csr;
    /* Submit stage (enroll.c enroll_job and on_ca_answer, from the connector's answer; recovery.c
     * for a request issued before an interruption). */
    ca_submission sub;     /* what the CA is asked; owned by the connector while pending */
    uint64_t submitted_ns; /* when the job went to its CA */
    X509 *cert;
    STACK_OF(X509) * chain;
    long long keyfactor_id, request_id;
    bool answered;  /* the CA has answered (or the journal says it had) */
    bool uncertain; /* the CA may have issued it, and cannot say (kept for --retry-failed) */
    bool pending;   /* the CA took the request but has not issued yet (approval, validation) */
    char disposition[40];          /* the CA's RequestDisposition when pending */
    char disposition_message[200]; /* and its DispositionMessage */
    char recovery_note[300];       /* issued after a lost answer: how the connector found out (the
                                      answer's note), "" when nothing was asked */
    /* Any stage: the first failure ends the job (enroll.c finish). */
    enroll_error err;
    bool failed;
    /* The queue (pipeline.c). */
    struct job *next;
} job;

#endif
