/* Importing a private key handed over by a CSR enrollment: private and public key objects
 * created in the token with the attributes token storage gives generated keys. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "ckr.h"
#include "hsm.h"
#include "internal.h"

/* DER OCTET STRING around a point, as CKA_EC_POINT holds it (points are at most 133 bytes). */
static size_t wrap_point(const unsigned char *point, size_t len, unsigned char *out, size_t cap)
{
    if (len > 127 + 128 || len + 3 > cap)
        return 0;
    size_t n = 0;
    out[n++] = 0x04;
    if (len >= 0x80)
        out[n++] = 0x81;
    out[n++] = (unsigned char)len;
    memcpy(out + n, point, len);
    return n + len;
}

int hsm_import_keypair(hsm_session *session, const hsm_key_material *m, const char *label,
                       hsm_keypair *out, hsm_error *err)
{
    memset(out, 0, sizeof *out);
    out->spec = m->spec;
    out->storage = HSM_STORAGE_TOKEN;
    if (getrandom(out->id, sizeof out->id, 0) != (ssize_t)sizeof out->id) {
        hsm_error_set(err, "", CKR_FUNCTION_FAILED, "getrandom failed: %s", strerror(errno));
        return -1;
    }
    CK_OBJECT_CLASS priv_class = CKO_PRIVATE_KEY, pub_class = CKO_PUBLIC_KEY;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_BBOOL rsa = m->spec.type == HSM_KEY_RSA ? CK_TRUE : CK_FALSE;
    CK_KEY_TYPE type = rsa ? CKK_RSA : m->spec.type == HSM_KEY_EC ? CKK_EC : CKK_EC_EDWARDS;
    size_t params_len = 0;
    const unsigned char *params = hsm_curve_params(&m->spec, &params_len);
    unsigned char point[160];
    size_t point_len = rsa ? 0 : wrap_point(m->point, m->point_len, point, sizeof point);
    if (!rsa && (params == NULL || point_len == 0)) {
        hsm_error_set(err, "", CKR_ARGUMENTS_BAD, "cannot import a key of this type");
        return -1;
    }
    size_t label_len = strlen(label);
    CK_ATTRIBUTE priv[20], pub[12];
    CK_ULONG np = 0, nq = 0;
#define ATTR(arr, n, t, p, l) (arr[n++] = (CK_ATTRIBUTE){(t), (void *)(p), (CK_ULONG)(l)})
    ATTR(priv, np, CKA_CLASS, &priv_class, sizeof priv_class);
    ATTR(priv, np, CKA_KEY_TYPE, &type, sizeof type);
    ATTR(priv, np, CKA_TOKEN, &yes, sizeof yes);
    ATTR(priv, np, CKA_PRIVATE, &yes, sizeof yes);
    ATTR(priv, np, CKA_SENSITIVE, &yes, sizeof yes);
    ATTR(priv, np, CKA_EXTRACTABLE, &no, sizeof no);
    ATTR(priv, np, CKA_SIGN, &yes, sizeof yes);
    ATTR(priv, np, CKA_DECRYPT, &rsa, sizeof rsa);
    ATTR(priv, np, CKA_UNWRAP, &no, sizeof no);
    ATTR(priv, np, CKA_ID, out->id, sizeof out->id);
    ATTR(priv, np, CKA_LABEL, label, label_len);
    ATTR(pub, nq, CKA_CLASS, &pub_class, sizeof pub_class);
    ATTR(pub, nq, CKA_KEY_TYPE, &type, sizeof type);
    ATTR(pub, nq, CKA_TOKEN, &yes, sizeof yes);
    ATTR(pub, nq, CKA_PRIVATE, &no, sizeof no);
    ATTR(pub, nq, CKA_VERIFY, &yes, sizeof yes);
    ATTR(pub, nq, CKA_ENCRYPT, &rsa, sizeof rsa);
    ATTR(pub, nq, CKA_WRAP, &no, sizeof no);
    ATTR(pub, nq, CKA_ID, out->id, sizeof out->id);
    ATTR(pub, nq, CKA_LABEL, label, label_len);
    if (rsa) {
        ATTR(priv, np, CKA_MODULUS, m->n, m->n_len);
        ATTR(priv, np, CKA_PUBLIC_EXPONENT, m->e, m->e_len);
        ATTR(priv, np, CKA_PRIVATE_EXPONENT, m->d, m->d_len);
        ATTR(priv, np, CKA_PRIME_1, m->p, m->p_len);
        ATTR(priv, np, CKA_PRIME_2, m->q, m->q_len);
        ATTR(priv, np, CKA_EXPONENT_1, m->dp, m->dp_len);
        ATTR(priv, np, CKA_EXPONENT_2, m->dq, m->dq_len);
        ATTR(priv, np, CKA_COEFFICIENT, m->qinv, m->qinv_len);
        ATTR(pub, nq, CKA_MODULUS, m->n, m->n_len);
        ATTR(pub, nq, CKA_PUBLIC_EXPONENT, m->e, m->e_len);
    } else {
        ATTR(priv, np, CKA_EC_PARAMS, params, params_len);
        ATTR(priv, np, CKA_VALUE, m->value, m->value_len);
        ATTR(pub, nq, CKA_EC_PARAMS, params, params_len);
        ATTR(pub, nq, CKA_EC_POINT, point, point_len);
    }
#undef ATTR
    hsm_token_write_begin(session);
    CK_RV rv = session->f->C_CreateObject(session->handle, priv, np, &out->private_key);
    if (rv == CKR_OK)
        rv = session->f->C_CreateObject(session->handle, pub, nq, &out->public_key);
    hsm_token_write_end(session);
    if (rv != CKR_OK) {
        hsm_session_note(session, rv); /* a lost session is marked, for the caller to recover */
        hsm_destroy_keypair(session, out, NULL);
        hsm_error_set(err, "C_CreateObject", rv, "C_CreateObject failed importing the key: %s",
                      ckr_name(rv));
        return -1;
    }
    if (hsm_read_public_parts(session, out, err) != 0) {
        hsm_destroy_keypair(session, out, NULL);
        hsm_keypair_release(out);
        return -1;
    }
    out->attempts = 1;
    return 0;
}
