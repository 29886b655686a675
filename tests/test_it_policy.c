/* Patterns end to end, with a --config on a SoftHSM token made by `token init`: a mixed batch of
 * valid, invalid and CSR lines (CSRs and keys made by the openssl CLI) goes through `run` and
 * `validate`, which must agree line by line; what policy applied (subject defaults, the CN as a
 * DNS SAN, merged SANs, metadata defaults) is in the certificates; a retained PrivateKey is in the
 * token; a key certified once is refused the next time. */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <p11-kit/uri.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/pubkey.h"
#include "formats/san.h"
#include "hsm/hsm.h"
#include "tests/support.h"

#define SOFTHSM HSMENROLL_SOFTHSM_MODULE

static char *tmp;
static char conf[600], cfg_path[600];

/* Runs hsmenroll with the suite's SoftHSM store; stderr to TMP/stderr.log. */
#define ENGINE(fmt, ...)                                                                           \
    test_sh("SOFTHSM2_CONF='%s' '%s' " fmt " 2>>'%s/stderr.log'", conf, HSMENROLL_BIN,             \
            ##__VA_ARGS__, tmp)

static const char config_text[] =
    "{\"Hsm\":{\"Module\":\"" SOFTHSM "\",\"Tokens\":[\"it-fleet\"],\"PinFile\":\"pin\","
    "\"SoPinFile\":\"so-pin\"},"
    "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"corp\\\\issuing\",\"Type\":\"local\","
    "\"Home\":\"ca\",\"Token\":\"it-ca\"}],"
    "\"Templates\":[{\"Id\":1,\"Name\":\"Web\",\"CertificateAuthorities\":[1],\"ValidityDays\":90},"
    "{\"Id\":2,\"Name\":\"Device\",\"CertificateAuthorities\":[1],\"KeyRetention\":true}],"
    "\"MetadataFields\":[{\"Id\":4,\"Name\":\"Email-Contact\",\"DataType\":1,"
    "\"Validation\":\"^.+@.+$\"}],"
    "\"EnrollmentPatterns\":["
    "{\"Id\":1,\"Name\":\"Web\",\"Template\":1,"
    "\"Regexes\":[{\"SubjectPart\":\"O\",\"Regex\":\"^Key Example$\",\"Error\":\"O must be Key "
    "Example\"}],"
    "\"Defaults\":[{\"SubjectPart\":\"L\",\"Value\":\"Denver\"}],"
    "\"MetadataFields\":[{\"MetadataId\":4,\"DefaultValue\":\"ops@keyexample.com\"}],"
    "\"Policies\":{\"RFCEnforcement\":true,\"AllowWildcards\":false,"
    "\"KeyInfo\":{\"ECDSA\":{},\"Ed25519\":{}}}},"
    "{\"Id\":2,\"Name\":\"Devices\",\"Template\":2,\"AllowedEnrollmentTypes\":2,"
    "\"Policies\":{\"AllowKeyReuse\":false}}]}";

static int setup(void)
{
    tmp = test_tmpdir("hsmenroll-itp");
    if (tmp == NULL)
        return 1;
    char store[600];
    snprintf(store, sizeof store, "%s/tokens", tmp);
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", tmp);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", tmp);
    char text[1200];
    snprintf(text, sizeof text,
             "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", store);
    if (test_sh("mkdir -p '%s'", store) != 0 || test_write_file(conf, text) != 0 ||
        test_write_file(cfg_path, config_text) != 0)
        return 1;
    unsetenv("HSMENROLL_PIN");
    unsetenv("HSMENROLL_SO_PIN");
    /* The configuration's tokens (PINs generated into its PIN files) and CA. */
    if (ENGINE("token init --config '%s' -q", cfg_path) != 0 ||
        ENGINE("ca init --config '%s' -q", cfg_path) != 0)
        return 1;
    return 0;
}

static int teardown(void)
{
    test_rmtree(tmp);
    free(tmp);
    return 0;
}

/* A key and CSR made with the openssl CLI; returns base-64 DER of the CSR (or the PEM text). */
static char *openssl_csr(const char *name, const char *algorithm, const char *subject,
                         const char *san, bool pem)
{
    int rc = test_sh("cd '%s' && openssl req -new -newkey %s -nodes -keyout '%s.key' -subj '%s' "
                     "%s%s%s -out '%s.csr' 2>/dev/null",
                     tmp, algorithm, name, subject, san ? "-addext 'subjectAltName=" : "",
                     san ? san : "", san ? "'" : "", name);
    if (rc != 0)
        return NULL;
    if (pem) {
        char path[700];
        snprintf(path, sizeof path, "%s/%s.csr", tmp, name);
        return test_read_file(path, NULL);
    }
    char *b64 = test_sh_output(NULL,
                               "cd '%s' && openssl req -in '%s.csr' -outform DER | "
                               "base64 -w0",
                               tmp, name);
    return b64;
}

static char *openssl_pkcs8(const char *name)
{
    return test_sh_output(NULL,
                          "cd '%s' && openssl pkcs8 -topk8 -nocrypt -in '%s.key' "
                          "-outform DER | base64 -w0",
                          tmp, name);
}

static void append(FILE *f, json_t *line)
{
    char *text = json_dumps(line, JSON_COMPACT);
    fprintf(f, "%s\n", text);
    free(text);
    json_decref(line);
}

static json_t *load_results(const char *path)
{
    json_t *all = test_load_ndjson(path);
    if (all == NULL)
        fprintf(stderr, "cannot load %s\n", path);
    return all;
}

static json_t *by_line(json_t *results, long line)
{
    size_t i;
    json_t *r;
    json_array_foreach(results, i, r)
    {
        if (json_integer_value(json_object_get(r, "Line")) == line)
            return r;
    }
    return NULL;
}

static const char *code_of(json_t *r)
{
    return json_string_value(json_object_get(json_object_get(r, "Error"), "Code"));
}

static const char *status_of(json_t *r)
{
    return json_string_value(json_object_get(r, "Status"));
}

static void test_run_and_validate_agree(void)
{
    char *csr5 = openssl_csr("dev5", "ed25519", "/CN=dev-5", "DNS:dev-5.keyexample.com", false);
    char *csr6 =
        openssl_csr("dev6", "ec -pkeyopt ec_paramgen_curve:P-256", "/CN=dev-6", NULL, true);
    char *key6 = openssl_pkcs8("dev6");
    char *csr9 = openssl_csr("dev9", "ec -pkeyopt ec_paramgen_curve:P-256",
                             "/CN=dev-9.keyexample.com/O=Key Example", NULL, false);
    char *key9 = openssl_pkcs8("dev9");
    CU_ASSERT_FATAL(csr5 && csr6 && key6 && csr9 && key9);

    char batch[700];
    snprintf(batch, sizeof batch, "%s/mixed.ndjson", tmp);
    FILE *f = fopen(batch, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    /* 1 valid: defaults and the CN as a SAN are applied. */
    append(f,
           json_pack("{s:s,s:i,s:s,s:s,s:s}", "Id", "web-1", "EnrollmentPatternId", 1, "Subject",
                     "CN=web-1.keyexample.com,O=Key Example", "KeyType", "ECC", "Format", "PEM"));
    /* 2 the O regex; 3 the key policy; 4 wildcards. */
    append(f, json_pack("{s:s,s:i,s:s,s:s}", "Id", "web-2", "EnrollmentPatternId", 1, "Subject",
                        "CN=web-2.keyexample.com,O=Acme", "KeyType", "ECC"));
    append(f, json_pack("{s:s,s:i,s:s,s:s}", "Id", "web-3", "EnrollmentPatternId", 1, "Subject",
                        "CN=web-3.keyexample.com,O=Key Example", "KeyType", "RSA"));
    append(f, json_pack("{s:s,s:i,s:s,s:s}", "Id", "web-4", "EnrollmentPatternId", 1, "Subject",
                        "CN=*.keyexample.com,O=Key Example", "KeyType", "ECC"));
    /* 5 a CSR (base-64 DER) whose SAN joins the line's. */
    append(f,
           json_pack("{s:s,s:s,s:s,s:s,s:{s:[s]}}", "Id", "dev-5", "Operation", "CSR", "Template",
                     "Device", "CSR", csr5, "SANs", "dns", "dev-5.alias.keyexample.com"));
    /* 6 a PEM CSR whose private key is retained in the HSM, DER out. */
    append(f, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "Id", "dev-6", "Operation", "CSR", "Template",
                        "Device", "CSR", csr6, "PrivateKey", key6, "Format", "DER"));
    /* 7 the key of line 5 again; 8 a PFX for a CSR line; 9 retention not allowed. */
    append(f, json_pack("{s:s,s:s,s:s,s:s}", "Id", "dev-7", "Operation", "CSR", "Template",
                        "Device", "CSR", csr5));
    append(f, json_pack("{s:s,s:s,s:s,s:s,s:s}", "Id", "dev-8", "Operation", "CSR", "Template",
                        "Device", "CSR", csr5, "Format", "PFX"));
    append(f, json_pack("{s:s,s:s,s:i,s:s,s:s}", "Id", "dev-9", "Operation", "CSR",
                        "EnrollmentPatternId", 1, "CSR", csr9, "PrivateKey", key9));
    fputs("{not json\n", f);
    /* 11 valid: Ed25519 in the token, with a dns SAN. */
    append(f, json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:[s]}}", "Id", "web-11", "Template", "Web",
                        "Subject", "CN=web 11,O=Key Example", "KeyType", "Ed25519", "Format", "DER",
                        "SANs", "dns", "web-11.keyexample.com"));
    fclose(f);

    CU_ASSERT_EQUAL(ENGINE("validate '%s' --config '%s' --output '%s/validate.ndjson' -q", batch,
                           cfg_path, tmp),
                    1);
    CU_ASSERT_EQUAL(ENGINE("run '%s' --config '%s' -o '%s/out' -q", batch, cfg_path, tmp), 1);
    char path[700];
    snprintf(path, sizeof path, "%s/validate.ndjson", tmp);
    json_t *validated = load_results(path);
    snprintf(path, sizeof path, "%s/out/results.ndjson", tmp);
    json_t *ran = load_results(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(validated);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ran);
    CU_ASSERT_EQUAL(json_array_size(validated), 11);
    CU_ASSERT_EQUAL(json_array_size(ran), 11);

    static const struct {
        long line;
        const char *code; /* NULL: valid and issued */
    } expected[] = {
        {1, NULL},
        {2, "POLICY_REGEX"},
        {3, "POLICY_KEY_ALGORITHM"},
        {4, "POLICY_WILDCARD"},
        {5, NULL},
        {6, NULL},
        {7, "POLICY_KEY_REUSE"},
        {8, "INVALID_FIELD"},
        {9, "POLICY_KEY_RETENTION"},
        {10, "INVALID_JSON"},
        {11, NULL},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        json_t *v = by_line(validated, expected[i].line);
        json_t *r = by_line(ran, expected[i].line);
        CU_ASSERT_PTR_NOT_NULL_FATAL(v);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        if (expected[i].code == NULL) {
            CU_ASSERT_STRING_EQUAL(status_of(v), "valid");
            CU_ASSERT_STRING_EQUAL(status_of(r), "issued");
            if (strcmp(status_of(r), "issued") != 0)
                fprintf(stderr, "line %ld: %s\n", expected[i].line,
                        json_dumps(json_object_get(r, "Error"), 0));
        } else {
            CU_ASSERT_STRING_EQUAL(status_of(v), "invalid");
            CU_ASSERT_STRING_EQUAL(status_of(r), "failed");
            CU_ASSERT_STRING_EQUAL(code_of(v), expected[i].code);
            CU_ASSERT_STRING_EQUAL(code_of(r), expected[i].code);
        }
        /* Both report the same errors, all of them. */
        char *a = json_dumps(json_object_get(v, "Errors"), JSON_COMPACT);
        char *b = json_dumps(json_object_get(r, "Errors"), JSON_COMPACT);
        CU_ASSERT_TRUE((a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0));
        free(a);
        free(b);
    }

    /* Line 1: L=Denver added, the CN made a DNS SAN, the metadata default reported. */
    snprintf(path, sizeof path, "%s/out/web-1.pem", tmp);
    char *text =
        test_sh_output(NULL, "openssl x509 -in '%s' -noout -subject -ext subjectAltName", path);
    CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "L = Denver") : NULL);
    CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "DNS:web-1.keyexample.com") : NULL);
    free(text);
    json_t *r1 = by_line(ran, 1);
    CU_ASSERT_STRING_EQUAL(
        json_string_value(json_object_get(json_object_get(r1, "Metadata"), "Email-Contact")),
        "ops@keyexample.com");
    /* Line 5: the CSR's SAN and the line's, in a certificate that chains to the CA. */
    snprintf(path, sizeof path, "%s/out/dev-5.pem", tmp);
    text = test_sh_output(NULL, "openssl x509 -in '%s' -noout -ext subjectAltName", path);
    CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "DNS:dev-5.keyexample.com") : NULL);
    CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "DNS:dev-5.alias.keyexample.com") : NULL);
    free(text);
    text = test_sh_output(NULL,
                          "openssl verify -CAfile '%s/ca/root.pem' -untrusted "
                          "'%s/ca/issuing.pem' '%s' 2>&1",
                          tmp, tmp, path);
    CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, ": OK") : NULL);
    free(text);
    /* A CSR result has no chain by default and no key. */
    char *pem = test_read_file(path, NULL);
    CU_ASSERT_EQUAL(test_count(pem, "BEGIN CERTIFICATE"), 1);
    CU_ASSERT_EQUAL(test_count(pem, "PRIVATE KEY"), 0);
    free(pem);
    /* The certificate carries the CSR's key: compare with the key openssl made. */
    char *cert_key = test_sh_output(NULL, "openssl x509 -in '%s' -noout -pubkey", path);
    char *own_key = test_sh_output(NULL, "openssl pkey -in '%s/dev5.key' -pubout", tmp);
    CU_ASSERT_TRUE(cert_key && own_key && strcmp(cert_key, own_key) == 0);
    free(cert_key);
    free(own_key);

    /* Line 6: the retained key is in the token, not extractable, and the certificate's. */
    json_t *r6 = by_line(ran, 6);
    const char *uri_text = json_string_value(json_object_get(r6, "KeyUri"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(uri_text);
    CU_ASSERT_PTR_NOT_NULL(strstr(uri_text, "token=it-fleet"));
    setenv("SOFTHSM2_CONF", conf, 1);
    char pin_path[700];
    snprintf(pin_path, sizeof pin_path, "%s/pin", tmp);
    char *pin = test_read_file(pin_path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pin);
    pin[strcspn(pin, "\n")] = '\0';
    hsm_error herr;
    hsm_module *m = hsm_module_load(SOFTHSM, &herr);
    hsm_token tok;
    hsm_session s;
    CU_ASSERT_EQUAL_FATAL(hsm_token_open(m, "it-fleet", pin, &tok, &herr), 0);
    CU_ASSERT_EQUAL_FATAL(hsm_session_open(&tok, &s, &herr), 0);
    P11KitUri *uri = p11_kit_uri_new();
    CU_ASSERT_EQUAL_FATAL(p11_kit_uri_parse(uri_text, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, uri),
                          P11_KIT_URI_OK);
    CK_ATTRIBUTE *id = p11_kit_uri_get_attribute(uri, CKA_ID);
    CK_OBJECT_HANDLE priv[2], pub[2];
    CU_ASSERT_EQUAL(
        hsm_find_objects(&s, CKO_PRIVATE_KEY, id->pValue, id->ulValueLen, "dev-6", priv, 2, &herr),
        1);
    CU_ASSERT_EQUAL(
        hsm_find_objects(&s, CKO_PUBLIC_KEY, id->pValue, id->ulValueLen, "dev-6", pub, 2, &herr),
        1);
    bool b;
    CU_ASSERT_EQUAL(hsm_get_bool(&s, priv[0], CKA_SENSITIVE, &b, &herr), 0);
    CU_ASSERT_TRUE(b);
    CU_ASSERT_EQUAL(hsm_get_bool(&s, priv[0], CKA_EXTRACTABLE, &b, &herr), 0);
    CU_ASSERT_FALSE(b);
    CU_ASSERT_EQUAL(hsm_get_bool(&s, priv[0], CKA_TOKEN, &b, &herr), 0);
    CU_ASSERT_TRUE(b);
    unsigned char *point = NULL;
    size_t point_len = 0;
    CU_ASSERT_EQUAL(hsm_get_attribute(&s, pub[0], CKA_EC_POINT, &point, &point_len, &herr), 0);
    enroll_error eerr;
    EVP_PKEY *in_token = pubkey_from_ec_point(NID_X9_62_prime256v1, point, point_len, &eerr);
    snprintf(path, sizeof path, "%s/out/dev-6.der", tmp);
    FILE *cf = fopen(path, "rb");
    X509 *cert = cf ? d2i_X509_fp(cf, NULL) : NULL;
    if (cf)
        fclose(cf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cert);
    CU_ASSERT_EQUAL(EVP_PKEY_eq(in_token, X509_get0_pubkey(cert)), 1);
    /* The token signs with the retained key: what it signs verifies with the certificate. */
    unsigned char digest[32] = {1, 2, 3}, sig[256];
    size_t sig_len = sizeof sig;
    CU_ASSERT_EQUAL(hsm_sign(&s, priv[0], CKM_ECDSA, digest, 32, sig, &sig_len, &herr), 0);
    X509_free(cert);
    EVP_PKEY_free(in_token);
    free(point);
    p11_kit_uri_free(uri);
    hsm_session_close(&s);
    hsm_token_close(&tok);
    hsm_module_unload(m);
    free(pin);
    /* The retained key's text is in no output. */
    char *all_out = test_sh_output(NULL, "cat '%s/out/'* '%s/stderr.log' 2>/dev/null", tmp, tmp);
    CU_ASSERT_PTR_NULL(all_out ? strstr(all_out, key6 + 40) : "no output");
    free(all_out);

    /* The next batch presenting line 5's key is refused: the CA's log remembers it. */
    snprintf(batch, sizeof batch, "%s/again.ndjson", tmp);
    f = fopen(batch, "w");
    append(f, json_pack("{s:s,s:s,s:s,s:s}", "Id", "dev-5b", "Operation", "CSR", "Template",
                        "Device", "CSR", csr5));
    fclose(f);
    text = test_sh_output(NULL, "SOFTHSM2_CONF='%s' '%s' validate '%s' --config '%s' -q", conf,
                          HSMENROLL_BIN, batch, cfg_path);
    CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "POLICY_KEY_REUSE") : NULL);
    free(text);

    json_decref(validated);
    json_decref(ran);
    free(csr5);
    free(csr6);
    free(key6);
    free(csr9);
    free(key9);
}

/* Issue 17, item 13: a line near the 1 MiB limit with 45,000 dns SANs (two of them repeated, one
 * differing in case) and 5,000 ip4 SANs, under the pattern with RFC 2818 and wildcard checks, is
 * validated under a CPU limit of 5 s (`ulimit -t`; 40 s under ASan): the SAN checks are O(n log n),
 * where they were quadratic (40,000 SANs took 10 s). The CPU limit bounds the test; it measures
 * nothing. */
static void test_many_sans_linear(void)
{
    char batch[700];
    snprintf(batch, sizeof batch, "%s/many-sans.ndjson", tmp);
    CU_ASSERT_EQUAL_FATAL(
        test_sh(
            "awk 'BEGIN { printf \"{\\\"Id\\\":\\\"big\\\",\\\"EnrollmentPatternId\\\":1,"
            "\\\"Subject\\\":\\\"CN=h1.example.com,O=Key Example\\\",\\\"KeyType\\\":"
            "\\\"ECC\\\",\\\"KeyLength\\\":256,\\\"Format\\\":\\\"PEM\\\",\\\"SANs\\\":"
            "{\\\"dns\\\":[\"; for (i = 0; i < 45000; i++) printf \"\\\"h%%d.example.com\\\",\", "
            "i; printf \"\\\"H1.example.com\\\",\\\"h5.example.com\\\"],\\\"ip4\\\":[\"; "
            "for (i = 0; i < 5000; i++) printf \"%%s\\\"10.0.%%d.%%d\\\"\", i ? \",\" : \"\", "
            "int(i / 256), i %% 256; printf \"]}}\\n\" }' > '%s'",
            batch),
        0);
    struct stat st;
    CU_ASSERT_TRUE(stat(batch, &st) == 0 && st.st_size > 900000 && st.st_size < 1048576);
    int status = -1;
    /* ASan and a debug build cost several times the CPU: the bound grows with them, and stays
     * far below the quadratic code's (10 s on the normal build, several times that there). */
    char *out = test_sh_output(&status,
                               "ulimit -t %d; SOFTHSM2_CONF='%s' '%s' validate '%s' --config '%s' "
                               "-q 2>/dev/null",
                               test_sanitized() ? 40 : 5, conf, HSMENROLL_BIN, batch, cfg_path);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "\"Status\":\"valid\"") : NULL);
    if (status != 0)
        fprintf(stderr, "  validate: status %d: %.300s\n", status, out ? out : "");
    free(out);
}

/* Issue 17, item 14, through `run`: a CSR whose EC key gives its curve as explicit parameters
 * (INVALID_CURVE), a CSR with an RSA-4608 key (INVALID_KEY_LENGTH: 4096 at most, as for keys
 * made here), KeyLength 0 (INVALID_KEY_LENGTH, not a default size), EnrollmentPatternId -1 and 0
 * (INVALID_FIELD, not ignored); none is certified (the CA's count does not move), while the same
 * key with a named curve and a line without KeyLength are issued. */
static void test_csr_and_key_rules(void)
{
    CU_ASSERT_EQUAL_FATAL(
        test_sh("cd '%s' && openssl ecparam -name prime256v1 -param_enc explicit -genkey -noout "
                "-out explicit.key 2>/dev/null && openssl req -new -key explicit.key -subj "
                "/CN=explicit -outform DER -out explicit.der 2>/dev/null",
                tmp),
        0);
    /* The named one: the same key re-encoded with the named curve. */
    CU_ASSERT_EQUAL_FATAL(test_sh("cd '%s' && openssl ec -in explicit.key -param_enc named_curve "
                                  "-out named.key 2>/dev/null && openssl req -new -key named.key "
                                  "-subj /CN=named -outform DER -out named.der 2>/dev/null",
                                  tmp),
                          0);
    CU_ASSERT_EQUAL(test_sh("cd '%s' && openssl req -in explicit.der -inform DER -noout -text | "
                            "grep -q 'Field Type'",
                            tmp),
                    0); /* explicit parameters indeed */
    char *explicit_csr = test_sh_output(NULL, "base64 -w0 '%s/explicit.der'", tmp);
    char *named_csr = test_sh_output(NULL, "base64 -w0 '%s/named.der'", tmp);
    char *big_rsa = openssl_csr("rsa4608", "rsa:4608", "/CN=big-rsa", NULL, false);
    CU_ASSERT_FATAL(explicit_csr && named_csr && big_rsa);

    char batch[700];
    snprintf(batch, sizeof batch, "%s/keyrules.ndjson", tmp);
    FILE *f = fopen(batch, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    append(f, json_pack("{s:s,s:s,s:s,s:s}", "Id", "k-1", "Operation", "CSR", "Template", "Device",
                        "CSR", explicit_csr));
    append(f, json_pack("{s:s,s:s,s:s,s:s}", "Id", "k-2", "Operation", "CSR", "Template", "Device",
                        "CSR", big_rsa));
    append(f, json_pack("{s:s,s:s,s:s,s:s,s:i}", "Id", "k-3", "Template", "Web", "Subject",
                        "CN=k-3.keyexample.com,O=Key Example", "KeyType", "ECC", "KeyLength", 0));
    append(f, json_pack("{s:s,s:i,s:s,s:s}", "Id", "k-4", "EnrollmentPatternId", -1, "Subject",
                        "CN=k-4", "KeyType", "ECC"));
    append(f, json_pack("{s:s,s:i,s:s,s:s}", "Id", "k-5", "EnrollmentPatternId", 0, "Subject",
                        "CN=k-5", "KeyType", "ECC"));
    append(f, json_pack("{s:s,s:s,s:s,s:s}", "Id", "k-6", "Operation", "CSR", "Template", "Device",
                        "CSR", named_csr));
    append(f, json_pack("{s:s,s:s,s:s,s:s}", "Id", "k-7", "Template", "Web", "Subject",
                        "CN=k-7.keyexample.com,O=Key Example", "KeyType", "ECC"));
    fclose(f);
    free(explicit_csr);
    free(named_csr);
    free(big_rsa);

    int before_status = -1;
    json_t *before = test_sh_json(&before_status,
                                  "cd '%s' && SOFTHSM2_CONF='%s' '%s' ca show "
                                  "--config '%s' --json 2>/dev/null",
                                  tmp, conf, HSMENROLL_BIN, cfg_path);
    CU_ASSERT_EQUAL(ENGINE("run '%s' --config '%s' -o '%s/keyrules' -q", batch, cfg_path, tmp), 1);
    char path[700];
    snprintf(path, sizeof path, "%s/keyrules/results.ndjson", tmp);
    json_t *results = load_results(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(results);
    static const struct {
        long line;
        const char *status, *code;
    } expected[] = {
        {1, "failed", "INVALID_CURVE"},
        {2, "failed", "INVALID_KEY_LENGTH"},
        {3, "failed", "INVALID_KEY_LENGTH"},
        {4, "failed", "INVALID_FIELD"},
        {5, "failed", "INVALID_FIELD"},
        {6, "issued", NULL},
        {7, "issued", NULL},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        json_t *r = by_line(results, expected[i].line);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        CU_ASSERT_STRING_EQUAL(status_of(r), expected[i].status);
        if (expected[i].code != NULL && code_of(r) != NULL)
            CU_ASSERT_STRING_EQUAL(code_of(r), expected[i].code);
        CU_ASSERT_TRUE(expected[i].code == NULL || code_of(r) != NULL);
    }
    json_decref(results);
    /* Only the two good lines were certified. */
    json_t *after = test_sh_json(NULL,
                                 "cd '%s' && SOFTHSM2_CONF='%s' '%s' ca show --config '%s' "
                                 "--json 2>/dev/null",
                                 tmp, conf, HSMENROLL_BIN, cfg_path);
    CU_ASSERT_PTR_NOT_NULL(before);
    CU_ASSERT_PTR_NOT_NULL(after);
    if (before != NULL && after != NULL)
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(after, "Issued")) -
                            json_integer_value(json_object_get(before, "Issued")),
                        2);
    json_decref(before);
    json_decref(after);
    CU_ASSERT_EQUAL(test_sh("ls '%s/keyrules' | grep -c '^k-' | grep -qx 2", tmp), 0);
}

static void test_validate_touches_nothing(void)
{
    char home[700], batch[700];
    snprintf(home, sizeof home, "%s/never-created", tmp);
    snprintf(batch, sizeof batch, "%s/one.ndjson", tmp);
    CU_ASSERT_EQUAL_FATAL(
        test_write_file(batch, "{\"Id\":\"a\",\"Template\":\"Default\",\"Subject\":\"CN=a\"}\n"),
        0);
    int status = -1;
    char *out = test_sh_output(&status, "'%s' validate '%s' --home '%s' 2>/dev/null", HSMENROLL_BIN,
                               batch, home);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "\"Status\":\"valid\"") : NULL);
    free(out);
    struct stat st;
    CU_ASSERT_NOT_EQUAL(stat(home, &st), 0);
    /* A broken configuration is exit 2 with its JSON paths. */
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/broken.json", tmp);
    CU_ASSERT_EQUAL_FATAL(test_write_file(cfg,
                                          "{\"Hsm\":{\"Tokens\":[\"t\"]},"
                                          "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"c\","
                                          "\"Type\":\"local\"}],\"Templates\":[{\"Id\":1,"
                                          "\"Name\":\"T\",\"CertificateAuthorities\":[1]}],"
                                          "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"P\","
                                          "\"Template\":1,\"Regexes\":[{\"SubjectPart\":\"O\","
                                          "\"Regex\":\"(\"}]}]}"),
                          0);
    out =
        test_sh_output(&status, "'%s' validate '%s' --config '%s' 2>&1", HSMENROLL_BIN, batch, cfg);
    CU_ASSERT_EQUAL(status, 2);
    CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "EnrollmentPatterns[0].Regexes[0].Regex") : NULL);
    free(out);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_run_and_validate_agree),
        TEST_CASE(test_validate_touches_nothing),
        TEST_CASE(test_many_sans_linear),
        TEST_CASE(test_csr_and_key_rules),
        TEST_END,
    };
    return test_main("policy end to end", cases, setup, teardown);
}
