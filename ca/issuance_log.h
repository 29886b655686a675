/* The embedded CA's issuance log, issued.ndjson in the CA's home: one JSON line per certificate
 * issued, KeyfactorID first. Owns the line format, the append under a lock shared across processes
 * (shards may issue from one home), the count, and the lookups by KeyfactorID and by request. */
#ifndef HSMENROLL_CA_ISSUANCE_LOG_H
#define HSMENROLL_CA_ISSUANCE_LOG_H

#include <openssl/x509.h>
#include <stdbool.h>

#include "formats/error.h"

/* The file in a CA's home. */
#define ISSUANCE_LOG_FILE "issued.ndjson"

typedef struct issuance_log issuance_log;

/* Opens the log of home. append: for issuing (the file is created when missing); else for
 * reading only, and a missing file fails with errno ENOENT. The count is read from the log's last
 * line (constant time), or the lines are counted when that line is torn. NULL and err on failure.
 */
issuance_log *issuance_log_open(const char *home, bool append, enroll_error *err);
/* Flushes and syncs an appending log; frees. NULL is a no-op. */
void issuance_log_close(issuance_log *log);

/* The number of issuances: as of the open, or this process's last append. Thread-safe. */
long long issuance_log_count(issuance_log *log);

/* Appends the line of cert: the next KeyfactorID (into *keyfactor_id, taken even when the line
 * cannot be written), RunId and RequestId (omitted when NULL), serial, subject, NotAfter, time of
 * issue, the SHA-256 fingerprint of its public key (KEY_HISTORY_FIELD, for AllowKeyReuse) and,
 * for a journaled run (run_id not NULL) or a `serve` caller (caller and csr_sha256, logged as
 * Caller and CsrSha256), the certificate itself. Locks the file for the append;
 * a log another process appended to since continues from its last line's KeyfactorID, and a torn
 * last line (a write cut short) is ended first. Thread-safe. CA_SIGN_FAILED when not recorded. */
int issuance_log_append(issuance_log *log, X509 *cert, const char *run_id, const char *request_id,
                        const char *caller, const char *csr_sha256, long long *keyfactor_id,
                        enroll_error *err);

/* Calls fn for each line that records a `serve` caller (Caller, and CsrSha256: the SHA-256 of
 * the CSR's DER), with its KeyfactorID: serve's idempotent replay index. Thread-safe. */
void issuance_log_each_caller(issuance_log *log,
                              void (*fn)(void *ctx, const char *caller, const char *csr_sha256,
                                         long long keyfactor_id),
                              void *ctx);

/* The certificate logged as KeyfactorID keyfactor_id, or NULL (none, or logged without its
 * certificate). One pass over the log. Thread-safe. */
X509 *issuance_log_find_id(issuance_log *log, long long keyfactor_id);

/* Called for each logged certificate: its KeyfactorID, time of issue (ISO 8601 UTC, "" when not
 * logged) and the certificate (borrowed for the call). False stops the walk. */
typedef bool (*issuance_log_fn)(long long keyfactor_id, const char *issued, X509 *cert, void *user);
/* Walks the log, oldest first, calling fn for each line that holds its certificate (lines of runs
 * without a journal hold none and are skipped). One pass over the log. Thread-safe. */
void issuance_log_each(issuance_log *log, issuance_log_fn fn, void *user);

/* The certificate issued earlier to (run_id, request_id), and its KeyfactorID; NULL if none.
 * The log keeps an index of one run's issuances (the last run asking): a run that continues an
 * interrupted one (resumed) has its earlier lines indexed at its first question, one pass over the
 * log; a new run has none. Lines appended after the index was made are not in it: within one
 * process a run asks once per request. Thread-safe. */
X509 *issuance_log_find_request(issuance_log *log, const char *run_id, const char *request_id,
                                bool resumed, long long *keyfactor_id);

#endif
