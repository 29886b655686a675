/* The raw PKCS#11 reference the engine is measured against: key generation + one signature in a
 * tight loop, on the same module, token and thread count, straight through the module's function
 * list (no hsmenroll code, but for the engine's PBKDF2, formats/kdf.c). --floor: the mandatory
 * cryptography of one export P-256 request instead (keygen, the CSR's signature, the wrap, the
 * CA's signature with a token key, the proof-of-possession check, PBKDF2-HMAC-SHA256 of the
 * password, the unwrap in process and the key's AES-256-CBC encryption under the password).
 * Prints one JSON line with the rate. The PIN comes from an environment variable, never from
 * argv. */
#include "formats/kdf.h"

#include <dlfcn.h>
#include <getopt.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct probe {
    CK_FUNCTION_LIST *f;
    CK_SLOT_ID slots[32]; /* --token A,B,...: thread i works in token i mod slot_count */
    int slot_count;
    const char *key;
    int token_objects;
    int floor;         /* --floor: the whole mandatory cryptography of a request */
    long iterations;   /* --floor: PBKDF2 iterations (the engine's Pkcs12Iterations) */
    EVP_PKEY *pop_key; /* --floor: a P-256 key and a signature by it over tbs, checked per */
    unsigned char tbs[300], pop_sig[80]; /* request as the CA checks a CSR's */
    size_t pop_sig_len;
    long per_thread;
    long done, failed;
    CK_OBJECT_HANDLE *kept; /* --token-objects: the key pairs made, destroyed after the timing */
    int *kept_slot;         /* index in slots[] of each */
    long kept_count;
    pthread_mutex_t lock;
} probe;

static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
static const unsigned char ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
static const unsigned char ed448[] = {0x06, 0x03, 0x2b, 0x65, 0x71};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of the whole process (every thread, and the module in it), in seconds. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct probe_thread {
    probe *p;
    int index;
} probe_thread;

/* RFC 5649 (CKM_AES_KEY_WRAP_PAD as the standard reads it), else RFC 3394 over PKCS#7 padding
 * (as SoftHSM 2.6 writes it): the plain key, true when one of them checks. */
static bool unwrap_in_process(const unsigned char kek[32], const unsigned char *in, size_t in_len,
                              unsigned char *out, size_t *out_len)
{
    for (int pkcs7 = 0; pkcs7 < 2; pkcs7++) {
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        if (ctx != NULL)
            EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        int len1 = 0, len2 = 0;
        bool ok = ctx != NULL && in_len <= 512 &&
                  EVP_DecryptInit_ex(ctx, pkcs7 ? EVP_aes_256_wrap() : EVP_aes_256_wrap_pad(), NULL,
                                     kek, NULL) == 1 &&
                  EVP_DecryptUpdate(ctx, out, &len1, in, (int)in_len) == 1 &&
                  EVP_DecryptFinal_ex(ctx, out + len1, &len2) == 1;
        EVP_CIPHER_CTX_free(ctx);
        size_t n = (size_t)len1 + (size_t)len2;
        if (ok && pkcs7) {
            unsigned pad = n > 0 ? out[n - 1] : 0;
            ok = pad >= 1 && pad <= 16 && pad <= n;
            n -= ok ? pad : 0;
        }
        if (ok) {
            *out_len = n;
            return true;
        }
    }
    return false;
}

static bool cbc_encrypt(const unsigned char key[32], const unsigned char iv[16],
                        const unsigned char *in, size_t in_len, unsigned char *out, size_t cap)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len1 = 0, len2 = 0;
    bool ok = ctx != NULL && in_len + 16 <= cap &&
              EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, iv) == 1 &&
              EVP_EncryptUpdate(ctx, out, &len1, in, (int)in_len) == 1 &&
              EVP_EncryptFinal_ex(ctx, out + len1, &len2) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

static void *worker(void *arg)
{
    probe *p = ((probe_thread *)arg)->p;
    CK_SLOT_ID slot = p->slots[((probe_thread *)arg)->index % p->slot_count];
    CK_SESSION_HANDLE s;
    if (p->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) != CKR_OK)
        return NULL;
    CK_BBOOL yes = CK_TRUE, on_token = p->token_objects ? CK_TRUE : CK_FALSE;
    CK_ULONG bits = 2048;
    CK_BYTE exponent[] = {1, 0, 1};
    CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0}, sig = {CKM_ECDSA, NULL, 0};
    const unsigned char *params = p256;
    size_t params_len = sizeof p256, data_len = 32;
    if (strncmp(p->key, "rsa", 3) == 0) {
        gen.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        sig.mechanism = CKM_RSA_PKCS;
        bits = (CK_ULONG)atol(p->key + 3);
        data_len = 51; /* DigestInfo + SHA-256 */
    } else if (strcmp(p->key, "p384") == 0) {
        params = p384, params_len = sizeof p384, data_len = 48;
    } else if (strcmp(p->key, "p521") == 0) {
        params = p521, params_len = sizeof p521, data_len = 64;
    } else if (strcmp(p->key, "ed25519") == 0 || strcmp(p->key, "ed448") == 0) {
        gen.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
        sig.mechanism = CKM_EDDSA;
        params = p->key[2] == '2' ? ed25519 : ed448;
        params_len = sizeof ed25519;
        data_len = 300; /* about a CSR's to-be-signed bytes */
    }
    CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &on_token, 1},
                          {CKA_VERIFY, &yes, 1},
                          {CKA_EC_PARAMS, (void *)params, params_len}};
    CK_ATTRIBUTE pub_rsa[] = {{CKA_TOKEN, &on_token, 1},
                              {CKA_VERIFY, &yes, 1},
                              {CKA_MODULUS_BITS, &bits, sizeof bits},
                              {CKA_PUBLIC_EXPONENT, exponent, sizeof exponent}};
    CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &on_token, 1},
                           {CKA_SIGN, &yes, 1},
                           {CKA_SENSITIVE, &yes, 1},
                           {CKA_PRIVATE, &yes, 1}};
    unsigned char data[512], out[1024];
    memset(data, 0x5a, sizeof data);
    long done = 0, failed = 0;
    /* --floor: the run's AES key wrapping key and the CA's key, made before the timing. */
    CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE, ca_pub, ca_priv = CK_INVALID_HANDLE;
    CK_ULONG kek_len = 32;
    CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES;
    /* Imported from known bytes, as the engine imports its KEK: the wrapped key is unwrapped
     * in process, as an export must be before it is written out. */
    unsigned char kek_value[32];
    (void)kek_len;
    if (RAND_bytes(kek_value, sizeof kek_value) != 1)
        return NULL;
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE kek_attrs[] = {{CKA_CLASS, &secret, sizeof secret},
                                {CKA_KEY_TYPE, &aes, sizeof aes},
                                {CKA_TOKEN, &no, 1},
                                {CKA_VALUE, kek_value, sizeof kek_value},
                                {CKA_WRAP, &yes, 1}};
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    /* The CA's key is a token object, as a CA's key is (SoftHSM reads a token object's file
     * state at each use, which a session key would not cost). */
    CK_BBOOL persistent = CK_TRUE;
    CK_ATTRIBUTE ca_pub_attrs[] = {{CKA_TOKEN, &persistent, 1},
                                   {CKA_VERIFY, &yes, 1},
                                   {CKA_EC_PARAMS, (void *)params, params_len}};
    CK_ATTRIBUTE ca_priv_attrs[] = {{CKA_TOKEN, &persistent, 1},
                                    {CKA_SIGN, &yes, 1},
                                    {CKA_SENSITIVE, &yes, 1},
                                    {CKA_PRIVATE, &yes, 1}};
    if (p->floor && (p->f->C_CreateObject(s, kek_attrs, 5, &kek) != CKR_OK ||
                     p->f->C_GenerateKeyPair(s, &gen, ca_pub_attrs, 3, ca_priv_attrs, 4, &ca_pub,
                                             &ca_priv) != CKR_OK)) {
        p->f->C_CloseSession(s);
        return NULL;
    }
    CK_ATTRIBUTE priv_export[] = {{CKA_TOKEN, &on_token, 1},
                                  {CKA_SIGN, &yes, 1},
                                  {CKA_SENSITIVE, &yes, 1},
                                  {CKA_PRIVATE, &yes, 1},
                                  {CKA_EXTRACTABLE, &yes, 1}};
    for (long i = 0; i < p->per_thread; i++) {
        CK_OBJECT_HANDLE hpub, hpriv;
        CK_RV rv = gen.mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN
                       ? p->f->C_GenerateKeyPair(s, &gen, pub_rsa, 4, priv, 4, &hpub, &hpriv)
                   : p->floor
                       ? p->f->C_GenerateKeyPair(s, &gen, pub, 3, priv_export, 5, &hpub, &hpriv)
                       : p->f->C_GenerateKeyPair(s, &gen, pub, 3, priv, 4, &hpub, &hpriv);
        if (rv != CKR_OK) {
            failed++;
            continue;
        }
        CK_ULONG out_len = sizeof out;
        int ok = p->f->C_SignInit(s, &sig, hpriv) == CKR_OK &&
                 p->f->C_Sign(s, data, data_len, out, &out_len) == CKR_OK;
        if (ok && p->floor) {
            unsigned char wrapped[512], dk[32];
            CK_ULONG wrapped_len = sizeof wrapped;
            out_len = sizeof out;
            EVP_MD_CTX *md = EVP_MD_CTX_new();
            ok = p->f->C_WrapKey(s, &kwp, kek, hpriv, wrapped, &wrapped_len) == CKR_OK &&
                 p->f->C_SignInit(s, &sig, ca_priv) == CKR_OK &&
                 p->f->C_Sign(s, data, data_len, out, &out_len) == CKR_OK && md != NULL &&
                 EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, p->pop_key) == 1 &&
                 EVP_DigestVerify(md, p->pop_sig, p->pop_sig_len, p->tbs, sizeof p->tbs) == 1;
            EVP_MD_CTX_free(md);
            ok = ok && kdf_pbkdf2_hmac_sha256("probe-passwd", 12, data, 16, (unsigned)p->iterations,
                                              dk, sizeof dk) == 0;
            /* The key out of its wrapping, then encrypted under the password's key (PBES2's
             * AES-256-CBC), as a password-protected PEM holds it. */
            unsigned char plain[512], sealed[560], iv[16];
            size_t plain_len = 0;
            ok = ok && unwrap_in_process(kek_value, wrapped, wrapped_len, plain, &plain_len) &&
                 RAND_bytes(iv, sizeof iv) == 1 &&
                 cbc_encrypt(dk, iv, plain, plain_len, sealed, sizeof sealed);
            OPENSSL_cleanse(plain, sizeof plain);
        }
        if (!ok)
            failed++;
        else
            done++;
        if (!p->token_objects) {
            p->f->C_DestroyObject(s, hpriv);
            p->f->C_DestroyObject(s, hpub);
        } else { /* kept, as the engine keeps a token key, until the timing is over */
            pthread_mutex_lock(&p->lock);
            int slot_index = ((probe_thread *)arg)->index % p->slot_count;
            p->kept_slot[p->kept_count] = p->kept_slot[p->kept_count + 1] = slot_index;
            p->kept[p->kept_count++] = hpriv;
            p->kept[p->kept_count++] = hpub;
            pthread_mutex_unlock(&p->lock);
        }
    }
    if (p->floor) {
        p->f->C_DestroyObject(s, kek);
        p->f->C_DestroyObject(s, ca_priv);
        p->f->C_DestroyObject(s, ca_pub);
    }
    p->f->C_CloseSession(s);
    pthread_mutex_lock(&p->lock);
    p->done += done;
    p->failed += failed;
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *module = "/usr/lib/softhsm/libsofthsm2.so", *label = "hsmenroll-keys";
    const char *pin_env = "HSMENROLL_PIN";
    probe p = {.key = "p256", .per_thread = 500, .iterations = 2048};
    int threads = 2;
    static const struct option options[] = {
        {"module", required_argument, NULL, 'm'},     {"token", required_argument, NULL, 't'},
        {"pin-env", required_argument, NULL, 'P'},    {"threads", required_argument, NULL, 'n'},
        {"count", required_argument, NULL, 'c'},      {"key", required_argument, NULL, 'k'},
        {"token-objects", no_argument, NULL, 'T'},    {"floor", no_argument, NULL, 'F'},
        {"iterations", required_argument, NULL, 'I'}, {NULL, 0, NULL, 0}};
    long count = 1000;
    int c;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (c) {
        case 'm':
            module = optarg;
            break;
        case 't':
            label = optarg;
            break;
        case 'P':
            pin_env = optarg;
            break;
        case 'n':
            threads = atoi(optarg);
            break;
        case 'c':
            count = atol(optarg);
            break;
        case 'k':
            p.key = optarg;
            break;
        case 'T':
            p.token_objects = 1;
            break;
        case 'F':
            p.floor = 1;
            break;
        case 'I':
            p.iterations = atol(optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: p11probe [--module M] [--token LABEL[,LABEL...]] [--pin-env VAR] "
                    "[--threads N] [--count N] [--key p256|p384|p521|rsa2048|rsa3072|"
                    "rsa4096|ed25519|ed448] [--token-objects] [--floor [--iterations N]]\n");
            return 2;
        }
    }
    const char *pin = getenv(pin_env);
    void *dl = dlopen(module, RTLD_NOW);
    CK_C_GetFunctionList get = dl ? (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList") : NULL;
    CK_C_INITIALIZE_ARGS init = {.flags = CKF_OS_LOCKING_OK};
    if (pin == NULL || get == NULL || get(&p.f) != CKR_OK || p.f->C_Initialize(&init) != CKR_OK) {
        fprintf(stderr, "p11probe: cannot load %s or no PIN in $%s\n", module, pin_env);
        return 2;
    }
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    p.f->C_GetSlotList(CK_TRUE, slots, &n);
    /* Each token of the comma-separated list, logged in (the same user PIN in each). */
    CK_SESSION_HANDLE logins[32];
    char *labels = strdup(label);
    for (char *save = NULL, *one = strtok_r(labels, ",", &save); one && p.slot_count < 32;
         one = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (CK_ULONG i = 0; i < n && !found; i++) {
            CK_TOKEN_INFO info;
            if (p.f->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
                strncmp((char *)info.label, one, strlen(one)) == 0 &&
                (strlen(one) == 32 || info.label[strlen(one)] == ' ')) {
                p.slots[p.slot_count] = slots[i];
                found = 1;
            }
        }
        CK_SESSION_HANDLE *login = &logins[p.slot_count];
        if (!found ||
            p.f->C_OpenSession(p.slots[p.slot_count], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                               NULL, login) ||
            p.f->C_Login(*login, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)) != CKR_OK) {
            fprintf(stderr, "p11probe: no token \"%s\" or login failed\n", one);
            return 2;
        }
        p.slot_count++;
    }
    free(labels);
    if (p.slot_count == 0) {
        fprintf(stderr, "p11probe: no token\n");
        return 2;
    }
    pthread_mutex_init(&p.lock, NULL);
    if (p.floor) { /* the CSR the CA checks: a P-256 signature over about a CSR's bytes */
        memset(p.tbs, 0x3c, sizeof p.tbs);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        p.pop_sig_len = sizeof p.pop_sig;
        if (strcmp(p.key, "p256") != 0 || (p.pop_key = EVP_EC_gen("P-256")) == NULL || md == NULL ||
            EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, p.pop_key) != 1 ||
            EVP_DigestSign(md, p.pop_sig, &p.pop_sig_len, p.tbs, sizeof p.tbs) != 1) {
            fprintf(stderr, "p11probe: --floor is for --key p256\n");
            return 2;
        }
        EVP_MD_CTX_free(md);
    }
    p.per_thread = (count + threads - 1) / threads;
    if (p.token_objects &&
        ((p.kept = calloc((size_t)(p.per_thread * threads * 2), sizeof *p.kept)) == NULL ||
         (p.kept_slot = calloc((size_t)(p.per_thread * threads * 2), sizeof *p.kept_slot)) == NULL))
        return 2;
    pthread_t t[256];
    probe_thread args[256];
    double t0 = now(), cpu0 = cpu_now();
    for (int i = 0; i < threads && i < 256; i++) {
        args[i] = (probe_thread){&p, i};
        pthread_create(&t[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < threads && i < 256; i++)
        pthread_join(t[i], NULL);
    double seconds = now() - t0, cpu = cpu_now() - cpu0;
    printf("{\"probe\":\"%s\",", p.floor ? "floor" : "keygen+sign");
    printf("\"key\":\"%s\",\"storage\":\"%s\",\"threads\":%d,"
           "\"tokens\":%d,\"done\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"per_second\":%.1f,"
           "\"cpu_ms_per_request\":%.4f}\n",
           p.key, p.token_objects ? "token" : "session", threads, p.slot_count, p.done, p.failed,
           seconds, p.done / seconds, p.done > 0 ? cpu * 1000 / (double)p.done : 0.0);
    /* The token keys go, untimed: the probe leaves the tokens as it found them. Handles are
     * valid in any session of this process. */
    for (long k = 0; k < p.kept_count; k++)
        p.f->C_DestroyObject(logins[p.kept_slot[k]], p.kept[k]);
    free(p.kept);
    free(p.kept_slot);
    for (int i = 0; i < p.slot_count; i++) {
        p.f->C_Logout(logins[i]);
        p.f->C_CloseSession(logins[i]);
    }
    p.f->C_Finalize(NULL);
    EVP_PKEY_free(p.pop_key);
    return p.failed ? 1 : 0;
}
