/* The engine against real PKCS#11 modules (tests/modules/<env>.sh): per module a small key type x
 * storage x format matrix, every cell issued or refused before keygen with the code that says
 * why, and the embedded CA's issuance count equal to the certificates delivered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support.h"

#define SRC HSMENROLL_SOURCE_DIR

/* The matrix: Id in examples/all-key-types.ndjson; expected code per module ("" = issued). */
typedef struct cell {
    const char *id;
    const char *softhsm, *remote, *nss;
    bool eddsa;
} cell;

static const cell cells[] = {
    {"RSA-2048-PEM-export", "", "HSM_CANNOT_EXPORT", "", false},
    {"RSA-2048-DER-token", "", "", "", false},
    {"P256-PFX-export", "", "HSM_CANNOT_EXPORT", "", false},
    {"P256-PEM-token", "", "", "", false},
    {"Ed25519-PEM-export", "", "HSM_CANNOT_GENERATE", "HSM_CANNOT_GENERATE", true},
    {"Ed25519-DER-token", "", "HSM_CANNOT_GENERATE", "HSM_CANNOT_GENERATE", true},
};

static const char *expected(const cell *c, const char *env)
{
    return strcmp(env, "softhsm") == 0 ? c->softhsm : strcmp(env, "nss") == 0 ? c->nss : c->remote;
}

/* Starts the environment in DIR/env, writes DIR/cfg.json and DIR/batch.ndjson. */
static int start(const char *env, const char *dir, bool with_eddsa)
{
    if (test_sh("sh %s/tests/modules/%s.sh start %s/env >%s/start.log 2>&1", SRC, env, dir, dir) !=
        0)
        return -1;
    if (test_sh(". %s/env/env && python3 -c 'import json,os,sys; c=json.load(open(\"%s/examples/"
                "config.json\")); c[\"Hsm\"]={\"Tokens\":[os.environ[\"HSMENROLL_TEST_TOKEN\"]]}; "
                "c[\"CertificateAuthorities\"][0][\"Token\"]=os.environ[\"HSMENROLL_TEST_TOKEN_"
                "CA\"]; c[\"CertificateAuthorities\"][0][\"Home\"]=\"%s/ca\"; c.pop(\"Stores\","
                "None); json.dump(c,open(\"%s/cfg.json\",\"w\"))'",
                dir, SRC, dir, dir) != 0)
        return -1;
    char pattern[1024] = "";
    for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++)
        if (with_eddsa || !cells[i].eddsa)
            snprintf(pattern + strlen(pattern), sizeof pattern - strlen(pattern), "%s\"Id\":\"%s\"",
                     pattern[0] ? "|" : "", cells[i].id);
    return test_sh("grep -E '%s' %s/examples/all-key-types.ndjson >%s/batch.ndjson", pattern, SRC,
                   dir);
}

static void run_module(const char *env)
{
    char *dir = test_tmpdir("hsmenroll-modules");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    /* Under ASan no EdDSA keys on SoftHSM (its leak suppression needs slow unwinding). */
    bool eddsa = !test_sanitized();
    int started = start(env, dir, eddsa);
    CU_ASSERT_EQUAL(started, 0);
    if (started != 0) {
        test_sh("cat %s/start.log >&2", dir);
        test_sh("sh %s/tests/modules/%s.sh stop %s/env >/dev/null 2>&1", SRC, env, dir);
        test_rmtree(dir);
        free(dir);
        return;
    }
    CU_ASSERT_EQUAL(test_sh(". %s/env/env && cd %s && %s ca init --config cfg.json >/dev/null", dir,
                            dir, HSMENROLL_BIN),
                    0);
    int status = test_sh(". %s/env/env && cd %s && %s run --config cfg.json -o out batch.ndjson "
                         "2>run.log",
                         dir, dir, HSMENROLL_BIN);
    CU_ASSERT(status == 0 || status == 1);
    char path[512];
    snprintf(path, sizeof path, "%s/out/results.ndjson", dir);
    json_t *results = test_load_ndjson(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(results);
    long issued = 0, token_keys = 0;
    for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++) {
        if (!eddsa && cells[i].eddsa)
            continue;
        json_t *r = test_find_by(results, "Id", cells[i].id);
        CU_ASSERT_PTR_NOT_NULL(r);
        const char *status_text = json_string_value(json_object_get(r, "Status"));
        const char *code = json_string_value(json_object_get(json_object_get(r, "Error"), "Code"));
        const char *want = expected(&cells[i], env);
        if (want[0] == '\0') {
            CU_ASSERT_STRING_EQUAL(status_text ? status_text : "", "issued");
            issued++;
            token_keys += strstr(cells[i].id, "-token") != NULL;
        } else {
            CU_ASSERT_STRING_EQUAL(code ? code : "", want);
        }
        if ((want[0] == '\0') != (status_text && strcmp(status_text, "issued") == 0))
            fprintf(stderr, "%s %s: %s\n", env, cells[i].id, json_dumps(r, JSON_COMPACT));
    }
    json_decref(results);
    /* The CA issued exactly what was delivered. */
    char *count = test_sh_output(NULL, "grep -c . %s/ca/issued.ndjson || true", dir);
    CU_ASSERT_EQUAL(count ? atol(count) : -1, issued);
    free(count);
    /* Every delivered bundle verifies with openssl against the CA's chain. */
    char *bad = test_sh_output(
        NULL,
        "cd %s/out && n=0; for f in *.pem; do [ -e \"$f\" ] || continue; openssl verify -CAfile "
        "%s/ca/chain.pem \"$f\" >/dev/null 2>&1 || n=$((n+1)); done; echo $n",
        dir, dir);
    CU_ASSERT_EQUAL(bad ? atol(bad) : -1, 0);
    free(bad);
    /* The token holds the keys of its token-storage certificates and nothing of the refused or
     * exported requests. */
    char *keys =
        test_sh_output(NULL,
                       ". %s/env/env && cd %s && %s token list --keys --config cfg.json --json "
                       "| python3 -c 'import json,os,sys; print(sum(len(t.get(\"Keys\","
                       "[])) for t in json.load(sys.stdin) if t[\"Label\"]=="
                       "os.environ[\"HSMENROLL_TEST_TOKEN\"]))'",
                       dir, dir, HSMENROLL_BIN);
    CU_ASSERT_EQUAL(keys ? atol(keys) : -1, token_keys);
    free(keys);
    test_sh("sh %s/tests/modules/%s.sh stop %s/env >/dev/null 2>&1", SRC, env, dir);
    test_rmtree(dir);
    free(dir);
}

static void test_softhsm(void)
{
    run_module("softhsm");
}

static void test_p11kit_remote(void)
{
    run_module("p11kit-remote");
}

static void test_nss(void)
{
    run_module("nss");
}

int main(void)
{
    static const test_case cases[] = {TEST_CASE(test_softhsm), TEST_CASE(test_p11kit_remote),
                                      TEST_CASE(test_nss), TEST_END};
    return test_main("it_modules", cases, NULL, NULL);
}
