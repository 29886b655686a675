/* Digests and ciphers fetched once from OpenSSL's providers and kept for the life of the process.
 * OpenSSL 3.0 looks EVP_sha256() and the like up by name in its method store at every use (a
 * lock and a hash lookup each time); the hot path takes them from here instead. */
#ifndef HSMENROLL_FORMATS_ALGS_H
#define HSMENROLL_FORMATS_ALGS_H

#include <openssl/evp.h>

/* NID_sha1, NID_sha256, NID_sha384, NID_sha512: the fetched digest (the legacy EVP_MD when the
 * fetch failed), or NULL for another nid. Never freed by the caller. */
const EVP_MD *algs_md(int nid);
/* NID_aes_256_cbc, NID_id_aes256_wrap_pad: the same for ciphers. */
const EVP_CIPHER *algs_cipher(int nid);

#endif
