/* `hsmenroll bench` end to end on the embedded default: the synthetic batch goes through the real
 * pipeline once per worker count, and the JSON record and Markdown report hold what was
 * measured (every request issued, percentiles in order, a complete latency CDF, stage times). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support.h"

static char *tmp, *home;

static int setup(void)
{
    return test_engine_home("hsmenroll-bench", &tmp, &home);
}

static int teardown(void)
{
    test_engine_home_free(tmp, home);
    return 0;
}

static double num(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    return json_number_value(b ? json_object_get(v, b) : v);
}

/* What a bench must leave alone in the operator's home: the CA's issuance log (its lines) and the
 * tokens (label and object count each), as one string. */
static char *home_state(void)
{
    return test_sh_output(NULL,
                          "cat '%s/ca/issued.ndjson' 2>/dev/null | wc -l; "
                          "SOFTHSM2_CONF='%s/softhsm2.conf' softhsm2-util --show-slots | grep -c "
                          "'Label:'; ls '%s/tokens' | sort; for t in '%s'/tokens/*; do ls \"$t\" "
                          "| wc -l; done",
                          home, home, home, home);
}

static void test_bench_record_and_report(void)
{
    char *before = home_state();
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);
    CU_ASSERT_EQUAL_FATAL(test_sh("HSMENROLL_HOME='%s' '%s' bench -n 40 --workers 1,2 --sans 2 "
                                  "--out '%s/kept' --json '%s/bench.json' --markdown "
                                  "'%s/bench.md' --plot '%s/plots' >/dev/null 2>'%s/bench.log'",
                                  home, HSMENROLL_BIN, tmp, tmp, tmp, tmp, tmp),
                          0);
    char path[700];
    snprintf(path, sizeof path, "%s/bench.json", tmp);
    json_t *rec = json_load_file(path, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
    CU_ASSERT_EQUAL(num(json_object_get(rec, "Params"), "Count", NULL), 40);
    json_t *runs = json_object_get(rec, "Runs");
    CU_ASSERT_EQUAL_FATAL(json_array_size(runs), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *r = json_array_get(runs, i);
        CU_ASSERT_EQUAL(num(r, "Workers", NULL), (double)(i + 1));
        CU_ASSERT_EQUAL(num(r, "Issued", NULL), 40);
        CU_ASSERT_EQUAL(num(r, "Failed", NULL), 0);
        CU_ASSERT_TRUE(num(r, "CertificatesPerSecond", NULL) > 0);
        double p50 = num(r, "LatencyMs", "P50"), p95 = num(r, "LatencyMs", "P95"),
               p99 = num(r, "LatencyMs", "P99"), max = num(r, "LatencyMs", "Max");
        CU_ASSERT_TRUE(p50 > 0 && p50 <= p95 && p95 <= p99 && p99 <= max);
        /* The CDF rises to 1 over increasing latencies. */
        json_t *cdf = json_object_get(r, "LatencyCdf");
        size_t n = json_array_size(cdf);
        CU_ASSERT_TRUE(n > 0);
        double last_ms = -1, last_f = 0;
        for (size_t k = 0; k < n; k++) {
            double ms = json_number_value(json_array_get(json_array_get(cdf, k), 0));
            double f = json_number_value(json_array_get(json_array_get(cdf, k), 1));
            CU_ASSERT_TRUE(ms > last_ms && f > last_f);
            last_ms = ms;
            last_f = f;
        }
        CU_ASSERT_DOUBLE_EQUAL(last_f, 1.0, 1e-9);
        CU_ASSERT_TRUE(num(r, "StageMeanMs", "Keygen") > 0 && num(r, "StageMeanMs", "Csr") > 0);
        CU_ASSERT_TRUE(num(r, "StageMeanMs", "Journal") > 0); /* a journaled run */
        CU_ASSERT_TRUE(num(r, "FirstCertificateMs", NULL) > 0);
        CU_ASSERT_TRUE(num(r, "PeakRssMiB", NULL) > 1);
    }
    json_decref(rec);
    /* The report: a header and one row per worker count. */
    snprintf(path, sizeof path, "%s/bench.md", tmp);
    char *md = test_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL(md ? strstr(md, "| workers | cert/s | p50 ms |") : NULL);
    CU_ASSERT_EQUAL(test_count(md ? md : "", "\n| 1 |") + test_count(md ? md : "", "\n| 2 |"), 2);
    free(md);
    /* gnuplot drew the three plots (PNG signature), from data with one row per run. */
    CU_ASSERT_EQUAL(test_sh("cd '%s/plots' && for p in throughput latency-cdf stages; do "
                            "head -c 8 $p.png | od -An -tx1 | tr -d ' \\n' | grep -qx "
                            "89504e470d0a1a0a || exit 1; done && [ $(grep -vc '^#' runs.dat) -eq "
                            "2 ]",
                            tmp),
                    0);
    /* --out kept the batch (40 lines, 2 SANs each) and each run's verified certificates. */
    char *lines = test_sh_output(NULL, "wc -l < '%s/kept/batch.ndjson'", tmp);
    CU_ASSERT_EQUAL(lines ? atoi(lines) : -1, 40);
    free(lines);
    /* The certificates come from the throwaway CA, whose chain --out kept: none from the home's
     * CA, whose issuance log and tokens are as they were. */
    CU_ASSERT_EQUAL(test_sh("cd '%s/kept/out-w2' && [ $(ls *.pem | xargs openssl verify -CAfile "
                            "../ca-chain.pem | grep -c ': OK$') -eq 40 ]",
                            tmp),
                    0);
    snprintf(path, sizeof path, "%s/kept/out-w2", tmp);
    CU_ASSERT_EQUAL(test_verified_files(path, home), 0);
    char *after = home_state();
    CU_ASSERT_STRING_EQUAL(after ? after : "", before);
    free(before);
    free(after);
    /* Said on stderr, and gone afterwards. */
    char *where = test_sh_output(NULL,
                                 "grep -o 'throwaway CA and token in [^ ]*' '%s/bench.log' | "
                                 "cut -d' ' -f6",
                                 tmp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(where);
    where[strcspn(where, "\n")] = '\0';
    CU_ASSERT_TRUE(strncmp(where, "/dev/shm/hsmenroll-bench-ca-", 28) == 0);
    CU_ASSERT_EQUAL(test_sh("[ ! -e '%s' ]", where), 0);
    free(where);
    CU_ASSERT_EQUAL(test_sh("openssl x509 -in '%s/kept/out-w1/bench-0000007.pem' -noout -ext "
                            "subjectAltName | grep -q san1.bench-0000007.bench.example",
                            tmp),
                    0);
}

/* A reference point of the record's first run (name "Probe" or "Stock"): a positive rate, and
 * the ratio the run's rate over it. */
static void check_reference(json_t *rec, const char *name, const char *ratio_name)
{
    json_t *run = json_array_get(json_object_get(rec, "Runs"), 0);
    json_t *ref = json_object_get(run, name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    double rate = num(ref, "PerSecond", NULL), ratio = num(ref, ratio_name, NULL);
    CU_ASSERT_TRUE(rate > 0);
    CU_ASSERT_DOUBLE_EQUAL(ratio, num(run, "CertificatesPerSecond", NULL) / rate, 1e-6);
}

/* --probe: the raw PKCS#11 probe measured next to the run, on the same token and threads, and the
 * ratio. The PIN reaches the probe from the home's PIN file, through its environment. */
static void test_probe_reference(void)
{
    json_t *rec = test_sh_json(NULL,
                               "HSMENROLL_HOME='%s' '%s' bench -n 30 --workers 1 --probe -q "
                               "--json - 2>'%s/probe.log'",
                               home, HSMENROLL_BIN, tmp);
    check_reference(rec, "Probe", "EngineOverProbe");
    json_decref(rec);
}

/* --stock N: the stock-tool pipeline (pkcs11-tool, openssl req through libp11's engine, curl) run
 * against `hsmenroll serve` on the same (throwaway) CA, with as many loops as workers. The ratio
 * is the run's rate over the pipeline's; the home's CA issued nothing, and no scratch token is
 * left in its store. */
static void test_stock_reference(void)
{
    long before = test_ca_issued(home);
    json_t *rec = test_sh_json(NULL,
                               "HSMENROLL_HOME='%s' '%s' bench -n 20 --workers 2 --stock 6 -q "
                               "--json - 2>'%s/stock.log'",
                               home, HSMENROLL_BIN, tmp);
    check_reference(rec, "Stock", "EngineOverStock");
    json_decref(rec);
    CU_ASSERT_EQUAL(test_ca_issued(home), before);
    CU_ASSERT_EQUAL(test_sh("SOFTHSM2_CONF='%s/softhsm2.conf' softhsm2-util --show-slots | "
                            "grep -q 'Label: *stock-'",
                            home),
                    1);
}

/* --ceiling (with --floor): the batch again through p11fault answering key generation from a
 * pool made before the run. Every key of that run came from the pool (the wrapper's own counters,
 * in its log and in the record), none was generated during it, and its certificates verify. */
static void test_ceiling(void)
{
    json_t *rec = test_sh_json(NULL,
                               "HSMENROLL_HOME='%s' HSMENROLL_P11FAULT='%s' '%s' bench -n 30 "
                               "--workers 2 --floor --ceiling --out '%s/ceil' -q --json - "
                               "2>'%s/ceiling.log'",
                               home, HSMENROLL_P11FAULT, HSMENROLL_BIN, tmp, tmp);
    json_t *run = json_array_get(json_object_get(rec, "Runs"), 0);
    json_t *ceiling = json_object_get(run, "Ceiling");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ceiling);
    CU_ASSERT_EQUAL(num(run, "Issued", NULL), 30);
    CU_ASSERT_EQUAL(num(ceiling, "Issued", NULL), 30);
    CU_ASSERT_EQUAL(num(ceiling, "Failed", NULL), 0);
    CU_ASSERT_EQUAL(num(ceiling, "KeysFromPool", NULL), 30);
    CU_ASSERT_EQUAL(num(ceiling, "KeysNotFromPool", NULL), 0);
    CU_ASSERT_TRUE(num(ceiling, "KeysMadeBefore", NULL) >= 30);
    CU_ASSERT_TRUE(num(ceiling, "PerSecond", NULL) > 0 && num(ceiling, "PerCore", NULL) > 0);
    CU_ASSERT_TRUE(num(ceiling, "CpuMsPerCertificate", NULL) > 0);
    CU_ASSERT_DOUBLE_EQUAL(num(ceiling, "PerCpuSecond", NULL),
                           1000 / num(ceiling, "CpuMsPerCertificate", NULL), 1e-6);
    /* --floor next to it: the ratio in wall time and in CPU time (the probe's CPU per request
     * over the run's CPU per certificate). */
    json_t *floor_ref = json_object_get(run, "Floor");
    CU_ASSERT_TRUE(num(floor_ref, "PerSecond", NULL) > 0 &&
                   num(floor_ref, "CpuMsPerRequest", NULL) > 0);
    CU_ASSERT_DOUBLE_EQUAL(
        num(floor_ref, "EngineOverFloorCpu", NULL),
        num(floor_ref, "CpuMsPerRequest", NULL) / num(run, "CpuMsPerCertificate", NULL), 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(
        num(ceiling, "EngineOverCeiling", NULL),
        num(run, "CertificatesPerSecond", NULL) / num(ceiling, "PerSecond", NULL), 1e-6);
    json_decref(rec);
    /* The wrapper's log: the pool served every key generation of the run. */
    CU_ASSERT_EQUAL(test_sh("grep -qx 'C_GenerateKeyPair keypool-served 30' '%s/ceil/"
                            "p11fault-ceiling-w2.log' && grep -qx 'C_GenerateKeyPair "
                            "keypool-missed 0' '%s/ceil/p11fault-ceiling-w2.log'",
                            tmp, tmp),
                    0);
    /* Issued by the throwaway CA, whose chain --out keeps. */
    CU_ASSERT_EQUAL(test_sh("cd '%s/ceil/out-ceiling-w2' && [ $(ls *.pem | xargs openssl verify "
                            "-CAfile ../ca-chain.pem | grep -c ': OK$') -eq 30 ]",
                            tmp),
                    0);
    /* The pool holds export P-256 keys: other requests are refused before anything runs. */
    CU_ASSERT_EQUAL(test_sh("HSMENROLL_HOME='%s' '%s' bench -n 5 --ceiling --key-length 384 "
                            "2>/dev/null",
                            home, HSMENROLL_BIN),
                    2);
}

/* --ca NAME measures a configured CA: its certificates are real, listed in a results file
 * (mode 0600) that `hsmenroll revoke` takes, as the summary says; after that revoke, each of them
 * is in the CA's CRL (read by openssl crl). A list file that exists is refused before anything is
 * issued. */
static void test_real_ca_listed_for_revoke(void)
{
    long before = test_ca_issued(home);
    CU_ASSERT_EQUAL_FATAL(test_sh("mkdir -p '%s/real' && cd '%s/real' && HSMENROLL_HOME='%s' '%s' "
                                  "bench -n 12 --workers 1,2 --ca embedded -q >/dev/null "
                                  "2>'%s/real.log'",
                                  tmp, tmp, home, HSMENROLL_BIN, tmp),
                          0);
    CU_ASSERT_EQUAL(test_ca_issued(home), before + 24);
    char *file = test_sh_output(NULL, "cd '%s/real' && ls hsmenroll-bench-issued-*.ndjson", tmp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(file);
    file[strcspn(file, "\n")] = '\0';
    CU_ASSERT_EQUAL(test_sh("cd '%s/real' && [ $(jq -r .Status '%s' | grep -cx issued) -eq 24 ] "
                            "&& [ $(stat -c %%a '%s') = 600 ]",
                            tmp, file, file),
                    0);
    /* The command the summary gives, run as given. */
    char *cmd = test_sh_output(NULL, "sed -n 's/.*revoke them with: //p' '%s/real.log'", tmp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
    cmd[strcspn(cmd, "\n")] = '\0';
    CU_ASSERT_PTR_NOT_NULL(strstr(cmd, file));
    CU_ASSERT_EQUAL(test_sh("cd '%s/real' && PATH=\"$(dirname '%s')\":\"$PATH\" "
                            "HSMENROLL_HOME='%s' %s -q",
                            tmp, HSMENROLL_BIN, home, cmd),
                    0);
    CU_ASSERT_EQUAL(test_sh("HSMENROLL_HOME='%s' '%s' ca crl -o '%s/real/bench.crl' -q", home,
                            HSMENROLL_BIN, tmp),
                    0);
    CU_ASSERT_EQUAL(
        test_sh("cd '%s/real' && openssl crl -in bench.crl -noout -text > crl.txt && "
                "n=0; for s in $(jq -r .CertificateInformation.SerialNumber '%s'); do "
                "grep -qi \"Serial Number: *$s$\" crl.txt && n=$((n+1)); done; "
                "[ $n -eq 24 ] && [ $(grep -c 'Cessation Of Operation' crl.txt) -eq 24 ]",
                tmp, file),
        0);
    /* A list that exists is never written over: refused, nothing issued. */
    CU_ASSERT_EQUAL(test_sh("cd '%s/real' && HSMENROLL_HOME='%s' '%s' bench -n 3 --workers 1 "
                            "--ca embedded --issued '%s' -q 2>/dev/null >/dev/null",
                            tmp, home, HSMENROLL_BIN, file),
                    2);
    CU_ASSERT_EQUAL(test_ca_issued(home), before + 24);
    free(cmd);
    free(file);
}

/* --kdf: the two derivations by the engine, by OpenSSL and the block function's bound, each
 * figure a CPU time; nothing of the home touched (no HSM, no CA). The derivations' results are
 * checked against OpenSSL's in test_bundle; here, that the mode measures what it names: the
 * bound is the block function alone, so no derivation can be much faster than it. */
static void test_kdf(void)
{
    char *before = home_state();
    json_t *rec = test_sh_json(NULL, "HSMENROLL_HOME='%s' '%s' bench --kdf -n 20 --json - -q",
                               home, HSMENROLL_BIN);
    CU_ASSERT_FATAL(rec != NULL);
    json_t *kdf = json_object_get(rec, "Kdf");
    CU_ASSERT_EQUAL(num(kdf, "Iterations", NULL), 2048);
    CU_ASSERT_EQUAL(num(kdf, "Count", NULL), 20);
    const char *names[] = {"Pbkdf2HmacSha256", "Pkcs12MacKeySha256"};
    for (int k = 0; k < 2; k++) {
        json_t *d = json_object_get(kdf, names[k]);
        double engine = num(d, "EngineMs", NULL), bound = num(d, "BoundMs", NULL);
        CU_ASSERT(engine > 0 && num(d, "OpenSslMs", NULL) > 0 && bound > 0);
        CU_ASSERT(engine > 0.5 * bound);
        CU_ASSERT_DOUBLE_EQUAL(num(d, "BoundOverEngine", NULL), bound / engine, 1e-9);
    }
    json_decref(rec);
    char *after = home_state();
    CU_ASSERT_STRING_EQUAL(after, before);
    free(before);
    free(after);
}

static void test_bad_options(void)
{
    /* A configuration named without --ca, and --issued without --ca. */
    CU_ASSERT_EQUAL(test_sh("'%s' bench --home '%s' -n 3 2>/dev/null", HSMENROLL_BIN, home), 2);
    CU_ASSERT_EQUAL(
        test_sh("HSMENROLL_HOME='%s' '%s' bench --issued x -n 3 2>/dev/null", home, HSMENROLL_BIN),
        2);
    CU_ASSERT_EQUAL(test_sh("HSMENROLL_HOME='%s' '%s' bench -n 0 2>/dev/null", home, HSMENROLL_BIN),
                    2);
    CU_ASSERT_EQUAL(
        test_sh("HSMENROLL_HOME='%s' '%s' bench --workers x 2>/dev/null", home, HSMENROLL_BIN), 2);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_bench_record_and_report),
        TEST_CASE(test_probe_reference),
        TEST_CASE(test_stock_reference),
        TEST_CASE(test_ceiling),
        TEST_CASE(test_real_ca_listed_for_revoke),
        TEST_CASE(test_kdf),
        TEST_CASE(test_bad_options),
        TEST_END,
    };
    return test_main("bench", cases, setup, teardown);
}
