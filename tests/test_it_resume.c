/* Crash safety end to end: a 2,000-line batch killed with SIGKILL at random moments 25 times and
 * resumed each time (every Id issued exactly once, every file verified by openssl, the embedded
 * CA's issued count equal to the batch, no orphan key in the token); a torn journal; a finished
 * run resumed (nothing done); SIGTERM draining; a CA down, then --resume --retry-failed; a full
 * disk (a small tmpfs, when run as root); `token gc` finding and deleting orphans. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support.h"

static char *tmp, *home;

/* Under ASan the kill test is smaller (its ~40 engine runs are each several times slower) and has
 * no Ed25519 line (see test_children_unwind_fast). */
#define SANITIZED test_sanitized()

static int setup(void)
{
    unsetenv("HSMENROLL_PIN");
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    return test_engine_home("hsmenroll-resume", &tmp, &home);
}

static int teardown(void)
{
    test_engine_home_free(tmp, home);
    return 0;
}

/* A batch of n lines: P-256 PEM export, every 5th a token key in DER, every 7th Ed25519 (P-384
 * under ASan). */
static void write_batch(const char *path, int n, const char *prefix)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return;
    for (int i = 1; i <= n; i++) {
        const char *kind =
            i % 5 == 0   ? "\"KeyType\":\"ECC\",\"KeyStorage\":\"token\",\"Format\":\"DER\""
            : i % 7 == 0 ? (SANITIZED ? "\"KeyType\":\"ECC\",\"KeyLength\":384,\"Format\":\"PEM\""
                                      : "\"KeyType\":\"Ed25519\",\"Format\":\"PEM\"")
                         : "\"KeyType\":\"ECC\",\"Format\":\"PEM\"";
        fprintf(f,
                "{\"Id\":\"%s-%05d\",\"Template\":\"Default\",\"Subject\":\"CN=%s-%05d.example,"
                "O=Resume\",%s}\n",
                prefix, i, prefix, i, kind);
    }
    fclose(f);
}

/* Starts `run` in the background; returns its pid. */
static pid_t start_run(const char *batch, const char *out, const char *extra)
{
    pid_t pid = fork();
    if (pid == 0) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "HSMENROLL_HOME='%s' exec '%s' run '%s' -o '%s' --progress never %s "
                 "2>>'%s/run.log'",
                 home, HSMENROLL_BIN, batch, out, extra, tmp);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int wait_status(pid_t pid)
{
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int run_sync(const char *batch, const char *out, const char *extra)
{
    return wait_status(start_run(batch, out, extra));
}

/* Every Id of the batch exactly once in results, with this status; returns how many matched. */
static int exactly_once(const char *out, int n, const char *prefix, const char *status)
{
    char path[700];
    snprintf(path, sizeof path, "%s/results.ndjson", out);
    json_t *res = test_load_ndjson(path);
    if (res == NULL)
        return -1;
    char *seen = calloc((size_t)n + 1, 1);
    int good = 0, bad = 0;
    size_t i;
    json_t *r;
    json_array_foreach(res, i, r)
    {
        const char *id = json_string_value(json_object_get(r, "Id"));
        const char *st = json_string_value(json_object_get(r, "Status"));
        int k = 0;
        if (id == NULL || sscanf(id + strlen(prefix) + 1, "%d", &k) != 1 || k < 1 || k > n ||
            seen[k] || st == NULL || strcmp(st, status) != 0) {
            if (bad++ < 3)
                fprintf(stderr, "\n  unexpected result: %s\n", id ? id : "(null)");
            continue;
        }
        seen[k] = 1;
        good++;
    }
    free(seen);
    size_t lines = json_array_size(res);
    json_decref(res);
    return bad == 0 && lines == (size_t)n ? good : -1;
}

static long count_lines_of(const char *path)
{
    char *text = test_read_file(path, NULL);
    long n = text ? test_count(text, "\n") : 0; /* none yet: nothing issued */
    free(text);
    return n;
}

static void test_kill_and_resume_many_times(void)
{
    const int n = SANITIZED ? 300 : 2000, target_kills = SANITIZED ? 8 : 25;
    char batch[600], out[600], issued[700];
    snprintf(batch, sizeof batch, "%s/kill.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-kill", tmp);
    snprintf(issued, sizeof issued, "%s/ca/issued.ndjson", home);
    write_batch(batch, n, "k");
    long issued_before = count_lines_of(issued);
    int kills = 0, finished = 0;
    char journal[700];
    snprintf(journal, sizeof journal, "%s/journal.ndjson", out);
    for (int round = 0; round < 60 && kills < target_kills; round++) {
        /* Killed at a random moment once the run is at work (its journal grows), so that every
         * round makes some progress however slow the start-up (sanitizer builds). */
        struct stat st;
        off_t before = stat(journal, &st) == 0 ? st.st_size : 0;
        pid_t pid = start_run(batch, out, "--resume");
        for (int i = 0; i < 2000 && (stat(journal, &st) != 0 || st.st_size <= before); i++)
            usleep(5000);
        usleep((useconds_t)(rand() % 300) * 1000);
        if (kill(pid, SIGKILL) == 0)
            kills++;
        if (wait_status(pid) == 0)
            finished++;
    }
    CU_ASSERT_TRUE(kills >= target_kills - 5);
    int final = run_sync(batch, out, "--resume");
    CU_ASSERT_EQUAL(final, 0);
    if (final != 0)
        test_sh("tail -n 60 '%s/run.log' >&2", tmp);
    CU_ASSERT_EQUAL(exactly_once(out, n, "k", "issued"), n);
    /* The CA issued exactly one certificate per request, crashes or not. */
    CU_ASSERT_EQUAL(count_lines_of(issued) - issued_before, n);

    CU_ASSERT_EQUAL(test_verified_files(out, home), n);
    /* No orphan: the token holds exactly the token-storage keys, all known to the journal. */
    CU_ASSERT_EQUAL(test_sh("HSMENROLL_HOME='%s' '%s' token gc --journal '%s/journal.ndjson' "
                            "2>/dev/null",
                            home, HSMENROLL_BIN, out),
                    0);
    char *keys = test_sh_output(
        NULL, "HSMENROLL_HOME='%s' '%s' token list --keys --json 2>/dev/null", home, HSMENROLL_BIN);
    CU_ASSERT_EQUAL(test_count(keys ? keys : "", "\"Label\": \"k-"), n / 5);
    free(keys);
    /* A finished run resumed does nothing. */
    long lines = count_lines_of(issued);
    CU_ASSERT_EQUAL(run_sync(batch, out, "--resume"), 0);
    CU_ASSERT_EQUAL(count_lines_of(issued), lines);
    CU_ASSERT_EQUAL(exactly_once(out, n, "k", "issued"), n);
}

static void test_torn_journal_is_cut(void)
{
    char batch[600], out[600], journal[700];
    snprintf(batch, sizeof batch, "%s/torn.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-torn", tmp);
    snprintf(journal, sizeof journal, "%s/journal.ndjson", out);
    write_batch(batch, 40, "t");
    CU_ASSERT_EQUAL(run_sync(batch, out, ""), 0);
    /* A record whose checksum is wrong, then half a record: the tail of a crash mid-write. The
     * last good record is corrupted too: its request is done again, once. */
    CU_ASSERT_EQUAL(test_sh("cd '%s' && head -n -1 journal.ndjson > j && tail -n 1 "
                            "journal.ndjson | sed 's/^......../00000000/' >> j && printf "
                            "'1234abcd {\"T\":\"D\",\"Id\":\"t-0' >> j && mv j journal.ndjson",
                            out),
                    0);
    CU_ASSERT_EQUAL(run_sync(batch, out, "--resume"), 0);
    CU_ASSERT_EQUAL(exactly_once(out, 40, "t", "issued"), 40);
    char *log = test_sh_output(NULL, "cat '%s/run.log'", tmp);
    CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "torn or corrupt") : NULL);
    free(log);
    /* The journal is whole again: every line has a good checksum. */
    CU_ASSERT_EQUAL(run_sync(batch, out, "--resume"), 0);
    CU_ASSERT_EQUAL(exactly_once(out, 40, "t", "issued"), 40);
}

/* A CSR request the CA certified before a crash, but whose certificate never reached the journal:
 * on resume its key is its own (not POLICY_KEY_REUSE), and the CA hands back the same certificate
 * instead of issuing a second one. */
static void test_resumed_csr_is_not_key_reuse(void)
{
    char batch[600], out[600], issued[700];
    snprintf(batch, sizeof batch, "%s/csr.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-csr", tmp);
    snprintf(issued, sizeof issued, "%s/ca/issued.ndjson", home);
    CU_ASSERT_EQUAL_FATAL(
        test_sh("cd '%s' && for i in 1 2 3; do openssl req -new -newkey ec -pkeyopt "
                "ec_paramgen_curve:P-256 -nodes -keyout /dev/null -subj /CN=c-$i.example "
                "-outform DER 2>/dev/null | base64 -w0 > c$i.b64 || exit 1; printf "
                "'{\"Id\":\"c-%%d\",\"Operation\":\"CSR\",\"Template\":\"Default\","
                "\"CSR\":\"%%s\"}\\n' $i \"$(cat c$i.b64)\"; done > '%s'",
                tmp, batch),
        0);
    CU_ASSERT_EQUAL(run_sync(batch, out, ""), 0);
    CU_ASSERT_EQUAL(exactly_once(out, 3, "c", "issued"), 3);
    char *before = test_sh_output(NULL,
                                  "grep -o '\"SerialNumber\": *\"[0-9A-F]*' "
                                  "'%s/results.ndjson' | sort",
                                  out);
    long lines = count_lines_of(issued);
    /* The crash: c-2's certificate and result records never made it to the journal. */
    CU_ASSERT_EQUAL(test_sh("cd '%s' && grep -v -E '\"Id\":\"c-2\".*\"T\":\"[ID]\"}$' "
                            "journal.ndjson > j && "
                            "[ $(wc -l < j) -eq $(($(wc -l < journal.ndjson) - 2)) ] && "
                            "mv j journal.ndjson",
                            out),
                    0);
    CU_ASSERT_EQUAL(run_sync(batch, out, "--resume"), 0);
    CU_ASSERT_EQUAL(exactly_once(out, 3, "c", "issued"), 3);
    CU_ASSERT_EQUAL(count_lines_of(issued), lines); /* nothing issued twice */
    char *after = test_sh_output(NULL,
                                 "grep -o '\"SerialNumber\": *\"[0-9A-F]*' "
                                 "'%s/results.ndjson' | sort",
                                 out);
    CU_ASSERT_PTR_NOT_NULL(before);
    CU_ASSERT_STRING_EQUAL(before ? before : "", after ? after : "-");
    free(before);
    free(after);
}

static void test_sigterm_drains_and_resumes(void)
{
    char batch[600], out[600];
    snprintf(batch, sizeof batch, "%s/drain.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-drain", tmp);
    write_batch(batch, 1000, "s");
    char journal[700];
    snprintf(journal, sizeof journal, "%s/journal.ndjson", out);
    pid_t pid = start_run(batch, out, "");
    struct stat st;
    for (int i = 0; i < 2000 && (stat(journal, &st) != 0 || st.st_size < 8000); i++)
        usleep(5000); /* at work */
    kill(pid, SIGTERM);
    CU_ASSERT_EQUAL(wait_status(pid), 3);
    /* What is in results is complete and valid; the rest comes with --resume. */
    char path[700];
    snprintf(path, sizeof path, "%s/results.ndjson", out);
    long partial = count_lines_of(path);
    CU_ASSERT_TRUE(partial > 0 && partial < 1000);
    CU_ASSERT_EQUAL(run_sync(batch, out, "--resume"), 0);
    CU_ASSERT_EQUAL(exactly_once(out, 1000, "s", "issued"), 1000);
}

static void test_ca_down_then_retry_failed(void)
{
    /* A keyfactor CA on a port where nothing listens yet. */
    char *port_text = test_sh_output(
        NULL, "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); "
              "print(s.getsockname()[1])'");
    CU_ASSERT_PTR_NOT_NULL_FATAL(port_text);
    int port = atoi(port_text);
    free(port_text);
    char users[600], config[600], batch[600], out[600];
    snprintf(users, sizeof users, "%s/users.json", tmp);
    snprintf(config, sizeof config, "%s/down.json", tmp);
    snprintf(batch, sizeof batch, "%s/down.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-down", tmp);
    CU_ASSERT_EQUAL_FATAL(
        test_sh("h=$(printf 'pw\\n' | '%s' serve hash-password --iterations 1000) && printf "
                "'{\"Users\":[{\"Name\":\"u\",\"Password\":\"%%s\"}]}' \"$h\" > '%s' && chmod 600 "
                "'%s'",
                HSMENROLL_BIN, users, users),
        0);
    char text[2048];
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"],\"PinFile\":\"%s/pin\"},"
             "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"kf\",\"Type\":\"keyfactor\","
             "\"Url\":\"http://127.0.0.1:%d/KeyfactorAPI\",\"RemoteName\":\"embedded\","
             "\"Auth\":{\"Type\":\"Basic\",\"User\":\"u\",\"PasswordEnv\":\"KF_PASSWORD\"},"
             "\"Retries\":2,\"RetryDelayMs\":10}],"
             "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[1]}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1}]}",
             home, port);
    CU_ASSERT_EQUAL_FATAL(test_write_file(config, text), 0);
    write_batch(batch, 30, "c");
    char extra[1024];
    snprintf(extra, sizeof extra, "--config '%s'", config);
    setenv("KF_PASSWORD", "pw", 1);
    char conf[700];
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", home);
    setenv("SOFTHSM2_CONF", conf, 1);
    CU_ASSERT_EQUAL(run_sync(batch, out, extra), 1);
    CU_ASSERT_EQUAL(exactly_once(out, 30, "c", "failed"), 30);
    char *results = test_sh_output(NULL, "cat '%s/results.ndjson'", out);
    CU_ASSERT_EQUAL(test_count(results ? results : "", "CA_UNREACHABLE"), 30);
    CU_ASSERT_PTR_NOT_NULL(results ? strstr(results, "after 3 attempts") : NULL);
    free(results);
    /* The CA comes back: --resume alone does nothing, --retry-failed issues them all, once. */
    pid_t server = fork();
    if (server == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "exec '%s' serve --home '%s' --listen 127.0.0.1:%d --credentials '%s' -q",
                 HSMENROLL_BIN, home, port, users);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && test_sh("curl -s -o /dev/null http://127.0.0.1:%d/", port) != 0; i++)
        usleep(100000);
    CU_ASSERT_EQUAL(run_sync(batch, out, "--resume"), 1);
    CU_ASSERT_EQUAL(exactly_once(out, 30, "c", "failed"), 30);
    snprintf(extra, sizeof extra, "--config '%s' --resume --retry-failed", config);
    CU_ASSERT_EQUAL(run_sync(batch, out, extra), 0);
    CU_ASSERT_EQUAL(exactly_once(out, 30, "c", "issued"), 30);
    kill(server, SIGTERM);
    waitpid(server, NULL, 0);
    unsetenv("SOFTHSM2_CONF");
}

static void test_disk_full(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "\n  (not root: no small tmpfs can be mounted; the disk-full case is "
                        "not run)\n");
        return;
    }
    char mnt[600], batch[600];
    snprintf(mnt, sizeof mnt, "%s/small", tmp);
    snprintf(batch, sizeof batch, "%s/full.ndjson", tmp);
    mkdir(mnt, 0700);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=400k") != 0) {
        fprintf(stderr, "\n  (cannot mount a tmpfs here: %s; the disk-full case is not run)\n",
                strerror(errno));
        return;
    }
    write_batch(batch, 400, "f");
    int st = run_sync(batch, mnt, "");
    CU_ASSERT_EQUAL(st, 3); /* stopped, resumable */
    char *log = test_sh_output(NULL, "cat '%s/run.log'", tmp);
    CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "No space left on device: stopping; run again with "
                                             "--resume")
                               : NULL);
    free(log);
    /* No partial file: no temporary left, every bundle there is whole. */
    CU_ASSERT_EQUAL(test_sh("ls -a '%s' | grep -q '\\.tmp$'", mnt), 1);
    CU_ASSERT_EQUAL(test_sh("cd '%s' && for f in *.pem; do openssl x509 -in $f -noout || exit 1; "
                            "done",
                            mnt),
                    0);
    /* Room again: the run finishes, each request once. */
    CU_ASSERT_EQUAL(mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, "size=64m"), 0);
    CU_ASSERT_EQUAL(run_sync(batch, mnt, "--resume"), 0);
    CU_ASSERT_EQUAL(exactly_once(mnt, 400, "f", "issued"), 400);
    umount(mnt);
}

static void test_hsm_session_loss(void)
{
    char batch[600], out[600];
    snprintf(batch, sizeof batch, "%s/loss.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-loss", tmp);
    write_batch(batch, 60, "l");
    /* Every 7th key generation finds its session closed under it. */
    setenv("HSMENROLL_FAULT_SESSION_LOSS", "7", 1);
    CU_ASSERT_EQUAL(run_sync(batch, out, ""), 0);
    unsetenv("HSMENROLL_FAULT_SESSION_LOSS");
    CU_ASSERT_EQUAL(exactly_once(out, 60, "l", "issued"), 60);
    char *log = test_sh_output(NULL, "cat '%s/run.log'", tmp);
    CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "lost and reopened") : NULL);
    free(log);
}

/* SoftHSM keeps every destroyed session object until C_Finalize: a run restarts the module every
 * Hsm.RestartEvery export keys, between two jobs. Everything is still issued once and valid. */
static void test_module_restarts_mid_run(void)
{
    char batch[600], out[600], cfg[600], conf[700];
    snprintf(batch, sizeof batch, "%s/restart.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-restart", tmp);
    snprintf(cfg, sizeof cfg, "%s/restart.json", tmp);
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", home);
    const int n = 200; /* 160 export keys, 40 token keys: 6 restarts */
    write_batch(batch, n, "m");
    FILE *f = fopen(cfg, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f,
            "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"],\"PinFile\":\"%s/pin\",\"RestartEvery\":25},"
            "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"embedded\",\"Type\":\"local\","
            "\"Home\":\"%s/ca\",\"Token\":\"hsmenroll-ca\",\"PinFile\":\"home/"
            "ca-pin\"}],\"Templates\":[{\"Id\":1,"
            "\"Name\":\"Default\",\"CertificateAuthorities\":[1]}],\"EnrollmentPatterns\":[{"
            "\"Id\":1,\"Name\":\"Default\",\"Template\":1,\"TemplateDefault\":true}]}\n",
            home, home);
    fclose(f);
    char extra[1400];
    snprintf(extra, sizeof extra, "--config '%s' -v", cfg);
    setenv("SOFTHSM2_CONF", conf, 1);
    CU_ASSERT_EQUAL(run_sync(batch, out, extra), 0);
    unsetenv("SOFTHSM2_CONF");
    CU_ASSERT_EQUAL(exactly_once(out, n, "m", "issued"), n);
    char *restarts = test_sh_output(NULL, "grep -c 'HSM module restarted' '%s/run.log'", tmp);
    CU_ASSERT_EQUAL(restarts ? atoi(restarts) : 0, 6);
    free(restarts);
    CU_ASSERT_EQUAL(test_verified_files(out, home), n);
    /* The token keys made across restarts are all there (their handles changed, not them). */
    char *keys = test_sh_output(
        NULL, "HSMENROLL_HOME='%s' '%s' token list --keys --json 2>/dev/null", home, HSMENROLL_BIN);
    CU_ASSERT_EQUAL(test_count(keys ? keys : "", "\"Label\": \"m-"), n / 5);
    free(keys);
}

static void test_token_gc_finds_orphans(void)
{
    char batch[600], out[600], other[600];
    snprintf(batch, sizeof batch, "%s/gc.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-gc", tmp);
    snprintf(other, sizeof other, "%s/out-gc-nojournal", tmp);
    write_batch(batch, 10, "g"); /* 2 token keys */
    CU_ASSERT_EQUAL(run_sync(batch, out, ""), 0);
    /* A run without a journal: its 2 token keys are unknown to any journal, but the CA
     * certified them: not orphans. */
    FILE *f = fopen(batch, "w");
    fprintf(f, "{\"Id\":\"orphan-1\",\"Template\":\"Default\",\"Subject\":\"CN=o1\","
               "\"KeyStorage\":\"token\",\"Format\":\"DER\"}\n"
               "{\"Id\":\"orphan-2\",\"Template\":\"Default\",\"Subject\":\"CN=o2\","
               "\"KeyStorage\":\"token\",\"Format\":\"DER\"}\n");
    fclose(f);
    CU_ASSERT_EQUAL(run_sync(batch, other, "--no-journal"), 0);
    char journals[2048];
    snprintf(journals, sizeof journals,
             "--journal '%s/journal.ndjson' --journal '%s/out-kill/journal.ndjson' --journal "
             "'%s/out-torn/journal.ndjson'",
             out, tmp, tmp);
    char *listed = test_sh_output(NULL, "HSMENROLL_HOME='%s' '%s' token gc %s 2>/dev/null", home,
                                  HSMENROLL_BIN, journals);
    CU_ASSERT_EQUAL(test_count(listed ? listed : "", "  orphan-"), 0);
    free(listed);
    /* What is left (keys of the disk-full run, whose journal went with its file system, that
     * were never certified) is deleted as listed, and the listing is then empty. */
    CU_ASSERT_TRUE(test_sh("HSMENROLL_HOME='%s' '%s' token gc %s --json >'%s/gc.json' 2>/dev/null",
                           home, HSMENROLL_BIN, journals, tmp) <= 1);
    CU_ASSERT_EQUAL(test_sh("HSMENROLL_HOME='%s' '%s' token gc %s --delete --confirm '%s/gc.json' "
                            ">/dev/null 2>&1",
                            home, HSMENROLL_BIN, journals, tmp),
                    0);
    CU_ASSERT_EQUAL(test_sh("HSMENROLL_HOME='%s' '%s' token gc %s >/dev/null 2>&1", home,
                            HSMENROLL_BIN, journals),
                    0);
    listed = test_sh_output(NULL, "HSMENROLL_HOME='%s' '%s' token list --keys 2>/dev/null", home,
                            HSMENROLL_BIN);
    CU_ASSERT_EQUAL(test_count(listed ? listed : "", "object=orphan-"), 2);
    free(listed);
    /* Without a journal gc refuses: every key would look orphaned. */
    CU_ASSERT_EQUAL(test_sh("HSMENROLL_HOME='%s' '%s' token gc 2>/dev/null", home, HSMENROLL_BIN),
                    2);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_kill_and_resume_many_times),
        TEST_CASE(test_torn_journal_is_cut),
        TEST_CASE(test_resumed_csr_is_not_key_reuse),
        TEST_CASE(test_sigterm_drains_and_resumes),
        TEST_CASE(test_ca_down_then_retry_failed),
        TEST_CASE(test_disk_full),
        TEST_CASE(test_hsm_session_loss),
        TEST_CASE(test_module_restarts_mid_run),
        TEST_CASE(test_token_gc_finds_orphans),
        TEST_END,
    };
    return test_main("resume", cases, setup, teardown);
}
