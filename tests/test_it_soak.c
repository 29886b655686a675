/* The kill -9 soak against a network CA: a batch enrolled through the `keyfactor` connector from
 * `serve` while the engine and the server are each killed with SIGKILL at random moments, the
 * engine resumed and the server restarted each time; then the run is finished. Every request
 * must end issued, and the CA's own issuance log must hold exactly one certificate per request. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support.h"

static char *tmp, *home;
static char users[600], config[600], batch[600], out[600];
static int port;
static pid_t serve_pid, engine_pid;

static int setup(void)
{
    unsetenv("HSMENROLL_PIN");
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    if (test_engine_home("hsmenroll-soak", &tmp, &home) != 0)
        return 1;
    snprintf(users, sizeof users, "%s/users.json", tmp);
    snprintf(config, sizeof config, "%s/kf.json", tmp);
    snprintf(batch, sizeof batch, "%s/soak.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out", tmp);
    setenv("KF_PASSWORD", "pw", 1);
    char conf[700];
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", home);
    setenv("SOFTHSM2_CONF", conf, 1);
    char *text = test_sh_output(NULL, "python3 -c 'import socket; s=socket.socket(); "
                                      "s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])'");
    port = text ? atoi(text) : -1;
    free(text);
    return port > 0 ? test_sh("h=$(printf 'pw\\n' | '%s' serve hash-password --iterations 1000) "
                              "&& printf '{\"Users\":[{\"Name\":\"eng\",\"Password\":\"%%s\"}]}' "
                              "\"$h\" > '%s' && chmod 600 '%s'",
                              HSMENROLL_BIN, users, users)
                    : 1;
}

static void reap(pid_t *pid, int sig)
{
    if (*pid > 0) {
        kill(*pid, sig);
        waitpid(*pid, NULL, 0);
        *pid = 0;
    }
}

static int teardown(void)
{
    reap(&engine_pid, SIGKILL);
    reap(&serve_pid, SIGTERM);
    test_engine_home_free(tmp, home);
    return 0;
}

static pid_t spawn(const char *cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Starts serve on the port; true once it answers. */
static bool start_serve(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec '%s' serve --home '%s' --listen 127.0.0.1:%d --credentials '%s' -q "
             "2>>'%s/serve.log'",
             HSMENROLL_BIN, home, port, users, tmp);
    serve_pid = spawn(cmd);
    for (int i = 0; i < 300; i++) {
        if (test_sh("curl -s -o /dev/null http://127.0.0.1:%d/ 2>/dev/null", port) == 0)
            return true;
        usleep(50000);
    }
    return false;
}

static pid_t start_engine(const char *extra)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "HSMENROLL_HOME='%s' exec '%s' run '%s' -o '%s' --config '%s' --progress never %s "
             "2>>'%s/run.log'",
             home, HSMENROLL_BIN, batch, out, config, extra, tmp);
    return spawn(cmd);
}

/* The engine's exit status once it ends (-1 when killed). */
static int engine_status(bool wait)
{
    int status;
    pid_t got = waitpid(engine_pid, &status, wait ? 0 : WNOHANG);
    if (got != engine_pid)
        return -2; /* still running */
    engine_pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_kill_both_repeatedly(void)
{
    const int n = test_sanitized() ? 120 : 300, kills = 10;
    FILE *f = fopen(batch, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int i = 1; i <= n; i++)
        fprintf(f,
                "{\"Id\":\"s-%04d\",\"Template\":\"Default\",\"Subject\":\"CN=s-%04d.soak."
                "example\",\"KeyType\":\"ECC\",%s}\n",
                i, i,
                i % 4 == 0 ? "\"KeyStorage\":\"token\",\"Format\":\"DER\"" : "\"Format\":\"PEM\"");
    fclose(f);
    char text[2048];
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"],\"PinFile\":\"%s/pin\"},"
             "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"kf\",\"Type\":\"keyfactor\","
             "\"Url\":\"http://127.0.0.1:%d/KeyfactorAPI\",\"RemoteName\":\"embedded\","
             "\"Auth\":{\"Type\":\"Basic\",\"User\":\"eng\",\"PasswordEnv\":\"KF_PASSWORD\"},"
             "\"Retries\":8,\"RetryDelayMs\":50}],"
             "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[1]}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1}]}",
             home, port);
    CU_ASSERT_EQUAL_FATAL(test_write_file(config, text), 0);
    long before = test_ca_issued(home);
    CU_ASSERT_FATAL(start_serve());
    engine_pid = start_engine("-w 2");
    int engine_kills = 0, serve_kills = 0, finished_early = 0;
    while (engine_kills < kills || serve_kills < kills) {
        usleep((useconds_t)(150000 + rand() % 450000));
        bool kill_engine = serve_kills >= kills || (engine_kills < kills && rand() % 2 == 0);
        if (kill_engine) {
            int st = engine_status(false);
            if (st == -2) {
                reap(&engine_pid, SIGKILL);
                engine_kills++;
            } else if (st >= 0) {
                finished_early++;
                engine_kills++; /* it ended on its own (all done, or it gave up on the CA) */
            }
            engine_pid = start_engine("--resume -w 2");
        } else {
            reap(&serve_pid, SIGKILL);
            serve_kills++;
            CU_ASSERT_FATAL(start_serve());
        }
    }
    /* No more kills: the run is finished; requests left uncertain while the server was down
     * are asked again with the same CSR. */
    int st = engine_status(true);
    for (int i = 0; i < 3 && st != 0; i++) {
        engine_pid = start_engine(i == 0 ? "--resume" : "--resume --retry-failed");
        st = engine_status(true);
    }
    CU_ASSERT_EQUAL(st, 0);
    reap(&serve_pid, SIGTERM);

    /* Every request issued once, counted in the CA's own log. */
    char path[700];
    snprintf(path, sizeof path, "%s/results.ndjson", out);
    json_t *res = test_load_ndjson(path);
    CU_ASSERT_EQUAL(json_array_size(res), (size_t)n);
    size_t i;
    json_t *r;
    int issued = 0;
    json_array_foreach(res, i, r) issued +=
        strcmp(json_string_value(json_object_get(r, "Status")) ?: "", "issued") == 0;
    CU_ASSERT_EQUAL(issued, n);
    json_decref(res);
    snprintf(path, sizeof path, "%s/ca/issued.ndjson", home);
    char *log = test_read_file(path, NULL);
    int once = 0, twice = 0, never = 0;
    for (int k = 1; k <= n; k++) {
        char needle[100];
        snprintf(needle, sizeof needle, "CN=s-%04d.soak.example\"", k);
        int c = log ? test_count(log, needle) : 0;
        once += c == 1;
        twice += c > 1;
        never += c == 0;
    }
    free(log);
    long total = test_ca_issued(home) - before;
    fprintf(stderr,
            "\n  soak: %d lines, engine killed %d times (%d ended by itself), serve killed %d "
            "times; the CA issued %ld: %d once, %d more than once, %d never\n",
            n, engine_kills, finished_early, serve_kills, total, once, twice, never);
    CU_ASSERT_EQUAL(once, n);
    CU_ASSERT_EQUAL(total, n);
    CU_ASSERT_EQUAL(test_verified_files(out, home), n);
    CU_ASSERT_EQUAL(test_sh("HSMENROLL_HOME='%s' '%s' token gc --journal '%s/journal.ndjson' "
                            ">/dev/null 2>&1",
                            home, HSMENROLL_BIN, out),
                    0);
    CU_ASSERT_EQUAL(test_sh("ls -a '%s' | grep -q '\\.tmp$'", out), 1);
}

int main(void)
{
    static const test_case cases[] = {TEST_CASE(test_kill_both_repeatedly), TEST_END};
    return test_main("soak", cases, setup, teardown);
}
