/* Process-wide crypto set-up for the bundle writers: loads OpenSSL's default and legacy providers
 * once and keeps them for the life of the process. Chain ordering, PEM/DER/PKCS#8 and PKCS#12
 * writing live in chain.c, pem_bundle.c and pfx.c. */
#include "bundle.h"

#include <openssl/err.h>
#include <openssl/provider.h>
#include <pthread.h>

static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;
/* Held, never unloaded: the pointers stay reachable, so the leak checker counts nothing, and
 * OPENSSL_cleanup (run at exit) releases the provider store. */
static OSSL_PROVIDER *default_provider;
static OSSL_PROVIDER *legacy_provider;

static void crypto_load(void)
{
    default_provider = OSSL_PROVIDER_load(NULL, "default");
    legacy_provider = OSSL_PROVIDER_load(NULL, "legacy");
    /* A missing legacy module is reported by the return value, not left in the error queue of
     * whichever thread happened to come first. */
    ERR_clear_error();
}

int bundle_crypto_init(void)
{
    if (pthread_once(&crypto_once, crypto_load) != 0)
        return -1;
    return (default_provider != NULL && legacy_provider != NULL) ? 0 : -1;
}
