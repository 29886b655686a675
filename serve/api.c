/* The Keyfactor endpoints of `serve`: POST /Enrollment/CSR (the body becomes a CSR request line,
 * checked by the same code as `run`, then signed by the embedded CA), GET /EnrollmentPatterns and
 * POST /EnrollmentPatterns (the new pattern is checked by the configuration loader). */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch/jsonobj.h"
#include "batch/jsonpath.h"
#include "batch/certinfo.h"
#include "formats/base64.h"
#include "formats/bundle.h"
#include "batch/log.h"
#include "serve/internal.h"

#define PATTERN_MODIFY_PERMISSION "enrollment_pattern/modify"
/* The most SANs one request may carry, the CSR's and the body's together (TOO_MANY_SANS). */
#define SERVE_MAX_SANS 1000

/* The body fields of POST /Enrollment/CSR (seed 000), but PrivateKey (refused by name). */
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
                                            NULL};

serve_config *serve_config_new(config *cfg)
{
    serve_config *sc = calloc(1, sizeof *sc);
    if (sc == NULL)
        return NULL;
    sc->cfg = cfg;
    request_defaults defaults = {.pattern_id = -1,
                                 .password_length = cfg->settings.password_length};
    line_checker_init(&sc->checker, cfg, &defaults, NULL, NULL);
    pthread_mutex_init(&sc->order_lock, NULL);
    return sc;
}

void serve_config_free(serve_config *sc)
{
    if (sc == NULL)
        return;
    line_checker_free(&sc->checker);
    pthread_mutex_destroy(&sc->order_lock);
    config_free(sc->cfg);
    free(sc);
}

/* Answers every error of the list; the status is the first one's (400 for request and policy
 * errors). */
static void answer_errors(api_answer *answer, const error_list *errors)
{
    api_error(answer, errors->items[0].code_id, "%s", errors->items[0].message);
    if (errors->items[0].field[0] != '\0')
        json_object_set_new(answer->body, "Field", json_string(errors->items[0].field));
    if (errors->count > 1) {
        json_t *all = json_array();
        for (size_t i = 0; i < errors->count; i++) {
            json_t *e = json_pack("{s:s, s:s}", "ErrorCode", errors->items[i].code, "Message",
                                  errors->items[i].message);
            if (errors->items[i].field[0] != '\0')
                json_object_set_new(e, "Field", json_string(errors->items[i].field));
            json_array_append_new(all, e);
        }
        json_object_set_new(answer->body, "Errors", all);
    }
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

static bool caller_may_use(const api_call *call, const config_pattern *pattern)
{
    if (pattern->use_ad_permissions)
        return true;
    for (size_t i = 0; i < pattern->policy.role_count; i++)
        if (serve_user_has_role(call->caller.user, pattern->policy.roles[i]))
            return true;
    return false;
}

/* The body of POST /Enrollment/CSR as a request line of the batch vocabulary. */
static char *line_from_body(server *srv, const api_call *call, const char *format,
                            api_answer *answer)
{
    json_error_t jerr;
    json_t *body = json_loadb(call->body, call->body_len, 0, &jerr);
    if (body == NULL) {
        api_error(answer, HSE_INVALID_JSON, "the body is not JSON: line %d, column %d: %s",
                  jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        api_error(answer, HSE_INVALID_JSON, "the body must be a JSON object");
        return NULL;
    }
    /* PrivateKey is not in the list: it is refused where it stands, like an unknown field. Two
     * casings of a field go on to the request's own check (DUPLICATE_FIELD). */
    jobj_key_check check = {0};
    while (jobj_check_keys(body, csr_body_keys, &check)) {
        if (check.known_index >= 0)
            continue;
        if (strcasecmp(check.key, "PrivateKey") == 0)
            api_error(answer, HSE_FIELD_NOT_SUPPORTED,
                      "PrivateKey: this server does not retain private keys");
        else
            api_error(answer, HSE_UNKNOWN_FIELD, "%.80s: not a field of POST /Enrollment/CSR",
                      check.key);
        json_decref(body);
        return NULL;
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

static void answer_pending(server *srv, const enroll_request *req, api_answer *answer)
{
    long long request_id = atomic_fetch_add(&srv->next_pending, 1);
    json_t *info =
        json_pack("{s:I, s:s, s:s, s:n, s:[]}", "KeyfactorRequestId", (json_int_t)request_id,
                  "RequestDisposition", "EXTERNAL VALIDATION", "DispositionMessage",
                  "The request is waiting for approval (--pending-rate).", "EnrollmentContext",
                  "Certificates");
    answer->body = json_pack("{s:o, s:o}", "CertificateInformation", info, "Metadata",
                             req->metadata ? json_incref(req->metadata) : json_object());
}

static void enroll_csr(server *srv, const api_call *call, api_answer *answer)
{
    if (call->requested_with == NULL) {
        api_error(answer, HSE_MISSING_HEADER,
                  "the x-keyfactor-requested-with header is required (APIClient)");
        return;
    }
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
    if (req != NULL && errors.count == 0) {
        pthread_mutex_lock(&sc->order_lock);
        line_check_in_order(&sc->checker, req, &decision, &errors);
        pthread_mutex_unlock(&sc->order_lock);
    }
    free(text);
    X509 *cert = NULL;
    if (req != NULL && req->sans != NULL && sk_GENERAL_NAME_num(req->sans) > SERVE_MAX_SANS) {
        error_list_free(&errors);
        error_list_add(&errors, HSE_TOO_MANY_SANS, "SANs",
                       "the CSR and the body carry %d SANs; at most %d per request",
                       sk_GENERAL_NAME_num(req->sans), SERVE_MAX_SANS);
    }
    if (req == NULL || errors.count > 0) {
        if (errors.count == 0)
            error_list_add(&errors, HSE_INVALID_JSON, NULL, "the body is not a request");
        answer_errors(answer, &errors);
        goto done;
    }
    if (!caller_may_use(call, decision.pattern)) {
        api_error(answer, HSE_FORBIDDEN,
                  "user \"%s\" holds none of the roles of enrollment pattern %lld (\"%s\")",
                  serve_user_name(call->caller.user), decision.pattern->id, decision.pattern->name);
        goto done;
    }
    size_t ca = (size_t)(decision.ca - sc->cfg->cas);
    if (!srv->ca_open[ca]) {
        api_error(answer, HSE_CA_NOT_SERVED, "CA \"%s\" is not an embedded CA of this server",
                  decision.ca->name);
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
                                 .sans = req->sans};
        rc = local_ca_issue_cert(&srv->cas[ca], &session, req->csr, &params, &issued, &err);
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
    STACK_OF(X509) *certs =
        chain_arrange(cert, srv->cas[ca].chain, req->include_chain, CHAIN_END_ENTITY_FIRST);
    json_t *info = certinfo_describe(cert);
    json_object_set_new(info, "KeyfactorID", json_integer(issued.keyfactor_id));
    json_object_set_new(info, "KeyfactorRequestId", json_integer(issued.keyfactor_id));
    json_object_set_new(info, "Certificates",
                        certificate_strings(certs, der, req->include_subject_header));
    json_object_set_new(info, "RequestDisposition", json_string("ISSUED"));
    json_object_set_new(info, "DispositionMessage", json_string("Issued by the embedded CA."));
    json_object_set_new(info, "EnrollmentContext", json_null());
    sk_X509_pop_free(certs, X509_free);
    answer->body = json_pack("{s:o, s:o}", "CertificateInformation", info, "Metadata",
                             req->metadata ? json_incref(req->metadata) : json_object());
done:
    X509_free(cert);
    error_list_free(&errors);
    request_free(req);
}

/* A pattern as the API shows it: the entry with Template, AssociatedRoles and
 * CertificateAuthorities as objects, and TemplateDefault as it is in force. */
static json_t *pattern_json(const config *cfg, const config_pattern *p)
{
    json_t *out = json_deep_copy(p->raw);
    const char *drop[] = {
        "Template", "TemplateDefault", "AssociatedRoles", "CertificateAuthorities", "Id", NULL};
    for (size_t i = 0; drop[i] != NULL; i++)
        jobj_del(out, drop[i]);
    json_object_set_new(out, "Id", json_integer(p->id));
    json_object_set_new(
        out, "Template",
        json_pack("{s:I, s:s}", "Id", (json_int_t)p->template_id, "Name", p->template_->name));
    json_object_set_new(out, "TemplateDefault", json_boolean(p->template_default));
    json_t *roles = json_array();
    for (size_t i = 0; i < p->policy.role_count; i++) {
        const config_role *role = config_find_role_by_name(cfg, p->policy.roles[i]);
        json_t *r = json_pack("{s:s}", "Name", p->policy.roles[i]);
        if (role != NULL)
            json_object_set_new(r, "Id", json_integer(role->id));
        json_array_append_new(roles, r);
    }
    json_object_set_new(out, "AssociatedRoles", roles);
    json_t *cas = json_array();
    for (size_t i = 0; i < p->ca_count; i++) {
        const config_ca *ca = config_find_ca_by_id(cfg, p->ca_ids[i]);
        json_array_append_new(cas, json_pack("{s:I, s:s?}", "Id", (json_int_t)p->ca_ids[i], "Name",
                                             ca ? ca->name : NULL));
    }
    json_object_set_new(out, "CertificateAuthorities", cas);
    return out;
}

static void list_patterns(server *srv, api_answer *answer)
{
    const config *cfg = srv->current->cfg;
    json_t *list = json_array();
    for (size_t i = 0; i < cfg->pattern_count; i++)
        json_array_append_new(list, pattern_json(cfg, &cfg->patterns[i]));
    answer->body = list;
}

/* "EnrollmentPatterns[3].Template: ..." -> "Template: ..." for the entry being added. */
static void strip_path_prefix(char *text, const char *prefix, size_t n)
{
    if (strncmp(text, prefix, n) != 0)
        return;
    size_t skip = n + (text[n] == '.');
    memmove(text, text + skip, strlen(text + skip) + 1);
    if (text[0] == '\0' || text[0] == ':')
        memmove(text + 6, text, strlen(text) + 1), memcpy(text, "(body)", 6);
}

/* Adds the body as a new pattern: the whole configuration is checked again with it, and replaces
 * the one in force only when it passes. Called with the configuration write-locked. */
static void add_pattern(server *srv, const api_call *call, api_answer *answer)
{
    if (!serve_user_has_permission(call->caller.user, PATTERN_MODIFY_PERMISSION)) {
        api_error(answer, HSE_FORBIDDEN, "user \"%s\" lacks the permission %s",
                  serve_user_name(call->caller.user), PATTERN_MODIFY_PERMISSION);
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb(call->body, call->body_len, 0, &jerr);
    if (!json_is_object(body)) {
        if (body == NULL)
            api_error(answer, HSE_INVALID_JSON, "the body is not JSON: line %d, column %d: %s",
                      jerr.line, jerr.column, jerr.text);
        else
            api_error(answer, HSE_INVALID_JSON, "the body must be a JSON object");
        json_decref(body);
        return;
    }
    const config *old = srv->current->cfg;
    json_t *doc = json_deep_copy(old->doc);
    json_t *patterns = jobj_get(doc, "EnrollmentPatterns");
    long long id = 0;
    for (size_t i = 0; i < old->pattern_count; i++)
        if (old->patterns[i].id > id)
            id = old->patterns[i].id;
    id++;
    jobj_del(body, "Id");
    json_object_set_new(body, "Id", json_integer(id));
    char prefix[64];
    int n = snprintf(prefix, sizeof prefix, "EnrollmentPatterns[%zu]", json_array_size(patterns));
    json_array_append_new(patterns, body);
    error_list errors = {0};
    config *cfg = config_load_json(doc, old->base_dir, "POST /EnrollmentPatterns", &errors);
    json_decref(doc);
    if (cfg == NULL) {
        /* Paths name the new entry as the configuration sees it; show them from the body. */
        for (size_t i = 0; i < errors.count; i++) {
            strip_path_prefix(errors.items[i].field, prefix, (size_t)n);
            strip_path_prefix(errors.items[i].message, prefix, (size_t)n);
        }
        if (errors.count == 0)
            error_list_add(&errors, HSE_CONFIG_RULE, NULL, "the pattern is not valid");
        answer_errors(answer, &errors);
        error_list_free(&errors);
        return;
    }
    serve_config *sc = serve_config_new(cfg);
    if (sc == NULL) {
        config_free(cfg);
        api_error(answer, HSE_INTERNAL, "out of memory");
        return;
    }
    serve_config_free(srv->current);
    srv->current = sc;
    answer->body = pattern_json(cfg, config_find_pattern(cfg, id));
}

void api_dispatch(server *srv, const api_call *call, api_answer *answer)
{
    bool post = strcmp(call->method, "POST") == 0, get = strcmp(call->method, "GET") == 0;
    if (strcasecmp(call->path, "/Enrollment/CSR") == 0) {
        if (!post) {
            api_error(answer, HSE_METHOD_NOT_ALLOWED, "/Enrollment/CSR takes POST");
            return;
        }
        pthread_rwlock_rdlock(&srv->config_lock);
        enroll_csr(srv, call, answer);
        pthread_rwlock_unlock(&srv->config_lock);
        return;
    }
    if (strcasecmp(call->path, "/EnrollmentPatterns") == 0) {
        if (get) {
            pthread_rwlock_rdlock(&srv->config_lock);
            list_patterns(srv, answer);
            pthread_rwlock_unlock(&srv->config_lock);
        } else if (post) {
            pthread_rwlock_wrlock(&srv->config_lock);
            add_pattern(srv, call, answer);
            pthread_rwlock_unlock(&srv->config_lock);
        } else {
            api_error(answer, HSE_METHOD_NOT_ALLOWED, "/EnrollmentPatterns takes GET and POST");
        }
        return;
    }
    api_error(answer, HSE_NOT_FOUND, "no such resource: %.200s", call->path);
}
