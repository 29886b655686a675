/* EVP_PKEY -> PKCS#11 key material (big-endian parts, wiped after use) -> hsm_import_keypair. */
#include "engine/key_import.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/obj_mac.h>
#include <stdlib.h>
#include <string.h>

#include "formats/csr.h"
#include "ca/hsm_signer.h"

typedef struct part {
    unsigned char *data;
    size_t len;
} part;

static int bn_part(EVP_PKEY *key, const char *name, part *out)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(key, name, &bn))
        return -1;
    out->len = (size_t)BN_num_bytes(bn);
    out->data = OPENSSL_secure_malloc(out->len ? out->len : 1);
    int ok = out->data != NULL && BN_bn2bin(bn, out->data) == (int)out->len;
    BN_clear_free(bn);
    return ok ? 0 : -1;
}

static void free_part(part *p)
{
    if (p->data != NULL)
        OPENSSL_secure_clear_free(p->data, p->len ? p->len : 1);
    p->data = NULL;
}

int key_import(hsm_session *session, EVP_PKEY *key, const char *label, hsm_keypair *out,
               enroll_error *err)
{
    int type, bits, curve;
    hsm_key_material m;
    memset(&m, 0, sizeof m);
    part parts[8] = {0};
    unsigned char point[160], raw[64];
    size_t point_len = 0, raw_len = sizeof raw;
    int rc = -1;
    if (key_describe(key, &type, &bits, &curve) != 0)
        goto done;
    if (type == EVP_PKEY_RSA) {
        static const char *names[8] = {
            OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
            OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
            OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
            OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
        for (int i = 0; i < 8; i++)
            if (bn_part(key, names[i], &parts[i]) != 0)
                goto done;
        m.spec = (hsm_key_spec){HSM_KEY_RSA, (unsigned)bits, HSM_CURVE_NONE};
        m.n = parts[0].data, m.n_len = parts[0].len;
        m.e = parts[1].data, m.e_len = parts[1].len;
        m.d = parts[2].data, m.d_len = parts[2].len;
        m.p = parts[3].data, m.p_len = parts[3].len;
        m.q = parts[4].data, m.q_len = parts[4].len;
        m.dp = parts[5].data, m.dp_len = parts[5].len;
        m.dq = parts[6].data, m.dq_len = parts[6].len;
        m.qinv = parts[7].data, m.qinv_len = parts[7].len;
    } else if (type == EVP_PKEY_EC) {
        if (bn_part(key, OSSL_PKEY_PARAM_PRIV_KEY, &parts[0]) != 0 ||
            !EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                             sizeof point, &point_len))
            goto done;
        m.spec = (hsm_key_spec){HSM_KEY_EC, 0,
                                curve == NID_secp384r1   ? HSM_CURVE_P384
                                : curve == NID_secp521r1 ? HSM_CURVE_P521
                                                         : HSM_CURVE_P256};
        /* The scalar, left-padded to the field size. */
        size_t field = (size_t)(bits + 7) / 8;
        parts[1].len = field;
        parts[1].data = OPENSSL_secure_zalloc(field);
        if (parts[1].data == NULL || parts[0].len > field)
            goto done;
        memcpy(parts[1].data + field - parts[0].len, parts[0].data, parts[0].len);
        m.value = parts[1].data, m.value_len = field;
        m.point = point, m.point_len = point_len;
    } else {
        m.spec = (hsm_key_spec){type == EVP_PKEY_ED25519 ? HSM_KEY_ED25519 : HSM_KEY_ED448, 0,
                                HSM_CURVE_NONE};
        size_t pub_len = sizeof point;
        if (!EVP_PKEY_get_raw_private_key(key, raw, &raw_len) ||
            !EVP_PKEY_get_raw_public_key(key, point, &pub_len))
            goto done;
        m.value = raw, m.value_len = raw_len;
        m.point = point, m.point_len = pub_len;
    }
    hsm_error herr;
    if (hsm_import_keypair(session, &m, label, out, &herr) != 0) {
        hsm_error_to_enroll(&herr, HSE_HSM_IMPORT_FAILED, err);
        rc = -2;
        goto done;
    }
    rc = 0;
done:
    if (rc == -1)
        enroll_error_set(err, HSE_HSM_IMPORT_FAILED, "PrivateKey",
                         "cannot take the parts of the private key for import");
    for (int i = 0; i < 8; i++)
        free_part(&parts[i]);
    OPENSSL_cleanse(raw, sizeof raw);
    return rc == 0 ? 0 : -1;
}
