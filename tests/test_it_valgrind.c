/* One integration run under valgrind memcheck: the sample batch (24 devices, every key type the
 * fleet uses) through the real binary on the embedded default, with no memory error and no
 * definite leak (beyond tests/valgrind.supp's SoftHSM one), and every certificate verified. Built
 * only without the sanitizers, which valgrind cannot run under. Four HSM lanes, not 32: valgrind
 * runs one thread at a time, and what is checked here is memory (the ASan build runs the lanes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support.h"

static char *tmp, *home;

static int setup(void)
{
    return test_engine_home("hsmenroll-valgrind", &tmp, &home);
}

static int teardown(void)
{
    test_engine_home_free(tmp, home);
    return 0;
}

static void test_sample_batch_under_memcheck(void)
{
    int rc =
        test_sh("HSMENROLL_HOME='%s' valgrind --quiet --leak-check=full "
                "--errors-for-leak-kinds=definite --error-exitcode=99 --num-callers=40 "
                "--suppressions='%s/tests/valgrind.supp' '%s' run "
                "'%s/examples/fleet.ndjson' -o '%s/out' -q --hsm-concurrency 4 2>'%s/memcheck.log'",
                home, HSMENROLL_SOURCE_DIR, HSMENROLL_BIN, HSMENROLL_SOURCE_DIR, tmp, tmp);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0) { /* what failed: memcheck's report, then each line that was not issued */
        fprintf(stderr, "valgrind run: exit %d\n", rc);
        test_sh("cat '%s/memcheck.log' >&2; jq -c 'select(.Status != \"issued\")' "
                "'%s/out/results.ndjson' >&2",
                tmp, tmp);
    }
    char out[600];
    snprintf(out, sizeof out, "%s/out", tmp);
    /* The PEM and DER certificates verify (the PFX files hold theirs under a password). */
    char *files = test_sh_output(NULL, "cd '%s' && ls *.pem *.der | wc -l", out);
    int certs = files ? atoi(files) : -1;
    free(files);
    CU_ASSERT_TRUE(certs > 0);
    CU_ASSERT_EQUAL(test_verified_files(out, home), certs);
    CU_ASSERT_EQUAL(test_sh("[ $(jq -s 'map(select(.Status == \"issued\")) | length' "
                            "'%s/out/results.ndjson') -eq 24 ]",
                            tmp),
                    0);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_sample_batch_under_memcheck),
        TEST_END,
    };
    return test_main("valgrind", cases, setup, teardown);
}
