/* Output bundles: chain ordering, PEM (with subject headers and an encrypted PKCS#8 key), DER,
 * PKCS#8 DER and PKCS#12 (modern PBES2/AES-256 or legacy 3DES/RC2-40). Everything is written to
 * memory BIOs; writing files is batch/'s job. */
#ifndef HSMENROLL_FORMATS_BUNDLE_H
#define HSMENROLL_FORMATS_BUNDLE_H

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>

#include "error.h"

typedef enum chain_order { CHAIN_END_ENTITY_FIRST = 0, CHAIN_ROOT_FIRST } chain_order;

/* Loads OpenSSL's default and legacy providers once (the legacy one is needed for RC2-40 and
 * 3DES PKCS#12). Thread-safe; returns 0, or -1 when the legacy provider is missing (legacy PFX
 * then fails with a clear error, everything else works). */
int bundle_crypto_init(void);

/* Returns a new stack (X509_free each, or OSSL_STACK_OF_X509_free) holding leaf followed, when
 * include_chain, by the certificates of `chain` put in issuing order (each one's issuer next,
 * up to the root), then reversed when order is CHAIN_ROOT_FIRST. Certificates of `chain` that are
 * not on leaf's path are appended after the path, in their given order. Reference counts are
 * bumped; the inputs are not modified. NULL on allocation failure. */
STACK_OF(X509) *chain_arrange(X509 *leaf, STACK_OF(X509) *chain, bool include_chain,
                              chain_order order);

typedef struct pem_bundle_options {
    bool include_subject_header; /* "subject=<dn_format(subject)>" line above each certificate */
    EVP_PKEY *key;               /* private key to append as ENCRYPTED PRIVATE KEY, or NULL */
    const char *password;        /* for key: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC */
    int pbkdf2_iterations;       /* 0: the default (2048) */
} pem_bundle_options;

/* Writes the certificates of `certs` in the given order (as chain_arrange made them), each as a
 * CERTIFICATE block preceded by its subject header when asked, then the key if any. */
int pem_bundle_write(BIO *out, STACK_OF(X509) *certs, const pem_bundle_options *opt,
                     enroll_error *err);

/* The certificate alone, DER. */
int der_cert_write(BIO *out, X509 *cert, enroll_error *err);

/* The key as DER EncryptedPrivateKeyInfo (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC). */
int pkcs8_der_write(BIO *out, EVP_PKEY *key, const char *password, int pbkdf2_iterations,
                    enroll_error *err);

typedef struct pfx_options {
    const char *password;      /* required */
    const char *friendly_name; /* PKCS#12 friendlyName on the key and leaf bags, or NULL */
    const char *csp_name;      /* Microsoft CSP name attribute 1.3.6.1.4.1.311.17.1, or NULL */
    bool legacy; /* true: key PBE-SHA1-3DES, certificates PBE-SHA1-RC2-40, MAC SHA-1;
                    false: key and certificates PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC, MAC SHA-256 */
    int iterations; /* PBKDF and MAC iterations; 0: the default (2048) */
} pfx_options;

/* Writes a PKCS#12 holding key and the certificates of `certs` (as chain_arrange made them), the
 * certificate bags in that order, the key bag matched to the leaf by localKeyID. */
int pfx_write(BIO *out, EVP_PKEY *key, STACK_OF(X509) *certs, const pfx_options *opt,
              enroll_error *err);

#endif
