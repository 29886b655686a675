/* Enrollment-pattern policy, table-driven: every rule with a passing and a failing case, the
 * examples printed in the POST /EnrollmentPatterns page (the O regex, the e-mail metadata
 * validation, the L/ST defaults, the ECDSA KeyInfo policy), CSR lines and key reuse. Each request
 * goes through batch/linecheck.h, the code `run` and `validate` share. */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/linecheck.h"
#include "formats/csr.h"
#include "formats/dn.h"
#include "formats/san.h"
#include "tests/support.h"

static config *cfg;
static EVP_PKEY *rsa3072, *rsa2048, *p256, *ed25519;

static int setup(void)
{
    error_list errors = {0};
    cfg = config_load_file(HSMENROLL_SOURCE_DIR "/tests/data/policy-config.json", &errors);
    for (size_t i = 0; i < errors.count; i++)
        fprintf(stderr, "config: %s\n", errors.items[i].message);
    error_list_free(&errors);
    rsa3072 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
    rsa2048 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    return cfg && rsa3072 && rsa2048 && p256 && ed25519 ? 0 : 1;
}

static int teardown(void)
{
    config_free(cfg);
    EVP_PKEY_free(rsa3072);
    EVP_PKEY_free(rsa2048);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(ed25519);
    return 0;
}

/* A CSR for key, with subject and (optional) one dNSName, as base-64 DER. */
static char *make_csr(EVP_PKEY *key, const char *subject, const char *dns)
{
    X509_REQ *req = X509_REQ_new();
    enroll_error err;
    X509_NAME *name = dn_parse(subject, "Subject", &err);
    X509_REQ_set_version(req, X509_REQ_VERSION_1);
    X509_REQ_set_subject_name(req, name);
    X509_REQ_set_pubkey(req, key);
    if (dns != NULL) {
        GENERAL_NAMES *sans = sk_GENERAL_NAME_new_null();
        san_add(sans, SAN_DNS, dns, "dns", &err);
        STACK_OF(X509_EXTENSION) *exts = NULL;
        X509V3_add1_i2d(&exts, NID_subject_alt_name, sans, 0, X509V3_ADD_DEFAULT);
        X509_REQ_add_extensions(req, exts);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        GENERAL_NAMES_free(sans);
    }
    bool edwards = EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519;
    X509_REQ_sign(req, key, edwards ? NULL : EVP_sha256());
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    char *b64 = malloc((size_t)len * 2 + 4);
    EVP_EncodeBlock((unsigned char *)b64, der, len);
    OPENSSL_free(der);
    X509_NAME_free(name);
    X509_REQ_free(req);
    return b64;
}

/* The key as base-64 PKCS#8 DER. */
static char *pkcs8_b64(EVP_PKEY *key)
{
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
    unsigned char *der = NULL;
    int len = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
    char *b64 = malloc((size_t)len * 2 + 4);
    EVP_EncodeBlock((unsigned char *)b64, der, len);
    OPENSSL_clear_free(der, (size_t)len);
    PKCS8_PRIV_KEY_INFO_free(p8);
    return b64;
}

typedef struct checked {
    enroll_request *req;
    policy_decision decision;
    error_list errors;
} checked;

/* Runs one line (a JSON object) through a checker. */
static void check_with(line_checker *lc, json_t *line, checked *out)
{
    memset(out, 0, sizeof *out);
    char *text = json_dumps(line, JSON_COMPACT);
    const char *id;
    out->req = line_check(lc, text, strlen(text), 1, &out->decision, &out->errors, &id);
    free(text);
    json_decref(line);
}

static void check_line(json_t *line, checked *out)
{
    line_checker lc;
    request_defaults d = {.pattern_id = -1, .password_length = 12};
    line_checker_init(&lc, cfg, &d, NULL, NULL);
    check_with(&lc, line, out);
    line_checker_free(&lc);
}

static void release(checked *c)
{
    request_free(c->req);
    error_list_free(&c->errors);
}

/* Exactly these codes (in any order), each once unless listed twice. */
static bool codes_are(const checked *c, const char *first, ...)
{
    const char *want[16];
    size_t n = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *code = first; code != NULL && n < 16; code = va_arg(ap, const char *))
        want[n++] = code;
    va_end(ap);
    bool ok = n == c->errors.count;
    bool used[16] = {false};
    for (size_t i = 0; ok && i < c->errors.count; i++) {
        bool found = false;
        for (size_t k = 0; k < n && !found; k++)
            if (!used[k] && strcmp(want[k], c->errors.items[i].code) == 0)
                used[k] = found = true;
        ok = found;
    }
    if (!ok) {
        fprintf(stderr, "\n  expected:");
        for (size_t k = 0; k < n; k++)
            fprintf(stderr, " %s", want[k]);
        fprintf(stderr, "\n  got:");
        for (size_t i = 0; i < c->errors.count; i++)
            fprintf(stderr, " %s [%s] %s;", c->errors.items[i].code, c->errors.items[i].field,
                    c->errors.items[i].message);
        fprintf(stderr, "\n");
    }
    return ok;
}

static bool valid(const checked *c)
{
    return codes_are(c, NULL);
}

static const char *error_field(const checked *c, size_t i)
{
    return i < c->errors.count ? c->errors.items[i].field : "(none)";
}

/* Adds the fields of extra (a JSON object text, or NULL) to line. */
static json_t *with_fields(json_t *line, const char *extra)
{
    if (extra != NULL) {
        json_t *more = json_loads(extra, 0, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(more);
        json_object_update(line, more);
        json_decref(more);
    }
    return line;
}

/* A PFX line for the "Web" pattern (1); fields merged from extra (a JSON object text). */
static json_t *web_line(const char *subject, const char *extra)
{
    json_t *line = json_pack("{s:s, s:i, s:s, s:s, s:s}", "Id", "w1", "EnrollmentPatternId", 1,
                             "Subject", subject, "KeyType", "ECC", "CustomFriendlyName", "w1");
    return with_fields(line, extra);
}

/* Checks one line alone: no error when code is NULL, else exactly that one error (on field,
   unless field is NULL). */
static void expect(json_t *line, const char *code, const char *field)
{
    checked c;
    check_line(line, &c);
    if (code == NULL) {
        CU_ASSERT_TRUE(valid(&c));
    } else {
        CU_ASSERT_TRUE(codes_are(&c, code, NULL));
        if (field != NULL)
            CU_ASSERT_STRING_EQUAL(error_field(&c, 0), field);
    }
    release(&c);
}

#define SEED_O "CN=www.keyexample.com,O=\"Key Example, Inc.\""

static void test_seed_example_passes_and_applies_defaults(void)
{
    checked c;
    check_line(web_line(SEED_O, NULL), &c);
    CU_ASSERT_TRUE(valid(&c));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c.req);
    /* L and ST defaults, in their customary place. */
    char *subject = dn_format(c.req->subject);
    CU_ASSERT_STRING_EQUAL(subject,
                           "CN=www.keyexample.com,O=\"Key Example, Inc.\",L=Denver,ST=Colorado");
    free(subject);
    /* RFC 2818: the CN became a DNS SAN. */
    CU_ASSERT_TRUE(san_has_dns(c.req->sans, "www.keyexample.com"));
    /* Metadata defaults; the default owner. */
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(c.req->metadata, "Email-Contact")),
                           "reggie.wallace@keyexample.com");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(c.req->metadata, "BusinessUnit")),
                           "E-Business");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(c.req->metadata, "Secret")),
                           "classified");
    CU_ASSERT_EQUAL(c.req->owner_role_id, 3);
    CU_ASSERT_EQUAL(c.decision.pattern->id, 1);
    CU_ASSERT_STRING_EQUAL(c.decision.template_->name, "Web");
    release(&c);
    /* A default never replaces what the subject has. */
    check_line(web_line("CN=www.keyexample.com,O=Key Example Company,L=Boulder", NULL), &c);
    CU_ASSERT_TRUE(valid(&c));
    subject = dn_format(c.req->subject);
    CU_ASSERT_STRING_EQUAL(subject,
                           "CN=www.keyexample.com,O=Key Example Company,L=Boulder,ST=Colorado");
    free(subject);
    release(&c);
}

static void test_seed_regex_on_o(void)
{
    checked c;
    check_line(web_line("CN=www.keyexample.com,O=Acme", NULL), &c);
    CU_ASSERT_TRUE(codes_are(&c, "POLICY_REGEX", NULL));
    CU_ASSERT_STRING_EQUAL(error_field(&c, 0), "Subject.O");
    CU_ASSERT_STRING_EQUAL(c.errors.items[0].message,
                           "Organization must be Key Example, Inc or Key Example Company.");
    release(&c);
    /* CaseSensitive true. */
    expect(web_line("CN=www.keyexample.com,O=key example company", NULL), "POLICY_REGEX", NULL);
    /* An absent O is tested as "", which the expression refuses. */
    expect(web_line("CN=www.keyexample.com", NULL), "POLICY_REGEX", NULL);
}

static void test_seed_ecdsa_key_info(void)
{
    static const struct {
        const char *extra;
        const char *code; /* NULL: allowed */
        const char *field;
    } cases[] = {
        {"{\"KeyType\":\"ECC\",\"KeyLength\":256}", NULL, NULL},
        {"{\"KeyType\":\"ECC\",\"Curve\":\"1.3.132.0.34\"}", NULL, NULL},
        {"{\"KeyType\":\"ECC\",\"KeyLength\":521}", NULL, NULL},
        {"{\"KeyType\":\"RSA\",\"KeyLength\":2048}", "POLICY_KEY_ALGORITHM", "KeyType"},
        {"{\"KeyType\":\"Ed25519\"}", "POLICY_KEY_ALGORITHM", "KeyType"},
        {"{\"KeyType\":\"Ed448\"}", "POLICY_KEY_ALGORITHM", "KeyType"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect(web_line(SEED_O, cases[i].extra), cases[i].code, cases[i].field);
    }
}

static void test_seed_email_metadata(void)
{
    static const struct {
        const char *metadata;
        const char *code;
    } cases[] = {
        {"{\"Metadata\":{\"Email-Contact\":\"fname.lname@keyexample.com\"}}", NULL},
        {"{\"Metadata\":{\"Email-Contact\":\"USER@KEYEXAMPLE.ORG\"}}", NULL}, /* case-insensitive */
        {"{\"Metadata\":{\"Email-Contact\":\"someone@example.net\"}}", "POLICY_METADATA_INVALID"},
        {"{\"Metadata\":{\"email-contact\":\"a b@keyexample.com\"}}", "POLICY_METADATA_INVALID"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        checked c;
        check_line(web_line(SEED_O, cases[i].metadata), &c);
        if (cases[i].code == NULL) {
            CU_ASSERT_TRUE(valid(&c));
        } else {
            CU_ASSERT_TRUE(codes_are(&c, cases[i].code, NULL));
            CU_ASSERT_STRING_EQUAL(error_field(&c, 0),
                                   i == 3 ? "Metadata.email-contact" : "Metadata.Email-Contact");
            /* The pattern's Message is the error text. */
            CU_ASSERT_PTR_NOT_NULL(
                strstr(c.errors.items[0].message, "Your email address must be of the form"));
        }
        release(&c);
    }
}

static void test_metadata_rules(void)
{
    static const struct {
        const char *metadata;
        const char *code;
    } cases[] = {
        {"{\"Metadata\":{\"BusinessUnit\":\"it\"}}", NULL}, /* options, case-insensitive */
        {"{\"Metadata\":{\"BusinessUnit\":\"Legal\"}}", "POLICY_METADATA_OPTION"},
        {"{\"Metadata\":{\"Rack\":\"42\"}}", NULL},
        {"{\"Metadata\":{\"Rack\":42}}", NULL}, /* numbers are accepted as their text */
        {"{\"Metadata\":{\"Rack\":\"forty-two\"}}", "POLICY_METADATA_INVALID"},
        {"{\"Metadata\":{\"Installed\":\"2024-02-29\"}}", NULL},
        {"{\"Metadata\":{\"Installed\":\"2023-02-29\"}}", "POLICY_METADATA_INVALID"},
        {"{\"Metadata\":{\"Critical\":\"true\"}}", NULL},
        {"{\"Metadata\":{\"Critical\":\"maybe\"}}", "POLICY_METADATA_INVALID"},
        {"{\"Metadata\":{\"Secret\":\"mine\"}}", "POLICY_METADATA_HIDDEN"},
        {"{\"Metadata\":{\"Colour\":\"red\"}}", "POLICY_METADATA_UNKNOWN"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect(web_line(SEED_O, cases[i].metadata), cases[i].code, NULL);
    }
}

static void test_rfc2818_common_name_and_wildcards(void)
{
    checked c;
    /* Not a host name and no dns SAN: refused under RFCEnforcement. */
    expect(web_line("CN=host_name,O=Key Example Company", NULL), "POLICY_RFC2818", NULL);
    /* The same with a dns SAN: fine, and the CN is not added. */
    check_line(web_line("CN=host_name,O=Key Example Company",
                        "{\"SANs\":{\"dns\":[\"device.keyexample.com\"]}}"),
               &c);
    CU_ASSERT_TRUE(valid(&c));
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(c.req->sans), 1);
    release(&c);
    /* Settings.CommonNameRegex ^[^ ]+$. */
    check_line(web_line("CN=two words,O=Key Example Company",
                        "{\"SANs\":{\"dns\":[\"a.keyexample.com\"]}}"),
               &c);
    CU_ASSERT_TRUE(codes_are(&c, "POLICY_COMMON_NAME", NULL));
    CU_ASSERT_STRING_EQUAL(error_field(&c, 0), "Subject.CN");
    release(&c);
    /* Pattern 1 allows wildcards. */
    expect(web_line("CN=*.keyexample.com,O=Key Example Company", NULL), NULL, NULL);
}

static void test_settings_friendly_name_and_csp(void)
{
    json_t *line = web_line(SEED_O, "{\"Format\":\"PFX\"}");
    json_object_del(line, "CustomFriendlyName");
    expect(line, "POLICY_FRIENDLY_NAME_REQUIRED", NULL);
    line = web_line(SEED_O, "{\"Format\":\"PEM\"}"); /* only a PFX needs one */
    json_object_del(line, "CustomFriendlyName");
    expect(line, NULL, NULL);
    expect(web_line(SEED_O, "{\"MicrosoftTargetCSP\":\"microsoft software key storage "
                            "provider\"}"),
           NULL, NULL);
    expect(web_line(SEED_O, "{\"MicrosoftTargetCSP\":\"Some Other CSP\"}"), "POLICY_CSP", NULL);
}

static void test_template_pattern_precedence(void)
{
    checked c;
    /* Template alone: its default pattern. */
    json_t *line = web_line(SEED_O, "{\"Template\":\"web\"}");
    json_object_del(line, "EnrollmentPatternId");
    check_line(line, &c);
    CU_ASSERT_TRUE(valid(&c));
    CU_ASSERT_EQUAL(c.decision.pattern->id, 1);
    release(&c);
    /* Both, agreeing, then disagreeing. */
    expect(web_line(SEED_O, "{\"Template\":\"Web\"}"), NULL, NULL);
    expect(web_line(SEED_O, "{\"Template\":\"Device\"}"), "TEMPLATE_MISMATCH", NULL);
    expect(web_line(SEED_O, "{\"EnrollmentPatternId\":99}"), "UNKNOWN_PATTERN", NULL);
    line = web_line(SEED_O, "{\"Template\":\"Nope\"}");
    json_object_del(line, "EnrollmentPatternId");
    expect(line, "UNKNOWN_TEMPLATE", NULL);
    line = web_line(SEED_O, "{\"Template\":\"Orphan\"}");
    json_object_del(line, "EnrollmentPatternId");
    expect(line, "NO_DEFAULT_PATTERN", NULL);
    /* Pattern 2 takes CSR enrollments only. */
    expect(web_line(SEED_O, "{\"EnrollmentPatternId\":2,\"OwnerRoleId\":3,"
                            "\"KeyType\":\"Ed25519\",\"Metadata\":{\"Rack\":\"1\"},"
                            "\"AdditionalEnrollmentFields\":{\"Color\":\"Red\",\"Note\":\"n\"}}"),
           "ENROLLMENT_TYPE_NOT_ALLOWED", NULL);
}

static void test_ca_selection(void)
{
    checked c;
    check_line(web_line(SEED_O, "{\"CertificateAuthority\":\"ca2\"}"), &c);
    CU_ASSERT_TRUE(valid(&c));
    CU_ASSERT_STRING_EQUAL(c.decision.ca->name, "corp\\ca2");
    release(&c);
    check_line(web_line(SEED_O, "{\"CertificateAuthority\":\"corp\\\\ca1\"}"), &c);
    CU_ASSERT_TRUE(valid(&c));
    CU_ASSERT_EQUAL(c.decision.ca->id, 1);
    release(&c);
    expect(web_line(SEED_O, "{\"CertificateAuthority\":\"other\"}"), "CA_NOT_ALLOWED", NULL);
    expect(web_line(SEED_O, "{\"CertificateAuthority\":\"nowhere\"}"), "UNKNOWN_CA", NULL);
    /* None named: a random one of the template's CAs, never another. */
    int seen[4] = {0};
    for (int i = 0; i < 60; i++) {
        check_line(web_line(SEED_O, NULL), &c);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c.decision.ca);
        seen[c.decision.ca->id]++;
        release(&c);
    }
    CU_ASSERT_TRUE(seen[1] > 0 && seen[2] > 0 && seen[3] == 0);
}

static void test_owner_role(void)
{
    checked c;
    check_line(web_line(SEED_O, "{\"OwnerRoleName\":\"fleet operators\"}"), &c);
    CU_ASSERT_TRUE(valid(&c));
    CU_ASSERT_EQUAL(c.req->owner_role_id, -1); /* the given one stays; no default added */
    release(&c);
    expect(web_line(SEED_O, "{\"OwnerRoleName\":\"Nobody\"}"), "POLICY_OWNER_UNKNOWN", NULL);
    expect(web_line(SEED_O, "{\"OwnerRoleId\":99}"), "POLICY_OWNER_UNKNOWN", NULL);
    expect(web_line(SEED_O, "{\"OwnerRoleId\":3,\"OwnerRoleName\":\"Power Users\"}"),
           "OWNER_ROLE_CONFLICT", NULL);
}

/* CSR lines for pattern 2 ("Strict devices") or 3 ("Hidden owner"). */
static json_t *csr_line(const char *id, int pattern, const char *csr, const char *extra)
{
    json_t *line = json_pack("{s:s, s:s, s:i, s:s}", "Id", id, "Operation", "CSR",
                             "EnrollmentPatternId", pattern, "CSR", csr);
    return with_fields(line, extra);
}

#define STRICT_OK                                                                                  \
    "{\"OwnerRoleId\":4,\"Metadata\":{\"Rack\":\"7\"},"                                            \
    "\"AdditionalEnrollmentFields\":{\"Color\":\"Green\",\"Note\":\"rack 7\"}}"

static void test_csr_lines_under_a_strict_pattern(void)
{
    char *ok = make_csr(rsa3072, "CN=dev-1.keyexample.com", "dev-1.keyexample.com");
    checked c;
    check_line(csr_line("c1", 2, ok, STRICT_OK), &c);
    CU_ASSERT_TRUE(valid(&c));
    CU_ASSERT_EQUAL(c.decision.ca->id, 3); /* RestrictCAs: only CA 3 */
    CU_ASSERT_EQUAL(c.req->key.algorithm, KEYALG_RSA);
    CU_ASSERT_EQUAL(c.req->key.bits, 3072);
    CU_ASSERT_EQUAL(c.req->format, FORMAT_PEM);
    CU_ASSERT_FALSE(c.req->include_chain); /* the CSR default */
    release(&c);

    /* The line's SANs are merged with the CSR's. */
    check_line(csr_line("c1", 2, ok,
                        "{\"OwnerRoleId\":4,\"Metadata\":{\"Rack\":\"7\"},"
                        "\"AdditionalEnrollmentFields\":{\"Color\":\"Green\",\"Note\":\"x\"},"
                        "\"SANs\":{\"dns\":[\"alias.keyexample.com\",\"dev-1.keyexample.com\"]}}"),
               &c);
    CU_ASSERT_TRUE(valid(&c));
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(c.req->sans), 2);
    CU_ASSERT_TRUE(san_has_dns(c.req->sans, "alias.keyexample.com"));
    release(&c);

    char *small = make_csr(rsa2048, "CN=dev-2", NULL);
    check_line(csr_line("c2", 2, small, STRICT_OK), &c);
    CU_ASSERT_TRUE(codes_are(&c, "POLICY_KEY_SIZE", NULL));
    CU_ASSERT_STRING_EQUAL(error_field(&c, 0), "CSR");
    release(&c);

    char *ec = make_csr(p256, "CN=dev-3", NULL);
    expect(csr_line("c3", 2, ec, STRICT_OK), "POLICY_KEY_ALGORITHM", NULL);

    char *ed = make_csr(ed25519, "CN=dev-4", NULL);
    check_line(csr_line("c4", 2, ed, STRICT_OK), &c);
    CU_ASSERT_TRUE(valid(&c));
    CU_ASSERT_EQUAL(c.req->key.algorithm, KEYALG_ED25519);
    release(&c);

    /* AllowWildcards false: in the CN and in a dns SAN. */
    char *wild = make_csr(ed25519, "CN=*.keyexample.com", "*.devices.keyexample.com");
    check_line(csr_line("c5", 2, wild, STRICT_OK), &c);
    CU_ASSERT_TRUE(codes_are(&c, "POLICY_WILDCARD", "POLICY_WILDCARD", NULL));
    release(&c);

    /* Owner required; enrollment fields mandatory, with options; metadata required. */
    check_line(csr_line("c6", 2, ed, "{}"), &c);
    CU_ASSERT_TRUE(codes_are(&c, "POLICY_OWNER_REQUIRED", "POLICY_METADATA_REQUIRED",
                             "POLICY_ENROLLMENT_FIELD_REQUIRED", "POLICY_ENROLLMENT_FIELD_REQUIRED",
                             NULL));
    release(&c);
    check_line(csr_line("c7", 2, ed,
                        "{\"OwnerRoleId\":4,\"Metadata\":{\"Rack\":\"7\"},"
                        "\"AdditionalEnrollmentFields\":{\"Color\":\"Blue\",\"Note\":\"n\","
                        "\"Shape\":\"round\"}}"),
               &c);
    CU_ASSERT_TRUE(
        codes_are(&c, "POLICY_ENROLLMENT_FIELD_OPTION", "POLICY_ENROLLMENT_FIELD_UNKNOWN", NULL));
    release(&c);

    /* Pattern 3: the owner is hidden; its default applies. */
    check_line(csr_line("c8", 3, ed, NULL), &c);
    CU_ASSERT_TRUE(valid(&c));
    CU_ASSERT_STRING_EQUAL(c.req->owner_role_name, "Fleet Operators");
    release(&c);
    expect(csr_line("c9", 3, ed, "{\"OwnerRoleId\":3}"), "POLICY_OWNER_NOT_ALLOWED", NULL);
    free(ok);
    free(small);
    free(ec);
    free(ed);
    free(wild);
}

static void test_csr_decoding_and_private_key(void)
{
    char *ed = make_csr(ed25519, "CN=dev-1", NULL);
    checked c;
    /* PEM as well as base 64. */
    BIO *bio = BIO_new(BIO_s_mem());
    size_t len = strlen(ed);
    char *pem = malloc(len + 200);
    snprintf(pem, len + 200,
             "-----BEGIN CERTIFICATE REQUEST-----\n%s\n-----END CERTIFICATE "
             "REQUEST-----\n",
             ed);
    expect(csr_line("p1", 3, pem, NULL), NULL, NULL);
    free(pem);
    BIO_free(bio);
    /* Garbage; a tampered signature. */
    expect(csr_line("p2", 3, "bm90IGEgY3Ny", NULL), "INVALID_CSR", NULL);
    char *bad = strdup(ed);
    size_t n = strlen(bad);
    bad[n - 8] = bad[n - 8] == 'A' ? 'B' : 'A'; /* inside the signature */
    expect(csr_line("p3", 3, bad, NULL), "CSR_SIGNATURE_INVALID", NULL);
    free(bad);
    /* The PrivateKey is retained only under a template that allows it, and must match. */
    char *key = pkcs8_b64(ed25519);
    char extra[4096];
    snprintf(extra, sizeof extra, "{\"PrivateKey\":\"%s\"}", key);
    check_line(csr_line("p4", 3, ed, extra), &c);
    CU_ASSERT_TRUE(valid(&c));
    CU_ASSERT_PTR_NOT_NULL(c.req->private_key);
    release(&c);
    char *ec_csr = make_csr(p256, "CN=www.keyexample.com,O=Key Example Company", NULL);
    char *ec_key = pkcs8_b64(p256);
    snprintf(extra, sizeof extra, "{\"PrivateKey\":\"%s\"}", ec_key);
    check_line(csr_line("p5", 1, ec_csr, extra), &c); /* template Web: no KeyRetention */
    CU_ASSERT_TRUE(codes_are(&c, "POLICY_KEY_RETENTION", NULL));
    release(&c);
    check_line(csr_line("p6", 3, ed, extra), &c); /* the P-256 key for the Ed25519 CSR */
    CU_ASSERT_TRUE(codes_are(&c, "PRIVATE_KEY_MISMATCH", NULL));
    release(&c);
    snprintf(extra, sizeof extra, "{\"PrivateKey\":\"bm90IGEga2V5\"}");
    expect(csr_line("p7", 3, ed, extra), "INVALID_PRIVATE_KEY", NULL);
    free(key);
    free(ec_key);
    free(ec_csr);
    free(ed);
}

static void test_key_reuse(void)
{
    line_checker lc;
    request_defaults d = {.pattern_id = -1, .password_length = 12};
    char *ec = make_csr(p256, "CN=www.keyexample.com,O=Key Example Company", NULL);
    char *ed = make_csr(ed25519, "CN=dev-1", NULL);
    checked c;
    /* Pattern 1: AllowKeyReuse false. The second request with the same key is refused. */
    line_checker_init(&lc, cfg, &d, NULL, NULL);
    check_with(&lc, csr_line("r1", 1, ec, NULL), &c);
    CU_ASSERT_TRUE(valid(&c));
    release(&c);
    check_with(&lc, csr_line("r2", 1, ec, NULL), &c);
    CU_ASSERT_TRUE(codes_are(&c, "POLICY_KEY_REUSE", NULL));
    release(&c);
    /* Pattern 3 allows reuse. */
    check_with(&lc, csr_line("r3", 3, ed, NULL), &c);
    CU_ASSERT_TRUE(valid(&c));
    release(&c);
    check_with(&lc, csr_line("r4", 3, ed, NULL), &c);
    CU_ASSERT_TRUE(valid(&c));
    release(&c);
    line_checker_free(&lc);

    /* Keys a local CA issued before (its issued.ndjson) count too. */
    char *dir = test_tmpdir("hsmenroll-reuse");
    X509_REQ *req = csr_decode(ec, NULL);
    unsigned char fp[32];
    char hex[65], log_path[512], cfg_text[1024];
    spki_fingerprint(X509_REQ_get_X509_PUBKEY(req), fp);
    key_history_hex(fp, hex);
    X509_REQ_free(req);
    snprintf(log_path, sizeof log_path, "%s/issued.ndjson", dir);
    char log_line[320];
    snprintf(log_line, sizeof log_line, "{\"KeyfactorID\":1,\"%s\":\"%s\"}\n", KEY_HISTORY_FIELD,
             hex);
    CU_ASSERT_EQUAL(test_write_file(log_path, log_line), 0);
    snprintf(cfg_text, sizeof cfg_text,
             "{\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"c\","
             "\"Type\":\"local\",\"Home\":\"%s\"}],\"Templates\":[{\"Id\":1,\"Name\":\"T\","
             "\"CertificateAuthorities\":[1]}],\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"P\","
             "\"Template\":1}]}",
             dir);
    error_list errors = {0};
    json_t *doc = json_loads(cfg_text, 0, NULL);
    config *other = config_load_json(doc, "/", "reuse.json", &errors);
    json_decref(doc);
    CU_ASSERT_PTR_NOT_NULL_FATAL(other);
    line_checker_init(&lc, other, &d, NULL, NULL);
    check_with(&lc, csr_line("r5", 1, ec, NULL), &c);
    CU_ASSERT_TRUE(codes_are(&c, "POLICY_KEY_REUSE", NULL));
    release(&c);
    line_checker_free(&lc);

    /* A resumed run: the key its request r5 had certified before the crash is r5's own, not
     * reuse; any other request of the run (or any request of another run) with it is reuse. */
    snprintf(log_line, sizeof log_line,
             "{\"KeyfactorID\":1,\"RunId\":\"run-a\",\"RequestId\":\"r5\",\"%s\":\"%s\"}\n",
             KEY_HISTORY_FIELD, hex);
    CU_ASSERT_EQUAL(test_write_file(log_path, log_line), 0);
    line_checker_init(&lc, other, &d, NULL, "run-a");
    check_with(&lc, csr_line("r6", 1, ec, NULL), &c);
    CU_ASSERT_TRUE(codes_are(&c, "POLICY_KEY_REUSE", NULL));
    release(&c);
    check_with(&lc, csr_line("r5", 1, ec, NULL), &c);
    CU_ASSERT_TRUE(valid(&c));
    release(&c);
    check_with(&lc, csr_line("r7", 1, ec, NULL), &c); /* r5 has it now, in this batch too */
    CU_ASSERT_TRUE(codes_are(&c, "POLICY_KEY_REUSE", NULL));
    release(&c);
    line_checker_free(&lc);
    line_checker_init(&lc, other, &d, NULL, "run-b");
    check_with(&lc, csr_line("r5", 1, ec, NULL), &c);
    CU_ASSERT_TRUE(codes_are(&c, "POLICY_KEY_REUSE", NULL));
    release(&c);
    line_checker_free(&lc);
    config_free(other);
    test_rmtree(dir);
    free(dir);
    free(ec);
    free(ed);
}

static void test_every_problem_of_a_line_is_reported(void)
{
    checked c;
    check_line(web_line("CN=www.keyexample.com,O=Acme",
                        "{\"KeyType\":\"RSA\",\"Metadata\":{\"Colour\":\"red\"},"
                        "\"SANs\":{\"dns\":[\"bad..name\"]},\"Flavour\":1}"),
               &c);
    CU_ASSERT_TRUE(codes_are(&c, "UNKNOWN_FIELD", "INVALID_SAN", "POLICY_REGEX",
                             "POLICY_KEY_ALGORITHM", "POLICY_METADATA_UNKNOWN", NULL));
    release(&c);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_seed_example_passes_and_applies_defaults),
        TEST_CASE(test_seed_regex_on_o),
        TEST_CASE(test_seed_ecdsa_key_info),
        TEST_CASE(test_seed_email_metadata),
        TEST_CASE(test_metadata_rules),
        TEST_CASE(test_rfc2818_common_name_and_wildcards),
        TEST_CASE(test_settings_friendly_name_and_csp),
        TEST_CASE(test_template_pattern_precedence),
        TEST_CASE(test_ca_selection),
        TEST_CASE(test_owner_role),
        TEST_CASE(test_csr_lines_under_a_strict_pattern),
        TEST_CASE(test_csr_decoding_and_private_key),
        TEST_CASE(test_key_reuse),
        TEST_CASE(test_every_problem_of_a_line_is_reported),
        TEST_END,
    };
    return test_main("policy", cases, setup, teardown);
}
