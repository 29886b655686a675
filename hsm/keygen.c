/* Key pair generation inside the token for RSA, ECC (P-256/384/521) and EdDSA (Ed25519/Ed448),
 * with the attribute sets of the three storages, transient-failure retry, and signing. */
#include "hsm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "ckr.h"
#include "internal.h"

/* DER-encoded curve OIDs for CKA_EC_PARAMS. */
static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char oid_p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
static const unsigned char oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
static const unsigned char oid_ed448[] = {0x06, 0x03, 0x2b, 0x65, 0x71};
/* PKCS#11 3.0 also allows the curve name as a PrintableString; some modules only take that. */
static const unsigned char name_ed25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                             'd',  's',  '2', '5', '5', '1', '9'};
static const unsigned char name_ed448[] = {0x13, 0x0a, 'e', 'd', 'w', 'a',
                                           'r',  'd',  's', '4', '4', '8'};

enum { KEYGEN_MAX_ATTEMPTS = 6 };

const unsigned char *hsm_curve_params(const hsm_key_spec *spec, size_t *len)
{
    const unsigned char *p = NULL;
    *len = 0;
    if (spec->type == HSM_KEY_EC && spec->curve == HSM_CURVE_P256)
        p = oid_p256, *len = sizeof oid_p256;
    else if (spec->type == HSM_KEY_EC && spec->curve == HSM_CURVE_P384)
        p = oid_p384, *len = sizeof oid_p384;
    else if (spec->type == HSM_KEY_EC && spec->curve == HSM_CURVE_P521)
        p = oid_p521, *len = sizeof oid_p521;
    else if (spec->type == HSM_KEY_ED25519)
        p = oid_ed25519, *len = sizeof oid_ed25519;
    else if (spec->type == HSM_KEY_ED448)
        p = oid_ed448, *len = sizeof oid_ed448;
    return p;
}

static int read_attribute(hsm_session *s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                          unsigned char **out, size_t *out_len, hsm_error *err);

int hsm_read_public_parts(hsm_session *session, hsm_keypair *pair, hsm_error *err)
{
    if (pair->spec.type == HSM_KEY_RSA)
        return (read_attribute(session, pair->public_key, CKA_MODULUS, &pair->modulus,
                               &pair->modulus_len, err) == 0 &&
                read_attribute(session, pair->public_key, CKA_PUBLIC_EXPONENT, &pair->exponent,
                               &pair->exponent_len, err) == 0)
                   ? 0
                   : -1;
    return read_attribute(session, pair->public_key, CKA_EC_POINT, &pair->ec_point,
                          &pair->ec_point_len, err);
}

static void spec_text(const hsm_key_spec *spec, char *buf, size_t size)
{
    static const char *curves[] = {"?", "P-256", "P-384", "P-521"};
    switch (spec->type) {
    case HSM_KEY_RSA:
        snprintf(buf, size, "RSA %u", spec->rsa_bits);
        break;
    case HSM_KEY_EC:
        snprintf(buf, size, "ECC %s", curves[spec->curve <= HSM_CURVE_P521 ? spec->curve : 0]);
        break;
    case HSM_KEY_ED25519:
        snprintf(buf, size, "Ed25519");
        break;
    case HSM_KEY_ED448:
        snprintf(buf, size, "Ed448");
        break;
    default:
        snprintf(buf, size, "unknown key type");
    }
}

static int read_attribute(hsm_session *s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                          unsigned char **out, size_t *out_len, hsm_error *err)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv = s->f->C_GetAttributeValue(s->handle, obj, &a, 1);
    if (rv == CKR_OK && a.ulValueLen != CK_UNAVAILABLE_INFORMATION) {
        a.pValue = malloc(a.ulValueLen + 1);
        if (a.pValue == NULL) {
            hsm_error_set(err, "", CKR_HOST_MEMORY, "out of memory");
            return -1;
        }
        rv = s->f->C_GetAttributeValue(s->handle, obj, &a, 1);
    }
    if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
        free(a.pValue);
        hsm_error_set(err, "C_GetAttributeValue", rv, "C_GetAttributeValue(0x%lx) failed: %s",
                      (unsigned long)type, ckr_name(rv));
        return -1;
    }
    ((unsigned char *)a.pValue)[a.ulValueLen] = 0;
    *out = a.pValue;
    *out_len = a.ulValueLen;
    return 0;
}

int hsm_get_attribute(hsm_session *session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type,
                      unsigned char **out, size_t *out_len, hsm_error *err)
{
    return read_attribute(session, object, type, out, out_len, err);
}

static void backoff(int attempt)
{
    struct timespec ts = {0, 1000000L << attempt}; /* 1, 2, 4, ... ms */
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* CKR_GENERAL_ERROR is transient only on modules seen to need it (HSM_QUIRK_RETRY_GENERAL_ERROR):
 * elsewhere it is a real failure, and retrying it would leave more half-made keys. */
static bool retry_general(const hsm_session *s)
{
    return s->token != NULL &&
           (hsm_module_quirks(s->token->module) & HSM_QUIRK_RETRY_GENERAL_ERROR) != 0;
}

int hsm_generate_keypair(hsm_session *session, const hsm_key_spec *spec, hsm_key_storage storage,
                         const char *label, hsm_keypair *out, hsm_error *err)
{
    return hsm_generate_keypair_with_id(session, spec, storage, label, NULL, out, err);
}

int hsm_generate_keypair_with_id(hsm_session *session, const hsm_key_spec *spec,
                                 hsm_key_storage storage, const char *label,
                                 const unsigned char *id, hsm_keypair *out, hsm_error *err)
{
    memset(out, 0, sizeof *out);
    out->spec = *spec;
    out->storage = storage;
    char what[32];
    spec_text(spec, what, sizeof what);
    if (session == NULL || session->handle == CK_INVALID_HANDLE || label == NULL) {
        hsm_error_set(err, "", CKR_ARGUMENTS_BAD, "hsm_generate_keypair: no session or label");
        return -1;
    }
    if (id != NULL)
        memcpy(out->id, id, sizeof out->id);
    else if (getrandom(out->id, sizeof out->id, 0) != (ssize_t)sizeof out->id) {
        hsm_error_set(err, "", CKR_FUNCTION_FAILED, "getrandom failed: %s", strerror(errno));
        return -1;
    }

    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_BBOOL on_token = storage == HSM_STORAGE_TOKEN ? CK_TRUE : CK_FALSE;
    CK_BBOOL sensitive = storage == HSM_STORAGE_READABLE ? CK_FALSE : CK_TRUE;
    CK_BBOOL extractable = storage == HSM_STORAGE_TOKEN ? CK_FALSE : CK_TRUE;
    CK_ULONG bits = spec->rsa_bits;
    CK_BYTE exponent[] = {0x01, 0x00, 0x01};
    CK_OBJECT_CLASS pub_class = CKO_PUBLIC_KEY, priv_class = CKO_PRIVATE_KEY;
    CK_KEY_TYPE key_type;
    CK_MECHANISM mech = {0, NULL, 0};
    const unsigned char *params = NULL, *alt_params = NULL;
    size_t params_len = 0, alt_params_len = 0;

    switch (spec->type) {
    case HSM_KEY_RSA:
        if (bits != 2048 && bits != 3072 && bits != 4096) {
            hsm_error_set(err, "", CKR_ARGUMENTS_BAD, "unsupported RSA key length %lu", bits);
            return -1;
        }
        key_type = CKK_RSA;
        mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        break;
    case HSM_KEY_EC:
        key_type = CKK_EC;
        mech.mechanism = CKM_EC_KEY_PAIR_GEN;
        switch (spec->curve) {
        case HSM_CURVE_P256:
            params = oid_p256, params_len = sizeof oid_p256;
            break;
        case HSM_CURVE_P384:
            params = oid_p384, params_len = sizeof oid_p384;
            break;
        case HSM_CURVE_P521:
            params = oid_p521, params_len = sizeof oid_p521;
            break;
        default:
            hsm_error_set(err, "", CKR_ARGUMENTS_BAD, "unsupported curve");
            return -1;
        }
        break;
    case HSM_KEY_ED25519:
    case HSM_KEY_ED448:
        key_type = CKK_EC_EDWARDS;
        mech.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
        if (spec->type == HSM_KEY_ED25519) {
            params = oid_ed25519, params_len = sizeof oid_ed25519;
            alt_params = name_ed25519, alt_params_len = sizeof name_ed25519;
        } else {
            params = oid_ed448, params_len = sizeof oid_ed448;
            alt_params = name_ed448, alt_params_len = sizeof name_ed448;
        }
        break;
    default:
        hsm_error_set(err, "", CKR_ARGUMENTS_BAD, "unsupported key type %d", (int)spec->type);
        return -1;
    }

    size_t label_len = strlen(label);
    /* Only the attributes that matter: usage as the certificate will state it (signing for every
     * type, key transport for RSA), where the key lives and how it may leave. Usages a key must
     * not have are left to their PKCS#11 default (false) rather than stated: some modules refuse
     * a template that names them (tpm2-pkcs11 and CKA_ENCRYPT/CKA_DECRYPT false on EC keys). */
    bool rsa = spec->type == HSM_KEY_RSA;
    CK_ATTRIBUTE pub[12], priv[16];
    CK_ULONG npub = 0, npriv = 0;
#define ATTR(arr, n, t, p, l) (arr[n++] = (CK_ATTRIBUTE){(t), (void *)(p), (CK_ULONG)(l)})
    ATTR(pub, npub, CKA_CLASS, &pub_class, sizeof pub_class);
    ATTR(pub, npub, CKA_KEY_TYPE, &key_type, sizeof key_type);
    ATTR(pub, npub, CKA_TOKEN, &on_token, sizeof on_token);
    ATTR(pub, npub, CKA_PRIVATE, &no, sizeof no);
    ATTR(pub, npub, CKA_VERIFY, &yes, sizeof yes);
    if (rsa)
        ATTR(pub, npub, CKA_ENCRYPT, &yes, sizeof yes);
    ATTR(pub, npub, CKA_ID, out->id, sizeof out->id);
    ATTR(pub, npub, CKA_LABEL, label, label_len);
    CK_ULONG params_index = npub;
    if (spec->type == HSM_KEY_RSA) {
        ATTR(pub, npub, CKA_MODULUS_BITS, &bits, sizeof bits);
        ATTR(pub, npub, CKA_PUBLIC_EXPONENT, exponent, sizeof exponent);
    } else {
        ATTR(pub, npub, CKA_EC_PARAMS, params, params_len);
    }
    ATTR(priv, npriv, CKA_CLASS, &priv_class, sizeof priv_class);
    ATTR(priv, npriv, CKA_KEY_TYPE, &key_type, sizeof key_type);
    ATTR(priv, npriv, CKA_TOKEN, &on_token, sizeof on_token);
    ATTR(priv, npriv, CKA_PRIVATE, &yes, sizeof yes);
    ATTR(priv, npriv, CKA_SENSITIVE, &sensitive, sizeof sensitive);
    ATTR(priv, npriv, CKA_EXTRACTABLE, &extractable, sizeof extractable);
    ATTR(priv, npriv, CKA_SIGN, &yes, sizeof yes);
    if (rsa)
        ATTR(priv, npriv, CKA_DECRYPT, &yes, sizeof yes);
    ATTR(priv, npriv, CKA_ID, out->id, sizeof out->id);
    ATTR(priv, npriv, CKA_LABEL, label, label_len);
#undef ATTR

    CK_RV rv = CKR_OK;
    for (int attempt = 0; attempt < KEYGEN_MAX_ATTEMPTS; attempt++) {
        out->attempts = attempt + 1;
        if (on_token)
            hsm_token_write_begin(session);
        rv = session->f->C_GenerateKeyPair(session->handle, &mech, pub, npub, priv, npriv,
                                           &out->public_key, &out->private_key);
        if (on_token)
            hsm_token_write_end(session);
        if (rv == CKR_OK)
            break;
        if ((rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_DOMAIN_PARAMS_INVALID ||
             rv == CKR_CURVE_NOT_SUPPORTED) &&
            alt_params != NULL && pub[params_index].pValue != alt_params) {
            /* This module wants the curve by name rather than by OID. */
            pub[params_index].pValue = (void *)alt_params;
            pub[params_index].ulValueLen = alt_params_len;
            continue;
        }
        if (rv != CKR_GENERAL_ERROR || !retry_general(session))
            break;
        backoff(attempt); /* SoftHSM 2.6.1 under concurrent keygen (upstream #573) */
    }
    if (rv != CKR_OK) {
        hsm_session_note(session, rv);
        hsm_error_set(err, "C_GenerateKeyPair", rv, "C_GenerateKeyPair failed: %s (%s%s)",
                      ckr_name(rv), what,
                      out->attempts > 1 && rv == CKR_GENERAL_ERROR ? ", retried" : "");
        return -1;
    }

    if (hsm_read_public_parts(session, out, err) != 0) {
        hsm_destroy_keypair(session, out, NULL);
        hsm_keypair_release(out);
        return -1;
    }
    return 0;
}

int hsm_destroy_keypair(hsm_session *session, hsm_keypair *pair, hsm_error *err)
{
    int rc = 0;
    CK_OBJECT_HANDLE *handles[] = {&pair->private_key, &pair->public_key};
    for (size_t i = 0; i < 2; i++) {
        if (*handles[i] == CK_INVALID_HANDLE)
            continue;
        hsm_token_write_begin(session);
        CK_RV rv = session->f->C_DestroyObject(session->handle, *handles[i]);
        hsm_token_write_end(session);
        if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID) {
            hsm_session_note(session, rv);
            hsm_error_set(err, "C_DestroyObject", rv, "C_DestroyObject failed: %s", ckr_name(rv));
            rc = -1;
            continue;
        }
        *handles[i] = CK_INVALID_HANDLE;
    }
    return rc;
}

void hsm_keypair_release(hsm_keypair *pair)
{
    free(pair->modulus);
    free(pair->exponent);
    free(pair->ec_point);
    pair->modulus = pair->exponent = pair->ec_point = NULL;
    pair->modulus_len = pair->exponent_len = pair->ec_point_len = 0;
}

int hsm_sign(hsm_session *session, CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE mechanism,
             const unsigned char *data, size_t data_len, unsigned char *sig, size_t *sig_len,
             hsm_error *err)
{
    CK_MECHANISM mech = {mechanism, NULL, 0};
    CK_RV rv = CKR_OK;
    for (int attempt = 0; attempt < KEYGEN_MAX_ATTEMPTS; attempt++) {
        rv = session->f->C_SignInit(session->handle, &mech, key);
        if (rv != CKR_OK) {
            if (rv == CKR_GENERAL_ERROR && retry_general(session)) {
                backoff(attempt);
                continue;
            }
            hsm_session_note_key_use(session, rv);
            hsm_error_set(err, "C_SignInit", rv, "C_SignInit failed: %s", ckr_name(rv));
            return -1;
        }
        CK_ULONG len = *sig_len;
        rv = session->f->C_Sign(session->handle, (CK_BYTE_PTR)data, data_len, sig, &len);
        if (rv == CKR_OK) {
            *sig_len = len;
            return 0;
        }
        if (rv != CKR_GENERAL_ERROR || !retry_general(session))
            break;
        backoff(attempt);
    }
    hsm_session_note_key_use(session, rv);
    hsm_error_set(err, "C_Sign", rv, "C_Sign failed: %s", ckr_name(rv));
    return -1;
}
