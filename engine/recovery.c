/* A run's journal, written (key made, submitted, issued, done) and read back by --resume (see
 * recovery.h). Records: H header, K key made (with the CSR, and the key wrapped for export keys),
 * S submitted to a network CA, I issued (certificate and chain), D done (the result line). */
#include "engine/recovery.h"
#include "engine/metrics.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "batch/idset.h"
#include "batch/journal.h"
#include "formats/base64.h"
#include "formats/pubkey.h"
#include "formats/hex.h"
#include "ca/hsm_signer.h"
#include "batch/log.h"

typedef struct run_journal {
    journal *j;
    char run_id[33];
    json_t *open;     /* Id -> {"K": record, "I": record, "S": true}: started, not done */
    idset done_ids;   /* requests done */
    idset done_lines; /* "L<line>": lines that failed their checks, reported */
    idset token_keys; /* hex CKA_IDs of the key tokens' key objects (resumed runs) */
    bool resumed;
    bool salvaged; /* --salvage: requests the journal does not know may have been issued */
} run_journal;

/* An object's DER (i2d) as a base-64 JSON string. */
static json_t *der_json(int (*i2d)(const void *, unsigned char **), const void *obj)
{
    unsigned char *der = NULL;
    int len = i2d(obj, &der);
    char *b64 = len > 0 ? base64_encode(der, (size_t)len) : NULL;
    OPENSSL_free(der);
    json_t *out = b64 ? json_string(b64) : json_null();
    free(b64);
    return out;
}

static int i2d_x509(const void *x, unsigned char **out)
{
    return i2d_X509((X509 *)x, out);
}

static int i2d_req(const void *x, unsigned char **out)
{
    return i2d_X509_REQ((X509_REQ *)x, out);
}

void recovery_key_id(const run *r, const char *request_id, unsigned char out[16])
{
    recovery_derive_key_id(r->journal->run_id, request_id, out);
}

void recovery_derive_key_id(const char *run_id, const char *request_id, unsigned char out[16])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, run_id, strlen(run_id));
    SHA256_Update(&ctx, "\x1f", 1);
    SHA256_Update(&ctx, request_id, strlen(request_id));
    SHA256_Final(md, &ctx);
    memcpy(out, md, 16);
}

static run_journal *journal_state_new(void)
{
    run_journal *rj = calloc(1, sizeof *rj);
    if (rj == NULL)
        return NULL;
    rj->open = json_object();
    idset_init(&rj->done_ids);
    idset_init(&rj->done_lines);
    idset_init(&rj->token_keys);
    return rj;
}

static void journal_state_free(run_journal *rj)
{
    if (rj == NULL)
        return;
    json_decref(rj->open);
    idset_free(&rj->done_ids);
    idset_free(&rj->done_lines);
    idset_free(&rj->token_keys);
    free(rj);
}

int recovery_start(run *r, const char *path, enroll_error *err)
{
    run_journal *rj = journal_state_new();
    unsigned char id[16];
    if (rj == NULL || RAND_bytes(id, sizeof id) != 1) {
        journal_state_free(rj);
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    hex_encode(id, sizeof id, rj->run_id, sizeof rj->run_id, false);
    unlink(path); /* --force: the old run's journal goes with its results */
    rj->j = journal_create(path, err);
    if (rj->j == NULL) {
        journal_state_free(rj);
        return -1;
    }
    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *header =
        json_pack("{s:s, s:s, s:s, s:s}", "RunId", rj->run_id, "KeyToken",
                  r->hsm->tokens[0].desc.label, "Batch", r->opt.batch_path, "Created", now);
    char shard[32];
    if (shard_format(&r->opt.shard, shard, sizeof shard) != NULL)
        json_object_set_new(header, "Shard", json_string(shard));
    uint64_t seq = journal_append(rj->j, "H", header);
    json_decref(header);
    if (seq == 0 || journal_sync(rj->j, seq) != 0) {
        enroll_error_set(err, HSE_JOURNAL_FAILED, NULL, "cannot write the journal %s", path);
        journal_close(rj->j);
        journal_state_free(rj);
        return -1;
    }
    r->journal = rj;
    return 0;
}

int recovery_note_kek(void *arg, enroll_error *err)
{
    run *r = arg;
    if (r->journal == NULL)
        return 0;
    /* The run's wrapping key, encrypted by a key that never leaves the token, on disk before any
     * key wrapped under it is journaled. */
    hsm_session s;
    unsigned char *enc = NULL;
    size_t enc_len = 0;
    hsm_error herr;
    hsm_seal_scheme scheme = HSM_SEAL_NONE;
    char tried[300];
    hsm_context_login_session(r->hsm, 0, &s);
    /* The first of AES-CBC-PAD, AES-GCM, RSA-OAEP that the key token offers and that survives a
     * round trip (SECURITY.md). */
    if (hsm_seal_best(&s, r->hsm->caps != NULL ? &r->hsm->caps[0] : NULL,
                      RECOVERY_STORAGE_KEY_LABEL, r->hsm->kek, 32, &enc, &enc_len, &scheme, tried,
                      sizeof tried, &herr) != 0) {
        r->hsm->export_answer = herr.rv; /* a lost login is tried again (export_ready) */
        enroll_error_set(err, HSE_JOURNAL_FAILED, NULL,
                         "the journal cannot keep the wrapping key: token \"%s\" seals by "
                         "none of AES-CBC-PAD, AES-GCM, RSA-OAEP (%s); --no-journal exports "
                         "without crash recovery",
                         s.token->desc.label, tried);
        return -1;
    }
    if (scheme != HSM_SEAL_AES_CBC_PAD)
        log_info("the journal keeps the run's wrapping key sealed by %s in token \"%s\"",
                 hsm_seal_name(scheme), s.token->desc.label);
    char *kek_b64 = base64_encode(enc, enc_len);
    free(enc);
    json_t *rec =
        json_pack("{s:s, s:s}", "Kek", kek_b64 ? kek_b64 : "", "Seal", hsm_seal_name(scheme));
    free(kek_b64);
    uint64_t seq = journal_append(r->journal->j, "W", rec);
    json_decref(rec);
    if (seq == 0 || journal_sync(r->journal->j, seq) != 0) {
        enroll_error_set(err, HSE_JOURNAL_FAILED, NULL, "cannot write the journal");
        return -1;
    }
    return 0;
}

/* ---- resume ---- */

typedef struct resume_ctx {
    run *r;
    run_journal *rj;
    enroll_error *err;
    bool kek_ready; /* the header's wrapping key is decrypted and in r->hsm */
    bool retry_failed;
    idset *failed;    /* retry_failed: the requests to forget */
    idset *uncertain; /* retry_failed: the requests to submit again (their D records go) */
    long done, failed_count;
    char shard[32]; /* the header's Shard, "" when the run was not sharded */
} resume_ctx;

static const char *record_id(const json_t *rec)
{
    return json_string_value(json_object_get(rec, "Id"));
}

static bool has_status(const json_t *rec, const char *want)
{
    json_t *result = json_object_get(rec, "Result");
    const char *status = json_string_value(json_object_get(result, "Status"));
    return status != NULL && strcmp(status, want) == 0;
}

/* Issued, its file not written (DELIVERY_FAILED): taken up by every --resume, never issued
 * again. */
static bool undelivered_record(const json_t *rec)
{
    json_t *error = json_object_get(json_object_get(rec, "Result"), "Error");
    const char *code = json_string_value(json_object_get(error, "Code"));
    return record_id(rec) != NULL && code != NULL && strcmp(code, "DELIVERY_FAILED") == 0;
}

static bool is_failed_request(const json_t *rec)
{
    return has_status(rec, "failed") && !json_is_true(json_object_get(rec, "LineOnly")) &&
           !undelivered_record(rec);
}

/* An uncertain request whose CA answers a repeat of the same CSR with what it issued, if it did
 * (the embedded CA, `serve`, a Keyfactor server): --retry-failed submits it again. */
static bool retakable_uncertain(const run *r, const json_t *rec)
{
    if (!has_status(rec, "uncertain") || json_is_true(json_object_get(rec, "Salvaged")))
        return false;
    const char *ca =
        json_string_value(json_object_get(json_object_get(rec, "Result"), "CertificateAuthority"));
    for (size_t i = 0; ca != NULL && i < r->cfg->ca_count; i++)
        if (strcmp(r->cfg->cas[i].name, ca) == 0)
            return r->cfg->cas[i].type != CA_TYPE_CFSSL;
    return false;
}

static int collect_failed(void *ctx, const char *type, json_t *rec)
{
    resume_ctx *rc = ctx;
    if (strcmp(type, "D") != 0 || record_id(rec) == NULL)
        return 0;
    if (is_failed_request(rec))
        idset_insert(rc->failed, record_id(rec));
    else if (retakable_uncertain(rc->r, rec))
        idset_insert(rc->uncertain, record_id(rec));
    return 0;
}

/* The run's wrapping key from the header, decrypted by the token's storage key and made the
 * export key (so that the records after the header can be read: wrapped passwords). */
/* The wrapping key of the interrupted run, unsealed in the key token by the scheme its W record
 * names. */
static int unlock_kek(resume_ctx *rc, const char *kek_b64, hsm_seal_scheme seal)
{
    run *r = rc->r;
    hsm_session s;
    size_t enc_len = 0, kek_len = 0;
    unsigned char *enc = base64_decode(kek_b64, strlen(kek_b64), BASE64_SKIP_SPACE, &enc_len),
                  *kek = NULL;
    hsm_error herr;
    hsm_context_login_session(r->hsm, 0, &s);
    int ok = enc != NULL && seal != HSM_SEAL_NONE &&
             hsm_unseal(&s, RECOVERY_STORAGE_KEY_LABEL, seal, enc, enc_len, &kek, &kek_len,
                        &herr) == 0 &&
             kek_len == 32;
    free(enc);
    if (!ok) {
        if (rc->err->code[0] == '\0')
            enroll_error_set(rc->err, HSE_JOURNAL_UNREADABLE, NULL,
                             "the journal's wrapping key cannot be unsealed (%s) with this "
                             "token's storage key (another token, or the key was deleted)",
                             hsm_seal_name(seal));
        if (kek != NULL)
            OPENSSL_cleanse(kek, kek_len);
        free(kek);
        return -1;
    }
    int prepared = hsm_context_prepare_export_with(r->hsm, kek, rc->err);
    OPENSSL_cleanse(kek, kek_len);
    free(kek);
    if (prepared != 0)
        return -1;
    rc->kek_ready = true;
    return 0;
}

/* A D record's result line as results.ndjson has it: a wrapped password is unwrapped. Returns a
 * new reference, or NULL when the password cannot be unwrapped. */
static json_t *result_of_record(run *r, json_t *result)
{
    json_t *info = json_object_get(result, "CertificateInformation");
    const char *wrapped = json_string_value(json_object_get(info, "PasswordWrapped"));
    if (wrapped == NULL)
        return json_incref(result);
    size_t len = 0, plain_len = 0;
    unsigned char *der = base64_decode(wrapped, strlen(wrapped), BASE64_SKIP_SPACE, &len),
                  *plain = NULL;
    enroll_error e;
    enroll_error_clear(&e);
    int rc = der != NULL && r->hsm->kek != NULL
                 ? kwp_unwrap(r->hsm->kek, der, len, &plain, &plain_len, &e)
                 : -1;
    free(der);
    if (rc != 0)
        return NULL;
    json_t *out = json_deep_copy(result);
    json_t *out_info = json_object_get(out, "CertificateInformation");
    json_object_del(out_info, "PasswordWrapped");
    json_object_set_new(out_info, "Password", json_stringn((const char *)plain, plain_len));
    OPENSSL_cleanse(plain, plain_len);
    free(plain);
    return out;
}

static int visit(void *ctx, const char *type, json_t *rec)
{
    resume_ctx *rc = ctx;
    run_journal *rj = rc->rj;
    const char *id = record_id(rec);
    if (strcmp(type, "H") == 0) {
        const char *run_id = json_string_value(json_object_get(rec, "RunId"));
        const char *kek = json_string_value(json_object_get(rec, "Kek"));
        if (run_id == NULL || strlen(run_id) != 32)
            return -1;
        snprintf(rj->run_id, sizeof rj->run_id, "%s", run_id);
        const char *shard = json_string_value(json_object_get(rec, "Shard"));
        snprintf(rc->shard, sizeof rc->shard, "%s", shard ? shard : "");
        /* Older journals hold the wrapping key in the header. */
        return kek != NULL && !rc->kek_ready ? unlock_kek(rc, kek, HSM_SEAL_AES_CBC_PAD) : 0;
    }
    if (rj->run_id[0] == '\0')
        return -1;                /* records before any header */
    if (strcmp(type, "W") == 0) { /* the wrapping key, made by the first export request */
        const char *kek = json_string_value(json_object_get(rec, "Kek"));
        if (kek == NULL)
            return -1;
        /* Seal: absent in older journals (AES-CBC-PAD). */
        const char *seal = json_string_value(json_object_get(rec, "Seal"));
        return rc->kek_ready ? 0
                             : unlock_kek(rc, kek,
                                          seal ? hsm_seal_from_name(seal)
                                               : HSM_SEAL_AES_CBC_PAD); /* records after it may
                                                                           need it */
    }
    if (rc->failed != NULL && id != NULL && idset_contains(rc->failed, id))
        return 0; /* retried from the start */
    if (strcmp(type, "D") == 0) {
        json_t *result = json_object_get(rec, "Result");
        if (undelivered_record(rec) && json_object_get(json_object_get(rj->open, id), "I"))
            return 0; /* issued, its file not written: this run delivers it */
        if (json_is_true(json_object_get(rec, "LineOnly"))) {
            char key[32];
            snprintf(key, sizeof key, "L%lld", json_integer_value(json_object_get(rec, "Line")));
            idset_insert(&rj->done_lines, key);
        } else if (id != NULL) {
            json_object_del(rj->open, id);
            idset_insert(&rj->done_ids, id);
        }
        /* Every result that is not a success counts in the exit status, invalid lines too. */
        if (has_status(rec, "failed") || has_status(rec, "uncertain"))
            rc->failed_count++;
        rc->done++;
        if (json_is_object(result)) {
            json_t *line = result_of_record(rc->r, result);
            int w = line != NULL ? results_write(&rc->r->results, line) : -1;
            json_decref(line);
            if (w != 0) {
                enroll_error_set(rc->err, HSE_JOURNAL_UNREADABLE, NULL,
                                 "the result of %s cannot be written back (its password cannot "
                                 "be unwrapped, or results.ndjson cannot be written)",
                                 id ? id : "a line");
                return -1;
            }
        }
        return 0;
    }
    if (id == NULL)
        return 0;
    json_t *state = json_object_get(rj->open, id);
    if (state == NULL) {
        state = json_object();
        json_object_set_new(rj->open, id, state);
    }
    if (strcmp(type, "S") == 0)
        json_object_set_new(state, "S", json_true());
    else
        json_object_set(state, type, rec);
    return 0;
}

/* The CKA_IDs of every key object in the key tokens, so that leftovers of a crash are found
 * without a search per request. Key objects with neither CKA_ID nor CKA_LABEL, which no
 * operation of the engine makes, are what a module left half-created when the process died
 * inside C_GenerateKeyPair: they are removed. */
static int index_token_keys(run *r, run_journal *rj, enroll_error *err)
{
    static const CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
    long torn = 0;
    for (size_t t = 0; t < r->hsm->key_token_count; t++) {
        for (size_t c = 0; c < 2; c++) {
            hsm_session s;
            hsm_context_login_session(r->hsm, t, &s);
            CK_OBJECT_HANDLE *handles;
            hsm_error herr;
            long n = hsm_list_objects(&s, &classes[c], &handles, &herr);
            if (n < 0 && herr.rv == CKR_HOST_MEMORY) {
                enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
                return -1;
            }
            for (long i = 0; i < n; i++) {
                unsigned char *id = NULL, *label = NULL;
                size_t len = 0, label_len = 0;
                hsm_get_attribute(&s, handles[i], CKA_ID, &id, &len, &herr);
                hsm_get_attribute(&s, handles[i], CKA_LABEL, &label, &label_len, &herr);
                if (len == 0 && label_len == 0) {
                    hsm_destroy_object(&s, handles[i], &herr);
                    torn++;
                } else if (len == 16) { /* public halves too: an orphan of either is found */
                    char hex[33];
                    hex_encode(id, 16, hex, sizeof hex, false);
                    idset_insert(&rj->token_keys, hex);
                }
                free(id);
                free(label);
            }
            free(handles);
        }
    }
    if (torn > 0)
        log_warning("removed %ld half-created key object%s (no CKA_ID, no label) left in the "
                    "token by the interruption",
                    torn, torn == 1 ? "" : "s");
    return 0;
}

/* Temporary files of output_write_atomic (".<name>.<pid>.<n>.tmp") left in OUTDIR by a killed
 * process: removed, unless that process still runs (another shard writing into the directory). */
static void remove_temp_files(run *r)
{
    int fd = openat(r->out.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    long removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        size_t n = strlen(name);
        if (name[0] != '.' || n < 8 || strcmp(name + n - 4, ".tmp") != 0)
            continue;
        /* ".<name>.<pid>.<n>.tmp": the pid is the second number from the end. */
        char copy[512];
        snprintf(copy, sizeof copy, "%.*s", (int)(n - 4), name);
        char *dot = strrchr(copy, '.');
        if (dot == NULL)
            continue;
        *dot = '\0';
        char *pid_dot = strrchr(copy, '.');
        char *end;
        long pid = pid_dot ? strtol(pid_dot + 1, &end, 10) : 0;
        if (pid <= 0 || *end != '\0' || pid_dot == copy)
            continue;
        if (pid != (long)getpid() && kill((pid_t)pid, 0) == 0)
            continue; /* its writer is alive */
        if (unlinkat(r->out.fd, name, 0) == 0)
            removed++;
    }
    closedir(d);
    if (removed > 0)
        log_info("removed %ld temporary file%s left in %s by the interruption", removed,
                 removed == 1 ? "" : "s", r->out.path);
}

/* --retry-failed: the journal is rewritten without the failed requests' records, so that they
 * start afresh and the journal keeps one result per request; an uncertain request loses only
 * its result, so that its key and CSR go to the CA again. */
static int forget_failed(const char *path, idset *failed, idset *uncertain, enroll_error *err);

/* A D record for an earlier result line (salvage), its password wrapped. */
static void journal_result(run *r, journal *jn, const char *id, long line, json_t *result,
                           bool line_only);

/* --salvage: the lines of the old results.ndjson, by Id, before it is opened anew. */
static json_t *load_earlier_results(run *r)
{
    json_t *by_id = json_object();
    int fd = openat(r->out.fd, "results.ndjson", O_RDONLY | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        return by_id;
    }
    char *text = NULL;
    size_t cap = 0;
    while (getline(&text, &cap, f) > 0) {
        json_t *line = json_loads(text, 0, NULL);
        const char *id = json_string_value(json_object_get(line, "Id"));
        if (id != NULL)
            json_object_set(by_id, id, line);
        json_decref(line);
    }
    if (text != NULL)
        OPENSSL_cleanse(text, cap); /* lines may hold generated passwords */
    free(text);
    fclose(f);
    return by_id;
}

typedef struct copy_ctx {
    journal *out;
    idset *failed;
    idset *uncertain;
} copy_ctx;

static int copy_record(void *ctx, const char *type, json_t *rec)
{
    copy_ctx *cc = ctx;
    const char *id = record_id(rec);
    if (id != NULL && strcmp(type, "H") != 0 && cc->failed != NULL &&
        idset_contains(cc->failed, id))
        return 0;
    if (id != NULL && strcmp(type, "D") == 0 && cc->uncertain != NULL &&
        idset_contains(cc->uncertain, id))
        return 0;
    char kind[8]; /* type points into rec, whose "T" journal_append replaces */
    snprintf(kind, sizeof kind, "%s", type);
    return journal_append(cc->out, kind, rec) ? 0 : -1;
}

int recovery_preflight(run *r, const char *path, bool salvage, enroll_error *err)
{
    journal_damage d;
    if (journal_check(path, &d, err) != 0)
        return -1;
    if (d.first_bad_line == 0)
        return 0;
    if (!salvage) {
        enroll_error_set(err, HSE_JOURNAL_DAMAGED, NULL,
                         "the journal %s is damaged: line %ld fails its check and good records "
                         "follow it (%ld bad line%s in all); nothing was changed. --resume "
                         "--salvage keeps every record that can be verified and leaves alone the "
                         "requests whose records were lost",
                         path, d.first_bad_line, d.bad_lines, d.bad_lines == 1 ? "" : "s");
        return -1;
    }
    /* Every verifiable record goes into a new journal; the damaged one is kept beside it. */
    char tmp[4200], damaged[4200];
    snprintf(tmp, sizeof tmp, "%s.salvage", path);
    snprintf(damaged, sizeof damaged, "%s.damaged", path);
    unlink(tmp);
    copy_ctx cc = {0};
    if ((cc.out = journal_create(tmp, err)) == NULL)
        return -1;
    journal_damage seen;
    int rc = journal_read_salvage(path, copy_record, &cc, &seen, err);
    if (journal_close(cc.out) != 0 || rc != 0 || rename(path, damaged) != 0 ||
        rename(tmp, path) != 0) {
        unlink(tmp);
        if (err->code[0] == '\0')
            enroll_error_set(err, HSE_JOURNAL_FAILED, NULL, "cannot salvage the journal %s", path);
        return -1;
    }
    r->earlier_results = load_earlier_results(r);
    log_warning("the journal %s was damaged (%ld bad line%s from line %ld): %ld good records kept, "
                "the damaged file is %s",
                path, d.bad_lines, d.bad_lines == 1 ? "" : "s", d.first_bad_line, seen.good_lines,
                damaged);
    return 0;
}

/* --salvage: a request the journal lost the result of, but the old results.ndjson has, is done
 * with that line (never rewritten). */
static void take_earlier_results(run *r, run_journal *rj, resume_ctx *rc)
{
    const char *id;
    json_t *line;
    json_object_foreach(r->earlier_results, id, line)
    {
        if (idset_contains(&rj->done_ids, id))
            continue;
        json_object_del(rj->open, id);
        idset_insert(&rj->done_ids, id);
        long number = (long)json_integer_value(json_object_get(line, "Line"));
        char key[32];
        snprintf(key, sizeof key, "L%ld", number);
        idset_insert(&rj->done_lines, key);
        const char *status = json_string_value(json_object_get(line, "Status"));
        if (status == NULL || strcmp(status, "issued") != 0)
            rc->failed_count++;
        rc->done++;
        if (results_write(&r->results, line) != 0)
            log_error("cannot write %s/results.ndjson", r->out.path);
        journal_result(r, rj->j, id, number, line, false);
    }
}

int recovery_resume(run *r, const char *path, bool retry_failed, enroll_error *err)
{
    run_journal *rj = journal_state_new();
    if (rj == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    rj->resumed = true;
    rj->salvaged = r->earlier_results != NULL;
    resume_ctx rc = {.r = r, .rj = rj, .err = err, .retry_failed = retry_failed};
    off_t good = 0, torn = 0;
    idset failed, uncertain;
    idset_init(&failed);
    idset_init(&uncertain);
    int rc_read = 0;
    if (retry_failed) {
        rc.failed = &failed;
        rc.uncertain = &uncertain;
        rc_read = journal_read(path, collect_failed, &rc, &good, &torn, err);
        if (rc_read == 0 && failed.count + uncertain.count > 0)
            rc_read = forget_failed(path, &failed, &uncertain, err);
    }
    if (rc_read == 0)
        rc_read = journal_read(path, visit, &rc, &good, &torn, err);
    idset_free(&failed);
    idset_free(&uncertain);
    if (rc_read != 0 || rj->run_id[0] == '\0') {
        if (err->code[0] == '\0' || rc_read == 0)
            enroll_error_set(err, HSE_JOURNAL_UNREADABLE, NULL,
                             "%s is not the journal of a run (no header)", path);
        journal_state_free(rj);
        return -1;
    }
    char shard[32];
    const char *mine = shard_format(&r->opt.shard, shard, sizeof shard);
    if (strcmp(rc.shard, mine ? mine : "") != 0) {
        enroll_error_set(err, HSE_SHARD_MISMATCH, NULL,
                         "%s is the journal of %s%s, and this run is %s%s: resume with the same "
                         "--shard",
                         path, rc.shard[0] ? "shard " : "an unsharded run", rc.shard,
                         mine ? "shard " : "not sharded", mine ? mine : "");
        journal_state_free(rj);
        return -1;
    }
    if (torn > 0)
        log_warning("the journal %s ends with %lld bytes of a torn or corrupt record: cut back to "
                    "the last good record",
                    path, (long long)torn);
    if (index_token_keys(r, rj, err) != 0 || (rj->j = journal_reopen(path, good, err)) == NULL) {
        journal_state_free(rj);
        return -1;
    }
    if (r->earlier_results != NULL)
        take_earlier_results(r, rj, &rc);
    remove_temp_files(r);
    atomic_store(&r->stats.earlier_failed, rc.failed_count);
    log_info("resuming run %s: %ld request%s done before, %zu to take up again", rj->run_id,
             rc.done, rc.done == 1 ? "" : "s", json_object_size(rj->open));
    r->journal = rj;
    return 0;
}

static int forget_failed(const char *path, idset *failed, idset *uncertain, enroll_error *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.retry", path);
    unlink(tmp);
    copy_ctx cc = {.failed = failed, .uncertain = uncertain};
    if ((cc.out = journal_create(tmp, err)) == NULL)
        return -1;
    off_t good, torn;
    int rc = journal_read(path, copy_record, &cc, &good, &torn, err);
    if (journal_close(cc.out) != 0 || rc != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        if (err->code[0] == '\0')
            enroll_error_set(err, HSE_JOURNAL_FAILED, NULL, "cannot rewrite the journal %s", path);
        return -1;
    }
    if (failed->count > 0)
        log_info("%zu failed request%s will be tried again", failed->count,
                 failed->count == 1 ? "" : "s");
    if (uncertain->count > 0)
        log_info("%zu uncertain request%s will be asked of the CA again (same key and CSR)",
                 uncertain->count, uncertain->count == 1 ? "" : "s");
    return 0;
}

const char *recovery_run_id(const run *r)
{
    return r->journal != NULL ? r->journal->run_id : NULL;
}

bool recovery_resumed(const run *r)
{
    return r->journal != NULL && r->journal->resumed;
}

int recovery_close(run *r)
{
    run_journal *rj = r->journal;
    if (rj == NULL)
        return 0;
    int rc = journal_close(rj->j);
    journal_state_free(rj);
    r->journal = NULL;
    return rc;
}

/* ---- during the run ---- */

bool recovery_line_done(run *r, long line)
{
    if (r->journal == NULL || !r->journal->resumed)
        return false;
    char key[32];
    snprintf(key, sizeof key, "L%ld", line);
    return idset_contains(&r->journal->done_lines, key);
}

static int restore(run *r, job *j, json_t *state)
{
    json_t *k = json_object_get(state, "K"), *issued = json_object_get(state, "I");
    if (k == NULL)
        return -1; /* submitted or issued records without the key's: not usable */
    long long token = json_integer_value(json_object_get(k, "Token"));
    size_t tokens =
        j->req->operation == OP_REENROLLMENT ? r->hsm->token_count : r->hsm->key_token_count;
    if (token < 0 || (size_t)token >= tokens ||
        hex_decode(json_string_value(json_object_get(k, "KeyId")), j->key_id, 16) != 0)
        return -1;
    j->token = (size_t)token;
    size_t len;
    const char *csr_b64 = json_string_value(json_object_get(k, "Csr"));
    unsigned char *der =
        base64_decode(csr_b64, csr_b64 ? strlen(csr_b64) : 0, BASE64_SKIP_SPACE, &len);
    const unsigned char *p = der;
    j->csr = der ? d2i_X509_REQ(NULL, &p, (long)len) : NULL;
    free(der);
    if (j->csr == NULL)
        return -1;
    const char *uri = json_string_value(json_object_get(k, "KeyUri"));
    j->key_uri = uri ? strdup(uri) : NULL;
    json_t *targets = json_object_get(k, "Targets");
    if (json_array_size(targets) > 0) {
        j->targets = calloc(json_array_size(targets), sizeof *j->targets);
        if (j->targets == NULL)
            return -1;
        size_t i;
        json_t *t;
        json_array_foreach(targets, i, t)
        {
            const config_store *st =
                config_find_store(r->cfg, json_string_value(json_object_get(t, "Store")));
            const char *alias = json_string_value(json_object_get(t, "Alias"));
            if (st == NULL || alias == NULL)
                return -1; /* the configuration changed under the run */
            store_target_set(&j->targets[j->target_count++], st, alias,
                             json_is_true(json_object_get(t, "Overwrite")));
        }
    }

    const char *wrapped = json_string_value(json_object_get(k, "Wrapped"));
    if (wrapped != NULL) {
        j->wrapped_key =
            base64_decode(wrapped, strlen(wrapped), BASE64_SKIP_SPACE, &j->wrapped_len);
        j->export_kind = (key_export_kind)json_integer_value(json_object_get(k, "Export"));
        if (j->wrapped_key == NULL)
            return -1;
    }
    j->earlier_submission = json_is_true(json_object_get(state, "S"));
    if (issued != NULL) {
        j->cert = x509_from_base64(json_string_value(json_object_get(issued, "Cert")));
        if (j->cert == NULL)
            return -1;
        j->chain = sk_X509_new_null();
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(issued, "Chain"), i, c)
        {
            X509 *x = x509_from_base64(json_string_value(c));
            if (x != NULL)
                sk_X509_push(j->chain, x);
        }
        j->keyfactor_id = json_integer_value(json_object_get(issued, "KeyfactorID"));
        j->request_id = json_integer_value(json_object_get(issued, "RequestId"));
        const char *note = json_string_value(json_object_get(issued, "Note"));
        snprintf(j->recovery_note, sizeof j->recovery_note, "%s", note ? note : "");
        j->answered = j->restored_issued = true;
    }
    j->restored = true;
    return 0;
}

/* A key with the request's CKA_ID in a key token, or an output file of its Id. */
static bool leaves_trace(run *r, const job *j)
{
    char hex[33];
    hex_encode(j->key_id, 16, hex, sizeof hex, false);
    if (idset_contains(&r->journal->token_keys, hex))
        return true;
    static const char *const exts[] = {"pem", "pfx", "der", "p8"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        char name[300];
        snprintf(name, sizeof name, "%s.%s", j->req->id, exts[i]);
        if (faccessat(r->out.fd, name, F_OK, 0) == 0)
            return true;
    }
    return false;
}

void recovery_report_unknown(run *r, job *j)
{
    json_t *line = result_new(j->req->id, j->req->line, "uncertain");
    if (j->policy.ca != NULL)
        json_object_set_new(line, "CertificateAuthority", json_string(j->policy.ca->name));
    enroll_error e;
    enroll_error_set(&e, HSE_JOURNAL_DAMAGED, NULL,
                     "the journal's records of this request were lost, and a key or an output "
                     "file of it exists: it may have been issued. Its key and files are kept; "
                     "check it at the CA");
    result_set_error(line, &e);
    json_t *rec = json_pack("{s:s, s:I, s:o, s:b}", "Id", j->req->id, "Line",
                            (json_int_t)j->req->line, "Result", json_incref(line), "Salvaged", 1);
    journal_append(r->journal->j, "D", rec);
    json_decref(rec);
    if (results_write(&r->results, line) != 0)
        log_error("cannot write %s/results.ndjson", r->out.path);
    json_decref(line);
    atomic_fetch_add(&r->stats.uncertain, 1);
    log_warning("%s: the damaged journal lost its records, and a key or file of it exists: left "
                "alone, reported uncertain",
                j->req->id);
}

recovery_state recovery_lookup(run *r, job *j)
{
    run_journal *rj = r->journal;
    const char *id = j->req->id;
    recovery_key_id(r, id, j->key_id);
    if (!rj->resumed)
        return RECOVERY_NEW;
    if (idset_contains(&rj->done_ids, id))
        return RECOVERY_DONE;
    json_t *state = json_object_get(rj->open, id);
    if (state == NULL)
        return rj->salvaged && leaves_trace(r, j) ? RECOVERY_UNKNOWN : RECOVERY_NEW;
    json_incref(state);
    json_object_del(rj->open, id);
    int rc = restore(r, j, state);
    json_decref(state);
    if (rc != 0) {
        /* Unusable: start over (the CA gives back what it issued for this request, if any). */
        log_warning("%s: the journal's record of it is incomplete: starting it again", id);
        X509_REQ_free(j->csr);
        j->csr = NULL;
        X509_free(j->cert);
        j->cert = NULL;
        sk_X509_pop_free(j->chain, X509_free);
        j->chain = NULL;
        free(j->wrapped_key);
        j->wrapped_key = NULL;
        free(j->key_uri);
        j->key_uri = NULL;
        free(j->targets);
        j->targets = NULL;
        j->target_count = 0;
        j->answered = j->restored = false;
        recovery_key_id(r, id, j->key_id);
        return RECOVERY_NEW;
    }
    return RECOVERY_OPEN;
}

void recovery_clear_leftover(run *r, worker *w, job *j)
{
    run_journal *rj = r->journal;
    if (rj == NULL || !rj->resumed)
        return;
    char hex[33];
    hex_encode(j->key_id, 16, hex, sizeof hex, false);
    if (j->req->operation == OP_REENROLLMENT) {
        /* Store tokens are not indexed at resume: look for a key made before the crash. */
        if (hsm_destroy_keypair_by_id(&w->sessions[j->token], j->key_id, sizeof j->key_id) > 0)
            log_verbose("%s: removed a key left in the store by the interrupted run", j->req->id);
        return;
    }
    if (!idset_contains(&rj->token_keys, hex))
        return;
    /* Either half, of a token or an export key (an export key's pair lives in the token until
     * it is wrapped, and a kill between the two destroys leaves the public half). */
    for (size_t t = 0; t < r->hsm->key_token_count; t++)
        hsm_destroy_keypair_by_id(&w->sessions[t], j->key_id, sizeof j->key_id);
    log_verbose("%s: removed a key left in the token by the interrupted run", j->req->id);
}

/* The journal's share of a request's time (STAGE_JOURNAL). */
static void add_journal_time(run *r, uint64_t since)
{
    run_metrics_stage(r, STAGE_JOURNAL, run_clock_ns() - since);
}

static int append_synced(run *r, job *j, const char *type, json_t *rec, uint64_t since)
{
    journal *jn = r->journal->j;
    uint64_t seq = journal_append(jn, type, rec);
    json_decref(rec);
    bool synced = seq != 0 && journal_sync(jn, seq) == 0;
    add_journal_time(r, since);
    if (synced)
        return 0;
    const enroll_error *e = journal_failed(jn);
    if (e != NULL)
        j->err = *e;
    else
        enroll_error_set(&j->err, HSE_JOURNAL_FAILED, NULL, "cannot write the journal");
    return -1;
}

int recovery_key_made(run *r, job *j)
{
    if (r->journal == NULL)
        return 0;
    uint64_t t0 = run_clock_ns();
    char hex[33];
    hex_encode(j->key_id, 16, hex, sizeof hex, false);
    json_t *rec =
        json_pack("{s:s, s:I, s:I, s:s, s:s, s:o}", "Id", j->req->id, "Line",
                  (json_int_t)j->req->line, "Token", (json_int_t)j->token, "KeyId", hex, "Storage",
                  j->req->operation == OP_CSR            ? "none"
                  : j->req->operation == OP_REENROLLMENT ? "store"
                  : j->req->storage == STORAGE_TOKEN     ? "token"
                                                         : "export",
                  "Csr", der_json(i2d_req, j->csr));
    if (j->key_uri != NULL)
        json_object_set_new(rec, "KeyUri", json_string(j->key_uri));
    if (j->target_count > 0) { /* decided before the key was made: kept as decided */
        json_t *targets = json_array();
        for (size_t i = 0; i < j->target_count; i++)
            json_array_append_new(
                targets, json_pack("{s:s, s:s, s:b}", "Store", j->targets[i].store->id, "Alias",
                                   j->targets[i].alias, "Overwrite", j->targets[i].overwrite));
        json_object_set_new(rec, "Targets", targets);
    }

    if (j->wrapped_key != NULL) {
        char *b64 = base64_encode(j->wrapped_key, j->wrapped_len);
        json_object_set_new(rec, "Wrapped", json_string(b64 ? b64 : ""));
        json_object_set_new(rec, "Export", json_integer(j->export_kind));
        free(b64);
    }
    return append_synced(r, j, "K", rec, t0);
}

int recovery_submitting(run *r, job *j)
{
    if (r->journal == NULL)
        return 0;
    return append_synced(r, j, "S",
                         json_pack("{s:s, s:s}", "Id", j->req->id, "Ca", j->policy.ca->name),
                         run_clock_ns());
}

void recovery_issued(run *r, job *j)
{
    if (r->journal == NULL || j->restored_issued)
        return;
    uint64_t t0 = run_clock_ns();
    json_t *chain = json_array();
    for (int i = 0; j->chain != NULL && i < sk_X509_num(j->chain); i++)
        json_array_append_new(chain, der_json(i2d_x509, sk_X509_value(j->chain, i)));
    json_t *rec = json_pack("{s:s, s:o, s:o, s:I, s:I}", "Id", j->req->id, "Cert",
                            der_json(i2d_x509, j->cert), "Chain", chain, "KeyfactorID",
                            (json_int_t)j->keyfactor_id, "RequestId", (json_int_t)j->request_id);
    if (j->recovery_note[0] != '\0')
        json_object_set_new(rec, "Note", json_string(j->recovery_note));
    journal_append(r->journal->j, "I", rec);
    json_decref(rec);
    add_journal_time(r, t0);
}

/* The result as a D record keeps it: a generated password only wrapped under the run's key
 * (AES-KWP), never in plaintext. A new reference. */
static json_t *result_for_journal(run *r, json_t *result)
{
    json_t *info = json_object_get(result, "CertificateInformation");
    const char *password = json_string_value(json_object_get(info, "Password"));
    if (password == NULL)
        return json_incref(result);
    json_t *out = json_deep_copy(result);
    json_t *out_info = json_object_get(out, "CertificateInformation");
    unsigned char *wrapped = NULL;
    size_t len = 0;
    enroll_error e;
    enroll_error_clear(&e);
    if (r->hsm->kek != NULL && kwp_wrap(r->hsm->kek, (const unsigned char *)password,
                                        strlen(password), &wrapped, &len, &e) == 0) {
        char *b64 = base64_encode(wrapped, len);
        json_object_set_new(out_info, "PasswordWrapped", json_string(b64 ? b64 : ""));
        free(b64);
    }
    free(wrapped);
    json_object_del(out_info, "Password");
    return out;
}

static void journal_result(run *r, journal *jn, const char *id, long line, json_t *result,
                           bool line_only)
{
    json_t *stored = result_for_journal(r, result);
    json_t *rec =
        json_pack("{s:s?, s:I, s:o}", "Id", id, "Line", (json_int_t)line, "Result", stored);
    if (line_only)
        json_object_set_new(rec, "LineOnly", json_true());
    journal_append(jn, "D", rec);
    json_decref(rec);
}

void recovery_done(run *r, const char *id, long line, json_t *result, bool line_only)
{
    if (r->journal == NULL)
        return;
    uint64_t t0 = run_clock_ns();
    journal_result(r, r->journal->j, id, line, result, line_only);
    add_journal_time(r, t0);
}
