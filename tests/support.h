/* Shared helpers of the CUnit test programs: running a suite, temporary directories (on tmpfs
 * when there is one), running commands and reading what they wrote. */
#ifndef HSMENROLL_TESTS_SUPPORT_H
#define HSMENROLL_TESTS_SUPPORT_H

#include <CUnit/CUnit.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;
#define TEST_CASE(fn)                                                                              \
    {                                                                                              \
#fn, fn                                                                                    \
    }
#define TEST_END                                                                                   \
    {                                                                                              \
        NULL, NULL                                                                                 \
    }

/* Registers the cases as one suite, runs them verbosely, returns the process exit code
 * (0 when every assertion held). setup/teardown may be NULL (CUnit suite init/cleanup). */
int test_main(const char *suite, const test_case *cases, int (*setup)(void), int (*teardown)(void));

/* True in a sanitizer build. Then child engines are told to unwind fast on malloc (ctest's slow
 * unwinding makes each engine run many times slower); their leak checks stay on, but lsan.supp's
 * SoftHSM EdDSA suppression needs slow unwinding, so such tests make no EdDSA keys there. */
bool test_sanitized(void);
void test_children_unwind_fast(void);

/* How many of DIR's certificates (*.pem bundles, and *.der converted) `openssl verify` accepts
 * against the embedded CA of engine home HOME (root + issuing CA). -1 when it cannot run. */
int test_verified_files(const char *dir, const char *home);

/* An engine home with its embedded default made (`ca init`) in a new temporary directory: *tmp
 * (the directory) and *home (TMP/home), malloc'd. Child engines unwind fast under ASan. 0 on
 * success. test_engine_home_free removes it all. */
int test_engine_home(const char *prefix, char **tmp, char **home);
void test_engine_home_free(char *tmp, char *home);

/* A batch of n ECC request lines at path, Ids PREFIX-001 ... and subjects
 * CN=PREFIX-001.DOMAIN.example: every third a token key in DER, the others exported keys in PEM
 * (with a generated password). */
void test_write_mixed_batch(const char *path, int n, const char *prefix, const char *domain);

/* The number of certificates the embedded CA of engine home HOME has issued (`ca show`), or -1. */
long test_ca_issued(const char *home);

/* A new empty directory under /dev/shm (or $TMPDIR, /tmp), removed with its content by
 * test_rmtree. Returns a malloc'd path. */
char *test_tmpdir(const char *prefix);
void test_rmtree(const char *path);

/* Runs a shell command (printf-style); returns its exit status (0-255), or -1 if it did not run
 * or was killed. The command's output goes to this process's stderr unless redirected. */
int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Runs a shell command and returns its standard output (malloc'd, NUL-terminated); *status gets
 * the exit status when status is not NULL. */
char *test_sh_output(int *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same, with the standard output parsed as one JSON document (NULL when it is not one). */
json_t *test_sh_json(int *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The whole content of a file (malloc'd, NUL-terminated), NULL if unreadable. */
char *test_read_file(const char *path, size_t *len);
int test_write_file(const char *path, const char *content);
/* Number of occurrences of needle in haystack. */
int test_count(const char *haystack, const char *needle);

/* Reads an NDJSON file into a JSON array of its lines (json_decref it); NULL if unreadable or a
 * line is not JSON. */
json_t *test_load_ndjson(const char *path);
/* The element of an array of objects whose member `key` is the string `value`, or NULL. */
json_t *test_find_by(json_t *array, const char *key, const char *value);

/* The lines of OUT/results.ndjson with this Status (NULL: any), this Error.Code (NULL: any) and
 * text (NULL: any) in their EarlierSubmission.Note or Error.Message; -1 when it cannot be read. */
int test_count_results(const char *out, const char *status, const char *code, const char *text);

/* ---- `serve` and dropproxy on loopback, for the network-CA tests -------------------------- */

/* A free TCP port on 127.0.0.1, or -1. */
int test_free_port(void);
/* Runs cmd with /bin/sh -c in a child process; its pid. */
pid_t test_spawn(const char *cmd);
/* Waits (up to 30 s) until something accepts connections on 127.0.0.1:port (an HTTP server, or
 * a proxy that closes them); false if nothing does. */
bool test_wait_listening(int port);
/* SIGTERM to a child of test_spawn, then waits for it (pid <= 0: nothing). */
void test_stop(pid_t pid);
/* The credentials file TMP/users.json (0600) of `serve`: user "eng", password "pw", which
 * KF_PASSWORD is set to for the engine's Auth.PasswordEnv. Its path in users. 0 on success. */
int test_serve_users(const char *tmp, char *users, size_t size);
/* `hsmenroll serve` of engine home HOME on 127.0.0.1:port with the credentials file and options
 * (e.g. "--config FILE"; may be ""), its log appended to TMP/serve.log; its pid once it answers,
 * or -1. */
pid_t test_start_serve(const char *home, const char *users, const char *tmp, int port,
                       const char *options);
/* `hsmenroll serve` with options (e.g. "--config FILE --credentials FILE"; env: words put before
 * it, such as "SOFTHSM2_CONF=..."; may be "") on 127.0.0.1 at a port of its choosing, announced
 * in TMP/ready, its stderr appended to TMP/serve.log. Its pid once the ready file names its URL
 * (copied into url), or -1 when it stops first or is not ready within 60 s (the first start makes
 * the embedded CA). */
pid_t test_start_serve_ready(const char *tmp, const char *env, const char *options, char *url,
                             size_t url_size);
/* dropproxy on 127.0.0.1:port in front of 127.0.0.1:upstream, with options (e.g. "--match POST
 * --drop-first 6"); its log TMP/drop.log, its stderr TMP/drop.err. Its pid once it accepts
 * connections, or -1. */
pid_t test_start_dropproxy(const char *tmp, int port, int upstream, const char *options);
/* An engine configuration (path) for home HOME with the key token "hsmenroll-keys", template
 * "Default" and one keyfactor CA "kf" at http://127.0.0.1:port/KeyfactorAPI (serve's "embedded"
 * CA, user "eng", KF_PASSWORD), Retries and RetryDelayMs as given, and extra (more members of
 * the CA entry, each with a leading comma; may be ""). 0 on success. */
int test_write_kf_config(const char *path, const char *home, int port, int retries,
                         long retry_delay_ms, const char *extra);

#endif
