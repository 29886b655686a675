/* The files that hold generated passwords (results.ndjson, the journal, merge's output) against a
 * local attacker who plants links in the output directory (issue 17, item 12): never written
 * through a symbolic or hard link, always mode 0600; the real binary on the embedded default. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support.h"

static char *tmp, *home;
static char batch[700];

#define PRECIOUS "precious content\n"

static int setup(void)
{
    if (test_engine_home("hsmenroll-private", &tmp, &home) != 0)
        return 1;
    snprintf(batch, sizeof batch, "%s/batch.ndjson", tmp);
    return test_write_file(batch, "{\"Id\":\"p-1\",\"Template\":\"Default\",\"Subject\":\"CN=p-1\","
                                  "\"KeyType\":\"ECC\",\"KeyLength\":256,\"Format\":\"PFX\"}\n"
                                  "{\"Id\":\"p-2\",\"Template\":\"Default\",\"Subject\":\"CN=p-2\","
                                  "\"KeyType\":\"ECC\",\"KeyLength\":256,\"Format\":\"PFX\"}\n");
}

static int teardown(void)
{
    test_engine_home_free(tmp, home);
    return 0;
}

/* `run` of the batch into OUT (under TMP) with extra options; its stderr into TMP/err.log. */
static int run_into(const char *out, const char *extra)
{
    return test_sh("HSMENROLL_HOME='%s' '%s' run '%s' -o '%s/%s' -q %s 2>'%s/err.log'", home,
                   HSMENROLL_BIN, batch, tmp, out, extra, tmp);
}

static bool err_log_has(const char *needle)
{
    char path[700];
    snprintf(path, sizeof path, "%s/err.log", tmp);
    char *text = test_read_file(path, NULL);
    bool found = text != NULL && strstr(text, needle) != NULL;
    if (!found)
        fprintf(stderr, "  stderr: %s\n", text ? text : "(none)");
    free(text);
    return found;
}

static bool file_is(const char *path, const char *content)
{
    char *text = test_read_file(path, NULL);
    bool same = text != NULL && strcmp(text, content) == 0;
    free(text);
    return same;
}

static int mode_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

/* A symbolic link planted at OUT/results.ndjson. A dangling one (the target would be created
 * outside OUT): the run refuses the directory (exit 2) and creates nothing. With --force and a
 * link to an existing file: the link is moved aside with the earlier outputs, never followed, and
 * the new results are a regular 0600 file. Under --resume (the results are opened again in
 * place): UNSAFE_OUTPUT, exit 2, the target unchanged. */
static void test_results_symlink_refused(void)
{
    char out[800], link[900], target[800];
    snprintf(out, sizeof out, "%s/out-link", tmp);
    snprintf(link, sizeof link, "%s/results.ndjson", out);
    snprintf(target, sizeof target, "%s/stolen.ndjson", tmp);
    CU_ASSERT_EQUAL_FATAL(mkdir(out, 0750), 0);
    CU_ASSERT_EQUAL_FATAL(symlink(target, link), 0);
    CU_ASSERT_EQUAL(run_into("out-link", ""), 2);
    CU_ASSERT_NOT_EQUAL(access(target, F_OK), 0); /* not created */

    CU_ASSERT_EQUAL_FATAL(test_write_file(target, PRECIOUS), 0);
    CU_ASSERT_EQUAL(run_into("out-link", "--force"), 0);
    CU_ASSERT_TRUE(file_is(target, PRECIOUS));
    struct stat st;
    CU_ASSERT_TRUE(lstat(link, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600);

    CU_ASSERT_EQUAL_FATAL(unlink(link), 0);
    CU_ASSERT_EQUAL_FATAL(symlink(target, link), 0);
    CU_ASSERT_EQUAL(run_into("out-link", "--resume"), 2);
    CU_ASSERT_TRUE(err_log_has("symbolic link"));
    CU_ASSERT_TRUE(file_is(target, PRECIOUS));
    CU_ASSERT_TRUE(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
}

/* A hard link at OUT/results.ndjson to a file outside OUT, under --resume: refused
 * (UNSAFE_OUTPUT), the other file keeps its content. */
static void test_results_hard_link_refused(void)
{
    char out[800], name[900], target[800];
    snprintf(out, sizeof out, "%s/out-hard", tmp);
    snprintf(name, sizeof name, "%s/results.ndjson", out);
    snprintf(target, sizeof target, "%s/other.ndjson", tmp);
    CU_ASSERT_EQUAL(run_into("out-hard", ""), 0);
    CU_ASSERT_EQUAL_FATAL(test_write_file(target, PRECIOUS), 0);
    CU_ASSERT_EQUAL_FATAL(unlink(name), 0);
    CU_ASSERT_EQUAL_FATAL(link(target, name), 0);
    CU_ASSERT_EQUAL(run_into("out-hard", "--resume"), 2);
    CU_ASSERT_TRUE(err_log_has("hard link"));
    CU_ASSERT_TRUE(file_is(target, PRECIOUS));
}

/* A normal run: results.ndjson and the journal are 0600 (a results.ndjson of mode 0644 left by
 * an older run is moved aside by --force); merge -o writes 0600 and refuses a symbolic link as its
 * output;
 * --resume refuses a journal replaced by a symbolic link. */
static void test_modes_merge_and_journal(void)
{
    char out[800], results[900], journal[900], merged[800], target[800];
    snprintf(out, sizeof out, "%s/out-ok", tmp);
    snprintf(results, sizeof results, "%s/results.ndjson", out);
    snprintf(journal, sizeof journal, "%s/journal.ndjson", out);
    snprintf(merged, sizeof merged, "%s/merged.ndjson", tmp);
    snprintf(target, sizeof target, "%s/merge-target.ndjson", tmp);
    CU_ASSERT_EQUAL_FATAL(mkdir(out, 0750), 0);
    CU_ASSERT_EQUAL_FATAL(test_write_file(results, "old\n"), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(results, 0644), 0);
    CU_ASSERT_EQUAL(run_into("out-ok", "--force"), 0);
    CU_ASSERT_EQUAL(mode_of(results), 0600);
    CU_ASSERT_EQUAL(mode_of(journal), 0600);
    char *lines = test_read_file(results, NULL);
    CU_ASSERT_EQUAL(lines ? test_count(lines, "\"issued\"") : -1, 2);
    free(lines);

    CU_ASSERT_EQUAL(test_sh("umask 022; '%s' merge '%s' '%s' -o '%s' 2>'%s/err.log'", HSMENROLL_BIN,
                            batch, out, merged, tmp),
                    0);
    CU_ASSERT_EQUAL(mode_of(merged), 0600);
    char *text = test_read_file(merged, NULL);
    CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "p-2") : NULL);
    free(text);

    unlink(merged);
    CU_ASSERT_EQUAL_FATAL(test_write_file(target, PRECIOUS), 0);
    CU_ASSERT_EQUAL_FATAL(symlink(target, merged), 0);
    CU_ASSERT_EQUAL(test_sh("'%s' merge '%s' '%s' -o '%s' 2>'%s/err.log'", HSMENROLL_BIN, batch,
                            out, merged, tmp),
                    2);
    CU_ASSERT_TRUE(err_log_has("symbolic link"));
    CU_ASSERT_TRUE(file_is(target, PRECIOUS));
    /* The temporary file of merge is planted as a link too: removed, not followed. */
    char merged_tmp[900];
    snprintf(merged_tmp, sizeof merged_tmp, "%s/fresh.ndjson.tmp", tmp);
    CU_ASSERT_EQUAL_FATAL(symlink(target, merged_tmp), 0);
    CU_ASSERT_EQUAL(test_sh("cd '%s' && '%s' merge '%s' '%s' -o fresh.ndjson 2>'%s/err.log'", tmp,
                            HSMENROLL_BIN, batch, out, tmp),
                    0);
    CU_ASSERT_TRUE(file_is(target, PRECIOUS));

    /* --resume with the journal replaced by a link to a copy of it: refused, the copy unchanged. */
    char copy[800];
    snprintf(copy, sizeof copy, "%s/journal-copy.ndjson", tmp);
    CU_ASSERT_EQUAL_FATAL(rename(journal, copy), 0);
    CU_ASSERT_EQUAL_FATAL(symlink(copy, journal), 0);
    char *before = test_read_file(copy, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);
    CU_ASSERT_NOT_EQUAL(run_into("out-ok", "--resume"), 0);
    CU_ASSERT_TRUE(err_log_has("symbolic link"));
    CU_ASSERT_TRUE(file_is(copy, before));
    free(before);
}

int main(void)
{
    static const test_case cases[] = {
        TEST_CASE(test_results_symlink_refused),
        TEST_CASE(test_results_hard_link_refused),
        TEST_CASE(test_modes_merge_and_journal),
        TEST_END,
    };
    return test_main("private files", cases, setup, teardown);
}
