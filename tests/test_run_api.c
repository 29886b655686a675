/* The run API (engine/run.h) driven in process, as `bench` and `serve` drive it: a batch on the
 * embedded default run through run_open / run_execute / run_finish, its summary and figures, its
 * results and files; a refused start (an OUTDIR with results) writes nothing; a stopped run. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/log.h"
#include "engine/run.h"
#include "tests/support.h"

static char *tmp, *home;

static int setup(void)
{
    return test_engine_home("runapi", &tmp, &home);
}

static int teardown(void)
{
    test_engine_home_free(tmp, home);
    return 0;
}

static char *write_batch(const char *name, int lines, const char *prefix)
{
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/%s", tmp, name);
    FILE *f = fopen(path, "w");
    for (int i = 0; f != NULL && i < lines; i++)
        fprintf(f,
                "{\"Id\":\"%s-%d\",\"Template\":\"Default\",\"Subject\":\"CN=%s-%d.example\","
                "\"KeyType\":\"ECC\",\"Format\":\"%s\"}\n",
                prefix, i, prefix, i, i % 2 ? "PEM" : "DER");
    if (f != NULL)
        fprintf(f, "{\"Id\":\"%s-bad\",\"Template\":\"Nope\",\"Subject\":\"CN=x\"}\n", prefix);
    if (f != NULL)
        fclose(f);
    return path;
}

static void test_batch_through_the_api(void)
{
    char *batch = write_batch("batch.ndjson", 6, "api");
    char out[4096];
    snprintf(out, sizeof out, "%s/out", tmp);
    run_options opt = {.batch_path = batch,
                       .home = home,
                       .out_dir = out,
                       .workers = 2,
                       .default_pattern = -1,
                       .progress = PROGRESS_NEVER};
    run *r = NULL;
    enroll_error err;
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL_FATAL(run_open(&r, &opt, &err), 0);
    CU_ASSERT_EQUAL(run_execute(r, &err), 0);
    CU_ASSERT_EQUAL(run_finish(r), EXIT_SOME_FAILED);
    run_summary sum;
    run_get_summary(r, &sum);
    CU_ASSERT_EQUAL(sum.issued, 6);
    CU_ASSERT_EQUAL(sum.failed, 1);
    CU_ASSERT_EQUAL(sum.exit_code, EXIT_SOME_FAILED);
    json_t *stats = run_stats_json(r);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "Issued")), 6);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(stats, "Requests")), 7);
    CU_ASSERT_PTR_NOT_NULL(json_object_get(json_object_get(stats, "StageMeanMs"), "Keygen"));
    json_decref(stats);
    run_close(r);

    char path[4200];
    snprintf(path, sizeof path, "%s/results.ndjson", out);
    json_t *results = test_load_ndjson(path);
    CU_ASSERT_EQUAL(json_array_size(results), 7);
    json_t *bad = test_find_by(results, "Id", "api-bad");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(bad, "Status")), "failed");
    CU_ASSERT_STRING_EQUAL(
        json_string_value(json_object_get(json_object_get(bad, "Error"), "Code")),
        "UNKNOWN_TEMPLATE");
    json_decref(results);
    CU_ASSERT_EQUAL(test_verified_files(out, home), 6);
    free(batch);
}

/* The value of one sample line ("name{labels} value") in a scrape, or -1 when absent. */
static double sample(const char *text, const char *series)
{
    for (const char *at = text; at != NULL && (at = strstr(at, series)) != NULL; at++)
        if ((at == text || at[-1] == '\n') && at[strlen(series)] == ' ')
            return strtod(at + strlen(series) + 1, NULL);
    return -1;
}

static char *scrape(unsigned port)
{
    return test_sh_output(NULL, "curl -sf http://127.0.0.1:%u/metrics", port);
}

typedef struct scraper {
    unsigned port;
    atomic_bool stop;
    int scrapes, regressions; /* issued counts read, and reads below the previous one */
} scraper;

static void *scrape_loop(void *arg)
{
    scraper *s = arg;
    double last = 0;
    while (!atomic_load(&s->stop)) {
        char *text = scrape(s->port);
        double issued = text ? sample(text, "hsmenroll_requests_total{status=\"issued\"}") : -1;
        free(text);
        if (issued >= 0) {
            s->scrapes++;
            s->regressions += issued < last;
            last = issued;
        }
        usleep(20000);
    }
    return NULL;
}

/* --metrics-listen through the API: scraped with curl while the run goes (the issued counter
 * never goes down), then after it: the final counts equal the results, the failed line's code
 * is counted, every stage histogram counts every request, a wrong path is 404. */
static void test_metrics_endpoint(void)
{
    char *batch = write_batch("metrics.ndjson", 40, "met");
    char out[4096];
    snprintf(out, sizeof out, "%s/out-metrics", tmp);
    run_options opt = {.batch_path = batch,
                       .home = home,
                       .out_dir = out,
                       .workers = 2,
                       .default_pattern = -1,
                       .progress = PROGRESS_NEVER,
                       .metrics_listen = "127.0.0.1:0"};
    run *r = NULL;
    enroll_error err;
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL_FATAL(run_open(&r, &opt, &err), 0);
    unsigned port = run_metrics_port(r);
    CU_ASSERT_TRUE_FATAL(port > 0);
    scraper s = {.port = port};
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, scrape_loop, &s), 0);
    CU_ASSERT_EQUAL(run_execute(r, &err), 0);
    atomic_store(&s.stop, true);
    pthread_join(t, NULL);
    CU_ASSERT_TRUE(s.scrapes >= 1);
    CU_ASSERT_EQUAL(s.regressions, 0);
    CU_ASSERT_EQUAL(run_finish(r), EXIT_SOME_FAILED);
    char *text = scrape(port);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(sample(text, "hsmenroll_requests_total{status=\"issued\"}"), 40);
    CU_ASSERT_EQUAL(sample(text, "hsmenroll_requests_total{status=\"failed\"}"), 1);
    CU_ASSERT_EQUAL(sample(text, "hsmenroll_request_errors_total{code=\"UNKNOWN_TEMPLATE\"}"), 1);
    CU_ASSERT_EQUAL(sample(text, "hsmenroll_stage_seconds_count{stage=\"Keygen\"}"), 40);
    CU_ASSERT_EQUAL(sample(text, "hsmenroll_stage_seconds_bucket{stage=\"Bundle\",le=\"+Inf\"}"),
                    40);
    CU_ASSERT_EQUAL(sample(text, "hsmenroll_hsm_in_flight"), 0);
    CU_ASSERT_EQUAL(sample(text, "hsmenroll_ca_in_flight{ca=\"embedded\"}"), 0);
    CU_ASSERT_TRUE(sample(text, "hsmenroll_hsm_lanes") >= 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "# TYPE hsmenroll_stage_seconds histogram\n"));
    free(text);
    CU_ASSERT_EQUAL(test_sh("curl -sf http://127.0.0.1:%u/nothing >/dev/null", port), 22);
    run_close(r);
    free(batch);
}

static void test_refused_start_writes_nothing(void)
{
    char *batch = write_batch("again.ndjson", 2, "again");
    char out[4096];
    snprintf(out, sizeof out, "%s/out", tmp); /* holds the first test's results */
    struct stat before, after;
    char path[4200];
    snprintf(path, sizeof path, "%s/results.ndjson", out);
    CU_ASSERT_EQUAL_FATAL(stat(path, &before), 0);
    run_options opt = {.batch_path = batch,
                       .home = home,
                       .out_dir = out,
                       .default_pattern = -1,
                       .progress = PROGRESS_NEVER};
    run *r = NULL;
    enroll_error err;
    enroll_error_clear(&err);
    log_set_level(LOG_ERROR);
    CU_ASSERT_EQUAL(run_open(&r, &opt, &err), -1);
    CU_ASSERT_STRING_EQUAL(err.code, "OUTPUT_DIR");
    run_close(r);
    CU_ASSERT_EQUAL_FATAL(stat(path, &after), 0);
    CU_ASSERT_EQUAL(before.st_size, after.st_size);
    CU_ASSERT_EQUAL(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
    snprintf(path, sizeof path, "%s/again-0.der", out);
    CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0);

    /* Options that contradict each other are refused by the API too. */
    opt.resume = true;
    opt.force = true;
    CU_ASSERT_EQUAL(run_open(&r, &opt, &err), -1);
    run_close(r);
    free(batch);
}

static void test_stopped_run_is_resumable(void)
{
    char *batch = write_batch("stop.ndjson", 8, "stop");
    char out[4096];
    snprintf(out, sizeof out, "%s/out-stop", tmp);
    run_options opt = {.batch_path = batch,
                       .home = home,
                       .out_dir = out,
                       .workers = 1,
                       .default_pattern = -1,
                       .progress = PROGRESS_NEVER};
    run *r = NULL;
    enroll_error err;
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL_FATAL(run_open(&r, &opt, &err), 0);
    CU_ASSERT_FALSE(run_stop(r)); /* before any line is read: nothing is taken */
    CU_ASSERT_TRUE(run_stop(r));  /* the second stop says a stop was asked already */
    CU_ASSERT_EQUAL(run_execute(r, &err), 0);
    CU_ASSERT_EQUAL(run_finish(r), EXIT_STOPPED);
    run_close(r);

    opt.resume = true;
    CU_ASSERT_EQUAL_FATAL(run_open(&r, &opt, &err), 0);
    CU_ASSERT_EQUAL(run_execute(r, &err), 0);
    CU_ASSERT_EQUAL(run_finish(r), EXIT_SOME_FAILED); /* the bad line */
    run_summary sum;
    run_get_summary(r, &sum);
    CU_ASSERT_EQUAL(sum.issued, 8);
    run_close(r);
    CU_ASSERT_EQUAL(test_verified_files(out, home), 8);
    free(batch);
}

int main(void)
{
    static const test_case cases[] = {
        TEST_CASE(test_batch_through_the_api),
        TEST_CASE(test_metrics_endpoint),
        TEST_CASE(test_refused_start_writes_nothing),
        TEST_CASE(test_stopped_run_is_resumable),
        TEST_END,
    };
    return test_main("run API", cases, setup, teardown);
}
