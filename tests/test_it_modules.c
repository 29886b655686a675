/* The engine against real PKCS#11 modules (tests/modules/<env>.sh), one after the other: per module
 * `ca init` with its default keys, a key type x storage x format matrix (every cell issued or
 * refused before keygen with the code that says why), a batch killed with SIGKILL after its second
 * certificate and resumed, and a store reenrollment that changes the alias's subject; the embedded
 * CA's issuance equal to the certificates delivered, and no key left behind. */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "ca/hsm_signer.h"
#include "hsm/hsm.h"
#include "tests/support.h"

#define SRC      HSMENROLL_SOURCE_DIR
#define STORE_ID "6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10"
#define AGENT    "0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
#define ALIAS    "dev-1"

static const char *self; /* this program: `self populate ...` fills a store (see populate) */

/* The environments, in the order they run; the packages they need (missing: skipped). */
enum { SOFTHSM, PROXY, REMOTE, NSS, OCK, TPM2, ENVS };
static const struct env {
    const char *name, *packages;
    bool ec, export_keys, root; /* EC keygen, export storage, needs root (machine-wide) */
} envs[ENVS] = {
    [SOFTHSM] = {"softhsm", "softhsm2", true, true, false},
    [PROXY] = {"p11kit-proxy", "softhsm2 p11-kit-modules", true, true, false},
    [REMOTE] = {"p11kit-remote", "softhsm2 p11-kit p11-kit-modules", true, false, false},
    [NSS] = {"nss", "libnss3 libnss3-tools", true, true, false},
    [OCK] = {"opencryptoki", "opencryptoki libopencryptoki0 opensc", false, true, true},
    [TPM2] = {"tpm2",
              "swtpm libtpm2-pkcs11-1 libtss2-tcti-swtpm0 opensc tpm2-abrmd "
              "libtss2-tcti-tabrmd0 dbus-daemon",
              true, false, false},
};

/* The matrix: Id in examples/all-key-types.ndjson; expected code per environment ("" = issued). */
#define OK    ""
#define NOGEN "HSM_CANNOT_GENERATE"
#define NOEXP "HSM_CANNOT_EXPORT"
typedef struct cell {
    const char *id;
    const char *want[ENVS];
    bool eddsa;
} cell;

static const cell cells[] = {
    {"RSA-2048-PEM-export", {OK, OK, NOEXP, OK, OK, NOEXP}, false},
    {"RSA-2048-DER-token", {OK, OK, OK, OK, OK, OK}, false},
    {"P256-PFX-export", {OK, OK, NOEXP, OK, NOGEN, NOEXP}, false},
    {"P256-PEM-token", {OK, OK, OK, OK, NOGEN, OK}, false},
    {"Ed25519-PEM-export", {OK, OK, NOGEN, NOGEN, NOGEN, NOGEN}, true},
    {"Ed25519-DER-token", {OK, OK, NOGEN, NOGEN, NOGEN, NOGEN}, true},
};

#define KILL_LINES 6

/* `self populate TOKEN`: an alias as a device holds it, made the engine's way round: an RSA-2048
 * key pair in the token (label ALIAS) and a certificate for it (subject CN=dev-1-old) under the
 * same label and CKA_ID. The module, its initialisation string and the PIN come from the
 * environment file. Runs in its own process, so that no module stays loaded in the test's. */
static int populate(const char *label)
{
    hsm_error herr;
    const char *args = getenv("HSMENROLL_MODULE_INIT_ARGS");
    hsm_module *m =
        hsm_module_load_args(getenv("HSMENROLL_MODULE"), args && *args ? args : NULL, &herr);
    hsm_token token;
    hsm_session s;
    if (m == NULL || hsm_token_open(m, label, getenv("HSMENROLL_PIN"), &token, &herr) != 0 ||
        hsm_session_open(&token, &s, &herr) != 0) {
        fprintf(stderr, "populate: %s\n", herr.message);
        return 1;
    }
    hsm_key_spec spec = {.type = HSM_KEY_RSA, .rsa_bits = 2048};
    hsm_keypair pair;
    int rc = 1;
    if (hsm_generate_keypair_with_id(&s, &spec, HSM_STORAGE_TOKEN, ALIAS, NULL, &pair, &herr) ==
        0) {
        EVP_PKEY *issuer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        EVP_PKEY *pub = hsm_keypair_public(&pair, NULL);
        X509 *cert = X509_new();
        X509_NAME *name = X509_NAME_new();
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (unsigned char *)"dev-1-old", -1, -1,
                                   0);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
        X509_set_subject_name(cert, name);
        X509_set_issuer_name(cert, name);
        X509_gmtime_adj(X509_getm_notBefore(cert), -86400);
        X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
        X509_set_pubkey(cert, pub);
        X509_sign(cert, issuer, EVP_sha256());
        unsigned char *der = NULL, *subject = NULL, *serial = NULL;
        int len = i2d_X509(cert, &der), subject_len = i2d_X509_NAME(name, &subject);
        int serial_len = i2d_ASN1_INTEGER(X509_get_serialNumber(cert), &serial);
        /* NSS wants the issuer and serial number too. */
        hsm_certificate_der d = {der,
                                 subject,
                                 subject,
                                 serial,
                                 (size_t)len,
                                 (size_t)subject_len,
                                 (size_t)subject_len,
                                 (size_t)serial_len};
        rc = hsm_create_certificate(&s, &d, ALIAS, pair.id, HSM_KEY_ID_LEN, NULL, &herr) == 0 ? 0
                                                                                              : 1;
        OPENSSL_free(subject);
        OPENSSL_free(serial);
        OPENSSL_free(der);
        X509_NAME_free(name);
        X509_free(cert);
        EVP_PKEY_free(pub);
        EVP_PKEY_free(issuer);
        hsm_keypair_release(&pair);
    }
    if (rc != 0)
        fprintf(stderr, "populate: %s\n", herr.message);
    hsm_session_close(&s);
    hsm_token_close(&token);
    hsm_module_unload(m);
    return rc;
}

/* Starts the environment in DIR/env and writes DIR/cfg.json (one key token, the CA's token where
 * the module has a second one, a store on the key token) and the batches. */
static int start(int e, const char *dir, bool with_eddsa)
{
    if (test_sh("sh %s/tests/modules/%s.sh start %s/env >%s/start.log 2>&1", SRC, envs[e].name, dir,
                dir) != 0)
        return -1;
    if (test_sh(". %s/env/env && python3 -c 'import json,os; c=json.load(open(\"%s/examples/"
                "config.json\")); t=os.environ[\"HSMENROLL_TEST_TOKEN\"]; c[\"Hsm\"]={\"Tokens\":"
                "[t]}; ca=c[\"CertificateAuthorities\"][0]; ca[\"Token\"]=os.environ.get("
                "\"HSMENROLL_TEST_TOKEN_CA\",t); ca[\"Home\"]=\"%s/ca\"; c[\"Stores\"]=[{\"Id\":"
                "\"" STORE_ID "\",\"Token\":t,\"AgentGuid\":\"" AGENT "\"}]; "
                "json.dump(c,open(\"%s/cfg.json\",\"w\"))'",
                dir, SRC, dir, dir) != 0)
        return -1;
    char pattern[1024] = "";
    for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++)
        if (with_eddsa || !cells[i].eddsa)
            snprintf(pattern + strlen(pattern), sizeof pattern - strlen(pattern), "%s\"Id\":\"%s\"",
                     pattern[0] ? "|" : "", cells[i].id);
    if (test_sh("grep -E '%s' %s/examples/all-key-types.ndjson >%s/batch.ndjson", pattern, SRC,
                dir) != 0)
        return -1;
    /* The kill batch: P-256 (RSA-2048 where there is no EC), token and export alternating (all
     * token where keys cannot be exported). */
    char path[600];
    snprintf(path, sizeof path, "%s/kill.ndjson", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    for (int i = 1; i <= KILL_LINES; i++)
        fprintf(
            f,
            "{\"Id\":\"k-%d\",\"Template\":\"Default\",\"Subject\":\"CN=k-%d.example,O=Modules\","
            "\"Format\":\"PEM\",\"KeyType\":\"%s\",\"KeyLength\":%d,\"KeyStorage\":\"%s\"}\n",
            i, i, envs[e].ec ? "ECC" : "RSA", envs[e].ec ? 256 : 2048,
            envs[e].export_keys && i % 2 == 0 ? "export" : "token");
    fclose(f);
    snprintf(path, sizeof path, "%s/store.ndjson", dir);
    return test_write_file(
        path, "{\"Id\":\"re-1\",\"Operation\":\"Reenrollment\",\"KeystoreId\":\"" STORE_ID
              "\",\"Alias\":\"" ALIAS "\",\"SubjectName\":\"CN=dev-1-new,O=Modules\","
              "\"AgentGuid\":\"" AGENT "\",\"CertificateTemplate\":\"Default\","
              "\"KeyType\":\"RSA\",\"KeyLength\":2048}\n");
}

/* The issued lines of DIR/OUT/results.ndjson (each Id once), or -1 when an Id repeats. */
static long issued_in(const char *dir, const char *out, long *lines)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s/results.ndjson", dir, out);
    json_t *results = test_load_ndjson(path);
    if (results == NULL)
        return -1;
    long issued = 0;
    size_t i;
    json_t *r;
    json_array_foreach(results, i, r)
    {
        const char *id = json_string_value(json_object_get(r, "Id"));
        for (size_t k = 0; k < i; k++)
            if (strcmp(id ? id : "",
                       json_string_value(json_object_get(json_array_get(results, k), "Id"))) == 0)
                issued = -1000000;
        issued += strcmp(json_string_value(json_object_get(r, "Status")), "issued") == 0;
    }
    *lines = (long)json_array_size(results);
    json_decref(results);
    return issued < 0 ? -1 : issued;
}

static bool have_packages(int e)
{
    return test_sh("for p in %s; do dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q "
                   "'install ok installed' || exit 1; done",
                   envs[e].packages) == 0;
}

#define ENGINE(dir, ...) test_sh(". %s/env/env && cd %s && " __VA_ARGS__)

static void run_module(int e)
{
    const char *env = envs[e].name;
    if (!have_packages(e)) {
        fprintf(stderr,
                "\n  %s: skipped: a package of \"%s\" is not installed (scripts/setup.sh)\n", env,
                envs[e].packages);
        return;
    }
    if (envs[e].root && geteuid() != 0) {
        fprintf(stderr, "\n  %s: skipped: needs root (machine-wide daemon and paths)\n", env);
        return;
    }
    /* A machine-wide module (openCryptoki's pkcsslotd and fixed paths): one test program at a
     * time on this machine uses it (two suites running at once wait here for each other). */
    int lock = -1;
    if (envs[e].root) {
        lock =
            open("/run/lock/hsmenroll-test-opencryptoki.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lock >= 0 && flock(lock, LOCK_EX) != 0) {
            close(lock);
            lock = -1;
        }
    }
    char *dir = test_tmpdir("hsmenroll-modules");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    /* Under ASan no EdDSA keys on SoftHSM (its leak suppression needs slow unwinding). */
    bool eddsa = !test_sanitized();
    int started = start(e, dir, eddsa);
    CU_ASSERT_EQUAL(started, 0);
    if (started != 0) {
        test_sh("cat %s/start.log >&2", dir);
        goto stop;
    }
    /* token list --caps says what the matrix finds: per key type, generate (token) and export. */
    char *caps = test_sh_output(
        NULL,
        ". %s/env/env && cd %s && %s token list --caps --config cfg.json --json 2>/dev/null | "
        "python3 -c 'import json,os,sys; t=[t for t in json.load(sys.stdin) if t[\"Label\"]=="
        "os.environ[\"HSMENROLL_TEST_TOKEN\"]][0]; k={x[\"KeyType\"]:x for x in "
        "t[\"Capabilities\"][\"KeyTypes\"]}; sys.stdout.write(\"\".join(\"%%d%%d\" %% "
        "(k[n][\"Token\"], "
        "k[n][\"Export\"]) for n in (\"RSA-2048\",\"ECC-P256\",\"Ed25519\")))'",
        dir, dir, HSMENROLL_BIN);
    char want_caps[8];
    bool eddsa_here = cells[4].want[e][0] == '\0';
    snprintf(want_caps, sizeof want_caps, "1%d%d%d%d%d", envs[e].export_keys, envs[e].ec,
             envs[e].ec && envs[e].export_keys, eddsa_here, eddsa_here && envs[e].export_keys);
    CU_ASSERT_STRING_EQUAL(caps ? caps : "", want_caps);
    free(caps);
    /* Where the module has no EC, ECC CA keys are refused before any key is made, with what the
     * token can make. */
    if (!envs[e].ec) {
        CU_ASSERT_EQUAL(ENGINE(dir, "%s ca init --config cfg.json --key-type ECC 2>ca-ecc.log", dir,
                               dir, HSMENROLL_BIN),
                        2);
        CU_ASSERT_EQUAL(test_sh("grep -q 'cannot be made in token.*no CKM_EC_KEY_PAIR_GEN.*it can "
                                "make RSA-2048, RSA-3072, RSA-4096 (--key-type' %s/ca-ecc.log",
                                dir),
                        0);
        char *none = test_sh_output(NULL,
                                    ". %s/env/env && cd %s && %s token list --keys --config "
                                    "cfg.json --json 2>/dev/null | grep -c '\"Label\"' || true",
                                    dir, dir, HSMENROLL_BIN);
        /* one "Label" per token, none for a key */
        CU_ASSERT_EQUAL(none ? atol(none) : -1, 1);
        free(none);
    }
    /* ca init with the default keys: ECC, or RSA where the module has no EC, said so. */
    CU_ASSERT_EQUAL(
        ENGINE(dir, "%s ca init --config cfg.json >/dev/null 2>ca.log", dir, dir, HSMENROLL_BIN),
        0);
    char *ca = test_sh_output(
        NULL, ". %s/env/env && cd %s && %s ca show --config cfg.json --json 2>/dev/null", dir, dir,
        HSMENROLL_BIN);
    CU_ASSERT_PTR_NOT_NULL(
        ca ? strstr(ca, envs[e].ec ? "\"KeyType\": \"EC\"" : "\"KeyType\": \"RSA\"") : NULL);
    free(ca);
    if (!envs[e].ec)
        CU_ASSERT_EQUAL(test_sh("grep -q 'cannot generate the default ECC keys' %s/ca.log", dir),
                        0);

    /* The matrix. */
    int status = ENGINE(dir, "%s run --config cfg.json -o out batch.ndjson 2>run.log", dir, dir,
                        HSMENROLL_BIN);
    CU_ASSERT(status == 0 || status == 1);
    char path[512];
    snprintf(path, sizeof path, "%s/out/results.ndjson", dir);
    json_t *results = test_load_ndjson(path);
    CU_ASSERT_PTR_NOT_NULL(results);
    if (results == NULL) { /* the daemons are stopped all the same */
        test_sh("cat %s/run.log >&2", dir);
        goto stop;
    }
    long token_keys = 0;
    for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++) {
        if (!eddsa && cells[i].eddsa)
            continue;
        json_t *r = test_find_by(results, "Id", cells[i].id);
        CU_ASSERT_PTR_NOT_NULL(r);
        const char *status_text = json_string_value(json_object_get(r, "Status"));
        const char *code = json_string_value(json_object_get(json_object_get(r, "Error"), "Code"));
        const char *want = cells[i].want[e];
        if (want[0] == '\0') {
            CU_ASSERT_STRING_EQUAL(status_text ? status_text : "", "issued");
            token_keys += strstr(cells[i].id, "-token") != NULL;
        } else {
            CU_ASSERT_STRING_EQUAL(code ? code : "", want);
        }
        if ((want[0] == '\0') != (status_text && strcmp(status_text, "issued") == 0) ||
            (want[0] != '\0' && strcmp(code ? code : "", want) != 0))
            fprintf(stderr, "%s %s: %s\n", env, cells[i].id, json_dumps(r, JSON_COMPACT));
    }
    json_decref(results);

    /* Killed after the second certificate came back (before the journal knew it), resumed.
     * One lane, so that no other HSM call is under way when the kill comes: opencryptoki
     * rewrites its token data file in place (fopen "w", then fwrite), so a kill under another
     * lane's token write can leave the token without its data (a run here lost its token's
     * label after the kill). What a module survives of a kill is its own business; what the
     * engine does after one is what this step checks. */
    status = ENGINE(dir,
                    "HSMENROLL_FAULT_KILL_AFTER=2 %s run --config cfg.json -o out-kill "
                    "--workers 1 --hsm-concurrency 1 kill.ndjson 2>kill.log",
                    dir, dir, HSMENROLL_BIN);
    CU_ASSERT_EQUAL(status, 128 + 9);
    CU_ASSERT_EQUAL(ENGINE(dir,
                           "%s run --config cfg.json -o out-kill --resume kill.ndjson "
                           "2>>kill.log",
                           dir, dir, HSMENROLL_BIN),
                    0);
    long lines = 0;
    CU_ASSERT_EQUAL(issued_in(dir, "out-kill", &lines), KILL_LINES);
    CU_ASSERT_EQUAL(lines, KILL_LINES);
    token_keys += envs[e].export_keys ? KILL_LINES / 2 : KILL_LINES;

    /* A store reenrollment that changes the alias's subject (NSS keeps one subject per label). */
    CU_ASSERT_EQUAL(test_sh(". %s/env/env && '%s' populate \"$HSMENROLL_TEST_TOKEN\"", dir, self),
                    0);
    /* On NSS the old certificate goes first (a label keeps one subject): killed right after,
     * then resumed. Elsewhere that point is never reached and the first run completes. */
    status = ENGINE(dir,
                    "HSMENROLL_FAULT_KILL=store-old-certificate-retired %s run --config "
                    "cfg.json -o out-store store.ndjson 2>store.log",
                    dir, dir, HSMENROLL_BIN);
    CU_ASSERT_EQUAL(status, e == NSS ? 128 + 9 : 0);
    CU_ASSERT_EQUAL(ENGINE(dir,
                           "%s run --config cfg.json -o out-store --resume store.ndjson "
                           "2>>store.log",
                           dir, dir, HSMENROLL_BIN),
                    0);
    CU_ASSERT_EQUAL(issued_in(dir, "out-store", &lines), 1);
    /* The alias holds one complete entry: the new key and certificate. */
    int alias_ok = test_sh(
        ". %s/env/env && cd %s && %s token list --aliases --config cfg.json --json 2>/dev/null | "
        "python3 -c 'import json,sys; a=[a for s in json.load(sys.stdin) for a in s[\"Aliases\"] "
        "if a[\"Alias\"]==\"" ALIAS "\"]; sys.exit(not (len(a)==1 and a[0][\"Complete\"] and "
        "\"CN=dev-1-new\" in a[0].get(\"SubjectDN\",\"\") and \"Entries\" not in a[0]))'",
        dir, dir, HSMENROLL_BIN);
    CU_ASSERT_EQUAL(alias_ok, 0);
    if (alias_ok != 0)
        test_sh("cat %s/store.log >&2; . %s/env/env && cd %s && %s token list --aliases --config "
                "cfg.json >&2",
                dir, dir, dir, HSMENROLL_BIN);
    token_keys += 1;

    /* The CA issued exactly the certificates delivered. */
    long delivered = issued_in(dir, "out", &lines) + issued_in(dir, "out-kill", &lines) +
                     issued_in(dir, "out-store", &lines);
    char *count = test_sh_output(NULL, "grep -c . %s/ca/issued.ndjson || true", dir);
    CU_ASSERT_EQUAL(count ? atol(count) : -1, delivered);
    free(count);
    /* Every delivered bundle verifies with openssl against the CA's chain. */
    char *bad = test_sh_output(
        NULL,
        "n=0; for f in %s/out/*.pem %s/out-kill/*.pem %s/out-store/*.pem; do [ -e \"$f\" ] || "
        "continue; openssl verify -CAfile %s/ca/chain.pem \"$f\" >/dev/null 2>&1 || n=$((n+1)); "
        "done; echo $n",
        dir, dir, dir, dir);
    CU_ASSERT_EQUAL(bad ? atol(bad) : -1, 0);
    free(bad);
    /* The key token holds the keys of its token-storage certificates and the alias's new key,
     * nothing of the refused or exported requests, of the crash or of the alias's old entry (the
     * CA's own keys aside, where the module has a single token). */
    char *keys = test_sh_output(
        NULL,
        ". %s/env/env && cd %s && %s token list --keys --config cfg.json --json 2>/dev/null | "
        "python3 -c "
        "'import json,os,sys; print(sum(1 for t in json.load(sys.stdin) if t[\"Label\"]=="
        "os.environ[\"HSMENROLL_TEST_TOKEN\"] for k in t.get(\"Keys\",[]) if not "
        "k.get(\"Label\",\"\").startswith(\"hsmenroll-ca-\")))'",
        dir, dir, HSMENROLL_BIN);
    CU_ASSERT_EQUAL(keys ? atol(keys) : -1, token_keys);
    /* token gc knows every one of them from the three journals (the CA's keys are the engine's). */
    CU_ASSERT_EQUAL(ENGINE(dir,
                           "%s token gc --config cfg.json --journal out/journal.ndjson --journal "
                           "out-kill/journal.ndjson --journal out-store/journal.ndjson 2>gc.log",
                           dir, dir, HSMENROLL_BIN),
                    0);
    if (keys == NULL || atol(keys) != token_keys)
        test_sh(". %s/env/env && cd %s && %s token list --keys --config cfg.json >&2", dir, dir,
                HSMENROLL_BIN);
    free(keys);
stop:
    test_sh("sh %s/tests/modules/%s.sh stop %s/env >/dev/null 2>&1", SRC, env, dir);
    test_rmtree(dir);
    free(dir);
    if (lock >= 0)
        close(lock); /* releases the flock */
}

static void test_softhsm(void)
{
    run_module(SOFTHSM);
}

static void test_p11kit_proxy(void)
{
    run_module(PROXY);
}

static void test_p11kit_remote(void)
{
    run_module(REMOTE);
}

static void test_nss(void)
{
    run_module(NSS);
}

/* Machine-wide (pkcsslotd, fixed paths): the stop script stops pkcsslotd; the cases of this
 * program run one after the other, and other programs wait on the lock in run_module. */
static void test_opencryptoki(void)
{
    run_module(OCK);
}

static void test_tpm2(void)
{
    run_module(TPM2);
}

/* The journal's copy of the wrapping key on a module without AES-CBC-PAD: SoftHSM behind p11fault
 * with mechanisms hidden. Each step: four export lines killed after the second certificate and
 * resumed, the W record naming the scheme, every line issued once; with none of the schemes
 * left, export is refused before any key is made, and --no-journal exports. */
static void test_journal_seal(void)
{
    if (!have_packages(SOFTHSM))
        return;
    char *dir = test_tmpdir("hsmenroll-modules");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    CU_ASSERT_EQUAL_FATAL(start(SOFTHSM, dir, false), 0);
    CU_ASSERT_EQUAL(ENGINE(dir, "%s ca init --config cfg.json -q", dir, dir, HSMENROLL_BIN), 0);
    CU_ASSERT_EQUAL(test_sh("cd %s && for i in 1 2 3 4; do echo \"{\\\"Id\\\":\\\"e-$i\\\","
                            "\\\"Template\\\":\\\"Default\\\",\\\"Subject\\\":\\\"CN=e-$i\\\","
                            "\\\"KeyType\\\":\\\"ECC\\\",\\\"KeyStorage\\\":\\\"export\\\"}\"; "
                            "done >seal.ndjson",
                            dir),
                    0);
    static const struct {
        const char *hide, *seal;
    } steps[] = {
        {"CKM_AES_CBC_PAD", "AES-GCM"},
        {"CKM_AES_CBC_PAD CKM_AES_GCM", "RSA-OAEP-SHA1"}, /* SoftHSM: OAEP with SHA-1 only */
        {"CKM_AES_CBC_PAD CKM_AES_GCM CKM_RSA_PKCS_OAEP", NULL},
    };
    long delivered = 0, lines = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        test_sh(". %s/env/env && printf 'module %%s\\nhide-mechanism %s\\n' \"$HSMENROLL_MODULE\" "
                ">%s/fault.conf && rm -rf %s/seal-out",
                dir, steps[i].hide, dir, dir);
#define FAULTY(dir)                                                                                \
    ". %s/env/env && cd %s && P11FAULT_CONFIG=%s/fault.conf HSMENROLL_MODULE=" HSMENROLL_P11FAULT  \
    " "
        int status = test_sh(FAULTY(dir) "HSMENROLL_FAULT_KILL_AFTER=2 %s run --config cfg.json "
                                         "-o seal-out seal.ndjson 2>seal.log",
                             dir, dir, dir, HSMENROLL_BIN);
        if (steps[i].seal == NULL) {
            CU_ASSERT_EQUAL(status, 1);
            CU_ASSERT_EQUAL(
                test_sh("grep -c HSM_CANNOT_EXPORT %s/seal-out/results.ndjson | grep "
                        "-qx 4 && grep -q 'seals by none of AES-CBC-PAD, AES-GCM, "
                        "RSA-OAEP (none offered); --no-journal' %s/seal-out/results.ndjson",
                        dir, dir),
                0);
            test_sh("rm -rf %s/seal-out", dir);
            CU_ASSERT_EQUAL(test_sh(FAULTY(dir) "%s run --config cfg.json -o seal-out "
                                                "--no-journal seal.ndjson 2>>seal.log",
                                    dir, dir, dir, HSMENROLL_BIN),
                            0);
        } else {
            CU_ASSERT_EQUAL(status, 128 + 9);
            CU_ASSERT_EQUAL(
                test_sh("grep -q '\"Seal\":\"%s\"' %s/seal-out/journal.ndjson", steps[i].seal, dir),
                0);
            CU_ASSERT_EQUAL(test_sh(FAULTY(dir) "%s run --config cfg.json -o seal-out --resume "
                                                "seal.ndjson 2>>seal.log",
                                    dir, dir, dir, HSMENROLL_BIN),
                            0);
        }
        long issued = issued_in(dir, "seal-out", &lines);
        CU_ASSERT_EQUAL(issued, 4);
        CU_ASSERT_EQUAL(lines, 4);
        if (issued != 4)
            test_sh("cat %s/seal.log >&2", dir);
        delivered += issued;
    }
    char *count = test_sh_output(NULL, "grep -c . %s/ca/issued.ndjson || true", dir);
    CU_ASSERT_EQUAL(count ? atol(count) : -1, delivered);
    free(count);
    test_sh("sh %s/tests/modules/softhsm.sh stop %s/env >/dev/null 2>&1", SRC, dir);
    test_rmtree(dir);
    free(dir);
}

/* A bound on sessions: Hsm.MaxSessions on a token that allows that many (SoftHSM behind p11fault's
 * session-limit, which logs every refusal), and a token that answers CKR_SESSION_COUNT: fewer
 * HSM lanes, every line issued. */
static void test_session_bound(void)
{
    if (!have_packages(SOFTHSM))
        return;
    char *dir = test_tmpdir("hsmenroll-modules");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    CU_ASSERT_EQUAL_FATAL(start(SOFTHSM, dir, false), 0);
    CU_ASSERT_EQUAL(ENGINE(dir, "%s ca init --config cfg.json -q", dir, dir, HSMENROLL_BIN), 0);
    CU_ASSERT_EQUAL(
        test_sh("cd %s && python3 -c 'import json; c=json.load(open(\"cfg.json\")); "
                "c[\"Hsm\"][\"MaxSessions\"]=3; json.dump(c,open(\"cfg3.json\","
                "\"w\"))' && . env/env && printf 'module %%s\\nsession-limit 4\\n' "
                "\"$HSMENROLL_MODULE\" >fault.conf && printf 'module %%s\\nlog %%s/refused.log\\n"
                "session-limit 3\\n' \"$HSMENROLL_MODULE\" \"$PWD\" >fault3.conf",
                dir),
        0);
    long lines = 0;
    CU_ASSERT_EQUAL(ENGINE(dir,
                           "%s run --config cfg3.json --workers 8 -o out-max kill.ndjson "
                           "2>max.log",
                           dir, dir, HSMENROLL_BIN),
                    0);
    CU_ASSERT_EQUAL(issued_in(dir, "out-max", &lines), KILL_LINES);
    CU_ASSERT_EQUAL(test_sh("grep -q 'Hsm.MaxSessions 3: 2 HSM operations in flight' "
                            "%s/max.log",
                            dir),
                    0);
    CU_ASSERT_EQUAL(ENGINE(dir,
                           "P11FAULT_CONFIG=%s/fault.conf HSMENROLL_MODULE=" HSMENROLL_P11FAULT
                           " %s run --config cfg.json --workers 8 -o out-limit kill.ndjson "
                           "2>limit.log",
                           dir, dir, dir, HSMENROLL_BIN),
                    0);
    CU_ASSERT_EQUAL(issued_in(dir, "out-limit", &lines), KILL_LINES);
    CU_ASSERT_EQUAL(test_sh("grep -q 'refused session [0-9]* (CKR_SESSION_COUNT)' "
                            "%s/limit.log",
                            dir),
                    0);
    test_sh("sh %s/tests/modules/softhsm.sh stop %s/env >/dev/null 2>&1", SRC, dir);
    test_rmtree(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    self = argv[0];
    if (argc == 3 && strcmp(argv[1], "populate") == 0)
        return populate(argv[2]);
    static const test_case cases[] = {
        TEST_CASE(test_softhsm),      TEST_CASE(test_p11kit_proxy),  TEST_CASE(test_p11kit_remote),
        TEST_CASE(test_nss),          TEST_CASE(test_opencryptoki),  TEST_CASE(test_tpm2),
        TEST_CASE(test_journal_seal), TEST_CASE(test_session_bound), TEST_END};
    return test_main("it_modules", cases, NULL, NULL);
}
