/* One PFX enrollment outside a run (engine/enroll_one.h): the export-key generation of a run's
 * generate stage and the PKCS#12 of its deliver stage, for serve's POST /Enrollment/PFX. */
#include "engine/enroll_one.h"

#include <openssl/crypto.h>
#include <openssl/obj_mac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "batch/log.h"
#include "batch/secret.h"
#include "ca/hsm_signer.h"
#include "engine/enroll.h"
#include "engine/store.h"
#include "formats/bundle.h"
#include "formats/pubkey.h"
#include "formats/sign.h"

static bool edwards(key_algorithm a)
{
    return a == KEYALG_ED25519 || a == KEYALG_ED448;
}

/* The private key of pair, out of the token: wrapped under the context's wrapping key and
 * unwrapped here, or read (READABLE). NULL with err; *not_wrappable when the module will not
 * wrap this EdDSA key (the caller regenerates it readable). */
static EVP_PKEY *take_out(hsm_context *hsm, size_t t, hsm_session *s, const enroll_request *req,
                          hsm_keypair *pair, hsm_key_storage storage, bool *not_wrappable,
                          enroll_error *err)
{
    hsm_error herr;
    const key_algorithm alg = req->key.algorithm;
    if (storage == HSM_STORAGE_READABLE) {
        unsigned char *raw = NULL;
        size_t len = 0;
        if (hsm_read_private_value(s, pair->private_key, &raw, &len, &herr) != 0) {
            hsm_error_to_enroll(&herr, HSE_HSM_EXPORT_FAILED, err);
            return NULL;
        }
        EVP_PKEY *key =
            privkey_from_eddsa_raw(alg == KEYALG_ED25519 ? NID_ED25519 : NID_ED448, raw, len, err);
        OPENSSL_cleanse(raw, len);
        free(raw);
        return key;
    }
    unsigned char *wrapped = NULL;
    size_t wrapped_len = 0;
    if (hsm_wrap_private_key_with(s, hsm->wrap_mechanism, hsm_context_kek_handle(hsm, t),
                                  pair->private_key, &wrapped, &wrapped_len, &herr) != 0) {
        if ((herr.rv == CKR_KEY_NOT_WRAPPABLE || herr.rv == CKR_KEY_UNEXTRACTABLE) &&
            edwards(alg)) {
            int unknown = EXPORT_UNKNOWN;
            atomic_compare_exchange_strong(&hsm->export_methods[alg], &unknown, EXPORT_READ);
            *not_wrappable = true;
            return NULL;
        }
        hsm_error_to_enroll(&herr, HSE_HSM_EXPORT_FAILED, err);
        return NULL;
    }
    int unknown = EXPORT_UNKNOWN;
    atomic_compare_exchange_strong(&hsm->export_methods[alg], &unknown, EXPORT_WRAP);
    EVP_PKEY *key =
        hsm->wrap_scheme == HSM_WRAP_RFC3394_PKCS7
            ? privkey_unwrap_scheme(KEYWRAP_RFC3394_PKCS7, hsm->kek, wrapped, wrapped_len, err)
        : hsm->wrap_scheme == HSM_WRAP_CBC_PAD
            ? privkey_unwrap_scheme(KEYWRAP_CBC_PAD, hsm->kek, wrapped, wrapped_len, err)
            : privkey_unwrap_pkcs8(hsm->kek, wrapped, wrapped_len, err);
    OPENSSL_cleanse(wrapped, wrapped_len);
    free(wrapped);
    return key;
}

/* The key pair and its private key in process; the token's objects are destroyed. */
static EVP_PKEY *make_key(hsm_context *hsm, size_t t, hsm_session *s, const enroll_request *req,
                          hsm_keypair *pair, enroll_error *err)
{
    hsm_key_spec spec = enroll_hsm_spec(&req->key);
    const key_algorithm alg = req->key.algorithm;
    char why[300];
    if (!hsm_context_can_generate(hsm, t, &spec, why, sizeof why)) {
        enroll_error_set(err, HSE_HSM_CANNOT_GENERATE, "KeyType", "%s", why);
        return NULL;
    }
    if (atomic_load(&hsm->export_methods[alg]) == EXPORT_NONE) {
        enroll_error_set(err, HSE_HSM_CANNOT_EXPORT, "KeyStorage",
                         "this module cannot export %s keys", key_algorithm_name(alg));
        return NULL;
    }
    if (!hsm_context_can_export(hsm, why, sizeof why)) {
        enroll_error_set(err, HSE_HSM_CANNOT_EXPORT, "KeyStorage", "%s", why);
        return NULL;
    }
    if (hsm_context_export_ready(hsm, NULL, NULL, err) != 0)
        return NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        hsm_key_storage storage = atomic_load(&hsm->export_methods[alg]) == EXPORT_READ
                                      ? HSM_STORAGE_READABLE
                                      : HSM_STORAGE_WRAPPABLE;
        hsm_error herr;
        if (hsm_generate_keypair_with_id(s, &spec, storage, req->id, NULL, pair, &herr) != 0) {
            hsm_error_to_enroll(&herr, HSE_HSM_KEYGEN_FAILED, err);
            return NULL;
        }
        bool not_wrappable = false;
        EVP_PKEY *key = take_out(hsm, t, s, req, pair, storage, &not_wrappable, err);
        if (key != NULL)
            return key; /* the caller destroys the objects after the CSR */
        hsm_destroy_keypair(s, pair, NULL);
        hsm_keypair_release(pair);
        if (!not_wrappable)
            return NULL;
    }
    enroll_error_set(err, HSE_HSM_EXPORT_FAILED, NULL,
                     "the module lets this key type out neither wrapped nor read");
    return NULL;
}

static int pfx_bytes(EVP_PKEY *key, X509 *cert, STACK_OF(X509) * chain, const enroll_request *req,
                     int iterations, engine_pfx *out, enroll_error *err)
{
    STACK_OF(X509) *certs = chain_arrange(cert, chain, req->include_chain, req->chain_order);
    BIO *bio = BIO_new(BIO_s_mem());
    int rc = -1;
    if (certs == NULL || bio == NULL) {
        enroll_error_set(err, HSE_BUNDLE_FAILED, NULL, "cannot order the certificate chain");
        goto done;
    }
    pfx_options po = {.password = out->password,
                      .friendly_name = req->friendly_name,
                      .csp_name = req->csp_name,
                      .legacy = req->legacy_encryption,
                      .iterations = iterations};
    if (pfx_write(bio, key, certs, &po, err) != 0)
        goto done;
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    if ((out->pfx = malloc(len > 0 ? (size_t)len : 1)) == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        goto done;
    }
    memcpy(out->pfx, data, (size_t)len);
    out->pfx_len = (size_t)len;
    rc = 0;
done:
    BIO_free(bio);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

int engine_make_pfx(hsm_context *hsm, size_t t, hsm_session *s, const enroll_request *req,
                    long long password_length, int iterations, engine_issue_fn *issue,
                    void *issue_arg, engine_pfx *out, enroll_error *err)
{
    memset(out, 0, sizeof *out);
    if (req->operation != OP_PFX || req->storage != STORAGE_EXPORT || req->subject == NULL) {
        enroll_error_set(err, HSE_FIELD_NOT_SUPPORTED, "KeyStorage",
                         "a PFX enrollment needs KeyStorage export");
        return -1;
    }
    hsm_keypair pair;
    memset(&pair, 0, sizeof pair);
    EVP_PKEY *key = make_key(hsm, t, s, req, &pair, err);
    if (key == NULL)
        return -1;
    X509_REQ *csr = NULL;
    STACK_OF(X509) *chain = NULL;
    int rc = -1;
    EVP_PKEY *pub = hsm_keypair_public(&pair, err);
    if (pub != NULL && EVP_PKEY_eq(key, pub) != 1) {
        atomic_store(&hsm->export_methods[req->key.algorithm], EXPORT_NONE);
        enroll_error_set(err, HSE_HSM_CANNOT_EXPORT, "KeyStorage",
                         "this module cannot export %s keys: what it let out is another key",
                         key_algorithm_name(req->key.algorithm));
    } else if (pub != NULL) {
        signer sg;
        hsm_signer_ctx ctx;
        hsm_signer_init(&sg, &ctx, s, pair.private_key, sig_alg_for_key(pub));
        csr = csr_build(req->subject, req->sans, pub, &sg, err);
    }
    EVP_PKEY_free(pub);
    /* The key now lives only in this process: the session objects go before the CA is asked. */
    hsm_destroy_keypair(s, &pair, NULL);
    hsm_keypair_release(&pair);
    if (csr == NULL)
        goto done;
    if (issue(issue_arg, csr, &out->cert, &chain, err) != 0)
        goto done;
    if (X509_check_private_key(out->cert, key) != 1) {
        enroll_error_set(err, HSE_KEY_MISMATCH, NULL,
                         "the issued certificate does not match the generated key");
        goto done;
    }
    if (req->password != NULL) {
        out->password = strdup(req->password);
    } else {
        out->password = secret_random((size_t)(password_length > 16 ? password_length : 16));
        out->password_generated = true;
    }
    if (out->password == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        goto done;
    }
    rc = pfx_bytes(key, out->cert, chain, req, iterations, out, err);
done:
    X509_REQ_free(csr);
    EVP_PKEY_free(key);
    if (rc != 0)
        engine_pfx_free(out);
    return rc;
}

void engine_pfx_free(engine_pfx *p)
{
    if (p->pfx != NULL)
        OPENSSL_cleanse(p->pfx, p->pfx_len);
    free(p->pfx);
    secret_free(p->password);
    X509_free(p->cert);
    memset(p, 0, sizeof *p);
}

static pthread_mutex_t reenroll_lock = PTHREAD_MUTEX_INITIALIZER;

int engine_reenroll(hsm_context *hsm, size_t t, hsm_session *s, const config_store *store,
                    const enroll_request *req, engine_issue_fn *issue, void *issue_arg, X509 **cert,
                    enroll_error *err)
{
    *cert = NULL;
    if (req->operation != OP_REENROLLMENT || req->alias == NULL || req->subject == NULL) {
        enroll_error_set(err, HSE_FIELD_NOT_SUPPORTED, NULL, "not a reenrollment request");
        return -1;
    }
    hsm_key_spec spec = enroll_hsm_spec(&req->key);
    char why[300];
    if (t < hsm->key_token_count && !hsm_context_can_generate(hsm, t, &spec, why, sizeof why)) {
        enroll_error_set(err, HSE_HSM_CANNOT_GENERATE, "KeyType", "%s", why);
        return -1;
    }
    pthread_mutex_lock(&reenroll_lock);
    store_index ix;
    int rc = -1;
    bool have_pair = false, installed = false;
    hsm_keypair pair;
    memset(&pair, 0, sizeof pair);
    X509_REQ *csr = NULL;
    STACK_OF(X509) *chain = NULL;
    /* A fresh index: another process (a run) may have changed the token since the last call. */
    if (store_index_build(&ix, store, s, err) != 0) {
        pthread_mutex_unlock(&reenroll_lock);
        return -1;
    }
    const store_alias *a = store_index_find(&ix, req->alias);
    if (store_alias_current(a) == NULL) {
        enroll_error_set(err, HSE_STORE_ALIAS_UNKNOWN, "Alias",
                         "store %s has no alias \"%.80s\" with a key and a certificate", store->id,
                         req->alias);
        goto done;
    }
    hsm_error herr;
    if (hsm_generate_keypair_with_id(s, &spec, HSM_STORAGE_TOKEN, req->alias, NULL, &pair, &herr) !=
        0) {
        hsm_error_to_enroll(&herr, HSE_HSM_KEYGEN_FAILED, err);
        goto done;
    }
    have_pair = true;
    EVP_PKEY *pub = hsm_keypair_public(&pair, err);
    if (pub == NULL)
        goto done;
    signer sg;
    hsm_signer_ctx ctx;
    hsm_signer_init(&sg, &ctx, s, pair.private_key, sig_alg_for_key(pub));
    csr = csr_build(req->subject, req->sans, pub, &sg, err);
    if (csr != NULL && issue(issue_arg, csr, cert, &chain, err) == 0) {
        if (EVP_PKEY_eq(X509_get0_pubkey(*cert), pub) != 1)
            enroll_error_set(err, HSE_KEY_MISMATCH, NULL,
                             "the issued certificate does not match the generated key");
        else if (store_install_making_room(s, *cert, req->alias, a, pair.id, err) == 0)
            installed = true;
    }
    EVP_PKEY_free(pub);
    if (!installed)
        goto done;
    /* From here the alias has its new complete entry: the old ones go. */
    rc = store_retire_others(s, a, pair.id, err);
done:
    if (have_pair && !installed)
        hsm_destroy_keypair(s, &pair, NULL);
    if (have_pair)
        hsm_keypair_release(&pair);
    X509_REQ_free(csr);
    store_index_free(&ix);
    pthread_mutex_unlock(&reenroll_lock);
    if (rc != 0 && !installed) {
        X509_free(*cert);
        *cert = NULL;
    }
    return rc;
}
