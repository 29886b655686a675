/* Public keys from the raw parts an HSM hands out (RSA modulus and exponent, EC point and curve
 * parameters, EdDSA point), as OpenSSL EVP_PKEYs; and private keys from PKCS#8 or raw bytes. */
#ifndef HSMENROLL_FORMATS_PUBKEY_H
#define HSMENROLL_FORMATS_PUBKEY_H

#include <openssl/evp.h>
#include <stddef.h>

#include "error.h"

EVP_PKEY *pubkey_from_rsa(const unsigned char *modulus, size_t modulus_len,
                          const unsigned char *exponent, size_t exponent_len, enroll_error *err);
/* curve_nid: NID_X9_62_prime256v1, NID_secp384r1, NID_secp521r1. point: the uncompressed point,
 * either raw (04||X||Y) or wrapped in a DER OCTET STRING as PKCS#11 CKA_EC_POINT gives it. */
EVP_PKEY *pubkey_from_ec_point(int curve_nid, const unsigned char *point, size_t point_len,
                               enroll_error *err);
/* nid: NID_ED25519 or NID_ED448; point raw (32 / 57 bytes) or DER OCTET STRING wrapped. */
EVP_PKEY *pubkey_from_eddsa(int nid, const unsigned char *point, size_t point_len,
                            enroll_error *err);
/* A private key from its PKCS#8 PrivateKeyInfo DER (what C_WrapKey wraps). */
EVP_PKEY *privkey_from_pkcs8(const unsigned char *der, size_t der_len, enroll_error *err);
/* RFC 5649 AES key wrap with padding under a 32-byte kek, in process: for key material the
 * module hands out in clear (CKA_VALUE), so that export keys are held wrapped like the others.
 * *out is malloc'd; kwp_unwrap's result must be wiped (OPENSSL_cleanse) and freed. 0 or -1. */
int kwp_wrap(const unsigned char kek[32], const unsigned char *in, size_t in_len,
             unsigned char **out, size_t *out_len, enroll_error *err);
int kwp_unwrap(const unsigned char kek[32], const unsigned char *in, size_t in_len,
               unsigned char **out, size_t *out_len, enroll_error *err);

/* Unwraps an RFC 5649 (AES key wrap with padding) blob made by C_WrapKey under the 32-byte kek
 * and parses the PKCS#8 inside. The plaintext is wiped before returning. */
EVP_PKEY *privkey_unwrap_pkcs8(const unsigned char kek[32], const unsigned char *wrapped,
                               size_t wrapped_len, enroll_error *err);
/* The same for a key that is only written out (PEM, DER, PFX): an EC key comes back as a legacy
 * EC_KEY-backed EVP_PKEY, which OpenSSL 3.0 encodes into PKCS#8 without an encoder chain and
 * which needs no import into a provider. Not for key_import (it reads provider parameters). */
EVP_PKEY *privkey_unwrap_pkcs8_bundle(const unsigned char kek[32], const unsigned char *wrapped,
                                      size_t wrapped_len, enroll_error *err);
/* 1 when key is the private half of cert's public key (X509_check_private_key, with the EC keys
 * of privkey_unwrap_pkcs8_bundle compared by their encoded point), else 0. */
int privkey_matches_cert(X509 *cert, EVP_PKEY *key);
/* How an exported key was wrapped by the module (the values of hsm_wrap_scheme). */
typedef enum key_wrap_scheme {
    KEYWRAP_RFC5649 = 1,       /* AES key wrap with padding */
    KEYWRAP_RFC3394_PKCS7 = 2, /* AES key wrap (RFC 3394) over PKCS#7-padded data */
    KEYWRAP_CBC_PAD = 3,       /* AES-256-CBC with PKCS#7 padding: 16-byte IV, ciphertext */
} key_wrap_scheme;
/* Unwraps in process what C_WrapKey made under the 32-byte kek with this scheme. *out is
 * malloc'd; the caller wipes and frees it. 0 or -1 (INVALID_KEY). */
int key_unwrap(key_wrap_scheme scheme, const unsigned char kek[32], const unsigned char *in,
               size_t in_len, unsigned char **out, size_t *out_len, enroll_error *err);
/* key_unwrap, then the PKCS#8 inside parsed (the plaintext wiped). */
EVP_PKEY *privkey_unwrap_scheme(key_wrap_scheme scheme, const unsigned char kek[32],
                                const unsigned char *wrapped, size_t wrapped_len,
                                enroll_error *err);
/* An EdDSA private key from its raw seed (CKA_VALUE of a non-sensitive key). */
EVP_PKEY *privkey_from_eddsa_raw(int nid, const unsigned char *raw, size_t raw_len,
                                 enroll_error *err);

#endif
