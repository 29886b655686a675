/* Requests and keys made elsewhere, as CSR enrollment lines carry them: a PKCS#10 CSR in PEM or
 * base-64 DER, its subjectAltName, and an unencrypted PKCS#8 private key in base 64 or PEM. */
#ifndef HSMENROLL_FORMATS_CSR_H
#define HSMENROLL_FORMATS_CSR_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/* Decodes a CSR given as PEM ("CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST") or as base 64
 * of the DER (whitespace ignored) and checks its signature with its own key. Codes: INVALID_CSR
 * (does not decode), CSR_SIGNATURE_INVALID; field "CSR". NULL on error. */
X509_REQ *csr_decode(const char *text, enroll_error *err);

/* Whether req's signature verifies with pub (X509_REQ_verify's check: the proof of possession);
 * an EC key built in process is checked without a provider export of the key. */
bool csr_signature_verifies(X509_REQ *req, EVP_PKEY *pub);

/* The subjectAltName of the CSR's extensionRequest (a new, possibly empty stack), or NULL when
 * that extension does not decode. */
GENERAL_NAMES *csr_sans(const X509_REQ *req);

/* Decodes an unencrypted PKCS#8 private key given as base 64 of the DER or as PEM ("PRIVATE
 * KEY"). Code INVALID_PRIVATE_KEY, field "PrivateKey". The caller frees it. */
EVP_PKEY *privkey_decode(const char *text, enroll_error *err);

/* What a key is: its OpenSSL type (EVP_PKEY_RSA, EVP_PKEY_EC, EVP_PKEY_ED25519, EVP_PKEY_ED448),
 * size in bits, and for EC the curve NID (NID_undef otherwise). 0, or -1 for other key types. */
int key_describe(const EVP_PKEY *key, int *type, int *bits, int *curve_nid);

/* True when a SubjectPublicKeyInfo is an EC key whose AlgorithmIdentifier carries anything but a
 * namedCurve OID (explicit parameters, or implicitlyCA): RFC 5480 section 2.1.1 allows only
 * named curves in certificates. */
bool spki_has_unnamed_ec_curve(const X509_PUBKEY *spki);

/* SHA-256 of a SubjectPublicKeyInfo's DER (for AllowKeyReuse); from the structure a CSR or a
 * certificate carries, so no key is re-encoded. 0 or -1. */
int spki_fingerprint(const X509_PUBKEY *spki, unsigned char out[32]);

#endif
