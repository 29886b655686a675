/* The engine against a real CFSSL server (Debian's golang-cfssl), started by the test on a free
 * loopback port with a CA made by `cfssl gencert -initca` and a sqlite certificate database:
 * every key type CFSSL signs (RSA, ECDSA P-256/384/521) issued with the chain from ChainFile and
 * verified by `openssl verify`; the SANs reach the certificate; a key type CFSSL refuses (Ed25519)
 * fails with CFSSL's own reason; `revoke` through CFSSL's revoke endpoint, checked in CFSSL's
 * database, and `--resume --retry-failed` after the server was down. */
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

/* CFSSL's sqlite certificate database: the "Up" part of its migration
 * certdb/sqlite/migrations/001_CreateCertificates.sql, as of the snapshot Debian packages. */
static const char certdb_schema[] =
    "CREATE TABLE certificates (\n"
    "  serial_number            bytea NOT NULL,\n"
    "  authority_key_identifier bytea NOT NULL,\n"
    "  ca_label                 bytea,\n"
    "  status                   bytea NOT NULL,\n"
    "  reason                   int,\n"
    "  expiry                   timestamp,\n"
    "  revoked_at               timestamp,\n"
    "  pem                      bytea NOT NULL,\n"
    "  PRIMARY KEY(serial_number, authority_key_identifier)\n"
    ");\n"
    "CREATE TABLE ocsp_responses (\n"
    "  serial_number            bytea NOT NULL,\n"
    "  authority_key_identifier bytea NOT NULL,\n"
    "  body                     bytea NOT NULL,\n"
    "  expiry                   timestamp,\n"
    "  PRIMARY KEY(serial_number, authority_key_identifier),\n"
    "  FOREIGN KEY(serial_number, authority_key_identifier) REFERENCES "
    "certificates(serial_number, authority_key_identifier)\n"
    ");\n";

/* Starts `cfssl serve` on port with the database; 0 once it answers its health check. */
static int start_cfssl(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && exec cfssl serve -address 127.0.0.1 -port %d -ca ca.pem -ca-key "
                 "ca-key.pem -config signing.json -db-config db.json 2>>cfssl.log",
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

static void stop_cfssl(void)
{
    if (cfssl_pid > 0) {
        kill(cfssl_pid, SIGTERM);
        waitpid(cfssl_pid, NULL, 0);
        cfssl_pid = 0;
    }
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
    /* The certificate database: CFSSL records what it signs there and revokes only there. */
    char path[600];
    snprintf(path, sizeof path, "%s/certdb.sql", tmp);
    if (test_write_file(path, certdb_schema) != 0 ||
        test_sh("cd '%s' && sqlite3 certs.db < certdb.sql && printf '%%s' "
                "'{\"driver\":\"sqlite3\",\"data_source\":\"certs.db\"}' > db.json",
                tmp) != 0)
        return 1;
    port = free_port();
    return start_cfssl();
}

static int teardown(void)
{
    stop_cfssl();
    test_rmtree(tmp);
    free(tmp);
    free(home);
    return 0;
}

/* The engine's configuration with the CFSSL server as CA "cfssl01\fleet", at path; chain: with
 * the CA certificate as ChainFile; extra: more keys of the CA entry (",\"Retries\":1", ...). */
static int write_config_with(const char *path, bool chain, const char *extra)
{
    char text[2048], chain_file[700] = "";
    if (chain)
        snprintf(chain_file, sizeof chain_file, ",\"ChainFile\":\"%s/ca.pem\"", tmp);
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"],\"PinFile\":\"%s/pin\"},"
             "\"CertificateAuthorities\":[{\"Id\":3,\"Name\":\"cfssl01\\\\fleet\",\"Type\":"
             "\"cfssl\",\"Url\":\"http://127.0.0.1:%d\"%s%s}],"
             "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[3]}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1}]}",
             home, port, chain_file, extra);
    return test_write_file(path, text);
}

static int write_config(const char *path)
{
    return write_config_with(path, true, "");
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

/* Issues n P-256 certificates through CFSSL with Ids "<name>-<i>" into <tmp>/<name>-out; 0 when
 * all were issued. */
static int issue(const char *name, int n)
{
    char config[600], batch[600];
    snprintf(config, sizeof config, "%s/engine.json", tmp);
    snprintf(batch, sizeof batch, "%s/%s.ndjson", tmp, name);
    if (write_config(config) != 0)
        return -1;
    FILE *f = fopen(batch, "w");
    if (f == NULL)
        return -1;
    for (int i = 0; i < n; i++)
        fprintf(f,
                "{\"Id\":\"%s-%d\",\"Template\":\"Default\",\"Subject\":\"CN=%s-%d.example\","
                "\"SANs\":{\"dns\":[\"%s-%d.example\"]},\"KeyType\":\"ECC\",\"KeyLength\":256,"
                "\"Format\":\"PEM\"}\n",
                name, i, name, i, name, i);
    fclose(f);
    return test_sh("SOFTHSM2_CONF='%s/softhsm2.conf' '%s' run '%s' -o '%s/%s-out' --config '%s' "
                   "-q 2>>'%s/engine.log'",
                   home, HSMENROLL_BIN, batch, tmp, name, config, tmp);
}

/* The serial (upper-case hex, as the results write it) of the results line with id. */
static const char *serial_of(json_t *results, const char *id)
{
    json_t *r = test_find_by(results, "Id", id);
    return json_string_value(
        json_object_get(json_object_get(r, "CertificateInformation"), "SerialNumber"));
}

/* CFSSL's own record of what it revoked: for each row of its database with status 'revoked',
 * "serial=<HEX> reason=<n>" with the serial read from the row's certificate by openssl. */
static char *cfssl_revoked(void)
{
    return test_sh_output(
        NULL,
        "cd '%s' && for id in $(sqlite3 certs.db \"select rowid from certificates where "
        "status='revoked'\"); do s=$(sqlite3 certs.db \"select pem from certificates where "
        "rowid=$id\" | openssl x509 -noout -serial) || exit 1; echo \"$s reason=$(sqlite3 "
        "certs.db \"select reason from certificates where rowid=$id\")\"; done",
        tmp);
}

/* How often serial is among CFSSL's revoked rows (with the given reason when >= 0). */
static int revoked_count(const char *record, const char *serial, int reason)
{
    char want[200];
    if (reason >= 0)
        snprintf(want, sizeof want, "serial=%s reason=%d\n", serial, reason);
    else
        snprintf(want, sizeof want, "serial=%s reason=", serial);
    return record ? test_count(record, want) : -1;
}

/* `revoke` through CFSSL's POST /api/v1/cfssl/revoke: the named certificates are revoked in
 * CFSSL's database with the reason, the others not; revoking again succeeds and leaves one row;
 * a serial CFSSL never signed fails REVOKE_NOT_FOUND with CFSSL's own code and message. */
static void test_revoke_through_cfssl(void)
{
    CU_ASSERT_EQUAL_FATAL(issue("rv", 3), 0);
    char results[700], config[600];
    snprintf(results, sizeof results, "%s/rv-out/results.ndjson", tmp);
    snprintf(config, sizeof config, "%s/engine.json", tmp);
    json_t *issued = test_load_ndjson(results);
    CU_ASSERT_PTR_NOT_NULL_FATAL(issued);
    const char *s0 = serial_of(issued, "rv-0"), *s1 = serial_of(issued, "rv-1"),
               *s2 = serial_of(issued, "rv-2");
    CU_ASSERT_FATAL(s0 != NULL && s1 != NULL && s2 != NULL);

    CU_ASSERT_EQUAL(test_sh("'%s' revoke '%s' -o '%s/rvA' --config '%s' --id rv-0 --id rv-1 "
                            "--reason keyCompromise 2>'%s/rvA.log'",
                            HSMENROLL_BIN, results, tmp, config, tmp),
                    0);
    char path[700];
    snprintf(path, sizeof path, "%s/rvA/revocations.ndjson", tmp);
    json_t *lines = test_load_ndjson(path);
    CU_ASSERT_EQUAL(json_array_size(lines), 2);
    for (int i = 0; i < 2; i++) {
        json_t *l = test_find_by(lines, "Id", i == 0 ? "rv-0" : "rv-1");
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(l, "Status")), "revoked");
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(l, "Reason")), "keyCompromise");
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(l, "SerialNumber")),
                               i == 0 ? s0 : s1);
    }
    json_decref(lines);
    char *record = cfssl_revoked();
    CU_ASSERT_EQUAL(revoked_count(record, s0, 1), 1);
    CU_ASSERT_EQUAL(revoked_count(record, s1, 1), 1);
    CU_ASSERT_EQUAL(revoked_count(record, s2, -1), 0);
    free(record);

    /* Again: CFSSL answers success; its database still holds the certificate once. */
    CU_ASSERT_EQUAL(test_sh("'%s' revoke '%s' -o '%s/rvB' --config '%s' --serial %s "
                            "--reason keyCompromise 2>'%s/rvB.log'",
                            HSMENROLL_BIN, results, tmp, config, s0, tmp),
                    0);
    record = cfssl_revoked();
    CU_ASSERT_EQUAL(revoked_count(record, s0, -1), 1);
    CU_ASSERT_EQUAL(revoked_count(record, s2, -1), 0);
    free(record);

    /* A certificate CFSSL never signed (a results line made up with its issuer). */
    json_t *fake = json_deep_copy(test_find_by(issued, "Id", "rv-2"));
    json_object_set_new(fake, "Id", json_string("never"));
    json_object_set_new(json_object_get(fake, "CertificateInformation"), "SerialNumber",
                        json_string("0DEADBEEF0"));
    char *text = json_dumps(fake, JSON_COMPACT);
    char fake_path[700];
    snprintf(fake_path, sizeof fake_path, "%s/fake.ndjson", tmp);
    char *line = NULL;
    CU_ASSERT(asprintf(&line, "%s\n", text) > 0);
    CU_ASSERT_EQUAL(test_write_file(fake_path, line), 0);
    free(line);
    free(text);
    json_decref(fake);
    CU_ASSERT_EQUAL(test_sh("'%s' revoke '%s' -o '%s/rvC' --config '%s' 2>'%s/rvC.log'",
                            HSMENROLL_BIN, fake_path, tmp, config, tmp),
                    1);
    snprintf(path, sizeof path, "%s/rvC/revocations.ndjson", tmp);
    lines = test_load_ndjson(path);
    json_t *e = json_object_get(json_array_get(lines, 0), "Error");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "Code")), "REVOKE_NOT_FOUND");
    const char *msg = json_string_value(json_object_get(e, "Message"));
    CU_ASSERT_PTR_NOT_NULL(msg ? strstr(msg, "CFSSL 11200: ") : NULL);
    CU_ASSERT_PTR_NOT_NULL(msg ? strstr(msg, "certificate not found") : NULL);
    json_decref(lines);
    json_decref(issued);
}

/* CFSSL as released since 2017 records each certificate with its authority key id (Debian's
 * snapshot, built with a newer Go, records it empty): with the rows given the CA's Subject Key
 * Identifier, as such a CFSSL writes them, the key id revoke sends must be the right one, taken
 * from the ChainFile, or without one from CFSSL's /api/v1/cfssl/info. */
static void test_revoke_sends_the_authority_key_id(void)
{
    CU_ASSERT_EQUAL_FATAL(issue("ak", 2), 0);
    char results[700], config[600], nochain[600];
    snprintf(results, sizeof results, "%s/ak-out/results.ndjson", tmp);
    snprintf(config, sizeof config, "%s/engine.json", tmp);
    snprintf(nochain, sizeof nochain, "%s/nochain.json", tmp);
    CU_ASSERT_EQUAL_FATAL(write_config_with(nochain, false, ""), 0);
    json_t *issued = test_load_ndjson(results);
    CU_ASSERT_PTR_NOT_NULL_FATAL(issued);
    char *ski = test_sh_output(NULL,
                               "openssl x509 -in '%s/ca.pem' -noout -ext subjectKeyIdentifier | "
                               "tail -n 1 | tr -d ' :\n' | tr A-F a-f",
                               tmp);
    CU_ASSERT_FATAL(ski != NULL && strlen(ski) == 40);
    for (int k = 0; k < 2; k++) {
        char id[16];
        snprintf(id, sizeof id, "ak-%d", k);
        const char *serial = serial_of(issued, id);
        CU_ASSERT_EQUAL_FATAL(
            test_sh("cd '%s' && d=$(python3 -c 'print(int(\"%s\", 16))') && sqlite3 certs.db "
                    "\"update certificates set authority_key_identifier='%s' where "
                    "serial_number='$d'\" && [ \"$(sqlite3 certs.db \"select count(*) from "
                    "certificates where authority_key_identifier='%s' and serial_number='$d'\")\" "
                    "= 1 ]",
                    tmp, serial ? serial : "0", ski, ski),
            0);
        CU_ASSERT_EQUAL(test_sh("'%s' revoke '%s' -o '%s/rvK%d' --config '%s' --id %s "
                                "--reason cessationOfOperation 2>'%s/rvK%d.log'",
                                HSMENROLL_BIN, results, tmp, k, k == 0 ? config : nochain, id, tmp,
                                k),
                        0);
    }
    char *record = cfssl_revoked();
    CU_ASSERT_EQUAL(revoked_count(record, serial_of(issued, "ak-0"), 5), 1);
    CU_ASSERT_EQUAL(revoked_count(record, serial_of(issued, "ak-1"), 5), 1);
    free(record);
    /* both rows still carry the key id: it is them CFSSL revoked */
    CU_ASSERT_EQUAL(test_sh("cd '%s' && [ \"$(sqlite3 certs.db \"select count(*) from certificates "
                            "where authority_key_identifier='%s' and status='revoked'\")\" = 2 ]",
                            tmp, ski),
                    0);
    free(ski);
    json_decref(issued);
}

/* A CFSSL server without a certificate database offers no revoke endpoint: the line fails
 * CA_REVOKE_FAILED saying so. */
static void test_revoke_needs_cfssl_database(void)
{
    CU_ASSERT_EQUAL_FATAL(issue("nodb", 1), 0);
    int nodb_port = free_port();
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && exec cfssl serve -address 127.0.0.1 -port %d -ca ca.pem -ca-key "
                 "ca-key.pem -config signing.json 2>>cfssl-nodb.log",
                 tmp, nodb_port);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int up = 1;
    for (int i = 0; i < 100 && up != 0; i++)
        if ((up = test_sh("curl -s -o /dev/null http://127.0.0.1:%d/api/v1/cfssl/health",
                          nodb_port)) != 0)
            usleep(100000);
    char config[600], path[700];
    snprintf(config, sizeof config, "%s/nodb.json", tmp);
    int saved = port;
    port = nodb_port; /* the configuration names the server without a database */
    int written = write_config(config);
    port = saved;
    if (up == 0 && written == 0)
        CU_ASSERT_EQUAL(test_sh("'%s' revoke '%s/nodb-out/results.ndjson' -o '%s/rvN' --config "
                                "'%s' 2>'%s/rvN.log'",
                                HSMENROLL_BIN, tmp, tmp, config, tmp),
                        1);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    CU_ASSERT_EQUAL_FATAL(up, 0);
    snprintf(path, sizeof path, "%s/rvN/revocations.ndjson", tmp);
    json_t *lines = test_load_ndjson(path);
    json_t *e = json_object_get(json_array_get(lines, 0), "Error");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "Code")), "CA_REVOKE_FAILED");
    const char *msg = json_string_value(json_object_get(e, "Message"));
    CU_ASSERT_PTR_NOT_NULL(msg ? strstr(msg, "-db-config") : NULL);
    json_decref(lines);
}

/* A revoke while CFSSL is down fails every line (nothing reaches CFSSL); with CFSSL up again a
 * plain --resume leaves them failed and prints the command that tries them again; that command
 * (--resume --retry-failed) revokes each, and CFSSL's database holds each serial once. */
static void test_revoke_retry_failed_after_cfssl_down(void)
{
    CU_ASSERT_EQUAL_FATAL(issue("dn", 3), 0);
    char results[700], config[600], out[600], path[700];
    snprintf(results, sizeof results, "%s/dn-out/results.ndjson", tmp);
    snprintf(config, sizeof config, "%s/fast.json", tmp);
    snprintf(out, sizeof out, "%s/rvD", tmp);
    snprintf(path, sizeof path, "%s/revocations.ndjson", out);
    CU_ASSERT_EQUAL_FATAL(write_config_with(config, true, ",\"Retries\":1,\"RetryDelayMs\":50"), 0);
    json_t *issued = test_load_ndjson(results);
    CU_ASSERT_PTR_NOT_NULL_FATAL(issued);

    stop_cfssl();
    CU_ASSERT_EQUAL(test_sh("'%s' revoke '%s' -o '%s' --config '%s' --reason superseded "
                            "2>'%s/rvD1.log'",
                            HSMENROLL_BIN, results, out, config, tmp),
                    1);
    json_t *lines = test_load_ndjson(path);
    CU_ASSERT_EQUAL(json_array_size(lines), 3);
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(l, "Status")), "failed");
        CU_ASSERT_STRING_EQUAL(
            json_string_value(json_object_get(json_object_get(l, "Error"), "Code")),
            "CA_UNREACHABLE");
    }
    json_decref(lines);
    CU_ASSERT_EQUAL_FATAL(start_cfssl(), 0);

    /* --resume alone: the failed lines stay failed, and the summary says how to retry them. */
    CU_ASSERT_EQUAL(test_sh("'%s' revoke '%s' -o '%s' --config '%s' --reason superseded --resume "
                            "2>'%s/rvD2.log'",
                            HSMENROLL_BIN, results, out, config, tmp),
                    1);
    char *log = test_sh_output(NULL, "cat '%s/rvD2.log'", tmp);
    CU_ASSERT_PTR_NOT_NULL(
        log ? strstr(log, "3 lines that failed in the interrupted revoke were left failed") : NULL);
    free(log);
    char *record = cfssl_revoked();
    for (int k = 0; k < 3; k++) {
        char id[16];
        snprintf(id, sizeof id, "dn-%d", k);
        CU_ASSERT_EQUAL(revoked_count(record, serial_of(issued, id), -1), 0);
    }
    free(record);

    /* The printed command, as an operator would paste it. */
    char *command = test_sh_output(
        NULL, "sed -n 's/.*try them again with: //p' '%s/rvD2.log' | head -n 1", tmp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(command);
    CU_ASSERT_PTR_NOT_NULL(strstr(command, "--resume --retry-failed"));
    command[strcspn(command, "\n")] = '\0';
    CU_ASSERT_EQUAL(test_sh("%s 2>'%s/rvD3.log'", command, tmp), 0);
    free(command);
    lines = test_load_ndjson(path);
    CU_ASSERT_EQUAL(json_array_size(lines), 3);
    record = cfssl_revoked();
    for (int k = 0; k < 3; k++) {
        char id[16];
        snprintf(id, sizeof id, "dn-%d", k);
        const char *serial = serial_of(issued, id);
        json_t *r = test_find_by(lines, "SerialNumber", serial);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "Status")), "revoked");
        int seen = 0;
        json_array_foreach(lines, i, l)
        {
            seen += serial != NULL &&
                    strcmp(json_string_value(json_object_get(l, "SerialNumber")), serial) == 0;
        }
        CU_ASSERT_EQUAL(seen, 1);
        CU_ASSERT_EQUAL(revoked_count(record, serial, 4), 1); /* superseded */
    }
    free(record);
    json_decref(lines);

    /* Resumed once more: the journal's last record of each serial holds (revoked, not failed). */
    CU_ASSERT_EQUAL(test_sh("'%s' revoke '%s' -o '%s' --config '%s' --resume 2>'%s/rvD4.log'",
                            HSMENROLL_BIN, results, out, config, tmp),
                    0);
    lines = test_load_ndjson(path);
    CU_ASSERT_EQUAL(json_array_size(lines), 3);
    json_array_foreach(lines, i, l)
    {
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(l, "Status")), "revoked");
    }
    json_decref(lines);
    json_decref(issued);
}

/* A lost answer is never resent blindly: dropproxy in front of CFSSL drops the answers to the
 * first 3 sign requests (CFSSL signed them). Those 3 stay uncertain, their keys kept; the other
 * 3 are issued; CFSSL's own database holds exactly 6 new certificates (resent, the 3 would have
 * been signed twice: CFSSL signs whatever it is sent). */
static void test_lost_answer_not_resent(void)
{
    int proxy_port = free_port();
    pid_t proxy = test_start_dropproxy(tmp, proxy_port, port, "--match POST --drop-first 3");
    CU_ASSERT_FATAL(proxy > 0);
    char *before =
        test_sh_output(NULL, "sqlite3 '%s/certs.db' 'select count(*) from certificates'", tmp);
    char config[600], batch[600], out[600], text[2048];
    snprintf(config, sizeof config, "%s/lost.json", tmp);
    snprintf(batch, sizeof batch, "%s/lost.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-lost", tmp);
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"],\"PinFile\":\"%s/pin\"},"
             "\"CertificateAuthorities\":[{\"Id\":3,\"Name\":\"cfssl01\\\\fleet\",\"Type\":"
             "\"cfssl\",\"Url\":\"http://127.0.0.1:%d\",\"ChainFile\":\"%s/ca.pem\","
             "\"RetryDelayMs\":10}],"
             "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[3]}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1}]}",
             home, proxy_port, tmp);
    CU_ASSERT_EQUAL_FATAL(test_write_file(config, text), 0);
    CU_ASSERT_EQUAL_FATAL(
        test_sh("for i in 1 2 3 4 5 6; do printf '{\"Id\":\"lost-%%s\",\"Template\":\"Default\","
                "\"Subject\":\"CN=lost-%%s\",\"KeyType\":\"ECC\",\"Format\":\"PEM\","
                "\"KeyStorage\":\"token\"}\\n' $i $i; done >'%s'",
                batch),
        0);
    int rc = test_sh("SOFTHSM2_CONF='%s/softhsm2.conf' '%s' run '%s' --config '%s' -o '%s' -q 2>'%s/lost.log'",
                     home, HSMENROLL_BIN, batch, config, out, tmp);
    CU_ASSERT_EQUAL(rc, 1);
    test_stop(proxy);
    char *after =
        test_sh_output(NULL, "sqlite3 '%s/certs.db' 'select count(*) from certificates'", tmp);
    CU_ASSERT_EQUAL(after && before ? atoi(after) - atoi(before) : -1, 6);
    free(before);
    free(after);
    char *counts = test_sh_output(NULL,
                                  "jq -r .Status '%s/results.ndjson' | sort | uniq -c | "
                                  "awk '{printf \"%%s=%%s \", $2, $1}'",
                                  out);
    CU_ASSERT_STRING_EQUAL(counts ? counts : "", "issued=3 uncertain=3 ");
    if (counts == NULL || strcmp(counts, "issued=3 uncertain=3 ") != 0)
        test_sh("cat '%s/results.ndjson' '%s/lost.log' >&2", out, tmp);
    free(counts);
    /* The uncertain ones keep their keys (a KeyUri each), for whoever finds the certificate. */
    CU_ASSERT_EQUAL(test_sh("[ $(jq -r 'select(.Status == \"uncertain\") | .KeyUri' "
                            "'%s/results.ndjson' | grep -c '^pkcs11:') -eq 3 ]",
                            out),
                    0);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_every_key_type_cfssl_signs),
        TEST_CASE(test_ca_benchmark_drives_cfssl),
        TEST_CASE(test_revoke_through_cfssl),
        TEST_CASE(test_revoke_sends_the_authority_key_id),
        TEST_CASE(test_revoke_needs_cfssl_database),
        TEST_CASE(test_revoke_retry_failed_after_cfssl_down),
        TEST_CASE(test_lost_answer_not_resent),
        TEST_END,
    };
    return test_main("cfssl", cases, setup, teardown);
}
