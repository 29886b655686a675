/* The PKCS#11 layer on a real SoftHSM2 token: token initialization and login, key generation for
 * every key type and storage, attributes as promised, signatures verified by OpenSSL, export by
 * C_WrapKey or CKA_VALUE, RFC 7512 URIs, concurrent keygen, and errors that name the CKR. */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/uri.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/hsm_signer.h"
#include "formats/csr.h"
#include "formats/pubkey.h"
#include "formats/sign.h"
#include "hsm/hsm.h"
#include "tests/support.h"

#define PIN    "test-user-pin"
#define SO_PIN "test-so-pin"

static char *tmpdir;
static hsm_module *module;
static hsm_token token;

static const hsm_key_spec all_specs[] = {
    {HSM_KEY_RSA, 2048, HSM_CURVE_NONE},  {HSM_KEY_RSA, 3072, HSM_CURVE_NONE},
    {HSM_KEY_RSA, 4096, HSM_CURVE_NONE},  {HSM_KEY_EC, 0, HSM_CURVE_P256},
    {HSM_KEY_EC, 0, HSM_CURVE_P384},      {HSM_KEY_EC, 0, HSM_CURVE_P521},
    {HSM_KEY_ED25519, 0, HSM_CURVE_NONE}, {HSM_KEY_ED448, 0, HSM_CURVE_NONE},
};
#define NSPECS (sizeof all_specs / sizeof all_specs[0])

static int setup(void)
{
    tmpdir = test_tmpdir("hsmenroll-hsm");
    char conf[512], tokens[512];
    snprintf(tokens, sizeof tokens, "%s/tokens", tmpdir);
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", tmpdir);
    if (test_sh("mkdir -p %s", tokens) != 0)
        return 1;
    char text[1024];
    snprintf(text, sizeof text,
             "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens);
    if (test_write_file(conf, text) != 0)
        return 1;
    setenv("SOFTHSM2_CONF", conf, 1);
    hsm_error err;
    module = hsm_module_load(HSMENROLL_SOFTHSM_MODULE, &err);
    if (module == NULL) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    /* SoftHSM 2.6.1's transient CKR_GENERAL_ERROR under concurrent keygen (the engine sets this
     * from what it sees the module do; this test drives the hsm layer directly). */
    hsm_module_set_quirks(module, HSM_QUIRK_RETRY_GENERAL_ERROR);
    hsm_token_desc desc;
    if (hsm_module_init_token(module, "hsm-test", SO_PIN, PIN, &desc, &err) != 0 ||
        hsm_token_open(module, "hsm-test", PIN, &token, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    return 0;
}

static int teardown(void)
{
    hsm_token_close(&token);
    hsm_module_unload(module);
    test_rmtree(tmpdir);
    free(tmpdir);
    return 0;
}

static const char *spec_name(const hsm_key_spec *s)
{
    static char buf[32];
    snprintf(buf, sizeof buf, "type%d-%u-%d", (int)s->type, s->rsa_bits, (int)s->curve);
    return buf;
}

/* Signs a message through the HSM signer and verifies the signature with OpenSSL. */
static void check_sign_verify(hsm_session *s, const hsm_keypair *pair, EVP_PKEY *pub)
{
    static const unsigned char msg[] = "to be signed by the token";
    signer sg;
    hsm_signer_ctx ctx;
    hsm_signer_init(&sg, &ctx, s, pair->private_key, sig_alg_for_key(pub));
    CU_ASSERT_NOT_EQUAL_FATAL(sg.alg, SIG_NONE);
    unsigned char sig[1024];
    size_t sig_len = sizeof sig;
    enroll_error err;
    CU_ASSERT_EQUAL_FATAL(sg.sign(sg.ctx, sg.alg, msg, sizeof msg, sig, &sig_len, &err), 0);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    CU_ASSERT_EQUAL(EVP_DigestVerifyInit(md, NULL, sig_alg_digest(sg.alg), NULL, pub), 1);
    CU_ASSERT_EQUAL(EVP_DigestVerify(md, sig, sig_len, msg, sizeof msg), 1);
    /* A flipped byte must not verify: the check above is not vacuous. */
    sig[sig_len / 2] ^= 0x01;
    CU_ASSERT_NOT_EQUAL(EVP_DigestVerify(md, sig, sig_len, msg, sizeof msg), 1);
    EVP_MD_CTX_free(md);
}

static void test_token_keys_all_types(void)
{
    hsm_session s;
    hsm_error err;
    CU_ASSERT_EQUAL_FATAL(hsm_session_open(&token, &s, &err), 0);
    for (size_t i = 0; i < NSPECS; i++) {
        hsm_keypair pair;
        const char *label = spec_name(&all_specs[i]);
        int rc = hsm_generate_keypair(&s, &all_specs[i], HSM_STORAGE_TOKEN, label, &pair, &err);
        if (rc != 0)
            fprintf(stderr, "%s: %s\n", label, err.message);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        bool b;
        CU_ASSERT_EQUAL(hsm_get_bool(&s, pair.private_key, CKA_TOKEN, &b, &err), 0);
        CU_ASSERT_TRUE(b);
        CU_ASSERT_EQUAL(hsm_get_bool(&s, pair.private_key, CKA_SENSITIVE, &b, &err), 0);
        CU_ASSERT_TRUE(b);
        CU_ASSERT_EQUAL(hsm_get_bool(&s, pair.private_key, CKA_EXTRACTABLE, &b, &err), 0);
        CU_ASSERT_FALSE(b);
        CU_ASSERT_EQUAL(hsm_get_bool(&s, pair.private_key, CKA_PRIVATE, &b, &err), 0);
        CU_ASSERT_TRUE(b);
        unsigned char *value;
        size_t len;
        CU_ASSERT_EQUAL(hsm_get_attribute(&s, pair.private_key, CKA_LABEL, &value, &len, &err), 0);
        CU_ASSERT_EQUAL(len, strlen(label));
        CU_ASSERT_NSTRING_EQUAL(value, label, strlen(label));
        free(value);
        CU_ASSERT_EQUAL(hsm_get_attribute(&s, pair.public_key, CKA_ID, &value, &len, &err), 0);
        CU_ASSERT_EQUAL(len, HSM_KEY_ID_LEN);
        CU_ASSERT_EQUAL(memcmp(value, pair.id, HSM_KEY_ID_LEN), 0);
        free(value);
        /* The private value can neither be read nor wrapped out. */
        CU_ASSERT_NOT_EQUAL(hsm_get_attribute(&s, pair.private_key, CKA_VALUE, &value, &len, &err),
                            0);
        CU_ASSERT_NOT_EQUAL(
            hsm_get_attribute(&s, pair.private_key, CKA_PRIVATE_EXPONENT, &value, &len, &err), 0);
        enroll_error eerr;
        EVP_PKEY *pub = hsm_keypair_public(&pair, &eerr);
        CU_ASSERT_PTR_NOT_NULL_FATAL(pub);
        if (all_specs[i].type == HSM_KEY_RSA)
            CU_ASSERT_EQUAL(EVP_PKEY_get_bits(pub), (int)all_specs[i].rsa_bits);
        check_sign_verify(&s, &pair, pub);
        /* Found once by id (start-up style search), then gone after destroy. */
        CK_OBJECT_HANDLE found[4];
        CU_ASSERT_EQUAL(
            hsm_find_objects(&s, CKO_PRIVATE_KEY, pair.id, HSM_KEY_ID_LEN, NULL, found, 4, &err),
            1);
        CU_ASSERT_EQUAL(found[0], pair.private_key);
        CU_ASSERT_EQUAL(hsm_destroy_keypair(&s, &pair, &err), 0);
        CU_ASSERT_EQUAL(
            hsm_find_objects(&s, CKO_PRIVATE_KEY, pair.id, HSM_KEY_ID_LEN, NULL, found, 4, &err),
            0);
        EVP_PKEY_free(pub);
        hsm_keypair_release(&pair);
    }
    hsm_session_close(&s);
}

static void test_export_keys_leave_wrapped_or_read(void)
{
    hsm_session s;
    hsm_error err;
    enroll_error eerr;
    CU_ASSERT_EQUAL_FATAL(hsm_session_open(&token, &s, &err), 0);
    unsigned char kek[32];
    for (size_t i = 0; i < sizeof kek; i++)
        kek[i] = (unsigned char)(i * 7 + 3);
    CK_OBJECT_HANDLE wrapping;
    CU_ASSERT_EQUAL_FATAL(hsm_import_wrapping_key(&s, kek, &wrapping, &err), 0);
    for (size_t i = 0; i < NSPECS; i++) {
        if (all_specs[i].type == HSM_KEY_RSA && all_specs[i].rsa_bits == 4096)
            continue; /* covered by the token test; slow */
        bool edwards = all_specs[i].type == HSM_KEY_ED25519 || all_specs[i].type == HSM_KEY_ED448;
        hsm_keypair pair;
        CU_ASSERT_EQUAL_FATAL(
            hsm_generate_keypair(&s, &all_specs[i], HSM_STORAGE_WRAPPABLE, "export", &pair, &err),
            0);
        bool b = true;
        CU_ASSERT_EQUAL(hsm_get_bool(&s, pair.private_key, CKA_TOKEN, &b, &err), 0);
        CU_ASSERT_FALSE(b);
        EVP_PKEY *pub = hsm_keypair_public(&pair, &eerr);
        CU_ASSERT_PTR_NOT_NULL_FATAL(pub);
        unsigned char *blob = NULL;
        size_t blob_len = 0;
        int rc = hsm_wrap_private_key(&s, wrapping, pair.private_key, &blob, &blob_len, &err);
        if (edwards) {
            /* SoftHSM 2.6.1 will not wrap EdDSA keys: the engine then uses READABLE storage. */
            CU_ASSERT_EQUAL(rc, -1);
            CU_ASSERT_EQUAL(err.rv, CKR_KEY_NOT_WRAPPABLE);
            CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "CKR_KEY_NOT_WRAPPABLE"));
            hsm_destroy_keypair(&s, &pair, &err);
            hsm_keypair_release(&pair);
            EVP_PKEY_free(pub);
            CU_ASSERT_EQUAL_FATAL(hsm_generate_keypair(&s, &all_specs[i], HSM_STORAGE_READABLE,
                                                       "export", &pair, &err),
                                  0);
            pub = hsm_keypair_public(&pair, &eerr);
            CU_ASSERT_EQUAL_FATAL(
                hsm_read_private_value(&s, pair.private_key, &blob, &blob_len, &err), 0);
            int nid = all_specs[i].type == HSM_KEY_ED25519 ? NID_ED25519 : NID_ED448;
            EVP_PKEY *priv = privkey_from_eddsa_raw(nid, blob, blob_len, &eerr);
            CU_ASSERT_PTR_NOT_NULL_FATAL(priv);
            CU_ASSERT_EQUAL(EVP_PKEY_eq(priv, pub), 1);
            EVP_PKEY_free(priv);
        } else {
            CU_ASSERT_EQUAL_FATAL(rc, 0);
            EVP_PKEY *priv = privkey_unwrap_pkcs8(kek, blob, blob_len, &eerr);
            CU_ASSERT_PTR_NOT_NULL_FATAL(priv);
            CU_ASSERT_EQUAL(EVP_PKEY_eq(priv, pub), 1);
            /* The bundle's cheaper decoding: the same key, and the same PrivateKeyInfo written
             * out, byte for byte (the EC public key included, as GnuTLS wants it). */
            EVP_PKEY *fast = privkey_unwrap_pkcs8_bundle(kek, blob, blob_len, &eerr);
            CU_ASSERT_PTR_NOT_NULL_FATAL(fast);
            CU_ASSERT_EQUAL(EVP_PKEY_eq(fast, pub), 1);
            PKCS8_PRIV_KEY_INFO *p8a = EVP_PKEY2PKCS8(priv), *p8b = EVP_PKEY2PKCS8(fast);
            unsigned char *der_a = NULL, *der_b = NULL;
            int len_a = p8a ? i2d_PKCS8_PRIV_KEY_INFO(p8a, &der_a) : -1;
            int len_b = p8b ? i2d_PKCS8_PRIV_KEY_INFO(p8b, &der_b) : -1;
            CU_ASSERT_TRUE(len_a > 0 && len_a == len_b && memcmp(der_a, der_b, (size_t)len_a) == 0);
            OPENSSL_clear_free(der_a, len_a > 0 ? (size_t)len_a : 0);
            OPENSSL_clear_free(der_b, len_b > 0 ? (size_t)len_b : 0);
            PKCS8_PRIV_KEY_INFO_free(p8a);
            PKCS8_PRIV_KEY_INFO_free(p8b);
            EVP_PKEY_free(fast);
            EVP_PKEY_free(priv);
            /* A different wrapping key does not unwrap it. */
            unsigned char other[32] = {0};
            EVP_PKEY *wrong = privkey_unwrap_pkcs8(other, blob, blob_len, &eerr);
            CU_ASSERT_PTR_NULL(wrong);
            CU_ASSERT_STRING_EQUAL(eerr.code, "INVALID_KEY");
        }
        free(blob);
        check_sign_verify(&s, &pair, pub);
        CU_ASSERT_EQUAL(hsm_destroy_keypair(&s, &pair, &err), 0);
        EVP_PKEY_free(pub);
        hsm_keypair_release(&pair);
    }
    hsm_destroy_object(&s, wrapping, &err);
    hsm_session_close(&s);
}

static void test_session_objects_vanish_with_session(void)
{
    hsm_session s, other;
    hsm_error err;
    hsm_key_spec p256 = {HSM_KEY_EC, 0, HSM_CURVE_P256};
    CU_ASSERT_EQUAL_FATAL(hsm_session_open(&token, &s, &err), 0);
    hsm_keypair pair;
    CU_ASSERT_EQUAL_FATAL(
        hsm_generate_keypair(&s, &p256, HSM_STORAGE_WRAPPABLE, "ephemeral", &pair, &err), 0);
    CU_ASSERT_EQUAL_FATAL(hsm_session_open(&token, &other, &err), 0);
    CK_OBJECT_HANDLE found[4];
    CU_ASSERT_EQUAL(hsm_find_objects(&other, CKO_PRIVATE_KEY, NULL, 0, "ephemeral", found, 4, &err),
                    1);
    hsm_session_close(&s);
    CU_ASSERT_EQUAL(hsm_find_objects(&other, CKO_PRIVATE_KEY, NULL, 0, "ephemeral", found, 4, &err),
                    0);
    hsm_session_close(&other);
    hsm_keypair_release(&pair);
}

static void test_csr_and_certificate_signed_in_token(void)
{
    hsm_session s;
    hsm_error err;
    enroll_error eerr;
    CU_ASSERT_EQUAL_FATAL(hsm_session_open(&token, &s, &err), 0);
    hsm_key_spec ca_spec = {HSM_KEY_EC, 0, HSM_CURVE_P384};
    hsm_keypair ca;
    CU_ASSERT_EQUAL_FATAL(hsm_generate_keypair(&s, &ca_spec, HSM_STORAGE_TOKEN, "ca", &ca, &err),
                          0);
    EVP_PKEY *ca_pub = hsm_keypair_public(&ca, &eerr);
    for (size_t i = 0; i < NSPECS; i++) {
        if (all_specs[i].type == HSM_KEY_RSA && all_specs[i].rsa_bits > 2048)
            continue;
        hsm_keypair pair;
        CU_ASSERT_EQUAL_FATAL(
            hsm_generate_keypair(&s, &all_specs[i], HSM_STORAGE_WRAPPABLE, "csr", &pair, &err), 0);
        EVP_PKEY *pub = hsm_keypair_public(&pair, &eerr);
        X509_NAME *name = X509_NAME_new();
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)"dev-1", -1,
                                   -1, 0);
        GENERAL_NAMES *sans = sk_GENERAL_NAME_new_null();
        GENERAL_NAME *dns = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_DNS, "dev-1.example", 0);
        sk_GENERAL_NAME_push(sans, dns);
        signer sg;
        hsm_signer_ctx ctx;
        hsm_signer_init(&sg, &ctx, &s, pair.private_key, sig_alg_for_key(pub));
        X509_REQ *req = csr_build(name, sans, pub, &sg, &eerr);
        CU_ASSERT_PTR_NOT_NULL_FATAL(req);
        CU_ASSERT_EQUAL(X509_REQ_verify(req, pub), 1);
        /* The CA's proof-of-possession check agrees with X509_REQ_verify: the right key, a
         * wrong key, a damaged signature. */
        CU_ASSERT_TRUE(csr_signature_verifies(req, pub));
        CU_ASSERT_FALSE(csr_signature_verifies(req, ca_pub));
        const ASN1_BIT_STRING *sig_bits = NULL;
        X509_REQ_get0_signature(req, &sig_bits, NULL);
        unsigned char *last = ((ASN1_BIT_STRING *)sig_bits)->data + sig_bits->length - 2;
        *last ^= 0x01;
        CU_ASSERT_FALSE(csr_signature_verifies(req, pub));
        CU_ASSERT_NOT_EQUAL(X509_REQ_verify(req, pub), 1);
        *last ^= 0x01;
        CU_ASSERT_TRUE(csr_signature_verifies(req, pub));
        ERR_clear_error();
        STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
        CU_ASSERT_EQUAL(sk_X509_EXTENSION_num(exts), 1);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);

        /* A certificate for it, signed by the CA key in the token. */
        X509 *cert = X509_new();
        X509_set_version(cert, X509_VERSION_3);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 42);
        X509_set_subject_name(cert, name);
        X509_set_issuer_name(cert, name);
        X509_gmtime_adj(X509_getm_notBefore(cert), 0);
        X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
        X509_set_pubkey(cert, pub);
        signer ca_signer;
        hsm_signer_ctx ca_ctx;
        hsm_signer_init(&ca_signer, &ca_ctx, &s, ca.private_key, sig_alg_for_key(ca_pub));
        X509 *signed_cert = cert_sign(cert, &ca_signer, &eerr);
        CU_ASSERT_PTR_NOT_NULL_FATAL(signed_cert);
        CU_ASSERT_EQUAL(X509_verify(signed_cert, ca_pub), 1);
        CU_ASSERT_NOT_EQUAL(X509_verify(signed_cert, pub), 1);
        CU_ASSERT_EQUAL(X509_get_signature_nid(signed_cert), NID_ecdsa_with_SHA384);

        X509_free(signed_cert);
        X509_free(cert);
        X509_REQ_free(req);
        GENERAL_NAMES_free(sans);
        X509_NAME_free(name);
        EVP_PKEY_free(pub);
        hsm_destroy_keypair(&s, &pair, &err);
        hsm_keypair_release(&pair);
    }
    EVP_PKEY_free(ca_pub);
    hsm_destroy_keypair(&s, &ca, &err);
    hsm_keypair_release(&ca);
    hsm_session_close(&s);
}

static void test_object_uri_round_trips(void)
{
    unsigned char id[HSM_KEY_ID_LEN];
    for (size_t i = 0; i < sizeof id; i++)
        id[i] = (unsigned char)(0xa0 + i);
    char *text = hsm_object_uri(&token.desc, id, sizeof id, "dev 1;x", CKO_PRIVATE_KEY);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(strncmp(text, "pkcs11:", 7), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "token=hsm-test"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "type=private"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "id=%A0%A1%A2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "object=dev%201%3Bx"));
    P11KitUri *uri = p11_kit_uri_new();
    CU_ASSERT_EQUAL_FATAL(p11_kit_uri_parse(text, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, uri),
                          P11_KIT_URI_OK);
    CK_ATTRIBUTE *a = p11_kit_uri_get_attribute(uri, CKA_ID);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_EQUAL(a->ulValueLen, sizeof id);
    CU_ASSERT_EQUAL(memcmp(a->pValue, id, sizeof id), 0);
    a = p11_kit_uri_get_attribute(uri, CKA_LABEL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_EQUAL(a->ulValueLen, 7);
    CU_ASSERT_EQUAL(memcmp(a->pValue, "dev 1;x", 7), 0);
    p11_kit_uri_free(uri);
    free(text);
}

static void test_wrong_pin_names_the_ckr(void)
{
    hsm_token other;
    hsm_error err;
    hsm_token_close(&token); /* log out, so that the login is really attempted */
    CU_ASSERT_EQUAL(hsm_token_open(module, "hsm-test", "not-the-pin", &other, &err), -1);
    CU_ASSERT_EQUAL(err.rv, CKR_PIN_INCORRECT);
    CU_ASSERT_STRING_EQUAL(err.function, "C_Login");
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "CKR_PIN_INCORRECT"));
    CU_ASSERT_PTR_NULL(strstr(err.message, "not-the-pin"));
    CU_ASSERT_EQUAL(hsm_token_open(module, "no-such-token", PIN, &other, &err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "no-such-token"));
    CU_ASSERT_EQUAL_FATAL(hsm_token_open(module, "hsm-test", PIN, &token, &err), 0);
}

static void test_missing_module_is_a_clear_error(void)
{
    hsm_error err;
    CU_ASSERT_PTR_NULL(hsm_module_load("/nonexistent/libpkcs11.so", &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "/nonexistent/libpkcs11.so"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "No such file"));
    CU_ASSERT_PTR_NULL(hsm_module_load("/usr/lib/x86_64-linux-gnu/libz.so.1", &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "not a PKCS#11 module"));
}

static void test_bad_spec_and_duplicate_token(void)
{
    hsm_session s;
    hsm_error err;
    hsm_keypair pair;
    CU_ASSERT_EQUAL_FATAL(hsm_session_open(&token, &s, &err), 0);
    hsm_key_spec rsa1024 = {HSM_KEY_RSA, 1024, HSM_CURVE_NONE};
    CU_ASSERT_EQUAL(hsm_generate_keypair(&s, &rsa1024, HSM_STORAGE_TOKEN, "x", &pair, &err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "1024"));
    hsm_session_close(&s);
    hsm_token_desc desc;
    CU_ASSERT_EQUAL(hsm_module_init_token(module, "hsm-test", SO_PIN, PIN, &desc, &err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "already exists"));
}

enum { THREADS = 4, KEYS_PER_THREAD = 12 };
static int thread_failures;
static int thread_attempts;
static pthread_mutex_t thread_lock = PTHREAD_MUTEX_INITIALIZER;

static void *keygen_thread(void *arg)
{
    (void)arg;
    hsm_session s;
    hsm_error err;
    hsm_key_spec specs[] = {{HSM_KEY_EC, 0, HSM_CURVE_P256}, {HSM_KEY_ED25519, 0, HSM_CURVE_NONE}};
    int failures = 0, attempts = 0;
    if (hsm_session_open(&token, &s, &err) != 0)
        failures = KEYS_PER_THREAD;
    for (int i = 0; i < KEYS_PER_THREAD && failures == 0; i++) {
        hsm_keypair pair;
        if (hsm_generate_keypair(&s, &specs[i % 2], HSM_STORAGE_TOKEN, "concurrent", &pair, &err) !=
            0) {
            fprintf(stderr, "concurrent keygen: %s\n", err.message);
            failures++;
            continue;
        }
        attempts += pair.attempts;
        hsm_destroy_keypair(&s, &pair, &err);
        hsm_keypair_release(&pair);
    }
    hsm_session_close(&s);
    pthread_mutex_lock(&thread_lock);
    thread_failures += failures;
    thread_attempts += attempts;
    pthread_mutex_unlock(&thread_lock);
    return NULL;
}

static void test_concurrent_token_keygen(void)
{
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&threads[i], NULL, keygen_thread, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    CU_ASSERT_EQUAL(thread_failures, 0);
    CU_ASSERT_TRUE(thread_attempts >= THREADS * KEYS_PER_THREAD);
    hsm_session s;
    hsm_error err;
    CU_ASSERT_EQUAL_FATAL(hsm_session_open(&token, &s, &err), 0);
    CK_OBJECT_HANDLE found[8];
    CU_ASSERT_EQUAL(hsm_find_objects(&s, CKO_PRIVATE_KEY, NULL, 0, "concurrent", found, 8, &err),
                    0);
    hsm_session_close(&s);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_token_keys_all_types),
        TEST_CASE(test_export_keys_leave_wrapped_or_read),
        TEST_CASE(test_session_objects_vanish_with_session),
        TEST_CASE(test_csr_and_certificate_signed_in_token),
        TEST_CASE(test_object_uri_round_trips),
        TEST_CASE(test_wrong_pin_names_the_ckr),
        TEST_CASE(test_missing_module_is_a_clear_error),
        TEST_CASE(test_bad_spec_and_duplicate_token),
        TEST_CASE(test_concurrent_token_keygen),
        TEST_END,
    };
    return test_main("hsm", cases, setup, teardown);
}
