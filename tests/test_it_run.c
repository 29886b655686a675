/* `hsmenroll run` end to end on the embedded default (a SoftHSM2 token on tmpfs + the embedded
 * CA): every key type in every format and storage, each output checked by third-party tools
 * (openssl, GnuTLS certtool, Java keytool, OpenSC pkcs11-tool), token keys inspected in the
 * token, bad input, wrong PIN, missing module, a second token chosen by --config. */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <p11-kit/uri.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/pubkey.h"
#include "hsm/hsm.h"
#include "tests/support.h"

#define SOFTHSM HSMENROLL_SOFTHSM_MODULE

static char *tmp;  /* everything of this suite */
static char *home; /* engine home of the embedded default */
static char ca_root[600], ca_issuing[600];

static int setup(void)
{
    tmp = test_tmpdir("hsmenroll-it");
    if (tmp == NULL || asprintf(&home, "%s/home", tmp) < 0)
        return 1;
    snprintf(ca_root, sizeof ca_root, "%s/ca/root.pem", home);
    snprintf(ca_issuing, sizeof ca_issuing, "%s/ca/issuing.pem", home);
    unsetenv("HSMENROLL_PIN");
    unsetenv("HSMENROLL_SO_PIN");
    return 0;
}

static int teardown(void)
{
    test_rmtree(tmp);
    free(tmp);
    free(home);
    return 0;
}

/* Runs hsmenroll with the suite's home; stderr goes to TMP/stderr.log. Returns the exit code. */
#define ENGINE(fmt, ...)                                                                           \
    test_sh("HSMENROLL_HOME='%s' '%s' " fmt " 2>'%s/stderr.log'", home, HSMENROLL_BIN,             \
            ##__VA_ARGS__, tmp)

static char *stderr_text(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/stderr.log", tmp);
    return test_read_file(path, NULL);
}

static const char *status_of(json_t *r)
{
    return json_string_value(json_object_get(r, "Status"));
}

static const char *error_code_of(json_t *r)
{
    return json_string_value(json_object_get(json_object_get(r, "Error"), "Code"));
}

/* Writes the request's password (given in the batch, or generated and reported) to a 0600 file
 * for the verifiers, and returns its path (static buffer). */
static const char *password_file(json_t *result, const char *given)
{
    static char path[700];
    const char *pw = given;
    if (pw == NULL)
        pw = json_string_value(
            json_object_get(json_object_get(result, "CertificateInformation"), "Password"));
    snprintf(path, sizeof path, "%s/pw-%s", tmp, json_string_value(json_object_get(result, "Id")));
    FILE *f = fopen(path, "w");
    if (f == NULL || pw == NULL)
        return NULL;
    fchmod(fileno(f), 0600);
    fputs(pw, f);
    fclose(f);
    return path;
}

static json_t *run_batch(const char *batch, const char *out, int *exit_code)
{
    *exit_code = ENGINE("run '%s' -o '%s/%s' --progress never", batch, tmp, out);
    char path[700];
    snprintf(path, sizeof path, "%s/%s/results.ndjson", tmp, out);
    return test_load_ndjson(path);
}

/* openssl verify of a PEM file against the embedded CA (quietly when a failure is expected). */
static int verify_pem_against_default_ca(const char *pem, bool quiet)
{
    char *out = test_sh_output(NULL, "openssl verify -CAfile '%s' -untrusted '%s' '%s' 2>&1",
                               ca_root, ca_issuing, pem);
    int ok = out != NULL && strstr(out, ": OK") != NULL;
    if (!ok && !quiet)
        fprintf(stderr, "openssl verify %s: %s\n", pem, out ? out : "(no output)");
    free(out);
    return ok;
}

static int verify_pem(const char *pem)
{
    return verify_pem_against_default_ca(pem, false);
}

/* The SubjectPublicKeyInfo (PEM text) of a certificate file and of a key file, compared. */
static int key_matches_cert(const char *cert_cmd, const char *key_cmd)
{
    char *a = test_sh_output(NULL, "%s | openssl x509 -pubkey -noout 2>&1", cert_cmd);
    char *b = test_sh_output(NULL, "%s | openssl pkey -pubout 2>&1", key_cmd);
    int ok = a != NULL && b != NULL && strstr(a, "BEGIN PUBLIC KEY") && strcmp(a, b) == 0;
    if (!ok)
        fprintf(stderr, "key/cert mismatch:\n%s\n%s\n", a ? a : "", b ? b : "");
    free(a);
    free(b);
    return ok;
}

static void check_pem(json_t *r, const char *file, bool export_key, const char *pw)
{
    CU_ASSERT_TRUE(verify_pem(file));
    char *text = test_read_file(file, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    /* Leaf, issuing CA and root, each with its subject header (the defaults). */
    CU_ASSERT_EQUAL(test_count(text, "-----BEGIN CERTIFICATE-----"), 3);
    CU_ASSERT_EQUAL(test_count(text, "subject="), 3);
    CU_ASSERT_EQUAL(test_count(text, "BEGIN ENCRYPTED PRIVATE KEY"), export_key ? 1 : 0);
    free(text);
    if (export_key) {
        char cert_cmd[1200], key_cmd[1200];
        snprintf(cert_cmd, sizeof cert_cmd, "cat '%s'", file);
        snprintf(key_cmd, sizeof key_cmd, "openssl pkey -in '%s' -passin 'file:%s'", file, pw);
        CU_ASSERT_TRUE(key_matches_cert(cert_cmd, key_cmd));
        /* A wrong password does not open it. */
        CU_ASSERT_NOT_EQUAL(
            test_sh("openssl pkey -in '%s' -passin pass:not-it -noout 2>/dev/null", file), 0);
    }
    (void)r;
}

static void check_der(const char *file, const char *p8, const char *pw)
{
    char pem[800];
    snprintf(pem, sizeof pem, "%s.crt.pem", file);
    CU_ASSERT_EQUAL(test_sh("openssl x509 -inform DER -in '%s' -out '%s'", file, pem), 0);
    CU_ASSERT_TRUE(verify_pem(pem));
    if (p8 != NULL) {
        struct stat st;
        CU_ASSERT_EQUAL(stat(p8, &st), 0);
        CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
        char cert_cmd[1200], key_cmd[1200];
        snprintf(cert_cmd, sizeof cert_cmd, "cat '%s'", pem);
        snprintf(key_cmd, sizeof key_cmd,
                 "openssl pkcs8 -inform DER -in '%s' -passin 'file:%s' 2>&1", p8, pw);
        CU_ASSERT_TRUE(key_matches_cert(cert_cmd, key_cmd));
    }
}

static void check_pfx(const char *file, const char *pw, bool legacy)
{
    const char *lf = legacy ? "-legacy" : "";
    char *info = test_sh_output(
        NULL, "openssl pkcs12 %s -info -noout -in '%s' -passin 'file:%s' 2>&1", lf, file, pw);
    CU_ASSERT_PTR_NOT_NULL_FATAL(info);
    if (legacy) {
        CU_ASSERT_PTR_NOT_NULL(strstr(info, "MAC: sha1"));
        CU_ASSERT_PTR_NOT_NULL(strstr(info, "pbeWithSHA1And40BitRC2-CBC"));
        CU_ASSERT_PTR_NOT_NULL(strstr(info, "pbeWithSHA1And3-KeyTripleDES-CBC"));
        CU_ASSERT_PTR_NULL(strstr(info, "AES-256-CBC"));
    } else {
        CU_ASSERT_PTR_NOT_NULL(strstr(info, "MAC: sha256"));
        CU_ASSERT_EQUAL(test_count(info, "PBES2, PBKDF2, AES-256-CBC"), 2);
        CU_ASSERT_PTR_NULL(strstr(info, "pbeWithSHA1"));
    }
    CU_ASSERT_EQUAL(test_count(info, "Certificate bag"), 3);
    CU_ASSERT_EQUAL(test_count(info, "Shrouded Keybag"), 1);
    free(info);
    char leaf[800];
    snprintf(leaf, sizeof leaf, "%s.leaf.pem", file);
    CU_ASSERT_EQUAL(test_sh("openssl pkcs12 %s -in '%s' -passin 'file:%s' -nokeys -clcerts "
                            "-out '%s' 2>/dev/null",
                            lf, file, pw, leaf),
                    0);
    CU_ASSERT_TRUE(verify_pem(leaf));
    char cert_cmd[1200], key_cmd[1200];
    snprintf(cert_cmd, sizeof cert_cmd, "cat '%s'", leaf);
    snprintf(key_cmd, sizeof key_cmd,
             "openssl pkcs12 %s -in '%s' -passin 'file:%s' -nocerts -nodes 2>/dev/null", lf, file,
             pw);
    CU_ASSERT_TRUE(key_matches_cert(cert_cmd, key_cmd));
    /* GnuTLS reads it (MAC checked, safes decrypted) and so does Java. */
    CU_ASSERT_EQUAL(test_sh("certtool --p12-info --inder --infile '%s' --password \"$(cat '%s')\" "
                            ">/dev/null 2>&1",
                            file, pw),
                    0);
    int status = -1;
    char *kt = test_sh_output(&status,
                              "keytool -list -storetype PKCS12 -keystore '%s' -storepass:file '%s' "
                              "2>&1",
                              file, pw);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL(kt ? strstr(kt, "PrivateKeyEntry") : NULL);
    if (status != 0)
        fprintf(stderr, "keytool %s: %s\n", file, kt ? kt : "");
    free(kt);
}

/* ---- looking into the token from this process (SoftHSM's own answers) ---- */

typedef struct token_view {
    hsm_module *module;
    hsm_token token;
    hsm_session session;
} token_view;

static int token_view_open(token_view *v, const char *label)
{
    char conf[700], pin_path[700];
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", home);
    snprintf(pin_path, sizeof pin_path, "%s/pin", home);
    setenv("SOFTHSM2_CONF", conf, 1);
    char *pin = test_read_file(pin_path, NULL);
    hsm_error err;
    if (pin == NULL)
        return -1;
    pin[strcspn(pin, "\n")] = '\0';
    v->module = hsm_module_load(SOFTHSM, &err);
    int rc = v->module != NULL && hsm_token_open(v->module, label, pin, &v->token, &err) == 0 &&
                     hsm_session_open(&v->token, &v->session, &err) == 0
                 ? 0
                 : -1;
    if (rc != 0)
        fprintf(stderr, "token view: %s\n", err.message);
    free(pin);
    return rc;
}

static void token_view_close(token_view *v)
{
    hsm_session_close(&v->session);
    hsm_token_close(&v->token);
    hsm_module_unload(v->module);
}

static int count_objects_labelled(token_view *v, CK_OBJECT_CLASS cls, const char *label)
{
    CK_OBJECT_HANDLE h[8];
    hsm_error err;
    return hsm_find_objects(&v->session, cls, NULL, 0, label, h, 8, &err);
}

static EVP_PKEY *public_key_object(token_view *v, CK_OBJECT_HANDLE pub, const char *key_type)
{
    hsm_error herr;
    enroll_error err;
    unsigned char *a = NULL, *b = NULL;
    size_t al = 0, bl = 0;
    EVP_PKEY *key = NULL;
    if (strncmp(key_type, "RSA", 3) == 0) {
        if (hsm_get_attribute(&v->session, pub, CKA_MODULUS, &a, &al, &herr) == 0 &&
            hsm_get_attribute(&v->session, pub, CKA_PUBLIC_EXPONENT, &b, &bl, &herr) == 0)
            key = pubkey_from_rsa(a, al, b, bl, &err);
    } else if (hsm_get_attribute(&v->session, pub, CKA_EC_POINT, &a, &al, &herr) == 0) {
        if (strcmp(key_type, "Ed25519") == 0)
            key = pubkey_from_eddsa(NID_ED25519, a, al, &err);
        else if (strcmp(key_type, "Ed448") == 0)
            key = pubkey_from_eddsa(NID_ED448, a, al, &err);
        else
            key = pubkey_from_ec_point(strcmp(key_type, "P256") == 0   ? NID_X9_62_prime256v1
                                       : strcmp(key_type, "P384") == 0 ? NID_secp384r1
                                                                       : NID_secp521r1,
                                       a, al, &err);
    }
    free(a);
    free(b);
    return key;
}

static X509 *cert_of_result(json_t *r, const char *out)
{
    const char *file = json_string_value(json_array_get(json_object_get(r, "Files"), 0));
    char path[800];
    snprintf(path, sizeof path, "%s/%s/%s", tmp, out, file ? file : "?");
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    X509 *cert = strstr(path, ".der") ? d2i_X509_fp(f, NULL) : PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return cert;
}

/* The key of a token-storage result: found by the CKA_ID of its KeyUri, persistent, private,
 * sensitive, never extractable, labelled with the request Id, and the certificate's key. */
static void check_token_key(token_view *v, json_t *r, const char *out, const char *key_type,
                            const char *label)
{
    const char *uri_text = json_string_value(json_object_get(r, "KeyUri"));
    const char *id = json_string_value(json_object_get(r, "Id"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(uri_text);
    P11KitUri *uri = p11_kit_uri_new();
    CU_ASSERT_EQUAL_FATAL(p11_kit_uri_parse(uri_text, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, uri),
                          P11_KIT_URI_OK);
    CK_ATTRIBUTE *ckid = p11_kit_uri_get_attribute(uri, CKA_ID);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ckid);
    char padded[33];
    snprintf(padded, sizeof padded, "%-32s", label);
    CU_ASSERT_EQUAL(memcmp(p11_kit_uri_get_token_info(uri)->label, padded, 32), 0);
    CK_OBJECT_HANDLE priv[2], pub[2];
    hsm_error err;
    CU_ASSERT_EQUAL_FATAL(hsm_find_objects(&v->session, CKO_PRIVATE_KEY, ckid->pValue,
                                           ckid->ulValueLen, id, priv, 2, &err),
                          1);
    CU_ASSERT_EQUAL_FATAL(hsm_find_objects(&v->session, CKO_PUBLIC_KEY, ckid->pValue,
                                           ckid->ulValueLen, id, pub, 2, &err),
                          1);
    bool b;
    CU_ASSERT_EQUAL(hsm_get_bool(&v->session, priv[0], CKA_TOKEN, &b, &err), 0);
    CU_ASSERT_TRUE(b);
    CU_ASSERT_EQUAL(hsm_get_bool(&v->session, priv[0], CKA_SENSITIVE, &b, &err), 0);
    CU_ASSERT_TRUE(b);
    CU_ASSERT_EQUAL(hsm_get_bool(&v->session, priv[0], CKA_EXTRACTABLE, &b, &err), 0);
    CU_ASSERT_FALSE(b);
    CU_ASSERT_EQUAL(hsm_get_bool(&v->session, priv[0], CKA_NEVER_EXTRACTABLE, &b, &err), 0);
    CU_ASSERT_TRUE(b);
    EVP_PKEY *in_token = public_key_object(v, pub[0], key_type);
    X509 *cert = cert_of_result(r, out);
    CU_ASSERT_PTR_NOT_NULL(in_token);
    CU_ASSERT_PTR_NOT_NULL(cert);
    if (in_token != NULL && cert != NULL)
        CU_ASSERT_EQUAL(EVP_PKEY_eq(in_token, X509_get0_pubkey(cert)), 1);
    EVP_PKEY_free(in_token);
    X509_free(cert);
    p11_kit_uri_free(uri);
}

/* strstr within the first n bytes of text. */
static const char *strnstr_bounded(const char *text, const char *needle, size_t n)
{
    const char *hit = strstr(text, needle);
    return hit != NULL && (size_t)(hit - text) < n ? hit : NULL;
}

/* ---- tests ---- */

static void test_help_texts(void)
{
    const char *cmds[] = {"--help", "run --help", "ca --help", "token --help", "help run"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int status = -1;
        char *out = test_sh_output(&status, "'%s' %s 2>&1", HSMENROLL_BIN, cmds[i]);
        CU_ASSERT_EQUAL(status, 0);
        CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "usage: hsmenroll") : NULL);
        free(out);
    }
    char *run_help = test_sh_output(NULL, "'%s' run --help", HSMENROLL_BIN);
    const char *options[] = {"--out",      "--config",  "--workers",  "--inflight", "--ca",
                             "--template", "--pattern", "--progress", "--force",    "--quiet"};
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        CU_ASSERT_PTR_NOT_NULL(run_help ? strstr(run_help, options[i]) : NULL);
    free(run_help);
    CU_ASSERT_EQUAL(test_sh("'%s' frobnicate 2>/dev/null", HSMENROLL_BIN), 2);
    CU_ASSERT_EQUAL(test_sh("'%s' run 2>/dev/null", HSMENROLL_BIN), 2);
}

static void test_every_key_type_format_and_storage(void)
{
    int rc;
    json_t *results =
        run_batch(HSMENROLL_SOURCE_DIR "/examples/all-key-types.ndjson", "matrix", &rc);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(results);
    CU_ASSERT_EQUAL(json_array_size(results), 48);
    /* EdDSA token keys go to a token of their own (Hsm.EdDSAToken of the embedded default). */
    token_view v, eddsa;
    CU_ASSERT_EQUAL_FATAL(token_view_open(&v, "hsmenroll-keys"), 0);
    CU_ASSERT_EQUAL_FATAL(token_view_open(&eddsa, "hsmenroll-eddsa"), 0);
    size_t i;
    json_t *r;
    int checked = 0;
    json_array_foreach(results, i, r)
    {
        const char *id = json_string_value(json_object_get(r, "Id"));
        CU_ASSERT_STRING_EQUAL(status_of(r), "issued");
        if (strcmp(status_of(r), "issued") != 0) {
            fprintf(stderr, "%s: %s\n", id, json_dumps(json_object_get(r, "Error"), 0));
            continue;
        }
        /* Id = <type>-<format>[-legacy]-<storage> */
        char key_type[16];
        const char *dash = strchr(id, '-');
        if (strncmp(id, "RSA-", 4) == 0)
            dash = strchr(id + 4, '-');
        snprintf(key_type, sizeof key_type, "%.*s", (int)(dash - id), id);
        bool token = strstr(id, "-token") != NULL;
        bool legacy = strstr(id, "-legacy") != NULL;
        json_t *files = json_object_get(r, "Files");
        char path[800], p8[800];
        snprintf(path, sizeof path, "%s/matrix/%s", tmp,
                 json_string_value(json_array_get(files, 0)));
        struct stat st;
        CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
        const char *pw = token ? NULL : password_file(r, NULL);
        if (!token)
            CU_ASSERT_PTR_NOT_NULL_FATAL(pw);
        if (strstr(id, "-PFX-")) {
            CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
            check_pfx(path, pw, legacy);
        } else if (strstr(id, "-PEM-")) {
            CU_ASSERT_EQUAL(st.st_mode & 0777, token ? 0644 : 0600);
            check_pem(r, path, !token, pw);
        } else {
            CU_ASSERT_EQUAL(json_array_size(files), token ? 1 : 2);
            snprintf(p8, sizeof p8, "%s/matrix/%s.p8", tmp, id);
            check_der(path, token ? NULL : p8, pw);
        }
        if (token) {
            bool ed = strncmp(key_type, "Ed", 2) == 0;
            check_token_key(ed ? &eddsa : &v, r, "matrix", key_type,
                            ed ? "hsmenroll-eddsa" : "hsmenroll-keys");
            CU_ASSERT_PTR_NULL(
                json_object_get(json_object_get(r, "CertificateInformation"), "Password"));
        } else {
            /* Export keys leave nothing in the token. */
            CU_ASSERT_EQUAL(count_objects_labelled(&v, CKO_PRIVATE_KEY, id), 0);
            CU_ASSERT_EQUAL(count_objects_labelled(&v, CKO_PUBLIC_KEY, id), 0);
            CU_ASSERT_PTR_NULL(json_object_get(r, "KeyUri"));
        }
        checked++;
    }
    CU_ASSERT_EQUAL(checked, 48);
    unsigned long slot = (unsigned long)v.token.desc.slot;
    unsigned long eddsa_slot = (unsigned long)eddsa.token.desc.slot;
    token_view_close(&v);
    token_view_close(&eddsa);
    /* OpenSC's pkcs11-tool sees the 16 token keys as sensitive and never extractable: the 12
     * RSA and ECC ones in the keys token, the 4 EdDSA ones in theirs. */
    char *listing = test_sh_output(
        NULL,
        "for s in %lu %lu; do SOFTHSM2_CONF='%s/softhsm2.conf' pkcs11-tool --module '%s' --slot "
        "$s --login --pin \"$(cat '%s/pin')\" --list-objects --type privkey 2>&1; echo \"== $s\"; "
        "done",
        slot, eddsa_slot, home, SOFTHSM, home);
    if (test_count(listing, "never extractable") != 16)
        fprintf(stderr, "pkcs11-tool: %s\n", listing ? listing : "(none)");
    CU_ASSERT_EQUAL(test_count(listing, "never extractable"), 16);
    CU_ASSERT_EQUAL(test_count(listing, "-token\n"), 16);
    CU_ASSERT_EQUAL(test_count(listing, "-export\n"), 0);
    const char *second = listing ? strstr(listing, "== ") : NULL;
    CU_ASSERT_PTR_NOT_NULL(second);
    if (second != NULL) /* no EdDSA key in the keys token */
        CU_ASSERT_PTR_NULL(strnstr_bounded(listing, "EC_EDWARDS", (size_t)(second - listing)));
    free(listing);
    /* libp11 (Debian 12's 0.4.12, which cannot list a token holding an EdDSA key) signs with a
     * token key of the keys token by its KeyUri, after a batch that made EdDSA token keys. */
    json_t *rsa = test_find_by(results, "Id", "RSA-2048-PEM-token");
    const char *key_uri = json_string_value(json_object_get(rsa, "KeyUri"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(key_uri);
    CU_ASSERT_EQUAL(test_sh("SOFTHSM2_CONF='%s/softhsm2.conf' PKCS11_MODULE_PATH='%s' openssl req "
                            "-new -engine pkcs11 -keyform engine -key '%s;pin-source=file:%s/pin' "
                            "-subj /CN=libp11 -out '%s/libp11.csr' >/dev/null 2>&1 && openssl req "
                            "-verify -noout -in '%s/libp11.csr' 2>/dev/null",
                            home, SOFTHSM, key_uri, home, tmp, tmp),
                    0);
    /* The trap, as an operator types it: --token-label with the keys token's label finds
     * that token (no label is a prefix of another), and its PIN opens no CA key: the CA token
     * has its own PIN (HOME/ca-pin, 0600, not the user PIN). */
    listing = test_sh_output(NULL,
                             "SOFTHSM2_CONF='%s/softhsm2.conf' pkcs11-tool --module '%s' "
                             "--token-label hsmenroll-keys --login --pin \"$(cat '%s/pin')\" "
                             "--list-objects --type privkey 2>&1 | grep -c 'label:'",
                             home, SOFTHSM, home);
    CU_ASSERT_EQUAL(listing ? atoi(listing) : -1, 12);
    free(listing);
    CU_ASSERT_EQUAL(test_sh("[ \"$(stat -c %%a '%s/ca-pin')\" = 600 ] && ! cmp -s '%s/pin' "
                            "'%s/ca-pin'",
                            home, home, home),
                    0);
    CU_ASSERT_NOT_EQUAL(test_sh("SOFTHSM2_CONF='%s/softhsm2.conf' pkcs11-tool --module '%s' "
                                "--token-label hsmenroll-ca --login --pin \"$(cat '%s/pin')\" "
                                "--list-objects --type privkey >/dev/null 2>&1",
                                home, SOFTHSM, home),
                        0);
    json_decref(results);
}

static void test_bad_lines_fail_alone(void)
{
    int rc;
    json_t *results = run_batch(HSMENROLL_SOURCE_DIR "/examples/bad-lines.ndjson", "bad", &rc);
    CU_ASSERT_EQUAL(rc, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(results);
    CU_ASSERT_EQUAL(json_array_size(results), 10);
    static const struct {
        long line;
        const char *code, *field;
    } expected[] = {
        {2, "INVALID_JSON", NULL},
        {3, "MISSING_FIELD", "Id"},
        {4, "DUPLICATE_ID", "Id"},
        {5, "UNKNOWN_KEY_TYPE", "KeyType"},
        {6, "KEY_SPEC_MISMATCH", "Curve"},
        {7, "INVALID_SUBJECT", "Subject"},
        {8, "UNKNOWN_SAN_TYPE", "SANs.email"},
        {9, "STORAGE_FORMAT_MISMATCH", "KeyStorage"},
    };
    size_t i;
    json_t *r;
    int issued = 0, failed = 0;
    json_array_foreach(results, i, r)
    {
        long line = (long)json_integer_value(json_object_get(r, "Line"));
        if (strcmp(status_of(r), "issued") == 0) {
            issued++;
            CU_ASSERT_TRUE(line == 1 || line == 10);
            continue;
        }
        failed++;
        bool found = false;
        for (size_t k = 0; k < sizeof expected / sizeof expected[0]; k++) {
            if (expected[k].line != line)
                continue;
            found = true;
            CU_ASSERT_STRING_EQUAL(error_code_of(r), expected[k].code);
            const char *field =
                json_string_value(json_object_get(json_object_get(r, "Error"), "Field"));
            if (expected[k].field)
                CU_ASSERT_STRING_EQUAL(field ? field : "(none)", expected[k].field);
            const char *message =
                json_string_value(json_object_get(json_object_get(r, "Error"), "Message"));
            CU_ASSERT_TRUE(message != NULL && strlen(message) > 10);
        }
        CU_ASSERT_TRUE(found);
    }
    CU_ASSERT_EQUAL(issued, 2);
    CU_ASSERT_EQUAL(failed, 8);
    /* The bad subject's error says where. */
    json_t *bad_subject = test_find_by(results, "Id", "bad-subject");
    const char *msg =
        json_string_value(json_object_get(json_object_get(bad_subject, "Error"), "Message"));
    CU_ASSERT_PTR_NOT_NULL(msg ? strstr(msg, "offset") : NULL);
    /* No key was made for a refused line. */
    token_view v;
    CU_ASSERT_EQUAL_FATAL(token_view_open(&v, "hsmenroll-keys"), 0);
    const char *refused[] = {"bad-keytype", "bad-curve", "bad-subject", "bad-san", "pfx-on-token"};
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++)
        CU_ASSERT_EQUAL(count_objects_labelled(&v, CKO_PUBLIC_KEY, refused[k]), 0);
    token_view_close(&v);
    json_decref(results);
}

static void write_batch(const char *name, const char *content)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    CU_ASSERT_EQUAL_FATAL(test_write_file(path, content), 0);
}

static void test_wrong_pin_does_nothing(void)
{
    write_batch("one.ndjson", "{\"Id\":\"w1\",\"Template\":\"Default\",\"Subject\":\"CN=w1\"}\n");
    int rc =
        test_sh("HSMENROLL_PIN=wrong-pin-value-1234 HSMENROLL_HOME='%s' '%s' run '%s/one.ndjson' "
                "-o '%s/wrongpin' 2>'%s/stderr.log'",
                home, HSMENROLL_BIN, tmp, tmp, tmp);
    CU_ASSERT_EQUAL(rc, 2);
    char out[700];
    snprintf(out, sizeof out, "%s/wrongpin", tmp);
    CU_ASSERT_NOT_EQUAL(access(out, F_OK), 0);
    char *err = stderr_text();
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "CKR_PIN_INCORRECT") : NULL);
    CU_ASSERT_PTR_NULL(err ? strstr(err, "wrong-pin-value-1234") : "no stderr");
    free(err);
}

static void test_missing_module_does_nothing(void)
{
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/nomodule.json", tmp);
    CU_ASSERT_EQUAL_FATAL(
        test_write_file(cfg,
                        "{\"Hsm\":{\"Module\":\"/nonexistent/libpkcs11.so\",\"Tokens\":[\"x\"]},"
                        "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"e\",\"Type\":\"local\","
                        "\"Home\":\"ca-x\"}],\"Templates\":[{\"Id\":1,\"Name\":\"Default\","
                        "\"CertificateAuthorities\":[1]}],\"EnrollmentPatterns\":[{\"Id\":1,"
                        "\"Name\":\"Default\",\"Template\":1}]}"),
        0);
    int rc = ENGINE("run '%s/one.ndjson' --config '%s' -o '%s/nomodule'", tmp, cfg, tmp);
    CU_ASSERT_EQUAL(rc, 2);
    char out[700];
    snprintf(out, sizeof out, "%s/nomodule", tmp);
    CU_ASSERT_NOT_EQUAL(access(out, F_OK), 0);
    char *err = stderr_text();
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "/nonexistent/libpkcs11.so") : NULL);
    free(err);
}

static void test_config_errors_name_their_path(void)
{
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/badconfig.json", tmp);
    CU_ASSERT_EQUAL_FATAL(
        test_write_file(
            cfg, "{\"Hsm\":{\"Tokens\":[\"x\"],\"Pin\":\"no\"},"
                 "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"e\",\"Type\":\"nope\"}],"
                 "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[7]}],"
                 "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"P\",\"Template\":1,"
                 "\"RestrictCAs\":true}]}"),
        0);
    int rc = ENGINE("run '%s/one.ndjson' --config '%s' -o '%s/badconfig'", tmp, cfg, tmp);
    CU_ASSERT_EQUAL(rc, 2);
    char *err = stderr_text();
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "Hsm.Pin: unknown key") : NULL);
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "CertificateAuthorities[0].Type") : NULL);
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "Templates[0].CertificateAuthorities: no CA with Id 7")
                               : NULL);
    CU_ASSERT_PTR_NOT_NULL(
        err ? strstr(err, "EnrollmentPatterns[0].CertificateAuthorities: RestrictCAs") : NULL);
    free(err);
}

/* A second SoftHSM store and token, made with softhsm2-util, chosen through Hsm in --config. */
static void test_other_token_through_config(void)
{
    char store[700], conf[700], cfg[700];
    snprintf(store, sizeof store, "%s/store2", tmp);
    snprintf(conf, sizeof conf, "%s/softhsm2-b.conf", tmp);
    snprintf(cfg, sizeof cfg, "%s/fleet2.json", tmp);
    CU_ASSERT_EQUAL_FATAL(test_sh("mkdir -p '%s' && printf 'directories.tokendir = %s\\n"
                                  "objectstore.backend = file\\nlog.level = ERROR\\n' > '%s'",
                                  store, store, conf),
                          0);
    CU_ASSERT_EQUAL_FATAL(test_sh("SOFTHSM2_CONF='%s' softhsm2-util --init-token --free --label "
                                  "fleet-2 --so-pin 87654321 --pin 24681357 >/dev/null",
                                  conf),
                          0);
    CU_ASSERT_EQUAL_FATAL(
        test_write_file(
            cfg, "{\"Hsm\":{\"Module\":\"" SOFTHSM "\",\"Tokens\":[\"fleet-2\"],"
                 "\"PinEnv\":\"FLEET_PIN\"},\"CertificateAuthorities\":[{\"Id\":1,"
                 "\"Name\":\"corp\\\\fleet-ca\",\"Type\":\"local\",\"Home\":\"fleet-ca\"}],"
                 "\"Templates\":[{\"Id\":1,\"Name\":\"Device\",\"CertificateAuthorities\":[1],"
                 "\"ValidityDays\":30}],\"EnrollmentPatterns\":[{\"Id\":7,\"Name\":\"Devices\","
                 "\"Template\":1}]}"),
        0);
    CU_ASSERT_EQUAL(test_sh("SOFTHSM2_CONF='%s' FLEET_PIN=24681357 '%s' ca init --config '%s' -q",
                            conf, HSMENROLL_BIN, cfg),
                    0);
    write_batch(
        "fleet2.ndjson",
        "{\"Id\":\"f2-1\",\"EnrollmentPatternId\":7,\"Subject\":\"CN=f2-1\",\"KeyType\":\"ECC\","
        "\"Format\":\"PEM\",\"KeyStorage\":\"token\",\"CertificateAuthority\":\"fleet-ca\"}\n"
        "{\"Id\":\"f2-2\",\"Template\":\"Device\",\"Subject\":\"CN=f2-2\",\"KeyType\":\"RSA\"}\n");
    int rc =
        test_sh("SOFTHSM2_CONF='%s' FLEET_PIN=24681357 '%s' run '%s/fleet2.ndjson' --config '%s' "
                "-o '%s/fleet2' --progress never 2>'%s/stderr.log'",
                conf, HSMENROLL_BIN, tmp, cfg, tmp, tmp);
    CU_ASSERT_EQUAL(rc, 0);
    char path[700];
    snprintf(path, sizeof path, "%s/fleet2/results.ndjson", tmp);
    json_t *results = test_load_ndjson(path);
    CU_ASSERT_EQUAL_FATAL(json_array_size(results), 2);
    json_t *r = test_find_by(results, "Id", "f2-1");
    CU_ASSERT_STRING_EQUAL(status_of(r), "issued");
    const char *uri = json_string_value(json_object_get(r, "KeyUri"));
    CU_ASSERT_PTR_NOT_NULL(uri ? strstr(uri, "token=fleet-2") : NULL);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "CertificateAuthority")),
                           "corp\\fleet-ca");
    /* Issued by the configuration's CA, whose root is in TMP/fleet-ca, for 30 days. */
    snprintf(path, sizeof path, "%s/fleet2/f2-1.pem", tmp);
    char *out = test_sh_output(NULL,
                               "openssl verify -CAfile '%s/fleet-ca/root.pem' -untrusted "
                               "'%s/fleet-ca/issuing.pem' '%s' 2>&1",
                               tmp, tmp, path);
    CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, ": OK") : NULL);
    free(out);
    CU_ASSERT_FALSE(verify_pem_against_default_ca(path, true)); /* not the default's CA */
    out = test_sh_output(NULL,
                         "openssl x509 -in '%s' -noout -checkend %d; openssl x509 -in '%s' "
                         "-noout -checkend %d",
                         path, 29 * 86400, path, 31 * 86400);
    CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "will not expire") : NULL);
    CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "will expire") : NULL);
    free(out);
    CU_ASSERT_STRING_EQUAL(status_of(test_find_by(results, "Id", "f2-2")), "issued");
    /* The key is in fleet-2, as OpenSC sees it. */
    out = test_sh_output(NULL,
                         "SOFTHSM2_CONF='%s' pkcs11-tool --module '%s' --token-label fleet-2 "
                         "--list-objects --type pubkey 2>&1",
                         conf, SOFTHSM);
    CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "label:      f2-1") : NULL);
    free(out);
    json_decref(results);
}

static void test_chain_order_headers_and_result_fields(void)
{
    write_batch(
        "order.ndjson",
        "{\"Id\":\"o-pem\",\"Template\":\"Default\",\"Subject\":\"CN=o-pem\",\"KeyType\":\"ECC\","
        "\"Format\":\"PEM\",\"ChainOrder\":\"RootFirst\",\"IncludeSubjectHeader\":false,"
        "\"Password\":\"a-password-of-20-chars\"}\n"
        "{\"Id\":\"o-pfx\",\"Template\":\"Default\",\"Subject\":\"CN=o-pfx\",\"KeyType\":\"ECC\","
        "\"Format\":\"PFX\",\"ChainOrder\":\"RootFirst\",\"CustomFriendlyName\":\"Device One\","
        "\"MicrosoftTargetCSP\":\"Microsoft Software Key Storage Provider\"}\n"
        "{\"Id\":\"o-nochain\",\"Template\":\"Default\",\"Subject\":\"CN=o-nochain\","
        "\"KeyType\":\"ECC\",\"Format\":\"PEM\",\"KeyStorage\":\"token\",\"IncludeChain\":false}\n"
        "{\"Id\":\"o-meta\",\"Template\":\"Default\",\"Subject\":\"CN=o-meta\",\"Format\":\"DER\","
        "\"Metadata\":{\"Owner\":\"ops\"}}\n");
    int rc;
    char path[700];
    snprintf(path, sizeof path, "%s/order.ndjson", tmp);
    json_t *results = run_batch(path, "order", &rc);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(json_array_size(results), 4);

    /* PEM, root first, no subject lines: the subjects come root, issuing, leaf. */
    snprintf(path, sizeof path, "%s/order/o-pem.pem", tmp);
    char *text = test_read_file(path, NULL);
    CU_ASSERT_EQUAL(test_count(text, "subject="), 0);
    free(text);
    char *subjects = test_sh_output(
        NULL,
        "openssl crl2pkcs7 -nocrl -certfile '%s' | openssl pkcs7 -print_certs -noout | grep "
        "'^subject'",
        path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(subjects);
    char *root = strstr(subjects, "Root CA"), *issuing = strstr(subjects, "Issuing CA"),
         *leaf = strstr(subjects, "CN = o-pem");
    CU_ASSERT_TRUE(root && issuing && leaf && root < issuing && issuing < leaf);
    free(subjects);
    json_t *r = test_find_by(results, "Id", "o-pem");
    /* The password was given: it is not echoed. */
    CU_ASSERT_PTR_NULL(json_object_get(json_object_get(r, "CertificateInformation"), "Password"));
    CU_ASSERT_EQUAL(
        test_sh("openssl pkey -in '%s' -passin pass:a-password-of-20-chars -noout", path), 0);

    /* PFX, root first: bag order, friendlyName and CSP attribute. */
    r = test_find_by(results, "Id", "o-pfx");
    const char *pw = password_file(r, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pw);
    snprintf(path, sizeof path, "%s/order/o-pfx.pfx", tmp);
    subjects = test_sh_output(NULL,
                              "openssl pkcs12 -in '%s' -passin 'file:%s' -nokeys 2>/dev/null | "
                              "grep -E '^subject|friendlyName'",
                              path, pw);
    CU_ASSERT_PTR_NOT_NULL_FATAL(subjects);
    root = strstr(subjects, "Root CA");
    issuing = strstr(subjects, "Issuing CA");
    leaf = strstr(subjects, "CN = o-pfx");
    CU_ASSERT_TRUE(root && issuing && leaf && root < issuing && issuing < leaf);
    CU_ASSERT_PTR_NOT_NULL(strstr(subjects, "friendlyName: Device One"));
    free(subjects);
    char *keyinfo = test_sh_output(NULL,
                                   "openssl pkcs12 -in '%s' -passin 'file:%s' -nocerts -nodes "
                                   "2>/dev/null",
                                   path, pw);
    CU_ASSERT_PTR_NOT_NULL(keyinfo ? strstr(keyinfo,
                                            "Microsoft CSP Name: Microsoft Software Key Storage "
                                            "Provider")
                                   : NULL);
    free(keyinfo);
    /* The generated password is long enough and only the PFX's result carries it. */
    const char *gen = json_string_value(
        json_object_get(json_object_get(r, "CertificateInformation"), "Password"));
    CU_ASSERT_TRUE(gen != NULL && strlen(gen) >= 12);

    /* No chain: just the leaf. Token storage: no key in the file. */
    snprintf(path, sizeof path, "%s/order/o-nochain.pem", tmp);
    text = test_read_file(path, NULL);
    CU_ASSERT_EQUAL(test_count(text, "BEGIN CERTIFICATE"), 1);
    CU_ASSERT_EQUAL(test_count(text, "PRIVATE KEY"), 0);
    free(text);

    /* Result fields agree with the certificate: serial, thumbprint, issuer; Metadata echoed. */
    r = test_find_by(results, "Id", "o-meta");
    json_t *info = json_object_get(r, "CertificateInformation");
    snprintf(path, sizeof path, "%s/order/o-meta.der", tmp);
    char *serial = test_sh_output(NULL, "openssl x509 -inform DER -in '%s' -noout -serial", path);
    char *thumb = test_sh_output(NULL,
                                 "openssl x509 -inform DER -in '%s' -noout -fingerprint "
                                 "-sha1 | tr -d :",
                                 path);
    char expect[200];
    snprintf(expect, sizeof expect, "serial=%s\n",
             json_string_value(json_object_get(info, "SerialNumber")));
    CU_ASSERT_STRING_EQUAL(serial ? serial : "", expect);
    snprintf(expect, sizeof expect, "sha1 Fingerprint=%s\n",
             json_string_value(json_object_get(info, "Thumbprint")));
    CU_ASSERT_STRING_EQUAL(thumb ? thumb : "", expect);
    free(serial);
    free(thumb);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "RequestDisposition")),
                           "ISSUED");
    CU_ASSERT_PTR_NOT_NULL(
        strstr(json_string_value(json_object_get(info, "IssuerDN")), "Issuing CA"));
    CU_ASSERT_STRING_EQUAL(
        json_string_value(json_object_get(json_object_get(r, "Metadata"), "Owner")), "ops");
    CU_ASSERT_TRUE(json_integer_value(json_object_get(info, "KeyfactorID")) > 0);
    json_decref(results);
}

static void test_rerun_needs_force_and_stdin_works(void)
{
    int rc = ENGINE("run '%s/one.ndjson' -o '%s/again'", tmp, tmp);
    CU_ASSERT_EQUAL(rc, 0);
    rc = ENGINE("run '%s/one.ndjson' -o '%s/again'", tmp, tmp);
    CU_ASSERT_EQUAL(rc, 2);
    char *err = stderr_text();
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "already holds the results") : NULL);
    free(err);
    rc = ENGINE("run '%s/one.ndjson' -o '%s/again' --force", tmp, tmp);
    CU_ASSERT_EQUAL(rc, 0);
    rc = test_sh("HSMENROLL_HOME='%s' '%s' run - -o '%s/stdin' < '%s/one.ndjson' 2>/dev/null", home,
                 HSMENROLL_BIN, tmp, tmp);
    CU_ASSERT_EQUAL(rc, 0);
    char path[700];
    snprintf(path, sizeof path, "%s/stdin/w1.pfx", tmp);
    CU_ASSERT_EQUAL(access(path, F_OK), 0);
}

static void test_ca_show_and_token_list(void)
{
    int status = -1;
    json_t *doc =
        test_sh_json(&status, "HSMENROLL_HOME='%s' '%s' ca show --json", home, HSMENROLL_BIN);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    char issued_log[700];
    snprintf(issued_log, sizeof issued_log, "%s/ca/issued.ndjson", home);
    json_t *issued = test_load_ndjson(issued_log);
    CU_ASSERT_TRUE(json_array_size(issued) >= 48);
    CU_ASSERT_EQUAL((size_t)json_integer_value(json_object_get(doc, "Issued")),
                    json_array_size(issued));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(json_string_value(json_object_get(doc, "IssuingKeyUri")), "token=hsmenroll-ca"));
    json_decref(issued);
    json_decref(doc);
    /* A second `ca init` refuses to replace the CA. */
    CU_ASSERT_EQUAL(ENGINE("ca init"), 2);
    doc = test_sh_json(&status, "HSMENROLL_HOME='%s' '%s' token list --keys --json", home,
                       HSMENROLL_BIN);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    json_t *fleet = test_find_by(doc, "Label", "hsmenroll-keys");
    json_t *ca = test_find_by(doc, "Label", "hsmenroll-ca");
    CU_ASSERT_PTR_NOT_NULL(fleet);
    CU_ASSERT_PTR_NOT_NULL(ca);
    json_t *keys = json_object_get(fleet, "Keys");
    CU_ASSERT_PTR_NOT_NULL(test_find_by(keys, "Label", "P256-DER-token"));
    CU_ASSERT_PTR_NULL(test_find_by(keys, "Label", "P256-DER-export"));
    CU_ASSERT_PTR_NOT_NULL(
        test_find_by(json_object_get(ca, "Keys"), "Label", "hsmenroll-ca-issuing"));
    json_decref(doc);
}

static void test_progress_summary_and_quiet(void)
{
    int rc = ENGINE("run '%s/one.ndjson' -o '%s/progress' --progress always", tmp, tmp);
    CU_ASSERT_EQUAL(rc, 0);
    char *err = stderr_text();
    /* The summary line (a run this short may end before the first progress frame). */
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "1 request: 1 issued, 0 failed") : NULL);
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "certificates/s") : NULL);
    free(err);
    rc = ENGINE("run '%s/one.ndjson' -o '%s/quiet' -q", tmp, tmp);
    CU_ASSERT_EQUAL(rc, 0);
    err = stderr_text();
    CU_ASSERT_STRING_EQUAL(err ? err : "(none)", "");
    free(err);
    rc = ENGINE("run '%s/one.ndjson' -o '%s/verbose' -v", tmp, tmp);
    err = stderr_text();
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "mean time per request by stage: Parse") : NULL);
    /* Neither the PIN nor the generated password is ever logged. */
    char pin_path[700];
    snprintf(pin_path, sizeof pin_path, "%s/pin", home);
    char *pin = test_read_file(pin_path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pin);
    pin[strcspn(pin, "\n")] = '\0';
    CU_ASSERT_PTR_NULL(err ? strstr(err, pin) : "no stderr");
    char results[700];
    snprintf(results, sizeof results, "%s/verbose/results.ndjson", tmp);
    json_t *lines = test_load_ndjson(results);
    const char *pw = json_string_value(json_object_get(
        json_object_get(json_array_get(lines, 0), "CertificateInformation"), "Password"));
    CU_ASSERT_PTR_NOT_NULL(pw);
    CU_ASSERT_PTR_NULL(pw && err ? strstr(err, pw) : NULL);
    struct stat st;
    CU_ASSERT_EQUAL(stat(results, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    json_decref(lines);
    free(pin);
    free(err);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_help_texts),
        TEST_CASE(test_every_key_type_format_and_storage),
        TEST_CASE(test_bad_lines_fail_alone),
        TEST_CASE(test_wrong_pin_does_nothing),
        TEST_CASE(test_missing_module_does_nothing),
        TEST_CASE(test_config_errors_name_their_path),
        TEST_CASE(test_other_token_through_config),
        TEST_CASE(test_chain_order_headers_and_result_fields),
        TEST_CASE(test_rerun_needs_force_and_stdin_works),
        TEST_CASE(test_ca_show_and_token_list),
        TEST_CASE(test_progress_summary_and_quiet),
        TEST_END,
    };
    return test_main("run", cases, setup, teardown);
}
