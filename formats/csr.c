/* Decoding CSRs and PKCS#8 keys from request lines, and describing keys for policy checks. */
#include "csr.h"

#include <ctype.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "algs.h"
#include "base64.h"

X509_REQ *csr_decode(const char *text, enroll_error *err)
{
    X509_REQ *req = NULL;
    if (strstr(text, "-----BEGIN") != NULL) {
        BIO *bio = BIO_new_mem_buf(text, -1);
        req = bio ? PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
    } else {
        size_t len = 0;
        unsigned char *der = base64_decode(text, strlen(text), BASE64_SKIP_SPACE, &len);
        const unsigned char *p = der;
        req = der ? d2i_X509_REQ(NULL, &p, (long)len) : NULL;
        if (req != NULL && p != der + len) {
            X509_REQ_free(req);
            req = NULL;
        }
        free(der);
    }
    if (req == NULL) {
        ERR_clear_error();
        enroll_error_set(err, HSE_INVALID_CSR, "CSR",
                         "CSR is neither PEM nor base-64 DER of a PKCS#10 request");
        return NULL;
    }
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    if (pub == NULL || X509_REQ_verify(req, pub) != 1) {
        ERR_clear_error();
        X509_REQ_free(req);
        enroll_error_set(err, HSE_CSR_SIGNATURE_INVALID, "CSR",
                         "the CSR's signature does not verify with its public key");
        return NULL;
    }
    return req;
}

GENERAL_NAMES *csr_sans(const X509_REQ *req)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions((X509_REQ *)req);
    GENERAL_NAMES *names = NULL;
    int i = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);
    if (i < 0)
        names = sk_GENERAL_NAME_new_null();
    else
        names = X509V3_EXT_d2i(sk_X509_EXTENSION_value(exts, i));
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return names;
}

EVP_PKEY *privkey_decode(const char *text, enroll_error *err)
{
    EVP_PKEY *key = NULL;
    if (strstr(text, "-----BEGIN") != NULL) {
        if (strstr(text, "ENCRYPTED") == NULL) {
            BIO *bio = BIO_new_mem_buf(text, -1);
            key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"") : NULL;
            BIO_free(bio);
        }
    } else {
        size_t len = 0;
        unsigned char *der = base64_decode(text, strlen(text), BASE64_SKIP_SPACE, &len);
        if (der != NULL) {
            const unsigned char *p = der;
            PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
            key = p8 ? EVP_PKCS82PKEY(p8) : NULL;
            PKCS8_PRIV_KEY_INFO_free(p8);
            OPENSSL_cleanse(der, len);
            free(der);
        }
    }
    if (key == NULL) {
        ERR_clear_error();
        enroll_error_set(err, HSE_INVALID_PRIVATE_KEY, "PrivateKey",
                         "PrivateKey is not an unencrypted PKCS#8 key (base 64 or PEM)");
    }
    return key;
}

int key_describe(const EVP_PKEY *key, int *type, int *bits, int *curve_nid)
{
    *type = EVP_PKEY_get_base_id(key);
    *bits = EVP_PKEY_get_bits(key);
    *curve_nid = NID_undef;
    switch (*type) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
        return 0;
    case EVP_PKEY_EC: {
        char group[64];
        if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                            NULL))
            return -1;
        *curve_nid = OBJ_sn2nid(group);
        if (*curve_nid == NID_undef)
            *curve_nid = EC_curve_nist2nid(group);
        return 0;
    }
    default:
        return -1;
    }
}

bool spki_has_unnamed_ec_curve(const X509_PUBKEY *spki)
{
    ASN1_OBJECT *alg_oid = NULL;
    X509_ALGOR *alg = NULL;
    if (spki == NULL || !X509_PUBKEY_get0_param(&alg_oid, NULL, NULL, &alg, spki) || alg == NULL)
        return false;
    if (OBJ_obj2nid(alg_oid) != NID_X9_62_id_ecPublicKey)
        return false;
    int ptype = V_ASN1_UNDEF;
    const void *pval = NULL;
    X509_ALGOR_get0(NULL, &ptype, &pval, alg);
    return ptype != V_ASN1_OBJECT; /* a SEQUENCE (specifiedCurve) or NULL (implicitlyCA) */
}

int spki_fingerprint(const X509_PUBKEY *spki, unsigned char out[32])
{
    unsigned char *der = NULL;
    int len = i2d_X509_PUBKEY(spki, &der);
    if (len <= 0)
        return -1;
    int ok = EVP_Digest(der, (size_t)len, out, NULL, algs_md(NID_sha256), NULL);
    OPENSSL_free(der);
    return ok ? 0 : -1;
}

/* An EC key the engine built in process (a legacy EC_KEY, see pubkey.c) is checked by ECDSA_verify
 * over the digest of the request's encoded TBS part: the same check X509_REQ_verify makes, without
 * OpenSSL 3.0 exporting the key into a provider for it (a curve rebuilt per request). Every other
 * key, and anything unusual about the signature algorithm, goes to X509_REQ_verify. */
bool csr_signature_verifies(X509_REQ *csr, EVP_PKEY *pub)
{
    const ASN1_BIT_STRING *sig = NULL;
    const X509_ALGOR *alg = NULL;
    X509_REQ_get0_signature(csr, &sig, &alg);
    const ASN1_OBJECT *alg_oid = NULL;
    int ptype = V_ASN1_UNDEF, md_nid = NID_undef, pk_nid = NID_undef;
    if (alg != NULL)
        X509_ALGOR_get0(&alg_oid, &ptype, NULL, alg);
    const EC_KEY *ec = EVP_PKEY_get_id(pub) == EVP_PKEY_EC && EVP_PKEY_get0_provider(pub) == NULL
                           ? EVP_PKEY_get0_EC_KEY(pub)
                           : NULL;
    const EVP_MD *md = NULL;
    if (ec != NULL && sig != NULL && alg_oid != NULL && ptype == V_ASN1_UNDEF &&
        (sig->flags & 0x07) == 0 && OBJ_find_sigid_algs(OBJ_obj2nid(alg_oid), &md_nid, &pk_nid) &&
        pk_nid == NID_X9_62_id_ecPublicKey)
        md = algs_md(md_nid);
    unsigned char *der = NULL;
    int der_len = md != NULL ? i2d_X509_REQ(csr, &der) : 0;
    if (der_len <= 0) {
        OPENSSL_free(der);
        return X509_REQ_verify(csr, pub) == 1;
    }
    /* CertificationRequest ::= SEQUENCE { certificationRequestInfo SEQUENCE, ... }: the first
     * element, header included, is what was signed. */
    const unsigned char *p = der, *tbs;
    long len;
    int tag, cls, ok = 0;
    if (!(ASN1_get_object(&p, &len, &tag, &cls, der_len) & 0x80) && tag == V_ASN1_SEQUENCE) {
        tbs = p;
        if (!(ASN1_get_object(&p, &len, &tag, &cls, der_len - (p - der)) & 0x80) &&
            tag == V_ASN1_SEQUENCE && len <= der_len - (p - der)) {
            unsigned char digest[EVP_MAX_MD_SIZE];
            unsigned int digest_len = 0;
            ok =
                EVP_Digest(tbs, (size_t)(p - tbs) + (size_t)len, digest, &digest_len, md, NULL) &&
                ECDSA_verify(0, digest, (int)digest_len, sig->data, sig->length, (EC_KEY *)ec) == 1;
        }
    }
    OPENSSL_free(der);
    return ok;
}
