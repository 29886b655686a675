/* The recovery promise under faults, one case per failure found: answers of a network CA lost
 * (dropproxy in front of `serve`), a journal damaged in the middle (a flipped bit, a cut), a file
 * or the whole output directory that cannot be written after issuance, SIGKILL leftovers (temp
 * files, orphan key halves), generated passwords kept out of the journal, and the exit status of
 * a resumed run. The embedded CA's issuance log counts every certificate. */
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
static char users[600], issued_log[600];

static int setup(void)
{
    unsetenv("HSMENROLL_PIN");
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    if (test_engine_home("hsmenroll-faults", &tmp, &home) != 0)
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

/* Runs the engine (its log appended to TMP/run.log); returns its exit status. */
static int run_engine(const char *batch, const char *out, const char *extra)
{
    return test_sh("HSMENROLL_HOME='%s' '%s' run '%s' -o '%s' --progress never %s 2>>'%s/run.log'",
                   home, HSMENROLL_BIN, batch, out, extra, tmp);
}

/* How many certificates the embedded CA issued for this exact subject CN. */
static int issued_for(const char *cn)
{
    char *text = test_read_file(issued_log, NULL);
    char needle[300];
    snprintf(needle, sizeof needle, "CN=%s\"", cn);
    int n = text ? test_count(text, needle) : -1;
    free(text);
    return n;
}

/* Every line of the batch issued exactly once by the CA; returns how many were. */
static int each_issued_once(int n, const char *prefix)
{
    int good = 0;
    for (int i = 1; i <= n; i++) {
        char cn[200];
        snprintf(cn, sizeof cn, "%s-%03d.faults.example", prefix, i);
        int k = issued_for(cn);
        if (k == 1)
            good++;
        else
            fprintf(stderr, "\n  %s issued %d times\n", cn, k);
    }
    return good;
}

/* `token gc` over every journal of this suite (options, e.g. --delete); its output. */
static char *token_gc(const char *options, int *status)
{
    return test_sh_output(status,
                          "HSMENROLL_HOME='%s' '%s' token gc $(for j in '%s'/out-*/journal.ndjson "
                          "'%s'/*-journal.ndjson; do [ -f \"$j\" ] && printf -- '--journal %%s ' "
                          "\"$j\"; done) %s 2>/dev/null",
                          home, HSMENROLL_BIN, tmp, tmp, options);
}

/* ... finds no orphan key (public or private): 0. */
static int token_gc_clean(void)
{
    int status = -1;
    free(token_gc("", &status));
    return status;
}

/* The number of key entries of the token whose label starts with prefix. */
static int token_keys(const char *prefix)
{
    char *keys = test_sh_output(
        NULL, "HSMENROLL_HOME='%s' '%s' token list --keys --json 2>/dev/null", home, HSMENROLL_BIN);
    char needle[100];
    snprintf(needle, sizeof needle, "\"Label\": \"%s-", prefix);
    int n = keys ? test_count(keys, needle) : -1;
    free(keys);
    return n;
}

/* ---- a network CA whose answers are lost ---------------------------------------------- */

static pid_t start_proxy(int port, int upstream, const char *options)
{
    return test_start_dropproxy(tmp, port, upstream, options);
}

static void write_kf_config(const char *path, int port, int retries)
{
    test_write_kf_config(path, home, port, retries, 10, "");
}

/* 1. The first six answers are dropped: the engine asks again with the same CSR and serve
 * answers with the certificate it issued (not a key-reuse refusal). Then every answer is
 * dropped, the lookups' too, and the engine does not retry: the requests are uncertain, not
 * failed, their keys kept; --resume --retry-failed looks each up, finds it, and none is issued
 * twice. */
static void test_lost_answers(void)
{
    int sport = test_free_port(), pport = test_free_port();
    pid_t serve = test_start_serve(home, users, tmp, sport, "");
    CU_ASSERT_FATAL(serve > 0);
    pid_t proxy = start_proxy(pport, sport, "--match POST --drop-first 6");
    CU_ASSERT_FATAL(proxy > 0);
    char config[600], batch[600], out[600], extra[800];
    snprintf(config, sizeof config, "%s/kf.json", tmp);
    snprintf(batch, sizeof batch, "%s/lost.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-lost", tmp);
    write_kf_config(config, pport, 5);
    test_write_mixed_batch(batch, 6, "lost", "faults");
    snprintf(extra, sizeof extra, "--config '%s' -w 1", config);
    CU_ASSERT_EQUAL(run_engine(batch, out, extra), 0);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, NULL), 6);
    CU_ASSERT_EQUAL(each_issued_once(6, "lost"), 6);
    char *log = test_sh_output(NULL, "cat '%s/drop.log'", tmp);
    CU_ASSERT_EQUAL(test_count(log ? log : "", "dropped POST"), 6);
    free(log);
    test_stop(proxy);

    /* Every answer lost (the lookups' too), no retry. */
    proxy = start_proxy(pport, sport, "--drop-rate 1");
    CU_ASSERT_FATAL(proxy > 0);
    snprintf(out, sizeof out, "%s/out-uncertain", tmp);
    snprintf(batch, sizeof batch, "%s/uncertain.ndjson", tmp);
    test_write_mixed_batch(batch, 9, "unc", "faults");
    write_kf_config(config, pport, 0);
    CU_ASSERT_EQUAL(run_engine(batch, out, extra), 1);
    CU_ASSERT_EQUAL(test_count_results(out, "uncertain", NULL, NULL), 9);
    CU_ASSERT_EQUAL(each_issued_once(9, "unc"), 9); /* the CA did issue them */
    CU_ASSERT_EQUAL(token_keys("unc"), 3);          /* the token keys are kept */
    test_stop(proxy);
    /* --resume alone leaves them uncertain (exit 1); --retry-failed asks again, same CSR. */
    write_kf_config(config, sport, 5);
    snprintf(extra, sizeof extra, "--config '%s' --resume", config);
    CU_ASSERT_EQUAL(run_engine(batch, out, extra), 1);
    CU_ASSERT_EQUAL(test_count_results(out, "uncertain", NULL, NULL), 9);
    snprintf(extra, sizeof extra, "--config '%s' --resume --retry-failed", config);
    CU_ASSERT_EQUAL(run_engine(batch, out, extra), 0);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, NULL), 9);
    CU_ASSERT_EQUAL(test_count_results(out, NULL, NULL, "recovered by lookup"), 9);
    CU_ASSERT_EQUAL(each_issued_once(9, "unc"), 9);
    CU_ASSERT_EQUAL(test_verified_files(out, home), 9);
    CU_ASSERT_EQUAL(token_gc_clean(), 0);
    test_stop(serve);
}

/* ---- a damaged journal ------------------------------------------------------------------ */

static void damaged_journal_case(const char *name, const char *damage)
{
    char batch[600], out[600], saved[700];
    snprintf(batch, sizeof batch, "%s/%s.ndjson", tmp, name);
    snprintf(out, sizeof out, "%s/out-%s", tmp, name);
    snprintf(saved, sizeof saved, "%s/%s-results.ndjson", tmp, name);
    test_write_mixed_batch(batch, 12, name, "faults");
    CU_ASSERT_EQUAL_FATAL(run_engine(batch, out, ""), 0);
    CU_ASSERT_EQUAL(token_keys(name), 4);
    long before = test_ca_issued(home);
    test_sh("cp '%s/results.ndjson' '%s'", out, saved);
    /* The damage, in the middle of the journal. */
    CU_ASSERT_EQUAL_FATAL(test_sh("cd '%s' && %s", out, damage), 0);
    /* --resume refuses, naming the line and the way forward; nothing is touched. */
    char *msg =
        test_sh_output(NULL,
                       "HSMENROLL_HOME='%s' '%s' run '%s' -o '%s' --progress never --resume "
                       "2>&1; echo \"exit=$?\"",
                       home, HSMENROLL_BIN, batch, out);
    CU_ASSERT_PTR_NOT_NULL(msg ? strstr(msg, "is damaged") : NULL);
    CU_ASSERT_PTR_NOT_NULL(msg ? strstr(msg, "--salvage") : NULL);
    CU_ASSERT_PTR_NOT_NULL(msg ? strstr(msg, "line ") : NULL);
    CU_ASSERT_PTR_NOT_NULL(msg ? strstr(msg, "exit=2") : NULL);
    free(msg);
    CU_ASSERT_EQUAL(test_sh("cmp -s '%s/results.ndjson' '%s'", out, saved), 0);
    CU_ASSERT_EQUAL(token_keys(name), 4);
    /* --salvage: every key kept, every result as it was, nothing issued again. */
    CU_ASSERT_EQUAL(run_engine(batch, out, "--resume --salvage"), 0);
    CU_ASSERT_EQUAL(token_keys(name), 4);
    CU_ASSERT_EQUAL(test_ca_issued(home), before);
    CU_ASSERT_EQUAL(
        test_sh("[ \"$(sort '%s/results.ndjson' | md5sum)\" = \"$(sort '%s' | md5sum)\" ]", out,
                saved),
        0);
    CU_ASSERT_EQUAL(test_sh("test -f '%s/journal.ndjson.damaged'", out), 0);
    /* The salvaged journal is whole again. */
    CU_ASSERT_EQUAL(run_engine(batch, out, "--resume"), 0);
    CU_ASSERT_EQUAL(test_ca_issued(home), before);
    CU_ASSERT_EQUAL(token_gc_clean(), 0);
}

/* 2. One flipped bit in the middle of a finished run's journal. */
static void test_journal_bit_flip(void)
{
    damaged_journal_case("flip",
                         "python3 -c \"import sys; p='journal.ndjson'; b=bytearray(open(p,'rb')"
                         ".read()); n=b.count(b'\\n'); off=[i for i,c in enumerate(b) if "
                         "c==10][n//2]-20; b[off]^=0x04; open(p,'wb').write(b)\"");
}

/* 2. A cut (bytes gone) in the middle. */
static void test_journal_cut(void)
{
    damaged_journal_case("cut",
                         "python3 -c \"p='journal.ndjson'; b=open(p,'rb').read(); h=len(b)//2; "
                         "open(p,'wb').write(b[:h]+b[h+300:])\"");
}

/* 2. --salvage when records of a request are lost: a request whose key or files exist is left
 * alone (uncertain), its key kept. */
static void test_salvage_leaves_lost_requests_alone(void)
{
    char batch[600], out[600];
    snprintf(batch, sizeof batch, "%s/lost-rec.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-lost-rec", tmp);
    test_write_mixed_batch(batch, 6, "lr", "faults");
    /* One lane: the requests finish in batch order, so lr-003's records sit mid-journal (damage
     * there is damage; the same records as the journal's last lines would be a torn tail). */
    CU_ASSERT_EQUAL_FATAL(run_engine(batch, out, "--workers 1 --hsm-concurrency 1"), 0);
    long before = test_ca_issued(home);
    /* Every record of lr-003 (a token key) damaged, and its result line gone too. */
    CU_ASSERT_EQUAL_FATAL(
        test_sh("cd '%s' && sed -i '/\"lr-003\"/s/^./x/' journal.ndjson && sed -i '/\"lr-003\"/d' "
                "results.ndjson",
                out),
        0);
    CU_ASSERT_EQUAL(run_engine(batch, out, "--resume"), 2);
    CU_ASSERT_EQUAL(run_engine(batch, out, "--resume --salvage"), 1);
    CU_ASSERT_EQUAL(test_count_results(out, "uncertain", "JOURNAL_DAMAGED", NULL), 1);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, NULL), 5);
    CU_ASSERT_EQUAL(token_keys("lr"), 2); /* lr-003's key is still there */
    CU_ASSERT_EQUAL(test_ca_issued(home), before);
    CU_ASSERT_EQUAL(test_sh("test -f '%s/lr-003.der'", out), 0);
    /* The salvaged journal knows lr-003 again (its uncertain result): `token gc` does not call
     * its key an orphan. */
    CU_ASSERT_EQUAL(token_gc_clean(), 0);
}

/* ---- delivery apart from issuance --------------------------------------------------------- */

/* 3. A directory where a bundle should go: that request is issued and undelivered, its key
 * kept; once the path is free, --resume delivers it without asking the CA again. */
static void test_file_in_the_way(void)
{
    char batch[600], out[600];
    snprintf(batch, sizeof batch, "%s/way.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-way", tmp);
    test_write_mixed_batch(batch, 6, "way", "faults");
    CU_ASSERT_EQUAL_FATAL(test_sh("mkdir -p '%s/way-002.pem' '%s/way-003.der'", out, out), 0);
    long before = test_ca_issued(home);
    CU_ASSERT_EQUAL(run_engine(batch, out, ""), 1);
    CU_ASSERT_EQUAL(test_count_results(out, "failed", "DELIVERY_FAILED", NULL), 2);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, NULL), 4);
    CU_ASSERT_EQUAL(token_keys("way"), 2); /* way-003's key is kept */
    CU_ASSERT_EQUAL(test_ca_issued(home), before + 6);
    /* Still in the way: --resume tries again, still undelivered. */
    CU_ASSERT_EQUAL(run_engine(batch, out, "--resume"), 1);
    CU_ASSERT_EQUAL(test_count_results(out, "failed", "DELIVERY_FAILED", NULL), 2);
    CU_ASSERT_EQUAL(test_sh("rmdir '%s/way-002.pem' '%s/way-003.der'", out, out), 0);
    CU_ASSERT_EQUAL(run_engine(batch, out, "--resume"), 0);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, NULL), 6);
    CU_ASSERT_EQUAL(test_ca_issued(home), before + 6);
    CU_ASSERT_EQUAL(test_verified_files(out, home), 6);
    CU_ASSERT_EQUAL(token_gc_clean(), 0);
}

/* 3. The output directory made immutable mid-run: the run stops (exit 3); once it is writable
 * again, --resume delivers what was issued and issues the rest, each once. */
static void test_directory_unwritable(void)
{
    if (geteuid() != 0 || test_sh("d=$(mktemp -d /var/tmp/hse-attr.XXXXXX) && chattr +i \"$d\" && "
                                  "chattr -i \"$d\" && rmdir \"$d\"") != 0) {
        fprintf(stderr, "\n  (skipped: needs root and chattr on /var/tmp)\n");
        return;
    }
    char *dir = test_sh_output(NULL, "mktemp -d /var/tmp/hse-immutable.XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    dir[strcspn(dir, "\n")] = '\0';
    char batch[600], out[700], extra[1200];
    snprintf(batch, sizeof batch, "%s/immutable.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(extra, sizeof extra, "--journal '%s/immutable-journal.ndjson' --rate 40", tmp);
    const int n = 160;
    test_write_mixed_batch(batch, n, "imm", "faults");
    long before = test_ca_issued(home);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "HSMENROLL_HOME='%s' exec '%s' run '%s' -o '%s' --progress never %s 2>>'%s/run.log'",
             home, HSMENROLL_BIN, batch, out, extra, tmp);
    pid_t pid = test_spawn(cmd);
    /* Once some bundles are there, the directory becomes immutable. */
    for (int i = 0; i < 600 && test_sh("[ $(ls '%s' 2>/dev/null | grep -c pem) -ge 10 ]", out) != 0;
         i++)
        usleep(20000);
    CU_ASSERT_EQUAL(test_sh("chattr +i '%s'", out), 0);
    int status;
    waitpid(pid, &status, 0);
    CU_ASSERT_EQUAL(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 3);
    CU_ASSERT_EQUAL(test_sh("chattr -i '%s'", out), 0);
    CU_ASSERT_EQUAL(test_count_results(out, "failed", NULL, NULL), 0);
    snprintf(extra, sizeof extra, "--journal '%s/immutable-journal.ndjson' --resume", tmp);
    CU_ASSERT_EQUAL(run_engine(batch, out, extra), 0);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, NULL), n);
    CU_ASSERT_EQUAL(test_ca_issued(home), before + n);
    CU_ASSERT_EQUAL(each_issued_once(n, "imm"), n);
    test_sh("chattr -i '%s' 2>/dev/null; rm -rf '%s'", out, dir);
    free(dir);
}

/* ---- SIGKILL leftovers, secrets, exit status ---------------------------------------------- */

/* 5, 6. Killed repeatedly, then resumed: no temporary file (a planted one of a dead process
 * included) and no key object, public or private, that no request owns. */
static void test_kill_leaves_nothing(void)
{
    char batch[600], out[600];
    snprintf(batch, sizeof batch, "%s/kill.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-kill", tmp);
    const int n = test_sanitized() ? 90 : 240;
    test_write_mixed_batch(batch, n, "kl", "faults");
    long before = test_ca_issued(home);
    for (int k = 0; k < 12; k++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "HSMENROLL_HOME='%s' exec '%s' run '%s' -o '%s' --progress never %s "
                 "2>>'%s/run.log'",
                 home, HSMENROLL_BIN, batch, out, k == 0 ? "" : "--resume", tmp);
        pid_t pid = test_spawn(cmd);
        usleep((useconds_t)(100000 + rand() % 300000));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    /* A temporary file of a process that is gone, holding (as they do) an encrypted key. */
    test_sh("mkdir -p '%s' && echo secret > '%s/.kl-001.pem.999999.3.tmp'", out, out);
    CU_ASSERT_EQUAL(run_engine(batch, out, "--resume"), 0);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, NULL), n);
    CU_ASSERT_EQUAL(test_ca_issued(home), before + n);
    CU_ASSERT_EQUAL(test_sh("ls -a '%s' | grep -q '\\.tmp$'", out), 1);
    CU_ASSERT_EQUAL(token_gc_clean(), 0);
    CU_ASSERT_EQUAL(token_keys("kl"), n / 3);
}

/* 7. Generated passwords: in results.ndjson only, and a resumed run writes the same ones. */
static void test_no_password_in_journal(void)
{
    char batch[600], out[600];
    snprintf(batch, sizeof batch, "%s/pw.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-pw", tmp);
    test_write_mixed_batch(batch, 5, "pw", "faults");
    CU_ASSERT_EQUAL_FATAL(run_engine(batch, out, ""), 0);
    char path[700];
    snprintf(path, sizeof path, "%s/results.ndjson", out);
    json_t *res = test_load_ndjson(path);
    char *journal = test_sh_output(NULL, "cat '%s/journal.ndjson'", out);
    int passwords = 0;
    size_t i;
    json_t *r;
    json_array_foreach(res, i, r)
    {
        const char *pw = json_string_value(
            json_object_get(json_object_get(r, "CertificateInformation"), "Password"));
        if (pw == NULL)
            continue;
        passwords++;
        CU_ASSERT_PTR_NULL(journal ? strstr(journal, pw) : "");
    }
    CU_ASSERT_EQUAL(passwords, 4);
    CU_ASSERT_PTR_NULL(journal ? strstr(journal, "\"Password\"") : "");
    free(journal);
    char saved[700];
    snprintf(saved, sizeof saved, "%s/pw-results.ndjson", tmp);
    test_sh("sort '%s' > '%s'", path, saved);
    CU_ASSERT_EQUAL(run_engine(batch, out, "--resume"), 0);
    CU_ASSERT_EQUAL(test_sh("sort '%s' | cmp -s - '%s'", path, saved), 0);
    json_decref(res);
}

/* 8. A finished run with one invalid line exits 1, and so does its --resume. */
static void test_resume_exit_status(void)
{
    char batch[600], out[600];
    snprintf(batch, sizeof batch, "%s/exit.ndjson", tmp);
    snprintf(out, sizeof out, "%s/out-exit", tmp);
    test_write_mixed_batch(batch, 3, "ex", "faults");
    test_sh("echo '{\"Id\":\"bad\",\"Template\":\"Default\",\"KeyType\":\"nope\"}' >> '%s'", batch);
    CU_ASSERT_EQUAL(run_engine(batch, out, ""), 1);
    CU_ASSERT_EQUAL(run_engine(batch, out, "--resume"), 1);
    CU_ASSERT_EQUAL(test_count_results(out, "failed", NULL, NULL), 1);
    CU_ASSERT_EQUAL(test_count_results(out, "issued", NULL, NULL), 3);
}

int main(void)
{
    static const test_case cases[] = {
        TEST_CASE(test_lost_answers),        TEST_CASE(test_journal_bit_flip),
        TEST_CASE(test_journal_cut),         TEST_CASE(test_salvage_leaves_lost_requests_alone),
        TEST_CASE(test_file_in_the_way),     TEST_CASE(test_directory_unwritable),
        TEST_CASE(test_kill_leaves_nothing), TEST_CASE(test_no_password_in_journal),
        TEST_CASE(test_resume_exit_status),  TEST_END};
    return test_main("faults", cases, setup, teardown);
}
