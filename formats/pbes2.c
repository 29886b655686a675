/* PBES2 encryption for the bundles: what PKCS8_set0_pbe_ex and PKCS12_pack_p7encdata_ex write,
 * but with the key derived by formats/kdf.c, about four times as fast as OpenSSL 3.0's PBKDF2
 * (which copies provider contexts at every iteration); the derivation is most of a bundle's CPU. */
#include "pbes2.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#include "algs.h"
#include "kdf.h"

#define SALT_LEN 16

int pbes2_seal(const unsigned char *plain, int plain_len, const char *password, int iterations,
               X509_ALGOR *alg, ASN1_OCTET_STRING *sealed)
{
    if (plain == NULL || plain_len <= 0 || plain_len > INT_MAX - 16 || password == NULL ||
        password[0] == '\0' || iterations < 1 || alg == NULL || sealed == NULL)
        return -1;
    unsigned char salt_iv[SALT_LEN + 16], dk[32]; /* one draw from the DRBG for salt and IV */
    unsigned char *salt = salt_iv, *iv = salt_iv + SALT_LEN;
    unsigned char *cipher = NULL;
    int len1 = 0, len2 = 0, rc = -1;
    X509_ALGOR *pbe = NULL;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || RAND_bytes(salt_iv, sizeof salt_iv) != 1 ||
        (cipher = OPENSSL_malloc((size_t)plain_len + 16)) == NULL ||
        (pbe = PKCS5_pbe2_set_iv_ex(EVP_aes_256_cbc(), iterations, salt, SALT_LEN, iv,
                                    NID_hmacWithSHA256, NULL)) == NULL ||
        kdf_pbkdf2_hmac_sha256(password, strlen(password), salt, SALT_LEN, (unsigned)iterations, dk,
                               sizeof dk) != 0)
        goto done;
    if (EVP_EncryptInit_ex(ctx, algs_cipher(NID_aes_256_cbc), NULL, dk, iv) == 1 &&
        EVP_EncryptUpdate(ctx, cipher, &len1, plain, plain_len) == 1 &&
        EVP_EncryptFinal_ex(ctx, cipher + len1, &len2) == 1 && X509_ALGOR_copy(alg, pbe) &&
        ASN1_OCTET_STRING_set(sealed, cipher, len1 + len2))
        rc = 0;
done:
    OPENSSL_cleanse(dk, sizeof dk);
    OPENSSL_free(cipher);
    X509_ALGOR_free(pbe);
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}
