/* The embedded CA's issuance log (issued.ndjson): appending under a lock shared across
 * processes, counting, and finding issuances by KeyfactorID and by (run, request). */
#include "ca/issuance_log.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch/idset.h"
#include "batch/json_out.h"
#include "batch/keyhistory.h"
#include "formats/base64.h"
#include "formats/csr.h"
#include "formats/dn.h"

struct issuance_log {
    char *home;             /* for messages */
    FILE *log;              /* issued.ndjson: appended ("a+"), or read ("r") */
    pthread_mutex_t lock;   /* the fields below and log's position */
    long long issued_count; /* lines in issued.ndjson */
    off_t log_end;          /* its size after this process's last append (or open) */
    idset issued_requests;  /* hashes of "RunId<US>RequestId" of indexed_run's earlier issuances */
    char *indexed_run;      /* the run those are of (read from the log when it first asks) */
};

static char *path_in(const char *home, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", home, name) < 0)
        return NULL;
    return p;
}

/* The string value of "key":"..." in a log line (no escapes in these values), copied to out. */
static bool log_field(const char *line, const char *key, char *out, size_t size)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char *at = strstr(line, pattern);
    if (at == NULL)
        return false;
    at += strlen(pattern);
    const char *end = strchr(at, '"');
    if (end == NULL || (size_t)(end - at) >= size)
        return false;
    memcpy(out, at, (size_t)(end - at));
    out[end - at] = '\0';
    return true;
}

static void request_key(const char *run_id, const char *request_id, char *out, size_t size)
{
    snprintf(out, size, "%s\x1f%s", run_id, request_id);
}

/* The KeyfactorID of the log's last line (which is also the number of lines), read from the end
 * of the file: the CA opens in constant time whatever its history. -1 when the last line is torn
 * or not one of ours (then the lines are counted). */
static long long last_keyfactor_id(FILE *log)
{
    if (fseeko(log, 0, SEEK_END) != 0)
        return -1;
    off_t size = ftello(log);
    if (size == 0)
        return 0;
    char buf[65536];
    off_t from = size > (off_t)sizeof buf - 1 ? size - (off_t)sizeof buf + 1 : 0;
    if (fseeko(log, from, SEEK_SET) != 0)
        return -1;
    size_t n = fread(buf, 1, (size_t)(size - from), log);
    fseeko(log, 0, SEEK_END);
    if (n == 0 || buf[n - 1] != '\n')
        return -1;
    buf[n - 1] = '\0';
    char *start = strrchr(buf, '\n');
    start = start ? start + 1 : (from == 0 ? buf : NULL);
    long long id;
    if (start == NULL || sscanf(start, "{\"KeyfactorID\":%lld,", &id) != 1 || id < 1)
        return -1;
    return id;
}

/* True when the log of size bytes ends inside a line (a write cut short). */
static bool torn_at_end(FILE *log, off_t size)
{
    if (size == 0 || fseeko(log, size - 1, SEEK_SET) != 0)
        return false;
    int last = getc(log);
    fseeko(log, 0, SEEK_END);
    return last != EOF && last != '\n';
}

/* Starts an empty index of run_id's issuances (forgetting any other run's). */
static void index_run(issuance_log *ca, const char *run_id)
{
    idset_free(&ca->issued_requests);
    idset_init(&ca->issued_requests);
    free(ca->indexed_run);
    ca->indexed_run = strdup(run_id);
}

/* Counts the issuances; with run_id, indexes that run's (and forgets any other run's index). */
static long long scan_log(issuance_log *ca, const char *run_id)
{
    long long n = 0;
    char *line = NULL, run[64], request[256], key[400];
    size_t cap = 0;
    if (run_id != NULL)
        index_run(ca, run_id);
    rewind(ca->log);
    while (getline(&line, &cap, ca->log) > 0) {
        n++;
        if (run_id != NULL && log_field(line, "RunId", run, sizeof run) &&
            strcmp(run, run_id) == 0 && log_field(line, "RequestId", request, sizeof request)) {
            request_key(run, request, key, sizeof key);
            idset_insert(&ca->issued_requests, key);
        }
    }
    free(line);
    fseeko(ca->log, 0, SEEK_END); /* reading, then appending: reposition between */
    return n;
}

/* The number of issuances in the log: the last line's KeyfactorID, or the lines counted when
 * that line is torn. */
static long long logged_count(issuance_log *ca)
{
    long long last = last_keyfactor_id(ca->log);
    return last >= 0 ? last : scan_log(ca, NULL);
}

/* The certificate an issuance log line records (NULL when it has none) and its KeyfactorID. */
static X509 *line_certificate(const char *line, long long *keyfactor_id)
{
    json_t *entry = json_loads(line, 0, NULL);
    X509 *cert = x509_from_base64(json_string_value(json_object_get(entry, "Certificate")));
    if (keyfactor_id != NULL)
        *keyfactor_id = json_integer_value(json_object_get(entry, "KeyfactorID"));
    json_decref(entry);
    return cert;
}

/* The certificate issued earlier to (run_id, request_id), from the log; NULL if none. */
static X509 *find_issued(issuance_log *ca, const char *run_id, const char *request_id,
                         long long *keyfactor_id)
{
    char *line = NULL, run[64], request[256];
    size_t cap = 0;
    X509 *found = NULL;
    rewind(ca->log);
    while (found == NULL && getline(&line, &cap, ca->log) > 0) {
        if (!log_field(line, "RunId", run, sizeof run) || strcmp(run, run_id) != 0 ||
            !log_field(line, "RequestId", request, sizeof request) ||
            strcmp(request, request_id) != 0)
            continue;
        found = line_certificate(line, keyfactor_id);
    }
    free(line);
    fseeko(ca->log, 0, SEEK_END);
    return found;
}

issuance_log *issuance_log_open(const char *home, bool append, enroll_error *err)
{
    issuance_log *ca = calloc(1, sizeof *ca);
    char *p = path_in(home, ISSUANCE_LOG_FILE);
    if (ca == NULL || p == NULL || (ca->home = strdup(home)) == NULL) {
        free(p);
        if (ca != NULL)
            free(ca->home);
        free(ca);
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    ca->log = fopen(p, append ? "a+e" : "re");
    free(p);
    if (ca->log == NULL) {
        int e = errno;
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "cannot open %s/issued.ndjson: %s", home,
                         strerror(errno));
        free(ca->home);
        free(ca);
        errno = e;
        return NULL;
    }
    pthread_mutex_init(&ca->lock, NULL);
    idset_init(&ca->issued_requests);
    ca->issued_count = logged_count(ca);
    ca->log_end = -1; /* read again under the lock at the first issuance: another process may
                       * have appended since */
    return ca;
}

void issuance_log_close(issuance_log *ca)
{
    if (ca == NULL)
        return;
    fflush(ca->log);
    fsync(fileno(ca->log));
    fclose(ca->log);
    idset_free(&ca->issued_requests);
    free(ca->indexed_run);
    free(ca->home);
    pthread_mutex_destroy(&ca->lock);
    free(ca);
}

long long issuance_log_count(issuance_log *ca)
{
    pthread_mutex_lock(&ca->lock);
    long long n = ca->issued_count;
    pthread_mutex_unlock(&ca->lock);
    return n;
}

void issuance_log_each_caller(issuance_log *ca,
                              void (*fn)(void *ctx, const char *caller, const char *csr_sha256,
                                         long long keyfactor_id),
                              void *ctx)
{
    char *line = NULL, caller[256], hash[80];
    size_t cap = 0;
    pthread_mutex_lock(&ca->lock);
    rewind(ca->log);
    while (getline(&line, &cap, ca->log) > 0) {
        long long id;
        if (sscanf(line, "{\"KeyfactorID\":%lld,", &id) == 1 &&
            log_field(line, "Caller", caller, sizeof caller) &&
            log_field(line, "CsrSha256", hash, sizeof hash))
            fn(ctx, caller, hash, id);
    }
    fseeko(ca->log, 0, SEEK_END);
    pthread_mutex_unlock(&ca->lock);
    free(line);
}

X509 *issuance_log_find_id(issuance_log *ca, long long keyfactor_id)
{
    char prefix[64];
    int plen = snprintf(prefix, sizeof prefix, "{\"KeyfactorID\":%lld,", keyfactor_id);
    char *line = NULL;
    size_t cap = 0;
    X509 *found = NULL;
    pthread_mutex_lock(&ca->lock);
    rewind(ca->log);
    while (found == NULL && getline(&line, &cap, ca->log) > 0) {
        if (strncmp(line, prefix, (size_t)plen) != 0)
            continue; /* lines are written with KeyfactorID first */
        found = line_certificate(line, NULL);
        if (found == NULL)
            break; /* issued before certificates were logged */
    }
    fseeko(ca->log, 0, SEEK_END);
    pthread_mutex_unlock(&ca->lock);
    free(line);
    return found;
}

void issuance_log_each(issuance_log *ca, issuance_log_fn fn, void *user)
{
    char *line = NULL;
    size_t cap = 0;
    bool more = true;
    pthread_mutex_lock(&ca->lock);
    rewind(ca->log);
    while (more && getline(&line, &cap, ca->log) > 0) {
        json_t *entry = json_loads(line, 0, NULL);
        X509 *cert = x509_from_base64(json_string_value(json_object_get(entry, "Certificate")));
        const char *issued = json_string_value(json_object_get(entry, "Issued"));
        if (cert != NULL)
            more = fn(json_integer_value(json_object_get(entry, "KeyfactorID")),
                      issued ? issued : "", cert, user);
        X509_free(cert);
        json_decref(entry);
    }
    fseeko(ca->log, 0, SEEK_END);
    pthread_mutex_unlock(&ca->lock);
    free(line);
}

X509 *issuance_log_find_request(issuance_log *ca, const char *run_id, const char *request_id,
                                bool resumed, long long *keyfactor_id)
{
    char key[400];
    request_key(run_id, request_id, key, sizeof key);
    pthread_mutex_lock(&ca->lock);
    X509 *earlier = NULL;
    if (ca->indexed_run == NULL || strcmp(ca->indexed_run, run_id) != 0) {
        if (resumed)
            scan_log(ca, run_id); /* once per run asking */
        else
            index_run(ca, run_id); /* a new run id: none of it is in the log */
    }
    if (idset_contains(&ca->issued_requests, key))
        earlier = find_issued(ca, run_id, request_id, keyfactor_id);
    pthread_mutex_unlock(&ca->lock);
    return earlier;
}

static void iso_time(const ASN1_TIME *t, char *buf, size_t size)
{
    struct tm tm;
    if (t != NULL && ASN1_TIME_to_tm(t, &tm))
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else
        snprintf(buf, size, "?");
}

int issuance_log_append(issuance_log *ca, X509 *cert, const char *run_id, const char *request_id,
                        const char *caller, const char *csr_sha256, long long *keyfactor_id,
                        enroll_error *err)
{
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *serial_hex = serial ? BN_bn2hex(serial) : NULL;
    char *subject = dn_format(X509_get_subject_name(cert));
    unsigned char fingerprint[32];
    char fingerprint_hex[65] = "";
    if (spki_fingerprint(X509_get_X509_PUBKEY(cert), fingerprint) == 0)
        key_history_hex(fingerprint, fingerprint_hex);
    char not_after[32], now[32];
    iso_time(X509_get0_notAfter(cert), not_after, sizeof not_after);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char *cert_b64 = run_id != NULL || caller != NULL ? x509_to_base64(cert) : NULL;
    pthread_mutex_lock(&ca->lock);
    /* Several processes may issue from one CA home (shards on one machine): the log is locked
     * for the append, and a log that grew since this process's last line has the last
     * KeyfactorID on its last line. */
    int locked = flock(fileno(ca->log), LOCK_EX) == 0;
    struct stat st;
    if (locked && fstat(fileno(ca->log), &st) == 0 && st.st_size != ca->log_end) {
        ca->issued_count = logged_count(ca);
        /* A torn last line counts as an issuance and stays a line of its own: the next line
         * must not continue it (its KeyfactorID would hide this one's). */
        if (torn_at_end(ca->log, st.st_size))
            putc('\n', ca->log);
    }
    *keyfactor_id = ++ca->issued_count;
    json_t *line =
        json_pack("{s:I, s:s?, s:s?, s:s?, s:s?, s:s, s:s, s:s, s:s?}", "KeyfactorID",
                  (json_int_t)*keyfactor_id, "RunId", run_id, "RequestId", request_id, "Serial",
                  serial_hex, "Subject", subject, "NotAfter", not_after, "Issued", now,
                  KEY_HISTORY_FIELD, fingerprint_hex, "Certificate", cert_b64);
    if (line != NULL && caller != NULL && csr_sha256 != NULL) {
        json_object_set_new(line, "Caller", json_string(caller));
        json_object_set_new(line, "CsrSha256", json_string(csr_sha256));
    }
    /* Not indexed: within one process a run asks once per request (its Ids are unique); only a
     * resumed run asks again, and its next process finds this line in the log. So the index
     * holds what a run issued before it was interrupted, not the whole batch. */
    char *text = json_out_compact(line); /* json_dumps(line, JSON_COMPACT), faster */
    int logged =
        locked && text != NULL && fprintf(ca->log, "%s\n", text) > 0 && fflush(ca->log) == 0;
    if (logged && fstat(fileno(ca->log), &st) == 0)
        ca->log_end = st.st_size;
    if (locked)
        flock(fileno(ca->log), LOCK_UN);
    pthread_mutex_unlock(&ca->lock);
    free(text);
    free(cert_b64);
    json_decref(line);
    free(subject);
    OPENSSL_free(serial_hex);
    BN_free(serial);
    if (!logged) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL,
                         "cannot record the issuance in %s/issued.ndjson", ca->home);
        return -1;
    }
    return 0;
}
