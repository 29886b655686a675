/* PKCS#10 requests and X.509 certificates signed through a callback, so that the private key can
 * live anywhere (an HSM, here): formats/ builds the to-be-signed bytes and assembles the result,
 * the caller's signer produces the signature, which is stored in the structure in place. */
#ifndef HSMENROLL_FORMATS_SIGN_H
#define HSMENROLL_FORMATS_SIGN_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stddef.h>

#include "der.h"
#include "error.h"

typedef enum sig_alg {
    SIG_NONE = 0,
    SIG_RSA_PKCS1_SHA256,
    SIG_ECDSA_SHA256, /* P-256 */
    SIG_ECDSA_SHA384, /* P-384 */
    SIG_ECDSA_SHA512, /* P-521 */
    SIG_ED25519,      /* pure EdDSA */
    SIG_ED448,
} sig_alg;

/* Signs the to-be-signed DER bytes with alg. The signature is returned in its X.509 encoding
 * (RSA: the PKCS#1 v1.5 block; ECDSA: the DER Ecdsa-Sig-Value; EdDSA: the raw signature) in
 * sig, of capacity *sig_len on entry, length on return. Returns 0, or -1 with err filled. */
typedef int (*sign_callback)(void *ctx, sig_alg alg, const unsigned char *tbs, size_t tbs_len,
                             unsigned char *sig, size_t *sig_len, enroll_error *err);

typedef struct signer {
    sign_callback sign;
    void *ctx;
    sig_alg alg;
} signer;

/* The algorithm a key of this type signs with (ECDSA: the curve's hash); SIG_NONE if unsupported.
 */
sig_alg sig_alg_for_key(const EVP_PKEY *key);
const char *sig_alg_name(sig_alg alg);
/* The message digest that goes with alg (NULL for EdDSA and SIG_NONE). */
const EVP_MD *sig_alg_digest(sig_alg alg);

/* Converts a raw ECDSA signature r||s (each half field-size bytes) to DER Ecdsa-Sig-Value in out
 * (capacity *out_len on entry). Returns 0 or -1. */
int ecdsa_raw_to_der(const unsigned char *raw, size_t raw_len, unsigned char *out, size_t *out_len);

/* Builds and signs a PKCS#10 request: version 1, subject, the public key, and when sans is not
 * NULL and not empty an extensionRequest holding subjectAltName. */
X509_REQ *csr_build(const X509_NAME *subject, const GENERAL_NAMES *sans, EVP_PKEY *pubkey,
                    const signer *s, enroll_error *err);

/* Signs a prepared certificate in place: sets its signature algorithm to s->alg, encodes the
 * TBS, has s sign it and stores the signature. Returns cert with one more reference (the caller
 * frees both its own and the returned one), or NULL with err. */
X509 *cert_sign(X509 *cert, const signer *s, enroll_error *err);

/* The DER AlgorithmIdentifier of alg into *der (OPENSSL_malloc'd): its length, or -1. */
int sig_alg_der(sig_alg alg, unsigned char **der);

/* Signs the DER tbs with s and returns the DER of SEQUENCE { tbs, AlgorithmIdentifier,
 * BIT STRING signature }: the shape of a CRL (RFC 5280) and of an OCSP BasicOCSPResponse without
 * certificates (RFC 6960), for structures OpenSSL cannot sign without the private key (malloc'd,
 * length in *out_len). NULL with err. */
unsigned char *der_sign_wrap(const unsigned char *tbs, size_t tbs_len, const signer *s,
                             size_t *out_len, enroll_error *err);

#endif
