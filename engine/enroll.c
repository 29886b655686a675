/* Per-request stages: generate (keygen, export wrap, CSR), submit, deliver (bundle, files), and
 * finish (result line, cleanup: no export key and no key of a failed request stays in a token). */
#include "engine/enroll.h"

#include <openssl/crypto.h>
#include <openssl/obj_mac.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/certinfo.h"
#include "ca/connector.h"
#include "formats/bundle.h"
#include "formats/dn.h"
#include "formats/pubkey.h"
#include "formats/san.h"
#include "ca/hsm_signer.h"
#include "engine/fault_hooks.h"
#include "engine/key_import.h"
#include "engine/metrics.h"
#include "engine/recovery.h"
#include "ca/local_ca.h"
#include "batch/log.h"
#include "batch/secret.h"

hsm_key_spec enroll_hsm_spec(const request_key *key)
{
    hsm_key_spec spec = {0};
    switch (key->algorithm) {
    case KEYALG_RSA:
        spec.type = HSM_KEY_RSA;
        spec.rsa_bits = (unsigned)key->bits;
        break;
    case KEYALG_ECC:
        spec.type = HSM_KEY_EC;
        spec.curve = key->curve_nid == NID_secp384r1   ? HSM_CURVE_P384
                     : key->curve_nid == NID_secp521r1 ? HSM_CURVE_P521
                                                       : HSM_CURVE_P256;
        break;
    case KEYALG_ED25519:
        spec.type = HSM_KEY_ED25519;
        break;
    case KEYALG_ED448:
        spec.type = HSM_KEY_ED448;
        break;
    }
    return spec;
}

static void add_stage(run *r, run_stage stage, uint64_t since)
{
    run_metrics_stage(r, stage, run_clock_ns() - since);
}

/* -vv: one line per stage of a request, naming the PKCS#11 calls or the CA it went to. */
static void trace(const job *j, const char *stage, uint64_t since, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void trace(const job *j, const char *stage, uint64_t since, const char *fmt, ...)
{
    if (log_get_level() < LOG_DEBUG)
        return;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char line[24];
    snprintf(line, sizeof line, "%ld", j->req->line);
    const char *fields[] = {"id", j->req->id, "line", line, "stage", stage, NULL};
    log_fields(LOG_DEBUG, fields, "%s: %s: %s (%.2f ms)", j->req->id, stage, what,
               since ? (double)(run_clock_ns() - since) / 1e6 : 0.0);
}

/* The CPU-heavy stages (unwrap, PBKDF2, bundle encoding) take a permit of the run's CPU gate: the
 * lanes are many so that HSM calls overlap, but at most one thread per core computes. */
static void cpu_enter(run *r)
{
    while (sem_wait(&r->cpu_gate) != 0)
        ; /* EINTR */
}

static void cpu_leave(run *r)
{
    sem_post(&r->cpu_gate);
}

static bool is_edwards(key_algorithm a)
{
    return a == KEYALG_ED25519 || a == KEYALG_ED448;
}

/* Takes the export key out of the token, held wrapped under the run's KEK. Returns 0, 1 when
 * this module will not wrap the key type (the caller regenerates it readable), or -1. */
static int take_out_key(worker *w, job *j, hsm_session *s)
{
    run *r = w->run;
    hsm_error herr;
    const request_key *key = &j->req->key;
    if (j->pair.storage == HSM_STORAGE_WRAPPABLE) {
        int rc = hsm_wrap_private_key_with(
            s, r->hsm->wrap_mechanism, hsm_context_kek_handle(r->hsm, j->token),
            j->pair.private_key, &j->wrapped_key, &j->wrapped_len, &herr);
        if (rc == 0) {
            int unknown = EXPORT_UNKNOWN;
            atomic_compare_exchange_strong(&r->hsm->export_methods[key->algorithm], &unknown,
                                           EXPORT_WRAP);
            j->export_kind = r->hsm->wrap_scheme == HSM_WRAP_RFC3394_PKCS7
                                 ? KEY_EXPORT_PKCS8_KW_PKCS7
                             : r->hsm->wrap_scheme == HSM_WRAP_CBC_PAD ? KEY_EXPORT_PKCS8_CBC_PAD
                                                                       : KEY_EXPORT_PKCS8;
            return 0;
        }
        if ((herr.rv == CKR_KEY_NOT_WRAPPABLE || herr.rv == CKR_KEY_UNEXTRACTABLE) &&
            is_edwards(key->algorithm)) {
            int unknown = EXPORT_UNKNOWN;
            if (atomic_compare_exchange_strong(&r->hsm->export_methods[key->algorithm], &unknown,
                                               EXPORT_READ)) {
                /* Once per home (and module), not once per run: it is no news the second time. */
                char notice[600];
                snprintf(notice, sizeof notice, "not-wrappable %s %s",
                         key_algorithm_name(key->algorithm), hsm_module_path(r->hsm->module));
                log_once(LOG_INFO, notice,
                         "the module will not wrap %s keys (%s): export %s keys are generated "
                         "non-sensitive and read (CKA_VALUE), then wrapped in process",
                         key_algorithm_name(key->algorithm), herr.message,
                         key_algorithm_name(key->algorithm));
            }
            return 1;
        }
        hsm_error_to_enroll(&herr, HSE_HSM_EXPORT_FAILED, &j->err);
        if (atomic_load(&r->hsm->export_methods[key->algorithm]) == EXPORT_UNKNOWN &&
            !hsm_rv_transient(herr.rv)) {
            /* Never wrapped one of this type, and refused for what the key or the mechanism is
             * (not for a lost session, a busy module or a failover, which say nothing of that):
             * the module cannot. The key is destroyed before any CA sees it, and later requests
             * for this type are refused before keygen. */
            atomic_store(&r->hsm->export_methods[key->algorithm], EXPORT_NONE);
            snprintf(j->err.message, sizeof j->err.message,
                     "this module cannot export %s keys (%.200s): use KeyStorage token",
                     key_algorithm_name(key->algorithm), herr.message);
            enroll_error_set_code(&j->err, HSE_HSM_CANNOT_EXPORT);
        }
        return -1;
    }
    unsigned char *raw = NULL;
    size_t raw_len = 0;
    if (hsm_read_private_value(s, j->pair.private_key, &raw, &raw_len, &herr) != 0) {
        hsm_error_to_enroll(&herr, HSE_HSM_EXPORT_FAILED, &j->err);
        return -1;
    }
    int rc = kwp_wrap(r->hsm->kek, raw, raw_len, &j->wrapped_key, &j->wrapped_len, &j->err);
    OPENSSL_cleanse(raw, raw_len);
    free(raw);
    if (rc != 0)
        return -1;
    j->export_kind = KEY_EXPORT_EDDSA_RAW;
    return 0;
}

/* After a login was redone, handles of token objects may have changed (some modules renumber
 * them when every session of a slot closed): the embedded CAs find their keys again by CKA_ID. */
static int find_ca_keys_again(void *arg, size_t t, enroll_error *err)
{
    (void)t;
    run *r = arg;
    return connectors_hsm_restarted(&r->ca, err);
}

/* Every session of the worker that hsm/ marked lost (the module closed it, a network HSM dropped
 * the connection, a failover closed them all) is replaced, the token logged in again when its
 * login went with it (hsm_context_recover). Returns 1 when some were and all are back, 0 when
 * none was lost (the failure was not a session's), -1 when one could not be recovered. */
static int recover_lost_sessions(worker *w)
{
    int recovered = 0;
    for (size_t t = 0; t < w->run->hsm->token_count; t++) {
        if (!w->sessions[t].lost)
            continue;
        enroll_error err;
        enroll_error_clear(&err);
        if (hsm_context_recover(w->run->hsm, t, &w->sessions[t], find_ca_keys_again, w->run,
                                &err) != 0) {
            log_warning("worker %d: cannot recover its session on token \"%s\": %s", w->index,
                        w->run->hsm->tokens[t].desc.label, err.message);
            return -1;
        }
        log_info("worker %d: session on token \"%s\" lost and reopened", w->index,
                 w->run->hsm->tokens[t].desc.label);
        recovered = 1;
    }
    return recovered;
}

/* Whether a call on one of the worker's sessions answered that the module is busy since the
 * last look (hsm_session.busy); clears the marks. */
static bool sessions_busy(worker *w)
{
    bool busy = false;
    for (size_t t = 0; t < w->run->hsm->token_count; t++) {
        busy = busy || w->sessions[t].busy;
        w->sessions[t].busy = false;
    }
    return busy;
}

/* After an HSM step failed (key generation, a key's import, the embedded CA's signature): whether
 * to try it again. A busy module (refused: sessions_busy said so) is waited for (engine/throttle.h)
 * up to THROTTLE_RETRIES times; a lost session is recovered at most twice, since a failover can
 * reach one step twice (its first attempt, and its retry on a session opened while another lane
 * was still logging the tokens in). why: the failure, for the busy module's log line. */
static bool hsm_step_again(worker *w, bool refused, const char *why, int *busy, int *recoveries)
{
    if (refused && *busy < THROTTLE_RETRIES) {
        throttle_busy(&w->run->throttle, why, ++*busy);
        return true;
    }
    return (*recoveries)++ < 2 && recover_lost_sessions(w) == 1;
}

/* key_import into token t, a lost session recovered on the way (at most twice, as for a
 * generated key): reopened, what the attempt left in the token destroyed by its CKA_ID (no one
 * has seen that key), imported again. 0, or -1 with err. */
static int import_recovering(worker *w, size_t t, EVP_PKEY *key, const char *label,
                             hsm_keypair *pair, enroll_error *err)
{
    for (int recoveries = 0, busy = 0;;) {
        memset(pair, 0, sizeof *pair);
        if (key_import(&w->sessions[t], key, label, pair, err) == 0)
            return 0;
        if (!hsm_step_again(w, false, err->message, &busy, &recoveries))
            return -1;
        hsm_destroy_keypair_by_id(&w->sessions[t], pair->id, HSM_KEY_ID_LEN);
        enroll_error_clear(err);
    }
}

/* A CSR enrollment: the request is the line's own; a PrivateKey given with it is retained in
 * the token. */
static int take_csr(worker *w, job *j)
{
    enroll_request *req = j->req;
    hsm_session *s = &w->sessions[j->token];
    j->csr = req->csr;
    req->csr = NULL;
    if (req->private_key == NULL)
        return 0;
    uint64_t t0 = run_clock_ns();
    int rc = import_recovering(w, j->token, req->private_key, req->id, &j->pair, &j->err);
    EVP_PKEY_free(req->private_key);
    req->private_key = NULL;
    if (rc != 0)
        return -1;
    j->have_pair = true;
    memcpy(j->key_id, j->pair.id, sizeof j->key_id);
    j->key_uri =
        hsm_object_uri(&s->token->desc, j->pair.id, HSM_KEY_ID_LEN, req->id, CKO_PRIVATE_KEY);
    add_stage(w->run, STAGE_KEYGEN, t0);
    trace(j, "keygen", t0, "the line's key imported into token \"%s\" (C_CreateObject)",
          s->token->desc.label);
    return 0;
}

/* The CKA_LABEL of a request's key: the alias for a reenrollment, the Id otherwise. */
static const char *key_label(const enroll_request *req)
{
    return req->operation == OP_REENROLLMENT ? req->alias : req->id;
}

static EVP_PKEY *unwrap_key(run *r, job *j, bool bundle_only);

/* Refuses, before any key is made, what the key token cannot do: generate this key type, or
 * (export keys) let it out. The wrapping key is made here by the first export request. */
static int check_capabilities(run *r, job *j, const hsm_key_spec *spec, bool export_key)
{
    char why[300];
    if (!hsm_context_can_generate(r->hsm, j->token, spec, why, sizeof why)) {
        enroll_error_set(&j->err, HSE_HSM_CANNOT_GENERATE, "KeyType", "%s", why);
        return -1;
    }
    if (!export_key)
        return 0;
    const request_key *key = &j->req->key;
    if (atomic_load(&r->hsm->export_methods[key->algorithm]) == EXPORT_NONE) {
        enroll_error_set(&j->err, HSE_HSM_CANNOT_EXPORT, "KeyStorage",
                         "this module cannot export %s keys: use KeyStorage token",
                         key_algorithm_name(key->algorithm));
        return -1;
    }
    if (!hsm_context_can_export(r->hsm, why, sizeof why)) {
        enroll_error_set(&j->err, HSE_HSM_CANNOT_EXPORT, "KeyStorage", "%s", why);
        return -1;
    }
    return hsm_context_export_ready(r->hsm, recovery_note_kek, r, &j->err);
}

/* The export round trip, proven before the CSR goes anywhere: the wrapped key unwraps in process
 * to the private half of the public key the token gave. */
static int prove_export(run *r, job *j, EVP_PKEY *pub)
{
    EVP_PKEY *priv = unwrap_key(r, j, true); /* against a legacy public key; a bundle's form */
    int same = priv != NULL ? EVP_PKEY_eq(priv, pub) : 0;
    if (same == 1 && j->policy.ca->type == CA_TYPE_LOCAL) {
        EVP_PKEY_free(j->proven_key);
        j->proven_key = priv; /* delivered in a moment, by this thread (proven_key) */
        return 0;
    }
    EVP_PKEY_free(priv);
    if (same == 1)
        return 0;
    const request_key *key = &j->req->key;
    atomic_store(&r->hsm->export_methods[key->algorithm], EXPORT_NONE);
    char detail[200];
    snprintf(detail, sizeof detail, "%.150s", priv == NULL ? j->err.message : "another key");
    enroll_error_set(&j->err, HSE_HSM_CANNOT_EXPORT, "KeyStorage",
                     "this module cannot export %s keys: what it wrapped does not unwrap to the "
                     "generated key (%s): use KeyStorage token",
                     key_algorithm_name(key->algorithm), detail);
    return -1;
}

static int generate_once(worker *w, job *j)
{
    run *r = w->run;
    const enroll_request *req = j->req;
    hsm_session *s = &w->sessions[j->token];
    hsm_key_spec spec = enroll_hsm_spec(&req->key);
    bool export_key = req->storage == STORAGE_EXPORT;
    hsm_error herr;
    if (check_capabilities(r, j, &spec, export_key) != 0)
        return -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        hsm_key_storage storage = HSM_STORAGE_TOKEN;
        if (export_key)
            storage = atomic_load(&r->hsm->export_methods[req->key.algorithm]) == EXPORT_READ
                          ? HSM_STORAGE_READABLE
                          : HSM_STORAGE_WRAPPABLE;
        uint64_t t0 = run_clock_ns();
        const unsigned char *id = r->journal != NULL ? j->key_id : NULL;
        fault_session_loss(s);
        int made =
            hsm_generate_keypair_with_id(s, &spec, storage, key_label(req), id, &j->pair, &herr);
        if (made != 0) {
            hsm_error_to_enroll(&herr, HSE_HSM_KEYGEN_FAILED, &j->err);
            return -1;
        }
        j->have_pair = true;
        add_stage(r, STAGE_KEYGEN, t0);
        trace(j, "keygen", t0, "C_GenerateKeyPair %s in token \"%s\"",
              key_algorithm_name(req->key.algorithm), s->token->desc.label);
        if (!export_key)
            break;
        uint64_t t1 = run_clock_ns();
        int rc = take_out_key(w, j, s);
        trace(j, "export", t1, "%s",
              rc < 0   ? "C_WrapKey failed"
              : rc > 0 ? "C_WrapKey refused: the key is made again readable"
              : storage == HSM_STORAGE_READABLE
                  ? "C_GetAttributeValue (CKA_VALUE), wrapped in process"
                  : "C_WrapKey");
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        hsm_destroy_keypair(s, &j->pair, NULL); /* regenerate it readable */
        hsm_keypair_release(&j->pair);
        j->have_pair = false;
    }
    if (!j->have_pair) {
        enroll_error_set(&j->err, HSE_HSM_EXPORT_FAILED, NULL,
                         "the module lets this key type out neither wrapped nor read");
        return -1;
    }

    uint64_t t0 = run_clock_ns();
    EVP_PKEY *pub = hsm_keypair_public(&j->pair, &j->err);
    if (pub == NULL)
        return -1;
    if (export_key && prove_export(r, j, pub) != 0) {
        EVP_PKEY_free(pub);
        return -1; /* the key pair goes at cleanup: no CSR was made */
    }
    signer sg;
    hsm_signer_ctx ctx;
    hsm_signer_init(&sg, &ctx, s, j->pair.private_key, sig_alg_for_key(pub));
    j->csr = csr_build(req->subject, req->sans, pub, &sg, &j->err);
    EVP_PKEY_free(pub);
    add_stage(r, STAGE_CSR, t0);
    trace(j, "csr", t0, "C_SignInit, C_Sign%s", j->csr == NULL ? ": failed" : "");
    if (j->csr == NULL)
        return -1;
    if (export_key) {
        /* The key now lives only wrapped in this job: the session objects go at once. */
        hsm_destroy_keypair(s, &j->pair, NULL);
        j->have_pair = false;
    } else {
        j->key_uri = hsm_object_uri(&s->token->desc, j->pair.id, HSM_KEY_ID_LEN, key_label(req),
                                    CKO_PRIVATE_KEY);
    }
    return 0;
}

/* Key generation, export and CSR, retried from the start when a session was lost on the
 * way (sign, wrap or keygen): the session is reopened (and the token logged in again), what the
 * first attempt left in the token is destroyed (no one has seen that key: its CSR was not sent
 * and it is not journaled yet; an export key, a session object, is gone anyway), and a new key is
 * made under the same CKA_ID. */
static int generate(worker *w, job *j)
{
    run *r = w->run;
    for (int recoveries = 0, busy = 0;;) {
        (void)sessions_busy(w);
        throttle_enter(&r->throttle);
        int made = generate_once(w, j);
        bool refused = made != 0 && sessions_busy(w);
        throttle_leave(&r->throttle, made == 0);
        if (made == 0)
            return 0;
        if (!hsm_step_again(w, refused, j->err.message, &busy, &recoveries))
            return -1;
        hsm_session *s = &w->sessions[j->token];
        if (j->have_pair) {
            hsm_destroy_keypair_by_id(s, j->pair.id, HSM_KEY_ID_LEN);
            hsm_keypair_release(&j->pair);
            j->have_pair = false;
        }
        if (j->wrapped_key != NULL) {
            OPENSSL_cleanse(j->wrapped_key, j->wrapped_len);
            free(j->wrapped_key);
            j->wrapped_key = NULL;
            j->wrapped_len = 0;
        }
        EVP_PKEY_free(j->proven_key);
        j->proven_key = NULL;
        free(j->key_uri);
        j->key_uri = NULL;
        enroll_error_clear(&j->err);
    }
}

/* Reenrollment: the new key goes into the store's token, labelled with the alias next to the
 * alias's current entry (a key without a certificate does not stand for the alias yet). */
static int prepare_reenrollment(worker *w, job *j)
{
    run *r = w->run;
    const config_store *store = j->policy.store;
    int t = store != NULL ? hsm_context_token_index(r->hsm, store->token) : -1;
    if (t < 0) {
        enroll_error_set(&j->err, HSE_STORE_UNAVAILABLE, "KeystoreId",
                         "the token \"%s\" of store %s is not present", store ? store->token : "?",
                         j->req->store_id);
        return -1;
    }
    j->token = (size_t)t;
    const store_index *ix = store_registry_get(&r->stores, store, &w->sessions[t], &j->err);
    if (ix == NULL)
        return -1;
    if (store_alias_current(store_index_find(ix, j->req->alias)) == NULL) {
        enroll_error_set(&j->err, HSE_STORE_ALIAS_UNKNOWN, "Alias",
                         "store %s has no alias \"%.80s\" with a key and a certificate", store->id,
                         j->req->alias);
        return -1;
    }
    return 0;
}

/* The swap, from the store's index (no search): the certificate installed next to the new key
 * (same CKA_ID and label) unless it is there already, then every other entry of the alias
 * retired, certificate first. Done again by a resumed run, and at every point the alias has a
 * complete entry, except on a token that keeps one subject per label (NSS: a nickname belongs
 * to one subject): when it refuses the new certificate with CKR_ATTRIBUTE_VALUE_INVALID while
 * the alias has another certificate, the old certificates are destroyed first and the install
 * tried again. The journal holds the new certificate (I record) and the new key stays, so a
 * crash between the two is completed by --resume. */
static int install_in_store(worker *w, job *j)
{
    hsm_session *s = &w->sessions[j->token];
    const unsigned char *new_id = j->have_pair ? j->pair.id : j->key_id;
    const store_index *ix = store_registry_get(&w->run->stores, j->policy.store, s, &j->err);
    if (ix == NULL)
        return -1;
    const store_alias *a = store_index_find(ix, j->req->alias);
    bool installed = false;
    for (size_t i = 0; a != NULL && i < a->entry_count; i++)
        installed = installed || (a->entries[i].id_len == HSM_KEY_ID_LEN &&
                                  memcmp(a->entries[i].id, new_id, HSM_KEY_ID_LEN) == 0 &&
                                  a->entries[i].certificate != CK_INVALID_HANDLE);
    if (!installed && store_install_making_room(s, j->cert, j->req->alias, a, new_id, &j->err) != 0)
        return -1;
    fault_point("store-installed");
    if (store_retire_others(s, a, new_id, &j->err) != 0)
        return -1;
    fault_point("store-retired");
    return 0;
}

/* PFX delivery into stores: where to, decided before any key is made. A store the line lists
 * must be present and, unless Overwrite, not hold the alias yet. A renewal adds every alias, in
 * every store, that holds the certificate renewed (InstallIntoExistingCertificateStores). */
static int prepare_store_delivery(worker *w, job *j)
{
    run *r = w->run;
    const enroll_request *req = j->req;
    X509 *renewed = NULL;
    if (req->renewal_id > 0 && req->install_into_existing) {
        for (size_t i = 0; renewed == NULL && i < r->cfg->ca_count; i++)
            if (r->cfg->cas[i].type == CA_TYPE_LOCAL && r->cfg->cas[i].home != NULL)
                renewed = local_ca_log_find(r->cfg->cas[i].home, req->renewal_id);
        if (renewed == NULL) {
            enroll_error_set(&j->err, HSE_RENEWAL_UNKNOWN, "RenewalCertificateId",
                             "no certificate with KeyfactorID %lld was issued by this engine's "
                             "embedded CAs",
                             req->renewal_id);
            return -1;
        }
    }
    if (req->store_count == 0 && renewed == NULL)
        return 0;
    size_t max = req->store_count + (renewed != NULL ? REQUEST_STORES_MAX : 0);
    j->targets = calloc(max, sizeof *j->targets);
    if (j->targets == NULL) {
        X509_free(renewed);
        enroll_error_set(&j->err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < req->store_count; i++) {
        const config_store *st = config_find_store(r->cfg, req->stores[i].store_id);
        const char *alias = req->stores[i].alias ? req->stores[i].alias : req->id;
        int t = st != NULL ? hsm_context_token_index(r->hsm, st->token) : -1;
        const store_index *ix =
            t >= 0 ? store_registry_get(&r->stores, st, &w->sessions[t], &j->err) : NULL;
        if (t < 0) {
            enroll_error_set(&j->err, HSE_STORE_UNAVAILABLE, "Stores",
                             "the token of store %s is not present", req->stores[i].store_id);
            rc = -1;
        } else if (ix == NULL) {
            rc = -1;
        } else if (!req->stores[i].overwrite && store_index_find(ix, alias) != NULL) {
            enroll_error_set(&j->err, HSE_STORE_ALIAS_EXISTS, "Stores",
                             "store %s already holds alias \"%.80s\" and Overwrite is false",
                             st->id, alias);
            rc = -1;
        } else {
            store_target_set(&j->targets[j->target_count++], st, alias, req->stores[i].overwrite);
        }
    }
    for (size_t s = 0; rc == 0 && renewed != NULL && s < r->cfg->store_count; s++) {
        const config_store *st = &r->cfg->stores[s];
        int t = hsm_context_token_index(r->hsm, st->token);
        const store_index *ix =
            t >= 0 ? store_registry_get(&r->stores, st, &w->sessions[t], &j->err) : NULL;
        for (size_t a = 0; ix != NULL && a < ix->alias_count; a++) {
            const store_alias *al = &ix->aliases[a];
            bool holds = false, listed = false;
            for (size_t e = 0; e < al->entry_count; e++)
                holds =
                    holds || (al->entries[e].cert && X509_cmp(al->entries[e].cert, renewed) == 0);
            for (size_t k = 0; k < j->target_count; k++)
                listed = listed ||
                         (j->targets[k].store == st && strcmp(j->targets[k].alias, al->alias) == 0);
            if (holds && !listed && j->target_count < max)
                store_target_set(&j->targets[j->target_count++], st, al->alias, true);
        }
    }
    X509_free(renewed);
    return rc;
}

/* Installs the key and certificate in every target store (key imported persistent and
 * non-extractable, certificate with its CKA_ID, both under the alias), then retires the alias's
 * other entries. Done again in full by a resumed run: the retirement removes an earlier try. */
static int deliver_to_stores(worker *w, job *j, EVP_PKEY *key)
{
    run *r = w->run;
    for (size_t i = 0; i < j->target_count; i++) {
        const store_target *tg = &j->targets[i];
        int t = hsm_context_token_index(r->hsm, tg->store->token);
        if (t < 0) {
            enroll_error_set(&j->err, HSE_STORE_UNAVAILABLE, "Stores",
                             "the token of store %s is not present (installed in %zu of %zu)",
                             tg->store->id, i, j->target_count);
            return -1;
        }
        hsm_session *s = &w->sessions[t];
        const store_index *ix = store_registry_get(&r->stores, tg->store, s, &j->err);
        hsm_keypair pair;
        if (ix == NULL || import_recovering(w, (size_t)t, key, tg->alias, &pair, &j->err) != 0)
            return -1;
        const store_alias *al = store_index_find(ix, tg->alias);
        int rc = store_install_making_room(s, j->cert, tg->alias, al, pair.id, &j->err);
        if (rc == 0)
            rc = store_retire_others(s, al, pair.id, &j->err);
        else
            hsm_destroy_keypair(s, &pair, NULL);
        hsm_keypair_release(&pair);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* The exported key in clear. bundle_only: it is only written out (no store to import it into),
 * so an EC key may come back in OpenSSL's cheaper legacy form. */
static EVP_PKEY *unwrap_key(run *r, job *j, bool bundle_only)
{
    if (j->export_kind == KEY_EXPORT_PKCS8)
        return bundle_only
                   ? privkey_unwrap_pkcs8_bundle(r->hsm->kek, j->wrapped_key, j->wrapped_len,
                                                 &j->err)
                   : privkey_unwrap_pkcs8(r->hsm->kek, j->wrapped_key, j->wrapped_len, &j->err);
    if (j->export_kind == KEY_EXPORT_PKCS8_KW_PKCS7 || j->export_kind == KEY_EXPORT_PKCS8_CBC_PAD)
        return privkey_unwrap_scheme(
            j->export_kind == KEY_EXPORT_PKCS8_CBC_PAD ? KEYWRAP_CBC_PAD : KEYWRAP_RFC3394_PKCS7,
            r->hsm->kek, j->wrapped_key, j->wrapped_len, &j->err);
    unsigned char *raw;
    size_t len;
    if (kwp_unwrap(r->hsm->kek, j->wrapped_key, j->wrapped_len, &raw, &len, &j->err) != 0)
        return NULL;
    int nid = j->req->key.algorithm == KEYALG_ED25519 ? NID_ED25519 : NID_ED448;
    EVP_PKEY *key = privkey_from_eddsa_raw(nid, raw, len, &j->err);
    OPENSSL_cleanse(raw, len);
    free(raw);
    return key;
}

static int bio_write_file(run *r, BIO *bio, const char *id, const char *ext, mode_t mode,
                          json_t *files, enroll_error *err)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s", id, ext);
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    if (output_write_atomic(&r->out, name, data, (size_t)len, mode, err) != 0)
        return -1;
    json_array_append_new(files, json_string(name));
    return 0;
}

/* The password protecting an exported key: the request's, or a generated one (then also
 * returned in *generated, for the result line). NULL with j->err on failure. */
static char *choose_password(run *r, job *j, char **generated)
{
    char *password;
    if (j->req->password != NULL) {
        password = strdup(j->req->password);
    } else {
        long long n = r->cfg->settings.password_length;
        password = secret_random((size_t)(n > 16 ? n : 16));
        *generated = password ? strdup(password) : NULL;
    }
    if (password == NULL)
        enroll_error_set(&j->err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
    return password;
}

/* A request the CA has not issued yet: an exported key is kept as <Id>.p8 (encrypted PKCS#8,
 * 0600) to be paired with the certificate when it comes; a token key stays in the token. */
static int keep_pending_key(worker *w, job *j, json_t *files, char **password_out)
{
    run *r = w->run;
    if (j->req->storage != STORAGE_EXPORT || j->wrapped_key == NULL)
        return 0;
    cpu_enter(r);
    EVP_PKEY *key = unwrap_key(r, j, true);
    char *password = key ? choose_password(r, j, password_out) : NULL;
    BIO *bio = password ? BIO_new(BIO_s_mem()) : NULL;
    int rc = -1;
    bool encoded =
        bio != NULL &&
        pkcs8_der_write(bio, key, password, (int)r->cfg->settings.pkcs12_iterations, &j->err) == 0;
    cpu_leave(r);
    if (encoded && bio_write_file(r, bio, j->req->id, "p8", 0600, files, &j->err) == 0)
        rc = 0;
    BIO_free(bio);
    EVP_PKEY_free(key);
    secret_free(password);
    if (rc != 0) {
        secret_free(*password_out);
        *password_out = NULL;
    }
    return rc;
}

/* Bundles and writes the outputs; fills files and *password_out (generated password). */
static int deliver(worker *w, job *j, json_t *files, char **password_out)
{
    run *r = w->run;
    const enroll_request *req = j->req;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *certs = NULL;
    BIO *bio = BIO_new(BIO_s_mem()), *key_bio = NULL;
    char *password = NULL;
    int rc = -1;
    uint64_t t0 = run_clock_ns();
    cpu_enter(r);
    bool gated = true;

    if (bio == NULL) {
        enroll_error_set(&j->err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        goto done;
    }
    if (req->storage == STORAGE_EXPORT) {
        if (j->proven_key != NULL && j->target_count == 0) {
            key = j->proven_key; /* unwrapped by its proof a moment ago */
            j->proven_key = NULL;
        } else if ((key = unwrap_key(r, j, j->target_count == 0)) == NULL) {
            goto done;
        }
        if (privkey_matches_cert(j->cert, key) != 1) {
            enroll_error_set(&j->err, HSE_KEY_MISMATCH, NULL,
                             "the issued certificate does not match the generated key");
            goto done;
        }
        if (j->target_count > 0) { /* HSM calls: no CPU permit held while they wait */
            cpu_leave(r);
            int stored = deliver_to_stores(w, j, key);
            cpu_enter(r);
            if (stored != 0)
                goto done;
        }
        if ((password = choose_password(r, j, password_out)) == NULL)
            goto done;
    }
    certs = chain_arrange(j->cert, j->chain, req->include_chain, req->chain_order);
    if (certs == NULL) {
        enroll_error_set(&j->err, HSE_BUNDLE_FAILED, NULL, "cannot order the certificate chain");
        goto done;
    }
    int iterations = (int)r->cfg->settings.pkcs12_iterations;
    const char *ext = "pem";
    switch (req->format) {
    case FORMAT_PFX: {
        pfx_options po = {.password = password,
                          .friendly_name = req->friendly_name,
                          .csp_name = req->csp_name,
                          .legacy = req->legacy_encryption,
                          .iterations = iterations};
        ext = "pfx";
        if (pfx_write(bio, key, certs, &po, &j->err) != 0)
            goto done;
        break;
    }
    case FORMAT_PEM: {
        pem_bundle_options po = {.include_subject_header = req->include_subject_header,
                                 .key = key,
                                 .password = password,
                                 .pbkdf2_iterations = iterations};
        if (pem_bundle_write(bio, certs, &po, &j->err) != 0)
            goto done;
        break;
    }
    case FORMAT_DER:
        ext = "der";
        if (der_cert_write(bio, j->cert, &j->err) != 0)
            goto done;
        if (key != NULL) {
            key_bio = BIO_new(BIO_s_mem());
            if (key_bio == NULL ||
                pkcs8_der_write(key_bio, key, password, iterations, &j->err) != 0)
                goto done;
        }
        break;
    }
    add_stage(r, STAGE_BUNDLE, t0);
    trace(j, "bundle", t0, "%s encoded", ext);
    cpu_leave(r);
    gated = false;
    t0 = run_clock_ns();
    bool secret = key != NULL;
    if (bio_write_file(r, bio, req->id, ext, secret && req->format != FORMAT_DER ? 0600 : 0644,
                       files, &j->err) != 0)
        goto done;
    if (key_bio != NULL && bio_write_file(r, key_bio, req->id, "p8", 0600, files, &j->err) != 0)
        goto done;
    add_stage(r, STAGE_WRITE, t0);
    trace(j, "write", t0, "%s.%s written", req->id, ext);
    rc = 0;
done:
    if (gated)
        cpu_leave(r);
    if (bio != NULL)
        BIO_free(bio); /* memory BIOs are cleared on free by OpenSSL (BIO_s_mem + BUF_MEM) */
    BIO_free(key_bio);
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    secret_free(password);
    if (rc != 0) {
        secret_free(*password_out);
        *password_out = NULL;
    }
    return rc;
}

static const char *disposition_message(const job *j)
{
    if (j->req->operation == OP_CSR)
        return j->key_uri ? "Issued; the private key was retained in the HSM token." : "Issued.";
    return j->req->storage == STORAGE_TOKEN
               ? "Issued; the private key stays in the HSM token."
               : "Issued; the private key was exported once and destroyed in the HSM.";
}

static json_t *certificate_information(job *j, const char *password)
{
    json_t *info = certinfo_describe(j->cert);
    if (info == NULL)
        return json_object();
    json_object_set_new(info, "RequestDisposition", json_string("ISSUED"));
    json_object_set_new(info, "DispositionMessage", json_string(disposition_message(j)));
    /* A CFSSL CA has no such numbers. */
    if (j->keyfactor_id > 0)
        json_object_set_new(info, "KeyfactorID", json_integer(j->keyfactor_id));
    if (j->request_id > 0)
        json_object_set_new(info, "KeyfactorRequestId", json_integer(j->request_id));
    if (password != NULL)
        json_object_set_new(info, "Password", json_string(password));
    return info;
}

static void free_job(job *j)
{
    request_free(j->req);
    EVP_PKEY_free(j->proven_key);
    if (j->wrapped_key != NULL) {
        OPENSSL_cleanse(j->wrapped_key, j->wrapped_len);
        free(j->wrapped_key);
    }
    hsm_keypair_release(&j->pair);
    free(j->key_uri);
    free(j->targets);
    X509_REQ_free(j->csr);
    X509_free(j->cert);
    sk_X509_pop_free(j->chain, X509_free);
    free(j);
}

/* The run stops here for this job (full disk, failed journal): it is left as the journal has it,
 * token key included, for --resume. */
static void abandon(run *r, hsm_session *sessions, job *j)
{
    if (atomic_exchange(&r->stop, 1) == 0)
        log_error("%s: %s: stopping; run again with --resume once this is fixed", j->req->id,
                  j->err.message);
    atomic_fetch_add(&r->stats.abandoned, 1);
    if (j->have_pair && j->req->storage == STORAGE_EXPORT && sessions != NULL)
        hsm_destroy_keypair(&sessions[j->token], &j->pair, NULL);
    free_job(j);
}

/* Issued, but its file could not be written (DELIVERY_FAILED): the certificate is journaled, the
 * key is kept, and --resume delivers it. */
static bool undelivered(const job *j)
{
    return j->failed && j->cert != NULL && j->err.code_id == HSE_DELIVERY_FAILED;
}

/* The request as a batch line (without Id, never a Password): what `renew` replays to reissue
 * the certificate with a new key. PFX and Reenrollment lines only; a CSR line's key came from
 * outside. */
static json_t *request_description(const job *j)
{
    const enroll_request *req = j->req;
    if (req->operation == OP_CSR)
        return NULL;
    json_t *d = json_object();
    bool reenroll = req->operation == OP_REENROLLMENT;
    json_object_set_new(d, "Operation", json_string(reenroll ? "Reenrollment" : "PFX"));
    if (req->subject_text != NULL)
        json_object_set_new(d, reenroll ? "SubjectName" : "Subject",
                            json_string(req->subject_text));
    json_t *sans = json_object();
    for (int i = 0; i < sk_GENERAL_NAME_num(req->sans); i++) {
        char *text = san_entry_text(sk_GENERAL_NAME_value(req->sans, i));
        char *colon = text ? strchr(text, ':') : NULL;
        if (colon != NULL) {
            *colon = '\0';
            json_t *list = json_object_get(sans, text);
            if (list == NULL) {
                list = json_array();
                json_object_set_new(sans, text, list);
            }
            json_array_append_new(list, json_string(colon + 1));
        }
        free(text);
    }
    json_object_set_new(d, "SANs", sans);
    json_object_set_new(d, "KeyType", json_string(key_algorithm_name(req->key.algorithm)));
    json_object_set_new(d, "KeyLength", json_integer(req->key.bits));
    if (req->template_name != NULL)
        json_object_set_new(d, "Template", json_string(req->template_name));
    else if (req->pattern_id < 0 && j->policy.template_ != NULL)
        json_object_set_new(d, "Template", json_string(j->policy.template_->name));
    if (req->pattern_id >= 0)
        json_object_set_new(d, "EnrollmentPatternId", json_integer(req->pattern_id));
    if (j->policy.ca != NULL)
        json_object_set_new(d, "CertificateAuthority", json_string(j->policy.ca->name));
    if (reenroll) {
        if (req->store_id != NULL)
            json_object_set_new(d, "KeystoreId", json_string(req->store_id));
        if (req->alias != NULL)
            json_object_set_new(d, "Alias", json_string(req->alias));
        if (req->agent_guid != NULL)
            json_object_set_new(d, "AgentGuid", json_string(req->agent_guid));
        return d;
    }
    json_object_set_new(d, "Format", json_string(request_format_name(req->format)));
    json_object_set_new(d, "KeyStorage", json_string(request_storage_name(req->storage)));
    json_object_set_new(d, "IncludeChain", json_boolean(req->include_chain));
    json_object_set_new(
        d, "ChainOrder",
        json_string(req->chain_order == CHAIN_ROOT_FIRST ? "RootFirst" : "EndEntityFirst"));
    json_object_set_new(d, "IncludeSubjectHeader", json_boolean(req->include_subject_header));
    json_object_set_new(d, "UseLegacyEncryption", json_boolean(req->legacy_encryption));
    if (req->friendly_name != NULL)
        json_object_set_new(d, "CustomFriendlyName", json_string(req->friendly_name));
    if (req->metadata != NULL)
        json_object_set_new(d, "Metadata", json_incref(req->metadata));
    return d;
}

static void finish(run *r, hsm_session *sessions, job *j, json_t *files, char *password)
{
    const enroll_request *req = j->req;
    if (j->uncertain || undelivered(j)) {
        /* The CA may have issued it, or did: its key stays, token storage included. */
    } else if (j->failed && j->have_pair && sessions != NULL) {
        /* A failed request leaves no key behind, token storage included. */
        hsm_destroy_keypair(&sessions[j->token], &j->pair, NULL);
        j->have_pair = false;
    } else if (j->failed && j->restored && req->storage == STORAGE_TOKEN && sessions != NULL) {
        /* Taken up from the journal: no handles are held, it is found by its CKA_ID. */
        hsm_destroy_keypair_by_id(&sessions[j->token], j->key_id, sizeof j->key_id);
    }
    json_t *line = result_new(req->id, req->line,
                              j->uncertain ? "uncertain"
                              : j->failed  ? "failed"
                              : j->pending ? "pending"
                                           : "issued");
    if (j->policy.ca != NULL)
        json_object_set_new(line, "CertificateAuthority", json_string(j->policy.ca->name));
    if (j->policy.template_ != NULL)
        json_object_set_new(line, "Template", json_string(j->policy.template_->name));
    if (req->operation == OP_REENROLLMENT && j->policy.store != NULL) {
        json_object_set_new(line, "StoreId", json_string(j->policy.store->id));
        json_object_set_new(line, "Alias", json_string(req->alias));
    }
    if (!j->failed && !j->pending && j->target_count > 0) { /* seed 001's SuccessfulStores */
        json_t *stores = json_array();
        for (size_t i = 0; i < j->target_count; i++) {
            bool seen = false;
            for (size_t k = 0; k < i; k++)
                seen = seen || j->targets[k].store == j->targets[i].store;
            if (!seen)
                json_array_append_new(stores, json_string(j->targets[i].store->id));
        }
        json_object_set_new(line, "SuccessfulStores", stores);
    }
    if (!j->failed && j->pending) {
        json_t *info = json_pack("{s:s, s:s}", "RequestDisposition", j->disposition,
                                 "DispositionMessage", j->disposition_message);
        if (j->request_id > 0)
            json_object_set_new(info, "KeyfactorRequestId", json_integer(j->request_id));
        if (password != NULL)
            json_object_set_new(info, "Password", json_string(password));
        json_object_set_new(line, "CertificateInformation", info);
        json_object_set_new(line, "Files", files ? json_incref(files) : json_array());
        if (j->key_uri != NULL)
            json_object_set_new(line, "KeyUri", json_string(j->key_uri));
        atomic_fetch_add(&r->stats.pending, 1);
    } else if (!j->failed) {
        json_object_set_new(line, "CertificateInformation", certificate_information(j, password));
        json_object_set_new(line, "Metadata",
                            req->metadata ? json_incref(req->metadata) : json_object());
        if (req->owner_role_id >= 0)
            json_object_set_new(line, "OwnerRoleId", json_integer(req->owner_role_id));
        if (req->owner_role_name != NULL)
            json_object_set_new(line, "OwnerRoleName", json_string(req->owner_role_name));
        json_object_set_new(line, "Files", files ? json_incref(files) : json_array());
        if (j->key_uri != NULL)
            json_object_set_new(line, "KeyUri", json_string(j->key_uri));
        json_t *described = request_description(j);
        if (described != NULL)
            json_object_set_new(line, "Request", described);
        atomic_fetch_add(&r->stats.issued, 1);
        uint64_t now = run_clock_ns(), none = 0;
        latency_record(&r->stats.latency, now - j->started_ns);
        atomic_compare_exchange_strong(&r->stats.first_issued_ns, &none, now);
    } else {
        result_set_error(line, &j->err);
        if (undelivered(j) && j->keyfactor_id > 0)
            json_object_set_new(line, "KeyfactorID", json_integer(j->keyfactor_id));
        if (j->uncertain && j->key_uri != NULL)
            json_object_set_new(line, "KeyUri", json_string(j->key_uri));
        atomic_fetch_add(j->uncertain ? &r->stats.uncertain : &r->stats.failed, 1);
        run_note_failure(r, j->err.code, req->line, req->id, j->err.message);
        run_metrics_error(r, j->err.code);
        char line_text[24];
        snprintf(line_text, sizeof line_text, "%ld", req->line);
        const char *fields[] = {"line", line_text, "id", req->id, "code", j->err.code, NULL};
        log_fields(LOG_VERBOSE, fields, "line %ld (%s): %s: %s", req->line, req->id, j->err.code,
                   j->err.message);
    }
    if (!j->failed && j->recovery_note[0] != '\0')
        /* An answer was lost (in this run or before the interruption): what the CA said. */
        json_object_set_new(line, "EarlierSubmission",
                            json_pack("{s:s, s:s}", "CertificateAuthority", j->policy.ca->name,
                                      "Note", j->recovery_note));
    else if (!j->failed && j->earlier_submission && j->policy.ca->type != CA_TYPE_LOCAL)
        /* The interrupted run had sent it, and the CA did not say what it issued. */
        json_object_set_new(line, "EarlierSubmission",
                            json_pack("{s:s, s:s}", "CertificateAuthority", j->policy.ca->name,
                                      "Note",
                                      "submitted before the interruption with no answer "
                                      "recorded: the CA may hold a second certificate for this "
                                      "request"));
    recovery_done(r, req->id, req->line, line, false);
    if (results_write(&r->results, line) != 0)
        log_error("cannot write %s/results.ndjson", r->out.path);
    /* The line may hold a generated password: wipe the serialized copy's source too. */
    json_decref(line);
    secret_free(password);
    free_job(j);
}

void enroll_answered(worker *w, job *j)
{
    json_t *files = json_array();
    char *password = NULL;
    if (!j->failed && !j->pending)
        fault_answered();
    if (!j->failed && !j->pending)
        recovery_issued(w->run, j);
    if (!j->failed && !j->pending && j->req->operation == OP_REENROLLMENT) {
        fault_point("store-issued");
        if (install_in_store(w, j) != 0)
            j->failed = true;
    }
    if (!j->failed && j->pending && keep_pending_key(w, j, files, &password) != 0)
        j->failed = true;
    else if (!j->failed && !j->pending && deliver(w, j, files, &password) != 0)
        j->failed = true;
    /* A full or unwritable output directory stops the run; what was issued is delivered by
     * --resume, without asking the CA again. */
    if (j->failed && w->run->journal != NULL &&
        (j->err.code_id == HSE_DISK_FULL || j->err.code_id == HSE_WRITE_FAILED)) {
        json_decref(files);
        secret_free(password);
        abandon(w->run, w->sessions, j);
        return;
    }
    finish(w->run, w->sessions, j, files, password);
    json_decref(files);
}

/* The submit stage hands the CA's answer to the job: certificate and chain (taken), the CA's ids,
 * or the failure or the pending disposition. */
static void take_answer(job *j)
{
    ca_answer *a = &j->sub.answer;
    j->cert = a->cert;
    j->chain = a->chain;
    a->cert = NULL;
    a->chain = NULL;
    j->keyfactor_id = a->keyfactor_id;
    j->request_id = a->request_id;
    memcpy(j->recovery_note, a->note, sizeof j->recovery_note);
    if (a->failed) {
        j->failed = true;
        j->uncertain = a->uncertain;
        j->err = a->err;
    } else if (a->pending) {
        j->pending = true;
        memcpy(j->disposition, a->disposition, sizeof j->disposition);
        memcpy(j->disposition_message, a->disposition_message, sizeof j->disposition_message);
    }
}

/* The gauge of requests at the job's CA (metrics). */
static void ca_in_flight_add(run *r, const job *j, long n)
{
    size_t i = (size_t)(j->policy.ca - r->cfg->cas);
    if (i < RUN_METRICS_CAS)
        atomic_fetch_add(&r->stats.ca_in_flight[i], n);
}

/* A network CA answered (on its event loop's thread): the job goes back to the workers. */
static void on_ca_answer(ca_submission *sub, void *user)
{
    run *r = user;
    job *j = (job *)((char *)sub - offsetof(job, sub));
    take_answer(j);
    j->answered = true;
    ca_in_flight_add(r, j, -1);
    add_stage(r, STAGE_SUBMIT, j->submitted_ns);
    trace(j, "submit", j->submitted_ns, "CA \"%s\" answered: %s", j->policy.ca->name,
          j->failed    ? "failed"
          : j->pending ? "pending"
                       : "issued");
    queue_requeue(&r->queue, j);
}

/* The embedded CA's submission. It signs in the HSM, on this worker's session on its token: a
 * busy module is waited for and a lost session (or the login gone with a failover) recovered,
 * and the certificate signed once more, as for the key (generate). A CA that failed this way
 * issued nothing. False when the connector keeps the submission (pending). */
static bool submit_local(worker *w, job *j)
{
    run *r = w->run;
    for (int recoveries = 0, busy = 0;;) {
        (void)sessions_busy(w);
        throttle_enter(&r->throttle);
        if (connector_submit(&r->ca, j->policy.ca, &j->sub) == SUBMIT_PENDING) {
            throttle_leave(&r->throttle, true);
            return false;
        }
        bool failed = j->sub.answer.failed;
        bool refused = failed && sessions_busy(w);
        throttle_leave(&r->throttle, !failed);
        if (!failed || !hsm_step_again(w, refused, j->sub.answer.err.message, &busy, &recoveries))
            return true;
        ca_answer_clear(&j->sub.answer);
    }
}

bool enroll_job(worker *w, job *j)
{
    run *r = w->run;
    if (!j->restored) {
        j->token = w->key_token;
        /* EdDSA token keys in a token of their own (Hsm.EdDSAToken): libp11 0.4.12 cannot list
         * a token holding one, which would make every other key there unusable through it. */
        if (j->req->storage == STORAGE_TOKEN && is_edwards(j->req->key.algorithm) &&
            r->hsm->eddsa_token != SIZE_MAX)
            j->token = r->hsm->eddsa_token;
        if ((j->req->operation == OP_REENROLLMENT && prepare_reenrollment(w, j) != 0) ||
            (j->req->operation == OP_PFX && prepare_store_delivery(w, j) != 0)) {
            j->failed = true;
            finish(r, w->sessions, j, NULL, NULL);
            return true;
        }
        if (j->req->operation != OP_CSR)
            recovery_clear_leftover(r, w, j);
        atomic_fetch_add(&r->stats.hsm_busy, 1);
        int made = j->req->operation == OP_CSR ? take_csr(w, j) : generate(w, j);
        atomic_fetch_sub(&r->stats.hsm_busy, 1);
        if (made != 0) {
            j->failed = true;
            finish(r, w->sessions, j, NULL, NULL);
            return true;
        }
        if (j->req->operation == OP_REENROLLMENT)
            fault_point("store-keygen");
        /* Write-ahead: the key can be found again before any CA sees its CSR. */
        if (recovery_key_made(r, j) != 0) {
            abandon(r, w->sessions, j);
            return true;
        }
        if (j->req->operation == OP_REENROLLMENT)
            fault_point("store-journaled");
    }
    if (j->answered) { /* issued before the interruption: deliver */
        enroll_answered(w, j);
        return true;
    }
    if (j->earlier_submission && j->policy.ca->type == CA_TYPE_CFSSL) {
        /* Sent before the interruption, no answer kept, and CFSSL cannot be asked whether it
         * issued it: sending it again could issue a second certificate. */
        j->failed = j->uncertain = true;
        enroll_error_set(&j->err, HSE_CA_UNCERTAIN, NULL,
                         "sent to CFSSL CA \"%s\" before the interruption with no answer kept; "
                         "CFSSL cannot say whether it issued it, so it is not sent again (its key "
                         "is kept): check the CA, then --force, or a new line",
                         j->policy.ca->name);
        finish(r, w->sessions, j, NULL, NULL);
        return true;
    }
    if (j->policy.ca->type != CA_TYPE_LOCAL && recovery_submitting(r, j) != 0) {
        abandon(r, w->sessions, j);
        return true;
    }
    j->sub = (ca_submission){
        .req = j->req,
        .template_ = j->policy.template_,
        .csr = j->csr,
        .run_id = recovery_run_id(r),
        .resumed = recovery_resumed(r),
        .repeat = j->earlier_submission,
        .sessions = w->sessions,
        .done = on_ca_answer,
        .user = r,
    };
    j->submitted_ns = run_clock_ns();
    trace(j, "submit", 0, "CSR sent to CA \"%s\"", j->policy.ca->name);
    ca_in_flight_add(r, j, 1);
    bool answered_later = j->policy.ca->type == CA_TYPE_LOCAL
                              ? !submit_local(w, j)
                              : connector_submit(&r->ca, j->policy.ca, &j->sub) == SUBMIT_PENDING;
    if (answered_later)
        return false; /* on_ca_answer puts the job back on the queue */
    ca_in_flight_add(r, j, -1);
    take_answer(j);
    add_stage(w->run, STAGE_SUBMIT, j->submitted_ns);
    trace(j, "submit", j->submitted_ns, "CA \"%s\" answered: %s", j->policy.ca->name,
          j->failed    ? "failed"
          : j->pending ? "pending"
                       : "issued");
    enroll_answered(w, j);
    return true;
}
