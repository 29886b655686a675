/* HSM lanes apart from CPU threads: `run` against the embedded default's tokens behind
 * libp11fault.so (tests/tools), with a session limit (fewer lanes, no failed request), with latency
 * on key generation (as many lanes as asked), and Hsm.Concurrency's bounds. Behaviour only: no
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

/* Runs BATCH with CONFIG and the p11fault configuration FAULTS (file contents, the module line
 * added); returns the exit code and the run's --stats-json in *stats. */
static int run_with(const char *config, const char *batch, const char *faults, const char *args,
                    json_t **stats)
{
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
    write_config("limit.json", "");
    write_batch("limit.ndjson", "limit", 30);
    json_t *stats = NULL;
    int rc = run_with("limit.json", "limit.ndjson", "session-limit 6\n",
                      "--hsm-concurrency 32 --workers 2", &stats);
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

/* Hsm.Concurrency 8 with one CPU permit: 8 lanes, 40 ms per key generation, all issued, every
 * certificate verified by openssl. */
static void test_concurrency_from_config(void)
{
    write_config("conc.json", ",\"Concurrency\":8");
    write_batch("conc.ndjson", "conc", 24);
    json_t *stats = NULL;
    int rc = run_with("conc.json", "conc.ndjson", "latency C_GenerateKeyPair 40\n", "--workers 1",
                      &stats);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(issued_in("conc.ndjson"), 24);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "HsmLanes")), 8);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "Workers")), 1);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/out-conc.ndjson", tmp);
    CU_ASSERT_EQUAL(test_verified_files(dir, home), 24);
    json_decref(stats);
}

/* Fewer lanes asked than CPU permits: the CPU permits win (each worker is a lane). */
static void test_lanes_at_least_workers(void)
{
    write_config("few.json", ",\"Concurrency\":1");
    write_batch("few.ndjson", "few", 6);
    json_t *stats = NULL;
    CU_ASSERT_EQUAL(run_with("few.json", "few.ndjson", "", "--workers 3", &stats), 0);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "HsmLanes")), 3);
    json_decref(stats);
}

static void test_concurrency_bounds(void)
{
    write_config("zero.json", ",\"Concurrency\":0");
    write_batch("zero.ndjson", "zero", 1);
    json_t *stats = NULL;
    CU_ASSERT_EQUAL(run_with("zero.json", "zero.ndjson", "", "", &stats), 2);
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
        TEST_CASE(test_lanes_at_least_workers),
        TEST_CASE(test_concurrency_bounds),
        TEST_END,
    };
    return test_main("it_lanes", cases, setup, teardown);
}
