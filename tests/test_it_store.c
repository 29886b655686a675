/* Certificate stores end to end: 200 aliases of a SoftHSM store reenrolled (new certificates
 * chain to the embedded CA, new public keys, old objects gone, aliases intact, and pkcs11-tool
 * agrees); a SIGKILL at each step of the swap followed by --resume leaves every alias valid; the
 * per-request errors of bad store lines; `token list --aliases`. */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ca/hsm_signer.h"
#include "hsm/hsm.h"
#include "tests/support.h"

#define PIN         "store-user-pin"
#define STORE_ID    "6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10"
#define OTHER_STORE "7c1f5b4d-1e1d-4a68-8b64-3a2b8d4daf21"
#define AGENT       "0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
#define ALIASES     200

static char *tmp, *home;
static char cfg[600];

#define ENGINE(fmt, ...)                                                                           \
    test_sh("HSMENROLL_HOME='%s' '%s' " fmt " 2>>'%s/engine.log'", home, HSMENROLL_BIN,            \
            __VA_ARGS__, tmp)

static int setup(void)
{
    tmp = test_tmpdir("hsmenroll-store");
    if (tmp == NULL || asprintf(&home, "%s/home", tmp) < 0)
        return 1;
    test_children_unwind_fast(); /* no EdDSA key is made here */
    setenv("HSMENROLL_PIN", PIN, 1);
    setenv("HSMENROLL_SO_PIN", "store-so-pin", 1);
    if (test_sh("HSMENROLL_HOME='%s' '%s' ca init -q 2>/dev/null", home, HSMENROLL_BIN) != 0)
        return 1;
    char conf[700];
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", home);
    setenv("SOFTHSM2_CONF", conf, 1);
    snprintf(cfg, sizeof cfg, "%s/stores.json", tmp);
    char text[2048];
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"]},\"CertificateAuthorities\":[{\"Id\":1,"
             "\"Name\":\"embedded\",\"Type\":\"local\",\"Home\":\"%s/ca\",\"Token\":"
             "\"hsmenroll-ca\",\"PinFile\":\"home/"
             "ca-pin\"}],\"Templates\":[{\"Id\":1,\"Name\":\"Default\","
             "\"CertificateAuthorities\":[1]},{\"Id\":2,\"Name\":\"Short\",\"ValidityDays\":1,"
             "\"CertificateAuthorities\":[1]}],\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":"
             "\"Default\",\"Template\":1,\"TemplateDefault\":true,\"AllowedEnrollmentTypes\":3},"
             "{\"Id\":2,\"Name\":\"Short\",\"Template\":2,\"TemplateDefault\":true,"
             "\"AllowedEnrollmentTypes\":3}],"
             "\"Stores\":[{\"Id\":\"" STORE_ID "\",\"Token\":\"store-a\",\"AgentGuid\":\"" AGENT
             "\"},{\"Id\":\"" OTHER_STORE "\",\"Token\":\"absent\",\"AgentGuid\":\"" AGENT "\"}]}",
             home);
    if (test_write_file(cfg, text) != 0)
        return 1;
    return ENGINE("token init --config '%s' --label store-a -q", cfg);
}

static int teardown(void)
{
    test_rmtree(tmp);
    free(tmp);
    free(home);
    return 0;
}

/* Fills the store with `count` aliases the way a device would hold them: a P-256 key pair made
 * in the token and a certificate for it (issued by a throwaway software CA) under the same label
 * and CKA_ID. The old certificates' public keys are kept in old_keys (DER, by alias index). */
static int populate(int count, unsigned char **old_keys, int *old_lens)
{
    hsm_error herr;
    hsm_module *m = hsm_module_load(HSMENROLL_SOFTHSM_MODULE, &herr);
    hsm_token token;
    hsm_session s;
    if (m == NULL || hsm_token_open(m, "store-a", PIN, &token, &herr) != 0 ||
        hsm_session_open(&token, &s, &herr) != 0) {
        fprintf(stderr, "populate: %s\n", herr.message);
        return -1;
    }
    EVP_PKEY *issuer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    int made = 0;
    for (int i = 0; i < count && issuer != NULL; i++) {
        char alias[32];
        snprintf(alias, sizeof alias, "alias-%03d", i);
        hsm_key_spec spec = {.type = HSM_KEY_EC, .curve = HSM_CURVE_P256};
        hsm_keypair pair;
        if (hsm_generate_keypair_with_id(&s, &spec, HSM_STORAGE_TOKEN, alias, NULL, &pair, &herr) !=
            0)
            break;
        EVP_PKEY *pub = hsm_keypair_public(&pair, NULL);
        X509 *cert = X509_new();
        X509_NAME *name = X509_NAME_new();
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (unsigned char *)alias, -1, -1, 0);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), i + 1);
        X509_set_subject_name(cert, name);
        X509_set_issuer_name(cert, name);
        X509_gmtime_adj(X509_getm_notBefore(cert), -86400);
        X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
        X509_set_pubkey(cert, pub);
        X509_sign(cert, issuer, EVP_sha256());
        unsigned char *der = NULL, *subject = NULL;
        int len = i2d_X509(cert, &der), subject_len = i2d_X509_NAME(name, &subject);
        hsm_certificate_der d = {.value = der,
                                 .value_len = (size_t)len,
                                 .subject = subject,
                                 .subject_len = (size_t)subject_len};
        int rc = hsm_create_certificate(&s, &d, alias, pair.id, HSM_KEY_ID_LEN, NULL, &herr);
        OPENSSL_free(subject);
        old_lens[i] = i2d_PUBKEY(pub, &old_keys[i]);
        OPENSSL_free(der);
        X509_NAME_free(name);
        X509_free(cert);
        EVP_PKEY_free(pub);
        hsm_keypair_release(&pair);
        if (rc != 0)
            break;
        made++;
    }
    if (made < count)
        fprintf(stderr, "populate: %d of %d: %s\n", made, count, herr.message);
    EVP_PKEY_free(issuer);
    hsm_session_close(&s);
    hsm_token_close(&token);
    hsm_module_unload(m);
    return made;
}

/* A batch reenrolling aliases [from, to) under Ids PREFIX-NNN. */
static void write_batch(const char *path, const char *prefix, int from, int to)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return;
    for (int i = from; i < to; i++)
        fprintf(f,
                "{\"Id\":\"%s-%03d\",\"Operation\":\"Reenrollment\",\"KeystoreId\":\"" STORE_ID
                "\",\"Alias\":\"alias-%03d\",\"SubjectName\":\"CN=alias-%03d.example,O=%s\","
                "\"AgentGuid\":\"" AGENT "\",\"CertificateTemplate\":\"Default\",\"KeyType\":"
                "\"ECC\"}\n",
                prefix, i, i, i, prefix);
    fclose(f);
}

/* The store as `token list --aliases --json` sees it (the array of the first store's aliases). */
static json_t *aliases_now(void)
{
    json_t *doc = test_sh_json(NULL,
                               "HSMENROLL_HOME='%s' '%s' token list --config '%s' --aliases "
                               "--json 2>/dev/null",
                               home, HSMENROLL_BIN, cfg);
    json_t *aliases = json_incref(json_object_get(json_array_get(doc, 0), "Aliases"));
    json_decref(doc);
    return aliases;
}

/* Every alias of [0, count) has exactly one entry, complete, with a certificate for subject
 * O=org issued by the embedded CA (openssl verify), and the token holds nothing else (pkcs11-tool
 * counts). Returns how many aliases are so. */
static int aliases_valid(int count, const char *org)
{
    json_t *aliases = aliases_now();
    int good = 0;
    size_t i;
    json_t *a;
    char want[64];
    snprintf(want, sizeof want, "O=%s", org);
    json_array_foreach(aliases, i, a)
    {
        const char *subject = json_string_value(json_object_get(a, "SubjectDN"));
        if (json_is_true(json_object_get(a, "Complete")) && json_object_get(a, "Entries") == NULL &&
            subject != NULL && strstr(subject, want))
            good++;
        else if (good - (int)i > -3)
            fprintf(stderr, "\n  alias %s: %s\n", json_string_value(json_object_get(a, "Alias")),
                    subject ? subject : "(no certificate)");
    }
    CU_ASSERT_EQUAL(json_array_size(aliases), (size_t)count);
    json_decref(aliases);
    /* OpenSC's view: one private key, one public key and one certificate per alias. */
    char *objects = test_sh_output(NULL,
                                   "pkcs11-tool --module '%s' --token-label store-a --login "
                                   "--pin " PIN " --list-objects 2>/dev/null",
                                   HSMENROLL_SOFTHSM_MODULE);
    CU_ASSERT_EQUAL(test_count(objects ? objects : "", "Private Key Object"), count);
    CU_ASSERT_EQUAL(test_count(objects ? objects : "", "Public Key Object"), count);
    CU_ASSERT_EQUAL(test_count(objects ? objects : "", "Certificate Object"), count);
    free(objects);
    return good;
}

static void test_reenroll_200_aliases(void)
{
    unsigned char *old_keys[ALIASES] = {0};
    int old_lens[ALIASES] = {0};
    CU_ASSERT_EQUAL_FATAL(populate(ALIASES, old_keys, old_lens), ALIASES);
    CU_ASSERT_EQUAL(aliases_valid(ALIASES, "nobody"), 0); /* the old, self-issued ones */
    char batch[700], out[700];
    snprintf(batch, sizeof batch, "%s/reenroll.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-reenroll", tmp);
    write_batch(batch, "r1", 0, ALIASES);
    CU_ASSERT_EQUAL(ENGINE("run '%s' --config '%s' -o '%s' --progress never", batch, cfg, out), 0);
    CU_ASSERT_EQUAL(aliases_valid(ALIASES, "r1"), ALIASES);
    CU_ASSERT_EQUAL(test_verified_files(out, home), ALIASES);
    /* New public keys: each alias's certificate holds a key it did not hold before. */
    json_t *aliases = aliases_now();
    int changed = 0;
    for (int i = 0; i < ALIASES; i++) {
        char path[800];
        snprintf(path, sizeof path, "%s/r1-%03d.pem", out, i);
        FILE *f = fopen(path, "r");
        X509 *c = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
        if (f)
            fclose(f);
        unsigned char *der = NULL;
        int len = c ? i2d_PUBKEY(X509_get0_pubkey(c), &der) : -1;
        changed += len > 0 && (len != old_lens[i] || memcmp(der, old_keys[i], (size_t)len) != 0);
        /* The store holds this very certificate under the alias. */
        char serial[64] = "";
        BIGNUM *bn = c ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), NULL) : NULL;
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        snprintf(serial, sizeof serial, "%s", hex ? hex : "");
        char alias[32];
        snprintf(alias, sizeof alias, "alias-%03d", i);
        json_t *a = test_find_by(aliases, "Alias", alias);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(a, "SerialNumber")), serial);
        OPENSSL_free(hex);
        BN_free(bn);
        OPENSSL_free(der);
        X509_free(c);
        free(old_keys[i]);
    }
    CU_ASSERT_EQUAL(changed, ALIASES);
    /* The result lines name the store and alias, and the new key's URI is in the store. */
    char path[800];
    snprintf(path, sizeof path, "%s/results.ndjson", out);
    json_t *results = test_load_ndjson(path);
    json_t *r = test_find_by(results, "Id", "r1-007");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "StoreId")), STORE_ID);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "Alias")), "alias-007");
    const char *uri = json_string_value(json_object_get(r, "KeyUri"));
    CU_ASSERT_PTR_NOT_NULL(uri ? strstr(uri, "token=store-a;") : NULL);
    CU_ASSERT_PTR_NOT_NULL(uri ? strstr(uri, "object=alias-007;") : NULL);
    json_decref(results);
    json_decref(aliases);
}

/* A SIGKILL at each step of the swap, then --resume: every alias ends up valid, once. */
static void test_kill_at_each_step_then_resume(void)
{
    static const char *const points[] = {"store-keygen",    "store-journaled", "store-issued",
                                         "store-installed", "store-retiring",  "store-retired"};
    for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) {
        char prefix[16], batch[700], out[700];
        snprintf(prefix, sizeof prefix, "k%zu", p);
        snprintf(batch, sizeof batch, "%s/%s.ndjson", tmp, prefix);
        snprintf(out, sizeof out, "%s/out-%s", tmp, prefix);
        write_batch(batch, prefix, 0, 6);
        int rc = test_sh("HSMENROLL_FAULT_KILL=%s HSMENROLL_HOME='%s' '%s' run '%s' --config '%s' "
                         "-o '%s' --progress never --workers 1 --hsm-concurrency 1 "
                         "2>>'%s/engine.log'",
                         points[p], home, HSMENROLL_BIN, batch, cfg, out, tmp);
        CU_ASSERT_EQUAL(rc, 128 + SIGKILL); /* it did reach the point */
        CU_ASSERT_EQUAL(
            ENGINE("run '%s' --config '%s' -o '%s' --resume --progress never", batch, cfg, out), 0);
        char *issued =
            test_sh_output(NULL, "grep -c '\"Status\":\"issued\"' '%s/results.ndjson'", out);
        CU_ASSERT_EQUAL(issued ? atoi(issued) : -1, 6);
        free(issued);
        /* Aliases 0-5 now hold this round's certificates; the others still the first test's. */
        json_t *aliases = aliases_now();
        for (int i = 0; i < ALIASES; i++) {
            char alias[32];
            snprintf(alias, sizeof alias, "alias-%03d", i);
            json_t *a = test_find_by(aliases, "Alias", alias);
            const char *subject = json_string_value(json_object_get(a, "SubjectDN"));
            CU_ASSERT_TRUE(json_is_true(json_object_get(a, "Complete")));
            CU_ASSERT_PTR_NULL(json_object_get(a, "Entries"));
            CU_ASSERT_PTR_NOT_NULL(subject ? strstr(subject, i < 6 ? prefix : "O=r1") : NULL);
        }
        json_decref(aliases);
        CU_ASSERT_EQUAL(test_verified_files(out, home), 6);
    }
    CU_ASSERT_EQUAL(aliases_valid(ALIASES, ""), ALIASES);
}

static void test_bad_store_lines_fail_alone(void)
{
    char batch[700], out[700];
    snprintf(batch, sizeof batch, "%s/bad.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-bad", tmp);
    CU_ASSERT_EQUAL_FATAL(
        test_write_file(
            batch,
            "{\"Id\":\"b1\",\"Operation\":\"Reenrollment\",\"KeystoreId\":\"" OTHER_STORE "\","
            "\"Alias\":\"x\",\"SubjectName\":\"CN=x\",\"AgentGuid\":\"" AGENT "\","
            "\"Template\":\"Default\"}\n"
            "{\"Id\":\"b2\",\"Operation\":\"Reenrollment\",\"KeystoreId\":"
            "\"00000000-0000-0000-0000-000000000000\",\"Alias\":\"alias-010\",\"SubjectName\":"
            "\"CN=x\",\"AgentGuid\":\"" AGENT "\",\"Template\":\"Default\"}\n"
            "{\"Id\":\"b3\",\"Operation\":\"Reenrollment\",\"KeystoreId\":\"" STORE_ID "\","
            "\"Alias\":\"alias-010\",\"SubjectName\":\"CN=x\",\"AgentGuid\":"
            "\"11111111-2222-3333-4444-555555555555\",\"Template\":\"Default\"}\n"
            "{\"Id\":\"b4\",\"Operation\":\"Reenrollment\",\"KeystoreId\":\"" STORE_ID "\","
            "\"SubjectName\":\"CN=x\",\"AgentGuid\":\"" AGENT "\",\"Template\":\"Default\"}\n"
            "{\"Id\":\"b5\",\"Operation\":\"Reenrollment\",\"KeystoreId\":\"" STORE_ID "\","
            "\"Alias\":\"no-such-alias\",\"SubjectName\":\"CN=x\",\"AgentGuid\":\"" AGENT "\","
            "\"Template\":\"Default\"}\n"
            "{\"Id\":\"b6\",\"Operation\":\"Reenrollment\",\"KeystoreId\":\"" STORE_ID "\","
            "\"Alias\":\"alias-011\",\"SubjectName\":\"CN=alias-011.example,O=ok\",\"AgentGuid\":"
            "\"" AGENT "\",\"Template\":\"Default\",\"KeyType\":\"ECC\"}\n"
            "{\"Id\":\"b7\",\"Operation\":\"Reenrollment\",\"KeystoreId\":\"" STORE_ID "\","
            "\"Alias\":\"alias-011\",\"SubjectName\":\"CN=y\",\"AgentGuid\":\"" AGENT "\","
            "\"Template\":\"Default\"}\n"
            "{\"Id\":\"b8\",\"Operation\":\"Reenrollment\",\"KeystoreId\":\"" STORE_ID "\","
            "\"Alias\":\"alias-012\",\"SubjectName\":\"CN=y\",\"AgentGuid\":\"" AGENT "\","
            "\"Template\":\"Default\",\"Password\":\"nope-not-here\"}\n"),
        0);
    /* Some requests failed: exit 1, and the one good line was issued all the same. */
    CU_ASSERT_EQUAL(ENGINE("run '%s' --config '%s' -o '%s' --progress never", batch, cfg, out), 1);
    char path[800];
    snprintf(path, sizeof path, "%s/results.ndjson", out);
    json_t *results = test_load_ndjson(path);
    static const struct {
        const char *id, *code, *field;
    } expected[] = {
        {"b1", "STORE_UNAVAILABLE", "KeystoreId"},   {"b2", "STORE_UNKNOWN", "KeystoreId"},
        {"b3", "STORE_AGENT_MISMATCH", "AgentGuid"}, {"b4", "MISSING_FIELD", "Alias"},
        {"b5", "STORE_ALIAS_UNKNOWN", "Alias"},      {"b7", "STORE_ALIAS_BUSY", "Alias"},
        {"b8", "FIELD_NOT_ALLOWED", "Password"},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        json_t *r = test_find_by(results, "Id", expected[i].id);
        json_t *e = json_object_get(r, "Error");
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "Status")), "failed");
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "Code")), expected[i].code);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "Field")), expected[i].field);
    }
    CU_ASSERT_STRING_EQUAL(
        json_string_value(json_object_get(test_find_by(results, "Id", "b6"), "Status")), "issued");
    json_decref(results);
    CU_ASSERT_EQUAL(aliases_valid(ALIASES, ""), ALIASES);
}

/* One PFX line: its result, and the alias's entry as token list sees it afterwards. */
static json_t *run_one(const char *name, const char *line, int expect_exit)
{
    char batch[700], out[700], path[800];
    snprintf(batch, sizeof batch, "%s/%s.ndjson", tmp, name);
    snprintf(out, sizeof out, "%s/out-%s", tmp, name);
    test_write_file(batch, line);
    CU_ASSERT_EQUAL(ENGINE("run '%s' --config '%s' -o '%s' --progress never", batch, cfg, out),
                    expect_exit);
    snprintf(path, sizeof path, "%s/results.ndjson", out);
    json_t *results = test_load_ndjson(path);
    json_t *r = json_incref(json_array_get(results, 0));
    json_decref(results);
    return r;
}

static const char *serial_of(json_t *r)
{
    return json_string_value(
        json_object_get(json_object_get(r, "CertificateInformation"), "SerialNumber"));
}

static const char *code_of(json_t *r)
{
    return json_string_value(json_object_get(json_object_get(r, "Error"), "Code"));
}

/* A one-line run that fails (exit 1) with this code. */
static void expect_failed(const char *name, const char *line, const char *code)
{
    json_t *r = run_one(name, line, 1);
    CU_ASSERT_STRING_EQUAL(code_of(r) ? code_of(r) : "(none)", code);
    json_decref(r);
}

/* PFX v2 delivery: the certificate and key installed under an alias, the PFX written as well;
 * Overwrite; renewal by KeyfactorID into every store that held the certificate. */
static void test_pfx_delivery_and_renewal(void)
{
    json_t *r = run_one("pfx1",
                        "{\"Id\":\"p1\",\"Template\":\"Default\",\"Subject\":\"CN=pfx-1.example\","
                        "\"KeyType\":\"ECC\",\"Password\":\"pfx-password-1\",\"Stores\":[{"
                        "\"StoreId\":\"" STORE_ID "\",\"Alias\":\"pfx-1\"}]}\n",
                        0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "Status")), "issued");
    CU_ASSERT_STRING_EQUAL(
        json_string_value(json_array_get(json_object_get(r, "SuccessfulStores"), 0)), STORE_ID);
    /* The PFX holds the certificate the store holds, and the store's key is bound to it. */
    char *pfx_serial = test_sh_output(NULL,
                                      "openssl pkcs12 -in '%s/out-pfx1/p1.pfx' -passin "
                                      "pass:pfx-password-1 -nokeys -clcerts 2>/dev/null | "
                                      "openssl x509 -noout -serial | cut -d= -f2",
                                      tmp);
    json_t *aliases = aliases_now();
    json_t *a = test_find_by(aliases, "Alias", "pfx-1");
    CU_ASSERT_TRUE(json_is_true(json_object_get(a, "Complete")));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(a, "SerialNumber")), serial_of(r));
    CU_ASSERT_PTR_NOT_NULL(pfx_serial ? strstr(pfx_serial, serial_of(r)) : NULL);
    free(pfx_serial);
    json_decref(aliases);
    json_decref(r);

    /* The alias exists: refused without Overwrite (before any key is made), replaced with it. */
    expect_failed("pfx2",
                  "{\"Id\":\"p2\",\"Template\":\"Default\",\"Subject\":\"CN=pfx-2.example\","
                  "\"KeyType\":\"ECC\",\"Stores\":[{\"StoreId\":\"" STORE_ID "\",\"Alias\":"
                  "\"pfx-1\",\"Overwrite\":false}]}\n",
                  "STORE_ALIAS_EXISTS");
    r = run_one("pfx3",
                "{\"Id\":\"p3\",\"Template\":\"Default\",\"Subject\":\"CN=pfx-3.example\","
                "\"KeyType\":\"ECC\",\"Stores\":[{\"StoreId\":\"" STORE_ID "\",\"Alias\":"
                "\"pfx-1\",\"Overwrite\":true}]}\n",
                0);
    char *replaced = strdup(serial_of(r) ? serial_of(r) : "");
    long long kf_id = json_integer_value(
        json_object_get(json_object_get(r, "CertificateInformation"), "KeyfactorID"));
    json_decref(r);
    aliases = aliases_now();
    a = test_find_by(aliases, "Alias", "pfx-1");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(a, "SerialNumber")), replaced);
    CU_ASSERT_PTR_NULL(json_object_get(a, "Entries"));
    json_decref(aliases);

    /* Renewal of that certificate: it goes wherever the renewed one is. */
    char line[600];
    snprintf(line, sizeof line,
             "{\"Id\":\"p4\",\"Template\":\"Default\",\"Subject\":\"CN=pfx-3.example\","
             "\"KeyType\":\"ECC\",\"RenewalCertificateId\":%lld}\n",
             kf_id);
    r = run_one("pfx4", line, 0);
    CU_ASSERT_STRING_EQUAL(
        json_string_value(json_array_get(json_object_get(r, "SuccessfulStores"), 0)), STORE_ID);
    aliases = aliases_now();
    a = test_find_by(aliases, "Alias", "pfx-1");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(a, "SerialNumber")), serial_of(r));
    CU_ASSERT_STRING_NOT_EQUAL(serial_of(r), replaced);
    CU_ASSERT_PTR_NULL(json_object_get(a, "Entries"));
    json_decref(aliases);
    json_decref(r);
    free(replaced);

    /* Unknown renewal; a store delivery whose key would stay in the HSM. */
    expect_failed("pfx5",
                  "{\"Id\":\"p5\",\"Template\":\"Default\",\"Subject\":\"CN=x\",\"KeyType\":"
                  "\"ECC\",\"RenewalCertificateId\":987654321}\n",
                  "RENEWAL_UNKNOWN");
    expect_failed("pfx6",
                  "{\"Id\":\"p6\",\"Template\":\"Default\",\"Subject\":\"CN=x\",\"Format\":"
                  "\"DER\",\"Stores\":[{\"StoreId\":\"" STORE_ID "\"}]}\n",
                  "STORE_NEEDS_KEY");
}

/* `renew --within DAYS` with a configuration that has Stores: the aliases whose current
 * certificate expires within DAYS (five put there with a one-day template) are reenrolled with
 * the default template, keeping subject and key type; the others are not touched. */
static void test_renew_store_aliases(void)
{
    char batch[700], out[700], renewed[700], path[800];
    snprintf(batch, sizeof batch, "%s/short.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-short", tmp);
    snprintf(renewed, sizeof renewed, "%s/out-renew-store", tmp);
    FILE *f = fopen(batch, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int i = 0; i < 5; i++)
        fprintf(f,
                "{\"Id\":\"short-%03d\",\"Operation\":\"Reenrollment\",\"KeystoreId\":\"" STORE_ID
                "\",\"Alias\":\"alias-%03d\",\"SubjectName\":\"CN=alias-%03d.example,O=short\","
                "\"AgentGuid\":\"" AGENT "\",\"CertificateTemplate\":\"Short\",\"KeyType\":"
                "\"ECC\"}\n",
                i, i, i);
    fclose(f);
    CU_ASSERT_EQUAL_FATAL(
        ENGINE("run '%s' --config '%s' -o '%s' --progress never", batch, cfg, out), 0);
    json_t *before = aliases_now();
    size_t count = json_array_size(before);

    CU_ASSERT_EQUAL(ENGINE("renew --within 2 --config '%s' -o '%s' -q", cfg, renewed), 0);
    snprintf(path, sizeof path, "%s/renew-batch.ndjson", renewed);
    json_t *lines = test_load_ndjson(path);
    CU_ASSERT_EQUAL(json_array_size(lines), 5);
    json_t *l0 = test_find_by(lines, "Id", "store-" STORE_ID "-alias-000");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(l0, "Operation")), "Reenrollment");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(l0, "Alias")), "alias-000");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(l0, "Template")), "Default");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(l0, "KeyType")), "ECC");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(l0, "Curve")), "1.2.840.10045.3.1.7");
    const char *subject = json_string_value(json_object_get(l0, "SubjectName"));
    CU_ASSERT_PTR_NOT_NULL(strstr(subject ? subject : "", "O=short"));
    json_decref(lines);
    snprintf(path, sizeof path, "%s/results.ndjson", renewed);
    lines = test_load_ndjson(path);
    CU_ASSERT_EQUAL(json_array_size(lines), 5);
    json_decref(lines);

    /* The five have new certificates of the default template (365 days); the rest are as they
     * were; the store holds as many aliases, each complete. */
    json_t *after = aliases_now();
    CU_ASSERT_EQUAL(json_array_size(after), count);
    int changed = 0, same = 0;
    size_t i;
    json_t *a;
    json_array_foreach(after, i, a)
    {
        const char *alias = json_string_value(json_object_get(a, "Alias"));
        json_t *b = test_find_by(before, "Alias", alias);
        const char *now_serial = json_string_value(json_object_get(a, "SerialNumber"));
        const char *was_serial = json_string_value(json_object_get(b, "SerialNumber"));
        bool differs = now_serial && was_serial && strcmp(now_serial, was_serial) != 0;
        CU_ASSERT_TRUE(json_is_true(json_object_get(a, "Complete")));
        if (strncmp(alias, "alias-00", 8) == 0 && alias[8] >= '0' && alias[8] <= '4') {
            changed += differs;
            const char *not_after = json_string_value(json_object_get(a, "NotAfter"));
            char year_now[8], year_then[8];
            time_t in_300 = time(NULL) + 300L * 86400;
            strftime(year_now, sizeof year_now, "%Y", gmtime(&in_300));
            snprintf(year_then, sizeof year_then, "%.4s", not_after ? not_after : "");
            CU_ASSERT(strcmp(year_then, year_now) >= 0);
        } else {
            same += !differs;
        }
    }
    CU_ASSERT_EQUAL(changed, 5);
    CU_ASSERT_EQUAL((size_t)same, count - 5);
    json_decref(before);
    json_decref(after);

    /* Nothing is due now: no OUTDIR is made. */
    snprintf(renewed, sizeof renewed, "%s/out-renew-store2", tmp);
    CU_ASSERT_EQUAL(ENGINE("renew --within 2 --config '%s' -o '%s' -q", cfg, renewed), 0);
    CU_ASSERT_NOT_EQUAL(access(renewed, F_OK), 0);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_reenroll_200_aliases),       TEST_CASE(test_kill_at_each_step_then_resume),
        TEST_CASE(test_bad_store_lines_fail_alone), TEST_CASE(test_pfx_delivery_and_renewal),
        TEST_CASE(test_renew_store_aliases),        TEST_END,
    };
    return test_main("store", cases, setup, teardown);
}
