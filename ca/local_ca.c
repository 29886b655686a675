/* Embedded two-level CA over HSM keys: creation (ca init), loading, issuance, and its description
 * (ca show). The issuance log is ca/issuance_log.c. */
#include "ca/local_ca.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch/output.h"
#include "formats/algs.h"
#include "formats/csr.h"
#include "formats/dn.h"
#include "formats/hex.h"
#include "formats/sign.h"
#include "ca/hsm_signer.h"
#include "ca/issuance_log.h"

struct local_ca {
    char *home;
    X509 *root, *issuing;
    STACK_OF(X509) * chain; /* issuing CA, then root */
    EVP_PKEY *issuing_pub;
    sig_alg alg;
    CK_OBJECT_HANDLE issuing_key; /* found again by local_ca_find_key after a module restart */
    unsigned char issuing_key_id[HSM_KEY_ID_LEN];
    char *token_label;
    char *issuing_key_uri, *root_key_uri;
    X509_EXTENSION *ext_basic, *ext_eku, *ext_aki;
    issuance_log *log; /* issued.ndjson, appended; thread-safe on its own */
};

static const char *const ROOT_LABEL = "hsmenroll-ca-root";
static const char *const ISSUING_LABEL = "hsmenroll-ca-issuing";

void local_ca_default_options(local_ca_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->root_key = (hsm_key_spec){HSM_KEY_EC, 0, HSM_CURVE_P384};
    opt->issuing_key = (hsm_key_spec){HSM_KEY_EC, 0, HSM_CURVE_P256};
    opt->root_days = 7300;
    opt->issuing_days = 3650;
    opt->name = "hsmenroll";
}

const char *local_ca_key_name(const hsm_key_spec *spec, char *buf, size_t size)
{
    if (spec->type == HSM_KEY_RSA)
        snprintf(buf, size, "RSA-%d", (int)spec->rsa_bits);
    else
        snprintf(buf, size, "ECC-P%s",
                 spec->curve == HSM_CURVE_P384   ? "384"
                 : spec->curve == HSM_CURVE_P521 ? "521"
                                                 : "256");
    return buf;
}

int local_ca_fit_keys(local_ca_options *opt, hsm_session *session, bool explicit_keys,
                      bool *chosen_rsa, enroll_error *err)
{
    *chosen_rsa = false;
    hsm_caps caps;
    hsm_error herr;
    if (hsm_caps_probe(session->token->module, session->token->desc.slot, &caps, &herr) != 0) {
        hsm_error_to_enroll(&herr, HSE_CA_INIT_FAILED, err);
        return -1;
    }
    char why[300], name[32];
    static const hsm_key_spec rsa_root = {HSM_KEY_RSA, 3072, 0},
                              rsa_issuing = {HSM_KEY_RSA, 2048, 0};
    if (!explicit_keys &&
        (!hsm_caps_keygen(&caps, &opt->root_key, why, sizeof why) ||
         !hsm_caps_keygen(&caps, &opt->issuing_key, why, sizeof why)) &&
        hsm_caps_keygen(&caps, &rsa_root, why, sizeof why) &&
        hsm_caps_keygen(&caps, &rsa_issuing, why, sizeof why)) {
        opt->root_key = rsa_root;
        opt->issuing_key = rsa_issuing;
        *chosen_rsa = true;
    }
    const hsm_key_spec *specs[2] = {&opt->root_key, &opt->issuing_key};
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        if (hsm_caps_keygen(&caps, specs[i], why, sizeof why))
            continue;
        /* What this token can make, as --root-key/--issuing-key spell it. */
        static const hsm_key_spec all[] = {
            {HSM_KEY_EC, 0, HSM_CURVE_P256}, {HSM_KEY_EC, 0, HSM_CURVE_P384},
            {HSM_KEY_EC, 0, HSM_CURVE_P521}, {HSM_KEY_RSA, 2048, 0},
            {HSM_KEY_RSA, 3072, 0},          {HSM_KEY_RSA, 4096, 0},
        };
        char can[160] = "", unused[8];
        for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
            if (hsm_caps_keygen(&caps, &all[k], unused, sizeof unused))
                snprintf(can + strlen(can), sizeof can - strlen(can), "%s%s", can[0] ? ", " : "",
                         local_ca_key_name(&all[k], name, sizeof name));
        enroll_error_set(err, HSE_HSM_CANNOT_GENERATE, NULL,
                         "the CA's %s key %s cannot be made in token \"%s\": %s; %s%s%s",
                         i ? "issuing" : "root", local_ca_key_name(specs[i], name, sizeof name),
                         session->token->desc.label, why,
                         can[0] ? "it can make " : "it can make none of the CA key types", can,
                         can[0] ? " (--key-type RSA|ECC, --root-key, --issuing-key)" : "");
        rc = -1;
    }
    hsm_caps_free(&caps);
    return rc;
}

static char *path_in(const char *home, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", home, name) < 0)
        return NULL;
    return p;
}

bool local_ca_exists(const char *home)
{
    char *p = path_in(home, "ca.json");
    bool exists = p != NULL && access(p, F_OK) == 0;
    free(p);
    return exists;
}

/* A positive, non-zero 128-bit serial from the CSPRNG (RFC 5280 section 4.1.2.2). */
static int set_random_serial(X509 *cert)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return 0;
    b[0] &= 0x7f;
    if (b[0] == 0)
        b[0] = 0x40;
    BIGNUM *bn = BN_bin2bn(b, sizeof b, NULL);
    int ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    return ok;
}

static int add_conf_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = ext != NULL && X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* A CA certificate for pub, signed by s (issuer NULL: self-signed). */
static X509 *make_ca_cert(const char *subject_text, X509 *issuer, EVP_PKEY *pub, int days,
                          const char *basic, const signer *s, enroll_error *err)
{
    X509_NAME *subject = dn_parse(subject_text, "Subject", err);
    X509 *cert = X509_new();
    X509 *signed_cert = NULL;
    if (subject == NULL || cert == NULL)
        goto done;
    if (!X509_set_version(cert, X509_VERSION_3) || !set_random_serial(cert) ||
        !X509_set_subject_name(cert, subject) ||
        !X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : subject) ||
        !X509_gmtime_adj(X509_getm_notBefore(cert), -300) ||
        !X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400) ||
        !X509_set_pubkey(cert, pub) || !add_conf_ext(cert, issuer, NID_basic_constraints, basic) ||
        !add_conf_ext(cert, issuer, NID_key_usage,
                      issuer ? "critical,keyCertSign,cRLSign,digitalSignature"
                             : "critical,keyCertSign,cRLSign") ||
        !add_conf_ext(cert, issuer, NID_subject_key_identifier, "hash") ||
        (issuer != NULL &&
         !add_conf_ext(cert, issuer, NID_authority_key_identifier, "keyid:always"))) {
        enroll_error_set(err, HSE_CA_INIT_FAILED, NULL, "cannot build the CA certificate %s",
                         subject_text);
        enroll_error_add_openssl(err);
        goto done;
    }
    signed_cert = cert_sign(cert, s, err);
done:
    X509_NAME_free(subject);
    X509_free(cert);
    return signed_cert;
}

static char *cert_pem(X509 *const *certs, size_t n, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;
    for (size_t i = 0; bio != NULL && i < n; i++)
        if (!PEM_write_bio_X509(bio, certs[i]))
            goto done;
    char *data;
    long size = BIO_get_mem_data(bio, &data);
    out = malloc((size_t)size + 1);
    if (out != NULL) {
        memcpy(out, data, (size_t)size);
        out[size] = '\0';
        *len = (size_t)size;
    }
done:
    BIO_free(bio);
    return out;
}

static int write_text(const output_dir *dir, const char *name, const char *text, size_t len,
                      enroll_error *err)
{
    return output_write_atomic(dir, name, text, len, 0644, err);
}

int local_ca_create(const char *home, hsm_session *session, const local_ca_options *opt,
                    enroll_error *err)
{
    if (local_ca_exists(home)) {
        enroll_error_set(err, HSE_CA_EXISTS, NULL, "%s already holds a CA (ca.json)", home);
        return -1;
    }
    /* Its parents too (HOME/cas of a CA without Home), each 0700. */
    char path[4096];
    snprintf(path, sizeof path, "%s", home);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            (void)mkdir(path, 0700);
            *p = '/';
        }
    if (mkdir(home, 0700) != 0 && errno != EEXIST) {
        enroll_error_set(err, HSE_CA_INIT_FAILED, NULL, "cannot create %s: %s", home,
                         strerror(errno));
        return -1;
    }
    int rc = -1;
    hsm_keypair root_pair = {0}, issuing_pair = {0};
    EVP_PKEY *root_pub = NULL, *issuing_pub = NULL;
    X509 *root = NULL, *issuing = NULL;
    char *uri_root = NULL, *uri_issuing = NULL, *pem = NULL;
    json_t *state = NULL;
    output_dir dir = {.fd = -1};
    hsm_error herr;

    if (hsm_generate_keypair(session, &opt->root_key, HSM_STORAGE_TOKEN, ROOT_LABEL, &root_pair,
                             &herr) != 0 ||
        hsm_generate_keypair(session, &opt->issuing_key, HSM_STORAGE_TOKEN, ISSUING_LABEL,
                             &issuing_pair, &herr) != 0) {
        hsm_error_to_enroll(&herr, HSE_CA_INIT_FAILED, err);
        goto done;
    }
    root_pub = hsm_keypair_public(&root_pair, err);
    issuing_pub = hsm_keypair_public(&issuing_pair, err);
    if (root_pub == NULL || issuing_pub == NULL)
        goto done;

    unsigned char tag[2];
    char tag_hex[5], root_dn[160], issuing_dn[160];
    RAND_bytes(tag, sizeof tag);
    hex_encode(tag, sizeof tag, tag_hex, sizeof tag_hex, false);
    snprintf(root_dn, sizeof root_dn, "CN=%s Root CA %s,O=%s embedded CA", opt->name, tag_hex,
             opt->name);
    snprintf(issuing_dn, sizeof issuing_dn, "CN=%s Issuing CA %s,O=%s embedded CA", opt->name,
             tag_hex, opt->name);
    signer root_signer;
    hsm_signer_ctx root_ctx;
    hsm_signer_init(&root_signer, &root_ctx, session, root_pair.private_key,
                    sig_alg_for_key(root_pub));
    root = make_ca_cert(root_dn, NULL, root_pub, opt->root_days, "critical,CA:TRUE", &root_signer,
                        err);
    if (root == NULL)
        goto done;
    issuing = make_ca_cert(issuing_dn, root, issuing_pub, opt->issuing_days,
                           "critical,CA:TRUE,pathlen:0", &root_signer, err);
    if (issuing == NULL)
        goto done;

    if (output_dir_open(&dir, home, true, err) != 0)
        goto done;
    size_t len;
    X509 *both[2] = {issuing, root};
    if ((pem = cert_pem(&root, 1, &len)) == NULL || write_text(&dir, "root.pem", pem, len, err))
        goto done;
    free(pem);
    if ((pem = cert_pem(&issuing, 1, &len)) == NULL ||
        write_text(&dir, "issuing.pem", pem, len, err))
        goto done;
    free(pem);
    if ((pem = cert_pem(both, 2, &len)) == NULL || write_text(&dir, "chain.pem", pem, len, err))
        goto done;

    char root_id[2 * HSM_KEY_ID_LEN + 1], issuing_id[2 * HSM_KEY_ID_LEN + 1];
    hex_encode(root_pair.id, HSM_KEY_ID_LEN, root_id, sizeof root_id, false);
    hex_encode(issuing_pair.id, HSM_KEY_ID_LEN, issuing_id, sizeof issuing_id, false);
    uri_root = hsm_object_uri(&session->token->desc, root_pair.id, HSM_KEY_ID_LEN, ROOT_LABEL,
                              CKO_PRIVATE_KEY);
    uri_issuing = hsm_object_uri(&session->token->desc, issuing_pair.id, HSM_KEY_ID_LEN,
                                 ISSUING_LABEL, CKO_PRIVATE_KEY);
    state = json_pack("{s:s, s:s, s:s, s:s?, s:s?}", "Token", session->token->desc.label,
                      "RootKeyId", root_id, "IssuingKeyId", issuing_id, "RootKeyUri", uri_root,
                      "IssuingKeyUri", uri_issuing);
    char *text = state ? json_dumps(state, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (text == NULL || write_text(&dir, "ca.json", text, strlen(text), err) != 0) {
        free(text);
        goto done;
    }
    free(text);
    rc = 0;
done:
    if (rc != 0) {
        /* Leave no half CA behind: neither keys in the token nor files. */
        hsm_destroy_keypair(session, &root_pair, NULL);
        hsm_destroy_keypair(session, &issuing_pair, NULL);
    }
    free(pem);
    free(uri_root);
    free(uri_issuing);
    json_decref(state);
    output_dir_close(&dir);
    X509_free(root);
    X509_free(issuing);
    EVP_PKEY_free(root_pub);
    EVP_PKEY_free(issuing_pub);
    hsm_keypair_release(&root_pair);
    hsm_keypair_release(&issuing_pair);
    return rc;
}

static X509 *read_cert(const char *home, const char *name, enroll_error *err)
{
    char *p = path_in(home, name);
    FILE *f = p ? fopen(p, "r") : NULL;
    X509 *cert = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (cert == NULL)
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "cannot read the CA certificate %s",
                         p ? p : name);
    if (f != NULL)
        fclose(f);
    free(p);
    return cert;
}

int local_ca_find_key(local_ca *ca, hsm_session *session, enroll_error *err)
{
    hsm_error herr;
    CK_OBJECT_HANDLE found[2];
    int n = hsm_find_objects(session, CKO_PRIVATE_KEY, ca->issuing_key_id,
                             sizeof ca->issuing_key_id, NULL, found, 2, &herr);
    if (n != 1) {
        if (n < 0)
            hsm_error_to_enroll(&herr, HSE_CA_UNAVAILABLE, err);
        else
            enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL,
                             "the issuing CA key %s is %s in token \"%s\"",
                             ca->issuing_key_uri ? ca->issuing_key_uri : "(no URI)",
                             n == 0 ? "missing" : "not unique", session->token->desc.label);
        return -1;
    }
    __atomic_store_n(&ca->issuing_key, found[0], __ATOMIC_RELEASE); /* read by signing threads */
    return 0;
}

static int open_ca(local_ca *ca, const char *home, hsm_session *session, enroll_error *err)
{
    ca->home = strdup(home);
    char *p = path_in(home, "ca.json");
    json_error_t jerr;
    json_t *state = p ? json_load_file(p, 0, &jerr) : NULL;
    free(p);
    if (state == NULL) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL,
                         "no embedded CA in %s (run `hsmenroll ca init`)", home);
        return -1;
    }
    unsigned char *id = ca->issuing_key_id;
    const char *token = json_string_value(json_object_get(state, "Token"));
    const char *uri = json_string_value(json_object_get(state, "IssuingKeyUri"));
    const char *root_uri = json_string_value(json_object_get(state, "RootKeyUri"));
    ca->token_label = strdup(token ? token : "");
    ca->issuing_key_uri = uri ? strdup(uri) : NULL;
    ca->root_key_uri = root_uri ? strdup(root_uri) : NULL;
    int bad_id = hex_decode(json_string_value(json_object_get(state, "IssuingKeyId")), id,
                            sizeof ca->issuing_key_id);
    json_decref(state);
    if (bad_id) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "%s/ca.json has no valid IssuingKeyId",
                         home);
        return -1;
    }
    if (token != NULL && strcmp(ca->token_label, session->token->desc.label) != 0) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL,
                         "the embedded CA's keys are in token \"%s\", not \"%s\"", ca->token_label,
                         session->token->desc.label);
        return -1;
    }
    if ((ca->root = read_cert(home, "root.pem", err)) == NULL ||
        (ca->issuing = read_cert(home, "issuing.pem", err)) == NULL)
        return -1;
    ca->chain = sk_X509_new_null();
    X509_up_ref(ca->issuing);
    X509_up_ref(ca->root);
    sk_X509_push(ca->chain, ca->issuing);
    sk_X509_push(ca->chain, ca->root);
    ca->issuing_pub = X509_get_pubkey(ca->issuing);
    ca->alg = ca->issuing_pub ? sig_alg_for_key(ca->issuing_pub) : SIG_NONE;

    if (local_ca_find_key(ca, session, err) != 0)
        return -1;

    /* Extensions every issued certificate carries, made once. */
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca->issuing, NULL, NULL, NULL, 0);
    ca->ext_basic = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:FALSE");
    ca->ext_eku = X509V3_EXT_conf_nid(NULL, &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
    ca->ext_aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    if (ca->ext_basic == NULL || ca->ext_eku == NULL || ca->ext_aki == NULL) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "cannot prepare the CA's extensions");
        enroll_error_add_openssl(err);
        return -1;
    }
    if ((ca->log = issuance_log_open(home, true, err)) == NULL)
        return -1;
    return 0;
}

local_ca *local_ca_open(const char *home, hsm_session *session, enroll_error *err)
{
    local_ca *ca = calloc(1, sizeof *ca);
    if (ca == NULL || open_ca(ca, home, session, err) != 0) {
        if (ca == NULL)
            enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        local_ca_close(ca);
        return NULL;
    }
    return ca;
}

void local_ca_close(local_ca *ca)
{
    if (ca == NULL)
        return;
    issuance_log_close(ca->log);
    X509_EXTENSION_free(ca->ext_basic);
    X509_EXTENSION_free(ca->ext_eku);
    X509_EXTENSION_free(ca->ext_aki);
    EVP_PKEY_free(ca->issuing_pub);
    sk_X509_pop_free(ca->chain, X509_free);
    X509_free(ca->root);
    X509_free(ca->issuing);
    free(ca->home);
    free(ca->token_label);
    free(ca->issuing_key_uri);
    free(ca->root_key_uri);
    free(ca);
}

int local_ca_log_callers(const char *home,
                         void (*fn)(void *ctx, const char *caller, const char *csr_sha256,
                                    long long keyfactor_id),
                         void *ctx)
{
    issuance_log *log = issuance_log_open(home, false, NULL);
    if (log == NULL)
        return -1;
    issuance_log_each_caller(log, fn, ctx);
    issuance_log_close(log);
    return 0;
}

X509 *local_ca_log_find(const char *home, long long keyfactor_id)
{
    issuance_log *log = issuance_log_open(home, false, NULL);
    X509 *found = log ? issuance_log_find_id(log, keyfactor_id) : NULL;
    issuance_log_close(log);
    return found;
}

STACK_OF(X509) * local_ca_chain(const local_ca *ca)
{
    return ca->chain;
}

X509 *local_ca_root(const local_ca *ca)
{
    return ca->root;
}

X509 *local_ca_issuing(const local_ca *ca)
{
    return ca->issuing;
}

const char *local_ca_home(const local_ca *ca)
{
    return ca->home;
}

const char *local_ca_token_label(const local_ca *ca)
{
    return ca->token_label;
}

const char *local_ca_root_key_uri(const local_ca *ca)
{
    return ca->root_key_uri;
}

const char *local_ca_issuing_key_uri(const local_ca *ca)
{
    return ca->issuing_key_uri;
}

long long local_ca_issued_count(const local_ca *ca)
{
    return issuance_log_count(ca->log);
}

static json_t *describe_cert(X509 *cert)
{
    if (cert == NULL)
        return NULL;
    char *subject = dn_format(X509_get_subject_name(cert));
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *serial = bn ? BN_bn2hex(bn) : NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    X509_digest(cert, EVP_sha256(), md, &n);
    char fp[EVP_MAX_MD_SIZE * 2 + 1];
    hex_encode(md, n, fp, sizeof fp, true);
    char nb[32] = "?", na[32] = "?";
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notBefore(cert), &tm))
        strftime(nb, sizeof nb, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm))
        strftime(na, sizeof na, "%Y-%m-%dT%H:%M:%SZ", &tm);
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    json_t *out = json_pack(
        "{s:s?, s:s?, s:s, s:s, s:s, s:s, s:i}", "Subject", subject, "SerialNumber", serial,
        "NotBefore", nb, "NotAfter", na, "SHA256Fingerprint", fp, "KeyType",
        pub ? EVP_PKEY_get0_type_name(pub) : "?", "KeyBits", pub ? EVP_PKEY_get_bits(pub) : 0);
    free(subject);
    OPENSSL_free(serial);
    BN_free(bn);
    X509_free(cert);
    return out;
}

/* The number of issuances in the log of home; 0 without a log. */
static long long count_issued(const char *home)
{
    issuance_log *log = issuance_log_open(home, false, NULL);
    long long n = log ? issuance_log_count(log) : 0;
    issuance_log_close(log);
    return n;
}

json_t *local_ca_describe(const char *home, const char *name)
{
    json_t *root = describe_cert(read_cert(home, "root.pem", NULL));
    json_t *issuing = describe_cert(read_cert(home, "issuing.pem", NULL));
    char *p = path_in(home, "ca.json");
    json_t *state = p ? json_load_file(p, 0, NULL) : NULL;
    free(p);
    char *chain = path_in(home, "chain.pem");
    const char *token = json_string_value(json_object_get(state, "Token"));
    json_t *out = json_pack("{s:s, s:s, s:s, s:o*, s:o*, s:O*, s:O*, s:s, s:I}", "Name", name,
                            "Home", home, "Token", token ? token : "?", "Root", root, "IssuingCA",
                            issuing, "RootKeyUri", json_object_get(state, "RootKeyUri"),
                            "IssuingKeyUri", json_object_get(state, "IssuingKeyUri"), "ChainFile",
                            chain, "Issued", (json_int_t)count_issued(home));
    json_decref(state);
    free(chain);
    return out;
}

static int add_subject_key_id(X509 *cert, EVP_PKEY *pub)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    int ok = os != NULL && X509_pubkey_digest(cert, algs_md(NID_sha1), md, &len) &&
             ASN1_OCTET_STRING_set(os, md, (int)len) &&
             X509_add1_ext_i2d(cert, NID_subject_key_identifier, os, 0, X509V3_ADD_DEFAULT) == 1;
    (void)pub;
    ASN1_OCTET_STRING_free(os);
    return ok;
}

static int add_key_usage(X509 *cert, EVP_PKEY *pub)
{
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    int ok = ku != NULL && ASN1_BIT_STRING_set_bit(ku, 0, 1); /* digitalSignature */
    if (ok && EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA)
        ok = ASN1_BIT_STRING_set_bit(ku, 2, 1); /* keyEncipherment */
    ok = ok && X509_add1_ext_i2d(cert, NID_key_usage, ku, 1, X509V3_ADD_DEFAULT) == 1;
    ASN1_BIT_STRING_free(ku);
    return ok;
}

/* subjectAltName: the given names, or those of the request's extensionRequest, if any. */
static int copy_sans(X509 *cert, X509_REQ *csr, const GENERAL_NAMES *sans)
{
    if (sans != NULL)
        return sk_GENERAL_NAME_num(sans) == 0 ||
               X509_add1_ext_i2d(cert, NID_subject_alt_name, (void *)sans, 0, X509V3_ADD_DEFAULT) ==
                   1;
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    int ok = 1;
    int i = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);
    if (i >= 0)
        ok = X509_add_ext(cert, sk_X509_EXTENSION_value(exts, i), -1);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return ok;
}

/* crlDistributionPoints and authorityInfoAccess (OCSP) when the CA has CrlUrl / OcspUrl. */
static int add_revocation_pointers(X509 *cert, const local_ca_issue *params)
{
    char value[1100];
    if (params->crl_url != NULL) {
        snprintf(value, sizeof value, "URI:%.1000s", params->crl_url);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_crl_distribution_points, value);
        int ok = ext != NULL && X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
        if (!ok)
            return 0;
    }
    if (params->ocsp_url != NULL) {
        snprintf(value, sizeof value, "OCSP;URI:%.1000s", params->ocsp_url);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_info_access, value);
        int ok = ext != NULL && X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
        if (!ok)
            return 0;
    }
    return 1;
}

void local_ca_signer(local_ca *ca, hsm_session *session, signer *s, hsm_signer_ctx *ctx)
{
    hsm_signer_init(s, ctx, session, ca->issuing_key, ca->alg);
}

int local_ca_issue_cert(local_ca *ca, hsm_session *session, X509_REQ *csr,
                        const local_ca_issue *params, local_ca_issued *out, enroll_error *err)
{
    memset(out, 0, sizeof *out);
    EVP_PKEY *pub = X509_REQ_get0_pubkey(csr);
    if (pub == NULL || !csr_signature_verifies(csr, pub)) {
        ERR_clear_error();
        enroll_error_set(err, HSE_CA_REJECTED, NULL,
                         "the request's signature does not verify (no proof of possession)");
        return -1;
    }
    if (params->run_id != NULL && params->request_id != NULL) {
        /* Asked again for a request it has issued (a run resumed after a crash): the same
         * certificate, never a second one. */
        X509 *earlier = issuance_log_find_request(ca->log, params->run_id, params->request_id,
                                                  params->resumed, &out->keyfactor_id);
        if (earlier != NULL) {
            if (EVP_PKEY_eq(X509_get0_pubkey(earlier), pub) == 1) {
                out->cert = earlier;
                return 0;
            }
            X509_free(earlier);
            enroll_error_set(err, HSE_CA_DUPLICATE_REQUEST, NULL,
                             "request %s of run %s was issued before for another key",
                             params->request_id, params->run_id);
            return -1;
        }
    }
    X509 *cert = X509_new();
    long days = params->validity_days > 0 ? params->validity_days : 365;
    int ok = cert != NULL && X509_set_version(cert, X509_VERSION_3) && set_random_serial(cert) &&
             X509_set_subject_name(cert, X509_REQ_get_subject_name(csr)) &&
             X509_set_issuer_name(cert, X509_get_subject_name(ca->issuing)) &&
             X509_gmtime_adj(X509_getm_notBefore(cert), -300) &&
             X509_gmtime_adj(X509_getm_notAfter(cert), days * 86400) && X509_set_pubkey(cert, pub);
    /* Never past the issuing CA's own end of validity. */
    if (ok && ASN1_TIME_compare(X509_get0_notAfter(cert), X509_get0_notAfter(ca->issuing)) > 0)
        ok = X509_set1_notAfter(cert, X509_get0_notAfter(ca->issuing));
    ok = ok && X509_add_ext(cert, ca->ext_basic, -1) && add_key_usage(cert, pub) &&
         X509_add_ext(cert, ca->ext_eku, -1) && add_subject_key_id(cert, pub) &&
         X509_add_ext(cert, ca->ext_aki, -1) && copy_sans(cert, csr, params->sans) &&
         add_revocation_pointers(cert, params);
    if (!ok) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL, "cannot build the certificate");
        enroll_error_add_openssl(err);
        X509_free(cert);
        return -1;
    }
    signer s;
    hsm_signer_ctx ctx;
    hsm_signer_init(&s, &ctx, session, __atomic_load_n(&ca->issuing_key, __ATOMIC_ACQUIRE),
                    ca->alg);
    out->cert = cert_sign(cert, &s, err);
    X509_free(cert);
    if (out->cert == NULL)
        return -1;

    if (issuance_log_append(ca->log, out->cert, params->run_id, params->request_id, params->caller,
                            params->csr_sha256, &out->keyfactor_id, err) != 0) {
        X509_free(out->cert);
        out->cert = NULL;
        return -1;
    }
    return 0;
}
