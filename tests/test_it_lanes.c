/* HSM lanes apart from CPU threads: `run` against the embedded default's tokens behind
 * libp11fault.so (tests/tools), with a session limit (fewer lanes, no failed request), with latency
 * on key generation (as many lanes as asked; more found by the run when none is asked), and
 * Hsm.Concurrency's bounds. Behaviour only: no
 * timing is asserted (speed belongs to `bench --hsm-latency`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support.h"

static char *tmp, *home;

static int setup(void)
{
    return test_engine_home("hsmenroll-lanes", &tmp, &home);
}

static int teardown(void)
{
    test_engine_home_free(tmp, home);
    return 0;
}

/* A configuration like the embedded default's, with the module behind p11fault and
 * extra_hsm (e.g. ",\"Concurrency\":8") added to its Hsm object. */
static void write_config(const char *name, const char *extra_hsm)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f,
            "{\"Hsm\":{\"Module\":\"%s\",\"Tokens\":[\"hsmenroll-keys\"],\"PinFile\":\"%s/pin\"%s},"
            "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"embedded\",\"Type\":\"local\","
            "\"Home\":\"%s/ca\",\"Token\":\"hsmenroll-ca\",\"PinFile\":\"home/ca-pin\"}],"
            "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[1]}],"
            "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1,"
            "\"TemplateDefault\":true}]}\n",
            HSMENROLL_P11FAULT, home, extra_hsm, home);
    fclose(f);
}

static void write_batch(const char *name, const char *prefix, int n)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int i = 0; i < n; i++)
        fprintf(f,
                "{\"Id\":\"%s-%d\",\"Template\":\"Default\",\"Subject\":\"CN=%s-%d.example\","
                "\"KeyType\":\"ECC\","
                "\"Format\":\"PEM\",\"Password\":\"lanes-password-1\"}\n",
                prefix, i, prefix, i);
    fclose(f);
}

/* The scenario NAME: NAME.json (extra_hsm in its Hsm object), a batch NAME.ndjson of n
 * requests, run with the p11fault configuration FAULTS (file contents, the module line added)
 * and args; returns the exit code and the run's --stats-json in *stats. */
static int run_scenario(const char *name, const char *extra_hsm, int n, const char *faults,
                        const char *args, json_t **stats)
{
    char config[64], batch[64];
    snprintf(config, sizeof config, "%s.json", name);
    snprintf(batch, sizeof batch, "%s.ndjson", name);
    write_config(config, extra_hsm);
    write_batch(batch, name, n);
    char conf[600];
    snprintf(conf, sizeof conf, "%s/p11fault-%s.conf", tmp, batch);
    FILE *f = fopen(conf, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "module %s\nlog %s/faults-%s.log\n%s", HSMENROLL_SOFTHSM_MODULE, tmp, batch, faults);
    fclose(f);
    int rc = test_sh("SOFTHSM2_CONF='%s/softhsm2.conf' P11FAULT_CONFIG='%s' '%s' run '%s/%s' "
                     "--config '%s/%s' -o '%s/out-%s' --progress never --stats-json "
                     "'%s/stats-%s.json' %s 2>'%s/stderr-%s.log'",
                     home, conf, HSMENROLL_BIN, tmp, batch, tmp, config, tmp, batch, tmp, batch,
                     args, tmp, batch);
    char path[700];
    snprintf(path, sizeof path, "%s/stats-%s.json", tmp, batch);
    *stats = json_load_file(path, 0, NULL);
    return rc;
}

static long issued_in(const char *batch)
{
    char path[700];
    snprintf(path, sizeof path, "%s/out-%s/results.ndjson", tmp, batch);
    json_t *results = test_load_ndjson(path);
    long n = 0;
    for (size_t i = 0; i < json_array_size(results); i++)
        n += strcmp(json_string_value(json_object_get(json_array_get(results, i), "Status")),
                    "issued") == 0;
    json_decref(results);
    return n;
}

/* The module allows 6 sessions per slot: the login takes one, so 5 lanes open and the sixth is
 * refused with CKR_SESSION_COUNT; the run goes on with 5 and every request is issued. */
static void test_session_limit_means_fewer_lanes(void)
{
    json_t *stats = NULL;
    int rc = run_scenario("limit", "", 30, "session-limit 6\n", "--hsm-concurrency 32 --workers 2",
                          &stats);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(issued_in("limit.ndjson"), 30);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "HsmLanes")), 5);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "Failed")), 0);
    char path[700];
    snprintf(path, sizeof path, "%s/faults-limit.ndjson.log", tmp);
    char *log = test_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "C_OpenSession session-limit") : NULL);
    free(log);
    json_decref(stats);
    snprintf(path, sizeof path, "%s/out-limit.ndjson", tmp);
    CU_ASSERT_EQUAL(test_verified_files(path, home), 30);
}

/* A module that answers busy during the run (CKR_DEVICE_MEMORY on key generation and wrap,
 * CKR_SESSION_COUNT on the signatures of the CSRs and of the embedded CA): the engine lowers the
 * HSM operations in flight, says so, retries after a backoff, and every request is issued. */
static void test_busy_module_slows_down(void)
{
    json_t *stats = NULL;
    int rc = run_scenario("busy", ",\"Concurrency\":8", 60,
                          "fail C_GenerateKeyPair CKR_DEVICE_MEMORY rate 0.2 seed 11\n"
                          "fail C_WrapKey CKR_DEVICE_MEMORY rate 0.05 seed 12\n"
                          "fail C_SignInit CKR_SESSION_COUNT rate 0.05 seed 13\n",
                          "--workers 2", &stats);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(issued_in("busy.ndjson"), 60);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "Failed")), 0);
    json_t *busy = json_object_get(stats, "HsmBusy");
    CU_ASSERT_PTR_NOT_NULL_FATAL(busy);
    CU_ASSERT_TRUE(json_integer_value(json_object_get(busy, "Answers")) > 0);
    CU_ASSERT_TRUE(json_integer_value(json_object_get(busy, "Slowdowns")) > 0);
    CU_ASSERT_TRUE(json_integer_value(json_object_get(busy, "LowestInFlight")) < 8);
    /* The wrapper refused calls (its log), as many as the run met, and the run said it slowed
     * down. */
    char path[700];
    snprintf(path, sizeof path, "%s/faults-busy.ndjson.log", tmp);
    char *log = test_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "C_GenerateKeyPair CKR_DEVICE_MEMORY") : NULL);
    CU_ASSERT_EQUAL(log ? test_count(log, "\n") : -1,
                    json_integer_value(json_object_get(busy, "Answers")));
    free(log);
    snprintf(path, sizeof path, "%s/stderr-busy.ndjson.log", tmp);
    char *err = test_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "the HSM is busy (") : NULL);
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "slowing down to") : NULL);
    free(err);
    json_decref(stats);
    snprintf(path, sizeof path, "%s/out-busy.ndjson", tmp);
    CU_ASSERT_EQUAL(test_verified_files(path, home), 60);
}

/* Hsm.Concurrency 8 with one CPU permit: 8 lanes, 40 ms per key generation, all issued, every
 * certificate verified by openssl. */
static void test_concurrency_from_config(void)
{
    json_t *stats = NULL;
    int rc = run_scenario("conc", ",\"Concurrency\":8", 24, "latency C_GenerateKeyPair 40\n",
                          "--workers 1", &stats);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(issued_in("conc.ndjson"), 24);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "HsmLanes")), 8);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "Workers")), 1);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/out-conc.ndjson", tmp);
    CU_ASSERT_EQUAL(test_verified_files(dir, home), 24);
    json_decref(stats);
}

/* No concurrency set, and a module that takes 50 ms per key generation, signature and wrap (a
 * network HSM far away): the CPU waits, so the run raises its lanes above the 32 it started
 * with; with a module that allows 40 sessions per slot, it stops where the module refuses one
 * more (CKR_SESSION_COUNT), and every request is still issued. */
static void test_lanes_raised_when_the_module_is_slow(void)
{
    json_t *stats = NULL;
    const char *slow = "latency C_GenerateKeyPair 50\nlatency C_Sign 50\nlatency C_WrapKey 50\n";
    int rc = run_scenario("slow", "", 300, slow, "--workers 2 -v", &stats);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(issued_in("slow.ndjson"), 300);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "HsmLanesFirst")), 32);
    CU_ASSERT(json_integer_value(json_object_get(stats, "HsmLanes")) > 32);
    json_decref(stats);
    char path[700];
    snprintf(path, sizeof path, "%s/stderr-slow.ndjson.log", tmp);
    char *log = test_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "HSM operations in flight (were 32)") : NULL);
    free(log);
    snprintf(path, sizeof path, "%s/out-slow.ndjson", tmp);
    CU_ASSERT_EQUAL(test_verified_files(path, home), 300);

    char faults[300];
    snprintf(faults, sizeof faults, "%ssession-limit 40\n", slow);
    rc = run_scenario("slow40", "", 300, faults, "--workers 2", &stats);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(issued_in("slow40.ndjson"), 300);
    long lanes = json_integer_value(json_object_get(stats, "HsmLanes"));
    CU_ASSERT(lanes > 32 && lanes < 40);
    json_decref(stats);
}

/* Hsm.Concurrency (or --hsm-concurrency) is the operator's: the run keeps it whatever the
 * module's latency. */
static void test_set_concurrency_is_kept(void)
{
    json_t *stats = NULL;
    int rc = run_scenario("kept", ",\"Concurrency\":4", 40, "latency C_GenerateKeyPair 50\n",
                          "--workers 1", &stats);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(issued_in("kept.ndjson"), 40);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "HsmLanesFirst")), 4);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "HsmLanes")), 4);
    json_decref(stats);
}

/* Fewer lanes asked than CPU permits: the CPU permits win (each worker is a lane). */
static void test_lanes_at_least_workers(void)
{
    json_t *stats = NULL;
    CU_ASSERT_EQUAL(run_scenario("few", ",\"Concurrency\":1", 6, "", "--workers 3", &stats), 0);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "HsmLanes")), 3);
    json_decref(stats);
}

static void test_concurrency_bounds(void)
{
    json_t *stats = NULL;
    CU_ASSERT_EQUAL(run_scenario("zero", ",\"Concurrency\":0", 1, "", "", &stats), 2);
    json_decref(stats);
    char path[700];
    snprintf(path, sizeof path, "%s/stderr-zero.ndjson.log", tmp);
    char *err = test_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "Hsm.Concurrency") : NULL);
    free(err);
    CU_ASSERT_EQUAL(test_sh("'%s' run /dev/null --hsm-concurrency 0 2>/dev/null", HSMENROLL_BIN),
                    2);
}

int main(void)
{
    static const test_case cases[] = {
        TEST_CASE(test_session_limit_means_fewer_lanes),
        TEST_CASE(test_concurrency_from_config),
        TEST_CASE(test_busy_module_slows_down),
        TEST_CASE(test_lanes_at_least_workers),
        TEST_CASE(test_lanes_raised_when_the_module_is_slow),
        TEST_CASE(test_set_concurrency_is_kept),
        TEST_CASE(test_concurrency_bounds),
        TEST_END,
    };
    return test_main("it_lanes", cases, setup, teardown);
}
