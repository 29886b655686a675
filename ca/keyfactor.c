/* The `keyfactor` connector: POST {Url}/Enrollment/CSR with the seed's body and headers on the
 * shared event loop; the answer's CertificateInformation (keys matched case-insensitively) gives
 * the certificate and chain, a pending disposition (approval, external validation), or a
 * refusal (DENIED, FAILED, any other disposition) as a failure with the CA's message. After a
 * lost answer (or before repeating a submission of an interrupted run) it looks the certificate
 * up: GET /Certificates by the CSR's CN, matched by public key, then POST /Certificates/Download.
 */
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ca/answer.h"
#include "formats/base64.h"
#include "batch/jsonobj.h"
#include "batch/log.h"

typedef struct keyfactor_state {
    net_ca nc;               /* first: net_connector_close */
    const char *remote_name; /* the CA's name at the Keyfactor server (RemoteName, else Name) */
    char version_header[64];
    long settle_ms; /* LookupSettleMs: the gap between the two lookups that must both find none */
    bool resubmit;  /* LookupResubmit: two lookups that find none let a repeat be submitted */
} keyfactor_state;

static int keyfactor_open(ca_connector *conn, ca_env *env, enroll_error *err)
{
    keyfactor_state *st = net_connector_open(conn, env, sizeof *st, err);
    if (st == NULL)
        return -1;
    const char *remote = json_string_value(jobj_get(conn->cfg->raw, "RemoteName"));
    st->remote_name = remote ? remote : conn->cfg->name;
    const char *version = json_string_value(jobj_get(conn->cfg->raw, "ApiVersion"));
    snprintf(st->version_header, sizeof st->version_header, "x-keyfactor-api-version: %.20s",
             version ? version : "1");
    char where[160];
    snprintf(where, sizeof where, "CertificateAuthorities[%zu]",
             (size_t)(conn->cfg - env->cfg->cas));
    json_t *settle = jobj_get(conn->cfg->raw, "LookupSettleMs");
    if (settle != NULL && (!json_is_integer(settle) || json_integer_value(settle) < 0 ||
                           json_integer_value(settle) > 600000)) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL,
                         "%s.LookupSettleMs: must be a number from 0 to 600000", where);
        return -1;
    }
    st->settle_ms = settle != NULL ? (long)json_integer_value(settle) : 2000;
    json_t *resubmit = jobj_get(conn->cfg->raw, "LookupResubmit");
    if (resubmit != NULL && !json_is_boolean(resubmit)) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "%s.LookupResubmit: must be true or false",
                         where);
        return -1;
    }
    st->resubmit = resubmit == NULL || json_is_true(resubmit);
    return 0;
}

static void copy_string(char *dst, size_t size, const json_t *value)
{
    const char *s = json_string_value(value);
    snprintf(dst, size, "%s", s ? s : "");
}

void keyfactor_answer(net_ca *nc, ca_submission *sub, const http_request *req)
{
    ca_answer *a = &sub->answer;
    json_t *doc = json_loadb(req->response ? req->response : "", req->response_len, 0, NULL);
    json_t *info = jobj_get(doc, "CertificateInformation");
    if (!json_is_object(info)) {
        enroll_error_set(&a->err, HSE_CA_BAD_ANSWER, NULL,
                         "CA \"%s\": the answer has no CertificateInformation object",
                         nc->cfg->name);
        a->failed = true;
        json_decref(doc);
        return;
    }
    a->keyfactor_id = json_integer_value(jobj_get(info, "KeyfactorID"));
    a->request_id = json_integer_value(jobj_get(info, "KeyfactorRequestId"));
    /* Every disposition is read: ISSUED goes on to the certificates; PENDING and EXTERNAL
     * VALIDATION wait for the CA; DENIED, FAILED and any value this connector does not know are
     * a failure carrying the CA's message (Keyfactor's CA plugins answer a refusal with 200). */
    const char *disposition = json_string_value(jobj_get(info, "RequestDisposition"));
    if (disposition != NULL && strcasecmp(disposition, "ISSUED") != 0) {
        if (strcasecmp(disposition, "PENDING") == 0 ||
            strcasecmp(disposition, "EXTERNAL VALIDATION") == 0) {
            a->pending = true;
            copy_string(a->disposition, sizeof a->disposition,
                        jobj_get(info, "RequestDisposition"));
            copy_string(a->disposition_message, sizeof a->disposition_message,
                        jobj_get(info, "DispositionMessage"));
        } else {
            const char *message = json_string_value(jobj_get(info, "DispositionMessage"));
            enroll_error_set(&a->err, HSE_CA_REJECTED, NULL, "CA \"%s\": %.40s: %.300s",
                             nc->cfg->name, disposition,
                             message && message[0] ? message : "no message");
            a->failed = true;
        }
        json_decref(doc);
        return;
    }
    json_t *list = jobj_get(info, "Certificates");
    STACK_OF(X509) *certs = NULL;
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        STACK_OF(X509) *some = net_parse_certificates(json_string_value(item));
        if (some == NULL)
            continue;
        if (certs == NULL) {
            certs = some;
            continue;
        }
        X509 *c;
        while ((c = sk_X509_shift(some)) != NULL)
            sk_X509_push(certs, c);
        sk_X509_free(some);
    }
    /* `serve` answers a repeat of the same CSR with the certificate it issued, and says so. */
    const char *message = json_string_value(jobj_get(info, "DispositionMessage"));
    bool replayed = message != NULL && strstr(message, "asked again") != NULL;
    json_decref(doc);
    if (net_take_certificates(nc, sub, certs) == 0 && replayed)
        snprintf(a->note, sizeof a->note,
                 "the CA answered a repeat of the same CSR with the certificate it had issued "
                 "for it (KeyfactorID %lld): one certificate",
                 a->keyfactor_id);
}

static char *iso_now(char *buf, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static submit_status post_csr(keyfactor_state *st, ca_submission *sub)
{
    const enroll_request *req = sub->req;
    char *pem = net_csr_pem(sub->csr);
    char now[32];
    json_t *body =
        json_pack("{s:s?, s:s, s:s, s:b, s:s, s:o}", "CSR", pem, "CertificateAuthority",
                  st->remote_name, "Template", sub->template_->name, "IncludeChain", 1, "Timestamp",
                  req->timestamp ? req->timestamp : iso_now(now, sizeof now), "Metadata",
                  req->metadata ? json_incref(req->metadata) : json_object());
    free(pem);
    if (body != NULL && req->pattern_id >= 0)
        json_object_set_new(body, "EnrollmentPatternId", json_integer(req->pattern_id));
    if (body != NULL && sk_GENERAL_NAME_num(req->sans) > 0)
        json_object_set_new(body, "SANs", net_sans_object(req->sans));
    if (body != NULL && req->additional_fields != NULL)
        json_object_set(body, "AdditionalEnrollmentFields", req->additional_fields);
    if (body != NULL && req->owner_role_id >= 0)
        json_object_set_new(body, "OwnerRoleId", json_integer(req->owner_role_id));
    if (body != NULL && req->owner_role_name != NULL)
        json_object_set_new(body, "OwnerRoleName", json_string(req->owner_role_name));
    const char *headers[] = {"x-keyfactor-requested-with: APIClient", st->version_header,
                             "x-certificateformat: PEM", NULL};
    return net_ca_submit(&st->nc, sub, "/Enrollment/CSR", body, headers, keyfactor_answer);
}

/* ---- finding out what the CA issued ------------------------------------------------------ */

enum { LOOKUP_LIMIT = 100 }; /* ReturnLimit: a page this full may hide a match */

typedef enum lookup_outcome {
    LOOKUP_FOUND,
    LOOKUP_NONE,
    LOOKUP_SEVERAL,
    LOOKUP_UNKNOWN
} lookup_outcome;

/* One submission through its lookups: the caller's done callback is held here while the
 * connector asks the CA more than once. */
typedef struct kf_call {
    keyfactor_state *st;
    ca_submission *sub;
    ca_done_fn done; /* the caller's */
    void *user;
    int lookups;        /* made since the last POST (or since the start) */
    bool after_post;    /* the lookup follows an uncertain answer to a POST of this CSR */
    int resubmits;      /* POSTed again after two lookups found nothing (at most Retries) */
    char why[200];      /* the uncertain answer's error message (after_post) */
    long long found_id; /* the one match: its Id and CertRequestId, and its certificate */
    long long found_request_id;
    X509 *found;
} kf_call;

/* Empties the answer (as ca_answer_clear does; connector.c, which names this connector, is not
 * called from here). */
static void answer_reset(ca_answer *a)
{
    X509_free(a->cert);
    sk_X509_pop_free(a->chain, X509_free);
    memset(a, 0, sizeof *a);
}

static void call_finish(kf_call *c)
{
    ca_submission *sub = c->sub;
    ca_done_fn done = c->done;
    void *user = c->user;
    sub->done = done;
    sub->user = user;
    X509_free(c->found);
    free(c);
    done(sub, user);
}

/* The submission stays uncertain: the CA may hold a certificate for the key, and cannot say. */
static void call_uncertain(kf_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void call_uncertain(kf_call *c, const char *fmt, ...)
{
    ca_answer *a = &c->sub->answer;
    char text[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    answer_reset(a);
    a->failed = a->uncertain = true;
    enroll_error_set(&a->err, HSE_CA_UNCERTAIN, NULL, "CA \"%s\": %s%s%s (the key is kept)",
                     c->st->nc.cfg->name, c->why, c->why[0] ? "; " : "", text);
}

/* The CSR's first CN as UTF-8 (malloc'd), or NULL. */
static char *csr_common_name(const X509_REQ *csr)
{
    const X509_NAME *name = X509_REQ_get_subject_name(csr);
    int at = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (at < 0)
        return NULL;
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at)));
    if (n < 0)
        return NULL;
    char *out = strndup((const char *)utf8, (size_t)n);
    OPENSSL_free(utf8);
    return out;
}

/* text with every byte but RFC 3986's unreserved ones as %XX (malloc'd). */
static char *percent_encode(const char *text)
{
    size_t n = strlen(text);
    char *out = malloc(3 * n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~')
            *o++ = (char)*p;
        else
            o += sprintf(o, "%%%02X", *p);
    }
    *o = '\0';
    return out;
}

static void on_lookup(http_request *req, void *user);

/* Asks GET /Certificates?pq.queryString=IssuedCN -eq "<CN>" (delay_ms from now). 0, or -1 with
 * the submission's answer set uncertain. */
static int start_lookup(kf_call *c, long delay_ms)
{
    char *cn = csr_common_name(c->sub->csr);
    if (cn == NULL || strpbrk(cn, "\"\\") != NULL || cn[0] == '\0') {
        call_uncertain(c, "the certificate cannot be looked up: the CSR has no CN the query "
                          "language can carry");
        free(cn);
        return -1;
    }
    size_t qn = strlen(cn) + 32;
    char *query = malloc(qn);
    if (query != NULL)
        snprintf(query, qn, "IssuedCN -eq \"%s\"", cn);
    free(cn);
    char *encoded = query ? percent_encode(query) : NULL;
    free(query);
    char *path = NULL;
    if (encoded != NULL) {
        size_t n = strlen(encoded) + 80;
        path = malloc(n);
        if (path != NULL)
            snprintf(path, n, "/Certificates?pq.queryString=%s&ReturnLimit=%d", encoded,
                     LOOKUP_LIMIT);
    }
    free(encoded);
    const char *headers[] = {"x-keyfactor-requested-with: APIClient", c->st->version_header, NULL};
    int rc = path ? net_ca_call(&c->st->nc, path, NULL, headers, delay_ms, on_lookup, c) : -1;
    free(path);
    if (rc != 0) {
        call_uncertain(c, "the certificate lookup could not be prepared (out of memory)");
        return -1;
    }
    c->lookups++;
    return 0;
}

/* Reads a lookup's answer: every listed certificate (ContentBytes) whose public key is the
 * CSR's. Anything the connector cannot read makes the outcome unknown, never none. */
static lookup_outcome lookup_read(kf_call *c, const http_request *req, char *why, size_t size)
{
    if (!http_request_ok(req)) {
        enroll_error e;
        enroll_error_clear(&e);
        http_request_error(req, c->st->nc.cfg->name, &e);
        snprintf(why, size, "the certificate lookup failed: %.200s", e.message);
        return LOOKUP_UNKNOWN;
    }
    json_t *list = json_loadb(req->response ? req->response : "", req->response_len, 0, NULL);
    if (!json_is_array(list)) {
        snprintf(why, size, "the certificate lookup's answer is not a list");
        json_decref(list);
        return LOOKUP_UNKNOWN;
    }
    if (json_array_size(list) >= LOOKUP_LIMIT) {
        snprintf(why, size,
                 "the certificate lookup found %d or more certificates with the CSR's CN: they "
                 "cannot all be checked",
                 LOOKUP_LIMIT);
        json_decref(list);
        return LOOKUP_UNKNOWN;
    }
    EVP_PKEY *key = X509_REQ_get0_pubkey(c->sub->csr);
    int matches = 0, unreadable = 0;
    char ids[120] = "";
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        X509 *cert = x509_from_base64(json_string_value(jobj_get(item, "ContentBytes")));
        if (cert == NULL) {
            unreadable++;
            continue;
        }
        if (EVP_PKEY_eq(X509_get0_pubkey(cert), key) != 1) {
            X509_free(cert);
            continue;
        }
        long long id = json_integer_value(jobj_get(item, "Id"));
        snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%lld", matches ? ", " : "", id);
        if (++matches == 1) {
            c->found = cert;
            c->found_id = id;
            c->found_request_id = json_integer_value(jobj_get(item, "CertRequestId"));
        } else {
            X509_free(cert);
        }
    }
    json_decref(list);
    if (matches > 1) {
        snprintf(why, size,
                 "the certificate lookup found %d certificates for this key (Ids %s): which one "
                 "belongs to this request cannot be told",
                 matches, ids);
        return LOOKUP_SEVERAL;
    }
    if (unreadable > 0) {
        snprintf(why, size,
                 "the certificate lookup listed %d certificate%s without readable ContentBytes: "
                 "whether one is for this key cannot be told",
                 unreadable, unreadable == 1 ? "" : "s");
        return LOOKUP_UNKNOWN;
    }
    return matches == 1 ? LOOKUP_FOUND : LOOKUP_NONE;
}

/* The one match is the submission's certificate: the downloaded chain (certs), else the leaf
 * alone (the CA's ChainFile completes it). */
static void take_found(kf_call *c, STACK_OF(X509) * certs)
{
    ca_answer *a = &c->sub->answer;
    answer_reset(a);
    if (certs == NULL && (certs = sk_X509_new_null()) != NULL) {
        sk_X509_push(certs, c->found);
        c->found = NULL;
    }
    a->keyfactor_id = c->found_id;
    a->request_id = c->found_request_id;
    if (net_take_certificates(&c->st->nc, c->sub, certs) == 0) {
        snprintf(a->note, sizeof a->note,
                 "%s; a lookup at the CA found the certificate it issued for this key "
                 "(KeyfactorID %lld): recovered by lookup, not issued again",
                 c->after_post ? "the CA's answer was lost"
                               : "submitted before the interruption with no answer kept",
                 c->found_id);
        log_info("%s: recovered by lookup at CA \"%s\" (KeyfactorID %lld)", c->sub->req->id,
                 c->st->nc.cfg->name, c->found_id);
    }
    call_finish(c);
}

static void on_download(http_request *req, void *user)
{
    kf_call *c = user;
    STACK_OF(X509) *certs = NULL;
    if (http_request_ok(req)) {
        json_t *doc = json_loadb(req->response ? req->response : "", req->response_len, 0, NULL);
        const char *content = json_string_value(jobj_get(doc, "Content"));
        size_t len = 0;
        unsigned char *pem =
            content ? base64_decode(content, strlen(content), BASE64_SKIP_SPACE, &len) : NULL;
        char *text = pem ? strndup((const char *)pem, len) : NULL;
        certs = net_parse_certificates(text);
        if (certs == NULL) /* a server that sends the PEM text itself */
            certs = net_parse_certificates(content);
        free(text);
        free(pem);
        json_decref(doc);
    }
    /* The download must hold the looked-up certificate itself; else the leaf alone is taken. */
    bool holds = false;
    for (int i = 0; certs != NULL && i < sk_X509_num(certs) && !holds; i++)
        holds = X509_cmp(sk_X509_value(certs, i), c->found) == 0;
    if (!holds) {
        if (certs != NULL || !http_request_ok(req))
            log_warning("%s: CA \"%s\": the download of KeyfactorID %lld failed or did not hold "
                        "it: the looked-up certificate is taken without the CA's chain",
                        c->sub->req->id, c->st->nc.cfg->name, c->found_id);
        sk_X509_pop_free(certs, X509_free);
        certs = NULL;
    }
    http_request_free(req);
    take_found(c, certs);
}

static void on_posted(ca_submission *sub, void *user);

/* POSTs the CSR with the answer coming to on_posted. */
static submit_status call_post(kf_call *c)
{
    c->sub->done = on_posted;
    c->sub->user = c;
    return post_csr(c->st, c->sub);
}

static void on_lookup(http_request *req, void *user)
{
    kf_call *c = user;
    char why[300];
    lookup_outcome outcome = lookup_read(c, req, why, sizeof why);
    http_request_free(req);
    if (outcome == LOOKUP_FOUND) {
        const char *headers[] = {"x-keyfactor-requested-with: APIClient", c->st->version_header,
                                 "x-certificateformat: PEM", NULL};
        char body[160];
        snprintf(body, sizeof body,
                 "{\"CertID\":%lld,\"IncludeChain\":true,\"ChainOrder\":\"EndEntityFirst\"}",
                 c->found_id);
        if (net_ca_call(&c->st->nc, "/Certificates/Download", body, headers, 0, on_download, c) !=
            0)
            take_found(c, NULL);
        return;
    }
    if (outcome != LOOKUP_NONE) {
        call_uncertain(c, "%s", why);
        call_finish(c);
        return;
    }
    if (c->lookups < 2) {
        /* None found: asked once more after LookupSettleMs, for an earlier submission the CA
         * was still working on; only two lookups that agree are taken as its word. */
        if (start_lookup(c, c->st->settle_ms) != 0)
            call_finish(c);
        return;
    }
    if (!c->st->resubmit) {
        call_uncertain(c, c->after_post
                              ? "its answer was lost; two lookups found no certificate for this "
                                "key, and LookupResubmit is false"
                              : "submitted before the interruption with no answer kept; two "
                                "lookups found no certificate for this key, and LookupResubmit is "
                                "false");
        call_finish(c);
        return;
    }
    int most = c->st->nc.endpoint.retries > 0 ? c->st->nc.endpoint.retries : 1;
    if (c->resubmits >= most) {
        /* Each answer lost, and each time two lookups found nothing: the CA's Retries used up
         * (one repeat at least, as a resumed run's submission is this process's first). */
        call_uncertain(c,
                       "its answer was lost %d times; each time two lookups found no "
                       "certificate for this key, and Retries (%d) is used up",
                       c->resubmits + 1, most);
        call_finish(c);
        return;
    }
    log_info("%s: two lookups at CA \"%s\" found no certificate for this key: submitted again",
             c->sub->req->id, c->st->nc.cfg->name);
    c->resubmits++;
    if (call_post(c) == SUBMIT_DONE)
        call_finish(c);
}

static void on_posted(ca_submission *sub, void *user)
{
    kf_call *c = user;
    ca_answer *a = &sub->answer;
    if (a->failed && a->uncertain && (!c->after_post || c->resubmits > 0)) {
        /* A lost answer, or a key-reuse refusal of this CSR (also of a repeat sent after two
         * empty lookups): the CA is asked what it issued. */
        c->after_post = true;
        c->lookups = 0;
        snprintf(c->why, sizeof c->why, "%.190s", a->err.message);
        if (start_lookup(c, 0) != 0)
            call_finish(c);
        return;
    }
    if (!a->failed && !a->pending && c->resubmits > 0 && a->note[0] == '\0')
        snprintf(a->note, sizeof a->note,
                 "%s; two lookups at the CA found no certificate for this key, so it was "
                 "submitted again: one certificate (KeyfactorID %lld)",
                 !c->sub->repeat ? "the answer to its first submission was lost"
                                 : "submitted before the interruption with no answer kept",
                 a->keyfactor_id);
    call_finish(c);
}

static submit_status keyfactor_submit(ca_connector *conn, ca_submission *sub)
{
    keyfactor_state *st = conn->state;
    kf_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        enroll_error_set(&sub->answer.err, HSE_OUT_OF_MEMORY, NULL,
                         "cannot prepare the request to CA \"%s\"", st->nc.cfg->name);
        sub->answer.failed = true;
        return SUBMIT_DONE;
    }
    *c = (kf_call){.st = st, .sub = sub, .done = sub->done, .user = sub->user};
    submit_status status;
    if (sub->repeat) {
        /* Sent before the interruption, no answer kept: what did the CA issue? */
        sub->done = on_posted; /* restored by call_finish */
        sub->user = c;
        status = start_lookup(c, 0) == 0 ? SUBMIT_PENDING : SUBMIT_DONE;
    } else {
        status = call_post(c);
    }
    if (status == SUBMIT_DONE) {
        sub->done = c->done;
        sub->user = c->user;
        X509_free(c->found);
        free(c);
    }
    return status;
}

const ca_connector_ops connector_keyfactor = {
    .type = "keyfactor",
    .open = keyfactor_open,
    .submit = keyfactor_submit,
    .close = net_connector_close,
};
