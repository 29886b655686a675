/* PBES2 encryption (RFC 8018, 6.2) as the bundles use it: PBKDF2-HMAC-SHA256 with a random 16-byte
 * salt and AES-256-CBC with a random IV, for the encrypted keys (PEM, DER, the PKCS#12 key bag)
 * and the encrypted certificates of a PKCS#12 (formats/pbes2.c). */
#ifndef HSE_FORMATS_PBES2_H
#define HSE_FORMATS_PBES2_H

#include <openssl/asn1.h>
#include <openssl/x509.h>

/* Encrypts plain_len bytes of plain under password (non-empty, UTF-8) with iterations (>= 1):
 * alg is set to the PBES2 parameters and sealed to the ciphertext, both objects the caller's
 * (an X509_SIG's, a PKCS#7 EncryptedContentInfo's). 0, or -1 with nothing usable in them. */
int pbes2_seal(const unsigned char *plain, int plain_len, const char *password, int iterations,
               X509_ALGOR *alg, ASN1_OCTET_STRING *sealed);

#endif
