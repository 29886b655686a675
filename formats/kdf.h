/* The password-based key derivations of the bundles (formats/kdf.c): PBKDF2-HMAC-SHA256 for the
 * encrypted keys and certificates, and PKCS#12's own derivation for a PFX's MAC key (and a legacy
 * PFX's cipher keys and IVs). The derivations are most of an exported key's CPU, so they run at
 * the speed of the hash's block function. */
#ifndef HSE_FORMATS_KDF_H
#define HSE_FORMATS_KDF_H

#include <stddef.h>

/* RFC 8018 PBKDF2 with HMAC-SHA256: out_len bytes from password (any bytes; a NULL password with
 * length 0 is the empty one) and salt, over iterations (>= 1) rounds. 0, or -1 on a bad argument
 * (nothing written then). */
int kdf_pbkdf2_hmac_sha256(const void *password, size_t password_len, const unsigned char *salt,
                           size_t salt_len, unsigned iterations, unsigned char *out,
                           size_t out_len);

/* RFC 7292 (appendix B.2) key derivation with md_nid (NID_sha1 or NID_sha256) for purpose id
 * (1: a cipher key, 2: an IV, 3: a MAC key): out_len (1 to 1024) bytes from the UTF-8 password,
 * taken as a BMPString as OpenSSL takes it for PKCS12_key_gen_utf8 (bytes that are not UTF-8 one
 * by one, as OpenSSL does), and a non-empty salt. 0, or -1 on a bad argument. */
int kdf_pkcs12(int md_nid, int id, const char *password, const unsigned char *salt, size_t salt_len,
               unsigned iterations, unsigned char *out, size_t out_len);

/* The hardware's bound for the two derivations, for `hsmenroll bench --kdf`: blocks calls of the
 * SHA-256 block function, each on the last one's output (PBKDF2 makes two calls an iteration,
 * PKCS#12's derivation one). Returns a word of the state, so that the calls are not optimised
 * away. */
unsigned kdf_sha256_block_bound(unsigned blocks);

#endif
