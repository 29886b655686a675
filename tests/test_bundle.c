/* Tests of formats/ bundles: chain ordering, PEM with subject headers and encrypted key, DER,
 * PKCS#8 and PKCS#12, the last checked with third-party readers (openssl, GnuTLS certtool, Java
 * keytool) on a root -> intermediate -> leaf chain made in memory, for each leaf key type. */
#include "formats/bundle.h"
#include "formats/dn.h"
#include "formats/kdf.h"
#include "formats/pubkey.h"
#include "support.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PASSWORD      "Correct horse 42!"
#define FRIENDLY_NAME "enrolled leaf"
#define CSP_NAME      "Microsoft Enhanced RSA and AES Cryptographic Provider"

typedef struct key_type {
    const char *label; /* also the leaf's CN suffix and the file names */
    const char *alg;
    const char *param; /* curve name, or NULL */
    size_t bits;       /* RSA only */
} key_type;

static const key_type key_types[] = {
    {"rsa2048", "RSA", NULL, 2048}, {"p256", "EC", "P-256", 0},      {"p384", "EC", "P-384", 0},
    {"p521", "EC", "P-521", 0},     {"ed25519", "ED25519", NULL, 0}, {"ed448", "ED448", NULL, 0},
};
#define N_KEY_TYPES (sizeof key_types / sizeof key_types[0])

/* The fixture, built on first use and freed at exit (before OpenSSL's own clean-up, which was
 * registered earlier). */
static EVP_PKEY *root_key, *inter_key, *other_key;
static X509 *root_cert, *inter_cert, *other_root, *fake_root;
static EVP_PKEY *leaf_keys[N_KEY_TYPES];
static X509 *leaf_certs[N_KEY_TYPES];

static EVP_PKEY *make_key(const key_type *t)
{
    if (strcmp(t->alg, "RSA") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", t->bits);
    if (strcmp(t->alg, "EC") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", t->param);
    return EVP_PKEY_Q_keygen(NULL, NULL, t->alg);
}

static int add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (ext == NULL)
        return 0;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* A v3 certificate for key, CN=cn,O=hsmenroll test, signed by issuer_key (issuer NULL: self-signed
 * by key). CAs get basicConstraints CA:TRUE and keyCertSign. */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, bool ca)
{
    static long serial = 1000;
    X509 *cert = X509_new();
    X509_NAME *name = X509_NAME_new();
    int ok = cert != NULL && name != NULL && X509_set_version(cert, X509_VERSION_3) &&
             ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++) &&
             X509_gmtime_adj(X509_getm_notBefore(cert), -3600) &&
             X509_gmtime_adj(X509_getm_notAfter(cert), 86400L * 30) &&
             X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                        (const unsigned char *)"hsmenroll test", -1, -1, 0) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                        -1, 0) &&
             X509_set_subject_name(cert, name) &&
             X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name) &&
             X509_set_pubkey(cert, key);
    if (ok) {
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
        ok = add_ext(cert, &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE") &&
             add_ext(cert, &ctx, NID_key_usage,
                     ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature") &&
             add_ext(cert, &ctx, NID_subject_key_identifier, "hash") &&
             add_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always");
    }
    ok = ok && X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
    X509_NAME_free(name);
    if (!ok) {
        ERR_print_errors_fp(stderr);
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static void free_fixture(void)
{
    for (size_t i = 0; i < N_KEY_TYPES; i++) {
        X509_free(leaf_certs[i]);
        EVP_PKEY_free(leaf_keys[i]);
    }
    X509_free(root_cert);
    X509_free(inter_cert);
    X509_free(other_root);
    X509_free(fake_root);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(inter_key);
    EVP_PKEY_free(other_key);
}

/* Root (EC P-256, self-signed CA) -> intermediate (EC P-256 CA) -> one leaf per key type; plus an
 * unrelated root, and a "fake root" with the real root's name but another key. */
static bool fixture(void)
{
    static int state; /* 0 not built, 1 built, -1 failed */
    if (state != 0)
        return state > 0;
    state = -1;
    const key_type ec = {"ec", "EC", "P-256", 0};
    root_key = make_key(&ec);
    inter_key = make_key(&ec);
    other_key = make_key(&ec);
    atexit(free_fixture);
    if (root_key == NULL || inter_key == NULL || other_key == NULL)
        return false;
    root_cert = make_cert("Test Root CA", root_key, NULL, NULL, true);
    inter_cert = make_cert("Test Issuing CA", inter_key, root_cert, root_key, true);
    other_root = make_cert("Unrelated Root CA", other_key, NULL, NULL, true);
    fake_root = make_cert("Test Root CA", other_key, NULL, NULL, true);
    if (root_cert == NULL || inter_cert == NULL || other_root == NULL || fake_root == NULL)
        return false;
    for (size_t i = 0; i < N_KEY_TYPES; i++) {
        char cn[64];
        snprintf(cn, sizeof cn, "leaf-%s.example.com", key_types[i].label);
        leaf_keys[i] = make_key(&key_types[i]);
        if (leaf_keys[i] == NULL)
            return false;
        leaf_certs[i] = make_cert(cn, leaf_keys[i], inter_cert, inter_key, false);
        if (leaf_certs[i] == NULL)
            return false;
    }
    state = 1;
    return true;
}

static STACK_OF(X509) * stack_of(X509 *a, X509 *b, X509 *c, X509 *d)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *all[] = {a, b, c, d};
    for (size_t i = 0; sk != NULL && i < 4; i++)
        if (all[i] != NULL)
            sk_X509_push(sk, all[i]); /* borrowed: freed with sk_X509_free */
    return sk;
}

/* True when sk holds exactly the given certificates (the same objects), in that order. */
static bool stack_is(STACK_OF(X509) * sk, X509 *a, X509 *b, X509 *c, X509 *d, X509 *e)
{
    X509 *want[] = {a, b, c, d, e};
    int n = 0;
    while (n < 5 && want[n] != NULL)
        n++;
    if (sk == NULL || sk_X509_num(sk) != n)
        return false;
    for (int i = 0; i < n; i++)
        if (sk_X509_value(sk, i) != want[i])
            return false;
    return true;
}

static char *mem_string(BIO *mem)
{
    char *data = NULL;
    long len = BIO_get_mem_data(mem, &data);
    char *s = malloc((size_t)len + 1);
    if (s != NULL) {
        memcpy(s, data, (size_t)len);
        s[len] = '\0';
    }
    return s;
}

/* Writes a memory BIO's content to dir/name; returns the malloc'd path. */
static char *save(const char *dir, const char *name, BIO *mem)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", dir, name) < 0)
        return NULL;
    char *data = NULL;
    long len = BIO_get_mem_data(mem, &data);
    FILE *f = fopen(path, "wb");
    bool ok = f != NULL && fwrite(data, 1, (size_t)len, f) == (size_t)len;
    if (f != NULL && fclose(f) != 0)
        ok = false;
    if (!ok) {
        free(path);
        return NULL;
    }
    return path;
}

/* The leaf k's public key as PEM (malloc'd), to compare with what a tool extracted. */
static char *leaf_pubkey_pem(size_t k)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (mem != NULL && PEM_write_bio_PUBKEY(mem, X509_get0_pubkey(leaf_certs[k])))
        s = mem_string(mem);
    BIO_free(mem);
    return s;
}

/* ---- providers ---------------------------------------------------------------------------- */

/* Must run first: in a child that has never loaded the legacy provider, point OPENSSL_MODULES at
 * an empty place; bundle_crypto_init must say -1 and a legacy PFX must fail with
 * LEGACY_UNAVAILABLE while a modern one still works. */
static void test_legacy_unavailable(void)
{
    CU_ASSERT_FATAL(fixture());
    CU_ASSERT_FATAL(!OSSL_PROVIDER_available(NULL, "legacy"));
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        setenv("OPENSSL_MODULES", "/nonexistent-ossl-modules", 1);
        int code = 0;
        if (bundle_crypto_init() != -1)
            code |= 1;
        STACK_OF(X509) *certs = chain_arrange(leaf_certs[1], NULL, false, CHAIN_END_ENTITY_FIRST);
        pfx_options opt = {.password = PASSWORD, .legacy = true};
        enroll_error err;
        enroll_error_clear(&err);
        BIO *mem = BIO_new(BIO_s_mem());
        if (pfx_write(mem, leaf_keys[1], certs, &opt, &err) != -1 ||
            strcmp(err.code, "LEGACY_UNAVAILABLE") != 0 || BIO_ctrl_pending(mem) != 0)
            code |= 2;
        opt.legacy = false;
        if (pfx_write(mem, leaf_keys[1], certs, &opt, &err) != 0 || BIO_ctrl_pending(mem) == 0)
            code |= 4;
        _exit(code);
    }
    int status = 0;
    CU_ASSERT_FATAL(waitpid(pid, &status, 0) == pid);
    CU_ASSERT(WIFEXITED(status));
    CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
}

static void test_crypto_init(void)
{
    CU_ASSERT_EQUAL(bundle_crypto_init(), 0);
    CU_ASSERT_EQUAL(bundle_crypto_init(), 0);
    CU_ASSERT(OSSL_PROVIDER_available(NULL, "legacy"));
    CU_ASSERT(OSSL_PROVIDER_available(NULL, "default"));
    /* The legacy provider is usable: RC2-40 can be fetched. */
    EVP_CIPHER *rc2 = EVP_CIPHER_fetch(NULL, "RC2-40-CBC", NULL);
    CU_ASSERT_PTR_NOT_NULL(rc2);
    EVP_CIPHER_free(rc2);
}

/* ---- chain_arrange ------------------------------------------------------------------------ */

static void test_chain_shuffled_with_strays(void)
{
    CU_ASSERT_FATAL(fixture());
    X509 *leaf = leaf_certs[0];
    /* Root before the intermediate, an unrelated root in between, and a certificate with the
     * root's name but another key before the real root: only X509_check_issued tells them
     * apart. */
    STACK_OF(X509) *chain = stack_of(other_root, fake_root, root_cert, inter_cert);
    CU_ASSERT_FATAL(chain != NULL);

    STACK_OF(X509) *ee = chain_arrange(leaf, chain, true, CHAIN_END_ENTITY_FIRST);
    CU_ASSERT(stack_is(ee, leaf, inter_cert, root_cert, other_root, fake_root));
    STACK_OF(X509) *rf = chain_arrange(leaf, chain, true, CHAIN_ROOT_FIRST);
    CU_ASSERT(stack_is(rf, fake_root, other_root, root_cert, inter_cert, leaf));

    /* Inputs untouched. */
    CU_ASSERT(stack_is(chain, other_root, fake_root, root_cert, inter_cert, NULL));
    sk_X509_pop_free(ee, X509_free);
    sk_X509_pop_free(rf, X509_free);

    /* Other given orders give the same path. */
    sk_X509_free(chain);
    chain = stack_of(inter_cert, root_cert, NULL, NULL);
    ee = chain_arrange(leaf, chain, true, CHAIN_END_ENTITY_FIRST);
    CU_ASSERT(stack_is(ee, leaf, inter_cert, root_cert, NULL, NULL));
    sk_X509_pop_free(ee, X509_free);
    sk_X509_free(chain);
}

static void test_chain_references(void)
{
    CU_ASSERT_FATAL(fixture());
    /* The caller's own objects, freed right after the call: the result must hold references of
     * its own (without them ASan reports a use after free below). */
    X509 *leaf = X509_dup(leaf_certs[2]);
    X509 *inter = X509_dup(inter_cert);
    X509 *root = X509_dup(root_cert);
    CU_ASSERT_FATAL(leaf != NULL && inter != NULL && root != NULL);
    STACK_OF(X509) *chain = stack_of(root, inter, NULL, NULL);
    STACK_OF(X509) *out = chain_arrange(leaf, chain, true, CHAIN_END_ENTITY_FIRST);
    CU_ASSERT(stack_is(out, leaf, inter, root, NULL, NULL));
    X509_free(leaf);
    X509_free(inter);
    X509_free(root);
    sk_X509_free(chain);
    CU_ASSERT_FATAL(out != NULL && sk_X509_num(out) == 3);
    CU_ASSERT_EQUAL(X509_cmp(sk_X509_value(out, 0), leaf_certs[2]), 0);
    CU_ASSERT_EQUAL(X509_cmp(sk_X509_value(out, 1), inter_cert), 0);
    CU_ASSERT_EQUAL(X509_cmp(sk_X509_value(out, 2), root_cert), 0);
    sk_X509_pop_free(out, X509_free);
}

static void test_chain_leaf_only(void)
{
    CU_ASSERT_FATAL(fixture());
    X509 *leaf = leaf_certs[1];
    STACK_OF(X509) *chain = stack_of(root_cert, inter_cert, NULL, NULL);
    for (int order = CHAIN_END_ENTITY_FIRST; order <= CHAIN_ROOT_FIRST; order++) {
        STACK_OF(X509) *out = chain_arrange(leaf, chain, false, (chain_order)order);
        CU_ASSERT(stack_is(out, leaf, NULL, NULL, NULL, NULL));
        sk_X509_pop_free(out, X509_free);
        /* No chain at all. */
        out = chain_arrange(leaf, NULL, true, (chain_order)order);
        CU_ASSERT(stack_is(out, leaf, NULL, NULL, NULL, NULL));
        sk_X509_pop_free(out, X509_free);
    }
    sk_X509_free(chain);
    CU_ASSERT_PTR_NULL(chain_arrange(NULL, NULL, true, CHAIN_END_ENTITY_FIRST));
}

static void test_chain_partial_and_duplicates(void)
{
    CU_ASSERT_FATAL(fixture());
    X509 *leaf = leaf_certs[3];
    /* No root: the path stops at the intermediate; the stray follows. */
    STACK_OF(X509) *chain = stack_of(other_root, inter_cert, NULL, NULL);
    STACK_OF(X509) *out = chain_arrange(leaf, chain, true, CHAIN_END_ENTITY_FIRST);
    CU_ASSERT(stack_is(out, leaf, inter_cert, other_root, NULL, NULL));
    sk_X509_pop_free(out, X509_free);
    sk_X509_free(chain);

    /* A CA that repeats the leaf and the intermediate: each appears once. */
    chain = stack_of(leaf, inter_cert, root_cert, inter_cert);
    out = chain_arrange(leaf, chain, true, CHAIN_ROOT_FIRST);
    CU_ASSERT(stack_is(out, root_cert, inter_cert, leaf, NULL, NULL));
    sk_X509_pop_free(out, X509_free);
    sk_X509_free(chain);

    /* Nothing issues the leaf: all of chain are strays, in given order. */
    chain = stack_of(root_cert, other_root, NULL, NULL);
    out = chain_arrange(leaf, chain, true, CHAIN_END_ENTITY_FIRST);
    CU_ASSERT(stack_is(out, leaf, root_cert, other_root, NULL, NULL));
    sk_X509_pop_free(out, X509_free);
    sk_X509_free(chain);

    /* A self-signed "leaf" is its own root: the path is empty. */
    chain = stack_of(inter_cert, NULL, NULL, NULL);
    out = chain_arrange(root_cert, chain, true, CHAIN_END_ENTITY_FIRST);
    CU_ASSERT(stack_is(out, root_cert, inter_cert, NULL, NULL, NULL));
    sk_X509_pop_free(out, X509_free);
    sk_X509_free(chain);
}

/* ---- PEM ---------------------------------------------------------------------------------- */

static char *pem_of(STACK_OF(X509) * certs, const pem_bundle_options *opt, enroll_error *err)
{
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem == NULL)
        return NULL;
    char *s = pem_bundle_write(mem, certs, opt, err) == 0 ? mem_string(mem) : NULL;
    BIO_free(mem);
    return s;
}

/* Reads the certificates of a PEM text back, in order, and compares them with want. */
static bool pem_certs_are(const char *pem, STACK_OF(X509) * want)
{
    BIO *in = BIO_new_mem_buf(pem, -1);
    bool ok = in != NULL;
    for (int i = 0; ok && i < sk_X509_num(want); i++) {
        X509 *c = PEM_read_bio_X509(in, NULL, NULL, NULL);
        ok = c != NULL && X509_cmp(c, sk_X509_value(want, i)) == 0;
        X509_free(c);
    }
    if (ok) { /* and no more certificates */
        X509 *extra = PEM_read_bio_X509(in, NULL, NULL, NULL);
        ok = extra == NULL;
        X509_free(extra);
    }
    ERR_clear_error();
    BIO_free(in);
    return ok;
}

static void check_subject_headers(STACK_OF(X509) * certs)
{
    pem_bundle_options opt = {.include_subject_header = true};
    enroll_error err;
    enroll_error_clear(&err);
    char *pem = pem_of(certs, &opt, &err);
    CU_ASSERT_FATAL(pem != NULL);
    int n = sk_X509_num(certs);
    CU_ASSERT_EQUAL(test_count(pem, "subject="), n);
    CU_ASSERT_EQUAL(test_count(pem, "-----BEGIN CERTIFICATE-----"), n);
    CU_ASSERT_EQUAL(test_count(pem, "PRIVATE KEY"), 0);
    /* Each header is a whole line, right above its certificate, in the certificates' order. */
    CU_ASSERT(strncmp(pem, "subject=", 8) == 0);
    const char *p = pem;
    for (int i = 0; i < n; i++) {
        char *dn = dn_format(X509_get_subject_name(sk_X509_value(certs, i)));
        CU_ASSERT_FATAL(dn != NULL);
        char *line = NULL;
        CU_ASSERT_FATAL(asprintf(&line, "subject=%s\n-----BEGIN CERTIFICATE-----\n", dn) > 0);
        const char *at = strstr(p, line);
        CU_ASSERT(at != NULL && (at == pem || at[-1] == '\n'));
        if (at != NULL)
            p = at + strlen(line);
        free(line);
        free(dn);
    }
    CU_ASSERT(pem_certs_are(pem, certs));
    free(pem);
}

static void test_pem_subject_headers(void)
{
    CU_ASSERT_FATAL(fixture());
    STACK_OF(X509) *chain = stack_of(root_cert, other_root, inter_cert, NULL);
    for (int order = CHAIN_END_ENTITY_FIRST; order <= CHAIN_ROOT_FIRST; order++) {
        STACK_OF(X509) *certs = chain_arrange(leaf_certs[0], chain, true, (chain_order)order);
        CU_ASSERT_FATAL(certs != NULL);
        check_subject_headers(certs);
        sk_X509_pop_free(certs, X509_free);
    }
    sk_X509_free(chain);

    /* The header text itself, as dn_format prints it (CN first). */
    STACK_OF(X509) *one = stack_of(inter_cert, NULL, NULL, NULL);
    pem_bundle_options opt = {.include_subject_header = true};
    char *pem = pem_of(one, &opt, NULL);
    CU_ASSERT_FATAL(pem != NULL);
    CU_ASSERT(strncmp(pem, "subject=CN=Test Issuing CA,O=hsmenroll test\n-----BEGIN CERTIFICATE",
                      66) == 0);
    free(pem);
    sk_X509_free(one);
}

static void test_pem_without_headers(void)
{
    CU_ASSERT_FATAL(fixture());
    STACK_OF(X509) *chain = stack_of(root_cert, inter_cert, NULL, NULL);
    STACK_OF(X509) *certs = chain_arrange(leaf_certs[4], chain, true, CHAIN_ROOT_FIRST);
    pem_bundle_options opt = {.include_subject_header = false};
    char *pem = pem_of(certs, &opt, NULL);
    CU_ASSERT_FATAL(pem != NULL);
    CU_ASSERT_EQUAL(test_count(pem, "subject="), 0);
    CU_ASSERT_EQUAL(test_count(pem, "-----BEGIN CERTIFICATE-----"), 3);
    CU_ASSERT(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
    CU_ASSERT(pem_certs_are(pem, certs));
    free(pem);
    /* NULL options: the same. */
    pem = pem_of(certs, NULL, NULL);
    CU_ASSERT(pem != NULL && test_count(pem, "subject=") == 0 && pem_certs_are(pem, certs));
    free(pem);
    sk_X509_pop_free(certs, X509_free);
    sk_X509_free(chain);
}

/* The encryption of an EncryptedPrivateKeyInfo is PBES2, PBKDF2 with hmacWithSHA256 and the
 * given iteration count, AES-256-CBC. */
static void check_pbes2(const X509_SIG *p8, long iterations)
{
    const X509_ALGOR *alg = NULL;
    X509_SIG_get0(p8, &alg, NULL);
    CU_ASSERT_FATAL(alg != NULL);
    CU_ASSERT_EQUAL(OBJ_obj2nid(alg->algorithm), NID_pbes2);
    PBE2PARAM *p2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), alg->parameter);
    CU_ASSERT_FATAL(p2 != NULL);
    CU_ASSERT_EQUAL(OBJ_obj2nid(p2->encryption->algorithm), NID_aes_256_cbc);
    CU_ASSERT_EQUAL(OBJ_obj2nid(p2->keyfunc->algorithm), NID_id_pbkdf2);
    PBKDF2PARAM *kdf =
        ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM), p2->keyfunc->parameter);
    CU_ASSERT(kdf != NULL);
    if (kdf != NULL) {
        CU_ASSERT_EQUAL(ASN1_INTEGER_get(kdf->iter), iterations);
        CU_ASSERT(kdf->prf != NULL && OBJ_obj2nid(kdf->prf->algorithm) == NID_hmacWithSHA256);
        CU_ASSERT(kdf->salt != NULL && kdf->salt->type == V_ASN1_OCTET_STRING &&
                  kdf->salt->value.octet_string->length >= 8);
    }
    PBKDF2PARAM_free(kdf);
    PBE2PARAM_free(p2);
}

static void test_pem_with_key(void)
{
    CU_ASSERT_FATAL(fixture());
    STACK_OF(X509) *chain = stack_of(inter_cert, root_cert, NULL, NULL);
    for (size_t k = 0; k < N_KEY_TYPES; k++) {
        STACK_OF(X509) *certs = chain_arrange(leaf_certs[k], chain, true, CHAIN_END_ENTITY_FIRST);
        pem_bundle_options opt = {.include_subject_header = true,
                                  .key = leaf_keys[k],
                                  .password = PASSWORD,
                                  .pbkdf2_iterations = k == 0 ? 10000 : 0};
        enroll_error err;
        enroll_error_clear(&err);
        char *pem = pem_of(certs, &opt, &err);
        CU_ASSERT_FATAL(pem != NULL);
        CU_ASSERT_EQUAL(test_count(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"), 1);
        CU_ASSERT_EQUAL(test_count(pem, "-----BEGIN PRIVATE KEY-----"), 0);
        CU_ASSERT_EQUAL(test_count(pem, "subject="), 3);
        CU_ASSERT(pem_certs_are(pem, certs));
        /* The key comes after the last certificate. */
        const char *key_at = strstr(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----");
        const char *last_cert = pem;
        for (const char *c = pem; (c = strstr(c, "-----END CERTIFICATE-----")) != NULL; c++)
            last_cert = c;
        CU_ASSERT(key_at != NULL && key_at > last_cert);
        if (key_at == NULL) {
            free(pem);
            sk_X509_pop_free(certs, X509_free);
            continue;
        }

        /* Decrypts with the password, to the same key; not with another one. */
        BIO *in = BIO_new_mem_buf(key_at, -1);
        EVP_PKEY *back = PEM_read_bio_PrivateKey(in, NULL, NULL, (void *)PASSWORD);
        CU_ASSERT(back != NULL && EVP_PKEY_eq(back, leaf_keys[k]) == 1);
        EVP_PKEY_free(back);
        BIO_free(in);
        in = BIO_new_mem_buf(key_at, -1);
        back = PEM_read_bio_PrivateKey(in, NULL, NULL, (void *)"wrong password");
        CU_ASSERT_PTR_NULL(back);
        EVP_PKEY_free(back);
        BIO_free(in);
        ERR_clear_error();

        /* PBES2 parameters, and the iteration count asked for (0: 2048). */
        in = BIO_new_mem_buf(key_at, -1);
        X509_SIG *p8 = PEM_read_bio_PKCS8(in, NULL, NULL, NULL);
        CU_ASSERT_FATAL(p8 != NULL);
        check_pbes2(p8, k == 0 ? 10000 : 2048);
        X509_SIG_free(p8);
        BIO_free(in);
        free(pem);
        sk_X509_pop_free(certs, X509_free);
    }
    sk_X509_free(chain);
}

static void test_pem_key_third_party(void)
{
    CU_ASSERT_FATAL(fixture());
    char *dir = test_tmpdir("test_bundle");
    CU_ASSERT_FATAL(dir != NULL);
    char *passfile = NULL;
    CU_ASSERT_FATAL(asprintf(&passfile, "%s/pass", dir) > 0);
    CU_ASSERT_FATAL(test_write_file(passfile, PASSWORD) == 0);
    for (size_t k = 0; k < N_KEY_TYPES; k++) {
        STACK_OF(X509) *certs = chain_arrange(leaf_certs[k], NULL, false, CHAIN_END_ENTITY_FIRST);
        pem_bundle_options opt = {.key = leaf_keys[k], .password = PASSWORD};
        BIO *mem = BIO_new(BIO_s_mem());
        CU_ASSERT_FATAL(pem_bundle_write(mem, certs, &opt, NULL) == 0);
        char *path = save(dir, "bundle.pem", mem);
        CU_ASSERT_FATAL(path != NULL);
        /* openssl and GnuTLS take the key out of the bundle; it is the certificate's. */
        char *want = leaf_pubkey_pem(k);
        CU_ASSERT_FATAL(want != NULL);
        int status = -1;
        char *out = test_sh_output(&status, "openssl pkey -in '%s' -passin 'file:%s' -pubout 2>&1",
                                   path, passfile);
        CU_ASSERT_EQUAL(status, 0);
        CU_ASSERT(out != NULL && strstr(out, want) != NULL);
        free(out);
        out = test_sh_output(&status,
                             "certtool --pubkey-info --load-privkey '%s' --password \"$(cat "
                             "'%s')\" 2>&1",
                             path, passfile);
        CU_ASSERT_EQUAL(status, 0);
        CU_ASSERT(out != NULL && strstr(out, want) != NULL);
        free(out);
        free(want);
        CU_ASSERT_NOT_EQUAL(
            test_sh("openssl pkey -in '%s' -passin pass:nope >/dev/null 2>&1", path), 0);
        CU_ASSERT_NOT_EQUAL(test_sh("certtool --pubkey-info --load-privkey '%s' --password nope "
                                    ">/dev/null 2>&1",
                                    path),
                            0);
        free(path);
        BIO_free(mem);
        sk_X509_pop_free(certs, X509_free);
    }
    free(passfile);
    test_rmtree(dir);
    free(dir);
}

/* The certificate's public key alone (re-read: X509_get_pubkey would hand back the very key
 * object the certificate was made from, private part included). */
static EVP_PKEY *public_only(X509 *cert)
{
    unsigned char *der = NULL;
    int der_len = i2d_PUBKEY(X509_get0_pubkey(cert), &der);
    if (der_len <= 0)
        return NULL;
    const unsigned char *p = der;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, der_len);
    OPENSSL_free(der);
    return pub;
}

static void test_pem_key_errors(void)
{
    CU_ASSERT_FATAL(fixture());
    STACK_OF(X509) *certs = chain_arrange(leaf_certs[1], NULL, false, CHAIN_END_ENTITY_FIRST);
    BIO *mem = BIO_new(BIO_s_mem());
    enroll_error err;

    /* No password, an empty one, a negative count: BUNDLE_FAILED and nothing written. */
    pem_bundle_options bad[] = {
        {.key = leaf_keys[1], .password = NULL},
        {.key = leaf_keys[1], .password = ""},
        {.key = leaf_keys[1], .password = PASSWORD, .pbkdf2_iterations = -1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enroll_error_clear(&err);
        CU_ASSERT_EQUAL(pem_bundle_write(mem, certs, &bad[i], &err), -1);
        CU_ASSERT_STRING_EQUAL(err.code, "BUNDLE_FAILED");
        CU_ASSERT_EQUAL(BIO_ctrl_pending(mem), 0);
    }

    /* A public key only: it cannot be exported. */
    EVP_PKEY *pub = public_only(leaf_certs[1]);
    CU_ASSERT_FATAL(pub != NULL);
    pem_bundle_options pub_only = {.key = pub, .password = PASSWORD};
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL(pem_bundle_write(mem, certs, &pub_only, &err), -1);
    CU_ASSERT_STRING_EQUAL(err.code, "BUNDLE_FAILED");
    CU_ASSERT_EQUAL(BIO_ctrl_pending(mem), 0);
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL(pkcs8_der_write(mem, pub, PASSWORD, 0, &err), -1);
    CU_ASSERT_STRING_EQUAL(err.code, "BUNDLE_FAILED");
    CU_ASSERT_EQUAL(BIO_ctrl_pending(mem), 0);
    CU_ASSERT_EQUAL(ERR_peek_error(), 0);
    EVP_PKEY_free(pub);

    /* No certificates and no key: an empty, successful bundle. */
    CU_ASSERT_EQUAL(pem_bundle_write(mem, NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(BIO_ctrl_pending(mem), 0);
    BIO_free(mem);
    sk_X509_pop_free(certs, X509_free);
}

/* ---- DER and PKCS#8 ----------------------------------------------------------------------- */

/* privkey_from_pkcs8: every key type's PrivateKeyInfo (EC and RSA through their own decoders,
 * EdDSA through OpenSSL's) gives back the same key, which signs as the original; an EC key whose
 * ECPrivateKey leaves out the public point gets it computed; garbage is INVALID_KEY. */
static void test_privkey_from_pkcs8(void)
{
    for (size_t i = 0; i < N_KEY_TYPES; i++) {
        EVP_PKEY *key = make_key(&key_types[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(key);
        int with_public_len = 0;
        for (int no_public = 0; no_public <= (strcmp(key_types[i].alg, "EC") == 0); no_public++) {
            if (no_public) /* the ECPrivateKey without its optional publicKey field */
                CU_ASSERT_EQUAL(EVP_PKEY_set_int_param(key, "include-public", 0), 1);
            PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
            unsigned char *der = NULL;
            int len = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1;
            PKCS8_PRIV_KEY_INFO_free(p8);
            CU_ASSERT_TRUE_FATAL(len > 0);
            if (no_public)
                CU_ASSERT_TRUE(len < with_public_len); /* the point is not in it */
            with_public_len = len;
            enroll_error err;
            EVP_PKEY *back = privkey_from_pkcs8(der, (size_t)len, &err);
            CU_ASSERT_PTR_NOT_NULL(back);
            CU_ASSERT_EQUAL(EVP_PKEY_eq(back, key), 1);
            /* Its private parts can be read by name, as key_import (store delivery) does. */
            if (!strcmp(key_types[i].alg, "EC") || !strcmp(key_types[i].alg, "RSA")) {
                BIGNUM *part = NULL;
                CU_ASSERT_EQUAL(EVP_PKEY_get_bn_param(
                                    back, strcmp(key_types[i].alg, "EC") ? "d" : "priv", &part),
                                1);
                BN_clear_free(part);
            }
            /* It signs, and the original's public key verifies that signature. */
            unsigned char sig[1024];
            size_t sig_len = sizeof sig;
            bool edwards = strcmp(key_types[i].alg, "EC") && strcmp(key_types[i].alg, "RSA");
            EVP_MD_CTX *ctx = EVP_MD_CTX_new();
            CU_ASSERT_EQUAL(
                EVP_DigestSignInit(ctx, NULL, edwards ? NULL : EVP_sha256(), NULL, back), 1);
            CU_ASSERT_EQUAL(EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)"data", 4),
                            1);
            EVP_MD_CTX_reset(ctx);
            CU_ASSERT_EQUAL(
                EVP_DigestVerifyInit(ctx, NULL, edwards ? NULL : EVP_sha256(), NULL, key), 1);
            CU_ASSERT_EQUAL(EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)"data", 4),
                            1);
            EVP_MD_CTX_free(ctx);
            EVP_PKEY_free(back);
            /* Cut short: not a key. */
            CU_ASSERT_PTR_NULL(privkey_from_pkcs8(der, (size_t)len / 2, &err));
            CU_ASSERT_STRING_EQUAL(err.code, "INVALID_KEY");
            OPENSSL_free(der);
        }
        EVP_PKEY_free(key);
    }
}

static void test_der_cert_roundtrip(void)
{
    CU_ASSERT_FATAL(fixture());
    for (size_t k = 0; k < N_KEY_TYPES; k++) {
        BIO *mem = BIO_new(BIO_s_mem());
        CU_ASSERT_FATAL(der_cert_write(mem, leaf_certs[k], NULL) == 0);
        unsigned char *ref = NULL;
        int ref_len = i2d_X509(leaf_certs[k], &ref);
        CU_ASSERT_EQUAL((long)BIO_ctrl_pending(mem), (long)ref_len);
        X509 *back = d2i_X509_bio(mem, NULL);
        CU_ASSERT(back != NULL && X509_cmp(back, leaf_certs[k]) == 0);
        CU_ASSERT_EQUAL(BIO_ctrl_pending(mem), 0);
        X509_free(back);
        OPENSSL_free(ref);
        BIO_free(mem);
    }
    enroll_error err;
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL(der_cert_write(NULL, leaf_certs[0], &err), -1);
    CU_ASSERT_STRING_EQUAL(err.code, "BUNDLE_FAILED");
}

static void test_pkcs8_der_roundtrip(void)
{
    CU_ASSERT_FATAL(fixture());
    for (size_t k = 0; k < N_KEY_TYPES; k++) {
        BIO *mem = BIO_new(BIO_s_mem());
        enroll_error err;
        enroll_error_clear(&err);
        int iterations = k == 5 ? 4096 : 0;
        CU_ASSERT_FATAL(pkcs8_der_write(mem, leaf_keys[k], PASSWORD, iterations, &err) == 0);
        X509_SIG *p8 = d2i_PKCS8_bio(mem, NULL);
        CU_ASSERT_FATAL(p8 != NULL);
        CU_ASSERT_EQUAL(BIO_ctrl_pending(mem), 0);
        check_pbes2(p8, iterations ? iterations : 2048);

        PKCS8_PRIV_KEY_INFO *inf = PKCS8_decrypt(p8, PASSWORD, -1);
        CU_ASSERT_FATAL(inf != NULL);
        EVP_PKEY *back = EVP_PKCS82PKEY(inf);
        CU_ASSERT(back != NULL && EVP_PKEY_eq(back, leaf_keys[k]) == 1);
        EVP_PKEY_free(back);
        PKCS8_PRIV_KEY_INFO_free(inf);

        inf = PKCS8_decrypt(p8, "Correct horse 42?", -1);
        CU_ASSERT_PTR_NULL(inf);
        PKCS8_PRIV_KEY_INFO_free(inf);
        ERR_clear_error();
        X509_SIG_free(p8);
        BIO_free(mem);
    }
}

/* ---- PKCS#12 ------------------------------------------------------------------------------ */

typedef struct pfx_run {
    char *dir;
    char *passfile;
} pfx_run;

static bool pfx_run_open(pfx_run *r)
{
    r->dir = test_tmpdir("test_bundle");
    r->passfile = NULL;
    if (r->dir == NULL || asprintf(&r->passfile, "%s/pass", r->dir) < 0)
        return false;
    return test_write_file(r->passfile, PASSWORD) == 0;
}

static void pfx_run_close(pfx_run *r)
{
    test_rmtree(r->dir);
    free(r->dir);
    free(r->passfile);
}

/* Writes the PFX of leaf k with the full chain in the given order; returns its path. */
static char *write_pfx(const pfx_run *r, size_t k, chain_order order, bool legacy,
                       STACK_OF(X509) * *certs_out)
{
    STACK_OF(X509) *chain = stack_of(root_cert, inter_cert, NULL, NULL);
    STACK_OF(X509) *certs = chain_arrange(leaf_certs[k], chain, true, order);
    sk_X509_free(chain);
    pfx_options opt = {.password = PASSWORD,
                       .friendly_name = FRIENDLY_NAME,
                       .csp_name = CSP_NAME,
                       .legacy = legacy};
    enroll_error err;
    enroll_error_clear(&err);
    BIO *mem = BIO_new(BIO_s_mem());
    char *path = NULL;
    if (pfx_write(mem, leaf_keys[k], certs, &opt, &err) == 0) {
        char name[64];
        snprintf(name, sizeof name, "%s-%s-%s.pfx", key_types[k].label,
                 legacy ? "legacy" : "modern", order == CHAIN_ROOT_FIRST ? "rf" : "ee");
        path = save(r->dir, name, mem);
    } else {
        fprintf(stderr, "pfx_write %s: %s: %s\n", key_types[k].label, err.code, err.message);
    }
    BIO_free(mem);
    if (certs_out != NULL)
        *certs_out = certs;
    else
        sk_X509_pop_free(certs, X509_free);
    return path;
}

/* The "localKeyID: AA BB ..." values printed by openssl pkcs12, in order, joined by '|'. */
static void local_key_ids(const char *text, char *buf, size_t size)
{
    buf[0] = '\0';
    for (const char *p = text; (p = strstr(p, "localKeyID: ")) != NULL;) {
        p += strlen("localKeyID: ");
        size_t n = strcspn(p, "\r\n");
        size_t len = n;
        while (len > 0 && p[len - 1] == ' ') /* openssl ends the hex with a space */
            len--;
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%.*s|", (int)len, p);
        p += n;
    }
}

static void check_openssl_info(const pfx_run *r, const char *path, size_t k, bool legacy)
{
    int status = -1;
    char *out =
        test_sh_output(&status, "openssl pkcs12 -info -noout %s -in '%s' -passin 'file:%s' 2>&1",
                       legacy ? "-legacy" : "", path, r->passfile);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_FATAL(out != NULL);
    if (legacy) {
        CU_ASSERT_EQUAL(test_count(out, "MAC: sha1, Iteration 2048"), 1);
        CU_ASSERT_EQUAL(test_count(out, "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC, "
                                        "Iteration 2048"),
                        1);
        CU_ASSERT_EQUAL(test_count(out, "PKCS7 Encrypted data: pbeWithSHA1And40BitRC2-CBC, "
                                        "Iteration 2048"),
                        1);
        CU_ASSERT_EQUAL(test_count(out, "PBES2"), 0);
    } else {
        CU_ASSERT_EQUAL(test_count(out, "MAC: sha256, Iteration 2048"), 1);
        CU_ASSERT_EQUAL(test_count(out, "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, "
                                        "Iteration 2048, PRF hmacWithSHA256"),
                        1);
        CU_ASSERT_EQUAL(test_count(out, "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, "
                                        "Iteration 2048, PRF hmacWithSHA256"),
                        1);
        CU_ASSERT_EQUAL(test_count(out, "RC2"), 0);
        CU_ASSERT_EQUAL(test_count(out, "TripleDES"), 0);
    }
    CU_ASSERT_EQUAL(test_count(out, "PKCS7 Data"), 1);
    if (status != 0)
        fprintf(stderr, "openssl pkcs12 -info on %s:\n%s\n", key_types[k].label, out);
    free(out);
}

/* Certificates come out in bag order; the friendlyName and localKeyID are on the leaf bag only,
 * and the key bag has the same localKeyID (SHA-1 of the leaf), its friendlyName and CSP name. */
static void check_openssl_bags(const pfx_run *r, const char *path, size_t k, bool legacy,
                               STACK_OF(X509) * certs)
{
    const char *legacy_opt = legacy ? "-legacy" : "";
    int status = -1;
    char *out = test_sh_output(&status, "openssl pkcs12 %s -in '%s' -nokeys -passin 'file:%s'",
                               legacy_opt, path, r->passfile);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_FATAL(out != NULL);
    CU_ASSERT(pem_certs_are(out, certs));
    CU_ASSERT_EQUAL(test_count(out, "friendlyName: " FRIENDLY_NAME "\n"), 1);
    CU_ASSERT_EQUAL(test_count(out, "localKeyID: "), 1);
    CU_ASSERT_EQUAL(test_count(out, "Microsoft CSP Name"), 0);
    /* The friendlyName sits in the leaf's bag: between it and the leaf's PEM there is no other
     * certificate. */
    const char *fn = strstr(out, "friendlyName: " FRIENDLY_NAME);
    char *leaf_cn = NULL;
    CU_ASSERT_FATAL(asprintf(&leaf_cn, "CN = leaf-%s.example.com", key_types[k].label) > 0);
    const char *leaf_subject = strstr(out, leaf_cn);
    CU_ASSERT(fn != NULL && leaf_subject != NULL && fn < leaf_subject);
    if (fn != NULL && leaf_subject != NULL && fn < leaf_subject) {
        const char *begin = strstr(fn, "-----BEGIN CERTIFICATE-----");
        CU_ASSERT(begin != NULL && begin > leaf_subject);
    }
    free(leaf_cn);
    char cert_ids[512];
    local_key_ids(out, cert_ids, sizeof cert_ids);
    free(out);

    /* The expected localKeyID: SHA-1 of the leaf, as openssl prints it. */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    CU_ASSERT_FATAL(X509_digest(leaf_certs[k], EVP_sha1(), md, &md_len) == 1);
    char want[128] = "";
    for (unsigned int i = 0; i < md_len; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%02X", i ? " " : "", md[i]);
    strcat(want, "|");
    CU_ASSERT_STRING_EQUAL(cert_ids, want);

    /* -nodes: the key comes out in clear, and must be leaf k's. */
    out = test_sh_output(&status, "openssl pkcs12 %s -in '%s' -nocerts -nodes -passin 'file:%s'",
                         legacy_opt, path, r->passfile);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_FATAL(out != NULL);
    CU_ASSERT_EQUAL(test_count(out, "-----BEGIN PRIVATE KEY-----"), 1);
    CU_ASSERT_EQUAL(test_count(out, "friendlyName: " FRIENDLY_NAME "\n"), 1);
    CU_ASSERT_EQUAL(test_count(out, "Microsoft CSP Name: " CSP_NAME "\n"), 1);
    BIO *in = BIO_new_mem_buf(out, -1);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
    CU_ASSERT(key != NULL && EVP_PKEY_eq(key, leaf_keys[k]) == 1);
    EVP_PKEY_free(key);
    BIO_free(in);
    char key_ids[512];
    local_key_ids(out, key_ids, sizeof key_ids);
    CU_ASSERT_STRING_EQUAL(key_ids, want);
    free(out);
}

/* GnuTLS: certtool checks the MAC and decrypts the certificate safe; it only shows the shrouded
 * key bag, so its key is then taken out and decrypted with certtool as well, and must be the
 * leaf's. */
static void check_certtool(const pfx_run *r, const char *path, size_t k, bool legacy)
{
    const char *mode = legacy ? "legacy" : "modern";
    int status = -1;
    char *out = test_sh_output(&status,
                               "certtool --p12-info --inder --infile '%s' --password \"$(cat "
                               "'%s')\" 2>&1",
                               path, r->passfile);
    CU_ASSERT_FATAL(out != NULL);
    if (status != 0)
        fprintf(stderr, "certtool on %s %s (status %d):\n%s\n", key_types[k].label, mode, status,
                out);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_EQUAL(test_count(out, "Decrypting..."), 1);
    CU_ASSERT_EQUAL(test_count(out, "Elements: 3"), 1);
    CU_ASSERT_EQUAL(test_count(out, "Type: Certificate"), 3);
    CU_ASSERT_EQUAL(test_count(out, "Type: PKCS #8 Encrypted key"), 1);
    CU_ASSERT_EQUAL(test_count(out, "Friendly name: " FRIENDLY_NAME "\n"), 2);
    if (legacy) {
        CU_ASSERT_EQUAL(test_count(out, "MAC: SHA1 "), 1);
        CU_ASSERT_EQUAL(test_count(out, "Schema: PKCS12-RC2-40-SHA1 "), 1);
        CU_ASSERT_EQUAL(test_count(out, "Schema: PKCS12-3DES-SHA1 "), 1);
    } else {
        CU_ASSERT_EQUAL(test_count(out, "MAC: SHA256 "), 1);
        CU_ASSERT_EQUAL(test_count(out, "Schema: PBES2-AES256-CBC "), 2);
    }
    free(out);

    out = test_sh_output(&status,
                         "certtool --p12-info --inder --infile '%s' --password \"$(cat '%s')\" "
                         "2>/dev/null | sed -n '/BEGIN ENCRYPTED PRIVATE KEY/,/END ENCRYPTED "
                         "PRIVATE KEY/p' >'%s.key' && certtool --pubkey-info --load-privkey "
                         "'%s.key' --password \"$(cat '%s')\" 2>&1",
                         path, r->passfile, path, path, r->passfile);
    char *want = leaf_pubkey_pem(k);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT(out != NULL && want != NULL && strstr(out, want) != NULL);
    free(want);
    free(out);
    /* And a wrong password is refused (MAC). */
    CU_ASSERT_NOT_EQUAL(test_sh("certtool --p12-info --inder --infile '%s' --password wrong "
                                ">/dev/null 2>&1",
                                path),
                        0);
}

/* Java: keytool lists one PrivateKeyEntry with the whole chain (it builds the chain by issuer
 * from the certificate bags); -list does not decrypt the key, so keytool also signs a CSR with
 * it, which openssl verifies and which must carry the leaf's public key. */
static void check_keytool(const pfx_run *r, const char *path, size_t k, bool legacy, bool csr)
{
    const char *mode = legacy ? "legacy" : "modern";
    int status = -1;
    char *out = test_sh_output(&status,
                               "keytool -list -v -storetype PKCS12 -keystore '%s' "
                               "-storepass:file '%s' 2>&1",
                               path, r->passfile);
    CU_ASSERT_FATAL(out != NULL);
    if (status != 0 || test_count(out, "PrivateKeyEntry") != 1)
        fprintf(stderr, "keytool -list on %s %s (status %d):\n%s\n", key_types[k].label, mode,
                status, out);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_EQUAL(test_count(out, "Your keystore contains 1 entry"), 1);
    CU_ASSERT_EQUAL(test_count(out, "Entry type: PrivateKeyEntry"), 1);
    CU_ASSERT_EQUAL(test_count(out, "Alias name: " FRIENDLY_NAME "\n"), 1);
    CU_ASSERT_EQUAL(test_count(out, "Certificate chain length: 3\n"), 1);
    /* Java orders the chain itself, leaf first, whatever the bag order. */
    char *leaf_owner = NULL;
    CU_ASSERT_FATAL(asprintf(&leaf_owner, "Owner: CN=leaf-%s.example.com,", key_types[k].label) >
                    0);
    const char *o1 = strstr(out, leaf_owner);
    const char *o2 = strstr(out, "Owner: CN=Test Issuing CA,");
    const char *o3 = strstr(out, "Owner: CN=Test Root CA,");
    CU_ASSERT(o1 != NULL && o2 != NULL && o3 != NULL && o1 < o2 && o2 < o3);
    free(leaf_owner);
    free(out);
    if (!csr)
        return;

    out = test_sh_output(&status,
                         "keytool -certreq -alias '" FRIENDLY_NAME "' -storetype PKCS12 "
                         "-keystore '%s' -storepass:file '%s' >'%s.csr' && openssl req -in "
                         "'%s.csr' -noout -verify -pubkey 2>&1",
                         path, r->passfile, path, path);
    CU_ASSERT_FATAL(out != NULL);
    if (status != 0)
        fprintf(stderr, "keytool -certreq on %s %s (status %d):\n%s\n", key_types[k].label, mode,
                status, out);
    char *want = leaf_pubkey_pem(k);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_EQUAL(test_count(out, "verify OK"), 1);
    CU_ASSERT(want != NULL && strstr(out, want) != NULL);
    free(want);
    free(out);
}

static void check_pfx(bool legacy)
{
    CU_ASSERT_FATAL(fixture());
    CU_ASSERT_FATAL(bundle_crypto_init() == 0);
    pfx_run r;
    CU_ASSERT_FATAL(pfx_run_open(&r));
    for (size_t k = 0; k < N_KEY_TYPES; k++) {
        for (int order = CHAIN_END_ENTITY_FIRST; order <= CHAIN_ROOT_FIRST; order++) {
            STACK_OF(X509) *certs = NULL;
            char *path = write_pfx(&r, k, (chain_order)order, legacy, &certs);
            CU_ASSERT(path != NULL);
            if (path != NULL) {
                check_openssl_bags(&r, path, k, legacy, certs);
                check_keytool(&r, path, k, legacy, order == CHAIN_END_ENTITY_FIRST);
                if (order == CHAIN_END_ENTITY_FIRST) {
                    check_openssl_info(&r, path, k, legacy);
                    check_certtool(&r, path, k, legacy);
                }
            }
            free(path);
            sk_X509_pop_free(certs, X509_free);
        }
    }
    pfx_run_close(&r);
}

static void test_pfx_modern(void)
{
    check_pfx(false);
}

static void test_pfx_legacy(void)
{
    check_pfx(true);
}

/* In-process: the bags hold what pfx_write was given, MAC verifies, custom iteration count. */
static void test_pfx_parse_back(void)
{
    CU_ASSERT_FATAL(fixture());
    STACK_OF(X509) *chain = stack_of(inter_cert, root_cert, NULL, NULL);
    STACK_OF(X509) *certs = chain_arrange(leaf_certs[0], chain, true, CHAIN_ROOT_FIRST);
    sk_X509_free(chain);
    pfx_options opt = {.password = PASSWORD, .iterations = 3000};
    BIO *mem = BIO_new(BIO_s_mem());
    enroll_error err;
    enroll_error_clear(&err);
    CU_ASSERT_FATAL(pfx_write(mem, leaf_keys[0], certs, &opt, &err) == 0);
    PKCS12 *p12 = d2i_PKCS12_bio(mem, NULL);
    CU_ASSERT_FATAL(p12 != NULL);
    CU_ASSERT(PKCS12_verify_mac(p12, PASSWORD, -1) == 1);
    CU_ASSERT(PKCS12_verify_mac(p12, "wrong", -1) == 0);
    ERR_clear_error();
    const ASN1_INTEGER *mac_iter = NULL;
    const X509_ALGOR *mac_alg = NULL;
    PKCS12_get0_mac(NULL, &mac_alg, NULL, &mac_iter, p12);
    CU_ASSERT_EQUAL(ASN1_INTEGER_get(mac_iter), 3000);
    CU_ASSERT(mac_alg != NULL && OBJ_obj2nid(mac_alg->algorithm) == NID_sha256);
    /* The certificates' safe: PBES2, PBKDF2 with HMAC-SHA256 and the same count, AES-256-CBC. */
    STACK_OF(PKCS7) *safes = PKCS12_unpack_authsafes(p12);
    CU_ASSERT_FATAL(safes != NULL && sk_PKCS7_num(safes) == 2);
    PKCS7 *cert_safe = sk_PKCS7_value(safes, 0);
    CU_ASSERT_FATAL(OBJ_obj2nid(cert_safe->type) == NID_pkcs7_encrypted);
    X509_ALGOR *pbe = cert_safe->d.encrypted->enc_data->algorithm;
    CU_ASSERT_FATAL(OBJ_obj2nid(pbe->algorithm) == NID_pbes2);
    PBE2PARAM *pbe2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), pbe->parameter);
    CU_ASSERT_FATAL(pbe2 != NULL);
    CU_ASSERT_EQUAL(OBJ_obj2nid(pbe2->encryption->algorithm), NID_aes_256_cbc);
    PBKDF2PARAM *kdf =
        ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM), pbe2->keyfunc->parameter);
    CU_ASSERT_FATAL(kdf != NULL);
    CU_ASSERT_EQUAL(ASN1_INTEGER_get(kdf->iter), 3000);
    CU_ASSERT(kdf->prf != NULL && OBJ_obj2nid(kdf->prf->algorithm) == NID_hmacWithSHA256);
    STACK_OF(PKCS12_SAFEBAG) *cert_bags = PKCS12_unpack_p7encdata(cert_safe, PASSWORD, -1);
    CU_ASSERT(cert_bags != NULL && sk_PKCS12_SAFEBAG_num(cert_bags) == 3);
    sk_PKCS12_SAFEBAG_pop_free(cert_bags, PKCS12_SAFEBAG_free);
    PBKDF2PARAM_free(kdf);
    PBE2PARAM_free(pbe2);
    sk_PKCS7_pop_free(safes, PKCS7_free);

    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *ca = NULL;
    CU_ASSERT_FATAL(PKCS12_parse(p12, PASSWORD, &key, &cert, &ca) == 1);
    CU_ASSERT(EVP_PKEY_eq(key, leaf_keys[0]) == 1);
    CU_ASSERT(X509_cmp(cert, leaf_certs[0]) == 0);
    /* No friendlyName given: none set; the CA bags come out as given (root first). */
    CU_ASSERT_PTR_NULL(X509_alias_get0(cert, NULL));
    CU_ASSERT(ca != NULL && sk_X509_num(ca) == 2 &&
              X509_cmp(sk_X509_value(ca, 0), root_cert) == 0 &&
              X509_cmp(sk_X509_value(ca, 1), inter_cert) == 0);
    EVP_PKEY_free(key);
    X509_free(cert);
    sk_X509_pop_free(ca, X509_free);
    PKCS12_free(p12);
    BIO_free(mem);
    sk_X509_pop_free(certs, X509_free);
}

static void test_pfx_errors(void)
{
    CU_ASSERT_FATAL(fixture());
    STACK_OF(X509) *certs = chain_arrange(leaf_certs[1], NULL, false, CHAIN_END_ENTITY_FIRST);
    BIO *mem = BIO_new(BIO_s_mem());
    enroll_error err;

    pfx_options no_pass = {.password = NULL};
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL(pfx_write(mem, leaf_keys[1], certs, &no_pass, &err), -1);
    CU_ASSERT_STRING_EQUAL(err.code, "BUNDLE_FAILED");

    pfx_options bad_iter = {.password = PASSWORD, .iterations = -5};
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL(pfx_write(mem, leaf_keys[1], certs, &bad_iter, &err), -1);
    CU_ASSERT_STRING_EQUAL(err.code, "BUNDLE_FAILED");

    /* A key that matches none of the certificates. */
    pfx_options opt = {.password = PASSWORD};
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL(pfx_write(mem, leaf_keys[2], certs, &opt, &err), -1);
    CU_ASSERT_STRING_EQUAL(err.code, "BUNDLE_FAILED");
    CU_ASSERT(strstr(err.message, "matches") != NULL);
    CU_ASSERT_EQUAL(ERR_peek_error(), 0);

    /* The leaf's public key only: it matches the leaf but cannot be exported. */
    EVP_PKEY *pub = public_only(leaf_certs[1]);
    CU_ASSERT_FATAL(pub != NULL);
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL(pfx_write(mem, pub, certs, &opt, &err), -1);
    CU_ASSERT_STRING_EQUAL(err.code, "BUNDLE_FAILED");
    CU_ASSERT(strstr(err.message, "private key") != NULL);
    EVP_PKEY_free(pub);

    /* A friendlyName that is not UTF-8. */
    pfx_options bad_name = {.password = PASSWORD, .friendly_name = "caf\xe9"};
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL(pfx_write(mem, leaf_keys[1], certs, &bad_name, &err), -1);
    CU_ASSERT_STRING_EQUAL(err.code, "BUNDLE_FAILED");

    CU_ASSERT_EQUAL(BIO_ctrl_pending(mem), 0);
    BIO_free(mem);
    sk_X509_pop_free(certs, X509_free);
}

/* The grid both derivations are checked on against OpenSSL: each password (by index) with each
 * salt length and count, the output lengths taken in turn. derive fills out by the engine and
 * ref by OpenSSL, 0 when both did. Returns the cases that disagreed (printed). */
typedef int (*derive_pair)(size_t password, size_t salt_len, unsigned iterations, size_t out_len,
                           unsigned char *out, unsigned char *ref);

static int kdf_disagreements(size_t passwords, const size_t *salt_lens, size_t n_salts,
                             const unsigned *iterations, size_t n_iterations,
                             const size_t *out_lens, size_t n_outs, derive_pair derive)
{
    unsigned char out[100], ref[100];
    int differ = 0;
    for (size_t p = 0; p < passwords; p++)
        for (size_t s = 0; s < n_salts; s++)
            for (size_t i = 0; i < n_iterations; i++) {
                size_t o = (p + s + i) % n_outs;
                memset(out, 0, sizeof out);
                memset(ref, 0xff, sizeof ref);
                if (derive(p, salt_lens[s], iterations[i], out_lens[o], out, ref) != 0 ||
                    memcmp(out, ref, out_lens[o]) != 0) {
                    printf("\n  differs: password %zu, salt %zu, %u iterations, %zu bytes", p,
                           salt_lens[s], iterations[i], out_lens[o]);
                    differ++;
                }
            }
    return differ;
}

static unsigned char kdf_password[130], kdf_salt[80];
static const size_t kdf_password_lens[] = {0, 1, 17, 63, 64, 65, 130};

static int pbkdf2_pair(size_t p, size_t salt_len, unsigned iterations, size_t out_len,
                       unsigned char *out, unsigned char *ref)
{
    size_t len = kdf_password_lens[p];
    return kdf_pbkdf2_hmac_sha256(kdf_password, len, kdf_salt, salt_len, iterations, out,
                                  out_len) == 0 &&
                   PKCS5_PBKDF2_HMAC((const char *)kdf_password, (int)len, kdf_salt, (int)salt_len,
                                     (int)iterations, EVP_sha256(), (int)out_len, ref) == 1
               ? 0
               : -1;
}

/* PBKDF2-HMAC-SHA256: RFC 7914's two vectors (section 11), then against OpenSSL's own
 * PKCS5_PBKDF2_HMAC over passwords longer and shorter than a block, empty salts, one and many
 * iterations, and outputs of part of a block and of several blocks. */
static void test_kdf_pbkdf2(void)
{
    static const unsigned char rfc_1[64] = {
        0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f, 0xec, 0x16, 0x91, 0xc2, 0x25,
        0x44, 0xb6, 0x05, 0xf9, 0x41, 0x85, 0x21, 0x6d, 0xde, 0x04, 0x65, 0xe6, 0x8b,
        0x9d, 0x57, 0xc2, 0x0d, 0xac, 0xbc, 0x49, 0xca, 0x9c, 0xcc, 0xf1, 0x79, 0xb6,
        0x45, 0x99, 0x16, 0x64, 0xb3, 0x9d, 0x77, 0xef, 0x31, 0x7c, 0x71, 0xb8, 0x45,
        0xb1, 0xe3, 0x0b, 0xd5, 0x09, 0x11, 0x20, 0x41, 0xd3, 0xa1, 0x97, 0x83};
    static const unsigned char rfc_80000[64] = {
        0x4d, 0xdc, 0xd8, 0xf6, 0x0b, 0x98, 0xbe, 0x21, 0x83, 0x0c, 0xee, 0x5e, 0xf2,
        0x27, 0x01, 0xf9, 0x64, 0x1a, 0x44, 0x18, 0xd0, 0x4c, 0x04, 0x14, 0xae, 0xff,
        0x08, 0x87, 0x6b, 0x34, 0xab, 0x56, 0xa1, 0xd4, 0x25, 0xa1, 0x22, 0x58, 0x33,
        0x54, 0x9a, 0xdb, 0x84, 0x1b, 0x51, 0xc9, 0xb3, 0x17, 0x6a, 0x27, 0x2b, 0xde,
        0xbb, 0xa1, 0xd0, 0x78, 0x47, 0x8f, 0x62, 0xb3, 0x97, 0xf3, 0x3c, 0x8d};
    unsigned char out[64];
    CU_ASSERT_EQUAL(
        kdf_pbkdf2_hmac_sha256("passwd", 6, (const unsigned char *)"salt", 4, 1, out, 64), 0);
    CU_ASSERT_EQUAL(memcmp(out, rfc_1, 64), 0);
    CU_ASSERT_EQUAL(
        kdf_pbkdf2_hmac_sha256("Password", 8, (const unsigned char *)"NaCl", 4, 80000, out, 64), 0);
    CU_ASSERT_EQUAL(memcmp(out, rfc_80000, 64), 0);

    static const size_t salt_lens[] = {0, 16, 55, 56, 80};
    static const unsigned iterations[] = {1, 2, 3, 2048};
    static const size_t out_lens[] = {1, 16, 32, 33, 100};
    CU_ASSERT_EQUAL(RAND_bytes(kdf_password, sizeof kdf_password), 1);
    CU_ASSERT_EQUAL(RAND_bytes(kdf_salt, sizeof kdf_salt), 1);
    CU_ASSERT_EQUAL(kdf_disagreements(sizeof kdf_password_lens / sizeof *kdf_password_lens,
                                      salt_lens, 5, iterations, 4, out_lens, 5, pbkdf2_pair),
                    0);

    memset(out, 0x5a, sizeof out);
    CU_ASSERT_EQUAL(kdf_pbkdf2_hmac_sha256("p", 1, kdf_salt, 16, 0, out, 32), -1);
    CU_ASSERT_EQUAL(kdf_pbkdf2_hmac_sha256("p", 1, NULL, 16, 1, out, 32), -1);
    CU_ASSERT_EQUAL(kdf_pbkdf2_hmac_sha256(NULL, 3, kdf_salt, 16, 1, out, 32), -1);
    CU_ASSERT_EQUAL(kdf_pbkdf2_hmac_sha256("p", 1, kdf_salt, 16, 1, out, 0), -1);
    CU_ASSERT_EQUAL(out[0], 0x5a);
}

static const char *const p12_passwords[] = {
    "a", PASSWORD, "P\xc3\xa4ssw\xc3\xb6rt \xe2\x82\xac \xf0\x9f\x98\x80",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
    "\xff\xfe not UTF-8"};

static int p12_md_nid, p12_id; /* the digest and purpose pkcs12_pair derives with */

static int pkcs12_pair(size_t p, size_t salt_len, unsigned iterations, size_t out_len,
                       unsigned char *out, unsigned char *ref)
{
    return kdf_pkcs12(p12_md_nid, p12_id, p12_passwords[p], kdf_salt, salt_len, iterations, out,
                      out_len) == 0 &&
                   PKCS12_key_gen_utf8(p12_passwords[p], -1, kdf_salt, (int)salt_len, p12_id,
                                       (int)iterations, (int)out_len, ref,
                                       p12_md_nid == NID_sha1 ? EVP_sha1() : EVP_sha256()) == 1
               ? 0
               : -1;
}

/* PKCS#12's own key derivation, with SHA-1 and SHA-256 for each purpose (key, IV, MAC key),
 * against OpenSSL's PKCS12_key_gen_utf8: ASCII and non-ASCII UTF-8 (a character outside the BMP
 * too), bytes that are not UTF-8 (both take them byte by byte), passwords of several blocks,
 * salts of part of a block and of more than one, one and many iterations, outputs of part of a
 * digest and of several (a 3DES key from SHA-1, where the salt and password blocks are updated
 * between digests). */
static void test_kdf_pkcs12(void)
{
    static const size_t salt_lens[] = {1, 8, 20, 64, 65};
    static const unsigned iterations[] = {1, 2, 2048};
    static const size_t out_lens[] = {32, 20, 1, 24, 48, 100};
    unsigned char out[32];
    CU_ASSERT_EQUAL(RAND_bytes(kdf_salt, sizeof kdf_salt), 1);
    static const int md_nids[] = {NID_sha1, NID_sha256};
    for (int d = 0; d < 2; d++)
        for (p12_id = 1; p12_id <= 3; p12_id++) {
            p12_md_nid = md_nids[d];
            CU_ASSERT_EQUAL(kdf_disagreements(sizeof p12_passwords / sizeof *p12_passwords,
                                              salt_lens, 5, iterations, 3, out_lens, 6,
                                              pkcs12_pair),
                            0);
        }
    CU_ASSERT_EQUAL(kdf_pkcs12(NID_sha256, 3, "p", kdf_salt, 0, 1, out, 32), -1);
    CU_ASSERT_EQUAL(kdf_pkcs12(NID_sha256, 3, "p", kdf_salt, 8, 0, out, 32), -1);
    CU_ASSERT_EQUAL(kdf_pkcs12(NID_sha384, 3, "p", kdf_salt, 8, 1, out, 32), -1);
    CU_ASSERT_EQUAL(kdf_pkcs12(NID_sha256, 0, "p", kdf_salt, 8, 1, out, 32), -1);
    CU_ASSERT_EQUAL(kdf_pkcs12(NID_sha256, 3, NULL, kdf_salt, 8, 1, out, 32), -1);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_legacy_unavailable), /* first: needs the legacy provider not loaded */
        TEST_CASE(test_crypto_init),
        TEST_CASE(test_chain_shuffled_with_strays),
        TEST_CASE(test_chain_references),
        TEST_CASE(test_chain_leaf_only),
        TEST_CASE(test_chain_partial_and_duplicates),
        TEST_CASE(test_pem_subject_headers),
        TEST_CASE(test_pem_without_headers),
        TEST_CASE(test_pem_with_key),
        TEST_CASE(test_pem_key_third_party),
        TEST_CASE(test_pem_key_errors),
        TEST_CASE(test_privkey_from_pkcs8),
        TEST_CASE(test_der_cert_roundtrip),
        TEST_CASE(test_pkcs8_der_roundtrip),
        TEST_CASE(test_kdf_pbkdf2),
        TEST_CASE(test_kdf_pkcs12),
        TEST_CASE(test_pfx_parse_back),
        TEST_CASE(test_pfx_errors),
        TEST_CASE(test_pfx_modern),
        TEST_CASE(test_pfx_legacy),
        TEST_END,
    };
    return test_main("bundle", cases, NULL, NULL);
}
