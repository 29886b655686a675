/* PKCS#10 requests and certificates signed through a caller's callback: the to-be-signed DER is
 * produced by OpenSSL, signed elsewhere, and the signed structure is assembled here as
 * SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING signature } and parsed back. */
#include "sign.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

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
        return EVP_sha256();
    case SIG_ECDSA_SHA384:
        return EVP_sha384();
    case SIG_ECDSA_SHA512:
        return EVP_sha512();
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

/* Appends a DER length to buf at *pos. */
static void put_length(unsigned char *buf, size_t *pos, size_t len)
{
    if (len < 0x80) {
        buf[(*pos)++] = (unsigned char)len;
        return;
    }
    unsigned char tmp[sizeof(size_t)];
    int n = 0;
    for (size_t v = len; v > 0; v >>= 8)
        tmp[n++] = (unsigned char)(v & 0xff);
    buf[(*pos)++] = (unsigned char)(0x80 | n);
    while (n > 0)
        buf[(*pos)++] = tmp[--n];
}

/* SEQUENCE { tbs, algorithm, BIT STRING { 0 unused bits, sig } } in a malloc'd buffer. */
static unsigned char *assemble_signed(const unsigned char *tbs, size_t tbs_len,
                                      const X509_ALGOR *algor, const unsigned char *sig,
                                      size_t sig_len, size_t *out_len)
{
    unsigned char *alg_der = NULL;
    int alg_len = i2d_X509_ALGOR(algor, &alg_der);
    if (alg_len <= 0)
        return NULL;
    size_t bits_content = sig_len + 1;
    size_t bits_len = 1 + 5 + bits_content; /* tag, length (at most 5 bytes), content */
    size_t body_max = tbs_len + (size_t)alg_len + bits_len;
    unsigned char *buf = malloc(body_max + 6);
    if (buf == NULL) {
        OPENSSL_free(alg_der);
        return NULL;
    }
    /* Lay the body out after room for the outer header, then move the header in place. */
    unsigned char *body = buf + 6;
    size_t pos = 0;
    memcpy(body + pos, tbs, tbs_len);
    pos += tbs_len;
    memcpy(body + pos, alg_der, (size_t)alg_len);
    pos += (size_t)alg_len;
    body[pos++] = 0x03;
    put_length(body, &pos, bits_content);
    body[pos++] = 0x00;
    memcpy(body + pos, sig, sig_len);
    pos += sig_len;
    OPENSSL_free(alg_der);

    unsigned char header[6];
    size_t hlen = 0;
    header[hlen++] = 0x30;
    put_length(header, &hlen, pos);
    memmove(buf + hlen, body, pos);
    memcpy(buf, header, hlen);
    *out_len = hlen + pos;
    return buf;
}

static int call_signer(const signer *s, const unsigned char *tbs, size_t tbs_len,
                       unsigned char *sig, size_t *sig_len, enroll_error *err)
{
    if (s == NULL || s->sign == NULL || s->alg == SIG_NONE) {
        enroll_error_set(err, "SIGN_FAILED", NULL, "no signer for this key type");
        return -1;
    }
    *sig_len = SIGNATURE_MAX;
    return s->sign(s->ctx, s->alg, tbs, tbs_len, sig, sig_len, err);
}

X509_REQ *csr_build(const X509_NAME *subject, const GENERAL_NAMES *sans, EVP_PKEY *pubkey,
                    const signer *s, enroll_error *err)
{
    X509_REQ *req = X509_REQ_new();
    X509_REQ *signed_req = NULL;
    X509_ALGOR *algor = X509_ALGOR_new();
    STACK_OF(X509_EXTENSION) *exts = NULL;
    unsigned char *tbs = NULL, *der = NULL;
    unsigned char sig[SIGNATURE_MAX];
    size_t sig_len = 0, der_len = 0;

    if (req == NULL || algor == NULL || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
        !X509_REQ_set_subject_name(req, subject) || !X509_REQ_set_pubkey(req, pubkey)) {
        enroll_error_set(err, "CSR_FAILED", NULL, "cannot prepare the certificate request");
        enroll_error_add_openssl(err);
        goto done;
    }
    if (sans != NULL && sk_GENERAL_NAME_num(sans) > 0) {
        if (X509V3_add1_i2d(&exts, NID_subject_alt_name, (void *)sans, 0, X509V3_ADD_DEFAULT) != 1 ||
            !X509_REQ_add_extensions(req, exts)) {
            enroll_error_set(err, "CSR_FAILED", NULL, "cannot add subjectAltName to the request");
            enroll_error_add_openssl(err);
            goto done;
        }
    }
    if (!set_algorithm(algor, s ? s->alg : SIG_NONE)) {
        enroll_error_set(err, "CSR_FAILED", NULL, "no signature algorithm for this key");
        goto done;
    }
    int tbs_len = i2d_re_X509_REQ_tbs(req, &tbs);
    if (tbs_len <= 0) {
        enroll_error_set(err, "CSR_FAILED", NULL, "cannot encode the certificate request");
        enroll_error_add_openssl(err);
        goto done;
    }
    if (call_signer(s, tbs, (size_t)tbs_len, sig, &sig_len, err) != 0)
        goto done;
    der = assemble_signed(tbs, (size_t)tbs_len, algor, sig, sig_len, &der_len);
    const unsigned char *p = der;
    if (der == NULL || (signed_req = d2i_X509_REQ(NULL, &p, (long)der_len)) == NULL) {
        enroll_error_set(err, "CSR_FAILED", NULL, "cannot assemble the signed request");
        enroll_error_add_openssl(err);
    }
done:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    OPENSSL_free(tbs);
    free(der);
    X509_ALGOR_free(algor);
    X509_REQ_free(req);
    return signed_req;
}

X509 *cert_sign(X509 *cert, const signer *s, enroll_error *err)
{
    X509 *signed_cert = NULL;
    X509_ALGOR *algor = X509_ALGOR_new();
    unsigned char *tbs = NULL, *der = NULL;
    unsigned char sig[SIGNATURE_MAX];
    size_t sig_len = 0, der_len = 0;
    /* The TBS carries the signature algorithm too; OpenSSL offers no setter without a key, so
     * the certificate's own AlgorithmIdentifier is filled in place. */
    X509_ALGOR *tbs_algor = (X509_ALGOR *)X509_get0_tbs_sigalg(cert);
    if (algor == NULL || !set_algorithm(algor, s ? s->alg : SIG_NONE) ||
        !set_algorithm(tbs_algor, s->alg)) {
        enroll_error_set(err, "CA_SIGN_FAILED", NULL, "no signature algorithm for the CA key");
        goto done;
    }
    int tbs_len = i2d_re_X509_tbs(cert, &tbs);
    if (tbs_len <= 0) {
        enroll_error_set(err, "CA_SIGN_FAILED", NULL, "cannot encode the certificate");
        enroll_error_add_openssl(err);
        goto done;
    }
    if (call_signer(s, tbs, (size_t)tbs_len, sig, &sig_len, err) != 0)
        goto done;
    der = assemble_signed(tbs, (size_t)tbs_len, algor, sig, sig_len, &der_len);
    const unsigned char *p = der;
    if (der == NULL || (signed_cert = d2i_X509(NULL, &p, (long)der_len)) == NULL) {
        enroll_error_set(err, "CA_SIGN_FAILED", NULL, "cannot assemble the signed certificate");
        enroll_error_add_openssl(err);
    }
done:
    OPENSSL_free(tbs);
    free(der);
    X509_ALGOR_free(algor);
    return signed_cert;
}
