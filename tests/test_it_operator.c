/* An operator's first day, one trap per case, through the real binary on a real SoftHSM token:
 * no command writes over its input, a whole-file mistake is one exit-2 error with nothing
 * created, an earlier run's outputs are refused or moved aside (never lost), a stopped run says
 * what is left and how to finish, progress counts the right lines, and failures are visible with
 * "did you mean" at the default verbosity. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/support.h"

static char *tmp, *home;

static int setup(void)
{
    unsetenv("HSMENROLL_PIN");
    return test_engine_home("hsmenroll-operator", &tmp, &home);
}

static int teardown(void)
{
    test_engine_home_free(tmp, home);
    return 0;
}

/* Runs hsmenroll ARGS in TMP with the test's home; stderr into TMP/err.log. */
#define ENGINE      "cd '%s' && HSMENROLL_HOME='%s' '%s' "
#define ENGINE_ARGS tmp, home, HSMENROLL_BIN

static void write_batch(const char *name, const char *prefix, int lines)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int i = 1; i <= lines; i++)
        fprintf(f,
                "{\"Id\":\"%s-%d\",\"Template\":\"Default\",\"Subject\":\"CN=%s-%d\","
                "\"KeyType\":\"ECC\",\"Format\":\"PEM\"}\n",
                prefix, i, prefix, i);
    fclose(f);
}

static char *err_log(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/err.log", tmp);
    char *text = test_read_file(path, NULL);
    return text ? text : strdup("");
}

static bool exists(const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    return access(path, F_OK) == 0;
}

/* Item 1: validate --output over its own batch (by path, through a symlink, and as standard
 * input) is refused before anything is read; the batch is intact. merge and run too. */
static void test_no_command_writes_over_its_input(void)
{
    write_batch("v.ndjson", "v", 5);
    char path[600];
    snprintf(path, sizeof path, "%s/v.ndjson", tmp);
    char *before = test_read_file(path, NULL);
    CU_ASSERT_EQUAL(test_sh(ENGINE "validate v.ndjson --output v.ndjson 2>err.log", ENGINE_ARGS),
                    2);
    char *err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "would be written over"));
    free(err);
    CU_ASSERT_EQUAL(test_sh("cd '%s' && ln -sf v.ndjson link.ndjson", tmp), 0);
    CU_ASSERT_EQUAL(
        test_sh(ENGINE "validate link.ndjson --output ./v.ndjson 2>/dev/null", ENGINE_ARGS), 2);
    CU_ASSERT_EQUAL(
        test_sh(ENGINE "validate - --output v.ndjson <v.ndjson 2>/dev/null", ENGINE_ARGS), 2);
    CU_ASSERT_EQUAL(test_sh(ENGINE "merge v.ndjson v.ndjson -o v.ndjson 2>/dev/null", ENGINE_ARGS),
                    2);
    CU_ASSERT_EQUAL(
        test_sh(ENGINE "run v.ndjson -o rv --stats-json v.ndjson 2>/dev/null", ENGINE_ARGS), 2);
    CU_ASSERT_EQUAL(
        test_sh(ENGINE "run v.ndjson -o rv --journal v.ndjson 2>/dev/null", ENGINE_ARGS), 2);
    char *after = test_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);
    CU_ASSERT_PTR_NOT_NULL_FATAL(after);
    CU_ASSERT_STRING_EQUAL(before, after);
    CU_ASSERT_FALSE(exists("rv"));
    /* A different output is fine. */
    CU_ASSERT_EQUAL(
        test_sh(ENGINE "validate v.ndjson --output checked.ndjson 2>/dev/null", ENGINE_ARGS), 0);
    free(before);
    free(after);
}

/* Item 12: a JSON array, pretty-printed JSON and CSV are one BATCH_NOT_NDJSON, exit 2, nothing
 * created in OUT, no key made, and the message says how to convert; a batch with one bad line
 * among good ones still fails only that line. */
static void test_whole_file_mistakes(void)
{
    static const struct {
        const char *name, *content, *expect;
    } cases[] = {
        {"array.json",
         "[{\"Subject\":\"CN=a\",\"Template\":\"Default\"},\n{\"Subject\":\"CN=b\"}]\n",
         "jq -c '.[]'"},
        {"pretty.json", "{\n  \"Subject\": \"CN=a\",\n  \"Template\": \"Default\"\n}\n", "jq -c ."},
        {"devices.csv", "Id,Subject,KeyType\ndev-1,CN=dev-1,ECC\n", "looks like CSV"},
    };
    long issued_before = test_ca_issued(home);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", tmp, cases[i].name);
        CU_ASSERT_EQUAL_FATAL(test_write_file(path, cases[i].content), 0);
        CU_ASSERT_EQUAL(test_sh(ENGINE "run %s -o out-shape 2>err.log", ENGINE_ARGS, cases[i].name),
                        2);
        char *err = err_log();
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].expect));
        free(err);
        CU_ASSERT_FALSE(exists("out-shape"));
        CU_ASSERT_EQUAL(
            test_sh(ENGINE "run - -o out-shape <%s 2>/dev/null", ENGINE_ARGS, cases[i].name), 2);
        CU_ASSERT_FALSE(exists("out-shape"));
        CU_ASSERT_EQUAL(
            test_sh(ENGINE "validate %s >/dev/null 2>err.log", ENGINE_ARGS, cases[i].name), 2);
        err = err_log();
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "not NDJSON"));
        free(err);
    }
    CU_ASSERT_EQUAL(test_ca_issued(home), issued_before);
    /* The hint works as written. */
    CU_ASSERT_EQUAL(test_sh("cd '%s' && jq -c '.[]' array.json > batch.ndjson", tmp), 0);
    CU_ASSERT_EQUAL(test_sh(ENGINE "validate batch.ndjson >/dev/null 2>&1", ENGINE_ARGS), 1);
    /* One bad line among good ones is that line's own error. */
    char path[600];
    snprintf(path, sizeof path, "%s/mixed.ndjson", tmp);
    CU_ASSERT_EQUAL_FATAL(test_write_file(path, "{\"Id\":\"m-1\",\"Template\":\"Default\","
                                                "\"Subject\":\"CN=m-1\",\"Format\":\"PEM\"}\n"
                                                "not json\n"),
                          0);
    CU_ASSERT_EQUAL(test_sh(ENGINE "run mixed.ndjson -o out-mixed -q 2>/dev/null", ENGINE_ARGS), 1);
    CU_ASSERT_TRUE(exists("out-mixed/m-1.pem"));
}

/* Item 14: an OUT with bundles of an earlier run but no results.ndjson is refused; --force moves
 * them (results, journal, bundles) into OUT/earlier-<time>/ intact and says so. */
static void test_earlier_outputs_refused_then_moved_aside(void)
{
    write_batch("e.ndjson", "e", 3);
    CU_ASSERT_EQUAL_FATAL(test_sh(ENGINE "run e.ndjson -o out-e -q", ENGINE_ARGS), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/out-e/e-1.pem", tmp);
    char *bundle = test_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bundle);
    CU_ASSERT_EQUAL(test_sh("rm '%s/out-e/results.ndjson'", tmp), 0);
    CU_ASSERT_EQUAL(test_sh(ENGINE "run e.ndjson -o out-e 2>err.log", ENGINE_ARGS), 2);
    char *err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "of an earlier run"));
    free(err);
    char *same = test_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(same);
    CU_ASSERT_STRING_EQUAL(bundle, same);
    free(same);
    CU_ASSERT_EQUAL(test_sh(ENGINE "run e.ndjson -o out-e --force 2>err.log", ENGINE_ARGS), 0);
    err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "moved the 4 files of the earlier run into out-e/earlier-"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "keys of the earlier run stay"));
    free(err);
    char *moved = test_sh_output(NULL, "cat '%s'/out-e/earlier-*/e-1.pem", tmp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(moved);
    CU_ASSERT_STRING_EQUAL(moved, bundle);
    CU_ASSERT_EQUAL(test_sh("test -s '%s'/out-e/earlier-*/journal.ndjson", tmp), 0);
    CU_ASSERT_EQUAL(
        test_sh("test -s '%s/out-e/results.ndjson' && test -s '%s/out-e/e-1.pem'", tmp, tmp), 0);
    free(moved);
    free(bundle);
    /* An earlier --journal outside OUT is refused, then moved aside with --force. */
    CU_ASSERT_EQUAL(test_sh(ENGINE "run e.ndjson -o out-j --journal j.ndjson -q", ENGINE_ARGS), 0);
    CU_ASSERT_EQUAL(
        test_sh(ENGINE "run e.ndjson -o out-j2 --journal j.ndjson 2>/dev/null", ENGINE_ARGS), 2);
    CU_ASSERT_EQUAL(
        test_sh(ENGINE "run e.ndjson -o out-j2 --journal j.ndjson --force -q", ENGINE_ARGS), 0);
    CU_ASSERT_EQUAL(test_sh("ls '%s'/j.ndjson.earlier-* >/dev/null", tmp), 0);
}

/* Items 10 and 11: SIGINT mid-run: exit 3, the summary counts what was not started and prints
 * the --resume command, which finishes the batch as printed; the resumed run's progress counts
 * the whole batch; progress into a file is plain lines. */
static void test_stop_says_what_is_left_and_how_to_finish(void)
{
    write_batch("s.ndjson", "s", 400);
    char command[1200];
    snprintf(command, sizeof command,
             "cd '%s' && HSMENROLL_HOME='%s' exec '%s' run s.ndjson -o out-s -w 1 --progress "
             "always 2>err.log",
             tmp, home, HSMENROLL_BIN);
    /* Started in the background, SIGINT once some results exist. */
    int status = test_sh("%s & pid=$!; for i in $(seq 1 600); do "
                         "[ \"$(cat '%s/out-s/results.ndjson' 2>/dev/null | wc -l)\" -ge 5 ] "
                         "&& break; sleep 0.05; done; kill -INT $pid; wait $pid",
                         command, tmp);
    if (status != 3) { /* the run finished before the signal on a fast machine */
        fprintf(stderr, "the run ended (%d) before SIGINT: nothing to check\n", status);
        CU_ASSERT_EQUAL(status, 0);
        return;
    }
    char *err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not started; finish the run with: "));
    CU_ASSERT_PTR_NULL(strchr(err, '\r'));
    CU_ASSERT_PTR_NULL(strstr(err, "\033["));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "progress: "));
    const char *cmd = strstr(err, "finish the run with: ");
    char resume[1000] = "";
    long not_started = -1;
    const char *ns = strstr(err, "stopped before the end: ");
    if (ns != NULL)
        sscanf(ns, "stopped before the end: %ld", &not_started);
    if (cmd != NULL)
        sscanf(cmd + strlen("finish the run with: "), "%999[^\n]", resume);
    free(err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(strstr(resume, "--resume"));
    json_t *partial = NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/out-s/results.ndjson", tmp);
    partial = test_load_ndjson(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(partial);
    CU_ASSERT_EQUAL((long)json_array_size(partial) + not_started, 400);
    json_decref(partial);
    /* The printed command, run as printed (in the same directory). */
    CU_ASSERT_EQUAL(
        test_sh("cd '%s' && HSMENROLL_HOME='%s' %s --progress always 2>err.log", tmp, home, resume),
        0);
    err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "progress: 400/400 done"));
    free(err);
    json_t *all = test_load_ndjson(path);
    CU_ASSERT_EQUAL(all ? (long)json_array_size(all) : -1, 400);
    json_decref(all);
    /* --shard: the shard's own lines. */
    CU_ASSERT_EQUAL(test_sh(ENGINE "run s.ndjson -o out-shard --shard 1/4 --progress always "
                                   "--no-journal 2>err.log",
                            ENGINE_ARGS),
                    0);
    snprintf(path, sizeof path, "%s/out-shard/results.ndjson", tmp);
    json_t *shard = test_load_ndjson(path);
    err = err_log();
    char expect[64];
    snprintf(expect, sizeof expect, "progress: %zu/%zu done", json_array_size(shard),
             json_array_size(shard));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, expect));
    free(err);
    json_decref(shard);
}

/* Item 13: at the default verbosity the failures show by code with their first line; unknown
 * fields, templates and patterns say what was meant and what exists; --template / --pattern that
 * name nothing are usage errors. */
static void test_failures_visible_with_did_you_mean(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/typo.ndjson", tmp);
    CU_ASSERT_EQUAL_FATAL(
        test_write_file(path, "{\"Id\":\"t-1\",\"Template\":\"Default\",\"Subject\":\"CN=t\","
                              "\"KeySize\":2048}\n"
                              "{\"Id\":\"t-2\",\"Template\":\"Default\",\"Subjcet\":\"CN=t\"}\n"
                              "{\"Id\":\"t-3\",\"Template\":\"Default\",\"Subject\":\"CN=t\","
                              "\"Fromat\":\"PEM\"}\n"
                              "{\"Id\":\"t-4\",\"Template\":\"Defualt\",\"Subject\":\"CN=t\"}\n"
                              "{\"Id\":\"t-5\",\"EnrollmentPatternId\":42,\"Subject\":\"CN=t\"}\n"
                              "{\"Id\":\"t-6\",\"Template\":\"Default\",\"Subject\":\"CN=t-6\","
                              "\"Format\":\"PEM\"}\n"),
        0);
    CU_ASSERT_EQUAL(test_sh(ENGINE "run typo.ndjson -o out-typo 2>err.log", ENGINE_ARGS), 1);
    char *err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "3 failed with UNKNOWN_FIELD, first line 1 t-1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "did you mean \"KeyLength\"?"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "1 failed with UNKNOWN_TEMPLATE, first line 4 t-4"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "did you mean \"Default\"? (templates: Default)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "1 failed with UNKNOWN_PATTERN"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "patterns: 1 (Default)"));
    free(err);
    char *out = test_sh_output(NULL, ENGINE "validate typo.ndjson 2>/dev/null", ENGINE_ARGS);
    CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "did you mean \\\"Subject\\\"?") : NULL);
    CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "did you mean \\\"Format\\\"?") : NULL);
    free(out);
    CU_ASSERT_EQUAL(
        test_sh(ENGINE "run typo.ndjson -o out-nope --template Nope 2>err.log", ENGINE_ARGS), 2);
    err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--template Nope: no such template"));
    free(err);
    CU_ASSERT_FALSE(exists("out-nope"));
    CU_ASSERT_EQUAL(
        test_sh(ENGINE "validate typo.ndjson --pattern 7 >/dev/null 2>err.log", ENGINE_ARGS), 2);
    err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--pattern 7: no such enrollment pattern"));
    free(err);
}

/* Items 4 and 5: the default home is per user (HOME, XDG_DATA_HOME), the same from any working
 * directory, nothing made in the working directory; a home copied elsewhere (the README's tmpfs
 * recipe) uses its own tokens once the original is gone, with the same CA. */
static void test_home_per_user_and_movable(void)
{
    CU_ASSERT_EQUAL_FATAL(test_sh("mkdir -p '%s/user' '%s/wd1' '%s/wd2'", tmp, tmp, tmp), 0);
    CU_ASSERT_EQUAL(test_sh("cd '%s/wd1' && env -u HSMENROLL_HOME -u XDG_DATA_HOME HOME='%s/user' "
                            "'%s' ca init -q",
                            tmp, tmp, HSMENROLL_BIN),
                    0);
    char *a = test_sh_output(NULL,
                             "cd '%s/wd2' && env -u HSMENROLL_HOME -u XDG_DATA_HOME HOME='%s/user' "
                             "'%s' ca show --json",
                             tmp, tmp, HSMENROLL_BIN);
    char root[600];
    snprintf(root, sizeof root, "%s/user/.local/share/hsmenroll/ca/root.pem", tmp);
    CU_ASSERT_EQUAL(access(root, F_OK), 0);
    CU_ASSERT_EQUAL(
        test_sh("test ! -e '%s/wd1/.hsmenroll' && test ! -e '%s/wd2/.hsmenroll'", tmp, tmp), 0);
    CU_ASSERT_PTR_NOT_NULL(a ? strstr(a, "\"Issued\"") : NULL);
    free(a);
    /* XDG_DATA_HOME wins over HOME. */
    CU_ASSERT_EQUAL(test_sh("cd '%s/wd2' && env -u HSMENROLL_HOME XDG_DATA_HOME='%s/xdg' "
                            "HOME='%s/user' '%s' token list -q >/dev/null && test -f "
                            "'%s/xdg/hsmenroll/softhsm2.conf'",
                            tmp, tmp, tmp, HSMENROLL_BIN, tmp),
                    0);

    /* The tmpfs recipe: run, copy the home, remove the original, run on the copy. */
    write_batch("h.ndjson", "h", 3);
    CU_ASSERT_EQUAL_FATAL(test_sh("cd '%s' && HSMENROLL_HOME='%s/fast' '%s' run h.ndjson -o "
                                  "out-h1 -q",
                                  tmp, tmp, HSMENROLL_BIN),
                          0);
    CU_ASSERT_EQUAL(test_sh("cp -a '%s/fast' '%s/disk' && rm -rf '%s/fast'", tmp, tmp, tmp), 0);
    CU_ASSERT_EQUAL(test_sh("cd '%s' && HSMENROLL_HOME='%s/disk' '%s' run h.ndjson -o out-h2 "
                            "2>err.log",
                            tmp, tmp, HSMENROLL_BIN),
                    0);
    char *err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "the home moved"));
    CU_ASSERT_PTR_NULL(strstr(err, "initialized token")); /* its own tokens, not new ones */
    free(err);
    CU_ASSERT_EQUAL(
        test_sh("grep -q 'tokendir = %s/disk/tokens' '%s/disk/softhsm2.conf'", tmp, tmp), 0);
    CU_ASSERT_EQUAL(test_sh("cd '%s' && openssl verify -CAfile disk/ca/root.pem -untrusted "
                            "disk/ca/issuing.pem out-h1/h-1.pem out-h2/h-1.pem >/dev/null",
                            tmp),
                    0);
    char disk[600];
    snprintf(disk, sizeof disk, "%s/disk", tmp);
    CU_ASSERT_EQUAL(test_ca_issued(disk), 6);
}

/* A key made in the key token with OpenSC's pkcs11-tool (by slot: labels match by prefix
 * there): no journal, results file, certificate object or issuance knows it. */
static int stray_key(const char *label, const char *id)
{
    return test_sh(
        "cd '%s' && SOFTHSM2_CONF='%s/softhsm2.conf' pkcs11-tool --module '%s' --slot "
        "\"$(HSMENROLL_HOME='%s' '%s' token list --json | jq '.[] | "
        "select(.Label == \"hsmenroll-keys\") | .Slot')\" --login --pin \"$(cat '%s/pin')\" "
        "--keypairgen --key-type EC:prime256v1 --id %s --label %s >/dev/null 2>&1",
        tmp, home, HSMENROLL_SOFTHSM_MODULE, home, HSMENROLL_BIN, home, id, label);
}

static long token_keys(const char *prefix)
{
    char *keys = test_sh_output(NULL, ENGINE "token list --keys --json 2>/dev/null", ENGINE_ARGS);
    char needle[64];
    snprintf(needle, sizeof needle, "\"Label\": \"%s", prefix);
    long n = test_count(keys ? keys : "", needle);
    free(keys);
    return n;
}

/* Item 6: token gc given only the last run's journal does not take an earlier, delivered run's
 * keys for orphans (the CA certified them; or its results file says so), and --delete destroys
 * only the keys of the listing the operator saw, confirmed by file. */
static void test_token_gc_spares_delivered_keys(void)
{
    for (int r = 0; r < 2; r++) {
        char path[600];
        snprintf(path, sizeof path, "%s/gc-%c.ndjson", tmp, 'a' + r);
        FILE *f = fopen(path, "w");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        for (int i = 1; i <= 3; i++)
            fprintf(f,
                    "{\"Id\":\"gc%c-%d\",\"Template\":\"Default\",\"Subject\":\"CN=gc%c-%d\","
                    "\"KeyType\":\"%s\",\"KeyStorage\":\"token\",\"Format\":\"PEM\"}\n",
                    'a' + r, i, 'a' + r, i, i == 3 ? "RSA" : "ECC");
        fclose(f);
        CU_ASSERT_EQUAL(
            test_sh(ENGINE "run gc-%c.ndjson -o out-gc%c -q", ENGINE_ARGS, 'a' + r, 'a' + r), 0);
    }
    /* The first run's journal is not named: its keys are certified by the CA, not orphans. */
    CU_ASSERT_EQUAL(test_sh(ENGINE "token gc --journal out-gcb/journal.ndjson >list.txt 2>err.log",
                            ENGINE_ARGS),
                    0);
    char *err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "certified by the CA"));
    free(err);
    /* A key nothing knows is the one orphan. */
    CU_ASSERT_EQUAL_FATAL(stray_key("stray-1", "0badc0de01"), 0);
    char *listed = test_sh_output(
        NULL, ENGINE "token gc --journal out-gcb/journal.ndjson 2>/dev/null", ENGINE_ARGS);
    CU_ASSERT_EQUAL(test_count(listed ? listed : "", "orphan "), 1);
    CU_ASSERT_PTR_NOT_NULL(listed ? strstr(listed, "stray-1") : NULL);
    free(listed);
    /* Without the issuance log, the first run's results file accounts for its keys. */
    CU_ASSERT_EQUAL(test_sh("mv '%s/ca/issued.ndjson' '%s/issued.aside'", home, tmp), 0);
    listed = test_sh_output(NULL, ENGINE "token gc --journal out-gcb/journal.ndjson 2>/dev/null",
                            ENGINE_ARGS);
    CU_ASSERT_EQUAL(test_count(listed ? listed : "", "orphan "), 4);
    free(listed);
    listed = test_sh_output(NULL,
                            ENGINE "token gc --journal out-gcb/journal.ndjson --results "
                                   "out-gca/results.ndjson 2>/dev/null",
                            ENGINE_ARGS);
    CU_ASSERT_EQUAL(test_count(listed ? listed : "", "orphan "), 1);
    free(listed);
    CU_ASSERT_EQUAL(test_sh("mv '%s/issued.aside' '%s/ca/issued.ndjson'", tmp, home), 0);

    /* --delete asks for the listing; one that is not the orphans of now deletes nothing. */
#define GC ENGINE "token gc --journal out-gcb/journal.ndjson "
    CU_ASSERT_EQUAL(test_sh(GC "--delete 2>err.log", ENGINE_ARGS), 2);
    err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--confirm"));
    free(err);
    CU_ASSERT_EQUAL(test_sh(GC "--json >list.json 2>/dev/null", ENGINE_ARGS), 1);
    CU_ASSERT_EQUAL_FATAL(stray_key("stray-2", "0badc0de02"), 0);
    CU_ASSERT_EQUAL(test_sh(GC "--delete --confirm list.json 2>err.log", ENGINE_ARGS), 2);
    err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nothing deleted"));
    free(err);
    CU_ASSERT_EQUAL(token_keys("stray-"), 2);
    /* The text listing, saved, confirms too. */
    CU_ASSERT_EQUAL(test_sh(GC ">list.txt 2>/dev/null", ENGINE_ARGS), 1);
    CU_ASSERT_EQUAL(test_sh(GC "--delete --confirm list.txt >/dev/null 2>&1", ENGINE_ARGS), 0);
    CU_ASSERT_EQUAL(token_keys("stray-"), 0);
    CU_ASSERT_EQUAL(token_keys("gca-"), 3);
    CU_ASSERT_EQUAL(token_keys("gcb-"), 3);
    CU_ASSERT_EQUAL(test_sh(GC ">/dev/null 2>&1", ENGINE_ARGS), 0);
#undef GC
}

/* Item 15 (part): a wrong PIN says where the PIN came from; a missing configuration is one plain
 * sentence (no "line -1, column -1"). */
static void test_messages_say_where(void)
{
    write_batch("p.ndjson", "p", 1);
    CU_ASSERT_EQUAL(test_sh("cd '%s' && HSMENROLL_PIN=wrong-pin HSMENROLL_HOME='%s' '%s' run "
                            "p.ndjson -o out-pin 2>err.log </dev/null",
                            tmp, home, HSMENROLL_BIN),
                    2);
    char *err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "(the PIN came from $HSMENROLL_PIN)"));
    CU_ASSERT_PTR_NULL(strstr(err, "wrong-pin"));
    free(err);
    CU_ASSERT_EQUAL(
        test_sh(ENGINE "run p.ndjson -o out-nocfg --config nope.json 2>err.log", ENGINE_ARGS), 2);
    err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "error: cannot open nope.json: No such file"));
    CU_ASSERT_PTR_NULL(strstr(err, "line -1"));
    CU_ASSERT_PTR_NULL(strstr(err, "nope.json: nope.json"));
    free(err);
}

/* Item 17 (in part): a bad option is one line saying what is wrong and one pointing to --help,
 * not the whole usage. */
static void test_bad_option_is_one_line(void)
{
    const char *cases[] = {"run --no-such-option", "token gc -Z", "run b.ndjson -o"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CU_ASSERT_EQUAL(test_sh(ENGINE "%s 2>err.log", ENGINE_ARGS, cases[i]), 2);
        char *err = err_log();
        CU_ASSERT_EQUAL(test_count(err, "\n"), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "--help` lists the options"));
        CU_ASSERT_PTR_NULL(strstr(err, "usage:"));
        free(err);
    }
}

/* Item 15 (in part): a hint that names a command keeps the options that chose the
 * configuration (--config FILE, --home DIR). */
static void test_hints_keep_options(void)
{
    CU_ASSERT_EQUAL(
        test_sh("cp '%s/examples/config.json' '%s/cfg.json'", HSMENROLL_SOURCE_DIR, tmp), 0);
    write_batch("h.ndjson", "h", 1);
    CU_ASSERT_EQUAL(
        test_sh("cd '%s' && SOFTHSM2_CONF='%s/softhsm2.conf' '%s' run h.ndjson -o out-h "
                "--config cfg.json 2>err.log",
                tmp, home, HSMENROLL_BIN),
        2);
    char *err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "create it with `hsmenroll token init --config cfg.json`"));
    free(err);
    CU_ASSERT_FALSE(exists("out-h"));
    CU_ASSERT_EQUAL(
        test_sh("cd '%s' && '%s' ca show --home 'other home' 2>err.log", tmp, HSMENROLL_BIN), 2);
    err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "create it with `hsmenroll ca init --home 'other home'`"));
    free(err);
}

/* Item 2's sibling: one label on two tokens (two modules behind p11-kit's proxy, a registration
 * left behind) is refused with both tokens named, before any key is made; it never picks one. */
static void test_one_label_on_two_tokens(void)
{
    CU_ASSERT_EQUAL(
        test_sh("mkdir -p '%s/dup/tokens' && printf 'directories.tokendir = %s/dup/tokens\\n"
                "objectstore.backend = file\\nlog.level = ERROR\\n' >'%s/dup/softhsm2.conf'",
                tmp, tmp, tmp),
        0);
    for (int i = 0; i < 2; i++)
        CU_ASSERT_EQUAL(test_sh("SOFTHSM2_CONF='%s/dup/softhsm2.conf' softhsm2-util --init-token "
                                "--free --label fleet-1 --pin 1234 --so-pin 12345678 >/dev/null",
                                tmp),
                        0);
    CU_ASSERT_EQUAL(
        test_sh("cp '%s/examples/config.json' '%s/dup/cfg.json'", HSMENROLL_SOURCE_DIR, tmp), 0);
    write_batch("dup/d.ndjson", "d", 1);
    CU_ASSERT_EQUAL(
        test_sh("cd '%s/dup' && SOFTHSM2_CONF='%s/dup/softhsm2.conf' HSMENROLL_PIN=1234 "
                "'%s' run d.ndjson -o out --config cfg.json 2>'%s/err.log'",
                tmp, tmp, HSMENROLL_BIN, tmp),
        2);
    char *err = err_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "2 tokens are labelled \"fleet-1\""));
    CU_ASSERT_PTR_NULL(strstr(err, "create it with"));
    free(err);
    CU_ASSERT_FALSE(exists("dup/out"));
    /* token list shows both, and lists no key of one under the other. */
    char *list = test_sh_output(NULL,
                                "cd '%s/dup' && SOFTHSM2_CONF='%s/dup/softhsm2.conf' '%s' "
                                "token list --config cfg.json 2>/dev/null | grep -c '^fleet-1 '",
                                tmp, tmp, HSMENROLL_BIN);
    CU_ASSERT_EQUAL(list ? atoi(list) : -1, 2);
    free(list);
}

/* Item 2: a home made by an earlier version (tokens "hsmenroll" and "hsmenroll-ca" under one
 * PIN, no layout mark) keeps its labels and its one PIN: nothing new is made beside them. */
static void test_legacy_home_keeps_its_tokens(void)
{
    CU_ASSERT_EQUAL(
        test_sh(
            "H='%s/legacy' && mkdir -p \"$H/tokens\" && printf 'directories.tokendir = %%s\\n"
            "objectstore.backend = file\\n' \"$H/tokens\" >'%s/legacy.conf' && printf 1234 "
            ">\"$H/pin\" && printf 12345678 >\"$H/so-pin\" && chmod 600 \"$H/pin\" \"$H/so-pin\" "
            "&& for t in hsmenroll hsmenroll-ca; do SOFTHSM2_CONF='%s/legacy.conf' softhsm2-util "
            "--init-token --free --label $t --pin 1234 --so-pin 12345678 >/dev/null || exit 1; "
            "done",
            tmp, tmp, tmp),
        0);
    CU_ASSERT_EQUAL(
        test_sh("cd '%s' && for i in 1 2; do printf "
                "'{\"Id\":\"old-%%s\",\"Template\":\"Default\",\"Subject\":"
                "\"CN=old-%%s\",\"KeyType\":\"ECC\",\"Format\":\"PEM\",\"KeyStorage\":"
                "\"token\"}\\n' $i $i; done >legacy.ndjson && HSMENROLL_HOME='%s/legacy' "
                "'%s' run legacy.ndjson -o out-legacy -q",
                tmp, tmp, HSMENROLL_BIN),
        0);
    char *uri = test_sh_output(NULL, "jq -r .KeyUri '%s/out-legacy/results.ndjson' | sort -u", tmp);
    CU_ASSERT_PTR_NOT_NULL(uri ? strstr(uri, ";token=hsmenroll;") : NULL);
    free(uri);
    CU_ASSERT_FALSE(exists("legacy/ca-pin"));
    CU_ASSERT_FALSE(exists("legacy/layout"));
    char *labels = test_sh_output(NULL,
                                  "HSMENROLL_HOME='%s/legacy' '%s' token list --json | jq -r "
                                  "'.[] | select(.Initialized) | .Label' | sort | tr '\\n' ' '",
                                  tmp, HSMENROLL_BIN);
    CU_ASSERT_STRING_EQUAL(labels ? labels : "", "hsmenroll hsmenroll-ca ");
    free(labels);
}

/* Item 14: --force twice within one second does not fail on the name of the directory it moves
 * the earlier outputs into (earlier-<time>-2). */
static void test_force_twice_in_one_second(void)
{
    write_batch("f.ndjson", "f", 2);
    CU_ASSERT_EQUAL(test_sh(ENGINE "run f.ndjson -o out-f -q", ENGINE_ARGS), 0);
    /* The names of this second and the next nine are taken already. */
    time_t now = time(NULL);
    for (int i = 0; i < 10; i++) {
        time_t t = now + i;
        struct tm tm;
        char stamp[32];
        gmtime_r(&t, &tm);
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
        CU_ASSERT_EQUAL(test_sh("mkdir '%s/out-f/earlier-%s'", tmp, stamp), 0);
    }
    CU_ASSERT_EQUAL(test_sh(ENGINE "run f.ndjson -o out-f --force -q", ENGINE_ARGS), 0);
    CU_ASSERT_EQUAL(
        test_sh("ls -d '%s'/out-f/earlier-*-2 >/dev/null 2>&1 && ls '%s'/out-f/earlier-*-2 "
                "| grep -q results.ndjson",
                tmp, tmp),
        0);
}

int main(void)
{
    static const test_case cases[] = {
        TEST_CASE(test_no_command_writes_over_its_input),
        TEST_CASE(test_whole_file_mistakes),
        TEST_CASE(test_earlier_outputs_refused_then_moved_aside),
        TEST_CASE(test_stop_says_what_is_left_and_how_to_finish),
        TEST_CASE(test_failures_visible_with_did_you_mean),
        TEST_CASE(test_home_per_user_and_movable),
        TEST_CASE(test_messages_say_where),
        TEST_CASE(test_token_gc_spares_delivered_keys),
        TEST_CASE(test_bad_option_is_one_line),
        TEST_CASE(test_hints_keep_options),
        TEST_CASE(test_force_twice_in_one_second),
        TEST_CASE(test_one_label_on_two_tokens),
        TEST_CASE(test_legacy_home_keeps_its_tokens),
        TEST_END,
    };
    return test_main("operator", cases, setup, teardown);
}
