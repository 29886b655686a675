/* EVP_PKEYs from HSM-provided parts: RSA modulus/exponent, EC points (raw or DER OCTET STRING
 * wrapped, as CKA_EC_POINT comes), EdDSA points; private keys from PKCS#8, AES-KWP or raw seeds. */
#include "pubkey.h"

#include "algs.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Returns the raw bytes of a point that may be wrapped in a DER OCTET STRING. raw_len is the
 * length the raw form must have. *owned is set when the result must be freed. */
static const unsigned char *unwrap_point(const unsigned char *point, size_t len, size_t raw_len,
                                         size_t *out_len, unsigned char **owned)
{
    *owned = NULL;
    if (len == raw_len) {
        *out_len = len;
        return point;
    }
    const unsigned char *p = point;
    ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)len);
    if (os == NULL || p != point + len || (size_t)ASN1_STRING_length(os) != raw_len) {
        ASN1_OCTET_STRING_free(os);
        ERR_clear_error();
        return NULL;
    }
    *owned = malloc(raw_len);
    if (*owned != NULL)
        memcpy(*owned, ASN1_STRING_get0_data(os), raw_len);
    ASN1_OCTET_STRING_free(os);
    *out_len = raw_len;
    return *owned;
}

/* The NIST curves, built once: EC_GROUP_new_by_curve_name computes the curve's Montgomery
 * constants each time (a modular inversion), and an EC_KEY on a copy of a built group skips
 * that. Read-only after the first use. */
static EC_GROUP *curve_groups[3];
static pthread_once_t curve_groups_once = PTHREAD_ONCE_INIT;

static void curve_groups_init(void)
{
    static const int nids[3] = {NID_X9_62_prime256v1, NID_secp384r1, NID_secp521r1};
    for (int i = 0; i < 3; i++)
        curve_groups[i] = EC_GROUP_new_by_curve_name(nids[i]);
}

/* An empty EC_KEY on curve nid (its own copy of the built group), or NULL. */
static EC_KEY *ec_key_on_curve(int nid)
{
    pthread_once(&curve_groups_once, curve_groups_init);
    int i = nid == NID_X9_62_prime256v1 ? 0
            : nid == NID_secp384r1      ? 1
            : nid == NID_secp521r1      ? 2
                                        : -1;
    if (i < 0 || curve_groups[i] == NULL)
        return EC_KEY_new_by_curve_name(nid);
    EC_KEY *ec = EC_KEY_new();
    if (ec != NULL && EC_KEY_set_group(ec, curve_groups[i]) != 1) {
        EC_KEY_free(ec);
        ec = NULL;
    }
    return ec;
}

/* The public keys are built as "legacy" keys (RSA, EC_KEY) on purpose: OpenSSL 3.0 encodes such
 * a key into a SubjectPublicKeyInfo (X509_REQ_set_pubkey, X509_set_pubkey) through its own method,
 * where a provider key goes through an encoder and a decoder chain, chosen by name among every
 * provider's algorithms: a third of the engine's own cost per certificate, measured with callgrind
 * (bench/RESULTS.md). They work with every EVP call as provider keys do. */
static EVP_PKEY *legacy_key(int type, void *inner)
{
    EVP_PKEY *key = inner ? EVP_PKEY_new() : NULL;
    if (key != NULL && EVP_PKEY_assign(key, type, inner) == 1)
        return key;
    EVP_PKEY_free(key);
    return NULL;
}

EVP_PKEY *pubkey_from_rsa(const unsigned char *modulus, size_t modulus_len,
                          const unsigned char *exponent, size_t exponent_len, enroll_error *err)
{
    BIGNUM *n = BN_bin2bn(modulus, (int)modulus_len, NULL);
    BIGNUM *e = BN_bin2bn(exponent, (int)exponent_len, NULL);
    RSA *rsa = RSA_new();
    EVP_PKEY *key = NULL;
    if (n != NULL && e != NULL && rsa != NULL && !BN_is_zero(n) && !BN_is_zero(e) &&
        RSA_set0_key(rsa, n, e, NULL) == 1) {
        n = e = NULL; /* rsa owns them */
        if ((key = legacy_key(EVP_PKEY_RSA, rsa)) != NULL)
            rsa = NULL;
    }
    if (key == NULL) {
        enroll_error_set(err, HSE_INVALID_KEY, NULL, "cannot build RSA public key");
        enroll_error_add_openssl(err);
    }
    RSA_free(rsa);
    BN_free(n);
    BN_free(e);
    return key;
}

EVP_PKEY *pubkey_from_ec_point(int curve_nid, const unsigned char *point, size_t point_len,
                               enroll_error *err)
{
    size_t field;
    switch (curve_nid) {
    case NID_X9_62_prime256v1:
        field = 32;
        break;
    case NID_secp384r1:
        field = 48;
        break;
    case NID_secp521r1:
        field = 66;
        break;
    default:
        enroll_error_set(err, HSE_INVALID_KEY, NULL, "unsupported curve %d", curve_nid);
        return NULL;
    }
    unsigned char *owned;
    size_t raw_len;
    const unsigned char *raw = unwrap_point(point, point_len, 1 + 2 * field, &raw_len, &owned);
    if (raw == NULL || raw[0] != 0x04) {
        free(owned);
        enroll_error_set(err, HSE_INVALID_KEY, NULL,
                         "EC point of %zu bytes is not an uncompressed "
                         "point on curve %s",
                         point_len, OBJ_nid2sn(curve_nid));
        return NULL;
    }
    /* EC_KEY_oct2key refuses a point that is not on the curve. */
    EC_KEY *ec = ec_key_on_curve(curve_nid);
    EVP_PKEY *key = NULL;
    if (ec != NULL && EC_KEY_oct2key(ec, raw, raw_len, NULL) == 1 &&
        (key = legacy_key(EVP_PKEY_EC, ec)) != NULL)
        ec = NULL;
    if (key == NULL) {
        enroll_error_set(err, HSE_INVALID_KEY, NULL, "cannot build EC public key");
        enroll_error_add_openssl(err);
    }
    EC_KEY_free(ec);
    free(owned);
    return key;
}

EVP_PKEY *pubkey_from_eddsa(int nid, const unsigned char *point, size_t point_len,
                            enroll_error *err)
{
    size_t want = nid == NID_ED25519 ? 32 : nid == NID_ED448 ? 57 : 0;
    unsigned char *owned;
    size_t raw_len;
    const unsigned char *raw = want ? unwrap_point(point, point_len, want, &raw_len, &owned) : NULL;
    if (raw == NULL) {
        enroll_error_set(err, HSE_INVALID_KEY, NULL, "EdDSA point of %zu bytes is not a %s key",
                         point_len, want ? OBJ_nid2sn(nid) : "known EdDSA");
        return NULL;
    }
    EVP_PKEY *key = EVP_PKEY_new_raw_public_key(nid, NULL, raw, raw_len);
    free(owned);
    if (key == NULL) {
        enroll_error_set(err, HSE_INVALID_KEY, NULL, "cannot build %s public key", OBJ_nid2sn(nid));
        enroll_error_add_openssl(err);
    }
    return key;
}

/* A provider key of type ("EC", "RSA") from the parameters in bld (taken), through the key
 * manager's import: no decoder chain. NULL on failure. */
static EVP_PKEY *keypair_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *key = NULL;
    OSSL_PARAM *params = bld ? OSSL_PARAM_BLD_to_param(bld) : NULL;
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) <= 0)
        key = NULL;
    EVP_PKEY_CTX_free(ctx);
    for (OSSL_PARAM *q = params; q != NULL && q->key != NULL; q++) /* private parts */
        OPENSSL_cleanse(q->data, q->data_size);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return key;
}

/* The EC and RSA keys of a PrivateKeyInfo read by their own DER decoders, then imported as
 * provider keys: OpenSSL 3.0's EVP_PKCS82PKEY builds a provider decoder chain for every key,
 * which costs more than the rest of an export. (The keys are not left as legacy RSA/EC_KEY keys:
 * EVP_PKEY_get_bn_param cannot read a legacy key's private parts, which key_import needs.) NULL
 * for other algorithms (EdDSA) or a malformed key: the caller takes the general path, which
 * reports the error. */
static EVP_PKEY *privkey_from_pkcs8_fast(const PKCS8_PRIV_KEY_INFO *p8, bool legacy_ok)
{
    const ASN1_OBJECT *alg_oid;
    const unsigned char *p;
    int len;
    const X509_ALGOR *alg;
    if (!PKCS8_pkey_get0(&alg_oid, &p, &len, &alg, p8))
        return NULL;
    int nid = OBJ_obj2nid(alg_oid);
    EVP_PKEY *key = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld == NULL)
        return NULL;
    if (nid == NID_rsaEncryption) {
        RSA *rsa = d2i_RSAPrivateKey(NULL, &p, len);
        const BIGNUM *n, *e, *d, *f1, *f2, *e1, *e2, *c;
        if (rsa != NULL) {
            RSA_get0_key(rsa, &n, &e, &d);
            RSA_get0_factors(rsa, &f1, &f2);
            RSA_get0_crt_params(rsa, &e1, &e2, &c);
            if (n && e && d && f1 && f2 && e1 && e2 && c &&
                OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
                OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) &&
                OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) &&
                OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, f1) &&
                OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, f2) &&
                OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, e1) &&
                OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, e2) &&
                OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, c)) {
                key = keypair_from_params("RSA", bld);
                bld = NULL;
            }
        }
        RSA_free(rsa); /* clears the private parts */
    } else if (nid == NID_X9_62_id_ecPublicKey) {
        const void *pval;
        int ptype;
        X509_ALGOR_get0(NULL, &ptype, &pval, alg);
        /* A named curve, the only form the HSM layer makes. d2i_ECPrivateKey computes the
         * public point when the ECPrivateKey leaves it out. */
        int curve = ptype == V_ASN1_OBJECT ? OBJ_obj2nid(pval) : NID_undef;
        EC_KEY *ec = curve != NID_undef ? ec_key_on_curve(curve) : NULL;
        if (ec != NULL && d2i_ECPrivateKey(&ec, &p, len) == NULL)
            ec = NULL; /* freed by d2i on failure */
        if (ec != NULL && legacy_ok) {
            /* Written out with its public key, as the provider's encoder writes it (d2i marks a
             * key that came without one, and the EC method would leave it out again; GnuTLS
             * refuses such a key). */
            EC_KEY_set_enc_flags(ec, EC_KEY_get_enc_flags(ec) & ~(unsigned)EC_PKEY_NO_PUBKEY);
            if (EC_KEY_get0_private_key(ec) != NULL && EC_KEY_get0_public_key(ec) != NULL &&
                (key = legacy_key(EVP_PKEY_EC, ec)) != NULL)
                ec = NULL;
            EC_KEY_free(ec);
            OSSL_PARAM_BLD_free(bld);
            ERR_clear_error();
            return key;
        }
        unsigned char point[160];
        size_t point_len =
            ec ? EC_POINT_point2oct(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec),
                                    POINT_CONVERSION_UNCOMPRESSED, point, sizeof point, NULL)
               : 0;
        if (ec != NULL && point_len > 0 && EC_KEY_get0_private_key(ec) != NULL &&
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, OBJ_nid2sn(curve),
                                            0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, point_len) &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, EC_KEY_get0_private_key(ec))) {
            key = keypair_from_params("EC", bld);
            bld = NULL;
        }
        EC_KEY_free(ec); /* clears the scalar */
    }
    OSSL_PARAM_BLD_free(bld);
    ERR_clear_error();
    return key;
}

static EVP_PKEY *from_pkcs8(const unsigned char *der, size_t der_len, bool legacy_ok,
                            enroll_error *err)
{
    const unsigned char *p = der;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)der_len);
    EVP_PKEY *key = p8 ? privkey_from_pkcs8_fast(p8, legacy_ok) : NULL;
    if (key == NULL && p8 != NULL)
        key = EVP_PKCS82PKEY(p8);
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (key == NULL) {
        enroll_error_set(err, HSE_INVALID_KEY, NULL, "the private key is not valid PKCS#8");
        enroll_error_add_openssl(err);
    }
    return key;
}

EVP_PKEY *privkey_from_pkcs8(const unsigned char *der, size_t der_len, enroll_error *err)
{
    return from_pkcs8(der, der_len, false, err);
}

static int kwp(int encrypt, const unsigned char kek[32], const unsigned char *in, size_t in_len,
               unsigned char **out, size_t *out_len, enroll_error *err)
{
    *out = NULL;
    size_t cap = in_len + 16;
    unsigned char *buf = malloc(cap);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len1 = 0, len2 = 0, ok = 0;
    if (buf != NULL && ctx != NULL) {
        EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        ok = EVP_CipherInit_ex(ctx, algs_cipher(NID_id_aes256_wrap_pad), NULL, kek, NULL,
                               encrypt) == 1 &&
             EVP_CipherUpdate(ctx, buf, &len1, in, (int)in_len) == 1 &&
             EVP_CipherFinal_ex(ctx, buf + len1, &len2) == 1;
    }
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        if (buf != NULL) {
            OPENSSL_cleanse(buf, cap);
            free(buf);
        }
        enroll_error_set(err, HSE_INVALID_KEY, NULL, "cannot %s the exported key (AES-KWP)",
                         encrypt ? "wrap" : "unwrap");
        enroll_error_add_openssl(err);
        return -1;
    }
    *out = buf;
    *out_len = (size_t)(len1 + len2);
    return 0;
}

int kwp_wrap(const unsigned char kek[32], const unsigned char *in, size_t in_len,
             unsigned char **out, size_t *out_len, enroll_error *err)
{
    return kwp(1, kek, in, in_len, out, out_len, err);
}

int kwp_unwrap(const unsigned char kek[32], const unsigned char *in, size_t in_len,
               unsigned char **out, size_t *out_len, enroll_error *err)
{
    return kwp(0, kek, in, in_len, out, out_len, err);
}

static EVP_PKEY *unwrap_pkcs8(const unsigned char kek[32], const unsigned char *wrapped,
                              size_t wrapped_len, bool legacy_ok, enroll_error *err)
{
    unsigned char *plain;
    size_t len;
    if (kwp_unwrap(kek, wrapped, wrapped_len, &plain, &len, err) != 0)
        return NULL;
    EVP_PKEY *key = from_pkcs8(plain, len, legacy_ok, err);
    OPENSSL_cleanse(plain, len);
    free(plain);
    return key;
}

EVP_PKEY *privkey_unwrap_pkcs8(const unsigned char kek[32], const unsigned char *wrapped,
                               size_t wrapped_len, enroll_error *err)
{
    return unwrap_pkcs8(kek, wrapped, wrapped_len, false, err);
}

EVP_PKEY *privkey_unwrap_pkcs8_bundle(const unsigned char kek[32], const unsigned char *wrapped,
                                      size_t wrapped_len, enroll_error *err)
{
    return unwrap_pkcs8(kek, wrapped, wrapped_len, true, err);
}

int privkey_matches_cert(X509 *cert, EVP_PKEY *key)
{
    /* An EC key of privkey_unwrap_pkcs8_bundle: its point against the certificate's
     * subjectPublicKey, byte for byte, on the same named curve. Anything else, or a point the
     * certificate encodes otherwise (compressed), goes to X509_check_private_key. */
    const EC_KEY *ec =
        key && EVP_PKEY_get_id(key) == EVP_PKEY_EC && EVP_PKEY_get0_provider(key) == NULL
            ? EVP_PKEY_get0_EC_KEY(key)
            : NULL;
    X509_PUBKEY *xpk = cert ? X509_get_X509_PUBKEY(cert) : NULL;
    ASN1_OBJECT *alg_oid = NULL;
    const unsigned char *pk = NULL;
    int pk_len = 0, ptype = 0;
    X509_ALGOR *palg = NULL;
    const void *pval = NULL;
    if (ec != NULL && xpk != NULL &&
        X509_PUBKEY_get0_param(&alg_oid, &pk, &pk_len, &palg, xpk) == 1 &&
        OBJ_obj2nid(alg_oid) == NID_X9_62_id_ecPublicKey && palg != NULL) {
        X509_ALGOR_get0(NULL, &ptype, &pval, palg);
        const EC_GROUP *group = EC_KEY_get0_group(ec);
        unsigned char point[160];
        size_t point_len =
            group && EC_KEY_get0_public_key(ec)
                ? EC_POINT_point2oct(group, EC_KEY_get0_public_key(ec),
                                     POINT_CONVERSION_UNCOMPRESSED, point, sizeof point, NULL)
                : 0;
        if (ptype == V_ASN1_OBJECT && OBJ_obj2nid(pval) == EC_GROUP_get_curve_name(group) &&
            point_len > 0 && (size_t)pk_len == point_len && memcmp(pk, point, point_len) == 0)
            return 1;
    }
    ERR_clear_error();
    return X509_check_private_key(cert, key) == 1 ? 1 : 0;
}

/* One OpenSSL cipher pass (decrypt) over in; padding as the cipher defines it. */
static int cipher_open(const EVP_CIPHER *cipher, const unsigned char kek[32],
                       const unsigned char *iv, bool pad, const unsigned char *in, size_t in_len,
                       unsigned char **out, size_t *out_len)
{
    size_t cap = in_len + 32;
    unsigned char *buf = malloc(cap);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len1 = 0, len2 = 0, ok = 0;
    if (buf != NULL && ctx != NULL) {
        EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        ok = EVP_DecryptInit_ex(ctx, cipher, NULL, kek, iv) == 1 &&
             EVP_CIPHER_CTX_set_padding(ctx, pad ? 1 : 0) == 1 &&
             EVP_DecryptUpdate(ctx, buf, &len1, in, (int)in_len) == 1 &&
             EVP_DecryptFinal_ex(ctx, buf + len1, &len2) == 1;
    }
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        if (buf != NULL) {
            OPENSSL_cleanse(buf, cap);
            free(buf);
        }
        return -1;
    }
    *out = buf;
    *out_len = (size_t)(len1 + len2);
    return 0;
}

int key_unwrap(key_wrap_scheme scheme, const unsigned char kek[32], const unsigned char *in,
               size_t in_len, unsigned char **out, size_t *out_len, enroll_error *err)
{
    int rc = -1;
    const char *what = "AES-KWP";
    *out = NULL;
    if (scheme == KEYWRAP_RFC5649)
        return kwp_unwrap(kek, in, in_len, out, out_len, err);
    if (scheme == KEYWRAP_RFC3394_PKCS7) {
        what = "AES key wrap over PKCS#7 padding";
        rc = in_len >= 24 && in_len % 8 == 0
                 ? cipher_open(EVP_aes_256_wrap(), kek, NULL, false, in, in_len, out, out_len)
                 : -1;
        if (rc == 0) {
            /* PKCS#7 padding to the AES block: 1 to 16 bytes, each the count. */
            unsigned pad = *out_len > 0 ? (*out)[*out_len - 1] : 0;
            bool good = pad >= 1 && pad <= 16 && pad <= *out_len;
            for (unsigned i = 1; good && i <= pad; i++)
                good = (*out)[*out_len - i] == pad;
            if (good) {
                *out_len -= pad;
            } else {
                OPENSSL_cleanse(*out, *out_len);
                free(*out);
                *out = NULL;
                rc = -1;
            }
        }
    } else if (scheme == KEYWRAP_CBC_PAD) {
        what = "AES-CBC-PAD";
        rc = in_len > 16
                 ? cipher_open(EVP_aes_256_cbc(), kek, in, true, in + 16, in_len - 16, out, out_len)
                 : -1;
    }
    if (rc != 0) {
        enroll_error_set(err, HSE_INVALID_KEY, NULL, "cannot unwrap the exported key (%s)", what);
        enroll_error_add_openssl(err);
    }
    return rc;
}

EVP_PKEY *privkey_unwrap_scheme(key_wrap_scheme scheme, const unsigned char kek[32],
                                const unsigned char *wrapped, size_t wrapped_len, enroll_error *err)
{
    unsigned char *plain;
    size_t len;
    if (key_unwrap(scheme, kek, wrapped, wrapped_len, &plain, &len, err) != 0)
        return NULL;
    EVP_PKEY *key = privkey_from_pkcs8(plain, len, err);
    OPENSSL_cleanse(plain, len);
    free(plain);
    return key;
}

EVP_PKEY *privkey_from_eddsa_raw(int nid, const unsigned char *raw, size_t raw_len,
                                 enroll_error *err)
{
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(nid, NULL, raw, raw_len);
    if (key == NULL) {
        enroll_error_set(err, HSE_INVALID_KEY, NULL, "cannot build %s private key",
                         OBJ_nid2sn(nid));
        enroll_error_add_openssl(err);
    }
    return key;
}
