/* Embedded two-level CA over HSM keys: creation (ca init), loading, and issuance. */
#include "ca/local_ca.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch/keyhistory.h"
#include "batch/output.h"
#include "formats/base64.h"
#include "formats/csr.h"
#include "formats/dn.h"
#include "formats/hex.h"
#include "ca/hsm_signer.h"

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

/* The string value of "key":"..." in a log line (no escapes in these values), copied to out. */
static bool log_field(const char *line, const char *key, char *out, size_t size)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char *at = strstr(line, pattern);
    if (at == NULL)
        return false;
    at += strlen(pattern);
    const char *end = strchr(at, '"');
    if (end == NULL || (size_t)(end - at) >= size)
        return false;
    memcpy(out, at, (size_t)(end - at));
    out[end - at] = '\0';
    return true;
}

static void request_key(const char *run_id, const char *request_id, char *out, size_t size)
{
    snprintf(out, size, "%s\x1f%s", run_id, request_id);
}

/* The KeyfactorID of the log's last line (which is also the number of lines), read from the end
 * of the file: the CA opens in constant time whatever its history. -1 when the last line is torn
 * or not one of ours (then the lines are counted). */
static long long last_keyfactor_id(FILE *log)
{
    if (fseeko(log, 0, SEEK_END) != 0)
        return -1;
    off_t size = ftello(log);
    if (size == 0)
        return 0;
    char buf[65536];
    off_t from = size > (off_t)sizeof buf - 1 ? size - (off_t)sizeof buf + 1 : 0;
    if (fseeko(log, from, SEEK_SET) != 0)
        return -1;
    size_t n = fread(buf, 1, (size_t)(size - from), log);
    fseeko(log, 0, SEEK_END);
    if (n == 0 || buf[n - 1] != '\n')
        return -1;
    buf[n - 1] = '\0';
    char *start = strrchr(buf, '\n');
    start = start ? start + 1 : (from == 0 ? buf : NULL);
    long long id;
    if (start == NULL || sscanf(start, "{\"KeyfactorID\":%lld,", &id) != 1 || id < 1)
        return -1;
    return id;
}

/* Starts an empty index of run_id's issuances (forgetting any other run's). */
static void index_run(local_ca *ca, const char *run_id)
{
    idset_free(&ca->issued_requests);
    idset_init(&ca->issued_requests);
    free(ca->indexed_run);
    ca->indexed_run = strdup(run_id);
}

/* Counts the issuances; with run_id, indexes that run's (and forgets any other run's index). */
static long long scan_log(local_ca *ca, const char *run_id)
{
    long long n = 0;
    char *line = NULL, run[64], request[256], key[400];
    size_t cap = 0;
    if (run_id != NULL)
        index_run(ca, run_id);
    rewind(ca->log);
    while (getline(&line, &cap, ca->log) > 0) {
        n++;
        if (run_id != NULL && log_field(line, "RunId", run, sizeof run) &&
            strcmp(run, run_id) == 0 && log_field(line, "RequestId", request, sizeof request)) {
            request_key(run, request, key, sizeof key);
            idset_insert(&ca->issued_requests, key);
        }
    }
    free(line);
    fseeko(ca->log, 0, SEEK_END); /* reading, then appending: reposition between */
    return n;
}

/* The number of issuances in the log: the last line's KeyfactorID, or the lines counted when
 * that line is torn. */
static long long logged_count(local_ca *ca)
{
    long long last = last_keyfactor_id(ca->log);
    return last >= 0 ? last : scan_log(ca, NULL);
}

/* The certificate an issuance log line records (NULL when it has none) and its KeyfactorID. */
static X509 *line_certificate(const char *line, long long *keyfactor_id)
{
    json_t *entry = json_loads(line, 0, NULL);
    X509 *cert = x509_from_base64(json_string_value(json_object_get(entry, "Certificate")));
    if (keyfactor_id != NULL)
        *keyfactor_id = json_integer_value(json_object_get(entry, "KeyfactorID"));
    json_decref(entry);
    return cert;
}

/* The certificate issued earlier to (run_id, request_id), from the log; NULL if none. */
static X509 *find_issued(local_ca *ca, const char *run_id, const char *request_id,
                         long long *keyfactor_id)
{
    char *line = NULL, run[64], request[256];
    size_t cap = 0;
    X509 *found = NULL;
    rewind(ca->log);
    while (found == NULL && getline(&line, &cap, ca->log) > 0) {
        if (!log_field(line, "RunId", run, sizeof run) || strcmp(run, run_id) != 0 ||
            !log_field(line, "RequestId", request, sizeof request) ||
            strcmp(request, request_id) != 0)
            continue;
        found = line_certificate(line, keyfactor_id);
    }
    free(line);
    fseeko(ca->log, 0, SEEK_END);
    return found;
}

X509 *local_ca_log_find(const char *home, long long keyfactor_id)
{
    char *path = path_in(home, "issued.ndjson");
    FILE *f = path ? fopen(path, "r") : NULL;
    free(path);
    if (f == NULL)
        return NULL;
    char prefix[64];
    int plen = snprintf(prefix, sizeof prefix, "{\"KeyfactorID\":%lld,", keyfactor_id);
    char *line = NULL;
    size_t cap = 0;
    X509 *found = NULL;
    while (found == NULL && getline(&line, &cap, f) > 0) {
        if (strncmp(line, prefix, (size_t)plen) != 0)
            continue; /* lines are written with KeyfactorID first */
        found = line_certificate(line, NULL);
        if (found == NULL)
            break; /* issued before certificates were logged */
    }
    free(line);
    fclose(f);
    return found;
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

int local_ca_open(local_ca *ca, const char *home, hsm_session *session, enroll_error *err)
{
    memset(ca, 0, sizeof *ca);
    pthread_mutex_init(&ca->lock, NULL);
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
    p = path_in(home, "issued.ndjson");
    ca->log = p ? fopen(p, "a+e") : NULL;
    free(p);
    if (ca->log == NULL) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "cannot open %s/issued.ndjson: %s", home,
                         strerror(errno));
        return -1;
    }
    idset_init(&ca->issued_requests);
    ca->issued_count = logged_count(ca);
    ca->log_end = -1; /* read again under the lock at the first issuance: another process may
                       * have appended since */
    return 0;
}

void local_ca_close(local_ca *ca)
{
    if (ca->log != NULL) {
        fflush(ca->log);
        fsync(fileno(ca->log));
        fclose(ca->log);
    }
    idset_free(&ca->issued_requests);
    free(ca->indexed_run);
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
    pthread_mutex_destroy(&ca->lock);
    memset(ca, 0, sizeof *ca);
}

static int add_subject_key_id(X509 *cert, EVP_PKEY *pub)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    int ok = os != NULL && X509_pubkey_digest(cert, EVP_sha1(), md, &len) &&
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

static void iso_time(const ASN1_TIME *t, char *buf, size_t size)
{
    struct tm tm;
    if (t != NULL && ASN1_TIME_to_tm(t, &tm))
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else
        snprintf(buf, size, "?");
}

int local_ca_issue_cert(local_ca *ca, hsm_session *session, X509_REQ *csr,
                        const local_ca_issue *params, local_ca_issued *out, enroll_error *err)
{
    memset(out, 0, sizeof *out);
    EVP_PKEY *pub = X509_REQ_get0_pubkey(csr);
    if (pub == NULL || X509_REQ_verify(csr, pub) != 1) {
        ERR_clear_error();
        enroll_error_set(err, HSE_CA_REJECTED, NULL,
                         "the request's signature does not verify (no proof of possession)");
        return -1;
    }
    if (params->run_id != NULL && params->request_id != NULL) {
        /* Asked again for a request it has issued (a run resumed after a crash): the same
         * certificate, never a second one. */
        char key[400];
        request_key(params->run_id, params->request_id, key, sizeof key);
        pthread_mutex_lock(&ca->lock);
        X509 *earlier = NULL;
        if (ca->indexed_run == NULL || strcmp(ca->indexed_run, params->run_id) != 0) {
            if (params->resumed)
                scan_log(ca, params->run_id); /* once per run asking */
            else
                index_run(ca, params->run_id); /* a new run id: none of it is in the log */
        }
        if (idset_contains(&ca->issued_requests, key))
            earlier = find_issued(ca, params->run_id, params->request_id, &out->keyfactor_id);
        pthread_mutex_unlock(&ca->lock);
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
         X509_add_ext(cert, ca->ext_aki, -1) && copy_sans(cert, csr, params->sans);
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

    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(out->cert), NULL);
    char *serial_hex = serial ? BN_bn2hex(serial) : NULL;
    char *subject = dn_format(X509_get_subject_name(out->cert));
    unsigned char fingerprint[32];
    char fingerprint_hex[65] = "";
    if (spki_fingerprint(X509_get_X509_PUBKEY(out->cert), fingerprint) == 0)
        key_history_hex(fingerprint, fingerprint_hex);
    char not_after[32], now[32];
    iso_time(X509_get0_notAfter(out->cert), not_after, sizeof not_after);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char *cert_b64 = params->run_id != NULL ? x509_to_base64(out->cert) : NULL;
    pthread_mutex_lock(&ca->lock);
    /* Several processes may issue from one CA home (shards on one machine): the log is locked
     * for the append, and a log that grew since this process's last line has the last
     * KeyfactorID on its last line. */
    int locked = flock(fileno(ca->log), LOCK_EX) == 0;
    struct stat st;
    if (locked && fstat(fileno(ca->log), &st) == 0 && st.st_size != ca->log_end) {
        ca->issued_count = logged_count(ca);
    }
    out->keyfactor_id = ++ca->issued_count;
    json_t *line = json_pack("{s:I, s:s?, s:s?, s:s?, s:s?, s:s, s:s, s:s, s:s?}", "KeyfactorID",
                             (json_int_t)out->keyfactor_id, "RunId", params->run_id, "RequestId",
                             params->request_id, "Serial", serial_hex, "Subject", subject,
                             "NotAfter", not_after, "Issued", now, KEY_HISTORY_FIELD,
                             fingerprint_hex, "Certificate", cert_b64);
    /* Not indexed: within one process a run asks once per request (its Ids are unique); only a
     * resumed run asks again, and its next process finds this line in the log. So the index
     * holds what a run issued before it was interrupted, not the whole batch. */
    char *text = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    int logged =
        locked && text != NULL && fprintf(ca->log, "%s\n", text) > 0 && fflush(ca->log) == 0;
    if (logged && fstat(fileno(ca->log), &st) == 0)
        ca->log_end = st.st_size;
    if (locked)
        flock(fileno(ca->log), LOCK_UN);
    pthread_mutex_unlock(&ca->lock);
    free(text);
    free(cert_b64);
    json_decref(line);
    free(subject);
    OPENSSL_free(serial_hex);
    BN_free(serial);
    if (!logged) {
        enroll_error_set(err, HSE_CA_SIGN_FAILED, NULL,
                         "cannot record the issuance in %s/issued.ndjson", ca->home);
        X509_free(out->cert);
        out->cert = NULL;
        return -1;
    }
    return 0;
}
