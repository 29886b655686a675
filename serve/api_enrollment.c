/* Enrollment endpoints of `serve`: POST /Enrollment/CSR (the body, read as a Keyfactor server
 * reads it, becomes a CSR request line checked by the same code as `run`, then signed by the
 * embedded CA), and GET /Enrollment/{CSR,PFX}/Context/My (the templates and CAs the caller may
 * enroll with). */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch/certinfo.h"
#include "batch/jsonobj.h"
#include "batch/log.h"
#include "engine/enroll_one.h"
#include "formats/base64.h"
#include "formats/bundle.h"
#include "formats/hex.h"
#include "serve/internal.h"

#define NO_WORKFLOW "00000000-0000-0000-0000-000000000000"
/* The most SANs one request may carry, the CSR's and the body's together (TOO_MANY_SANS). */
#define SERVE_MAX_SANS 1000

/* The body members of POST /Enrollment/CSR: seed 000 and the v24 and v25 schemas. */
static const char *const csr_body_keys[] = {"CSR",
                                            "CertificateAuthority",
                                            "IncludeChain",
                                            "IncludeSubjectHeader",
                                            "Metadata",
                                            "AdditionalEnrollmentFields",
                                            "OwnerRoleId",
                                            "OwnerRoleName",
                                            "SANs",
                                            "Template",
                                            "EnrollmentPatternId",
                                            "Timestamp",
                                            "PrivateKey",
                                            "RenewalCertificateId",
                                            "FileExtension",
                                            NULL};

static bool key_listed(const char *key, const char *const *keys)
{
    for (size_t i = 0; keys[i] != NULL; i++)
        if (strcasecmp(key, keys[i]) == 0)
            return true;
    return false;
}

/* Each certificate as the x-certificateformat asks: PEM (with its subject line unless
 * IncludeSubjectHeader is false) or base-64 DER. */
static json_t *certificate_strings(STACK_OF(X509) * certs, bool der, bool subject_header)
{
    json_t *out = json_array();
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *cert = sk_X509_value(certs, i);
        BIO *bio = BIO_new(BIO_s_mem());
        if (bio == NULL)
            break;
        if (der) {
            char *b64 = x509_to_base64(cert);
            if (b64 != NULL)
                json_array_append_new(out, json_string(b64));
            free(b64);
        } else {
            STACK_OF(X509) *one = sk_X509_new_null();
            sk_X509_push(one, cert);
            pem_bundle_options po = {.include_subject_header = subject_header};
            enroll_error err;
            if (pem_bundle_write(bio, one, &po, &err) == 0) {
                char *data;
                long len = BIO_get_mem_data(bio, &data);
                json_array_append_new(out, json_stringn(data, (size_t)len));
            }
            sk_X509_free(one);
        }
        BIO_free(bio);
    }
    return out;
}

/* Metadata as the schema has it (a map of strings): null members dropped, numbers and
 * booleans written out. Other values are left for the policy to refuse. */
static void metadata_as_strings(json_t *body)
{
    json_t *md = jobj_get(body, "Metadata");
    if (!json_is_object(md))
        return;
    const char *key;
    json_t *value;
    void *tmp;
    json_object_foreach_safe(md, tmp, key, value)
    {
        char text[64];
        if (json_is_null(value)) {
            json_object_del(md, key);
        } else if (json_is_integer(value)) {
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(value));
            json_object_set_new(md, key, json_string(text));
        } else if (json_is_real(value)) {
            snprintf(text, sizeof text, "%.17g", json_real_value(value));
            json_object_set_new(md, key, json_string(text));
        } else if (json_is_boolean(value)) {
            json_object_set_new(md, key, json_string(json_is_true(value) ? "true" : "false"));
        }
    }
}

/* The body of POST /Enrollment/CSR as a request line of the batch vocabulary. */
static char *line_from_body(server *srv, const api_call *call, const char *format,
                            api_answer *answer)
{
    json_t *body = api_body_object(call, answer);
    if (body == NULL)
        return NULL;
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value)
    {
        if (!key_listed(key, csr_body_keys)) {
            api_error(answer, HSE_UNKNOWN_FIELD, "%.80s: not a field of POST /Enrollment/CSR", key);
            json_decref(body);
            return NULL;
        }
        if (strcasecmp(key, "PrivateKey") == 0 && !json_is_null(value)) {
            api_error(answer, HSE_FIELD_NOT_SUPPORTED,
                      "PrivateKey: this server does not retain private keys");
            json_decref(body);
            return NULL;
        }
    }
    /* The SANs are counted before anything is parsed: a request of 50,000 names costs nothing. */
    json_t *sans = jobj_get(body, "SANs");
    if (json_is_object(sans)) {
        size_t count = 0;
        const char *kind;
        json_t *names;
        json_object_foreach(sans, kind, names)
        {
            count += json_is_array(names) ? json_array_size(names) : 1;
        }
        if (count > SERVE_MAX_SANS) {
            api_error(answer, HSE_TOO_MANY_SANS, "SANs: %zu names; at most %d per request", count,
                      SERVE_MAX_SANS);
            json_decref(body);
            return NULL;
        }
    }
    /* What a Keyfactor server takes and a CSR request line has no use for: the file extension
     * of a download, an explicit null, an empty CA name (a client that names only a pattern). */
    jobj_del(body, "FileExtension");
    jobj_del(body, "PrivateKey");
    json_t *renewal = jobj_get(body, "RenewalCertificateId");
    if (renewal != NULL && json_is_null(renewal))
        jobj_del(body, "RenewalCertificateId");
    json_t *ca = jobj_get(body, "CertificateAuthority");
    if (ca != NULL && (json_is_null(ca) || (json_is_string(ca) && json_string_length(ca) == 0)))
        jobj_del(body, "CertificateAuthority");
    json_t *md = jobj_get(body, "Metadata");
    if (md != NULL && json_is_null(md))
        jobj_del(body, "Metadata");
    metadata_as_strings(body);
    char id[40];
    snprintf(id, sizeof id, "api-%lld", atomic_fetch_add(&srv->next_id, 1));
    json_object_set_new(body, "Id", json_string(id));
    json_object_set_new(body, "Operation", json_string("CSR"));
    json_object_set_new(body, "Format", json_string(format));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL)
        api_error(answer, HSE_INTERNAL, "out of memory");
    return text;
}

static json_t *metadata_answer(const enroll_request *req)
{
    return req->metadata ? json_incref(req->metadata) : json_object();
}

static void answer_pending(server *srv, const enroll_request *req, api_answer *answer)
{
    long long request_id = atomic_fetch_add(&srv->next_pending, 1);
    json_t *info = json_pack(
        "{s:n, s:n, s:n, s:I, s:[], s:s, s:I, s:I, s:s, s:s, s:n}", "SerialNumber", "IssuerDN",
        "Thumbprint", "KeyfactorID", (json_int_t)0, "Certificates", "WorkflowInstanceId",
        NO_WORKFLOW, "WorkflowReferenceId", (json_int_t)0, "KeyfactorRequestId",
        (json_int_t)request_id, "RequestDisposition", "EXTERNAL VALIDATION", "DispositionMessage",
        "The request is waiting for approval (--pending-rate).", "EnrollmentContext");
    answer->body =
        json_pack("{s:o, s:o}", "CertificateInformation", info, "Metadata", metadata_answer(req));
}

/* A checked request the caller may use: answers (and returns false) when the line had errors or
 * the caller holds none of the pattern's roles. */
static bool request_usable(const api_call *call, const enroll_request *req,
                           const policy_decision *decision, error_list *errors, api_answer *answer)
{
    if (req == NULL || errors->count > 0) {
        if (errors->count == 0)
            error_list_add(errors, HSE_INVALID_JSON, NULL, "the body is not a request");
        api_answer_errors(answer, errors);
        return false;
    }
    if (!api_caller_may_use(call, decision->pattern)) {
        api_error(answer, HSE_FORBIDDEN,
                  "user \"%s\" holds none of the roles of enrollment pattern %lld (\"%s\")",
                  serve_user_name(call->caller.user), decision->pattern->id,
                  decision->pattern->name);
        return false;
    }
    return true;
}

/* The index of the request's CA in *ca when this server issues for it; else answers and returns
 * false. */
static bool ca_served(server *srv, const serve_config *sc, const policy_decision *decision,
                      size_t *ca, api_answer *answer)
{
    *ca = (size_t)(decision->ca - sc->cfg->cas);
    if (!srv->ca_open[*ca]) {
        api_error(answer, HSE_CA_NOT_SERVED, "CA \"%s\" is not an embedded CA of this server",
                  decision->ca->name);
        return false;
    }
    return true;
}

/* ---- idempotent replay: the same CSR from the same caller gets the certificate it got ---- */

static void replay_key(size_t ca, const char *user, const char *csr_sha256, char *out, size_t size)
{
    snprintf(out, size, "%zu\x1f%s\x1f%s", ca, user, csr_sha256);
}

typedef struct replay_load {
    server *srv;
    size_t ca;
} replay_load;

static void add_replay(void *ctx, const char *caller, const char *csr_sha256,
                       long long keyfactor_id)
{
    replay_load *rl = ctx;
    char key[512];
    replay_key(rl->ca, caller, csr_sha256, key, sizeof key);
    json_object_set_new(rl->srv->replays, key, json_integer(keyfactor_id));
}

void api_replays_load(server *srv)
{
    const config *cfg = srv->current->cfg;
    for (size_t i = 0; i < cfg->ca_count; i++) {
        if (!srv->ca_open[i])
            continue;
        replay_load rl = {.srv = srv, .ca = i};
        local_ca_log_callers(cfg->cas[i].home, add_replay, &rl);
    }
}

static void csr_sha256_hex(X509_REQ *csr, char out[65])
{
    unsigned char *der = NULL, md[32];
    int len = i2d_X509_REQ(csr, &der);
    out[0] = '\0';
    if (len > 0 && EVP_Digest(der, (size_t)len, md, NULL, EVP_sha256(), NULL) == 1)
        hex_encode(md, sizeof md, out, 65, false);
    OPENSSL_free(der);
}

typedef enum replay_state { REPLAY_NEW, REPLAY_ISSUED, REPLAY_BUSY } replay_state;

/* Claims key for an issuance (REPLAY_NEW), or says it was issued (*keyfactor_id) or is being
 * issued by another call. */
static replay_state replay_claim(server *srv, const char *key, long long *keyfactor_id)
{
    pthread_mutex_lock(&srv->replay_lock);
    json_t *v = json_object_get(srv->replays, key);
    replay_state st = REPLAY_NEW;
    if (v == NULL)
        json_object_set_new(srv->replays, key, json_integer(0));
    else if ((*keyfactor_id = json_integer_value(v)) > 0)
        st = REPLAY_ISSUED;
    else
        st = REPLAY_BUSY;
    pthread_mutex_unlock(&srv->replay_lock);
    return st;
}

/* The claim ends: issued as keyfactor_id, or (0) not issued. */
static void replay_settle(server *srv, const char *key, long long keyfactor_id)
{
    pthread_mutex_lock(&srv->replay_lock);
    if (keyfactor_id > 0)
        json_object_set_new(srv->replays, key, json_integer(keyfactor_id));
    else
        json_object_del(srv->replays, key);
    pthread_mutex_unlock(&srv->replay_lock);
}

void api_enroll_csr(server *srv, const api_call *call, api_answer *answer, long long unused)
{
    (void)unused;
    if (call->certificate_format == NULL) {
        api_error(answer, HSE_MISSING_HEADER,
                  "the x-certificateformat header is required (PEM or DER)");
        return;
    }
    bool der = strcasecmp(call->certificate_format, "DER") == 0;
    if (!der && strcasecmp(call->certificate_format, "PEM") != 0) {
        api_error(answer, HSE_INVALID_HEADER, "x-certificateformat: must be PEM or DER");
        return;
    }
    char *text = line_from_body(srv, call, der ? "DER" : "PEM", answer);
    if (text == NULL)
        return;

    serve_config *sc = srv->current;
    policy_decision decision;
    error_list errors = {0};
    enroll_request *req = line_check_alone(&sc->checker, text, strlen(text), 1, &decision, &errors);
    free(text);
    X509 *cert = NULL;
    if (req != NULL && req->sans != NULL && sk_GENERAL_NAME_num(req->sans) > SERVE_MAX_SANS) {
        error_list_free(&errors);
        error_list_add(&errors, HSE_TOO_MANY_SANS, "SANs",
                       "the CSR and the body carry %d SANs; at most %d per request",
                       sk_GENERAL_NAME_num(req->sans), SERVE_MAX_SANS);
    }
    char claim[512] = "";
    long long keyfactor_id = 0;
    bool replayed = false;
    if (!request_usable(call, req, &decision, &errors, answer))
        goto done;
    size_t ca;
    if (!ca_served(srv, sc, &decision, &ca, answer))
        goto done;
    /* The same CSR from the same caller (a client asking again after losing the answer) gets
     * the certificate issued for it, never a second one nor a key-reuse refusal. */
    char csr_hash[65];
    csr_sha256_hex(req->csr, csr_hash);
    const char *user = serve_user_name(call->caller.user);
    replay_key(ca, user, csr_hash, claim, sizeof claim);
    replay_state rs = replay_claim(srv, claim, &keyfactor_id);
    if (rs == REPLAY_BUSY) {
        claim[0] = '\0'; /* not ours to settle */
        answer->retry_after = "1";
        api_error(answer, HSE_REQUEST_IN_PROGRESS, "the same request is being issued; ask again");
        goto done;
    }
    if (rs == REPLAY_ISSUED) {
        claim[0] = '\0';
        cert = local_ca_log_find(sc->cfg->cas[ca].home, keyfactor_id);
        if (cert == NULL ||
            EVP_PKEY_eq(X509_get0_pubkey(cert), X509_REQ_get0_pubkey(req->csr)) != 1) {
            log_error("serve: KeyfactorID %lld is not in the issuance log as recorded",
                      keyfactor_id);
            api_error(answer, HSE_INTERNAL,
                      "the server could not find the certificate it "
                      "issued for this request; see its log");
            goto done;
        }
        replayed = true;
        log_info("serve: %s asked again for KeyfactorID %lld: answered with it", user,
                 keyfactor_id);
        goto answer_issued;
    }
    pthread_mutex_lock(&sc->order_lock);
    line_check_in_order(&sc->checker, req, &decision, &errors);
    pthread_mutex_unlock(&sc->order_lock);
    if (errors.count > 0) {
        api_answer_errors(answer, &errors);
        goto done;
    }
    if (srv->opt.pending_rate > 0 && serve_random(srv) < srv->opt.pending_rate) {
        answer_pending(srv, req, answer);
        goto done;
    }
    hsm_session session;
    enroll_error err;
    enroll_error_clear(&err);
    local_ca_issued issued;
    int rc = session_pool_get(srv, srv->ca_token[ca], &session, &err);
    if (rc == 0) {
        local_ca_issue params = {.validity_days = (int)decision.template_->validity_days,
                                 .request_id = req->id,
                                 .sans = req->sans,
                                 .run_id = srv->run_id,
                                 .crl_url = decision.ca->crl_url,
                                 .ocsp_url = decision.ca->ocsp_url,
                                 .caller = user,
                                 .csr_sha256 = csr_hash};
        rc = local_ca_issue_cert(srv->cas[ca], &session, req->csr, &params, &issued, &err);
        session_pool_put(srv, srv->ca_token[ca], &session);
    }
    if (rc != 0) {
        /* The caller's fault is explained; the server's own is logged, and the answer names no
         * path, handle or library message. */
        if (err.code_id == HSE_CA_REJECTED) {
            api_error(answer, err.code_id, "%s", err.message);
        } else {
            log_error("serve: %s: %s: %s", call->path, err.code, err.message);
            api_error(answer, HSE_INTERNAL,
                      "the server could not issue the certificate (%s); "
                      "see its log",
                      err.code);
        }
        goto done;
    }
    cert = issued.cert;
    keyfactor_id = issued.keyfactor_id;
    replay_settle(srv, claim, keyfactor_id);
    claim[0] = '\0';
answer_issued:;
    STACK_OF(X509) *certs = chain_arrange(cert, local_ca_chain(srv->cas[ca]), req->include_chain,
                                          CHAIN_END_ENTITY_FIRST);
    /* The members of the schema's CertificateInformation, no more. */
    json_t *described = certinfo_describe(cert);
    json_t *info = json_object();
    static const char *const kept[] = {"SerialNumber", "IssuerDN", "Thumbprint"};
    for (size_t i = 0; i < 3; i++)
        json_object_set(info, kept[i], json_object_get(described, kept[i]));
    json_decref(described);
    json_object_set_new(info, "KeyfactorID", json_integer(keyfactor_id));
    json_object_set_new(info, "Certificates",
                        certificate_strings(certs, der, req->include_subject_header));
    json_object_set_new(info, "WorkflowInstanceId", json_string(NO_WORKFLOW));
    json_object_set_new(info, "WorkflowReferenceId", json_integer(0));
    json_object_set_new(info, "KeyfactorRequestId", json_integer(keyfactor_id));
    json_object_set_new(info, "RequestDisposition", json_string("ISSUED"));
    json_object_set_new(info, "DispositionMessage",
                        json_string(replayed ? "Issued by the embedded CA (asked again: the "
                                               "certificate issued for this request)."
                                             : "Issued by the embedded CA."));
    json_object_set_new(info, "EnrollmentContext", json_null());
    sk_X509_pop_free(certs, X509_free);
    answer->body =
        json_pack("{s:o, s:o}", "CertificateInformation", info, "Metadata", metadata_answer(req));
done:
    if (claim[0] != '\0')
        replay_settle(srv, claim, 0);
    X509_free(cert);
    error_list_free(&errors);
    request_free(req);
}

/* The body members of POST /Enrollment/PFX (v1 and v2): seed 001 and the v25 schema. */
static const char *const pfx_body_keys[] = {"CustomFriendlyName",
                                            "Password",
                                            "PopulateMissingValuesFromAD",
                                            "Subject",
                                            "RenewalCertificateId",
                                            "ChainOrder",
                                            "UseLegacyEncryption",
                                            "KeyType",
                                            "KeyLength",
                                            "Curve",
                                            "MicrosoftTargetCSP",
                                            "CertificateAuthority",
                                            "IncludeChain",
                                            "IncludeSubjectHeader",
                                            "Metadata",
                                            "AdditionalEnrollmentFields",
                                            "Timestamp",
                                            "OwnerRoleId",
                                            "OwnerRoleName",
                                            "FileExtension",
                                            "Template",
                                            "SANs",
                                            "EnrollmentPatternId",
                                            "Stores",
                                            "InstallIntoExistingCertificateStores",
                                            NULL};

/* The body of POST /Enrollment/PFX as a PFX request line (KeyStorage export): what a client
 * leaves null or empty is dropped, so that the pattern's defaults apply. */
static char *pfx_line_from_body(server *srv, const api_call *call, bool v2, api_answer *answer)
{
    json_t *body = api_body_object(call, answer);
    if (body == NULL)
        return NULL;
    const char *key;
    json_t *value;
    void *tmp;
    json_object_foreach_safe(body, tmp, key, value)
    {
        if (!key_listed(key, pfx_body_keys)) {
            api_error(answer, HSE_UNKNOWN_FIELD, "%.80s: not a field of POST /Enrollment/PFX", key);
            json_decref(body);
            return NULL;
        }
        bool empty =
            json_is_null(value) || (json_is_string(value) && json_string_length(value) == 0);
        if (!v2 && strcasecmp(key, "ChainOrder") == 0 && !empty) {
            api_error(answer, HSE_FIELD_NOT_SUPPORTED,
                      "ChainOrder: needs x-keyfactor-api-version 2");
            json_decref(body);
            return NULL;
        }
        bool stores = strcasecmp(key, "Stores") == 0 ||
                      strcasecmp(key, "InstallIntoExistingCertificateStores") == 0;
        if (stores && !empty && !(json_is_array(value) && json_array_size(value) == 0) &&
            !json_is_false(value)) {
            api_error(answer, HSE_FIELD_NOT_SUPPORTED,
                      "%s: this server delivers PFX enrollments to the caller only", key);
            json_decref(body);
            return NULL;
        }
        /* Nulls, empty strings, a download's file extension, the AD look-up (no directory
         * here) and store members that ask for nothing carry no request. */
        if (empty || stores || strcasecmp(key, "FileExtension") == 0 ||
            strcasecmp(key, "PopulateMissingValuesFromAD") == 0)
            json_object_del(body, key);
    }
    metadata_as_strings(body);
    char id[40];
    snprintf(id, sizeof id, "api-%lld", atomic_fetch_add(&srv->next_id, 1));
    json_object_set_new(body, "Id", json_string(id));
    json_object_set_new(body, "Operation", json_string("PFX"));
    json_object_set_new(body, "Format", json_string("PFX"));
    json_object_set_new(body, "KeyStorage", json_string("export"));
    char *text = json_dumps(body, JSON_COMPACT);
    /* The body may hold the caller's Password: the serialized copy is wiped by the caller. */
    json_decref(body);
    if (text == NULL)
        api_error(answer, HSE_INTERNAL, "out of memory");
    return text;
}

typedef struct pfx_issue {
    server *srv;
    size_t ca;
    const enroll_request *req;
    const policy_decision *decision;
    const char *user;
    long long keyfactor_id;
} pfx_issue;

/* engine_make_pfx's issuer: the embedded CA, as for a CSR. */
static int pfx_issue_local(void *arg, X509_REQ *csr, X509 **cert, STACK_OF(X509) * *chain,
                           enroll_error *err)
{
    pfx_issue *pi = arg;
    server *srv = pi->srv;
    char csr_hash[65];
    csr_sha256_hex(csr, csr_hash);
    hsm_session session;
    if (session_pool_get(srv, srv->ca_token[pi->ca], &session, err) != 0)
        return -1;
    local_ca_issue params = {.validity_days = (int)pi->decision->template_->validity_days,
                             .request_id = pi->req->id,
                             .sans = pi->req->sans,
                             .run_id = srv->run_id,
                             .crl_url = pi->decision->ca->crl_url,
                             .ocsp_url = pi->decision->ca->ocsp_url,
                             .caller = pi->user,
                             .csr_sha256 = csr_hash};
    local_ca_issued issued;
    int rc = local_ca_issue_cert(srv->cas[pi->ca], &session, csr, &params, &issued, err);
    session_pool_put(srv, srv->ca_token[pi->ca], &session);
    if (rc != 0)
        return -1;
    *cert = issued.cert;
    *chain = local_ca_chain(srv->cas[pi->ca]);
    pi->keyfactor_id = issued.keyfactor_id;
    return 0;
}

void api_enroll_pfx(server *srv, const api_call *call, api_answer *answer, long long unused)
{
    (void)unused;
    if (call->certificate_format == NULL) {
        api_error(answer, HSE_MISSING_HEADER, "the x-certificateformat header is required (PFX)");
        return;
    }
    if (strcasecmp(call->certificate_format, "PFX") != 0) {
        api_error(answer, HSE_INVALID_HEADER,
                  "x-certificateformat: this server answers PFX only (not ZIP, PEM, JKS, STORE "
                  "or REPLACE)");
        return;
    }
    bool v2 = call->api_version != NULL && call->api_version[0] == '2';
    char *text = pfx_line_from_body(srv, call, v2, answer);
    if (text == NULL)
        return;
    serve_config *sc = srv->current;
    policy_decision decision;
    error_list errors = {0};
    enroll_request *req = line_check_alone(&sc->checker, text, strlen(text), 1, &decision, &errors);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    engine_pfx pfx = {0};
    char *b64 = NULL;
    if (!request_usable(call, req, &decision, &errors, answer))
        goto done;
    if (req->storage != STORAGE_EXPORT) {
        api_error(answer, HSE_FIELD_NOT_SUPPORTED,
                  "enrollment pattern %lld keeps keys in the token: a PFX cannot carry them",
                  decision.pattern->id);
        goto done;
    }
    size_t ca;
    if (!ca_served(srv, sc, &decision, &ca, answer))
        goto done;
    hsm_context *hsm = &srv->setup->hsm;
    if (hsm->key_token_count == 0) {
        api_error(answer, HSE_HSM_CANNOT_GENERATE, "this server has no key token (Hsm.Tokens)");
        goto done;
    }
    pthread_mutex_lock(&sc->order_lock);
    line_check_in_order(&sc->checker, req, &decision, &errors);
    pthread_mutex_unlock(&sc->order_lock);
    if (errors.count > 0) {
        api_answer_errors(answer, &errors);
        goto done;
    }
    /* Key tokens take turns. */
    size_t t = (size_t)atomic_load(&srv->next_id) % hsm->key_token_count;
    hsm_session key_session;
    enroll_error err;
    enroll_error_clear(&err);
    pfx_issue pi = {.srv = srv,
                    .ca = ca,
                    .req = req,
                    .decision = &decision,
                    .user = serve_user_name(call->caller.user)};
    int rc = session_pool_get(srv, t, &key_session, &err);
    if (rc == 0) {
        rc = engine_make_pfx(hsm, t, &key_session, req, sc->cfg->settings.password_length,
                             (int)sc->cfg->settings.pkcs12_iterations, pfx_issue_local, &pi, &pfx,
                             &err);
        session_pool_put(srv, t, &key_session);
    }
    if (rc != 0) {
        if (err.code_id == HSE_CA_REJECTED || err.code_id == HSE_HSM_CANNOT_GENERATE ||
            err.code_id == HSE_HSM_CANNOT_EXPORT || err.code_id == HSE_LEGACY_UNAVAILABLE) {
            api_error(answer, err.code_id, "%s", err.message);
        } else {
            log_error("serve: %s: %s: %s", call->path, err.code, err.message);
            api_error(answer, HSE_INTERNAL, "the server could not make the PFX (%s); see its log",
                      err.code);
        }
        goto done;
    }
    b64 = base64_encode(pfx.pfx, pfx.pfx_len);
    if (b64 == NULL) {
        api_error(answer, HSE_INTERNAL, "out of memory");
        goto done;
    }
    json_t *described = certinfo_describe(pfx.cert);
    json_t *info = json_object();
    static const char *const kept[] = {"SerialNumber", "IssuerDN", "Thumbprint"};
    for (size_t i = 0; i < 3; i++)
        json_object_set(info, kept[i], json_object_get(described, kept[i]));
    json_decref(described);
    json_object_set_new(info, "KeyfactorId", json_integer(pi.keyfactor_id));
    json_object_set_new(info, "KeyfactorRequestId", json_integer(pi.keyfactor_id));
    json_object_set_new(info, "Pkcs12Blob", json_string(b64));
    json_object_set_new(info, "Password", json_string(pfx.password));
    json_object_set_new(info, "WorkflowInstanceId", json_string(NO_WORKFLOW));
    json_object_set_new(info, "WorkflowReferenceId", json_integer(0));
    json_object_set_new(info, "StoreIdsInvalidForRenewal", json_array());
    json_object_set_new(info, "RequestDisposition", json_string("ISSUED"));
    json_object_set_new(info, "DispositionMessage", json_string("Issued by the embedded CA."));
    json_object_set_new(info, "EnrollmentContext", json_null());
    answer->body =
        json_pack("{s:o, s:o}", "CertificateInformation", info, "Metadata", metadata_answer(req));
    if (v2)
        json_object_set_new(answer->body, "SuccessfulStores", json_array());
done:
    if (b64 != NULL)
        OPENSSL_cleanse(b64, strlen(b64));
    free(b64);
    engine_pfx_free(&pfx);
    error_list_free(&errors);
    request_free(req);
}

/* The body members of POST /CertificateStores/Reenrollment: seed 003 and the v25 schema, and the
 * key members a Reenrollment line takes. */
static const char *const reenroll_body_keys[] = {"KeystoreId",
                                                 "SubjectName",
                                                 "AgentGuid",
                                                 "Alias",
                                                 "JobProperties",
                                                 "CertificateAuthority",
                                                 "CertificateTemplate",
                                                 "EnrollmentPatternId",
                                                 "SANs",
                                                 "Overwrite",
                                                 "Metadata",
                                                 "AdditionalEnrollmentFields",
                                                 "OwnerRoleId",
                                                 "OwnerRoleName",
                                                 "KeyType",
                                                 "KeyLength",
                                                 "Curve",
                                                 NULL};

/* POST /CertificateStores/Reenrollment: the body becomes a Reenrollment line, checked as `run`
 * checks it; the alias is reenrolled in its store's token as `run` does it (engine_reenroll),
 * the certificate from the embedded CA. 204, no body. */
void api_store_reenrollment(server *srv, const api_call *call, api_answer *answer, long long unused)
{
    (void)unused;
    json_t *body = api_body_object(call, answer);
    if (body == NULL)
        return;
    const char *key;
    json_t *value;
    void *tmp;
    json_object_foreach_safe(body, tmp, key, value)
    {
        if (!key_listed(key, reenroll_body_keys)) {
            api_error(answer, HSE_UNKNOWN_FIELD,
                      "%.80s: not a field of POST /CertificateStores/Reenrollment", key);
            json_decref(body);
            return;
        }
        /* Overwrite: a reenrollment replaces the alias's entry whatever it says. */
        if (json_is_null(value) || (json_is_string(value) && json_string_length(value) == 0) ||
            strcasecmp(key, "Overwrite") == 0)
            json_object_del(body, key);
    }
    metadata_as_strings(body);
    char id[40];
    snprintf(id, sizeof id, "api-%lld", atomic_fetch_add(&srv->next_id, 1));
    json_object_set_new(body, "Id", json_string(id));
    json_object_set_new(body, "Operation", json_string("Reenrollment"));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL) {
        api_error(answer, HSE_INTERNAL, "out of memory");
        return;
    }
    serve_config *sc = srv->current;
    policy_decision decision;
    error_list errors = {0};
    enroll_request *req = line_check_alone(&sc->checker, text, strlen(text), 1, &decision, &errors);
    free(text);
    X509 *cert = NULL;
    if (!request_usable(call, req, &decision, &errors, answer))
        goto done;
    size_t ca;
    if (!ca_served(srv, sc, &decision, &ca, answer))
        goto done;
    hsm_context *hsm = &srv->setup->hsm;
    const config_store *store = decision.store;
    int t = store != NULL ? hsm_context_token_index(hsm, store->token) : -1;
    if (t < 0) {
        api_error(answer, HSE_STORE_UNAVAILABLE, "the token \"%s\" of store %s is not present",
                  store ? store->token : "?", req->store_id);
        goto done;
    }
    pthread_mutex_lock(&sc->order_lock);
    line_check_in_order(&sc->checker, req, &decision, &errors);
    pthread_mutex_unlock(&sc->order_lock);
    if (errors.count > 0) {
        api_answer_errors(answer, &errors);
        goto done;
    }
    hsm_session session;
    enroll_error err;
    enroll_error_clear(&err);
    pfx_issue pi = {.srv = srv,
                    .ca = ca,
                    .req = req,
                    .decision = &decision,
                    .user = serve_user_name(call->caller.user)};
    int rc = session_pool_get(srv, (size_t)t, &session, &err);
    if (rc == 0) {
        rc = engine_reenroll(hsm, (size_t)t, &session, store, req, pfx_issue_local, &pi, &cert,
                             &err);
        session_pool_put(srv, (size_t)t, &session);
    }
    if (rc != 0) {
        if (err.code_id == HSE_CA_REJECTED || err.code_id == HSE_STORE_ALIAS_UNKNOWN ||
            err.code_id == HSE_HSM_CANNOT_GENERATE || err.code_id == HSE_STORE_UNAVAILABLE) {
            api_error(answer, err.code_id, "%s", err.message);
        } else {
            log_error("serve: %s: %s: %s", call->path, err.code, err.message);
            api_error(answer, HSE_INTERNAL,
                      "the server could not reenroll alias \"%.80s\" (%s); see its log", req->alias,
                      err.code);
        }
        goto done;
    }
    log_info("serve: %s reenrolled alias \"%s\" of store %s (KeyfactorID %lld)",
             serve_user_name(call->caller.user), req->alias, store->id, pi.keyfactor_id);
    answer->status = 204;
    answer->no_body = true;
done:
    X509_free(cert);
    error_list_free(&errors);
    request_free(req);
}

/* The templates the caller may enroll with (through a pattern whose roles it holds), each with
 * its CAs; the embedded CAs are no standalone CAs. */
void api_enrollment_context(server *srv, const api_call *call, api_answer *answer, long long id)
{
    (void)id;
    const config *cfg = srv->current->cfg;
    json_t *templates = json_array();
    for (size_t t = 0; t < cfg->template_count; t++) {
        const config_template *tp = &cfg->templates[t];
        bool usable = false;
        for (size_t p = 0; p < cfg->pattern_count && !usable; p++)
            usable =
                cfg->patterns[p].template_ == tp && api_caller_may_use(call, &cfg->patterns[p]);
        if (!usable)
            continue;
        json_t *cas = json_array();
        for (size_t c = 0; c < tp->ca_count; c++) {
            const config_ca *ca = config_find_ca_by_id(cfg, tp->ca_ids[c]);
            if (ca != NULL)
                json_array_append_new(cas, json_pack("{s:s, s:b, s:b}", "Name", ca->name,
                                                     "RFCEnforcement", 0, "SubscriberTerms", 0));
        }
        json_array_append_new(
            templates,
            json_pack("{s:I, s:s, s:s, s:n, s:n, s:n, s:b, s:b, s:o, s:[], s:[], s:[], s:[], s:n}",
                      "Id", (json_int_t)tp->id, "Name", tp->name, "DisplayName", tp->name, "Forest",
                      "KeySize", "KeyType", "RequiresApproval", 0, "RFCEnforcement", 0, "CAs", cas,
                      "EnrollmentFields", "MetadataFields", "Regexes", "ExtendedKeyUsages",
                      "Curve"));
    }
    answer->body = json_pack("{s:o, s:[]}", "Templates", templates, "StandaloneCAs");
}
