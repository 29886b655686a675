/* The digests and ciphers of the per-request path, fetched once (algs.h). The pointers stay
 * reachable for the life of the process; OPENSSL_cleanup at exit releases the method store. */
#include "algs.h"

#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <pthread.h>

static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_MD *mds[4];         /* sha1, sha256, sha384, sha512 */
static EVP_CIPHER *ciphers[2]; /* aes-256-cbc, aes-256-wrap-pad */

static void algs_fetch(void)
{
    static const char *const md_names[4] = {"SHA1", "SHA2-256", "SHA2-384", "SHA2-512"};
    for (int i = 0; i < 4; i++)
        mds[i] = EVP_MD_fetch(NULL, md_names[i], NULL);
    ciphers[0] = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    ciphers[1] = EVP_CIPHER_fetch(NULL, "AES-256-WRAP-PAD", NULL);
    ERR_clear_error(); /* a failed fetch falls back to the legacy object, silently */
}

const EVP_MD *algs_md(int nid)
{
    pthread_once(&algs_once, algs_fetch);
    switch (nid) {
    case NID_sha1:
        return mds[0] ? mds[0] : EVP_sha1();
    case NID_sha256:
        return mds[1] ? mds[1] : EVP_sha256();
    case NID_sha384:
        return mds[2] ? mds[2] : EVP_sha384();
    case NID_sha512:
        return mds[3] ? mds[3] : EVP_sha512();
    default:
        return NULL;
    }
}

const EVP_CIPHER *algs_cipher(int nid)
{
    pthread_once(&algs_once, algs_fetch);
    switch (nid) {
    case NID_aes_256_cbc:
        return ciphers[0] ? ciphers[0] : EVP_aes_256_cbc();
    case NID_id_aes256_wrap_pad:
        return ciphers[1] ? ciphers[1] : EVP_aes_256_wrap_pad();
    default:
        return NULL;
    }
}
