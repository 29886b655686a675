/* Revocation end to end, checked by real clients: certificates of the embedded CA revoked with
 * `revoke` (reasons, --id) and through serve's POST /KeyfactorAPI/Certificates/Revoke; the CRL of
 * `ca crl` and of serve's /crl verified by `openssl crl -verify` and used by `openssl verify
 * -crl_check`; serve's /ocsp asked by `openssl ocsp -url` (good, revoked with reason and time,
 * unknown for another CA's certificate), by GET and by GnuTLS ocsptool; a bulk revoke SIGKILLed
 * three times and resumed, the CRL then holding each serial exactly once. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support.h"

#define PIN "revoke-user-pin"

static char *tmp, *home;
static char cfg[600], creds[600], url[256], base[256];
static pid_t server_pid;

#define ENGINE(fmt, ...)                                                                           \
    test_sh("'%s' " fmt " --config '%s' 2>>'%s/engine.log'", HSMENROLL_BIN, __VA_ARGS__, cfg, tmp)

static int start_server(void)
{
    char options[2048];
    snprintf(options, sizeof options, "--config '%s' --credentials '%s'", cfg, creds);
    server_pid = test_start_serve_ready(tmp, "", options, url, sizeof url);
    if (server_pid <= 0)
        return -1;
    /* http://127.0.0.1:PORT/KeyfactorAPI -> http://127.0.0.1:PORT */
    snprintf(base, sizeof base, "%s", url);
    char *api = strstr(base, "/KeyfactorAPI");
    if (api != NULL)
        *api = '\0';
    return 0;
}

static void stop_server(void)
{
    if (server_pid > 0) {
        test_stop(server_pid);
        server_pid = 0;
    }
}

static int setup(void)
{
    tmp = test_tmpdir("hsmenroll-revoke");
    if (tmp == NULL || asprintf(&home, "%s/home", tmp) < 0)
        return 1;
    test_children_unwind_fast();
    setenv("HSMENROLL_PIN", PIN, 1);
    setenv("HSMENROLL_SO_PIN", "revoke-so-pin", 1);
    if (test_sh("HSMENROLL_HOME='%s' '%s' ca init -q 2>/dev/null", home, HSMENROLL_BIN) != 0)
        return 1;
    char conf[700];
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", home);
    setenv("SOFTHSM2_CONF", conf, 1);
    snprintf(cfg, sizeof cfg, "%s/config.json", tmp);
    char text[3000];
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"]},\"CertificateAuthorities\":[{\"Id\":1,"
             "\"Name\":\"embedded\",\"Type\":\"local\",\"Home\":\"%s/ca\",\"Token\":"
             "\"hsmenroll-ca\",\"PinFile\":\"home/ca-pin\",\"CrlUrl\":\"http://crl.example/"
             "embedded.crl\",\"OcspUrl\":"
             "\"http://ocsp.example/ocsp\",\"CrlDays\":2}],\"Templates\":[{\"Id\":1,\"Name\":"
             "\"Default\",\"CertificateAuthorities\":[1]},{\"Id\":2,\"Name\":\"Short\","
             "\"ValidityDays\":1,\"CertificateAuthorities\":[1]}],\"EnrollmentPatterns\":[{\"Id\":"
             "1,\"Name\":\"Default\",\"Template\":1,\"TemplateDefault\":true},{\"Id\":2,\"Name\":"
             "\"Short\",\"Template\":2,\"TemplateDefault\":true}]}",
             home);
    if (test_write_file(cfg, text) != 0)
        return 1;
    /* serve's users: ops may revoke, viewer may not */
    snprintf(creds, sizeof creds, "%s/users.json", tmp);
    char *ops = test_sh_output(
        NULL, "printf '%%s\\n' ops-secret | '%s' serve hash-password --iterations 1000",
        HSMENROLL_BIN);
    if (ops == NULL)
        return 1;
    ops[strcspn(ops, "\n")] = '\0';
    snprintf(text, sizeof text,
             "{\"Users\":[{\"Name\":\"ops\",\"Password\":\"%s\",\"Permissions\":"
             "[\"certificate/revoke\"]},{\"Name\":\"viewer\",\"Password\":\"%s\"}]}",
             ops, ops);
    free(ops);
    if (test_write_file(creds, text) != 0 || chmod(creds, 0600) != 0)
        return 1;
    return start_server();
}

static int teardown(void)
{
    stop_server();
    test_rmtree(tmp);
    free(tmp);
    free(home);
    return 0;
}

/* A batch of n ECC PEM lines "PREFIX-i" of template tmpl. */
static int write_batch(const char *path, const char *prefix, int n, const char *tmpl)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    for (int i = 1; i <= n; i++)
        fprintf(f,
                "{\"Id\":\"%s-%d\",\"Template\":\"%s\",\"Subject\":\"CN=%s-%d.example\","
                "\"SANs\":{\"dns\":[\"%s-%d.example\"]},\"KeyType\":\"ECC\",\"KeyLength\":256,"
                "\"Format\":\"PEM\"}\n",
                prefix, i, tmpl, prefix, i, prefix, i);
    return fclose(f);
}

/* openssl ocsp against serve for DIR/ID.pem's certificate; its output. */
static char *ocsp_ask(const char *dir, const char *id, const char *issuer, const char *extra)
{
    test_sh("openssl x509 -in '%s/%s.pem' -out '%s/%s.crt' 2>/dev/null", dir, id, tmp, id);
    return test_sh_output(NULL,
                          "openssl ocsp -issuer '%s' -cert '%s/%s.crt' -url '%s/ocsp' "
                          "-CAfile '%s/ca/chain.pem' %s 2>&1",
                          issuer, tmp, id, base, home, extra);
}

static void test_revoke_crl_ocsp(void)
{
    char batch[700], out[700], rv[700], crl[700], issuing[700];
    snprintf(batch, sizeof batch, "%s/b.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out", tmp);
    snprintf(rv, sizeof rv, "%s/rv", tmp);
    snprintf(crl, sizeof crl, "%s/crl.pem", tmp);
    snprintf(issuing, sizeof issuing, "%s/ca/issuing.pem", home);
    CU_ASSERT_EQUAL_FATAL(write_batch(batch, "d", 6, "Default"), 0);
    CU_ASSERT_EQUAL_FATAL(ENGINE("run '%s' -o '%s' -q", batch, out), 0);

    /* The CRL distribution point and the OCSP access location of the CA's configuration. */
    char *text = test_sh_output(NULL, "openssl x509 -in '%s/d-1.pem' -noout -text", out);
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "URI:http://crl.example/embedded.crl"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "OCSP - URI:http://ocsp.example/ocsp"));
    free(text);

    /* Two revoked with reasons; a third named twice, and an Id that is not there. */
    char results[800];
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    CU_ASSERT_EQUAL(ENGINE("revoke '%s' -o '%s' --id d-1 --reason keyCompromise -q", results, rv),
                    0);
    snprintf(rv, sizeof rv, "%s/rv2", tmp);
    CU_ASSERT_EQUAL(ENGINE("revoke '%s' -o '%s' --id d-2 --id d-1 --id nope --reason superseded -q",
                           results, rv),
                    1); /* nope: REVOKE_NOT_FOUND */
    char path[800];
    snprintf(path, sizeof path, "%s/revocations.ndjson", rv);
    json_t *lines = test_load_ndjson(path);
    CU_ASSERT_EQUAL(json_array_size(lines), 3);
    json_t *d1 = test_find_by(lines, "Id", "d-1"), *nope = test_find_by(lines, "Id", "nope");
    /* d-1 was revoked before: its first reason stands */
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d1, "Reason")), "keyCompromise");
    CU_ASSERT_STRING_EQUAL(
        json_string_value(json_object_get(json_object_get(nope, "Error"), "Code")),
        "REVOKE_NOT_FOUND");
    json_decref(lines);
    CU_ASSERT_EQUAL(ENGINE("revoke '%s' -o '%s' --reason frobnicated -q", results, rv), 2);

    /* The CRL: signed by the issuing CA, two entries with their reasons. */
    CU_ASSERT_EQUAL_FATAL(ENGINE("ca crl -o '%s' -q", crl), 0);
    CU_ASSERT_EQUAL(test_sh("openssl crl -in '%s' -noout -verify -CAfile '%s/ca/chain.pem' "
                            "2>/dev/null",
                            crl, home),
                    0);
    text = test_sh_output(NULL, "openssl crl -in '%s' -noout -text", crl);
    CU_ASSERT_EQUAL(test_count(text ? text : "", "Serial Number:"), 2);
    CU_ASSERT_EQUAL(test_count(text ? text : "", "Key Compromise"), 1);
    CU_ASSERT_EQUAL(test_count(text ? text : "", "Superseded"), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "X509v3 CRL Number"));
    free(text);
    const char *verify = "openssl verify -crl_check -CAfile '%s/ca/chain.pem' -CRLfile '%s' "
                         "'%s/%s.pem' 2>&1";
    text = test_sh_output(NULL, verify, home, crl, out, "d-1");
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "certificate revoked"));
    free(text);
    int status = -1;
    text = test_sh_output(&status, verify, home, crl, out, "d-3");
    CU_ASSERT_EQUAL(status, 0);
    free(text);

    /* OCSP: good, revoked (reason and time), unknown (another CA's certificate). */
    text = ocsp_ask(out, "d-3", issuing, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "Response verify OK"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "d-3.crt: good"));
    free(text);
    text = ocsp_ask(out, "d-1", issuing, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "Response verify OK"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "d-1.crt: revoked"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "Reason: keyCompromise"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "Revocation Time:"));
    free(text);
    CU_ASSERT_EQUAL_FATAL(
        test_sh("cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                "-keyout other.key -out other-ca.pem -subj /CN=other-ca -days 2 "
                "-addext basicConstraints=critical,CA:TRUE 2>/dev/null && "
                "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout x.key "
                "-subj /CN=x -out x.csr 2>/dev/null && openssl x509 -req -in x.csr -CA "
                "other-ca.pem -CAkey other.key -days 1 -out other/x.pem 2>/dev/null || "
                "(mkdir -p other && openssl x509 -req -in x.csr -CA other-ca.pem -CAkey other.key "
                "-days 1 -out other/x.pem 2>/dev/null)",
                tmp),
        0);
    char other_dir[700], other_ca[700];
    snprintf(other_dir, sizeof other_dir, "%s/other", tmp);
    snprintf(other_ca, sizeof other_ca, "%s/other-ca.pem", tmp);
    text = ocsp_ask(other_dir, "x", other_ca, "-noverify");
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "x.crt: unknown"));
    free(text);

    /* GET /ocsp/BASE64 (RFC 6960 appendix A.1), read back by openssl. */
    CU_ASSERT_EQUAL(
        test_sh("cd '%s' && openssl ocsp -issuer '%s' -cert d-2.crt -no_nonce -reqout get.req "
                ">/dev/null 2>&1 || openssl x509 -in '%s/d-2.pem' -out d-2.crt && "
                "openssl ocsp -issuer '%s' -cert d-2.crt -no_nonce -reqout get.req >/dev/null "
                "2>&1; b=$(base64 -w0 get.req | jq -sRr @uri) && "
                "curl -sf -o get.resp '%s/ocsp/'\"$b\"",
                tmp, issuing, out, issuing, base),
        0);
    text = test_sh_output(NULL,
                          "openssl ocsp -respin '%s/get.resp' -issuer '%s' -cert '%s/d-2.crt' "
                          "-CAfile '%s/ca/chain.pem' 2>&1",
                          tmp, issuing, tmp, home);
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "Response verify OK"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "d-2.crt: revoked"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "Reason: superseded"));
    free(text);

    /* GnuTLS's client too. */
    text = test_sh_output(NULL,
                          "ocsptool --ask='%s/ocsp' --load-issuer '%s' --load-cert '%s/d-3.crt' "
                          "--load-signer '%s' 2>&1",
                          base, issuing, tmp, issuing);
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "Certificate Status: good"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "Verifying OCSP Response: Success"));
    free(text);
}

/* POST /KeyfactorAPI/Certificates/Revoke; the change seen by /ocsp and /crl. */
static void test_revoke_api(void)
{
    char out[700], results[800], issuing[700];
    snprintf(out, sizeof out, "%s/out", tmp);
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    snprintf(issuing, sizeof issuing, "%s/ca/issuing.pem", home);
    json_t *lines = test_load_ndjson(results);
    json_t *d4 = test_find_by(lines, "Id", "d-4");
    long long kfid = json_integer_value(
        json_object_get(json_object_get(d4, "CertificateInformation"), "KeyfactorID"));
    const char *serial = json_string_value(
        json_object_get(json_object_get(d4, "CertificateInformation"), "SerialNumber"));
    CU_ASSERT_FATAL(kfid > 0 && serial != NULL);
    const char *post = "curl -s -o '%s/api.json' -w '%%{http_code}' %s -H 'Content-Type: "
                       "application/json' -d '%s' '%s/Certificates/Revoke'";
    char body[300];
    snprintf(body, sizeof body,
             "{\"CertificateIds\":[%lld],\"Reason\":1,\"Comment\":\"lost in transit\","
             "\"EffectiveDate\":\"2025-06-01T00:00:00Z\"}",
             kfid);
    char *code = test_sh_output(NULL, post, tmp, "", body, url);
    CU_ASSERT_STRING_EQUAL(code ? code : "", "401"); /* no credentials */
    free(code);
    code = test_sh_output(NULL, post, tmp, "-u viewer:ops-secret", body, url);
    CU_ASSERT_STRING_EQUAL(code ? code : "", "403");
    free(code);
    code = test_sh_output(NULL, post, tmp, "-u ops:ops-secret", body, url);
    CU_ASSERT_STRING_EQUAL(code ? code : "", "200");
    free(code);
    char path[800];
    snprintf(path, sizeof path, "%s/api.json", tmp);
    json_t *answer = json_load_file(path, 0, NULL);
    CU_ASSERT_EQUAL(
        json_integer_value(json_array_get(json_object_get(answer, "SuccessfulRevocations"), 0)),
        kfid);
    json_decref(answer);
    code = test_sh_output(NULL, post, tmp, "-u ops:ops-secret",
                          "{\"CertificateIds\":[987654],\"Reason\":0}", url);
    CU_ASSERT_STRING_EQUAL(code ? code : "", "404");
    free(code);

    char *text = ocsp_ask(out, "d-4", issuing, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "d-4.crt: revoked"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "Revocation Time: Jun  1 00:00:00 2025 GMT"));
    free(text);
    /* /crl: DER, no credentials, signed, with d-4 */
    CU_ASSERT_EQUAL(test_sh("curl -sf -o '%s/served.crl' '%s/crl'", tmp, base), 0);
    CU_ASSERT_EQUAL(test_sh("openssl crl -inform DER -in '%s/served.crl' -noout -verify -CAfile "
                            "'%s/ca/chain.pem' 2>/dev/null",
                            tmp, home),
                    0);
    text = test_sh_output(NULL, "openssl crl -inform DER -in '%s/served.crl' -noout -text", tmp);
    char needle[120];
    snprintf(needle, sizeof needle, "Serial Number: %s", serial);
    CU_ASSERT_EQUAL(test_count(text ? text : "", needle), 1);
    CU_ASSERT_EQUAL(test_count(text ? text : "", "Serial Number:"), 3);
    free(text);
    json_decref(lines);
}

/* A bulk revoke killed with SIGKILL three times and resumed: each certificate once. */
static void test_bulk_resume(void)
{
    int n = test_sanitized() ? 500 : 2000;
    char batch[700], out[700], rv[700], journal[800];
    snprintf(batch, sizeof batch, "%s/bulk.ndjson", tmp);
    snprintf(out, sizeof out, "%s/bulk-out", tmp);
    snprintf(rv, sizeof rv, "%s/bulk-rv", tmp);
    snprintf(journal, sizeof journal, "%s/journal.ndjson", rv);
    CU_ASSERT_EQUAL_FATAL(write_batch(batch, "bulk", n, "Default"), 0);
    CU_ASSERT_EQUAL_FATAL(ENGINE("run '%s' -o '%s' -q", batch, out), 0);
    int kills = 0;
    for (int round = 0; round < 3; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            char cmd[4096];
            snprintf(cmd, sizeof cmd,
                     "exec '%s' revoke '%s/results.ndjson' -o '%s' --reason cessationOfOperation "
                     "%s -q --config '%s' 2>>'%s/engine.log'",
                     HSMENROLL_BIN, out, rv, round ? "--resume" : "", cfg, tmp);
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        int want = n * (round + 1) / 4, status = 0;
        for (int i = 0; i < 20000; i++) {
            char *lines = test_sh_output(NULL, "{ wc -l < '%s'; } 2>/dev/null || echo 0", journal);
            int have = lines ? atoi(lines) : 0;
            free(lines);
            if (have >= want || waitpid(pid, &status, WNOHANG) == pid)
                break;
            usleep(2000);
        }
        if (kill(pid, SIGKILL) == 0 && waitpid(pid, &status, 0) == pid && WIFSIGNALED(status))
            kills++;
    }
    CU_ASSERT(kills >= 1);
    CU_ASSERT_EQUAL(ENGINE("revoke '%s/results.ndjson' -o '%s' --resume -q", out, rv), 0);
    char path[800];
    snprintf(path, sizeof path, "%s/revocations.ndjson", rv);
    json_t *lines = test_load_ndjson(path);
    CU_ASSERT_EQUAL(json_array_size(lines), (size_t)n);
    size_t i;
    json_t *line;
    int revoked = 0;
    json_array_foreach(lines, i, line)
    {
        revoked += strcmp(json_string_value(json_object_get(line, "Status")), "revoked") == 0;
    }
    CU_ASSERT_EQUAL(revoked, n);
    json_decref(lines);
    /* The CRL: each serial of the bulk batch exactly once. */
    char crl[700];
    snprintf(crl, sizeof crl, "%s/bulk.crl", tmp);
    CU_ASSERT_EQUAL_FATAL(ENGINE("ca crl --der -o '%s' -q", crl), 0);
    int status = -1;
    char *dups = test_sh_output(
        &status,
        "openssl crl -inform DER -in '%s' -noout -text | awk '/Serial Number:/{print $3}' | sort "
        "> '%s/crl-serials' && jq -r .CertificateInformation.SerialNumber '%s/results.ndjson' | "
        "sort > '%s/bulk-serials' && uniq -d '%s/crl-serials' | wc -l && "
        "comm -13 '%s/crl-serials' '%s/bulk-serials' | wc -l",
        crl, tmp, out, tmp, tmp, tmp, tmp);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_STRING_EQUAL(dups ? dups : "", "0\n0\n"); /* none twice, none missing */
    free(dups);
    snprintf(path, sizeof path, "%s/ca/revoked.ndjson", home);
    char *count = test_sh_output(NULL, "wc -l < '%s'", path);
    CU_ASSERT_EQUAL(count ? atoi(count) : -1, n + 3);
    free(count);
}

/* Subject, SANs and key type of a certificate file (PEM, or DER when der), and its public key. */
static char *cert_facts(const char *path, bool der, bool pubkey)
{
    const char *inform = der ? "DER" : "PEM";
    if (pubkey)
        return test_sh_output(NULL, "openssl x509 -inform %s -in '%s' -noout -pubkey", inform,
                              path);
    return test_sh_output(NULL,
                          "openssl x509 -inform %s -in '%s' -noout -subject -ext subjectAltName "
                          "-text | grep -E 'subject=|DNS:|IP Address|Public Key Algorithm|"
                          "Public-Key|NIST CURVE'",
                          inform, path);
}

/* renew: of short-lived (Short, 1 day) and long-lived (Default) lines, one short one revoked,
 * `renew --within 2` reissues exactly the unrevoked short ones with the same subject, SANs, key
 * type and format and new keys; --within 0 renews nothing. */
static void test_renew(void)
{
    char batch[700], out[700], rev[700], ren[700], none[700], results[800];
    snprintf(batch, sizeof batch, "%s/renew.ndjson", tmp);
    snprintf(out, sizeof out, "%s/renew-src", tmp);
    snprintf(rev, sizeof rev, "%s/renew-rev", tmp);
    snprintf(ren, sizeof ren, "%s/renewed", tmp);
    snprintf(none, sizeof none, "%s/renewed-none", tmp);
    const char *text =
        "{\"Id\":\"s-ecc\",\"Template\":\"Short\",\"Subject\":\"CN=s-ecc.example,O=Renew\","
        "\"SANs\":{\"dns\":[\"s-ecc.example\",\"www.s-ecc.example\"],\"ip4\":[\"10.1.2.3\"]},"
        "\"KeyType\":\"ECC\",\"KeyLength\":384,\"Format\":\"PEM\"}\n"
        "{\"Id\":\"s-rsa\",\"Template\":\"Short\",\"Subject\":\"CN=s-rsa.example\","
        "\"SANs\":{\"dns\":[\"s-rsa.example\"]},\"KeyType\":\"RSA\",\"KeyLength\":2048,"
        "\"Format\":\"DER\"}\n"
        "{\"Id\":\"s-gone\",\"Template\":\"Short\",\"Subject\":\"CN=s-gone.example\","
        "\"SANs\":{\"dns\":[\"s-gone.example\"]},\"KeyType\":\"ECC\",\"Format\":\"PEM\"}\n"
        "{\"Id\":\"l-1\",\"Template\":\"Default\",\"Subject\":\"CN=l-1.example\","
        "\"SANs\":{\"dns\":[\"l-1.example\"]},\"KeyType\":\"ECC\",\"Format\":\"PEM\"}\n"
        "{\"Id\":\"l-2\",\"EnrollmentPatternId\":1,\"Subject\":\"CN=l-2.example\",\"KeyType\":"
        "\"RSA\",\"Format\":\"DER\"}\n";
    CU_ASSERT_FATAL(test_write_file(batch, text) == 0);
    CU_ASSERT_FATAL(ENGINE("run '%s' -o '%s' -q", batch, out) == 0);
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    CU_ASSERT_EQUAL(ENGINE("revoke '%s' --id s-gone -o '%s' -q", results, rev), 0);

    CU_ASSERT_EQUAL(ENGINE("renew '%s' --within 2 -o '%s'", results, ren), 0);
    char path[800], old_path[800];
    snprintf(path, sizeof path, "%s/results.ndjson", ren);
    json_t *old = test_load_ndjson(results), *renewed = test_load_ndjson(path);
    CU_ASSERT_FATAL(renewed != NULL && old != NULL);
    CU_ASSERT_EQUAL(json_array_size(renewed), 2);
    const char *ids[] = {"s-ecc", "s-rsa"};
    for (int i = 0; i < 2; i++) {
        json_t *n = test_find_by(renewed, "Id", ids[i]), *o = test_find_by(old, "Id", ids[i]);
        CU_ASSERT_FATAL(n != NULL && o != NULL);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "Status")), "issued");
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "Template")), "Short");
        json_t *ni = json_object_get(n, "CertificateInformation");
        json_t *oi = json_object_get(o, "CertificateInformation");
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ni, "SubjectDN")),
                               json_string_value(json_object_get(oi, "SubjectDN")));
        CU_ASSERT_STRING_NOT_EQUAL(json_string_value(json_object_get(ni, "SerialNumber")),
                                   json_string_value(json_object_get(oi, "SerialNumber")));
        bool der = i == 1;
        snprintf(path, sizeof path, "%s/%s.%s", ren, ids[i], der ? "der" : "pem");
        snprintf(old_path, sizeof old_path, "%s/%s.%s", out, ids[i], der ? "der" : "pem");
        char *nf = cert_facts(path, der, false), *of = cert_facts(old_path, der, false);
        char *np = cert_facts(path, der, true), *op = cert_facts(old_path, der, true);
        CU_ASSERT(nf != NULL && of != NULL && strlen(nf) > 40 && strcmp(nf, of) == 0);
        CU_ASSERT(np != NULL && op != NULL && strstr(np, "PUBLIC KEY") && strcmp(np, op) != 0);
        free(nf);
        free(of);
        free(np);
        free(op);
    }
    CU_ASSERT_PTR_NULL(test_find_by(renewed, "Id", "s-gone"));
    CU_ASSERT_EQUAL(test_verified_files(ren, home), 2);
    snprintf(path, sizeof path, "%s/renew-batch.ndjson", ren);
    CU_ASSERT_EQUAL(access(path, F_OK), 0);
    json_decref(old);
    json_decref(renewed);

    /* the original and the renewal together: each Id counts with its newest certificate */
    snprintf(path, sizeof path, "%s/results.ndjson", ren);
    char *said = test_sh_output(NULL, "'%s' renew '%s' '%s' --within 0 -o '%s' --config '%s' 2>&1",
                                HSMENROLL_BIN, results, path, none, cfg);
    CU_ASSERT_PTR_NOT_NULL(strstr(said ? said : "", "nothing to renew"));
    CU_ASSERT_PTR_NOT_NULL(strstr(said ? said : "", "0 certificates to renew within 0 days"));
    free(said);
    CU_ASSERT_NOT_EQUAL(access(none, F_OK), 0);
    CU_ASSERT_EQUAL(ENGINE("renew '%s' '%s' --within 0 -o '%s' -q", results, path, none), 0);
    said = test_sh_output(NULL, "'%s' renew '%s' '%s' --within 2 -o '%s' --config '%s' 2>&1",
                          HSMENROLL_BIN, results, path, none, cfg);
    /* s-ecc and s-rsa from the renewal, s-gone revoked; the renewal itself not revoked */
    CU_ASSERT_PTR_NOT_NULL(strstr(said ? said : "", "2 certificates to renew within 2 days, 1 "
                                                    "skipped, 2 expiring later"));
    free(said);
}

/* The engine's configuration of a keyfactor CA at serve as user (KF_PASSWORD), and a cfssl CA. */
static void write_keyfactor_config(const char *path, const char *user)
{
    char text[2000];
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"]},\"CertificateAuthorities\":[{\"Id\":1,"
             "\"Name\":\"kf\",\"Type\":\"keyfactor\",\"Url\":\"%s\",\"RemoteName\":\"embedded\","
             "\"Auth\":{\"Type\":\"Basic\",\"User\":\"%s\",\"PasswordEnv\":\"KF_PASSWORD\"},"
             "\"Retries\":2,\"RetryDelayMs\":10},{\"Id\":2,\"Name\":\"cf\",\"Type\":\"cfssl\","
             "\"Url\":\"http://"
             "127.0.0.1:9\",\"Retries\":0}],\"Templates\":[{\"Id\":1,\"Name\":\"Default\","
             "\"CertificateAuthorities\":[1]}],\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":"
             "\"Default\",\"Template\":1,\"TemplateDefault\":true}]}",
             url, user);
    test_write_file(path, text);
}

/* revoke of certificates issued through a keyfactor CA (serve): POST /Certificates/Revoke with
 * the engine's credentials; serve's OCSP then says revoked. A user without the permission gets
 * the CA's refusal; the line of a cfssl CA that does not answer fails CA_UNREACHABLE (revoking
 * through a real CFSSL is test_it_cfssl's). */
static void test_revoke_keyfactor(void)
{
    char ops_cfg[700], viewer_cfg[700], batch[700], out[700], results[800], issuing[700], path[800];
    snprintf(ops_cfg, sizeof ops_cfg, "%s/kf-ops.json", tmp);
    snprintf(viewer_cfg, sizeof viewer_cfg, "%s/kf-viewer.json", tmp);
    snprintf(batch, sizeof batch, "%s/k.ndjson", tmp);
    snprintf(out, sizeof out, "%s/kout", tmp);
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    snprintf(issuing, sizeof issuing, "%s/ca/issuing.pem", home);
    setenv("KF_PASSWORD", "ops-secret", 1);
    write_keyfactor_config(ops_cfg, "ops");
    write_keyfactor_config(viewer_cfg, "viewer");
    CU_ASSERT_EQUAL_FATAL(write_batch(batch, "k", 3, "Default"), 0);
    CU_ASSERT_EQUAL_FATAL(test_sh("'%s' run '%s' -o '%s' -q --config '%s' 2>>'%s/engine.log'",
                                  HSMENROLL_BIN, batch, out, ops_cfg, tmp),
                          0);
    json_t *lines = test_load_ndjson(results);
    json_t *k1 = test_find_by(lines, "Id", "k-1");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(k1, "CertificateAuthority")), "kf");
    CU_ASSERT(json_integer_value(json_object_get(json_object_get(k1, "CertificateInformation"),
                                                 "KeyfactorID")) > 0);
    json_decref(lines);

    /* viewer lacks certificate/revoke: serve refuses, the line fails */
    char rv[700];
    snprintf(rv, sizeof rv, "%s/krv-viewer", tmp);
    CU_ASSERT_EQUAL(test_sh("'%s' revoke '%s' -o '%s' --id k-1 -q --config '%s' "
                            "2>>'%s/engine.log'",
                            HSMENROLL_BIN, results, rv, viewer_cfg, tmp),
                    1);
    snprintf(path, sizeof path, "%s/revocations.ndjson", rv);
    lines = test_load_ndjson(path);
    json_t *err = json_object_get(json_array_get(lines, 0), "Error");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(lines, 0), "Status")),
                           "failed");
    const char *message = json_string_value(json_object_get(err, "Message"));
    CU_ASSERT_PTR_NOT_NULL(strstr(message ? message : "", "certificate/revoke"));
    json_decref(lines);
    char *text = ocsp_ask(out, "k-1", issuing, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "k-1.crt: good"));
    free(text);

    /* ops revokes k-1 and k-2 with a reason */
    snprintf(rv, sizeof rv, "%s/krv", tmp);
    CU_ASSERT_EQUAL(test_sh("'%s' revoke '%s' -o '%s' --id k-1 --id k-2 --reason keyCompromise "
                            "-q --config '%s' 2>>'%s/engine.log'",
                            HSMENROLL_BIN, results, rv, ops_cfg, tmp),
                    0);
    snprintf(path, sizeof path, "%s/revocations.ndjson", rv);
    lines = test_load_ndjson(path);
    CU_ASSERT_EQUAL(json_array_size(lines), 2);
    json_t *r1 = test_find_by(lines, "Id", "k-1");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r1, "Status")), "revoked");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r1, "Reason")), "keyCompromise");
    CU_ASSERT(json_integer_value(json_object_get(r1, "KeyfactorID")) > 0);
    json_decref(lines);
    text = ocsp_ask(out, "k-1", issuing, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "k-1.crt: revoked"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "Reason: keyCompromise"));
    free(text);
    text = ocsp_ask(out, "k-3", issuing, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "k-3.crt: good"));
    free(text);

    /* a line of the cfssl CA, which does not answer: CA_UNREACHABLE */
    char cf[800];
    snprintf(cf, sizeof cf, "%s/cf-results.ndjson", tmp);
    test_write_file(cf, "{\"Id\":\"c-1\",\"Status\":\"issued\",\"CertificateAuthority\":\"cf\","
                        "\"CertificateInformation\":{\"SerialNumber\":\"0A1B\"}}\n");
    snprintf(rv, sizeof rv, "%s/krv-cf", tmp);
    CU_ASSERT_EQUAL(test_sh("'%s' revoke '%s' -o '%s' -q --config '%s' 2>>'%s/engine.log'",
                            HSMENROLL_BIN, cf, rv, ops_cfg, tmp),
                    1);
    snprintf(path, sizeof path, "%s/revocations.ndjson", rv);
    lines = test_load_ndjson(path);
    err = json_object_get(json_array_get(lines, 0), "Error");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(err, "Code")), "CA_UNREACHABLE");
    json_decref(lines);
}

int main(void)
{
    static const test_case cases[] = {TEST_CASE(test_revoke_crl_ocsp),  TEST_CASE(test_revoke_api),
                                      TEST_CASE(test_bulk_resume),      TEST_CASE(test_renew),
                                      TEST_CASE(test_revoke_keyfactor), TEST_END};
    return test_main("it_revoke", cases, setup, teardown);
}
