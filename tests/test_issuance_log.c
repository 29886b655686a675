/* The embedded CA's issuance log (ca/issuance_log.c): appends from threads of three processes
 * sharing one log (KeyfactorIDs unique and dense, every line whole), the count, the lookups by
 * KeyfactorID and by (run, request), and a torn last line. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ca/issuance_log.h"
#include "support.h"

#define PROCESSES  3 /* the test's own and two children */
#define THREADS    4
#define PER_THREAD 25
#define TOTAL      (PROCESSES * THREADS * PER_THREAD)

static EVP_PKEY *key;

/* A certificate whose serial number tells it apart. */
static X509 *make_cert(long serial)
{
    X509 *cert = X509_new();
    X509_NAME *name = X509_NAME_new();
    char cn[32];
    snprintf(cn, sizeof cn, "t-%ld", serial);
    int ok = cert != NULL && name != NULL && X509_set_version(cert, X509_VERSION_3) &&
             ASN1_INTEGER_set(X509_get_serialNumber(cert), serial) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (unsigned char *)cn, -1, -1, 0) &&
             X509_set_subject_name(cert, name) && X509_set_issuer_name(cert, name) &&
             X509_gmtime_adj(X509_getm_notBefore(cert), 0) &&
             X509_gmtime_adj(X509_getm_notAfter(cert), 86400) && X509_set_pubkey(cert, key) &&
             X509_sign(cert, key, EVP_sha256()) > 0;
    X509_NAME_free(name);
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static long serial_of(const X509 *cert)
{
    return cert ? ASN1_INTEGER_get(X509_get0_serialNumber(cert)) : -1;
}

/* The serial of process p's thread t's i-th issuance, and its request Id. */
static long serial_for(int p, int t, int i)
{
    return 100000L * (p + 1) + 1000L * t + i;
}

static void request_for(int t, int i, char *out, size_t size)
{
    snprintf(out, size, "req-%d-%d", t, i);
}

typedef struct worker_arg {
    issuance_log *log;
    int process, thread;
    int failures;
} worker_arg;

static void *append_many(void *p)
{
    worker_arg *a = p;
    char run[32], request[32];
    snprintf(run, sizeof run, "run-%d", a->process);
    for (int i = 0; i < PER_THREAD; i++) {
        X509 *cert = make_cert(serial_for(a->process, a->thread, i));
        request_for(a->thread, i, request, sizeof request);
        long long id = 0;
        enroll_error err;
        enroll_error_clear(&err);
        if (cert == NULL ||
            issuance_log_append(a->log, cert, run, request, NULL, NULL, &id, &err) != 0 || id < 1 ||
            id > TOTAL)
            a->failures++;
        X509_free(cert);
    }
    return NULL;
}

/* One process's share: THREADS threads appending to one handle on home's log. Returns the
 * number of failed appends (or -1 when the log cannot be opened). */
static int append_from_threads(const char *home, int process)
{
    enroll_error err;
    issuance_log *log = issuance_log_open(home, true, &err);
    if (log == NULL)
        return -1;
    pthread_t threads[THREADS];
    worker_arg args[THREADS];
    for (int t = 0; t < THREADS; t++) {
        args[t] = (worker_arg){log, process, t, 0};
        pthread_create(&threads[t], NULL, append_many, &args[t]);
    }
    int failures = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        failures += args[t].failures;
    }
    issuance_log_close(log);
    return failures;
}

static char *log_path(const char *home)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", home, ISSUANCE_LOG_FILE) < 0)
        return NULL;
    return p;
}

static void test_concurrent_append(void)
{
    char *home = test_tmpdir("issuance-log");
    CU_ASSERT_PTR_NOT_NULL_FATAL(home);
    /* Two children and this process start together at a gate (a pipe closed by this one). */
    int gate[2];
    CU_ASSERT_EQUAL_FATAL(pipe(gate), 0);
    pid_t children[PROCESSES - 1];
    for (int p = 1; p < PROCESSES; p++) {
        pid_t pid = fork();
        CU_ASSERT_TRUE_FATAL(pid >= 0);
        if (pid == 0) {
            close(gate[1]);
            char c;
            while (read(gate[0], &c, 1) > 0)
                ;
            _exit(append_from_threads(home, p) == 0 ? 0 : 1);
        }
        children[p - 1] = pid;
    }
    close(gate[0]);
    close(gate[1]);
    CU_ASSERT_EQUAL(append_from_threads(home, 0), 0);
    for (int p = 1; p < PROCESSES; p++) {
        int status = -1;
        CU_ASSERT_EQUAL(waitpid(children[p - 1], &status, 0), children[p - 1]);
        CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    /* Every line whole, KeyfactorIDs exactly 1..TOTAL, each line's serial the one its request
     * was made with. */
    char *path = log_path(home);
    size_t len = 0;
    char *text = test_read_file(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_TRUE(len > 0 && text[len - 1] == '\n');
    CU_ASSERT_EQUAL(test_count(text, "\n"), TOTAL);
    free(text);
    json_t *lines = test_load_ndjson(path);
    CU_ASSERT_EQUAL_FATAL(json_array_size(lines), TOTAL);
    static long serial_of_id[TOTAL + 1];
    static char run_of_id[TOTAL + 1][32], request_of_id[TOTAL + 1][32];
    memset(serial_of_id, 0, sizeof serial_of_id);
    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        json_int_t id = json_integer_value(json_object_get(line, "KeyfactorID"));
        CU_ASSERT_TRUE_FATAL(id >= 1 && id <= TOTAL);
        CU_ASSERT_EQUAL(serial_of_id[id], 0); /* unique */
        const char *run = json_string_value(json_object_get(line, "RunId"));
        const char *request = json_string_value(json_object_get(line, "RequestId"));
        const char *serial = json_string_value(json_object_get(line, "Serial"));
        const char *fp = json_string_value(json_object_get(line, "PublicKeySha256"));
        CU_ASSERT_TRUE_FATAL(run && request && serial && fp);
        CU_ASSERT_EQUAL(strlen(fp), 64);
        CU_ASSERT_PTR_NOT_NULL(json_object_get(line, "Certificate"));
        int p, t, k;
        CU_ASSERT_EQUAL_FATAL(sscanf(run, "run-%d", &p), 1);
        CU_ASSERT_EQUAL_FATAL(sscanf(request, "req-%d-%d", &t, &k), 2);
        serial_of_id[id] = serial_for(p, t, k);
        CU_ASSERT_EQUAL(strtol(serial, NULL, 16), serial_of_id[id]);
        snprintf(run_of_id[id], sizeof run_of_id[id], "%s", run);
        snprintf(request_of_id[id], sizeof request_of_id[id], "%s", request);
    }
    json_decref(lines);

    /* Counted again on open (from the last line), read-only and appending. */
    enroll_error err;
    issuance_log *log = issuance_log_open(home, false, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_EQUAL(issuance_log_count(log), TOTAL);
    for (long long id = 1; id <= TOTAL; id += 29) {
        X509 *cert = issuance_log_find_id(log, id);
        CU_ASSERT_EQUAL(serial_of(cert), serial_of_id[id]);
        X509_free(cert);
    }
    CU_ASSERT_PTR_NULL(issuance_log_find_id(log, TOTAL + 1));
    issuance_log_close(log);

    log = issuance_log_open(home, true, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_EQUAL(issuance_log_count(log), TOTAL);
    /* By (run, request): a resumed run finds its earlier issuances, with their KeyfactorIDs. */
    for (long long id = 1; id <= TOTAL; id += 17) {
        long long found_id = 0;
        X509 *cert =
            issuance_log_find_request(log, run_of_id[id], request_of_id[id], true, &found_id);
        CU_ASSERT_EQUAL(serial_of(cert), serial_of_id[id]);
        CU_ASSERT_EQUAL(found_id, id);
        X509_free(cert);
    }
    long long none = 0;
    CU_ASSERT_PTR_NULL(issuance_log_find_request(log, "run-0", "req-9-9", true, &none));
    /* A new run (not resumed) has issued nothing before, whatever the log holds. */
    CU_ASSERT_PTR_NULL(issuance_log_find_request(log, "run-1", "req-0-0", false, &none));
    issuance_log_close(log);
    free(path);
    test_rmtree(home);
    free(home);
}

static void test_torn_last_line(void)
{
    char *home = test_tmpdir("issuance-log");
    CU_ASSERT_PTR_NOT_NULL_FATAL(home);
    char *path = log_path(home);
    enroll_error err;
    issuance_log *log = issuance_log_open(home, true, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_EQUAL(issuance_log_count(log), 0);
    for (int i = 0; i < 3; i++) {
        X509 *cert = make_cert(10 + i);
        char request[32];
        request_for(0, i, request, sizeof request);
        long long id = 0;
        /* The third without a run: logged without its certificate. */
        CU_ASSERT_EQUAL(
            issuance_log_append(log, cert, i < 2 ? "r" : NULL, request, NULL, NULL, &id, &err), 0);
        CU_ASSERT_EQUAL(id, i + 1);
        X509_free(cert);
    }
    issuance_log_close(log);

    /* A write cut short: the fourth line without its end. */
    FILE *f = fopen(path, "a");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("{\"KeyfactorID\":4,\"RunId\":\"r\",\"Requ", f);
    fclose(f);

    /* The torn line counts (its KeyfactorID may have been handed out), the whole ones are
     * found. */
    log = issuance_log_open(home, false, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_EQUAL(issuance_log_count(log), 4);
    issuance_log_close(log);
    log = issuance_log_open(home, true, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_EQUAL(issuance_log_count(log), 4);
    X509 *cert = issuance_log_find_id(log, 2);
    CU_ASSERT_EQUAL(serial_of(cert), 11);
    X509_free(cert);
    CU_ASSERT_PTR_NULL(issuance_log_find_id(log, 3)); /* logged without the certificate */
    CU_ASSERT_PTR_NULL(issuance_log_find_id(log, 4));
    long long id = 0;
    cert = issuance_log_find_request(log, "r", "req-0-1", true, &id);
    CU_ASSERT_EQUAL(serial_of(cert), 11);
    CU_ASSERT_EQUAL(id, 2);
    X509_free(cert);

    /* The next append ends the torn line first and takes the next KeyfactorID. */
    cert = make_cert(20);
    CU_ASSERT_EQUAL(issuance_log_append(log, cert, "r", "req-1-0", NULL, NULL, &id, &err), 0);
    CU_ASSERT_EQUAL(id, 5);
    X509_free(cert);
    issuance_log_close(log);
    size_t len = 0;
    char *text = test_read_file(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(test_count(text, "\n"), 5);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"Requ\n{\"KeyfactorID\":5,"));
    free(text);

    /* Reopened, the count continues from the last whole line. */
    log = issuance_log_open(home, true, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_EQUAL(issuance_log_count(log), 5);
    cert = issuance_log_find_id(log, 5);
    CU_ASSERT_EQUAL(serial_of(cert), 20);
    X509_free(cert);
    issuance_log_close(log);
    free(path);
    test_rmtree(home);
    free(home);
}

static void test_missing_log(void)
{
    char *home = test_tmpdir("issuance-log");
    CU_ASSERT_PTR_NOT_NULL_FATAL(home);
    enroll_error err;
    enroll_error_clear(&err);
    errno = 0;
    CU_ASSERT_PTR_NULL(issuance_log_open(home, false, &err));
    CU_ASSERT_EQUAL(errno, ENOENT);
    CU_ASSERT_EQUAL(err.code_id, HSE_CA_UNAVAILABLE);
    test_rmtree(home);
    free(home);
}

static int setup(void)
{
    key = EVP_EC_gen("P-256");
    return key == NULL;
}

static int teardown(void)
{
    EVP_PKEY_free(key);
    return 0;
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_concurrent_append),
        TEST_CASE(test_torn_last_line),
        TEST_CASE(test_missing_log),
        TEST_END,
    };
    return test_main("issuance_log", cases, setup, teardown);
}
