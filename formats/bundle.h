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
 * then fails with a clear error, everything else works). The providers stay loaded until exit
 * (OPENSSL_MODULES is read on the first call only). pfx_write and the key writers call it
 * themselves; calling it at start-up only moves the cost and lets the caller warn early. */
int bundle_crypto_init(void);

/* Returns a new stack (free with sk_X509_pop_free(sk, X509_free)) holding leaf followed, when
 * include_chain, by the certificates of `chain` put in issuing order (each one's issuer next,
 * up to the root), then reversed when order is CHAIN_ROOT_FIRST. Certificates of `chain` that are
 * not on leaf's path are appended after the path, in their given order. Reference counts are
 * bumped; the inputs are not modified. NULL on allocation failure or when leaf is NULL.
 * Precisely: the issuer of a certificate is the first unused one of `chain` whose subject equals
 * its issuer name and that X509_check_issued accepts (key identifiers, key usage; signatures are
 * not verified); the path ends at a self-signed certificate or when no issuer is found. Copies of
 * leaf in `chain`, and repeats of a certificate already taken (X509_cmp), are dropped. The
 * reversal for CHAIN_ROOT_FIRST takes the whole list, strays included, so the leaf is always
 * first (CHAIN_END_ENTITY_FIRST) or last (CHAIN_ROOT_FIRST). chain may be NULL. */
STACK_OF(X509) *
    chain_arrange(X509 *leaf, STACK_OF(X509) * chain, bool include_chain, chain_order order);

typedef struct pem_bundle_options {
    bool include_subject_header; /* "subject=<dn_format(subject)>" line above each certificate */
    EVP_PKEY *key;               /* private key to append as ENCRYPTED PRIVATE KEY, or NULL */
    const char *password;        /* for key: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC */
    int pbkdf2_iterations;       /* 0: the default (2048) */
} pem_bundle_options;

/* Writes the certificates of `certs` in the given order (as chain_arrange made them), each as a
 * CERTIFICATE block preceded by its subject header when asked, then the key if any.
 * The header is the line "subject=" + dn_format(subject) + "\n", right above
 * "-----BEGIN CERTIFICATE-----". opt NULL means no headers and no key; certs may be NULL or empty.
 * A key needs a non-empty password (else BUNDLE_FAILED: a key is never written in clear); salt
 * (OpenSSL's default length, 8 bytes in 3.0) and IV are random. The bundle is built in memory
 * and written to out only when complete: on failure (-1, err filled) nothing is written. Returns
 * 0 on success. */
int pem_bundle_write(BIO *out, STACK_OF(X509) * certs, const pem_bundle_options *opt,
                     enroll_error *err);

/* The certificate alone, DER. 0, or -1 with err (BUNDLE_FAILED). */
int der_cert_write(BIO *out, X509 *cert, enroll_error *err);

/* The key as an EncryptedPrivateKeyInfo: PBES2 with PBKDF2-HMAC-SHA256 (formats/kdf.c, random
 * 16-byte salt) and AES-256-CBC (random IV). It is the PEM bundle's key, DER's key file, and the
 * shrouded key bag of a modern PKCS#12. iterations 0: 2048. NULL with err (BUNDLE_FAILED) on
 * failure, or for a NULL or empty password or a key without its private part. */
X509_SIG *bundle_encrypt_key(EVP_PKEY *key, const char *password, int iterations,
                             enroll_error *err);

/* The key as DER EncryptedPrivateKeyInfo (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC), the same
 * structure as the PEM bundle's key. pbkdf2_iterations 0: 2048; negative, a NULL or empty
 * password, or a key without its private part: -1 with BUNDLE_FAILED, nothing written. */
int pkcs8_der_write(BIO *out, EVP_PKEY *key, const char *password, int pbkdf2_iterations,
                    enroll_error *err);

typedef struct pfx_options {
    const char *password;      /* required */
    const char *friendly_name; /* PKCS#12 friendlyName on the key and leaf bags, or NULL */
    const char *csp_name;      /* Microsoft CSP name attribute 1.3.6.1.4.1.311.17.1, or NULL */
    bool legacy;               /* true: key PBE-SHA1-3DES, certificates PBE-SHA1-RC2-40, MAC SHA-1;
                                  false: key and certificates PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC, MAC SHA-256 */
    int iterations;            /* PBKDF and MAC iterations; 0: the default (2048) */
} pfx_options;

/* Writes a PKCS#12 holding key and the certificates of `certs` (as chain_arrange made them), the
 * certificate bags in that order, the key bag matched to the leaf by localKeyID.
 * The leaf is the first certificate of certs whose public key is key's (so either chain order
 * works); none: BUNDLE_FAILED. The leaf's bag and the key bag carry localKeyID = SHA-1 of the
 * leaf's DER and, when given, the friendlyName (UTF-8 in, BMPString stored; Java uses it as the
 * alias); the CA bags carry no attribute. csp_name (ASCII) goes on the key bag only. Layout: an
 * encrypted safe with the certificate bags, then a plain safe with one shrouded key bag; MAC with
 * the same iteration count. Legacy while the legacy provider cannot be loaded:
 * LEGACY_UNAVAILABLE. key must hold its private part; password non-empty. Nothing is written to
 * out unless the whole PKCS#12 was built; returns 0, or -1 with err filled. */
int pfx_write(BIO *out, EVP_PKEY *key, STACK_OF(X509) * certs, const pfx_options *opt,
              enroll_error *err);

#endif
