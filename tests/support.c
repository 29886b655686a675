/* Test helpers: CUnit suite runner, temporary directories, shell commands, file reading. */
#include "support.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <signal.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int test_main(const char *suite, const test_case *cases, int (*setup)(void), int (*teardown)(void))
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite(suite, setup, teardown);
    if (s == NULL)
        return 2;
    /* HSMENROLL_TEST_ONLY=text runs only the cases whose name contains it (while developing). */
    const char *only = getenv("HSMENROLL_TEST_ONLY");
    for (const test_case *c = cases; c->name != NULL; c++)
        if ((only == NULL || strstr(c->name, only) != NULL) &&
            CU_add_test(s, c->name, c->fn) == NULL)
            return 2;
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned suites_failed = CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return (failed || suites_failed) ? 1 : 0;
}

int test_verified_files(const char *dir, const char *home)
{
    char *count = test_sh_output(NULL,
                                 "cd '%s' && for f in *.der; do [ -e \"$f\" ] || continue; "
                                 "openssl x509 -inform DER -in \"$f\" -out \"$f.crt\" || exit 1; "
                                 "done; ls *.pem *.crt 2>/dev/null | xargs -r openssl verify "
                                 "-CAfile '%s/ca/root.pem' -untrusted '%s/ca/issuing.pem' | "
                                 "grep -c ': OK$'",
                                 dir, home, home);
    int n = count ? atoi(count) : -1;
    free(count);
    return n;
}

int test_engine_home(const char *prefix, char **tmp, char **home)
{
    *home = NULL;
    *tmp = test_tmpdir(prefix);
    if (*tmp == NULL || asprintf(home, "%s/home", *tmp) < 0)
        return 1;
    test_children_unwind_fast();
    return test_sh("HSMENROLL_HOME='%s' '%s' ca init -q 2>/dev/null", *home, HSMENROLL_BIN);
}

void test_engine_home_free(char *tmp, char *home)
{
    if (tmp != NULL)
        test_rmtree(tmp);
    free(tmp);
    free(home);
}

void test_write_mixed_batch(const char *path, int n, const char *prefix, const char *domain)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return;
    for (int i = 1; i <= n; i++)
        fprintf(f,
                "{\"Id\":\"%s-%03d\",\"Template\":\"Default\",\"Subject\":\"CN=%s-%03d.%s."
                "example\",\"KeyType\":\"ECC\",%s}\n",
                prefix, i, prefix, i, domain,
                i % 3 == 0 ? "\"KeyStorage\":\"token\",\"Format\":\"DER\"" : "\"Format\":\"PEM\"");
    fclose(f);
}

long test_ca_issued(const char *home)
{
    json_t *ca = test_sh_json(NULL, "HSMENROLL_HOME='%s' '%s' ca show --json", home, HSMENROLL_BIN);
    long n = ca ? (long)json_integer_value(json_object_get(ca, "Issued")) : -1;
    json_decref(ca);
    return n;
}

bool test_sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return true;
#else
    return false;
#endif
}

void test_children_unwind_fast(void)
{
    if (test_sanitized())
        setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=1", 1);
}

char *test_tmpdir(const char *prefix)
{
    const char *base = "/dev/shm";
    struct stat st;
    if (stat(base, &st) != 0 || !S_ISDIR(st.st_mode) || access(base, W_OK) != 0) {
        base = getenv("TMPDIR");
        if (base == NULL)
            base = "/tmp";
    }
    char *path = NULL;
    if (asprintf(&path, "%s/%s-XXXXXX", base, prefix) < 0)
        return NULL;
    if (mkdtemp(path) == NULL) {
        free(path);
        return NULL;
    }
    return path;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void test_rmtree(const char *path)
{
    if (path != NULL)
        nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        return NULL;
    return s;
}

/* Everything left in stream, NUL-terminated (malloc'd), or NULL. */
static char *read_stream(FILE *stream, size_t *len)
{
    size_t cap = 4096, used = 0, n;
    char *buf = malloc(cap);
    while (buf != NULL && (n = fread(buf + used, 1, cap - used - 1, stream)) > 0) {
        used += n;
        if (cap - used < 2) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                return NULL;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    if (buf != NULL) {
        buf[used] = '\0';
        if (len != NULL)
            *len = used;
    }
    return buf;
}

int test_sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = vformat(fmt, ap);
    va_end(ap);
    if (cmd == NULL)
        return -1;
    fflush(NULL);
    int rc = system(cmd);
    free(cmd);
    if (rc == -1 || !WIFEXITED(rc))
        return -1;
    return WEXITSTATUS(rc);
}

/* Runs cmd (which it frees) and returns its standard output; *status as test_sh_output. */
static char *command_output(int *status, char *cmd)
{
    if (cmd == NULL)
        return NULL;
    fflush(NULL);
    FILE *p = popen(cmd, "r");
    free(cmd);
    if (p == NULL)
        return NULL;
    char *buf = read_stream(p, NULL);
    int rc = pclose(p);
    if (status != NULL)
        *status = (rc != -1 && WIFEXITED(rc)) ? WEXITSTATUS(rc) : -1;
    return buf;
}

char *test_sh_output(int *status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = vformat(fmt, ap);
    va_end(ap);
    return command_output(status, cmd);
}

json_t *test_sh_json(int *status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = vformat(fmt, ap);
    va_end(ap);
    char *out = command_output(status, cmd);
    json_t *doc = out ? json_loads(out, 0, NULL) : NULL;
    free(out);
    return doc;
}

char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = read_stream(f, len);
    fclose(f);
    return buf;
}

int test_write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    size_t n = strlen(content);
    int ok = fwrite(content, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int test_count(const char *haystack, const char *needle)
{
    int n = 0;
    size_t step = strlen(needle);
    if (haystack == NULL || step == 0)
        return 0;
    for (const char *p = strstr(haystack, needle); p != NULL; p = strstr(p + step, needle))
        n++;
    return n;
}

json_t *test_load_ndjson(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    json_t *all = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (n == 1 && line[0] == '\n')
            continue;
        json_error_t jerr;
        json_t *v = json_loadb(line, (size_t)n, 0, &jerr);
        if (v == NULL) {
            fprintf(stderr, "test_load_ndjson: %s: %s\n", path, jerr.text);
            json_decref(all);
            all = NULL;
            break;
        }
        json_array_append_new(all, v);
    }
    free(line);
    fclose(f);
    return all;
}

json_t *test_find_by(json_t *array, const char *key, const char *value)
{
    size_t i;
    json_t *item;
    json_array_foreach(array, i, item)
    {
        const char *s = json_string_value(json_object_get(item, key));
        if (s != NULL && strcmp(s, value) == 0)
            return item;
    }
    return NULL;
}

int test_count_results(const char *out, const char *status, const char *code, const char *text)
{
    char path[700];
    snprintf(path, sizeof path, "%s/results.ndjson", out);
    json_t *res = test_load_ndjson(path);
    int n = 0;
    size_t i;
    json_t *r;
    json_array_foreach(res, i, r)
    {
        const char *st = json_string_value(json_object_get(r, "Status"));
        json_t *error = json_object_get(r, "Error");
        const char *c = json_string_value(json_object_get(error, "Code"));
        const char *note =
            json_string_value(json_object_get(json_object_get(r, "EarlierSubmission"), "Note"));
        const char *message = json_string_value(json_object_get(error, "Message"));
        bool said = text == NULL || (note != NULL && strstr(note, text) != NULL) ||
                    (message != NULL && strstr(message, text) != NULL);
        if ((status == NULL || (st != NULL && strcmp(st, status) == 0)) &&
            (code == NULL || (c != NULL && strcmp(c, code) == 0)) && said)
            n++;
    }
    json_decref(res);
    return res != NULL ? n : -1;
}

/* ---- `serve` and dropproxy on loopback ------------------------------------------------- */

int test_free_port(void)
{
    char *text = test_sh_output(NULL, "python3 -c 'import socket; s=socket.socket(); "
                                      "s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])'");
    int port = text ? atoi(text) : -1;
    free(text);
    return port > 0 ? port : -1;
}

pid_t test_spawn(const char *cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

bool test_wait_listening(int port)
{
    for (int i = 0; i < 300; i++) {
        /* Any answer, even a connection closed at once (curl 52): only 7 is "nobody there". */
        int rc = test_sh("curl -s -o /dev/null http://127.0.0.1:%d/ 2>/dev/null", port);
        if (rc >= 0 && rc != 7)
            return true;
        usleep(100000);
    }
    return false;
}

void test_stop(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
}

int test_serve_users(const char *tmp, char *users, size_t size)
{
    snprintf(users, size, "%s/users.json", tmp);
    setenv("KF_PASSWORD", "pw", 1);
    return test_sh("h=$(printf 'pw\\n' | '%s' serve hash-password --iterations 1000) && printf "
                   "'{\"Users\":[{\"Name\":\"eng\",\"Password\":\"%%s\"}]}' \"$h\" > '%s' && "
                   "chmod 600 '%s'",
                   HSMENROLL_BIN, users, users);
}

pid_t test_start_serve(const char *home, const char *users, const char *tmp, int port,
                       const char *options)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec '%s' serve --home '%s' --listen 127.0.0.1:%d --credentials '%s' -q %s "
             "2>>'%s/serve.log'",
             HSMENROLL_BIN, home, port, users, options, tmp);
    pid_t pid = test_spawn(cmd);
    if (test_wait_listening(port))
        return pid;
    test_stop(pid);
    return -1;
}

pid_t test_start_serve_ready(const char *tmp, const char *env, const char *options, char *url,
                             size_t url_size)
{
    char ready[700], cmd[4096];
    snprintf(ready, sizeof ready, "%s/ready", tmp);
    unlink(ready);
    snprintf(cmd, sizeof cmd,
             "%s exec '%s' serve --listen 127.0.0.1:0 --ready-file '%s' %s 2>>'%s/serve.log'", env,
             HSMENROLL_BIN, ready, options, tmp);
    pid_t pid = test_spawn(cmd);
    if (pid < 0)
        return -1;
    for (int i = 0; i < 600; i++) {
        char *text = test_read_file(ready, NULL);
        if (text != NULL) {
            text[strcspn(text, "\n")] = '\0';
            snprintf(url, url_size, "%s", text);
            free(text);
            return pid;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return -1;
        usleep(100000);
    }
    test_stop(pid);
    return -1;
}

pid_t test_start_dropproxy(const char *tmp, int port, int upstream, const char *options)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec '%s' --listen 127.0.0.1:%d --upstream 127.0.0.1:%d --log '%s/drop.log' %s "
             "2>>'%s/drop.err'",
             HSMENROLL_DROPPROXY, port, upstream, tmp, options, tmp);
    pid_t pid = test_spawn(cmd);
    if (test_wait_listening(port))
        return pid;
    test_stop(pid);
    return -1;
}

int test_write_kf_config(const char *path, const char *home, int port, int retries,
                         long retry_delay_ms, const char *extra)
{
    char text[4096];
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"],\"PinFile\":\"%s/pin\"},"
             "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"kf\",\"Type\":\"keyfactor\","
             "\"Url\":\"http://127.0.0.1:%d/KeyfactorAPI\",\"RemoteName\":\"embedded\","
             "\"Auth\":{\"Type\":\"Basic\",\"User\":\"eng\",\"PasswordEnv\":\"KF_PASSWORD\"},"
             "\"Retries\":%d,\"RetryDelayMs\":%ld%s}],"
             "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[1]}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1}]}",
             home, port, retries, retry_delay_ms, extra);
    return test_write_file(path, text);
}
