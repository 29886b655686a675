/* Crash safety of a run: its journal (batch/journal.h) written as requests progress (key made,
 * submitted, issued, done) and read back by --resume, which skips what was done, delivers what was
 * issued without asking the CA again, resubmits what had a key, and cleans up keys a crash left
 * in the token before they were journaled. */
#ifndef HSMENROLL_ENGINE_RECOVERY_H
#define HSMENROLL_ENGINE_RECOVERY_H

#include <jansson.h>
#include <stdbool.h>

#include "engine/run_state.h"

/* A new run: creates the journal at path with its header (a random run id). 0, or -1 with err. */
int recovery_start(run *r, const char *path, enroll_error *err);
/* The run's wrapping key has just been made (arg: the run): a W record keeps it, encrypted by
 * the first key token's storage key, synced before any key wrapped under it is journaled.
 * Nothing without a journal. 0, or -1 with err. */
int recovery_note_kek(void *arg, enroll_error *err);

/* The label of a token's journal storage key (made by `token init` with the token, or by the
 * first run). */
#define RECOVERY_STORAGE_KEY_LABEL "hsmenroll-journal-storage-key"

/* A resumed run: reads the journal at path (a torn or corrupt tail is cut), takes its run id and
 * wrapping key (decrypted in the HSM; the export key is prepared with it), writes the result line
 * of every finished request to r->results (open, empty), keeps the unfinished ones, and indexes
 * the key tokens' private keys. With retry_failed, failed requests count as not done.
 * 0, or -1 with err. */
int recovery_resume(run *r, const char *path, bool retry_failed, enroll_error *err);

/* Before a resumed run opens its results: checks the whole journal at path. A bad record
 * followed by good ones is damage: without salvage, JOURNAL_DAMAGED (nothing is changed); with
 * it, the journal is rewritten with every record that verifies (the damaged file is kept as
 * PATH.damaged) and the old results.ndjson is read into r->earlier_results, so that no result it
 * holds is lost or rewritten. 0, or -1 with err. */
int recovery_preflight(run *r, const char *path, bool salvage, enroll_error *err);

/* The run's id (for the embedded CA's one-issuance-per-request rule), or NULL with no journal. */
const char *recovery_run_id(const run *r);
/* True when the run continues an interrupted one (--resume found a journal). */
bool recovery_resumed(const run *r);

/* Syncs and closes the journal. 0, or -1 when part of it could not be written. */
int recovery_close(run *r);

typedef enum recovery_state {
    RECOVERY_NEW = 0, /* not started before: process normally */
    RECOVERY_DONE,    /* finished before (its result line is already written): skip */
    RECOVERY_OPEN,    /* started before: the job has been restored from the journal */
    RECOVERY_UNKNOWN, /* salvaged journal: its records are lost, but a key or a file of it
                         exists: left alone, reported uncertain (recovery_report_unknown) */
} recovery_state;

/* What the journal says of this checked request; for RECOVERY_OPEN, fills the job (token, key
 * id and URI or wrapped key, CSR; certificate and chain when it was issued). */
recovery_state recovery_lookup(run *r, job *j);
/* Writes the uncertain result of a RECOVERY_UNKNOWN request (its key and files untouched). */
void recovery_report_unknown(run *r, job *j);
/* Whether a line that failed its checks was already reported (resumed runs). */
bool recovery_line_done(run *r, long line);

/* The CKA_ID for a request's key: derived from the run id and the request Id, so that a key
 * made just before a crash can be recognized. */
void recovery_key_id(const run *r, const char *request_id, unsigned char out[16]);
/* The same from a journal's run id (`token gc`). */
void recovery_derive_key_id(const char *run_id, const char *request_id, unsigned char out[16]);
/* In a resumed run, destroys a token key with this job's CKA_ID that a crash left behind before
 * it was journaled. */
void recovery_clear_leftover(run *r, worker *w, job *j);

/* Journal records. key_made and submitting wait until the record is on disk (write-ahead:
 * nothing reaches a CA before the key it certifies can be found again): 0, or -1 with j->err
 * when the journal failed. */
int recovery_key_made(run *r, job *j);
int recovery_submitting(run *r, job *j);
void recovery_issued(run *r, job *j);
/* The request is finished with this result line (any status). line_only: a line that failed
 * its checks (remembered by line number, not by Id). */
void recovery_done(run *r, const char *id, long line, json_t *result, bool line_only);

#endif
