/* POST /CertificateStores/Reenrollment against `hsmenroll serve`: the Python SDK's body reenrolls
 * an alias of a SoftHSM store (204), the alias then holds one complete entry, a new key and a
 * certificate from the embedded CA (downloaded and checked with openssl verify); bad bodies get
 * the per-request codes of `run`. */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca/hsm_signer.h"
#include "hsm/hsm.h"
#include "tests/support.h"

#define STORE_ID "6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10"
#define AGENT    "0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"

static char *tmp, *home;
static char creds[600], url[256], cfg[600];
static pid_t server_pid;
static unsigned char *old_key; /* the alias's public key before (DER) */
static int old_len;

static int start_server(void)
{
    char options[2048];
    snprintf(options, sizeof options, "--config '%s' --credentials '%s'", cfg, creds);
    server_pid = test_start_serve_ready(tmp, "", options, url, sizeof url);
    return server_pid > 0 ? 0 : -1;
}

/* One alias in the store as a device holds it: a P-256 key pair made in the token and a
 * self-issued certificate under the same label and CKA_ID. */
static int populate(const char *alias)
{
    char path[700];
    snprintf(path, sizeof path, "%s/pin", home);
    char *pin = test_read_file(path, NULL);
    if (pin == NULL)
        return -1;
    pin[strcspn(pin, "\n")] = '\0';
    hsm_error herr;
    hsm_module *m = hsm_module_load(HSMENROLL_SOFTHSM_MODULE, &herr);
    hsm_token token;
    hsm_session s;
    int rc = -1;
    if (m == NULL || hsm_token_open(m, "store-a", pin, &token, &herr) != 0 ||
        hsm_session_open(&token, &s, &herr) != 0) {
        fprintf(stderr, "populate: %s\n", herr.message);
        free(pin);
        return -1;
    }
    free(pin);
    hsm_key_spec spec = {.type = HSM_KEY_EC, .curve = HSM_CURVE_P256};
    hsm_keypair pair;
    if (hsm_generate_keypair_with_id(&s, &spec, HSM_STORAGE_TOKEN, alias, NULL, &pair, &herr) ==
        0) {
        EVP_PKEY *pub = hsm_keypair_public(&pair, NULL);
        EVP_PKEY *issuer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        X509 *cert = X509_new();
        X509_NAME *name = X509_NAME_new();
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)alias, -1, -1,
                                   0);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
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
        rc = hsm_create_certificate(&s, &d, alias, pair.id, HSM_KEY_ID_LEN, NULL, &herr);
        old_len = i2d_PUBKEY(pub, &old_key);
        OPENSSL_free(der);
        OPENSSL_free(subject);
        X509_NAME_free(name);
        X509_free(cert);
        EVP_PKEY_free(pub);
        EVP_PKEY_free(issuer);
        hsm_keypair_release(&pair);
    }
    if (rc != 0)
        fprintf(stderr, "populate: %s\n", herr.message);
    hsm_session_close(&s);
    hsm_token_close(&token);
    hsm_module_unload(m);
    return rc;
}

static char *hash_of(const char *password)
{
    char *out =
        test_sh_output(NULL, "printf '%%s\\n' '%s' | '%s' serve hash-password --iterations 1000",
                       password, HSMENROLL_BIN);
    if (out != NULL)
        out[strcspn(out, "\n")] = '\0';
    return out;
}

static int setup(void)
{
    if (test_engine_home("hsmenroll-serve-store", &tmp, &home) != 0)
        return 1;
    unsetenv("HSMENROLL_PIN");
    char conf[700];
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", home);
    setenv("SOFTHSM2_CONF", conf, 1);
    setenv("HSMENROLL_HOME", home, 1);
    snprintf(creds, sizeof creds, "%s/users.json", tmp);
    snprintf(cfg, sizeof cfg, "%s/serve.json", tmp);
    char *fleet = hash_of("fleet-secret");
    if (fleet == NULL)
        return 1;
    char text[2048];
    snprintf(text, sizeof text,
             "{\"Users\":[{\"Name\":\"fleet\",\"Password\":\"%s\",\"Roles\":[\"Fleet\"]}]}", fleet);
    free(fleet);
    if (test_write_file(creds, text) != 0 || chmod(creds, 0600) != 0)
        return 1;
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"],\"PinFile\":\"%s/pin\",\"SoPinFile\":"
             "\"%s/so-pin\"},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"embedded\","
             "\"Type\":\"local\",\"Home\":\"%s/ca\",\"Token\":\"hsmenroll-ca\",\"PinFile\":\"home/"
             "ca-pin\"}],"
             "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[1]}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1,"
             "\"TemplateDefault\":true,\"AllowedEnrollmentTypes\":3}],"
             "\"Stores\":[{\"Id\":\"" STORE_ID "\",\"Token\":\"store-a\",\"AgentGuid\":\"" AGENT
             "\"}]}",
             home, tmp, home);
    if (test_write_file(cfg, text) != 0)
        return 1;
    if (test_sh("'%s' token init --config '%s' --label store-a -q 2>>'%s/engine.log'",
                HSMENROLL_BIN, cfg, tmp) != 0 ||
        populate("web-01") != 0)
        return 1;
    return start_server();
}

static int teardown(void)
{
    if (server_pid > 0) {
        test_stop(server_pid);
    }
    OPENSSL_free(old_key);
    test_engine_home_free(tmp, home);
    return 0;
}

/* POSTs body to path as the Python SDK does; the status, the answer body in *answer. */
static int post(const char *path, const char *body, char **answer)
{
    char body_file[700], out[700];
    snprintf(body_file, sizeof body_file, "%s/request.body", tmp);
    snprintf(out, sizeof out, "%s/answer.body", tmp);
    test_write_file(body_file, body);
    unlink(out);
    char *status = test_sh_output(
        NULL,
        "curl -s -o '%s' -w '%%{http_code}' -X POST -u 'fleet@kf.example:fleet-secret' "
        "-H 'Content-Type: application/json' -H 'x-keyfactor-api-version: 1' "
        "-H 'x-keyfactor-requested-with: APIClient' --data-binary '@%s' '%s%s'",
        out, body_file, url, path);
    int st = status ? atoi(status) : -1;
    free(status);
    char *text = test_read_file(out, NULL);
    if (st >= 400)
        fprintf(stderr, "\n  POST %s: %d %.600s\n", path, st, text ? text : "");
    if (answer != NULL)
        *answer = text;
    else
        free(text);
    return st;
}

/* The alias as `token list --aliases --json` sees it. */
static json_t *alias_now(const char *alias)
{
    json_t *doc = test_sh_json(NULL, "'%s' token list --config '%s' --aliases --json 2>/dev/null",
                               HSMENROLL_BIN, cfg);
    json_t *found = json_incref(
        test_find_by(json_object_get(json_array_get(doc, 0), "Aliases"), "Alias", alias));
    json_decref(doc);
    return found;
}

static void test_reenrollment(void)
{
    json_t *before = alias_now("web-01");
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);
    json_decref(before);
    /* The Python SDK's body (seed 003). */
    int st = post("/CertificateStores/Reenrollment",
                  "{\"KeystoreId\": \"" STORE_ID "\", \"SubjectName\": "
                  "\"CN=web-01.example.test,O=Reenrolled\", \"AgentGuid\": \"" AGENT "\", "
                  "\"Alias\": \"web-01\", \"JobProperties\": {}, \"CertificateAuthority\": "
                  "\"embedded\", \"CertificateTemplate\": \"Default\"}",
                  NULL);
    CU_ASSERT_EQUAL(st, 204);
    json_t *a = alias_now("web-01");
    CU_ASSERT_TRUE(json_is_true(json_object_get(a, "Complete")));
    CU_ASSERT_PTR_NULL(json_object_get(a, "Entries")); /* one entry: the old one is gone */
    CU_ASSERT_PTR_NOT_NULL(
        strstr(json_string_value(json_object_get(a, "SubjectDN")) ?: "", "O=Reenrolled"));
    json_decref(a);

    /* The new certificate, from the embedded CA's issuance log (GET /Certificates, then
     * Download with its chain), verifies against the CA's root. */
    char *out = test_sh_output(NULL,
                               "curl -s -u 'fleet:fleet-secret' -H 'x-keyfactor-requested-with: "
                               "APIClient' '%s/Certificates?QueryString=IssuedCN%%20-eq%%20%%22"
                               "web-01.example.test%%22'",
                               url);
    json_t *list = out ? json_loads(out, 0, NULL) : NULL;
    free(out);
    CU_ASSERT_EQUAL(json_array_size(list), 1);
    long long id = json_integer_value(json_object_get(json_array_get(list, 0), "Id"));
    json_decref(list);
    char body[200], *answer = NULL;
    snprintf(body, sizeof body,
             "{\"CertID\":%lld,\"IncludeChain\":true,\"ChainOrder\":\"EndEntityFirst\"}", id);
    char pem[700];
    snprintf(pem, sizeof pem, "%s/new.pem", tmp);
    out = test_sh_output(NULL,
                         "curl -s -u 'fleet:fleet-secret' -H 'x-keyfactor-requested-with: "
                         "APIClient' -H 'x-certificateformat: PEM' -H 'Content-Type: "
                         "application/json' --data '%s' '%s/Certificates/Download'",
                         body, url);
    json_t *dl = out ? json_loads(out, 0, NULL) : NULL;
    free(out);
    size_t len = 0;
    const char *b64 = json_string_value(json_object_get(dl, "Content"));
    char b64_path[700];
    snprintf(b64_path, sizeof b64_path, "%s/new.b64", tmp);
    test_write_file(b64_path, b64 ? b64 : "");
    json_decref(dl);
    CU_ASSERT_EQUAL(test_sh("base64 -d '%s' > '%s' && openssl verify -CAfile '%s/ca/root.pem' "
                            "-untrusted '%s' '%s' >/dev/null",
                            b64_path, pem, home, pem, pem),
                    0);
    /* A new key: the certificate's public key is not the old one. */
    char *newpub = test_read_file(pem, &len);
    BIO *bio = newpub ? BIO_new_mem_buf(newpub, (int)len) : NULL;
    X509 *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    unsigned char *der = NULL;
    int der_len = cert ? i2d_PUBKEY(X509_get0_pubkey(cert), &der) : -1;
    CU_ASSERT_TRUE(der_len > 0);
    CU_ASSERT_FALSE(der_len == old_len && memcmp(der, old_key, (size_t)old_len) == 0);
    OPENSSL_free(der);
    X509_free(cert);
    BIO_free(bio);
    free(newpub);
    free(answer);
}

static void test_bad_bodies(void)
{
    char *answer = NULL;
    int st = post("/CertificateStores/Reenrollment",
                  "{\"KeystoreId\":\"" STORE_ID "\",\"SubjectName\":\"CN=x\",\"AgentGuid\":\"" AGENT
                  "\",\"Alias\":\"no-such-alias\",\"CertificateTemplate\":\"Default\"}",
                  &answer);
    CU_ASSERT_TRUE(st >= 400 && st < 500);
    CU_ASSERT_PTR_NOT_NULL(answer ? strstr(answer, "STORE_ALIAS_UNKNOWN") : NULL);
    free(answer);
    st = post("/CertificateStores/Reenrollment",
              "{\"KeystoreId\":\"" STORE_ID "\",\"SubjectName\":\"CN=x\",\"AgentGuid\":"
              "\"11111111-2222-4333-8444-555555555555\",\"Alias\":\"web-01\"}",
              &answer);
    CU_ASSERT_EQUAL(st, 400);
    CU_ASSERT_PTR_NOT_NULL(answer ? strstr(answer, "STORE_AGENT_MISMATCH") : NULL);
    free(answer);
    st = post("/CertificateStores/Reenrollment", "{\"KeystoreId\":\"" STORE_ID "\",\"Colour\":1}",
              &answer);
    CU_ASSERT_EQUAL(st, 400);
    CU_ASSERT_PTR_NOT_NULL(answer ? strstr(answer, "UNKNOWN_FIELD") : NULL);
    free(answer);
    /* The alias is untouched by the refused requests: still one complete entry. */
    json_t *a = alias_now("web-01");
    CU_ASSERT_TRUE(json_is_true(json_object_get(a, "Complete")));
    CU_ASSERT_PTR_NULL(json_object_get(a, "Entries"));
    json_decref(a);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_reenrollment),
        TEST_CASE(test_bad_bodies),
        TEST_END,
    };
    return test_main("serve_store", cases, setup, teardown);
}
