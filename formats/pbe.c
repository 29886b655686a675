/* Password-based encryption for the bundles: what PKCS8_set0_pbe_ex and PKCS12_pack_p7encdata_ex
 * write, but with the keys derived by formats/kdf.c, three to four times as fast as OpenSSL 3.0's
 * derivations (which go through provider contexts at every iteration); the derivations are most
 * of a bundle's CPU. */
#include "pbe.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <string.h>

#include "algs.h"
#include "kdf.h"

#define PBES2_SALT  16
#define PKCS12_SALT 8 /* what OpenSSL writes for PKCS#12's PBE */

/* Encrypts plain under key and iv with cipher into sealed, and sets alg to pbe. 0 or -1. */
static int seal(const EVP_CIPHER *cipher, const unsigned char *key, const unsigned char *iv,
                const unsigned char *plain, int plain_len, const X509_ALGOR *pbe, X509_ALGOR *alg,
                ASN1_OCTET_STRING *sealed)
{
    int block = cipher != NULL ? EVP_CIPHER_get_block_size(cipher) : 0;
    unsigned char *out = block > 0 ? OPENSSL_malloc((size_t)plain_len + (size_t)block) : NULL;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len1 = 0, len2 = 0;
    int ok = out != NULL && ctx != NULL && EVP_EncryptInit_ex(ctx, cipher, NULL, key, iv) == 1 &&
             EVP_EncryptUpdate(ctx, out, &len1, plain, plain_len) == 1 &&
             EVP_EncryptFinal_ex(ctx, out + len1, &len2) == 1 && X509_ALGOR_copy(alg, pbe) &&
             ASN1_OCTET_STRING_set(sealed, out, len1 + len2);
    EVP_CIPHER_CTX_free(ctx);
    OPENSSL_free(out);
    return ok ? 0 : -1;
}

static int bad_arguments(const unsigned char *plain, int plain_len, const char *password,
                         int iterations, const X509_ALGOR *alg, const ASN1_OCTET_STRING *sealed)
{
    return plain == NULL || plain_len <= 0 || plain_len > INT_MAX - 32 || password == NULL ||
           password[0] == '\0' || iterations < 1 || alg == NULL || sealed == NULL;
}

int pbe_seal_pbes2(const unsigned char *plain, int plain_len, const char *password, int iterations,
                   X509_ALGOR *alg, ASN1_OCTET_STRING *sealed)
{
    if (bad_arguments(plain, plain_len, password, iterations, alg, sealed))
        return -1;
    unsigned char salt_iv[PBES2_SALT + 16], dk[32]; /* one draw from the DRBG for salt and IV */
    unsigned char *salt = salt_iv, *iv = salt_iv + PBES2_SALT;
    X509_ALGOR *pbe = NULL;
    int rc = -1;
    if (RAND_bytes(salt_iv, sizeof salt_iv) == 1 &&
        (pbe = PKCS5_pbe2_set_iv_ex(EVP_aes_256_cbc(), iterations, salt, PBES2_SALT, iv,
                                    NID_hmacWithSHA256, NULL)) != NULL &&
        kdf_pbkdf2_hmac_sha256(password, strlen(password), salt, PBES2_SALT, (unsigned)iterations,
                               dk, sizeof dk) == 0)
        rc = seal(algs_cipher(NID_aes_256_cbc), dk, iv, plain, plain_len, pbe, alg, sealed);
    OPENSSL_cleanse(dk, sizeof dk);
    X509_ALGOR_free(pbe);
    return rc;
}

int pbe_seal_pkcs12(int pbe_nid, const unsigned char *plain, int plain_len, const char *password,
                    int iterations, X509_ALGOR *alg, ASN1_OCTET_STRING *sealed)
{
    int cipher_nid = pbe_nid == NID_pbe_WithSHA1And3_Key_TripleDES_CBC ? NID_des_ede3_cbc
                     : pbe_nid == NID_pbe_WithSHA1And40BitRC2_CBC      ? NID_rc2_40_cbc
                                                                       : NID_undef;
    if (cipher_nid == NID_undef ||
        bad_arguments(plain, plain_len, password, iterations, alg, sealed))
        return -1;
    const EVP_CIPHER *cipher = EVP_get_cipherbynid(cipher_nid);
    unsigned char salt[PKCS12_SALT], key[EVP_MAX_KEY_LENGTH], iv[EVP_MAX_IV_LENGTH];
    X509_ALGOR *pbe = NULL;
    int rc = -1;
    if (cipher != NULL && RAND_bytes(salt, sizeof salt) == 1 &&
        (pbe = PKCS5_pbe_set(pbe_nid, iterations, salt, sizeof salt)) != NULL &&
        kdf_pkcs12(NID_sha1, PKCS12_KEY_ID, password, salt, sizeof salt, (unsigned)iterations, key,
                   (size_t)EVP_CIPHER_get_key_length(cipher)) == 0 &&
        kdf_pkcs12(NID_sha1, PKCS12_IV_ID, password, salt, sizeof salt, (unsigned)iterations, iv,
                   (size_t)EVP_CIPHER_get_iv_length(cipher)) == 0)
        rc = seal(cipher, key, iv, plain, plain_len, pbe, alg, sealed);
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(iv, sizeof iv);
    X509_ALGOR_free(pbe);
    return rc;
}

X509_SIG *pbe_seal_pkcs8(const PKCS8_PRIV_KEY_INFO *p8inf, const char *password, int iterations,
                         int pbe_nid)
{
    unsigned char *plain = NULL;
    int plain_len = p8inf != NULL ? i2d_PKCS8_PRIV_KEY_INFO(p8inf, &plain) : -1;
    X509_SIG *p8 = plain_len > 0 ? X509_SIG_new() : NULL;
    if (p8 != NULL) {
        X509_ALGOR *alg;
        ASN1_OCTET_STRING *data;
        X509_SIG_getm(p8, &alg, &data);
        if ((pbe_nid == NID_undef
                 ? pbe_seal_pbes2(plain, plain_len, password, iterations, alg, data)
                 : pbe_seal_pkcs12(pbe_nid, plain, plain_len, password, iterations, alg, data)) !=
            0) {
            X509_SIG_free(p8);
            p8 = NULL;
        }
    }
    if (plain != NULL)
        OPENSSL_clear_free(plain, (size_t)plain_len);
    return p8;
}
