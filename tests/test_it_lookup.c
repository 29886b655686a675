/* The `keyfactor` connector's lookup after a lost answer, against the engine's own `serve` behind
 * dropproxy: answers lost in the run, a run killed while its answers were lost and resumed, and a
 * run killed before its CA got anything (two lookups find none: submitted again, or left
 * uncertain with LookupResubmit false), and a key the CA certified more than once (uncertain).
 * serve's issuance log counts every certificate. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support.h"

static char *tmp, *home;
static char users[600], issued_log[600];

static int setup(void)
{
    unsetenv("HSMENROLL_PIN");
    if (test_engine_home("hsmenroll-lookup", &tmp, &home) != 0)
        return 1;
    snprintf(issued_log, sizeof issued_log, "%s/ca/issued.ndjson", home);
    char conf[700];
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", home);
    setenv("SOFTHSM2_CONF", conf, 1);
    return test_serve_users(tmp, users, sizeof users);
}

static int teardown(void)
{
    test_engine_home_free(tmp, home);
    return 0;
}

/* The engine's command line (its log appended to TMP/run.log). */
static void engine_command(char *cmd, size_t size, const char *batch, const char *out,
                           const char *extra)
{
    snprintf(cmd, size,
             "HSMENROLL_HOME='%s' exec '%s' run '%s' -o '%s' --progress never %s 2>>'%s/run.log'",
             home, HSMENROLL_BIN, batch, out, extra, tmp);
}

static int run_engine(const char *batch, const char *out, const char *extra)
{
    char cmd[2048];
    engine_command(cmd, sizeof cmd, batch, out, extra);
    return test_sh("%s", cmd);
}

/* How many certificates serve's CA issued for each line: the number of lines issued exactly
 * once (the others are reported). */
static int each_issued_once(int n, const char *prefix)
{
    char *text = test_read_file(issued_log, NULL);
    int good = 0;
    for (int i = 1; i <= n; i++) {
        char needle[300];
        snprintf(needle, sizeof needle, "CN=%s-%03d.lookup.example\"", prefix, i);
        int k = text ? test_count(text, needle) : -1;
        if (k == 1)
            good++;
        else
            fprintf(stderr, "\n  %s-%03d issued %d times\n", prefix, i, k);
    }
    free(text);
    return good;
}

/* How many certificates serve's CA issued for lines of this prefix. */
static int issued_with(const char *prefix)
{
    char *text = test_read_file(issued_log, NULL);
    char needle[300];
    snprintf(needle, sizeof needle, "CN=%s-", prefix);
    int n = text ? test_count(text, needle) : -1;
    free(text);
    return n;
}

/* Waits (up to 60 s) until file holds at least n occurrences of needle. */
static bool wait_for(const char *file, const char *needle, int n)
{
    for (int i = 0; i < 600; i++) {
        char *text = test_read_file(file, NULL);
        int k = text ? test_count(text, needle) : 0;
        free(text);
        if (k >= n)
            return true;
        usleep(100000);
    }
    return false;
}

/* Starts the engine in the background, waits until it has journaled n submissions (S records)
 * and they have gone out (the proxy dropped n answers, or refused n connections), then kills it
 * with SIGKILL while it waits to retry. */
static void run_and_kill(const char *batch, const char *out, const char *extra, int n,
                         const char *proxy_log_needle)
{
    char cmd[2048], journal[700], drop_log[700];
    engine_command(cmd, sizeof cmd, batch, out, extra);
    snprintf(journal, sizeof journal, "%s/journal.ndjson", out);
    snprintf(drop_log, sizeof drop_log, "%s/drop.log", tmp);
    pid_t engine = test_spawn(cmd);
    CU_ASSERT_FATAL(engine > 0);
    CU_ASSERT(wait_for(journal, "\"T\":\"S\"", n));
    if (proxy_log_needle != NULL)
        CU_ASSERT(wait_for(drop_log, proxy_log_needle, n));
    kill(engine, SIGKILL);
    waitpid(engine, NULL, 0);
}

/* 1. Every answer to a POST is lost, and the engine does not retry: each request is looked up
 * (GET /Certificates and the download through the proxy, which lets them pass), found, downloaded
 * and issued once. */
static void test_lost_in_run(void)
{
    int sport = test_free_port(), pport = test_free_port();
    pid_t serve = test_start_serve(home, users, tmp, sport, "");
    CU_ASSERT_FATAL(serve > 0);
    pid_t proxy = test_start_dropproxy(tmp, pport, sport, "--match Enrollment/CSR --drop-rate 1");
    CU_ASSERT_FATAL(proxy > 0);
    char config[600], batch[600], out[600], extra[800];
    snprintf(config, sizeof config, "%s/inrun.json", tmp);
    snprintf(batch, sizeof batch, "%s/inrun.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-inrun", tmp);
    test_write_kf_config(config, home, pport, 0, 10, "");
    test_write_mixed_batch(batch, 9, "inrun", "lookup");
    snprintf(extra, sizeof extra, "--config '%s'", config);
    CU_ASSERT_EQUAL(run_engine(batch, out, extra), 0);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, NULL), 9);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, "recovered by lookup"), 9);
    CU_ASSERT_EQUAL(each_issued_once(9, "inrun"), 9);
    CU_ASSERT_EQUAL(test_verified_files(out, home), 9);
    /* Each was downloaded with its chain (no fallback to the listed leaf alone). */
    char log_path[700];
    snprintf(log_path, sizeof log_path, "%s/run.log", tmp);
    char *log = test_read_file(log_path, NULL);
    CU_ASSERT_PTR_NOT_NULL(log);
    CU_ASSERT_EQUAL(test_count(log ? log : "", "without the CA's chain"), 0);
    free(log);
    test_stop(proxy);
    test_stop(serve);
}

/* 2. The answers of N submissions are lost and the engine is killed while it waits to retry:
 * --resume looks each up before submitting it again, finds it, and issues nothing twice. */
static void test_resume_after_lost_answers(void)
{
    const int n = 12;
    int sport = test_free_port(), pport = test_free_port();
    pid_t serve = test_start_serve(home, users, tmp, sport, "");
    CU_ASSERT_FATAL(serve > 0);
    test_sh("rm -f '%s/drop.log'", tmp);
    pid_t proxy = test_start_dropproxy(tmp, pport, sport, "--match Enrollment/CSR --drop-rate 1");
    CU_ASSERT_FATAL(proxy > 0);
    char config[600], batch[600], out[600], extra[800];
    snprintf(config, sizeof config, "%s/killed.json", tmp);
    snprintf(batch, sizeof batch, "%s/killed.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-killed", tmp);
    /* The first retry waits 30 s or more: long enough to kill the engine before it. */
    test_write_kf_config(config, home, pport, 3, 60000, "");
    test_write_mixed_batch(batch, n, "killed", "lookup");
    snprintf(extra, sizeof extra, "--config '%s' -w 2", config);
    run_and_kill(batch, out, extra, n, "dropped POST");
    test_stop(proxy);
    CU_ASSERT_EQUAL(each_issued_once(n, "killed"), n); /* serve issued them all, once */
    /* Resumed straight to serve: each is looked up, found, and taken. */
    test_write_kf_config(config, home, sport, 3, 10, "");
    snprintf(extra, sizeof extra, "--config '%s' --resume", config);
    CU_ASSERT_EQUAL(run_engine(batch, out, extra), 0);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, NULL), n);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, "recovered by lookup"), n);
    CU_ASSERT_EQUAL(each_issued_once(n, "killed"), n);
    CU_ASSERT_EQUAL(issued_with("killed"), n);
    CU_ASSERT_EQUAL(test_verified_files(out, home), n);
    test_stop(serve);
}

/* 3. The CA never got the requests (the proxy's upstream is down: each connection is closed
 * after the request was sent) and the engine is killed while it waits to retry. --resume with
 * LookupResubmit false: two lookups find none, the requests stay uncertain, nothing is issued;
 * --resume --retry-failed with the default: two lookups find none, each is submitted again and
 * issued once. */
static void test_resume_none_found(void)
{
    const int n = 6;
    int sport = test_free_port(), pport = test_free_port(), dead = test_free_port();
    pid_t proxy = test_start_dropproxy(tmp, pport, dead, "");
    CU_ASSERT_FATAL(proxy > 0);
    char config[600], batch[600], out[600], extra[800];
    snprintf(config, sizeof config, "%s/none.json", tmp);
    snprintf(batch, sizeof batch, "%s/none.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-none", tmp);
    test_write_kf_config(config, home, pport, 3, 60000, "");
    test_write_mixed_batch(batch, n, "none", "lookup");
    snprintf(extra, sizeof extra, "--config '%s' -w 2", config);
    run_and_kill(batch, out, extra, n, NULL);
    test_stop(proxy);
    pid_t serve = test_start_serve(home, users, tmp, sport, "");
    CU_ASSERT_FATAL(serve > 0);
    CU_ASSERT_EQUAL(issued_with("none"), 0);

    test_write_kf_config(config, home, sport, 3, 10,
                         ",\"LookupSettleMs\":200,\"LookupResubmit\":false");
    snprintf(extra, sizeof extra, "--config '%s' --resume", config);
    CU_ASSERT_EQUAL(run_engine(batch, out, extra), 1);
    CU_ASSERT_EQUAL(test_count_results(out, "uncertain", NULL, "LookupResubmit is false"), n);
    CU_ASSERT_EQUAL(issued_with("none"), 0);

    test_write_kf_config(config, home, sport, 3, 10, ",\"LookupSettleMs\":200");
    snprintf(extra, sizeof extra, "--config '%s' --resume --retry-failed", config);
    CU_ASSERT_EQUAL(run_engine(batch, out, extra), 0);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, NULL), n);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, "submitted again"), n);
    CU_ASSERT_EQUAL(each_issued_once(n, "none"), n);
    CU_ASSERT_EQUAL(test_verified_files(out, home), n);
    test_stop(serve);
}

/* A configuration of serve for the engine home: its embedded default, with key reuse allowed. */
static void write_reuse_config(const char *path)
{
    char text[4096];
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Module\":\"%s\",\"Tokens\":[\"hsmenroll-keys\"],\"PinFile\":\"%s/pin\","
             "\"SoPinFile\":\"%s/so-pin\",\"EdDSAToken\":\"hsmenroll-eddsa\"},"
             "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"embedded\",\"Type\":\"local\","
             "\"Home\":\"%s/ca\",\"Token\":\"hsmenroll-ca\",\"PinFile\":\"%s/ca-pin\"}],"
             "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[1]}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1,"
             "\"TemplateDefault\":true,\"UseADPermissions\":true,\"AllowedEnrollmentTypes\":7,"
             "\"Policies\":{\"AllowKeyReuse\":true}}],"
             "\"Settings\":{\"CommonNameRegex\":\".+\"}}",
             HSMENROLL_SOFTHSM_MODULE, home, home, home, home);
    test_write_file(path, text);
}

/* 4. The CA holds two certificates for the request's key (a server that allows key reuse was
 * sent two CSRs of it by another client): the lookup after the lost answer finds three, and the
 * request stays uncertain, naming them; nothing more is issued. */
static void test_several_found(void)
{
    int sport = test_free_port(), pport = test_free_port();
    char config[600], serve_config[600], batch[600], out[600], extra[800];
    snprintf(serve_config, sizeof serve_config, "%s/serve-reuse.json", tmp);
    write_reuse_config(serve_config);
    snprintf(extra, sizeof extra, "--config '%s'", serve_config);
    pid_t serve = test_start_serve(home, users, tmp, sport, extra);
    CU_ASSERT_FATAL(serve > 0);
    /* One key, two CSRs with the CN (another subject each), both issued by serve. */
    CU_ASSERT_EQUAL_FATAL(
        test_sh("cd '%s' && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
                "-out dup.key 2>/dev/null && for o in One Two Three; do openssl req -new -key "
                "dup.key -subj \"/O=$o/CN=dup-001.lookup.example\" -out dup-$o.csr || exit 1; "
                "done && for o in One Two; do python3 -c 'import json,sys; "
                "print(json.dumps({\"CSR\": open(sys.argv[1]).read(), \"Template\": "
                "\"Default\", \"IncludeChain\": True}))' dup-$o.csr > dup-$o.json && curl -sf "
                "-o /dev/null -u eng:pw -H 'Content-Type: application/json' -H "
                "'x-keyfactor-requested-with: APIClient' -H 'x-certificateformat: PEM' "
                "--data-binary @dup-$o.json http://127.0.0.1:%d/KeyfactorAPI/Enrollment/CSR || "
                "exit 1; done",
                tmp, sport),
        0);
    CU_ASSERT_EQUAL(issued_with("dup"), 2);
    pid_t proxy = test_start_dropproxy(tmp, pport, sport, "--match Enrollment/CSR --drop-rate 1");
    CU_ASSERT_FATAL(proxy > 0);
    snprintf(config, sizeof config, "%s/dup.json", tmp);
    snprintf(batch, sizeof batch, "%s/dup.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-dup", tmp);
    test_write_kf_config(config, home, pport, 0, 10, "");
    CU_ASSERT_EQUAL_FATAL(
        test_sh("cd '%s' && python3 -c 'import json; print(json.dumps({\"Id\": \"dup-001\", "
                "\"Operation\": \"CSR\", \"Template\": \"Default\", \"CSR\": "
                "open(\"dup-Three.csr\").read(), \"Format\": \"PEM\"}))' > '%s'",
                tmp, batch),
        0);
    snprintf(extra, sizeof extra, "--config '%s'", config);
    CU_ASSERT_EQUAL(run_engine(batch, out, extra), 1);
    CU_ASSERT_EQUAL(test_count_results(out, "uncertain", NULL, "found 3 certificates for this key"),
                    1);
    CU_ASSERT_EQUAL(issued_with("dup"), 3); /* the engine's one, whose answer was lost */
    test_stop(proxy);
    test_stop(serve);
}

int main(void)
{
    static const test_case cases[] = {
        TEST_CASE(test_lost_in_run), TEST_CASE(test_resume_after_lost_answers),
        TEST_CASE(test_resume_none_found), TEST_CASE(test_several_found), TEST_END};
    return test_main("it_lookup", cases, setup, teardown);
}
