/* PKCS#10 requests and certificates signed through a caller's callback: the to-be-signed DER is
 * produced by OpenSSL, signed elsewhere, and the signature and its algorithm are stored in the
 * structure in place (as X509_sign does), so nothing is parsed back. */
#include "sign.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "algs.h"

enum { SIGNATURE_MAX = 1024 }; /* RSA-4096: 512 bytes; ECDSA P-521 DER: at most 139 */

sig_alg sig_alg_for_key(const EVP_PKEY *key)
{
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
        return SIG_RSA_PKCS1_SHA256;
    case EVP_PKEY_ED25519:
        return SIG_ED25519;
    case EVP_PKEY_ED448:
        return SIG_ED448;
    case EVP_PKEY_EC: {
        char group[64];
        if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                            NULL))
            return SIG_NONE;
        int nid = OBJ_sn2nid(group);
        if (nid == NID_undef)
            nid = EC_curve_nist2nid(group);
        if (nid == NID_X9_62_prime256v1)
            return SIG_ECDSA_SHA256;
        if (nid == NID_secp384r1)
            return SIG_ECDSA_SHA384;
        if (nid == NID_secp521r1)
            return SIG_ECDSA_SHA512;
        return SIG_NONE;
    }
    default:
        return SIG_NONE;
    }
}

const char *sig_alg_name(sig_alg alg)
{
    switch (alg) {
    case SIG_RSA_PKCS1_SHA256:
        return "sha256WithRSAEncryption";
    case SIG_ECDSA_SHA256:
        return "ecdsa-with-SHA256";
    case SIG_ECDSA_SHA384:
        return "ecdsa-with-SHA384";
    case SIG_ECDSA_SHA512:
        return "ecdsa-with-SHA512";
    case SIG_ED25519:
        return "ED25519";
    case SIG_ED448:
        return "ED448";
    default:
        return "none";
    }
}

const EVP_MD *sig_alg_digest(sig_alg alg)
{
    switch (alg) {
    case SIG_RSA_PKCS1_SHA256:
    case SIG_ECDSA_SHA256:
        return algs_md(NID_sha256);
    case SIG_ECDSA_SHA384:
        return algs_md(NID_sha384);
    case SIG_ECDSA_SHA512:
        return algs_md(NID_sha512);
    default:
        return NULL;
    }
}

static int sig_alg_nid(sig_alg alg)
{
    switch (alg) {
    case SIG_RSA_PKCS1_SHA256:
        return NID_sha256WithRSAEncryption;
    case SIG_ECDSA_SHA256:
        return NID_ecdsa_with_SHA256;
    case SIG_ECDSA_SHA384:
        return NID_ecdsa_with_SHA384;
    case SIG_ECDSA_SHA512:
        return NID_ecdsa_with_SHA512;
    case SIG_ED25519:
        return NID_ED25519;
    case SIG_ED448:
        return NID_ED448;
    default:
        return NID_undef;
    }
}

/* AlgorithmIdentifier for alg: RSA carries an explicit NULL parameter, ECDSA and EdDSA none
 * (RFC 5758, RFC 8410). */
static int set_algorithm(X509_ALGOR *algor, sig_alg alg)
{
    int nid = sig_alg_nid(alg);
    if (nid == NID_undef)
        return 0;
    return X509_ALGOR_set0(algor, OBJ_nid2obj(nid),
                           alg == SIG_RSA_PKCS1_SHA256 ? V_ASN1_NULL : V_ASN1_UNDEF, NULL);
}

int ecdsa_raw_to_der(const unsigned char *raw, size_t raw_len, unsigned char *out, size_t *out_len)
{
    if (raw_len == 0 || raw_len % 2 != 0)
        return -1;
    size_t half = raw_len / 2;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)half, NULL);
    BIGNUM *s = BN_bin2bn(raw + half, (int)half, NULL);
    if (sig == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(sig, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(sig);
        return -1;
    }
    int len = i2d_ECDSA_SIG(sig, NULL);
    int rc = -1;
    if (len > 0 && (size_t)len <= *out_len) {
        unsigned char *p = out;
        *out_len = (size_t)i2d_ECDSA_SIG(sig, &p);
        rc = 0;
    }
    ECDSA_SIG_free(sig);
    return rc;
}

static int call_signer(const signer *s, const unsigned char *tbs, size_t tbs_len,
                       unsigned char *sig, size_t *sig_len, enroll_error *err)
{
    if (s == NULL || s->sign == NULL || s->alg == SIG_NONE) {
        enroll_error_set(err, HSE_SIGN_FAILED, NULL, "no signer for this key type");
        return -1;
    }
    *sig_len = SIGNATURE_MAX;
    return s->sign(s->ctx, s->alg, tbs, tbs_len, sig, sig_len, err);
}

/* A BIT STRING holding sig with no unused bits, as ASN1_item_sign leaves it. */
static ASN1_BIT_STRING *signature_bits(const unsigned char *sig, size_t sig_len)
{
    ASN1_BIT_STRING *bits = ASN1_BIT_STRING_new();
    if (bits == NULL || !ASN1_BIT_STRING_set(bits, (unsigned char *)sig, (int)sig_len)) {
        ASN1_BIT_STRING_free(bits);
        return NULL;
    }
    bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
    bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
    return bits;
}

X509_REQ *csr_build(const X509_NAME *subject, const GENERAL_NAMES *sans, EVP_PKEY *pubkey,
                    const signer *s, enroll_error *err)
{
    X509_REQ *req = X509_REQ_new();
    X509_ALGOR *algor = X509_ALGOR_new();
    STACK_OF(X509_EXTENSION) *exts = NULL;
    unsigned char *tbs = NULL;
    unsigned char sig[SIGNATURE_MAX];
    size_t sig_len = 0;
    bool ok = false;

    if (req == NULL || algor == NULL || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
        !X509_REQ_set_subject_name(req, subject) || !X509_REQ_set_pubkey(req, pubkey)) {
        enroll_error_set(err, HSE_CSR_FAILED, NULL, "cannot prepare the certificate request");
        enroll_error_add_openssl(err);
        goto done;
    }
    if (sans != NULL && sk_GENERAL_NAME_num(sans) > 0) {
        if (X509V3_add1_i2d(&exts, NID_subject_alt_name, (void *)sans, 0, X509V3_ADD_DEFAULT) !=
                1 ||
            !X509_REQ_add_extensions(req, exts)) {
            enroll_error_set(err, HSE_CSR_FAILED, NULL, "cannot add subjectAltName to the request");
            enroll_error_add_openssl(err);
            goto done;
        }
    }
    if (!set_algorithm(algor, s ? s->alg : SIG_NONE)) {
        enroll_error_set(err, HSE_CSR_FAILED, NULL, "no signature algorithm for this key");
        goto done;
    }
    int tbs_len = i2d_re_X509_REQ_tbs(req, &tbs);
    if (tbs_len <= 0) {
        enroll_error_set(err, HSE_CSR_FAILED, NULL, "cannot encode the certificate request");
        enroll_error_add_openssl(err);
        goto done;
    }
    if (call_signer(s, tbs, (size_t)tbs_len, sig, &sig_len, err) != 0)
        goto done;
    /* The signature goes in place, as X509_REQ_sign does: no re-parse of what was just built
     * (in OpenSSL 3.0 every parse of a public key builds a decoder context, which is costly). */
    ASN1_BIT_STRING *bits = signature_bits(sig, sig_len);
    if (bits == NULL || !X509_REQ_set1_signature_algo(req, algor)) {
        ASN1_BIT_STRING_free(bits);
        enroll_error_set(err, HSE_CSR_FAILED, NULL, "cannot attach the signature");
        enroll_error_add_openssl(err);
        goto done;
    }
    X509_REQ_set0_signature(req, bits);
    ok = true;
done:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    OPENSSL_free(tbs);
    X509_ALGOR_free(algor);
    if (!ok) {
        X509_REQ_free(req);
        req = NULL;
    }
    return req;
}

X509 *cert_sign(X509 *cert, const signer *s, enroll_error *err)
{
    unsigned char *tbs = NULL;
    unsigned char sig[SIGNATURE_MAX];
    size_t sig_len = 0;
    X509 *signed_cert = NULL;
    /* OpenSSL 3.0 offers no setters for a certificate's signature without a key, so the
     * certificate's own AlgorithmIdentifiers (in the TBS and outside it) and signature BIT
     * STRING are filled in place, as X509_sign does internally. */
    X509_ALGOR *tbs_algor = (X509_ALGOR *)X509_get0_tbs_sigalg(cert);
    const ASN1_BIT_STRING *const_sig = NULL;
    const X509_ALGOR *const_algor = NULL;
    X509_get0_signature(&const_sig, &const_algor, cert);
    ASN1_BIT_STRING *sig_bits = (ASN1_BIT_STRING *)const_sig;
    X509_ALGOR *outer_algor = (X509_ALGOR *)const_algor;
    if (s == NULL || !set_algorithm(tbs_algor, s->alg) || !set_algorithm(outer_algor, s->alg)) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL, "no signature algorithm for the CA key");
        goto done;
    }
    int tbs_len = i2d_re_X509_tbs(cert, &tbs);
    if (tbs_len <= 0) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL, "cannot encode the certificate");
        enroll_error_add_openssl(err);
        goto done;
    }
    if (call_signer(s, tbs, (size_t)tbs_len, sig, &sig_len, err) != 0)
        goto done;
    if (!ASN1_BIT_STRING_set(sig_bits, sig, (int)sig_len)) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL, "cannot attach the signature");
        goto done;
    }
    sig_bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
    sig_bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
    X509_up_ref(cert);
    signed_cert = cert;
done:
    OPENSSL_free(tbs);
    return signed_cert;
}

unsigned char *der_sign_wrap(const unsigned char *tbs, size_t tbs_len, const signer *s,
                             size_t *out_len, enroll_error *err)
{
    unsigned char sig[SIGNATURE_MAX];
    size_t sig_len = 0;
    X509_ALGOR *algor = X509_ALGOR_new();
    ASN1_BIT_STRING *bits = NULL;
    unsigned char *alg_der = NULL, *bits_der = NULL, *out = NULL;
    if (algor == NULL || !set_algorithm(algor, s ? s->alg : SIG_NONE)) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL, "no signature algorithm for the CA key");
        goto done;
    }
    if (call_signer(s, tbs, tbs_len, sig, &sig_len, err) != 0)
        goto done;
    int alg_len = i2d_X509_ALGOR(algor, &alg_der);
    bits = signature_bits(sig, sig_len);
    int bits_len = bits ? i2d_ASN1_BIT_STRING(bits, &bits_der) : -1;
    if (alg_len <= 0 || bits_len <= 0) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL, "cannot encode the signature");
        goto done;
    }
    der_buf body = {0};
    der_put(&body, tbs, tbs_len);
    der_put(&body, alg_der, (size_t)alg_len);
    der_put(&body, bits_der, (size_t)bits_len);
    out = der_wrap(&body, 0x30, out_len);
    if (out == NULL)
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
done:
    X509_ALGOR_free(algor);
    ASN1_BIT_STRING_free(bits);
    OPENSSL_free(alg_der);
    OPENSSL_free(bits_der);
    return out;
}

int sig_alg_der(sig_alg alg, unsigned char **der)
{
    X509_ALGOR *algor = X509_ALGOR_new();
    int len = algor != NULL && set_algorithm(algor, alg) ? i2d_X509_ALGOR(algor, der) : -1;
    X509_ALGOR_free(algor);
    return len;
}
