/* `hsmenroll serve` against what Keyfactor's own clients send, byte for byte (their source is
 * public; none can run here): the Go auth client's probe (keyfactor-auth-client-go), the
 * cert-manager issuer's metadata probe, pattern lookup and CSR enrollment, the Vault plugin's
 * hand-built bodies (raw newlines, stray backslash, zone-less Timestamp, SANs "ip"), its
 * certificate lookup and P7B download, keyfactor-go-client v3 (GET with a "null" body, explicit
 * nulls, lookups by thumbprint and id), the Python SDK (glued AND, pq./sq. parameters, context),
 * and a v25 pattern body. Each answer is read as the client reads it and validated against the
 * schemas of tests/schemas (strict: no member the official schema does not declare). */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support.h"

static char *tmp, *home;
static char creds[600], url[256], config_path[600];
static pid_t server_pid;
static long long vault_id; /* the KeyfactorID the Vault flow got */

static const char *const metadata_names[] = {"Controller-Namespace",
                                             "Controller-Kind",
                                             "Controller-Resource-Group-Name",
                                             "Issuer-Name",
                                             "Issuer-Namespace",
                                             "Controller-Reconcile-Id",
                                             "Certificate-Signing-Request-Namespace",
                                             NULL};

static int start_server(void)
{
    char env[700], options[2048];
    snprintf(env, sizeof env, "SOFTHSM2_CONF='%s/softhsm2.conf'", home);
    snprintf(options, sizeof options, "--config '%s' --credentials '%s'", config_path, creds);
    server_pid = test_start_serve_ready(tmp, env, options, url, sizeof url);
    return server_pid > 0 ? 0 : -1;
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
    if (test_engine_home("hsmenroll-clients", &tmp, &home) != 0)
        return 1;
    unsetenv("HSMENROLL_PIN");
    snprintf(creds, sizeof creds, "%s/users.json", tmp);
    snprintf(config_path, sizeof config_path, "%s/serve.json", tmp);
    char *fleet = hash_of("fleet-secret"), *admin = hash_of("admin-secret");
    if (fleet == NULL || admin == NULL)
        return 1;
    char text[2048];
    snprintf(text, sizeof text,
             "{\"Users\":[{\"Name\":\"fleet\",\"Password\":\"%s\",\"Roles\":[\"Fleet\"]},"
             "{\"Name\":\"admin\",\"Password\":\"%s\",\"Roles\":[\"Fleet\"],"
             "\"Permissions\":[\"enrollment_pattern/modify\"]}]}",
             fleet, admin);
    free(fleet);
    free(admin);
    if (test_write_file(creds, text) != 0 || chmod(creds, 0600) != 0)
        return 1;
    /* The embedded CA of the home, named as a Keyfactor CA ("host\logical"); the cert-manager
     * metadata fields and one more; the template clients name, and a pattern found by name. */
    char metadata[2048] = "";
    for (int i = 0; metadata_names[i] != NULL; i++)
        snprintf(metadata + strlen(metadata), sizeof metadata - strlen(metadata),
                 "{\"Id\":%d,\"Name\":\"%s\",\"DataType\":1,\"Enrollment\":0},", i + 1,
                 metadata_names[i]);
    char doc[8192];
    snprintf(doc, sizeof doc,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"],\"PinFile\":\"%s/pin\"},"
             "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"ca01.example.test\\\\Example "
             "Issuing "
             "CA\",\"Type\":\"local\",\"Home\":\"%s/"
             "ca\",\"Token\":\"hsmenroll-ca\",\"PinFile\":\"home/ca-pin\"}],"
             "\"Templates\":[{\"Id\":1,\"Name\":\"WebServer\",\"CertificateAuthorities\":[1]}],"
             "\"MetadataFields\":[%s{\"Id\":20,\"Name\":\"Email-Contact\",\"DataType\":1,"
             "\"Enrollment\":0},{\"Id\":21,\"Name\":\"Cost-Center\",\"DataType\":2,"
             "\"Enrollment\":0}],"
             "\"Roles\":[{\"Id\":3,\"Name\":\"Fleet\"}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1,"
             "\"TemplateDefault\":true,\"UseADPermissions\":true},"
             "{\"Id\":2,\"Name\":\"My Pattern\",\"Template\":1,\"UseADPermissions\":false,"
             "\"AssociatedRoles\":[\"Fleet\"]}]}",
             home, home, metadata);
    if (test_write_file(config_path, doc) != 0)
        return 1;
    return start_server();
}

static int teardown(void)
{
    if (server_pid > 0) {
        test_stop(server_pid);
    }
    test_engine_home_free(tmp, home);
    return 0;
}

/* One HTTP exchange as a client makes it. */
typedef struct exchange {
    int status;
    char *body;    /* the answer's body */
    char *headers; /* the answer's headers */
    json_t *json;  /* the body parsed (NULL when not JSON) */
} exchange;

static void exchange_free(exchange *x)
{
    free(x->body);
    free(x->headers);
    json_decref(x->json);
    memset(x, 0, sizeof *x);
}

/* Sends method path (with its query, as encoded by the client) with the headers (curl -H
 * arguments, already quoted) and the body bytes (NULL: none), authenticated as user:password. */
static exchange call(const char *user, const char *method, const char *path, const char *headers,
                     const char *body)
{
    exchange x = {0};
    char body_file[700] = "", out[700], hdr[700];
    snprintf(out, sizeof out, "%s/answer.body", tmp);
    snprintf(hdr, sizeof hdr, "%s/answer.headers", tmp);
    if (body != NULL) {
        snprintf(body_file, sizeof body_file, "%s/request.body", tmp);
        test_write_file(body_file, body);
    }
    char *status = test_sh_output(
        NULL, "curl -s -o '%s' -D '%s' -w '%%{http_code}' -X %s -u '%s' %s %s%s%s '%s%s'", out, hdr,
        method, user, headers, body ? "--data-binary '@" : "", body ? body_file : "",
        body ? "'" : "", url, path);
    x.status = status ? atoi(status) : -1;
    free(status);
    x.body = test_read_file(out, NULL);
    x.headers = test_read_file(hdr, NULL);
    x.json = x.body ? json_loads(x.body, 0, NULL) : NULL;
    if (x.status >= 400) /* shown for the failing assertion that follows, if any */
        fprintf(stderr, "\n  %s %s: %d %.600s\n", method, path, x.status, x.body ? x.body : "");
    return x;
}

/* The answer validates against a schema of tests/schemas (strict); for an array answer with an
 * item schema, every element does. */
static bool valid(const exchange *x, const char *schema, bool items)
{
    if (x->json == NULL)
        return false;
    json_t *docs = items ? json_incref(x->json) : json_pack("[O]", x->json);
    bool ok = json_is_array(docs);
    size_t i;
    json_t *doc;
    json_array_foreach(docs, i, doc)
    {
        char path[700];
        snprintf(path, sizeof path, "%s/validate.json", tmp);
        char *text = json_dumps(doc, JSON_ENCODE_ANY);
        test_write_file(path, text);
        free(text);
        if (test_sh("python3 '%s/tests/schema_check.py' --strict '%s/tests/schemas/%s' < '%s'",
                    HSMENROLL_SOURCE_DIR, HSMENROLL_SOURCE_DIR, schema, path) != 0)
            ok = false;
    }
    json_decref(docs);
    return ok;
}

static const char *go_headers = "-H 'Content-Type: application/json' -H 'Accept: application/json' "
                                "-H 'x-keyfactor-api-version: 1' "
                                "-H 'x-keyfactor-requested-with: APIClient'";

/* A fresh P-256 CSR in PEM, subject CN=cn (malloc'd). */
static char *new_csr(const char *cn)
{
    return test_sh_output(NULL,
                          "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                          "-keyout /dev/null -subj /CN=%s 2>/dev/null",
                          cn);
}

/* The CSR with its newlines as the two characters \n (what JSON encoders send). */
static char *escaped(const char *pem)
{
    char *out = malloc(strlen(pem) * 2 + 1), *o = out;
    for (const char *p = pem; *p; p++) {
        if (*p == '\n')
            *o++ = '\\', *o++ = 'n';
        else
            *o++ = *p;
    }
    *o = '\0';
    return out;
}

/* The PEM strings of Certificates verify as a chain (leaf first) against the CA's root. */
static bool chain_verifies(const json_t *certs)
{
    char all[700], leaf[700];
    snprintf(all, sizeof all, "%s/chain.pem", tmp);
    snprintf(leaf, sizeof leaf, "%s/leaf.pem", tmp);
    FILE *f = fopen(all, "w"), *l = fopen(leaf, "w");
    size_t i;
    json_t *c;
    json_array_foreach(certs, i, c)
    {
        const char *pem = json_string_value(c);
        const char *begin = pem ? strstr(pem, "-----BEGIN CERTIFICATE-----") : NULL;
        if (begin != NULL) {
            fputs(begin, f);
            if (i == 0)
                fputs(begin, l);
        }
    }
    fclose(f);
    fclose(l);
    return json_array_size(certs) >= 2 &&
           test_sh("openssl verify -CAfile '%s/ca/root.pem' -untrusted '%s' '%s' >/dev/null", home,
                   all, leaf) == 0;
}

static void test_go_auth_probe_and_health(void)
{
    /* Basic names with a domain, as the Go auth client and the Python SDK send them. */
    exchange d = call("KF\\fleet:fleet-secret", "GET", "/Status/Endpoints", go_headers, NULL);
    CU_ASSERT_EQUAL(d.status, 200);
    exchange_free(&d);
    d = call("fleet@kf.example.test:fleet-secret", "GET", "/Status/Endpoints", go_headers, NULL);
    CU_ASSERT_EQUAL(d.status, 200);
    exchange_free(&d);
    d = call("KF\\fleet:wrong-secret", "GET", "/Status/Endpoints", go_headers, NULL);
    CU_ASSERT_EQUAL(d.status, 401);
    exchange_free(&d);
    /* keyfactor-auth-client-go Authenticate(): the first call of every Go client. */
    exchange x = call("fleet:fleet-secret", "GET", "/Status/Endpoints", go_headers, NULL);
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_TRUE(json_is_array(x.json) && json_array_size(x.json) >= 15);
    CU_ASSERT_TRUE(json_is_string(json_array_get(x.json, 0)));
    CU_ASSERT_PTR_NOT_NULL(x.headers ? strcasestr(x.headers, "content-type: application/json")
                                     : NULL);
    CU_ASSERT_PTR_NOT_NULL(x.headers ? strcasestr(x.headers, "x-keyfactor-product-version: 25")
                                     : NULL);
    CU_ASSERT_PTR_NOT_NULL(x.body ? strstr(x.body, "\"POST /Enrollment/CSR\"") : NULL);
    CU_ASSERT_TRUE(valid(&x, "status-endpoints.response.json", false));
    exchange_free(&x);
    /* A wrong password is refused (the client reports the body). */
    x = call("fleet:nope", "GET", "/Status/Endpoints", go_headers, NULL);
    CU_ASSERT_EQUAL(x.status, 401);
    exchange_free(&x);
    x = call("fleet:fleet-secret", "GET", "/Status/HealthCheck", "", NULL);
    CU_ASSERT_EQUAL(x.status, 204);
    CU_ASSERT_STRING_EQUAL(x.body ? x.body : "?", "");
    exchange_free(&x);
}

static void test_cert_manager_issuer(void)
{
    /* Metadata probe: all seven names, each with a Name. */
    exchange x = call("fleet:fleet-secret", "GET", "/MetadataFields", go_headers, NULL);
    CU_ASSERT_EQUAL(x.status, 200);
    for (int i = 0; metadata_names[i] != NULL; i++)
        CU_ASSERT_PTR_NOT_NULL(test_find_by(x.json, "Name", metadata_names[i]));
    CU_ASSERT_TRUE(valid(&x, "metadatafields.list-item.json", true));
    exchange_free(&x);
    /* Pattern by name, as the SDK encodes it (spaces as '+'): exactly one. */
    x = call("fleet:fleet-secret", "GET",
             "/EnrollmentPatterns?QueryString=Name+-eq+%22My+Pattern%22", go_headers, NULL);
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_EQUAL(json_array_size(x.json), 1);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(x.json, 0), "Id")), 2);
    CU_ASSERT_TRUE(valid(&x, "enrollmentpattern.response.json", true));
    exchange_free(&x);
    /* The enrollment: CSR verbatim, explicit nulls, nanosecond Timestamp, the seven fields. */
    char *csr = new_csr("cm.example.test"), *esc = csr ? escaped(csr) : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(esc);
    char body[8192];
    snprintf(body, sizeof body,
             "{\"CSR\":\"%s\",\"CertificateAuthority\":\"ca01.example.test\\\\Example Issuing "
             "CA\",\"IncludeChain\":true,\"Metadata\":{\"Controller-Namespace\":\"command-issuer-"
             "system\",\"Controller-Kind\":\"Issuer\",\"Controller-Resource-Group-Name\":"
             "\"command-issuer.keyfactor.com\",\"Issuer-Name\":\"issuer-sample\","
             "\"Issuer-Namespace\":\"default\",\"Controller-Reconcile-Id\":\"6f1c0a4e\","
             "\"Certificate-Signing-Request-Namespace\":\"default\"},\"Timestamp\":"
             "\"2026-06-03T20:33:12.123456789Z\",\"OwnerRoleId\":null,\"OwnerRoleName\":null,"
             "\"Template\":\"WebServer\",\"SANs\":{},\"EnrollmentPatternId\":null}\n",
             esc);
    char headers[512];
    snprintf(headers, sizeof headers,
             "%s -H 'x-certificateformat: PEM' "
             "-H 'User-Agent: OpenAPI-Generator/1.0.0/go'",
             go_headers);
    x = call("fleet:fleet-secret", "POST", "/Enrollment/CSR", headers, body);
    CU_ASSERT_EQUAL(x.status, 200);
    json_t *info = json_object_get(x.json, "CertificateInformation");
    CU_ASSERT_TRUE(chain_verifies(json_object_get(info, "Certificates")));
    CU_ASSERT_STRING_EQUAL(
        json_string_value(json_object_get(json_object_get(x.json, "Metadata"), "Issuer-Name")),
        "issuer-sample");
    CU_ASSERT_TRUE(valid(&x, "enrollment-csr.response.json", false));
    exchange_free(&x);
    /* v2.6: a pattern and no CA ("" as the issuer sends it), Template null; a new key. */
    free(esc);
    free(csr);
    csr = new_csr("cm2.example.test");
    esc = csr ? escaped(csr) : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(esc);
    snprintf(body, sizeof body,
             "{\"CSR\":\"%s\",\"CertificateAuthority\":\"\",\"IncludeChain\":true,\"Metadata\":{},"
             "\"Timestamp\":\"2026-06-03T22:33:12.5+02:00\",\"OwnerRoleId\":null,"
             "\"OwnerRoleName\":null,\"Template\":null,\"SANs\":{},\"EnrollmentPatternId\":2}\n",
             esc);
    x = call("fleet:fleet-secret", "POST", "/Enrollment/CSR", headers, body);
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_TRUE(chain_verifies(
        json_object_get(json_object_get(x.json, "CertificateInformation"), "Certificates")));
    CU_ASSERT_TRUE(valid(&x, "enrollment-csr.response.json", false));
    exchange_free(&x);
    free(esc);
    free(csr);
}

static void test_vault_plugin(void)
{
    /* submitCSR: the body concatenated by hand; raw newlines in the CSR, the CA name unescaped,
     * Timestamp without a zone, SANs "ip"; no api-version header, lower-case content-type. */
    char *csr = new_csr("vault.example.test");
    CU_ASSERT_PTR_NOT_NULL_FATAL(csr);
    char body[8192];
    snprintf(body, sizeof body,
             "{\"CSR\": \"%s\", \"CertificateAuthority\":\"ca01.example.test\\Example Issuing "
             "CA\", \"IncludeChain\": true, \"Metadata\": {}, \"Timestamp\": "
             "\"2025-01-02T03:04:05\",\"Template\": \"WebServer\", \"SANs\": {\"dns\": "
             "[\"vault.example.test\"], \"ip\": [\"192.0.2.10\", \"2001:db8::10\"]}}",
             csr);
    const char *headers = "-H 'x-keyfactor-requested-with: APIClient' "
                          "-H 'content-type: application/json' -H 'x-certificateformat: PEM'";
    exchange x = call("fleet:fleet-secret", "POST", "/Enrollment/CSR", headers, body);
    CU_ASSERT_EQUAL(x.status, 200);
    json_t *info = json_object_get(x.json, "CertificateInformation");
    json_t *certs = json_object_get(info, "Certificates");
    CU_ASSERT_PTR_NOT_NULL(
        strstr(json_string_value(json_array_get(certs, 0)) ?: "", "-----BEGIN CERTIFICATE-----"));
    CU_ASSERT_TRUE(json_is_string(json_object_get(info, "SerialNumber")));
    CU_ASSERT_TRUE(json_is_integer(json_object_get(info, "KeyfactorID")));
    vault_id = json_integer_value(json_object_get(info, "KeyfactorID"));
    CU_ASSERT_TRUE(chain_verifies(certs));
    CU_ASSERT_TRUE(valid(&x, "enrollment-csr.response.json", false));
    /* Both IP SANs are in the certificate. */
    char leaf[700];
    snprintf(leaf, sizeof leaf, "%s/leaf.pem", tmp);
    CU_ASSERT_EQUAL(test_sh("openssl x509 -in '%s' -noout -ext subjectAltName | grep -q "
                            "'IP Address:192.0.2.10, IP Address:2001:DB8:0:0:0:0:0:10'",
                            leaf),
                    0);
    exchange_free(&x);
    free(csr);
    /* fetchCertIssuedByCA: the stray space before the closing quote, %20 for spaces. */
    x = call("fleet:fleet-secret", "GET",
             "/Certificates?pq.queryString=CA%20-eq%20%22Example%20Issuing%20CA%20%22&"
             "ReturnLimit=1",
             "-H 'x-keyfactor-requested-with: APIClient' -H 'content-type: application/json'",
             NULL);
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_EQUAL(json_array_size(x.json), 1);
    CU_ASSERT_TRUE(json_is_integer(json_object_get(json_array_get(x.json, 0), "Id")));
    CU_ASSERT_TRUE(valid(&x, "certificate.list-item.json", true));
    exchange_free(&x);
    /* fetchChainAndCAForCert: a P7B whose certs[1] is the CA. */
    snprintf(body, sizeof body,
             "{\"CertID\": %lld, \"IncludeChain\": true, \"ChainOrder\": \"endentityfirst\" }",
             vault_id);
    x = call("fleet:fleet-secret", "POST", "/Certificates/Download",
             "-H 'x-keyfactor-requested-with: APIClient' -H 'content-type: application/json' "
             "-H 'x-certificateformat: P7B'",
             body);
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_TRUE(valid(&x, "certificates-download.response.json", false));
    const char *content = json_string_value(json_object_get(x.json, "Content"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(content);
    char p7[700];
    snprintf(p7, sizeof p7, "%s/download.b64", tmp);
    test_write_file(p7, content);
    char *subjects = test_sh_output(NULL,
                                    "base64 -d '%s' | openssl pkcs7 -inform DER -print_certs "
                                    "-noout | grep '^subject'",
                                    p7);
    CU_ASSERT_TRUE(subjects != NULL && test_count(subjects, "subject=") == 3);
    CU_ASSERT_TRUE(subjects != NULL &&
                   strncmp(subjects, "subject=CN = vault.example.test", 31) == 0);
    free(subjects);
    exchange_free(&x);
}

static void test_go_client_v3(void)
{
    /* EnrollCSR: "SANs": null and "Metadata": null (no omitempty), RFC 3339 in UTC. */
    char *csr = new_csr("gov3.example.test"), *esc = csr ? escaped(csr) : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(esc);
    char body[8192], headers[512];
    snprintf(body, sizeof body,
             "{\"CSR\":\"%s\",\"Timestamp\":\"2025-01-02T03:04:05Z\",\"Template\":\"WebServer\","
             "\"CertificateAuthority\":\"ca01.example.test\\\\Example Issuing CA\","
             "\"IncludeChain\":true,\"SANs\":null,\"Metadata\":{\"Email-Contact\":"
             "\"ops@example.test\",\"Cost-Center\":42}}",
             esc);
    snprintf(headers, sizeof headers, "%s -H 'x-certificateformat: PEM'", go_headers);
    exchange x = call("fleet:fleet-secret", "POST", "/Enrollment/CSR", headers, body);
    CU_ASSERT_EQUAL(x.status, 200);
    json_t *info = json_object_get(x.json, "CertificateInformation");
    char thumb[64];
    snprintf(thumb, sizeof thumb, "%s",
             json_string_value(json_object_get(info, "Thumbprint")) ?: "");
    long long id = json_integer_value(json_object_get(info, "KeyfactorID"));
    /* Metadata comes back as strings, as the schema and the Go SDK want. */
    CU_ASSERT_STRING_EQUAL(
        json_string_value(json_object_get(json_object_get(x.json, "Metadata"), "Cost-Center"))
            ?: "",
        "42");
    CU_ASSERT_TRUE(valid(&x, "enrollment-csr.response.json", false));
    exchange_free(&x);
    free(esc);
    free(csr);
    /* GetCertificateContext by thumbprint: a GET whose body is "null". */
    char path[256];
    snprintf(path, sizeof path, "/Certificates?pq.queryString=Thumbprint%%20-eq%%20%%22%s%%22",
             thumb);
    x = call("fleet:fleet-secret", "GET", path, go_headers, "null");
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_EQUAL(json_array_size(x.json), 1);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(x.json, 0), "Id")), id);
    CU_ASSERT_TRUE(json_is_null(json_object_get(json_array_get(x.json, 0), "PrincipalId")));
    CU_ASSERT_TRUE(valid(&x, "certificate.list-item.json", true));
    exchange_free(&x);
    /* By id: one object. */
    snprintf(path, sizeof path, "/Certificates/%lld", id);
    x = call("fleet:fleet-secret", "GET", path, go_headers, "null");
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_TRUE(json_is_object(x.json));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(x.json, "Thumbprint")) ?: "", thumb);
    CU_ASSERT_TRUE(valid(&x, "certificate.by-id.json", false));
    exchange_free(&x);
    x = call("fleet:fleet-secret", "GET", "/Certificates/999999", go_headers, "null");
    CU_ASSERT_EQUAL(x.status, 404);
    exchange_free(&x);
    /* DownloadCertificate, PEM this time, by thumbprint. */
    snprintf(body, sizeof body,
             "{\"Thumbprint\":\"%s\",\"IncludeChain\":true,"
             "\"ChainOrder\":\"EndEntityFirst\"}",
             thumb);
    snprintf(headers, sizeof headers, "%s -H 'x-certificateformat: PEM'", go_headers);
    x = call("fleet:fleet-secret", "POST", "/Certificates/Download", headers, body);
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_TRUE(valid(&x, "certificates-download.response.json", false));
    exchange_free(&x);
    /* Lists: CAs, templates ("Templates/" after path.Join is "/Templates"). */
    x = call("fleet:fleet-secret", "GET", "/CertificateAuthority", go_headers, "null");
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_PTR_NOT_NULL(test_find_by(x.json, "LogicalName", "Example Issuing CA"));
    CU_ASSERT_PTR_NOT_NULL(test_find_by(x.json, "HostName", "ca01.example.test"));
    CU_ASSERT_TRUE(valid(&x, "certificateauthority.list-item.json", true));
    exchange_free(&x);
    x = call("fleet:fleet-secret", "GET", "/Templates", go_headers, "null");
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_PTR_NOT_NULL(test_find_by(x.json, "TemplateName", "WebServer"));
    CU_ASSERT_TRUE(valid(&x, "templates.list-item.json", true));
    exchange_free(&x);
}

static void test_python_sdk(void)
{
    const char *py = "-H 'Content-Type: application/json' -H 'x-keyfactor-api-version: 1' "
                     "-H 'x-keyfactor-requested-with: APIClient'";
    char *csr = new_csr("py.example.test"), *esc = csr ? escaped(csr) : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(esc);
    char body[8192], headers[512];
    snprintf(body, sizeof body,
             "{\"CSR\": \"%s\", \"Template\": \"WebServer\", \"Metadata\": {}, "
             "\"Timestamp\": \"2025-01-02T03:04:05Z\"}",
             esc);
    snprintf(headers, sizeof headers, "%s -H 'x-certificateformat: PEM'", py);
    exchange x = call("fleet:fleet-secret", "POST", "/Enrollment/CSR", headers, body);
    CU_ASSERT_EQUAL(x.status, 200);
    json_t *info = json_object_get(x.json, "CertificateInformation");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "RequestDisposition")) ?: "",
                           "ISSUED");
    char thumb[64];
    snprintf(thumb, sizeof thumb, "%s",
             json_string_value(json_object_get(info, "Thumbprint")) ?: "");
    long long id = json_integer_value(json_object_get(info, "KeyfactorID"));
    CU_ASSERT_TRUE(valid(&x, "enrollment-csr.response.json", false));
    exchange_free(&x);
    free(esc);
    free(csr);
    /* scenarios.py: AND glued to the quoted value, CertID quoted. */
    char path[512];
    snprintf(path, sizeof path,
             "/Certificates?pq.queryString=CertID%%20-eq%%20%%22%lld%%22AND%%20Thumbprint%%20-eq"
             "%%20%%22%s%%22&pq.returnLimit=50&pq.includeRevoked=false",
             id, thumb);
    x = call("fleet:fleet-secret", "GET", path, py, NULL);
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_EQUAL(json_array_size(x.json), 1);
    CU_ASSERT_TRUE(valid(&x, "certificate.list-item.json", true));
    exchange_free(&x);
    /* OR, parentheses and -contains / -startswith over the issued certificates. */
    x = call("fleet:fleet-secret", "GET",
             "/Certificates?QueryString=(IssuedCN%20-startswith%20%22py.%22%20OR%20IssuedCN%20"
             "-contains%20%22gov3%22)%20AND%20CA%20-ne%20%22nothing%22",
             py, NULL);
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_EQUAL(json_array_size(x.json), 2);
    exchange_free(&x);
    /* Templates through sq.queryString; the pattern by id; the enrollment contexts. */
    x = call("fleet:fleet-secret", "GET",
             "/Templates?sq.queryString=TemplateName%20-eq%20%22WebServer%22", py, NULL);
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_EQUAL(json_array_size(x.json), 1);
    exchange_free(&x);
    x = call("fleet:fleet-secret", "GET", "/EnrollmentPatterns/2", py, NULL);
    CU_ASSERT_EQUAL(x.status, 200);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(x.json, "Name")) ?: "", "My Pattern");
    CU_ASSERT_TRUE(valid(&x, "enrollmentpattern.response.json", false));
    exchange_free(&x);
    static const char *const contexts[] = {"/Enrollment/CSR/Context/My",
                                           "/Enrollment/PFX/Context/My"};
    for (int i = 0; i < 2; i++) {
        x = call("fleet:fleet-secret", "GET", contexts[i], py, NULL);
        CU_ASSERT_EQUAL(x.status, 200);
        CU_ASSERT_PTR_NOT_NULL(
            test_find_by(json_object_get(x.json, "Templates"), "Name", "WebServer"));
        CU_ASSERT_TRUE(valid(&x, "enrollment-context-my.response.json", false));
        exchange_free(&x);
    }
}

static void test_bad_queries_and_inputs(void)
{
    exchange x = call("fleet:fleet-secret", "GET",
                      "/Certificates?QueryString=Colour%20-eq%20%22red%22", go_headers, NULL);
    CU_ASSERT_EQUAL(x.status, 400);
    CU_ASSERT_PTR_NOT_NULL(x.body ? strstr(x.body, "unknown field \\\"Colour\\\"") : NULL);
    exchange_free(&x);
    x = call("fleet:fleet-secret", "GET", "/EnrollmentPatterns?QueryString=Name%20-eq%20%22x",
             go_headers, NULL);
    CU_ASSERT_EQUAL(x.status, 400);
    CU_ASSERT_PTR_NOT_NULL(x.body ? strstr(x.body, "INVALID_QUERY") : NULL);
    exchange_free(&x);
    /* GET /EnrollmentPatterns requires x-keyfactor-requested-with, as Command does. */
    x = call("fleet:fleet-secret", "GET", "/EnrollmentPatterns", "", NULL);
    CU_ASSERT_EQUAL(x.status, 400);
    exchange_free(&x);
    /* A Timestamp that is no date. */
    char *csr = new_csr("bad.example.test"), *esc = csr ? escaped(csr) : NULL;
    char body[8192], headers[512];
    snprintf(body, sizeof body,
             "{\"CSR\":\"%s\",\"Template\":\"WebServer\","
             "\"Timestamp\":\"2025-13-02T03:04:05+02:00\"}",
             esc ? esc : "");
    snprintf(headers, sizeof headers, "%s -H 'x-certificateformat: PEM'", go_headers);
    x = call("fleet:fleet-secret", "POST", "/Enrollment/CSR", headers, body);
    CU_ASSERT_EQUAL(x.status, 400);
    CU_ASSERT_PTR_NOT_NULL(x.body ? strstr(x.body, "INVALID_TIMESTAMP") : NULL);
    exchange_free(&x);
    free(esc);
    free(csr);
}

static void test_v25_pattern_body(void)
{
    const char *body =
        "{\"Name\":\"Web v25\",\"Template\":1,\"UseADPermissions\":false,"
        "\"AssociatedRoles\":[\"Fleet\"],\"CertificateAuthorities\":[1],\"RestrictCAs\":false,"
        "\"AllowedEnrollmentTypes\":3,\"Description\":null,"
        "\"Policies\":{\"AllowKeyReuse\":false,\"AllowWildcards\":false,\"RFCEnforcement\":true,"
        "\"CertificateOwnerRole\":0,\"DefaultCertificateOwnerOverride\":false,"
        "\"PrimaryKeyAlgorithms\":[{\"name\":\"ECDSA\",\"curves\":[\"1.2.840.10045.3.1.7\"]},"
        "{\"name\":\"RSA\",\"bit_lengths\":[2048,3072]}],\"AlternativeKeyAlgorithms\":[]}}";
    exchange x = call("admin:admin-secret", "POST", "/EnrollmentPatterns", go_headers, body);
    CU_ASSERT_EQUAL(x.status, 200);
    long long id = json_integer_value(json_object_get(x.json, "Id"));
    CU_ASSERT_TRUE(id >= 3);
    json_t *algs = json_object_get(json_object_get(x.json, "Policies"), "PrimaryKeyAlgorithms");
    CU_ASSERT_EQUAL(json_array_size(algs), 2);
    CU_ASSERT_TRUE(valid(&x, "enrollmentpattern.response.json", false));
    exchange_free(&x);
    /* Found again by name with -eq AND -contains. */
    x = call("fleet:fleet-secret", "GET",
             "/EnrollmentPatterns?QueryString=Name+-contains+%22v25%22+AND+Template+-eq+"
             "%22WebServer%22",
             go_headers, NULL);
    CU_ASSERT_EQUAL(json_array_size(x.json), 1);
    exchange_free(&x);
}

/* The PKCS#12 of a PFX answer opens with its password (given to openssl in a file), holds a key
 * matching its leaf, and the leaf verifies against the CA's root through the bundled chain. */
static bool pfx_opens(const json_t *info)
{
    const char *blob = json_string_value(json_object_get(info, "Pkcs12Blob"));
    const char *password = json_string_value(json_object_get(info, "Password"));
    if (blob == NULL || password == NULL)
        return false;
    char b64[700], pass[700], pem[700];
    snprintf(b64, sizeof b64, "%s/answer.pfx.b64", tmp);
    snprintf(pass, sizeof pass, "%s/answer.pass", tmp);
    snprintf(pem, sizeof pem, "%s/answer.pfx.pem", tmp);
    if (test_write_file(b64, blob) != 0 || test_write_file(pass, password) != 0)
        return false;
    /* answer.pfx.pem: everything; answer.leaf.pem: the certificate that goes with the key. */
    return test_sh("base64 -d '%s' > '%s/answer.pfx' && openssl pkcs12 -in '%s/answer.pfx' "
                   "-passin 'file:%s' -nodes -out '%s' 2>/dev/null && openssl pkcs12 -in "
                   "'%s/answer.pfx' -passin 'file:%s' -clcerts -nokeys -out '%s/answer.leaf.pem' "
                   "2>/dev/null",
                   b64, tmp, tmp, pass, pem, tmp, pass, tmp) == 0 &&
           test_sh("openssl pkey -in '%s' -pubout 2>/dev/null > '%s/k.pub' && "
                   "openssl x509 -in '%s/answer.leaf.pem' -pubkey -noout > '%s/c.pub' && "
                   "cmp -s '%s/k.pub' '%s/c.pub'",
                   pem, tmp, tmp, tmp, tmp, tmp) == 0 &&
           test_sh("openssl verify -CAfile '%s/ca/root.pem' -untrusted '%s' '%s/answer.leaf.pem' "
                   ">/dev/null",
                   home, pem, tmp) == 0;
}

static void test_pfx_enrollment(void)
{
    /* The Python SDK's pfx_enroll (api-version 1): its members only when set, a password. */
    const char *py = "-H 'Content-Type: application/json' -H 'x-keyfactor-api-version: 1' "
                     "-H 'x-keyfactor-requested-with: APIClient' -H 'x-certificateformat: PFX'";
    exchange x = call("fleet:fleet-secret", "POST", "/Enrollment/PFX", py,
                      "{\"CustomFriendlyName\": \"py-pfx\", \"Password\": \"Tr0ub4dor&3x\", "
                      "\"PopulateMissingValuesFromAD\": false, \"Subject\": "
                      "\"CN=pypfx.example.test,O=Example,C=US\", \"IncludeChain\": true, "
                      "\"Metadata\": {\"Email-Contact\": \"ops@example.test\"}, "
                      "\"Timestamp\": \"2025-01-02T03:04:05Z\", \"Template\": \"WebServer\", "
                      "\"SANs\": {\"dns\": [\"pypfx.example.test\"]}}");
    CU_ASSERT_EQUAL(x.status, 200);
    json_t *info = json_object_get(x.json, "CertificateInformation");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "Password")) ?: "",
                           "Tr0ub4dor&3x");
    CU_ASSERT_TRUE(json_integer_value(json_object_get(info, "KeyfactorId")) > 0);
    CU_ASSERT_PTR_NULL(json_object_get(info, "KeyfactorID"));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "RequestDisposition")) ?: "",
                           "ISSUED");
    CU_ASSERT_TRUE(pfx_opens(info));
    CU_ASSERT_TRUE(valid(&x, "enrollment-pfx.response.json", false));
    /* The friendly name is the leaf's alias; the SAN is certified. */
    CU_ASSERT_EQUAL(test_sh("grep -q 'friendlyName: py-pfx' '%s/answer.pfx.pem' && "
                            "openssl x509 -in '%s/answer.leaf.pem' -noout -ext subjectAltName | "
                            "grep -q 'DNS:pypfx.example.test'",
                            tmp, tmp),
                    0);
    exchange_free(&x);

    /* go-client v3 EnrollPFXV2: api-version 2, no password (one is generated), ChainOrder,
     * KeyType/KeyLength. */
    char headers[512];
    snprintf(headers, sizeof headers,
             "-H 'Content-Type: application/json' -H 'Accept: application/json' "
             "-H 'x-keyfactor-api-version: 2' -H 'x-keyfactor-requested-with: APIClient' "
             "-H 'x-certificateformat: PFX'");
    x = call("fleet:fleet-secret", "POST", "/Enrollment/PFX", headers,
             "{\"Password\":\"\",\"PopulateMissingValuesFromAD\":false,"
             "\"Subject\":\"CN=gopfx.example.test,O=Example,C=US\",\"IncludeChain\":true,"
             "\"CertificateAuthority\":\"ca01.example.test\\\\Example Issuing CA\","
             "\"Timestamp\":\"2025-01-02T03:04:05Z\",\"Template\":\"WebServer\","
             "\"SANs\":{\"dns\":[\"gopfx.example.test\"]},\"InstallIntoExistingCertificateStores\":"
             "false,\"ChainOrder\":\"RootFirst\",\"KeyType\":\"ECC\",\"KeyLength\":256}");
    CU_ASSERT_EQUAL(x.status, 200);
    info = json_object_get(x.json, "CertificateInformation");
    CU_ASSERT_TRUE(strlen(json_string_value(json_object_get(info, "Password")) ?: "") >= 16);
    CU_ASSERT_TRUE(json_is_array(json_object_get(x.json, "SuccessfulStores")));
    CU_ASSERT_TRUE(pfx_opens(info));
    CU_ASSERT_EQUAL(test_sh("openssl x509 -in '%s/answer.leaf.pem' -noout -text | "
                            "grep -q 'prime256v1'",
                            tmp),
                    0);
    CU_ASSERT_TRUE(valid(&x, "enrollment-pfx.response.json", false));
    exchange_free(&x);

    /* Refused: another format, ChainOrder under v1, a store to install into, a bad subject. */
    snprintf(headers, sizeof headers, "%s -H 'x-certificateformat: ZIP'", go_headers);
    x = call("fleet:fleet-secret", "POST", "/Enrollment/PFX", headers,
             "{\"Subject\":\"CN=x.example.test\",\"Template\":\"WebServer\"}");
    CU_ASSERT_EQUAL(x.status, 400);
    exchange_free(&x);
    x = call("fleet:fleet-secret", "POST", "/Enrollment/PFX", py,
             "{\"Subject\":\"CN=x.example.test\",\"Template\":\"WebServer\","
             "\"ChainOrder\":\"RootFirst\"}");
    CU_ASSERT_EQUAL(x.status, 400);
    CU_ASSERT_PTR_NOT_NULL(x.body ? strstr(x.body, "FIELD_NOT_SUPPORTED") : NULL);
    exchange_free(&x);
    x = call("fleet:fleet-secret", "POST", "/Enrollment/PFX", py,
             "{\"Subject\":\"CN=x.example.test\",\"Template\":\"WebServer\","
             "\"Stores\":[{\"StoreId\":\"00000000-0000-0000-0000-000000000001\"}]}");
    CU_ASSERT_EQUAL(x.status, 400);
    exchange_free(&x);
    x = call("fleet:fleet-secret", "POST", "/Enrollment/PFX", py,
             "{\"Subject\":\"not a DN\",\"Template\":\"WebServer\"}");
    CU_ASSERT_EQUAL(x.status, 400);
    exchange_free(&x);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_go_auth_probe_and_health),
        TEST_CASE(test_cert_manager_issuer),
        TEST_CASE(test_vault_plugin),
        TEST_CASE(test_go_client_v3),
        TEST_CASE(test_python_sdk),
        TEST_CASE(test_bad_queries_and_inputs),
        TEST_CASE(test_v25_pattern_body),
        TEST_CASE(test_pfx_enrollment),
        TEST_END,
    };
    return test_main("clients", cases, setup, teardown);
}
