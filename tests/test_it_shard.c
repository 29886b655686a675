/* Sharded runs end to end: four engines each take `run --shard I/4` of one batch, each with its own
 * token (its HSM partition) and one embedded CA between them; `merge` finds the union exact. The
 * partition follows the documented rule (checked with sha256sum), a shard SIGKILLed mid-way and
 * resumed still gives an exact union with nothing issued twice, and merge reports what is
 * missing, doubled or stray. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support.h"

#define SHARDS 4
#define LINES  240

static char *tmp, *home;

static int setup(void)
{
    if (test_engine_home("hsmenroll-shard", &tmp, &home) != 0)
        return 1;
    unsetenv("HSMENROLL_PIN");
    /* One configuration per shard: its own token, the home's embedded CA. */
    for (int i = 0; i < SHARDS; i++) {
        char path[600], text[2048];
        snprintf(path, sizeof path, "%s/shard-%d.json", tmp, i);
        snprintf(text, sizeof text,
                 "{\"Hsm\":{\"Tokens\":[\"shard-%d\"],\"PinFile\":\"%s/pin\",\"SoPinFile\":"
                 "\"%s/so-pin\"},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"embedded\","
                 "\"Type\":\"local\",\"Home\":\"%s/"
                 "ca\",\"Token\":\"hsmenroll-ca\",\"PinFile\":\"home/ca-pin\"}],"
                 "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[1]}],"
                 "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1}]}",
                 i, home, home, home);
        if (test_write_file(path, text) != 0 ||
            test_sh("SOFTHSM2_CONF='%s/softhsm2.conf' '%s' token init --config '%s' -q", home,
                    HSMENROLL_BIN, path) != 0)
            return 1;
    }
    return 0;
}

static int teardown(void)
{
    test_engine_home_free(tmp, home);
    return 0;
}

/* A batch of LINES requests with Ids PREFIX-n, plus a line that is not JSON and a second line
 * with an Id already used (both fail, each in exactly one shard). */
static void write_batch(const char *path, const char *prefix)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int i = 1; i <= LINES; i++)
        fprintf(f,
                "{\"Id\":\"%s-%d\",\"Template\":\"Default\",\"Subject\":\"CN=%s-%d.shard."
                "example\",\"KeyType\":\"ECC\",\"Format\":\"PEM\"}\n",
                prefix, i, prefix, i);
    fprintf(f,
            "this is not json\n{\"Id\":\"%s-7\",\"Template\":\"Default\",\"Subject\":\"CN=x\"}\n",
            prefix);
    fclose(f);
}

/* `run --shard I/4` for shard i of batch into TMP/NAME-i (extra options appended). */
static int run_shard(const char *batch, const char *name, int i, const char *extra)
{
    return test_sh("SOFTHSM2_CONF='%s/softhsm2.conf' '%s' run '%s' -o '%s/%s-%d' --config "
                   "'%s/shard-%d.json' --shard %d/%d -q %s 2>>'%s/%s-%d.log'",
                   home, HSMENROLL_BIN, batch, tmp, name, i, tmp, i, i, SHARDS, extra, tmp, name,
                   i);
}

static json_t *merge_report(const char *batch, const char *shards, int *status)
{
    return test_sh_json(status, "cd '%s' && '%s' merge '%s' %s -o merged.ndjson --json", tmp,
                        HSMENROLL_BIN, batch, shards);
}

static json_int_t member(json_t *o, const char *name)
{
    return json_integer_value(json_object_get(o, name));
}

static void test_four_shards_exact_union(void)
{
    char batch[600];
    snprintf(batch, sizeof batch, "%s/batch.ndjson", tmp);
    write_batch(batch, "dev");
    long before = test_ca_issued(home);
    /* The four engines at once, on one CA. Each exits 1: its share of the two bad lines fails
     * (or 0 when it got neither). */
    CU_ASSERT_EQUAL(test_sh("pids=''; for i in 0 1 2 3; do SOFTHSM2_CONF='%s/softhsm2.conf' '%s' "
                            "run '%s' -o '%s/s-'$i --config '%s/shard-'$i'.json' --shard $i/4 -q "
                            "2>'%s/s-'$i'.log' & pids=\"$pids $!\"; done; rc=0; for p in $pids; "
                            "do wait $p; [ $? -le 1 ] || rc=1; done; [ $rc = 0 ] || "
                            "tail -n 20 '%s'/s-?.log >&2; exit $rc",
                            home, HSMENROLL_BIN, batch, tmp, tmp, tmp, tmp),
                    0);
    int status;
    json_t *report = merge_report(batch, "s-0 s-1 s-2 s-3", &status);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(report);
    CU_ASSERT_TRUE(json_is_true(json_object_get(report, "Exact")));
    CU_ASSERT_EQUAL(member(report, "Lines"), LINES + 2);
    CU_ASSERT_EQUAL(member(report, "Results"), LINES + 2);
    CU_ASSERT_EQUAL(member(report, "Issued"), LINES);
    CU_ASSERT_EQUAL(member(report, "Failed"), 2);
    json_decref(report);
    /* The merged file: one result per line, in batch order. */
    char *lines = test_sh_output(NULL, "jq -r .Line '%s/merged.ndjson' | tr '\\n' ' '", tmp);
    char want[8192] = "";
    for (int l = 1; l <= LINES + 2; l++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%d ", l);
    CU_ASSERT_STRING_EQUAL(lines ? lines : "", want);
    free(lines);
    /* Every shard did some of the work, each certificate verifies, the CA issued each once with
     * unique KeyfactorIDs although four processes appended to its log. */
    int verified = 0;
    for (int i = 0; i < SHARDS; i++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/s-%d", tmp, i);
        int n = test_verified_files(dir, home);
        CU_ASSERT_TRUE(n > LINES / SHARDS / 3);
        verified += n;
    }
    CU_ASSERT_EQUAL(verified, LINES);
    CU_ASSERT_EQUAL(test_ca_issued(home), before + LINES);
    CU_ASSERT_EQUAL(test_sh("grep -o '\"KeyfactorID\":[0-9]*' '%s/ca/issued.ndjson' | sort | uniq "
                            "-d | grep -q .",
                            home),
                    1);
    /* The documented rule, by a third-party tool: shard = first 8 bytes of SHA-256(Id) mod N;
     * a line without an Id goes by (line - 1) mod N (line 241, "not json": shard 0). */
    for (int k = 1; k <= LINES; k += 37) {
        /* 16 is 0 mod 4: the 64-bit value mod 4 is its 16th hex digit mod 4. */
        char *shard = test_sh_output(
            NULL, "h=$(printf %%s 'dev-%d' | sha256sum | cut -c16); echo $(( 0x$h %% 4 ))", k);
        int s = shard ? atoi(shard) : -1;
        free(shard);
        CU_ASSERT_EQUAL(test_sh("jq -s -e 'map(select(.Id == \"dev-%d\")) | length == 1' "
                                "'%s/s-%d/results.ndjson' "
                                ">/dev/null",
                                k, tmp, s),
                        0);
    }
    CU_ASSERT_EQUAL(test_sh("jq -s -e 'map(select(.Line == %d)) | length == 1' "
                            "'%s/s-0/results.ndjson' >/dev/null",
                            LINES + 1, tmp),
                    0);
}

/* A shard SIGKILLed mid-way and resumed: the union is still exact and nothing is issued twice.
 * Resuming with another --shard is refused; merge reports a missing shard, a doubled one and a
 * stray results file. */
static void test_killed_shard_resumes(void)
{
    char batch[600];
    snprintf(batch, sizeof batch, "%s/batch2.ndjson", tmp);
    write_batch(batch, "node");
    long before = test_ca_issued(home);
    for (int i = 0; i < SHARDS; i++)
        if (i != 2)
            CU_ASSERT_TRUE(run_shard(batch, "k", i, "") <= 1);
    /* Shard 2, slowed down to 40 requests/s and SIGKILLed once it has 10 results. */
    CU_ASSERT_EQUAL(test_sh("SOFTHSM2_CONF='%s/softhsm2.conf' '%s' run '%s' -o '%s/k-2' --config "
                            "'%s/shard-2.json' --shard 2/4 --rate 40 -q 2>/dev/null & pid=$!; "
                            "for t in $(seq 400); do [ $(cat '%s/k-2/results.ndjson' 2>/dev/null "
                            "| wc -l) -ge 10 ] && break; sleep 0.05; done; kill -9 $pid; wait "
                            "$pid 2>/dev/null; [ $? -eq 137 ]",
                            home, HSMENROLL_BIN, batch, tmp, tmp, tmp),
                    0);
    int status;
    json_t *report = merge_report(batch, "k-0 k-1 k-2 k-3", &status);
    CU_ASSERT_EQUAL(status, 1);
    CU_ASSERT_TRUE(member(report, "MissingCount") > 0);
    json_decref(report);
    /* Another shard's --resume of this journal is refused. */
    CU_ASSERT_EQUAL(test_sh("SOFTHSM2_CONF='%s/softhsm2.conf' '%s' run '%s' -o '%s/k-2' --config "
                            "'%s/shard-2.json' --shard 1/4 --resume -q 2>'%s/mismatch.log'",
                            home, HSMENROLL_BIN, batch, tmp, tmp, tmp),
                    2);
    char *log = test_sh_output(NULL, "cat '%s/mismatch.log'", tmp);
    CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "shard 2/4") : NULL);
    free(log);
    CU_ASSERT_TRUE(run_shard(batch, "k", 2, "--resume") <= 1);
    report = merge_report(batch, "k-0 k-1 k-2 k-3", &status);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_TRUE(json_is_true(json_object_get(report, "Exact")));
    CU_ASSERT_EQUAL(member(report, "Issued"), LINES);
    json_decref(report);
    CU_ASSERT_EQUAL(test_ca_issued(home), before + LINES);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/k-2", tmp);
    int n = test_sh("ls '%s'/*.pem | wc -l | grep -qx $(jq -r 'select(.Status == \"issued\") "
                    "| .Id' '%s/results.ndjson' | wc -l)",
                    dir, dir);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_TRUE(test_verified_files(dir, home) > 0);
    /* What merge reports: shard 3 left out, shard 1 given twice, and the results of another
     * batch (shard 3's, with other Ids). */
    CU_ASSERT_EQUAL(
        test_sh("sed 's/\"node-/\"other-/' '%s/k-3/results.ndjson' > '%s/other.ndjson'", tmp, tmp),
        0);
    report = merge_report(batch, "k-0 k-1 k-1 k-2 other.ndjson", &status);
    CU_ASSERT_EQUAL(status, 1);
    CU_ASSERT_FALSE(json_is_true(json_object_get(report, "Exact")));
    json_t *counts = test_sh_json(NULL,
                                  "printf '{\"k3\":%%d,\"k1\":%%d}' $(wc -l < "
                                  "'%s/k-3/results.ndjson') $(wc -l < '%s/k-1/results.ndjson')",
                                  tmp, tmp);
    json_int_t k3 = member(counts, "k3"), k1 = member(counts, "k1");
    CU_ASSERT_TRUE(k3 > 0 && k1 > 0);
    CU_ASSERT_EQUAL(member(report, "MissingCount"), k3);
    CU_ASSERT_EQUAL(member(report, "DoubledCount"), k1);
    CU_ASSERT_EQUAL(member(report, "StraysCount"), k3);
    json_t *stray = json_array_get(json_object_get(report, "Strays"), 0);
    const char *why = json_string_value(json_object_get(stray, "Why"));
    CU_ASSERT_PTR_NOT_NULL(why ? strstr(why, "another Id") : NULL);
    json_decref(counts);
    json_decref(report);
    /* Bad --shard values. */
    CU_ASSERT_EQUAL(test_sh("'%s' run '%s' --shard 4/4 2>/dev/null", HSMENROLL_BIN, batch), 2);
    CU_ASSERT_EQUAL(test_sh("'%s' run '%s' --shard x 2>/dev/null", HSMENROLL_BIN, batch), 2);
}

/* examples/shards/run-shard.sh, as the schedulers run it: shard 0 from GNU parallel (SHARD_INDEX),
 * 1 as a Kubernetes Indexed Job pod (JOB_COMPLETION_INDEX), 2 as a Slurm array task (task 7 of
 * an array starting at 5, the count from Slurm), 3 by hand, twice (the second run resumes its
 * finished journal and does nothing). The PIN and the module come from the environment; the
 * union is exact. */
static void test_scheduler_examples(void)
{
    char batch[600];
    snprintf(batch, sizeof batch, "%s/batch3.ndjson", tmp);
    write_batch(batch, "sched");
    long before = test_ca_issued(home);
    char *pin = test_sh_output(NULL, "cat '%s/pin'", home);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pin);
    pin[strcspn(pin, "\r\n")] = '\0';
    setenv("HSMENROLL_PIN", pin, 1);
    free(pin);
    char env[4096];
    snprintf(env, sizeof env,
             "SOFTHSM2_CONF='%s/softhsm2.conf' HSMENROLL_BIN='%s' HSMENROLL_BATCH='%s' "
             "HSMENROLL_OUT='%s/sched' HSMENROLL_CONFIG='%s/shard-%%i.json' "
             "HSMENROLL_MODULE=/usr/lib/softhsm/libsofthsm2.so",
             home, HSMENROLL_BIN, batch, tmp, tmp);
    const char *script = HSMENROLL_SOURCE_DIR "/examples/shards/run-shard.sh";
    CU_ASSERT_EQUAL(test_sh("%s HSMENROLL_SHARDS=4 parallel -j1 --halt now,fail=1 SHARD_INDEX={} "
                            "'%s' ::: 0 2>'%s/sched-0.log'",
                            env, script, tmp),
                    0);
    CU_ASSERT_EQUAL(test_sh("%s HSMENROLL_SHARDS=4 JOB_COMPLETION_INDEX=1 '%s' 2>'%s/sched-1.log'",
                            env, script, tmp),
                    0);
    CU_ASSERT_EQUAL(test_sh("%s SLURM_ARRAY_TASK_ID=7 SLURM_ARRAY_TASK_MIN=5 "
                            "SLURM_ARRAY_TASK_COUNT=4 '%s' 2>'%s/sched-2.log'",
                            env, script, tmp),
                    0);
    for (int again = 0; again < 2; again++)
        CU_ASSERT_EQUAL(test_sh("%s HSMENROLL_SHARDS=4 SHARD_INDEX=3 '%s' 2>>'%s/sched-3.log'", env,
                                script, tmp),
                        0);
    unsetenv("HSMENROLL_PIN");
    int status;
    json_t *report = test_sh_json(&status, "cd '%s/sched' && '%s' merge '%s' shard-* --json", tmp,
                                  HSMENROLL_BIN, batch);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_TRUE(json_is_true(json_object_get(report, "Exact")));
    CU_ASSERT_EQUAL(member(report, "Issued"), LINES);
    json_decref(report);
    CU_ASSERT_EQUAL(test_ca_issued(home), before + LINES);
    /* No script without an index. */
    CU_ASSERT_EQUAL(test_sh("%s HSMENROLL_SHARDS=4 '%s' 2>/dev/null", env, script), 2);
}

/* DIR with the example shard configurations and a SoftHSM store of its own (DIR/tokens,
 * configured by DIR/softhsm2.conf). 0 on success. */
static int make_shard_dir(const char *dir)
{
    return test_sh("mkdir -p '%s/tokens' && cp '%s'/examples/shards/shard-*.json '%s'/ && printf "
                   "'directories.tokendir = %%s\\nobjectstore.backend = file\\nlog.level = "
                   "ERROR\\n' '%s/tokens' > '%s/softhsm2.conf'",
                   dir, HSMENROLL_SOURCE_DIR, dir, dir, dir);
}

/* The README's recipe as written, on a new SoftHSM store each time: the example configurations
 * (examples/shards/shard-I.json: a token per shard, one CA token "shared-ca" between them, PINs
 * generated into files beside them), `token init` and `ca init` once, then the four shards at
 * once through GNU parallel and run-shard.sh, which finds hsmenroll on PATH and makes the shard
 * tokens itself. Before, shards started together failed for the shared CA token now and then
 * ("no token labelled"), and shards making tokens together made one token per process under
 * one label. Three rounds: every shard succeeds, each token exists once, merge finds the union
 * exact and the CA's issuance log has each request once. */
static void test_readme_recipe(void)
{
    const char *script = HSMENROLL_SOURCE_DIR "/examples/shards/run-shard.sh";
    char *bindir = test_sh_output(NULL, "dirname '%s'", HSMENROLL_BIN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bindir);
    bindir[strcspn(bindir, "\n")] = '\0';
    for (int round = 0; round < 3; round++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/recipe-%d", tmp, round);
        CU_ASSERT_EQUAL_FATAL(make_shard_dir(dir), 0);
        char batch[700];
        snprintf(batch, sizeof batch, "%s/batch.ndjson", dir);
        write_batch(batch, "fleet");
        /* The one-time preparation, then the shards, all four at once. */
        char env[2048];
        snprintf(env, sizeof env,
                 "cd '%s' && export SOFTHSM2_CONF='%s/softhsm2.conf' PATH='%s':\"$PATH\" "
                 "HSMENROLL_BATCH=batch.ndjson HSMENROLL_OUT=out HSMENROLL_SHARDS=4 "
                 "HSMENROLL_CONFIG=shard-%%i.json",
                 dir, dir, bindir);
        CU_ASSERT_EQUAL(test_sh("%s && hsmenroll token init --config shard-0.json -q 2>prep.log "
                                "&& hsmenroll ca init --config shard-0.json -q >>prep.log 2>&1",
                                env),
                        0);
        CU_ASSERT_EQUAL(test_sh("%s && parallel -j4 SHARD_INDEX={} '%s' ::: 0 1 2 3 "
                                "2>shards.log >/dev/null",
                                env, script),
                        0);
        char *log = test_sh_output(NULL, "cat '%s/shards.log'", dir);
        bool token_trouble = log == NULL || strstr(log, "no token labelled") != NULL ||
                             strstr(log, "tokens are labelled") != NULL;
        CU_ASSERT_FALSE(token_trouble);
        if (token_trouble)
            fprintf(stderr, "round %d: %s\n", round, log);
        free(log);
        /* Each token once: the shared CA token and the four shard tokens. */
        char *labels =
            test_sh_output(NULL,
                           "SOFTHSM2_CONF='%s/softhsm2.conf' softhsm2-util "
                           "--show-slots | sed -n 's/^ *Label: *\\([^ ]*\\).*/\\1/p' | grep . | "
                           "sort | tr '\\n' ' '",
                           dir);
        CU_ASSERT_STRING_EQUAL(labels ? labels : "", "shard-0 shard-1 shard-2 shard-3 shared-ca ");
        free(labels);
        int status;
        json_t *report = test_sh_json(&status,
                                      "cd '%s' && '%s' merge batch.ndjson out/shard-* -o "
                                      "out/results.ndjson --json",
                                      dir, HSMENROLL_BIN);
        CU_ASSERT_EQUAL(status, 0);
        CU_ASSERT_TRUE(json_is_true(json_object_get(report, "Exact")));
        CU_ASSERT_EQUAL(member(report, "MissingCount"), 0);
        CU_ASSERT_EQUAL(member(report, "DoubledCount"), 0);
        CU_ASSERT_EQUAL(member(report, "Issued"), LINES);
        json_decref(report);
        /* The CA's issuance log: each request once. */
        char *issued = test_sh_output(NULL,
                                      "jq -r .RequestId '%s/ca/issued.ndjson' 2>/dev/null | wc -l; "
                                      "jq -r .RequestId '%s/ca/issued.ndjson' | sort | uniq -d | "
                                      "wc -l",
                                      dir, dir);
        CU_ASSERT_STRING_EQUAL(issued ? issued : "", "240\n0\n");
        free(issued);
    }
    free(bindir);
}

/* Engines that make tokens at the same moment make each once: four `token init` at once on a new
 * SoftHSM store (each shard's token and the shared CA token), and four shards of the embedded
 * default at once on a new home (its key token, its CA token and its CA). Before, each process
 * found the token missing and made one: four tokens under one label, four CAs in turn. */
static void test_tokens_made_together(void)
{
    for (int round = 0; round < 3; round++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/together-%d", tmp, round);
        CU_ASSERT_EQUAL_FATAL(make_shard_dir(dir), 0);
        CU_ASSERT_EQUAL(test_sh("cd '%s' && export SOFTHSM2_CONF='%s/softhsm2.conf'; pids=''; "
                                "for i in 0 1 2 3; do '%s' token init --config shard-$i.json -q "
                                "2>>init.log & pids=\"$pids $!\"; done; rc=0; for p in $pids; do "
                                "wait $p || rc=1; done; exit $rc",
                                dir, dir, HSMENROLL_BIN),
                        0);
        char *labels = test_sh_output(NULL,
                                      "SOFTHSM2_CONF='%s/softhsm2.conf' softhsm2-util "
                                      "--show-slots | sed -n 's/^ *Label: *\\([^ ]*\\).*/\\1/p' "
                                      "| grep . | sort | tr '\\n' ' '",
                                      dir);
        CU_ASSERT_STRING_EQUAL(labels ? labels : "", "shard-0 shard-1 shard-2 shard-3 shared-ca ");
        free(labels);
        /* The embedded default on a new home: four shards at once. */
        char batch[700];
        snprintf(batch, sizeof batch, "%s/batch.ndjson", dir);
        write_batch(batch, "emb");
        CU_ASSERT_EQUAL(
            test_sh("cd '%s' && pids=''; for i in 0 1 2 3; do HSMENROLL_HOME='%s/home' "
                    "'%s' run batch.ndjson -o emb-$i --shard $i/4 -q 2>>emb.log & "
                    "pids=\"$pids $!\"; done; rc=0; for p in $pids; do wait $p; "
                    "[ $? -le 1 ] || rc=1; done; [ $rc = 0 ] || cat emb.log >&2; exit $rc",
                    dir, dir, HSMENROLL_BIN),
            0);
        labels = test_sh_output(NULL,
                                "SOFTHSM2_CONF='%s/home/softhsm2.conf' softhsm2-util --show-slots "
                                "| sed -n 's/^ *Label: *\\([^ ]*\\).*/\\1/p' | grep . | sort | "
                                "uniq -c | awk '{print $1}' | sort -u | tr '\\n' ' '",
                                dir);
        CU_ASSERT_STRING_EQUAL(labels ? labels : "", "1 "); /* each label once */
        free(labels);
        char h[700];
        snprintf(h, sizeof h, "%s/home", dir);
        CU_ASSERT_EQUAL(test_ca_issued(h), LINES);
        int verified = 0;
        for (int i = 0; i < SHARDS; i++) {
            char out[800];
            snprintf(out, sizeof out, "%s/emb-%d", dir, i);
            verified += test_verified_files(out, h);
        }
        CU_ASSERT_EQUAL(verified, LINES);
    }
}

/* run-shard.sh finds hsmenroll beside itself when neither HSMENROLL_BIN nor PATH gives it, and
 * says what to do when it is nowhere. */
static void test_script_finds_hsmenroll(void)
{
    CU_ASSERT_EQUAL(test_sh("mkdir -p '%s/beside' && cp '%s/examples/shards/run-shard.sh' "
                            "'%s/beside/' && ln -sf '%s' '%s/beside/hsmenroll'",
                            tmp, HSMENROLL_SOURCE_DIR, tmp, HSMENROLL_BIN, tmp),
                    0);
    /* An index the script refuses (no scheduler variable) stops it after the look-up; a shard
     * of a missing batch shows that the binary beside it ran. */
    CU_ASSERT_EQUAL(test_sh("cd '%s' && env -u HSMENROLL_BIN PATH=/usr/bin:/bin "
                            "SOFTHSM2_CONF='%s/softhsm2.conf' HSMENROLL_BATCH=nope.ndjson "
                            "HSMENROLL_OUT=beside-out HSMENROLL_SHARDS=2 SHARD_INDEX=0 "
                            "HSMENROLL_CONFIG='%s/shard-0.json' '%s/beside/run-shard.sh' "
                            "2>'%s/beside.log'; [ $? -eq 2 ] && grep -q 'nope.ndjson' "
                            "'%s/beside.log'",
                            tmp, home, tmp, tmp, tmp, tmp),
                    0);
    CU_ASSERT_EQUAL(test_sh("rm '%s/beside/hsmenroll' && env -u HSMENROLL_BIN PATH=/usr/bin:/bin "
                            "HSMENROLL_BATCH=b HSMENROLL_OUT=o HSMENROLL_SHARDS=2 SHARD_INDEX=0 "
                            "HSMENROLL_CONFIG=c '%s/beside/run-shard.sh' 2>'%s/none.log'; "
                            "[ $? -eq 2 ] && grep -q 'hsmenroll not found' '%s/none.log'",
                            tmp, tmp, tmp, tmp),
                    0);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_four_shards_exact_union),
        TEST_CASE(test_killed_shard_resumes),
        TEST_CASE(test_scheduler_examples),
        TEST_CASE(test_tokens_made_together),
        TEST_CASE(test_readme_recipe),
        TEST_CASE(test_script_finds_hsmenroll),
        TEST_END,
    };
    return test_main("shard", cases, setup, teardown);
}
