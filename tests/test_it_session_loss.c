/* Session loss anywhere in a run (issue 17, item 4): a 200-line batch on SoftHSM through the
 * p11fault module, which closes the session under C_Sign (the CSR's and the embedded CA's
 * signatures) and C_WrapKey, and fails over (C_CloseAllSessions on every slot, so every login is
 * gone) in the middle of the batch, logs the token out under a signature or a wrap, and closes
 * the session at the run's first exports. Every line is issued and its file verifies with
 * openssl. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support.h"

#define SOFTHSM HSMENROLL_SOFTHSM_MODULE
#define LINES   200

static char *tmp;
static char conf[600], cfg_path[600], faults[600], fault_log[600];

/* hsmenroll with the suite's SoftHSM store, through p11fault (faults from TMP/faults.conf when
 * with_faults); stderr appended to TMP/stderr.log. */
static int engine(bool with_faults, const char *args)
{
    return test_sh("SOFTHSM2_CONF='%s' P11FAULT_MODULE='%s' %s%s%s '%s' %s 2>>'%s/stderr.log'",
                   conf, SOFTHSM, with_faults ? "P11FAULT_CONFIG='" : "", with_faults ? faults : "",
                   with_faults ? "'" : "", HSMENROLL_BIN, args, tmp);
}

static int setup(void)
{
    tmp = test_tmpdir("hsmenroll-sl");
    if (tmp == NULL)
        return 1;
    test_children_unwind_fast();
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", tmp);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", tmp);
    snprintf(faults, sizeof faults, "%s/faults.conf", tmp);
    snprintf(fault_log, sizeof fault_log, "%s/faults.log", tmp);
    char text[2400];
    snprintf(text, sizeof text,
             "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
             tmp);
    if (test_sh("mkdir -p '%s/tokens'", tmp) != 0 || test_write_file(conf, text) != 0)
        return 1;
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Module\":\"%s\",\"Tokens\":[\"sl-keys\"],\"PinFile\":\"pin\","
             "\"SoPinFile\":\"so-pin\"},"
             "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"corp\\\\issuing\",\"Type\":"
             "\"local\",\"Home\":\"ca\",\"Token\":\"sl-ca\"}],"
             "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[1]},"
             "{\"Id\":2,\"Name\":\"Retain\",\"CertificateAuthorities\":[1],"
             "\"KeyRetention\":true}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1},"
             "{\"Id\":2,\"Name\":\"Retain\",\"Template\":2,\"TemplateDefault\":true}]}",
             HSMENROLL_P11FAULT);
    if (test_write_file(cfg_path, text) != 0)
        return 1;
    unsetenv("HSMENROLL_PIN");
    unsetenv("HSMENROLL_SO_PIN");
    char args[1400];
    snprintf(args, sizeof args, "token init --config '%s' -q", cfg_path);
    if (engine(false, args) != 0)
        return 1;
    snprintf(args, sizeof args, "ca init --config '%s' -q", cfg_path);
    return engine(false, args) != 0;
}

static int teardown(void)
{
    test_rmtree(tmp);
    free(tmp);
    return 0;
}

/* LINES lines: even ones PEM with an export key (wrapped: C_WrapKey), odd ones DER with the key
 * kept in the token. */
static void write_batch(const char *path)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int i = 0; i < LINES; i++)
        fprintf(f,
                "{\"Id\":\"sl-%03d\",\"Template\":\"Default\",\"Subject\":\"CN=sl-%03d\","
                "\"KeyType\":\"ECC\",\"Format\":\"%s\"}\n",
                i, i, i % 2 ? "DER" : "PEM");
    fclose(f);
}

static void run_with_faults(const char *name, const char *directives, int expect_faults)
{
    char text[2000], batch[700], out[700], args[2400];
    snprintf(text, sizeof text, "log %s\n%s", fault_log, directives);
    CU_ASSERT_EQUAL_FATAL(test_write_file(faults, text), 0);
    unlink(fault_log);
    snprintf(batch, sizeof batch, "%s/%s.ndjson", tmp, name);
    snprintf(out, sizeof out, "%s/%s", tmp, name);
    write_batch(batch);
    snprintf(args, sizeof args, "run '%s' --config '%s' -o '%s' --workers 4 -q", batch, cfg_path,
             out);
    int rc = engine(true, args);
    CU_ASSERT_EQUAL(rc, 0);
    char *log = test_read_file(fault_log, NULL);
    int fired = log ? test_count(log, "\n") : 0;
    CU_ASSERT_EQUAL(fired, expect_faults);
    if (rc != 0 || fired != expect_faults)
        test_sh("tail -5 '%s/stderr.log' >&2; cat '%s' >&2", tmp, fault_log);
    free(log);
    char results[800];
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    if (rc != 0)
        test_sh("grep -v '\"Status\":\"issued\"' '%s' | head -3 >&2", results);
    char *lines = test_read_file(results, NULL);
    CU_ASSERT_EQUAL(lines ? test_count(lines, "\"Status\":\"issued\"") : -1, LINES);
    free(lines);
    CU_ASSERT_EQUAL(test_verified_files(out, tmp), LINES);
}

/* The session closed under C_Sign three times: the CSR's signature or the CA's (both go through
 * C_Sign, about 2 per line), early, in the middle and late. */
static void test_session_loss_under_sign(void)
{
    run_with_faults("sign",
                    "session-loss C_Sign at 5\nsession-loss C_Sign at 160\n"
                    "session-loss C_Sign at 333\n",
                    3);
}

/* The session closed under C_WrapKey twice: the export key, a session object, is gone with it and
 * is made again. */
static void test_session_loss_under_wrap(void)
{
    run_with_faults("wrap", "session-loss C_WrapKey at 7\nsession-loss C_WrapKey at 61\n", 2);
}

/* The other face of a failover: sessions that stay open on a token that is no longer logged in
 * (a session opened after the failover, before the engine logged in again). No call answers
 * that the session is lost: the signatures with the line's key or the CA's and the wraps answer
 * that the key's handle is gone (CKR_OBJECT_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID). The token
 * is logged in again, the keys found or made again, and every line is issued. */
static void test_logged_out_under_sign_and_wrap(void)
{
    run_with_faults(
        "logout", "logout C_SignInit at 50\nlogout C_WrapKey at 70\nlogout C_SignInit at 300\n", 3);
}

/* The session lost at the run's first exports, where the engine learns what the module can do:
 * under the probe of CKM_AES_KEY_WRAP_PAD when the run opens (the first C_WrapKey), under the
 * import of the run's wrapping key (the third C_CreateObject, after the probe's two keys), and
 * under the first request's wrap (the second C_WrapKey), before any key of the type was wrapped.
 * None of these answers says the module cannot export: every line is issued. */
static void test_session_loss_at_first_exports(void)
{
    run_with_faults("probe", "session-loss C_WrapKey at 1\n", 1);
    run_with_faults("kek", "session-loss C_CreateObject at 3\n", 1);
    run_with_faults("first", "session-loss C_WrapKey at 2\n", 1);
}

/* A failover in the middle of the batch: every session of every slot closed, the logins gone (the
 * key token's and the CA token's), the wrapping key and on SoftHSM the object handles with them.
 * The tokens are logged in again, and the batch finishes. */
static void test_failover_mid_batch(void)
{
    run_with_faults("failover", "failover C_GenerateKeyPair at 90\nfailover C_Sign at 301\n", 2);
}

/* The session closed under C_CreateObject while a CSR line's PrivateKey is imported (twice):
 * the session is reopened, the attempt's half-made objects destroyed by their CKA_ID, the key
 * imported again. Every line is issued, and the token holds exactly one key pair per line. */
static void test_session_loss_under_import(void)
{
    enum { IMPORTS = 20 };
    char text[2000], batch[700], out[700], args[2400];
    snprintf(text, sizeof text,
             "log %s\nsession-loss C_CreateObject at 3\n"
             "session-loss C_CreateObject at 17\n",
             fault_log);
    CU_ASSERT_EQUAL_FATAL(test_write_file(faults, text), 0);
    unlink(fault_log);
    snprintf(batch, sizeof batch, "%s/import.ndjson", tmp);
    snprintf(out, sizeof out, "%s/import", tmp);
    CU_ASSERT_EQUAL_FATAL(
        test_sh("cd '%s' && for i in $(seq 1 %d); do openssl genpkey -algorithm EC -pkeyopt "
                "ec_paramgen_curve:P-256 -out k.pem 2>/dev/null && openssl req -new -key k.pem "
                "-subj \"/CN=imp-$i\" -out c.pem 2>/dev/null && jq -cn --arg id imp-$i --rawfile "
                "csr c.pem --rawfile key k.pem '{Id:$id,Operation:\"CSR\",Template:\"Retain\","
                "CSR:$csr,PrivateKey:$key}' || exit 1; done >'%s' && rm -f k.pem c.pem",
                tmp, IMPORTS, batch),
        0);
    snprintf(args, sizeof args, "run '%s' --config '%s' -o '%s' --workers 4 -q", batch, cfg_path,
             out);
    int rc = engine(true, args);
    CU_ASSERT_EQUAL(rc, 0);
    char *log = test_read_file(fault_log, NULL);
    CU_ASSERT_EQUAL(log ? test_count(log, "\n") : -1, 2);
    free(log);
    char results[800];
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    if (rc != 0)
        test_sh("tail -5 '%s/stderr.log' >&2; grep -v '\"Status\":\"issued\"' '%s' | head -3 >&2",
                tmp, results);
    char *lines = test_read_file(results, NULL);
    CU_ASSERT_EQUAL(lines ? test_count(lines, "\"Status\":\"issued\"") : -1, IMPORTS);
    free(lines);
    /* One private and one public key per line in the key token: none left by a lost attempt. */
    char *keys = test_sh_output(NULL,
                                "SOFTHSM2_CONF='%s' P11FAULT_MODULE='%s' '%s' token list --keys "
                                "--json --config '%s' 2>/dev/null | jq '[.[] | select(.Label == "
                                "\"sl-keys\") | .Keys[] | select(.Label | startswith(\"imp-\"))] "
                                "| length'",
                                conf, SOFTHSM, HSMENROLL_BIN, cfg_path);
    CU_ASSERT_EQUAL(keys ? atoi(keys) : -1, IMPORTS);
    free(keys);
    CU_ASSERT_EQUAL(test_sh("cd '%s' && SOFTHSM2_CONF='%s' pkcs11-tool --module '%s' "
                            "--token-label sl-keys --login --pin \"$(cat pin)\" --list-objects "
                            "--type pubkey 2>/dev/null | grep -c 'label: *imp-' | grep -qx %d",
                            tmp, conf, SOFTHSM, IMPORTS),
                    0);
}

int main(void)
{
    static const test_case cases[] = {
        TEST_CASE(test_session_loss_under_sign),
        TEST_CASE(test_session_loss_under_wrap),
        TEST_CASE(test_session_loss_at_first_exports),
        TEST_CASE(test_logged_out_under_sign_and_wrap),
        TEST_CASE(test_failover_mid_batch),
        TEST_CASE(test_session_loss_under_import),
        TEST_END,
    };
    return test_main("session loss", cases, setup, teardown);
}
