/* Password-based encryption as the bundles use it (formats/pbe.c): PBES2 (RFC 8018, 6.2) with
 * PBKDF2-HMAC-SHA256, a random 16-byte salt and AES-256-CBC, for the encrypted keys (PEM, DER, a
 * modern PKCS#12's key bag) and a modern PKCS#12's certificates; PKCS#12's own PBE with SHA-1
 * (RFC 7292, appendix C) for a legacy PKCS#12's key (3DES) and certificates (RC2-40). */
#ifndef HSE_FORMATS_PBE_H
#define HSE_FORMATS_PBE_H

#include <openssl/asn1.h>
#include <openssl/x509.h>

/* Encrypts plain_len bytes of plain under password (non-empty, UTF-8) with iterations (>= 1):
 * alg is set to the PBES2 parameters and sealed to the ciphertext, both objects the caller's
 * (an X509_SIG's, a PKCS#7 EncryptedContentInfo's). 0, or -1 with nothing usable in them. */
int pbe_seal_pbes2(const unsigned char *plain, int plain_len, const char *password, int iterations,
                   X509_ALGOR *alg, ASN1_OCTET_STRING *sealed);

/* The same with PKCS#12's PBE pbe_nid (NID_pbe_WithSHA1And3_Key_TripleDES_CBC or
 * NID_pbe_WithSHA1And40BitRC2_CBC, the latter from OpenSSL's legacy provider) and a random 8-byte
 * salt, the key and IV derived by formats/kdf.c: what PKCS12_add_key_ex and PKCS12_add_safe_ex
 * write for a legacy PKCS#12. */
int pbe_seal_pkcs12(int pbe_nid, const unsigned char *plain, int plain_len, const char *password,
                    int iterations, X509_ALGOR *alg, ASN1_OCTET_STRING *sealed);

/* The PrivateKeyInfo p8inf as an EncryptedPrivateKeyInfo: by PBES2 (pbe_nid NID_undef) or by
 * PKCS#12's PBE pbe_nid, as above. NULL on failure. */
X509_SIG *pbe_seal_pkcs8(const PKCS8_PRIV_KEY_INFO *p8inf, const char *password, int iterations,
                         int pbe_nid);

#endif
