/* The engine against a real CFSSL server (Debian's golang-cfssl), started by the test on a free
 * loopback port with a CA made by `cfssl gencert -initca`: every key type CFSSL signs (RSA, ECDSA
 * P-256/384/521) issued with the chain from ChainFile and verified by `openssl verify`; the SANs
 * reach the certificate; a key type CFSSL refuses (Ed25519) fails with CFSSL's own reason. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support.h"

static char *tmp, *home;
static pid_t cfssl_pid;
static int port;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(addr.sin_port);
}

static int setup(void)
{
    tmp = test_tmpdir("hsmenroll-cfssl");
    if (tmp == NULL || asprintf(&home, "%s/home", tmp) < 0)
        return 1;
    unsetenv("HSMENROLL_PIN");
    /* The CFSSL CA, and the engine's embedded default (for its token). */
    if (test_sh(
            "cd '%s' && printf '%%s' '{\"CN\":\"CFSSL Test Root\",\"key\":{\"algo\":\"ecdsa\","
            "\"size\":256},\"names\":[{\"O\":\"hsmenroll tests\"}]}' > ca-csr.json && "
            "cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca && printf '%%s' "
            "'{\"signing\":{\"default\":{\"expiry\":\"8760h\",\"usages\":[\"digital "
            "signature\",\"key encipherment\",\"server auth\",\"client auth\"]}}}' > "
            "signing.json",
            tmp) != 0)
        return 1;
    if (test_sh("HSMENROLL_HOME='%s' '%s' token init >/dev/null 2>&1", home, HSMENROLL_BIN) != 0)
        return 1;
    port = free_port();
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && exec cfssl serve -address 127.0.0.1 -port %d -ca ca.pem -ca-key "
                 "ca-key.pem -config signing.json 2>cfssl.log",
                 tmp, port);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    cfssl_pid = pid;
    for (int i = 0; i < 100; i++) {
        if (test_sh("curl -s -o /dev/null http://127.0.0.1:%d/api/v1/cfssl/health", port) == 0)
            return 0;
        usleep(100000);
    }
    return 1;
}

static int teardown(void)
{
    if (cfssl_pid > 0) {
        kill(cfssl_pid, SIGTERM);
        waitpid(cfssl_pid, NULL, 0);
    }
    test_rmtree(tmp);
    free(tmp);
    free(home);
    return 0;
}

/* The engine's configuration with the CFSSL server as CA "cfssl01\fleet", at path. */
static int write_config(const char *path)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"],\"PinFile\":\"%s/pin\"},"
             "\"CertificateAuthorities\":[{\"Id\":3,\"Name\":\"cfssl01\\\\fleet\",\"Type\":"
             "\"cfssl\",\"Url\":\"http://127.0.0.1:%d\",\"ChainFile\":\"%s/ca.pem\"}],"
             "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[3]}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1}]}",
             home, port, tmp);
    return test_write_file(path, text);
}

static void test_every_key_type_cfssl_signs(void)
{
    char config[600], batch[600], out[600], results[700];
    snprintf(config, sizeof config, "%s/engine.json", tmp);
    snprintf(batch, sizeof batch, "%s/batch.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out", tmp);
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    CU_ASSERT_EQUAL_FATAL(write_config(config), 0);
    static const struct {
        const char *id, *key;
        bool accepted;
    } cases[] = {
        {"rsa2048", "\"KeyType\":\"RSA\",\"KeyLength\":2048", true},
        {"rsa3072", "\"KeyType\":\"RSA\",\"KeyLength\":3072", true},
        {"p256", "\"KeyType\":\"ECC\",\"KeyLength\":256", true},
        {"p384", "\"KeyType\":\"ECC\",\"KeyLength\":384", true},
        {"p521", "\"KeyType\":\"ECC\",\"KeyLength\":521", true},
        {"ed25519", "\"KeyType\":\"Ed25519\"", false},
    };
    FILE *f = fopen(batch, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        fprintf(f,
                "{\"Id\":\"%s\",\"Template\":\"Default\",\"Subject\":\"CN=%s.fleet.example,"
                "O=Example\",\"SANs\":{\"dns\":[\"%s.fleet.example\"],\"ip4\":[\"10.0.0.%zu\"]},"
                "%s,\"Format\":\"PEM\",\"IncludeChain\":true}\n",
                cases[i].id, cases[i].id, cases[i].id, i + 1, cases[i].key);
    fclose(f);
    CU_ASSERT_EQUAL(test_sh("SOFTHSM2_CONF='%s/softhsm2.conf' '%s' run '%s' -o '%s' --config '%s' "
                            "2>'%s/engine.log'",
                            home, HSMENROLL_BIN, batch, out, config, tmp),
                    1); /* Ed25519 fails */
    json_t *res = test_load_ndjson(results);
    CU_ASSERT_PTR_NOT_NULL_FATAL(res);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *r = test_find_by(res, "Id", cases[i].id);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        const char *status = json_string_value(json_object_get(r, "Status"));
        if (!cases[i].accepted) {
            CU_ASSERT_STRING_EQUAL(status, "failed");
            json_t *e = json_object_get(r, "Error");
            CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "Code")), "CA_REJECTED");
            const char *msg = json_string_value(json_object_get(e, "Message"));
            CU_ASSERT_PTR_NOT_NULL(msg ? strstr(msg, "algorithm unimplemented") : NULL);
            continue;
        }
        CU_ASSERT_STRING_EQUAL(status, "issued");
        if (strcmp(status, "issued") != 0) {
            fprintf(stderr, "\n  %s: %s\n", cases[i].id,
                    json_dumps(json_object_get(r, "Error"), 0));
            continue;
        }
        /* The bundle: leaf then the ChainFile's root; openssl verifies the leaf against it. */
        CU_ASSERT_EQUAL(test_sh("cd '%s' && openssl x509 -in %s.pem -out %s.leaf && openssl verify "
                                "-CAfile '%s/ca.pem' %s.leaf >/dev/null",
                                out, cases[i].id, cases[i].id, tmp, cases[i].id),
                        0);
        char *san = test_sh_output(NULL, "openssl x509 -in '%s/%s.pem' -noout -ext subjectAltName",
                                   out, cases[i].id);
        char want[128];
        snprintf(want, sizeof want, "DNS:%s.fleet.example", cases[i].id);
        CU_ASSERT_PTR_NOT_NULL(san ? strstr(san, want) : NULL);
        snprintf(want, sizeof want, "IP Address:10.0.0.%zu", i + 1);
        CU_ASSERT_PTR_NOT_NULL(san ? strstr(san, want) : NULL);
        free(san);
        char *pem = test_sh_output(NULL, "cat '%s/%s.pem'", out, cases[i].id);
        CU_ASSERT_EQUAL(test_count(pem ? pem : "", "BEGIN CERTIFICATE"), 2);
        free(pem);
    }
    json_decref(res);
}

/* `bench --ca-rate`: the CA benchmark drives the CFSSL server open-loop at a fixed rate with CSRs
 * of keys made beforehand: every request is issued by CFSSL (the certificates verify against its
 * root), no key is made in the HSM, and the schedule holds the rate down: 20 requests at 40/s
 * take at least 19/40 s. */
static void test_ca_benchmark_drives_cfssl(void)
{
    char config[600];
    snprintf(config, sizeof config, "%s/bench.json", tmp);
    CU_ASSERT_EQUAL_FATAL(write_config(config), 0);
    json_t *rec = test_sh_json(NULL,
                               "SOFTHSM2_CONF='%s/softhsm2.conf' '%s' bench --config '%s' --ca "
                               "'cfssl01\\fleet' -n 20 --workers 1 --inflight 8 --ca-rate 40 "
                               "--out '%s/kept' -q --json - 2>'%s/bench.log'",
                               home, HSMENROLL_BIN, config, tmp, tmp);
    json_t *run = json_array_get(json_object_get(rec, "Runs"), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(run);
    CU_ASSERT_EQUAL(json_number_value(json_object_get(run, "Issued")), 20);
    CU_ASSERT_EQUAL(json_number_value(json_object_get(run, "OfferedPerSecond")), 40);
    double rate = json_number_value(json_object_get(run, "CertificatesPerSecond"));
    CU_ASSERT_TRUE(rate > 0 && rate <= 20 / (19 / 40.0));
    CU_ASSERT_EQUAL(
        json_number_value(json_object_get(json_object_get(run, "StageMeanMs"), "Keygen")), 0);
    json_decref(rec);
    CU_ASSERT_EQUAL(test_sh("cd '%s/kept/out-w1-r40' && n=0 && for f in bench-*.pem; do openssl "
                            "x509 -in $f -out $f.leaf && openssl verify -CAfile '%s/ca.pem' "
                            "$f.leaf >/dev/null || exit 1; n=$((n+1)); done && [ $n -eq 20 ]",
                            tmp, tmp),
                    0);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_every_key_type_cfssl_signs),
        TEST_CASE(test_ca_benchmark_drives_cfssl),
        TEST_END,
    };
    return test_main("cfssl", cases, setup, teardown);
}
