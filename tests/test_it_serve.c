/* The engine against `hsmenroll serve` over loopback through the `keyfactor` connector: Basic
 * authentication (right, wrong), pattern roles, injected faults (every request still issued),
 * pending answers, TLS with and without the trust bundle, serials unique across restarts; and
 * serve's own bad-input answers (bad JSON, missing headers, oversized body, unknown pattern),
 * checked with curl. Certificates are verified with `openssl verify`. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support.h"

static char *tmp;  /* everything of this suite */
static char *home; /* the server's engine home (embedded default: SoftHSM store + embedded CA) */
static char creds[600], url[256];
static pid_t server_pid;

/* Starts serve with extra options and waits until it listens; 0 or -1. */
static int start_server(const char *extra)
{
    char options[3072];
    snprintf(options, sizeof options, "--home '%s' --credentials '%s' %s", home, creds, extra);
    server_pid = test_start_serve_ready(tmp, "", options, url, sizeof url);
    return server_pid > 0 ? 0 : -1;
}

/* SIGTERM, and the exit status (0 for a clean stop). */
static int stop_server(void)
{
    if (server_pid <= 0)
        return -1;
    kill(server_pid, SIGTERM);
    int status = 0;
    waitpid(server_pid, &status, 0);
    server_pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
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
    tmp = test_tmpdir("hsmenroll-serve");
    if (tmp == NULL || asprintf(&home, "%s/home", tmp) < 0)
        return 1;
    unsetenv("HSMENROLL_PIN");
    snprintf(creds, sizeof creds, "%s/users.json", tmp);
    char *fleet = hash_of("fleet-secret"), *admin = hash_of("admin-secret"),
         *nobody = hash_of("nobody-secret");
    if (fleet == NULL || admin == NULL || nobody == NULL || strncmp(fleet, "pbkdf2-sha256$", 14))
        return 1;
    char text[2048];
    snprintf(text, sizeof text,
             "{\"Users\":[{\"Name\":\"fleet\",\"Password\":\"%s\",\"Roles\":[\"Fleet Operators\"]},"
             "{\"Name\":\"admin\",\"Password\":\"%s\",\"Roles\":[\"Administrators\"],"
             "\"Permissions\":[\"enrollment_pattern/modify\"]},"
             "{\"Name\":\"nobody\",\"Password\":\"%s\"}]}",
             fleet, admin, nobody);
    free(fleet);
    free(admin);
    free(nobody);
    if (test_write_file(creds, text) != 0 || chmod(creds, 0600) != 0)
        return 1;
    return start_server("");
}

static int teardown(void)
{
    stop_server();
    test_rmtree(tmp);
    free(tmp);
    free(home);
    return 0;
}

/* The engine's configuration: its keys in the server's "hsmenroll" token, one keyfactor CA. */
static void write_engine_config(const char *path, const char *user, const char *extra_ca)
{
    char text[4096];
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"],\"PinFile\":\"%s/pin\"},"
             "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"kf\\\\embedded\",\"Type\":"
             "\"keyfactor\",\"Url\":\"%s\",\"RemoteName\":\"embedded\",\"Auth\":{\"Type\":"
             "\"Basic\",\"User\":\"%s\",\"PasswordEnv\":\"KF_PASSWORD\"},\"Retries\":12,"
             "\"RetryDelayMs\":10%s}],"
             "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[1]}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1},"
             "{\"Id\":2,\"Name\":\"Fleet only\",\"Template\":1}]}",
             home, url, user, extra_ca ? extra_ca : "");
    test_write_file(path, text);
}

/* A batch of n lines cycling through key types, PEM with the chain; pattern 0 means none. */
static void write_batch(const char *path, int n, const char *prefix, int pattern)
{
    static const char *const keys[] = {
        "\"KeyType\":\"ECC\",\"KeyLength\":256", "\"KeyType\":\"RSA\",\"KeyLength\":2048",
        "\"KeyType\":\"Ed25519\"", "\"KeyType\":\"ECC\",\"Curve\":\"1.3.132.0.34\""};
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return;
    for (int i = 0; i < n; i++) {
        char pat[48] = "";
        if (pattern > 0)
            snprintf(pat, sizeof pat, ",\"EnrollmentPatternId\":%d", pattern);
        fprintf(f,
                "{\"Id\":\"%s-%03d\",\"Subject\":\"CN=%s-%03d.fleet.example,O=Example\","
                "\"SANs\":{\"dns\":[\"%s-%03d.fleet.example\"]},%s,\"Format\":\"PEM\","
                "\"IncludeChain\":true%s%s}\n",
                prefix, i, prefix, i, prefix, i, keys[i % 4],
                pattern ? "" : ",\"Template\":\"Default\"", pat);
    }
    fclose(f);
}

/* Runs the engine on batch with config; results in out. Returns the exit status. */
static int run_engine(const char *config, const char *batch, const char *out, const char *password)
{
    int rc = test_sh("SOFTHSM2_CONF='%s/softhsm2.conf' KF_PASSWORD='%s' '%s' run '%s' -o '%s' "
                     "--config '%s' --inflight 16 --force 2>>'%s/engine.log'",
                     home, password, HSMENROLL_BIN, batch, out, config, tmp);
    if (rc > 1)
        test_sh("tail -3 '%s/engine.log' >&2", tmp);
    return rc;
}

/* How many results have value at key (Status), or at Error.key when in_error. */
static int count_with(json_t *results, bool in_error, const char *key, const char *value)
{
    int n = 0;
    size_t i;
    json_t *r;
    json_array_foreach(results, i, r)
    {
        json_t *where = in_error ? json_object_get(r, "Error") : r;
        const char *v = json_string_value(json_object_get(where, key));
        n += v != NULL && strcmp(v, value) == 0;
    }
    return n;
}

static int count_status(json_t *results, const char *status)
{
    return count_with(results, false, "Status", status);
}

static int count_error(json_t *results, const char *code)
{
    return count_with(results, true, "Code", code);
}

/* Every issued PEM bundle verifies against the embedded root with openssl. */
static int verified_bundles(json_t *results, const char *out)
{
    int ok = 0;
    size_t i;
    json_t *r;
    json_array_foreach(results, i, r)
    {
        const char *file = json_string_value(json_array_get(json_object_get(r, "Files"), 0));
        if (file == NULL)
            continue;
        /* The bundle holds leaf, issuing CA, root (and the key); verify the leaf with the rest. */
        if (test_sh("cd '%s' && openssl crl2pkcs7 -nocrl -certfile '%s' | openssl pkcs7 "
                    "-print_certs > '%s.certs' && awk '/BEGIN CERT/{n++} n==1' '%s.certs' > "
                    "'%s.leaf' && openssl verify -CAfile '%s/ca/root.pem' -untrusted '%s.certs' "
                    "'%s.leaf' >/dev/null",
                    out, file, file, file, file, home, file, file) == 0)
            ok++;
    }
    return ok;
}

static void test_enrollment_through_the_keyfactor_connector(void)
{
    char config[600], batch[600], out[600], results[700];
    snprintf(config, sizeof config, "%s/engine.json", tmp);
    snprintf(batch, sizeof batch, "%s/ok.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-ok", tmp);
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    write_engine_config(config, "fleet", NULL);
    write_batch(batch, 24, "ok", 0);
    CU_ASSERT_EQUAL(run_engine(config, batch, out, "fleet-secret"), 0);
    json_t *res = test_load_ndjson(results);
    CU_ASSERT_PTR_NOT_NULL_FATAL(res);
    CU_ASSERT_EQUAL(count_status(res, "issued"), 24);
    CU_ASSERT_EQUAL(verified_bundles(res, out), 24);
    /* The server's numbers come back: KeyfactorID and the disposition. */
    json_t *info = json_object_get(json_array_get(res, 0), "CertificateInformation");
    CU_ASSERT_TRUE(json_integer_value(json_object_get(info, "KeyfactorID")) > 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "RequestDisposition")),
                           "ISSUED");
    /* The server's CA logged each issuance. */
    char log[700];
    snprintf(log, sizeof log, "%s/ca/issued.ndjson", home);
    char *issued = test_read_file(log, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(issued);
    CU_ASSERT_TRUE(test_count(issued, "\"RequestId\":\"api-") >= 24);
    free(issued);
    json_decref(res);
}

static void test_wrong_password_and_missing_role(void)
{
    char config[600], batch[600], out[600], results[700];
    snprintf(config, sizeof config, "%s/engine-bad.json", tmp);
    snprintf(batch, sizeof batch, "%s/bad.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-bad", tmp);
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    write_engine_config(config, "fleet", NULL);
    write_batch(batch, 6, "bad", 0);
    CU_ASSERT_EQUAL(run_engine(config, batch, out, "not-the-password"), 1);
    json_t *res = test_load_ndjson(results);
    CU_ASSERT_EQUAL(count_error(res, "CA_AUTH_FAILED"), 6);
    /* 401 is not retried, and the password is not echoed. */
    const char *msg = json_string_value(
        json_object_get(json_object_get(json_array_get(res, 0), "Error"), "Message"));
    CU_ASSERT_PTR_NOT_NULL(msg);
    CU_ASSERT_PTR_NOT_NULL(msg ? strstr(msg, "after 1 attempt") : NULL);
    CU_ASSERT_PTR_NULL(msg ? strstr(msg, "not-the-password") : "x");
    json_decref(res);

    /* Pattern 2 on the server serves only Fleet Operators: add it as admin. */
    int status;
    char *answer = test_sh_output(
        &status,
        "curl -s -w '\\n%%{http_code}' -u admin:admin-secret -H 'Content-Type: application/json' "
        "-H 'x-keyfactor-requested-with: APIClient' -d '{\"Name\":\"Fleet "
        "only\",\"Template\":1,\"UseADPermissions\":false,"
        "\"AssociatedRoles\":[\"Fleet Operators\"]}' '%s/EnrollmentPatterns'",
        url);
    CU_ASSERT_PTR_NOT_NULL_FATAL(answer);
    CU_ASSERT_PTR_NOT_NULL(strstr(answer, "\n200"));
    CU_ASSERT_PTR_NOT_NULL(strstr(answer, "\"Id\":2"));
    free(answer);

    write_batch(batch, 4, "role", 2);
    write_engine_config(config, "nobody", NULL);
    CU_ASSERT_EQUAL(run_engine(config, batch, out, "nobody-secret"), 1);
    res = test_load_ndjson(results);
    CU_ASSERT_EQUAL(count_error(res, "CA_FORBIDDEN"), 4);
    json_decref(res);
    write_engine_config(config, "fleet", NULL);
    CU_ASSERT_EQUAL(run_engine(config, batch, out, "fleet-secret"), 0);
    res = test_load_ndjson(results);
    CU_ASSERT_EQUAL(count_status(res, "issued"), 4);
    json_decref(res);
}

static void test_injected_faults_and_pending(void)
{
    CU_ASSERT_EQUAL(stop_server(), 0);
    CU_ASSERT_EQUAL_FATAL(start_server("--fail-rate 0.3"), 0);
    char config[600], batch[600], out[600], results[700];
    snprintf(config, sizeof config, "%s/engine-faults.json", tmp);
    snprintf(batch, sizeof batch, "%s/faults.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-faults", tmp);
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    write_engine_config(config, "fleet", NULL);
    write_batch(batch, 60, "fault", 0);
    CU_ASSERT_EQUAL(run_engine(config, batch, out, "fleet-secret"), 0);
    json_t *res = test_load_ndjson(results);
    CU_ASSERT_EQUAL(count_status(res, "issued"), 60);
    CU_ASSERT_EQUAL(verified_bundles(res, out), 60);
    json_decref(res);
    char *log = NULL;
    char path[700];
    snprintf(path, sizeof path, "%s/engine.log", tmp);
    log = test_read_file(path, NULL);
    free(log);

    CU_ASSERT_EQUAL(stop_server(), 0);
    CU_ASSERT_EQUAL_FATAL(start_server("--pending-rate 1"), 0);
    write_engine_config(config, "fleet", NULL);
    write_batch(batch, 4, "pend", 0);
    snprintf(out, sizeof out, "%s/out-pending", tmp);
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    CU_ASSERT_EQUAL(run_engine(config, batch, out, "fleet-secret"), 0);
    res = test_load_ndjson(results);
    CU_ASSERT_EQUAL(count_status(res, "pending"), 4);
    json_t *first = json_array_get(res, 0);
    json_t *info = json_object_get(first, "CertificateInformation");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "RequestDisposition")),
                           "EXTERNAL VALIDATION");
    CU_ASSERT_TRUE(json_integer_value(json_object_get(info, "KeyfactorRequestId")) > 0);
    /* The exported key is kept, encrypted, for when the certificate comes. */
    const char *file = json_string_value(json_array_get(json_object_get(first, "Files"), 0));
    CU_ASSERT_PTR_NOT_NULL_FATAL(file);
    const char *pw = json_string_value(json_object_get(info, "Password"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(pw);
    CU_ASSERT_EQUAL(test_sh("openssl pkcs8 -inform DER -in '%s/%s' -passin 'pass:%s' -out "
                            "/dev/null 2>/dev/null",
                            out, file, pw),
                    0);
    json_decref(res);
    CU_ASSERT_EQUAL(stop_server(), 0);
    CU_ASSERT_EQUAL(start_server(""), 0);
}

/* One curl call: prints the body then the status on the last line. */
static char *curl_call(const char *fmt_args)
{
    return test_sh_output(NULL, "curl -s -w '\\n%%{http_code}' %s", fmt_args);
}

static bool answer_is(const char *answer, const char *status, const char *needle)
{
    if (answer == NULL)
        return false;
    const char *last = strrchr(answer, '\n');
    bool ok = last != NULL && strcmp(last + 1, status) == 0 &&
              (needle == NULL || strstr(answer, needle) != NULL);
    if (!ok)
        fprintf(stderr, "\n  expected %s with %s, got: %s\n", status, needle ? needle : "-",
                answer);
    return ok;
}

/* One call with curl (its arguments printf-style): true when the answer has this status and
 * holds needle (NULL: anything). */
static bool api_is(const char *status, const char *needle, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool api_is(const char *status, const char *needle, const char *fmt, ...)
{
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *a = curl_call(args);
    bool ok = answer_is(a, status, needle);
    free(a);
    return ok;
}

/* A TCP port of 127.0.0.1 free a moment ago. */
static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    unsigned port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* The 429s the server answered for --rate-limit, from the last stop's line in serve.log; -1
 * when there is none. */
static long quota_refusals(void)
{
    char path[700];
    snprintf(path, sizeof path, "%s/serve.log", tmp);
    char *log = test_read_file(path, NULL);
    long n = -1;
    for (const char *at = log; at != NULL && (at = strstr(at, "API requests taken, ")) != NULL;
         at++)
        n = strtol(at + strlen("API requests taken, "), NULL, 10);
    free(log);
    return n;
}

/* A CA with a quota (serve --rate-limit 20, 429 with Retry-After above it). With RateLimit 20
 * and MaxInFlight 4 in the CA entry, every request is issued and the server refused next to none;
 * without them every request is still issued: the 429s are waited out, not failures, and the
 * engine learns the rate from them instead of retrying in waves (fewer than 3 per request). */
static void test_ca_quota(void)
{
    char config[600], batch[600], out[600], results[700];
    snprintf(config, sizeof config, "%s/engine-quota.json", tmp);
    snprintf(batch, sizeof batch, "%s/quota.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-quota", tmp);
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    write_batch(batch, 40, "quota", 0);
    CU_ASSERT_EQUAL(stop_server(), 0);
    for (int limited = 1; limited >= 0; limited--) {
        unsigned port = free_port();
        char extra[100];
        snprintf(extra, sizeof extra, "--rate-limit 20 --metrics-listen 127.0.0.1:%u", port);
        CU_ASSERT_EQUAL_FATAL(start_server(extra), 0);
        write_engine_config(config, "fleet",
                            limited ? ",\"RateLimit\":20,\"MaxInFlight\":4" : NULL);
        CU_ASSERT_EQUAL(run_engine(config, batch, out, "fleet-secret"), 0);
        json_t *res = test_load_ndjson(results);
        CU_ASSERT_EQUAL(count_status(res, "issued"), 40);
        json_decref(res);
        /* serve's /metrics: every enrollment answered 200, and its 429 count as it logs it. */
        char *m = test_sh_output(NULL, "curl -sf http://127.0.0.1:%u/metrics", port);
        const char *ok = m ? strstr(m, "hsmenroll_serve_answers_total{status=\"200\"} ") : NULL;
        CU_ASSERT_TRUE(ok != NULL && strtol(strchr(ok, ' ') + 1, NULL, 10) >= 40);
        const char *lim = m ? strstr(m, "\nhsmenroll_serve_rate_limited_total ") : NULL;
        long scraped =
            lim ? strtol(lim + strlen("\nhsmenroll_serve_rate_limited_total "), NULL, 10) : -1;
        free(m);
        CU_ASSERT_EQUAL(stop_server(), 0);
        long refused = quota_refusals();
        CU_ASSERT_TRUE(refused >= 0);
        CU_ASSERT_EQUAL(scraped, refused);
        /* Without RateLimit, the rate learnt from the 429s: no storm of retries (344 for these
         * 40 requests when each request waited out its own). */
        CU_ASSERT_TRUE(limited ? refused <= 2 : refused < 120);
    }
    CU_ASSERT_EQUAL_FATAL(start_server(""), 0);
}

static void test_serve_bad_input(void)
{
    char csr_path[700], args[4096];
    snprintf(csr_path, sizeof csr_path, "%s/req.csr", tmp);
    CU_ASSERT_EQUAL_FATAL(
        test_sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
                "/dev/null -subj /CN=api.example -outform DER 2>/dev/null | base64 -w0 > '%s'",
                csr_path),
        0);
    char *csr = test_read_file(csr_path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(csr);
    const char *kf = "-H 'x-keyfactor-requested-with: APIClient' -H 'Content-Type: "
                     "application/json'";

    /* A good call, as a client would make it: 200, the certificate and chain in PEM. */
    snprintf(args, sizeof args,
             "-u fleet:fleet-secret %s -H 'x-certificateformat: PEM' -d "
             "'{\"CSR\":\"%s\",\"Template\":\"Default\",\"IncludeChain\":true,\"SANs\":{\"dns\":"
             "[\"api.example\"]},\"Timestamp\":\"2026-11-24T10:00:00Z\"}' '%s/Enrollment/CSR'",
             kf, csr, url);
    char *a = curl_call(args);
    CU_ASSERT_TRUE(answer_is(a, "200", "\"RequestDisposition\":\"ISSUED\""));
    CU_ASSERT_EQUAL(test_count(a ? a : "", "BEGIN CERTIFICATE"), 3);
    free(a);
    /* No credentials; a wrong password. */
    CU_ASSERT_TRUE(api_is("401", "\"ErrorCode\":\"UNAUTHORIZED\"",
                          "%s -H 'x-certificateformat: PEM' -d '{}' '%s/Enrollment/CSR'", kf, url));
    CU_ASSERT_TRUE(api_is(
        "401", NULL, "-u fleet:wrong %s -H 'x-certificateformat: PEM' -d '{}' '%s/Enrollment/CSR'",
        kf, url));
    /* The x-certificateformat header is missing: 400 naming it. */
    CU_ASSERT_TRUE(api_is("400", "x-certificateformat",
                          "-u fleet:fleet-secret %s -d '{\"CSR\":\"%s\"}' '%s/Enrollment/CSR'", kf,
                          csr, url));
    /* Bad JSON. */
    CU_ASSERT_TRUE(api_is("400", "\"ErrorCode\":\"INVALID_JSON\"",
                          "-u fleet:fleet-secret %s -H 'x-certificateformat: PEM' -d '{\"CSR\":' "
                          "'%s/Enrollment/CSR'",
                          kf, url));
    /* An unknown pattern; a CSR that is not one. */
    CU_ASSERT_TRUE(api_is("400", "\"ErrorCode\":\"UNKNOWN_PATTERN\"",
                          "-u fleet:fleet-secret %s -H 'x-certificateformat: DER' -d "
                          "'{\"CSR\":\"%s\",\"EnrollmentPatternId\":77}' '%s/Enrollment/CSR'",
                          kf, csr, url));
    CU_ASSERT_TRUE(
        api_is("400", "\"ErrorCode\":\"INVALID_CSR\"",
               "-u fleet:fleet-secret %s -H 'x-certificateformat: PEM' -d "
               "'{\"CSR\":\"bm90IGEgY3Ny\",\"Template\":\"Default\"}' '%s/Enrollment/CSR'",
               kf, url));
    /* Body fields: the first field that is unknown or PrivateKey, in the body's order, decides
     * the answer. */
    CU_ASSERT_TRUE(api_is("400", "Colour: not a field of POST",
                          "-u fleet:fleet-secret %s -H 'x-certificateformat: PEM' -d "
                          "'{\"csr\":\"x\",\"Colour\":1,\"privatekey\":\"k\"}' '%s/Enrollment/CSR'",
                          kf, url));
    CU_ASSERT_TRUE(api_is("400", "\"ErrorCode\":\"FIELD_NOT_SUPPORTED\"",
                          "-u fleet:fleet-secret %s -H 'x-certificateformat: PEM' -d "
                          "'{\"csr\":\"x\",\"privatekey\":\"k\",\"Colour\":1}' '%s/Enrollment/CSR'",
                          kf, url));
    /* An oversized body (the default limit is 1 MiB). */
    char big[700];
    snprintf(big, sizeof big, "%s/big.json", tmp);
    CU_ASSERT_EQUAL(test_sh("head -c 1100000 /dev/zero | tr '\\0' 'a' | sed 's/^/{\"CSR\":\"/; "
                            "s/$/\"}/' > '%s'",
                            big),
                    0);
    CU_ASSERT_TRUE(
        api_is("413", "BODY_TOO_LARGE",
               "-u fleet:fleet-secret %s -H 'x-certificateformat: PEM' --data-binary '@%s' "
               "'%s/Enrollment/CSR'",
               kf, big, url));
    /* Unknown resource; wrong method. */
    CU_ASSERT_TRUE(api_is("404", "NOT_FOUND", "-u fleet:fleet-secret '%s/Nothing/Here'", url));
    CU_ASSERT_TRUE(api_is("405", NULL, "-u fleet:fleet-secret '%s/Enrollment/CSR'", url));
    /* Patterns: listed (the Template as the v25 schema has it: Id and TemplateName); adding one
     * needs the permission and a valid body. */
    CU_ASSERT_TRUE(api_is(
        "200", "\"Template\":{\"Id\":1,\"TemplateName\":\"Default\"",
        "-u fleet:fleet-secret -H 'x-keyfactor-requested-with: APIClient' '%s/EnrollmentPatterns'",
        url));
    CU_ASSERT_TRUE(api_is("403", "enrollment_pattern/modify",
                          "-u fleet:fleet-secret %s -d '{\"Name\":\"X\","
                          "\"Template\":1}' '%s/EnrollmentPatterns'",
                          kf, url));
    CU_ASSERT_TRUE(api_is("400", "\"Field\":\"AssociatedRoles\"",
                          "-u admin:admin-secret %s -d '{\"Name\":\"Y\","
                          "\"Template\":1,\"UseADPermissions\":false}' '%s/EnrollmentPatterns'",
                          kf, url));
    CU_ASSERT_TRUE(api_is("400", "\"Field\":\"Template\"",
                          "-u admin:admin-secret %s -d '{\"Name\":\"Z\","
                          "\"Template\":9}' '%s/EnrollmentPatterns'",
                          kf, url));
    free(csr);
}

/* The limits against abuse, on a server restarted with a 2 s request deadline and a lockout after
 * 3 wrong passwords: a client that trickles its headers (slowloris) gets 408 and is cut off in
 * time while a normal client is served; oversized headers get an error status and no crash; wrong
 * passwords from 127.0.0.1 lead to 429 with Retry-After (the right password too, until the
 * lockout ends), while 127.0.0.2 is not locked out; a success clears the count. */
static void test_serve_limits(void)
{
    CU_ASSERT_EQUAL_FATAL(stop_server(), 0);
    CU_ASSERT_EQUAL_FATAL(start_server("--request-timeout 2 --max-login-failures 3"), 0);
    const char *port = strrchr(url, ':') + 1;
    /* Slowloris: a header line every 0.5 s, for up to 8 s; the server answers 408 and closes
     * after about 2 s. */
    char *slow = test_sh_output(
        NULL,
        "start=$(date +%%s%%N); (printf 'POST /KeyfactorAPI/Enrollment/CSR HTTP/1.1\\r\\nHost: "
        "x\\r\\n'; for i in $(seq 16); do printf 'X-Slow-%%d: y\\r\\n' $i; sleep 0.5; done) | "
        "curl -s telnet://127.0.0.1:%.*s 2>/dev/null | head -1; end=$(date +%%s%%N); echo "
        "\"ms=$(( (end - start) / 1000000 ))\"",
        (int)strcspn(port, "/"), port);
    CU_ASSERT_PTR_NOT_NULL_FATAL(slow);
    CU_ASSERT_PTR_NOT_NULL(strstr(slow, "HTTP/1.1 408"));
    const char *ms = strstr(slow, "ms=");
    CU_ASSERT_TRUE(ms != NULL && atoi(ms + 3) < 6000);
    free(slow);
    CU_ASSERT_TRUE(api_is(
        "200", "\"Template\"",
        "-u fleet:fleet-secret -H 'x-keyfactor-requested-with: APIClient' '%s/EnrollmentPatterns'",
        url));
    /* 100 KB of headers: refused (431, or the connection closed: curl reports 000), and the
     * server still serves. */
    char *big = test_sh_output(NULL,
                               "curl -s -o /dev/null -w '%%{http_code}' -u fleet:fleet-secret -H "
                               "\"X-Big: $(head -c 100000 /dev/zero | tr '\\0' a)\" "
                               "'%s/EnrollmentPatterns'",
                               url);
    CU_ASSERT_TRUE(big != NULL && strcmp(big, "200") != 0);
    free(big);
    CU_ASSERT_TRUE(api_is(
        "200", NULL,
        "-u fleet:fleet-secret -H 'x-keyfactor-requested-with: APIClient' '%s/EnrollmentPatterns'",
        url));
    /* Failed-login throttling: 3 wrong passwords, then 429 even for the right one. */
    for (int i = 0; i < 3; i++)
        CU_ASSERT_TRUE(api_is("401", NULL, "-u fleet:wrong-%d '%s/EnrollmentPatterns'", i, url));
    CU_ASSERT_TRUE(api_is(
        "429", "TOO_MANY_FAILED_LOGINS",
        "-u fleet:fleet-secret -H 'x-keyfactor-requested-with: APIClient' '%s/EnrollmentPatterns'",
        url));
    char *headers = test_sh_output(NULL,
                                   "curl -s -D - -o /dev/null -u fleet:fleet-secret "
                                   "'%s/EnrollmentPatterns'",
                                   url);
    CU_ASSERT_PTR_NOT_NULL(headers ? strcasestr(headers, "Retry-After: 1") : NULL);
    free(headers);
    /* Another address is not locked out. */
    CU_ASSERT_TRUE(api_is("200", NULL,
                          "--interface 127.0.0.2 -u fleet:fleet-secret -H "
                          "'x-keyfactor-requested-with: APIClient' '%s/EnrollmentPatterns'",
                          url));
    /* After the lockout (1 s), the right password works and clears the count: two more wrong
     * ones are 401, not 429. */
    usleep(1500000);
    CU_ASSERT_TRUE(api_is(
        "200", NULL,
        "-u fleet:fleet-secret -H 'x-keyfactor-requested-with: APIClient' '%s/EnrollmentPatterns'",
        url));
    for (int i = 0; i < 2; i++)
        CU_ASSERT_TRUE(api_is("401", NULL, "-u fleet:again-%d '%s/EnrollmentPatterns'", i, url));
    CU_ASSERT_TRUE(api_is(
        "200", NULL,
        "-u fleet:fleet-secret -H 'x-keyfactor-requested-with: APIClient' '%s/EnrollmentPatterns'",
        url));
    CU_ASSERT_EQUAL(stop_server(), 0);
    CU_ASSERT_EQUAL(start_server(""), 0);
}

/* Issue 17, item 10: from one address, an attacker who owns an account ("nobody") logs in with
 * it between guesses at fleet's password; the lockout (after 3 failures) still comes on the
 * third guess, since a success clears only the failures of its own name. */
static void test_login_failures_counted_per_name(void)
{
    CU_ASSERT_EQUAL_FATAL(stop_server(), 0);
    CU_ASSERT_EQUAL_FATAL(start_server("--max-login-failures 3"), 0);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_TRUE(api_is("401", NULL, "-u fleet:guess-%d '%s/EnrollmentPatterns'", i, url));
        if (i < 2)
            CU_ASSERT_TRUE(api_is("200", NULL,
                                  "-H 'x-keyfactor-requested-with: APIClient' -u "
                                  "nobody:nobody-secret '%s/EnrollmentPatterns'",
                                  url));
    }
    CU_ASSERT_TRUE(
        api_is("429", "TOO_MANY_FAILED_LOGINS", "-u fleet:guess-3 '%s/EnrollmentPatterns'", url));
    CU_ASSERT_EQUAL(stop_server(), 0);
    CU_ASSERT_EQUAL(start_server(""), 0);
}

/* Issue 17, item 9: half a TLS configuration is refused at start (exit 2), never served as plain
 * HTTP. */
static void test_half_tls_refused(void)
{
    char *out = NULL;
    int status = -1;
    out = test_sh_output(&status,
                         "'%s' serve --home '%s' --listen 127.0.0.1:0 --credentials '%s' "
                         "--tls-cert '%s/none.pem' 2>&1",
                         HSMENROLL_BIN, home, creds, tmp);
    CU_ASSERT_EQUAL(status, 2);
    CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "--tls-key") : NULL);
    free(out);
    out = test_sh_output(&status,
                         "'%s' serve --home '%s' --listen 127.0.0.1:0 --credentials '%s' "
                         "--tls-key '%s/none.pem' 2>&1",
                         HSMENROLL_BIN, home, creds, tmp);
    CU_ASSERT_EQUAL(status, 2);
    CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "--tls-cert") : NULL);
    free(out);
}

/* Issue 17, item 13: the SANs of one request are bounded (1000, the CSR's and the body's
 * together): 50,000 in the body, 1001 in the CSR, 600 + 600 are refused with TOO_MANY_SANS; 1000
 * in the body are issued, each carried into the certificate. */
static void test_serve_san_limit(void)
{
    const char *kf = "-H 'x-keyfactor-requested-with: APIClient' -H 'Content-Type: "
                     "application/json' -H 'x-certificateformat: PEM'";
    char plain[700], many[700], body[700];
    snprintf(plain, sizeof plain, "%s/san-plain.csr", tmp);
    snprintf(many, sizeof many, "%s/san-many.csr", tmp);
    snprintf(body, sizeof body, "%s/san-body.json", tmp);
    CU_ASSERT_EQUAL_FATAL(
        test_sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
                "/dev/null -subj /CN=san.example -outform DER 2>/dev/null | base64 -w0 > '%s'",
                plain),
        0);
    /* n names h<from>..h<from+n-1>.example as a body with the given CSR file. */
#define SAN_BODY(csr_file, from, n)                                                                \
    test_sh("{ printf '{\"CSR\":\"'; cat '%s'; printf "                                            \
            "'\",\"Template\":\"Default\",\"SANs\":{\"dns\":['; seq %d %d | sed "                  \
            "'s/.*/\"h&.example\"/' | paste -sd, | tr -d '\\n'; printf ']}}'; } > '%s'",           \
            csr_file, from, (from) + (n)-1, body)
    CU_ASSERT_EQUAL_FATAL(SAN_BODY(plain, 1, 50000), 0);
    CU_ASSERT_TRUE(api_is("400", "TOO_MANY_SANS",
                          "-u fleet:fleet-secret %s --data-binary '@%s' '%s/Enrollment/CSR'", kf,
                          body, url));
    CU_ASSERT_EQUAL_FATAL(
        test_sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
                "/dev/null -subj /CN=san.example -addext \"subjectAltName=$(seq 1001 | sed "
                "'s/.*/DNS:c&.example/' | paste -sd,)\" -outform DER 2>/dev/null | base64 -w0 > "
                "'%s'",
                many),
        0);
    CU_ASSERT_EQUAL_FATAL(SAN_BODY(many, 1, 1), 0);
    CU_ASSERT_TRUE(api_is("400", "TOO_MANY_SANS",
                          "-u fleet:fleet-secret %s --data-binary '@%s' '%s/Enrollment/CSR'", kf,
                          body, url));
    CU_ASSERT_EQUAL_FATAL(
        test_sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
                "/dev/null -subj /CN=san.example -addext \"subjectAltName=$(seq 600 | sed "
                "'s/.*/DNS:c&.example/' | paste -sd,)\" -outform DER 2>/dev/null | base64 -w0 > "
                "'%s'",
                many),
        0);
    CU_ASSERT_EQUAL_FATAL(SAN_BODY(many, 1, 600), 0);
    CU_ASSERT_TRUE(api_is("400", "TOO_MANY_SANS",
                          "-u fleet:fleet-secret %s --data-binary '@%s' '%s/Enrollment/CSR'", kf,
                          body, url));
    CU_ASSERT_EQUAL_FATAL(SAN_BODY(plain, 1, 1000), 0);
    char *answer = test_sh_output(NULL,
                                  "curl -s -u fleet:fleet-secret %s --data-binary '@%s' "
                                  "'%s/Enrollment/CSR' > '%s/san-answer.json'; jq -r "
                                  "'.CertificateInformation.Certificates[0]' "
                                  "'%s/san-answer.json' | openssl x509 -noout -ext "
                                  "subjectAltName | grep -o 'DNS:h[0-9]*\\.example' | sort -u | "
                                  "wc -l",
                                  kf, body, url, tmp, tmp);
    CU_ASSERT_TRUE(answer != NULL && atoi(answer) == 1000);
    if (answer == NULL || atoi(answer) != 1000)
        test_sh("head -c 600 '%s/san-answer.json' >&2", tmp);
    free(answer);
#undef SAN_BODY
}

static void test_serials_unique_across_restarts(void)
{
    char config[600], batch[600], out[600], results[700];
    snprintf(config, sizeof config, "%s/engine-restart.json", tmp);
    snprintf(batch, sizeof batch, "%s/restart.ndjson", tmp);
    write_engine_config(config, "fleet", NULL);
    json_t *serials = json_object();
    long long last_id = 0;
    bool increasing = true;
    for (int round = 0; round < 2; round++) {
        snprintf(out, sizeof out, "%s/out-restart-%d", tmp, round);
        snprintf(results, sizeof results, "%s/results.ndjson", out);
        write_batch(batch, 8, round ? "second" : "first", 0);
        CU_ASSERT_EQUAL(run_engine(config, batch, out, "fleet-secret"), 0);
        json_t *res = test_load_ndjson(results);
        size_t i;
        json_t *r;
        json_array_foreach(res, i, r)
        {
            json_t *info = json_object_get(r, "CertificateInformation");
            const char *serial = json_string_value(json_object_get(info, "SerialNumber"));
            if (serial != NULL)
                json_object_set_new(serials, serial, json_true());
            long long id = json_integer_value(json_object_get(info, "KeyfactorID"));
            if (round == 1 && id <= last_id)
                increasing = false;
        }
        json_array_foreach(res, i, r)
        {
            long long id = json_integer_value(
                json_object_get(json_object_get(r, "CertificateInformation"), "KeyfactorID"));
            if (round == 0 && id > last_id)
                last_id = id;
        }
        json_decref(res);
        CU_ASSERT_EQUAL(stop_server(), 0);
        CU_ASSERT_EQUAL_FATAL(start_server(""), 0);
        write_engine_config(config, "fleet", NULL); /* a new port */
    }
    CU_ASSERT_EQUAL(json_object_size(serials), 16);
    CU_ASSERT_TRUE(increasing);
    json_decref(serials);
}

static void test_tls_trust_bundle(void)
{
    char key[700], cert[700];
    snprintf(key, sizeof key, "%s/tls.key", tmp);
    snprintf(cert, sizeof cert, "%s/tls.pem", tmp);
    CU_ASSERT_EQUAL_FATAL(
        test_sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
                "'%s' -out '%s' -days 2 -subj /CN=127.0.0.1 -addext "
                "subjectAltName=IP:127.0.0.1 2>/dev/null",
                key, cert),
        0);
    CU_ASSERT_EQUAL(stop_server(), 0);
    char extra[2048];
    snprintf(extra, sizeof extra, "--tls-cert '%s' --tls-key '%s'", cert, key);
    CU_ASSERT_EQUAL_FATAL(start_server(extra), 0);
    CU_ASSERT_EQUAL(strncmp(url, "https://", 8), 0);
    char config[600], batch[600], out[600], results[700], trust[800];
    snprintf(config, sizeof config, "%s/engine-tls.json", tmp);
    snprintf(batch, sizeof batch, "%s/tls.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-tls", tmp);
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    write_batch(batch, 4, "tls", 0);
    /* Without the trust bundle the server's certificate is not trusted: nothing is sent. */
    write_engine_config(config, "fleet", NULL);
    CU_ASSERT_EQUAL(run_engine(config, batch, out, "fleet-secret"), 1);
    json_t *res = test_load_ndjson(results);
    CU_ASSERT_EQUAL(count_error(res, "CA_TLS"), 4);
    json_decref(res);
    snprintf(trust, sizeof trust, ",\"TrustBundle\":\"%s\"", cert);
    write_engine_config(config, "fleet", trust);
    CU_ASSERT_EQUAL(run_engine(config, batch, out, "fleet-secret"), 0);
    res = test_load_ndjson(results);
    CU_ASSERT_EQUAL(count_status(res, "issued"), 4);
    json_decref(res);

    /* Mutual TLS: a client certificate from the client CA names the user (its CN), so a
     * wrong Basic password no longer matters; a certificate naming no user does not help. */
    CU_ASSERT_EQUAL_FATAL(
        test_sh("cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                "-keyout client-ca.key -out client-ca.pem -days 2 -subj '/CN=Client CA' "
                "2>/dev/null && echo extendedKeyUsage=clientAuth > client.ext && for who in fleet "
                "stranger; do openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                "-keyout $who.key -subj /CN=$who 2>/dev/null | openssl x509 -req -CA client-ca.pem "
                "-CAkey client-ca.key -CAcreateserial -days 2 -extfile client.ext -out $who.pem "
                "2>/dev/null || exit 1; done",
                tmp),
        0);
    CU_ASSERT_EQUAL(stop_server(), 0);
    snprintf(extra, sizeof extra, "--tls-cert '%s' --tls-key '%s' --client-ca '%s/client-ca.pem'",
             cert, key, tmp);
    CU_ASSERT_EQUAL_FATAL(start_server(extra), 0);
    for (int who = 0; who < 2; who++) {
        const char *name = who == 0 ? "fleet" : "stranger";
        snprintf(trust, sizeof trust,
                 ",\"TrustBundle\":\"%s\",\"ClientCertificate\":\"%s/%s.pem\","
                 "\"ClientKey\":\"%s/%s.key\"",
                 cert, tmp, name, tmp, name);
        write_engine_config(config, "fleet", trust);
        CU_ASSERT_EQUAL(run_engine(config, batch, out, "wrong-password"), who == 0 ? 0 : 1);
        res = test_load_ndjson(results);
        CU_ASSERT_EQUAL(who == 0 ? count_status(res, "issued") : count_error(res, "CA_AUTH_FAILED"),
                        4);
        json_decref(res);
    }
    CU_ASSERT_EQUAL(stop_server(), 0);
    CU_ASSERT_EQUAL(start_server(""), 0);
}

/* The PEM bundle hsmenroll writes (its key encrypted) serves HTTPS with the key's password from
 * a file; without one, or with a wrong one, serve says so and exits 2 (not "address in use"). */
static void test_tls_key_encrypted(void)
{
    CU_ASSERT_EQUAL(stop_server(), 0);
    CU_ASSERT_EQUAL_FATAL(
        test_sh(
            "cd '%s' && printf '%%s\\n' '{\"Id\":\"serve-tls\",\"Template\":\"Default\","
            "\"Subject\":\"CN=127.0.0.1\",\"SANs\":{\"ip4\":[\"127.0.0.1\"]},\"KeyType\":\"ECC\","
            "\"Format\":\"PEM\",\"IncludeChain\":true}' >serve-tls.ndjson && '%s' run "
            "serve-tls.ndjson -o out-serve-tls --home '%s' -q && (umask 077 && jq -r "
            ".CertificateInformation.Password "
            "out-serve-tls/results.ndjson >tls.password) && grep -q 'ENCRYPTED PRIVATE KEY' "
            "out-serve-tls/serve-tls.pem",
            tmp, HSMENROLL_BIN, home),
        0);
    char pem[700], serve[2048];
    snprintf(pem, sizeof pem, "%s/out-serve-tls/serve-tls.pem", tmp);
    snprintf(serve, sizeof serve,
             "cd '%s' && '%s' serve --home '%s' --listen 127.0.0.1:0 --credentials '%s' "
             "--tls-cert '%s' --tls-key '%s'",
             tmp, HSMENROLL_BIN, home, creds, pem, pem);
    CU_ASSERT_EQUAL(test_sh("%s 2>tls.err", serve), 2);
    char path[700];
    snprintf(path, sizeof path, "%s/tls.err", tmp);
    char *err = test_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "--tls-key-password-file") : NULL);
    CU_ASSERT_PTR_NULL(err ? strstr(err, "address in use") : "");
    free(err);
    CU_ASSERT_EQUAL(
        test_sh("export TLS_PW=wrong-password; %s --tls-key-password-env TLS_PW 2>tls.err", serve),
        2);
    err = test_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "wrong password") : NULL);
    free(err);
    /* With the password: HTTPS with the bundle's certificate. */
    char extra[2048];
    snprintf(extra, sizeof extra,
             "--tls-cert '%s' --tls-key '%s' --tls-key-password-file '%s/tls.password'", pem, pem,
             tmp);
    CU_ASSERT_EQUAL_FATAL(start_server(extra), 0);
    CU_ASSERT_EQUAL(strncmp(url, "https://", 8), 0);
    const char *port = strrchr(url, ':');
    CU_ASSERT_EQUAL(test_sh("a=$(openssl s_client -connect 127.0.0.1:%d </dev/null 2>/dev/null | "
                            "openssl x509 -noout -fingerprint -sha256) && b=$(openssl x509 -in "
                            "'%s' -noout -fingerprint -sha256) && [ -n \"$a\" ] && [ \"$a\" = "
                            "\"$b\" ]",
                            port ? atoi(port + 1) : 0, pem),
                    0);
    CU_ASSERT_EQUAL(stop_server(), 0);
    CU_ASSERT_EQUAL(start_server(""), 0);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_enrollment_through_the_keyfactor_connector),
        TEST_CASE(test_wrong_password_and_missing_role),
        TEST_CASE(test_injected_faults_and_pending),
        TEST_CASE(test_ca_quota),
        TEST_CASE(test_serve_bad_input),
        TEST_CASE(test_serve_limits),
        TEST_CASE(test_login_failures_counted_per_name),
        TEST_CASE(test_half_tls_refused),
        TEST_CASE(test_serve_san_limit),
        TEST_CASE(test_serials_unique_across_restarts),
        TEST_CASE(test_tls_trust_bundle),
        TEST_CASE(test_tls_key_encrypted),
        TEST_END,
    };
    return test_main("serve", cases, setup, teardown);
}
