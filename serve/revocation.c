/* Revocation in `serve`: the embedded CAs' CRLs at /crl (and /crl/NAME), an OCSP responder at
 * /ocsp (RFC 6960: POST, and GET /ocsp/BASE64), both without authentication as relying parties
 * expect; and POST /KeyfactorAPI/Certificates/Revoke (Keyfactor's body: CertificateIds, Reason,
 * Comment, EffectiveDate). Owns the per-CA revocation state of the server. */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "batch/jsonobj.h"
#include "batch/log.h"
#include "ca/crl.h"
#include "ca/ocsp.h"
#include "ca/revocation.h"
#include "formats/base64.h"
#include "serve/internal.h"

#define REVOKE_PERMISSION "certificate/revoke"

typedef struct revocation_ca {
    size_t index; /* in the configuration's CAs (srv->cas) */
    char *name, *logical, *home;
    long valid_seconds; /* CrlDays */
    revocation_list *list;
    issued_serials *issued;
    pthread_mutex_t crl_lock; /* the cached CRL */
    unsigned char *crl_der;
    size_t crl_len;
    long long crl_list_size; /* revocation_size when it was made */
    time_t crl_made;
} revocation_ca;

struct serve_revocation {
    revocation_ca *cas; /* the local CAs, in configuration order */
    size_t count;
};

serve_revocation *serve_revocation_open(server *srv, enroll_error *err)
{
    const config *cfg = srv->current->cfg;
    serve_revocation *sr = calloc(1, sizeof *sr);
    if (sr == NULL || (sr->cas = calloc(cfg->ca_count + 1, sizeof *sr->cas)) == NULL) {
        free(sr);
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < cfg->ca_count; i++) {
        if (!srv->ca_open[i])
            continue;
        revocation_ca *rc = &sr->cas[sr->count++];
        rc->index = i;
        rc->name = strdup(cfg->cas[i].name);
        rc->logical = strdup(cfg->cas[i].logical);
        rc->home = strdup(cfg->cas[i].home);
        rc->valid_seconds = (long)cfg->cas[i].crl_days * 86400;
        pthread_mutex_init(&rc->crl_lock, NULL);
        rc->issued = issued_serials_open(rc->home);
        if ((rc->list = revocation_open(rc->home, err)) == NULL || rc->issued == NULL) {
            serve_revocation_close(sr);
            return NULL;
        }
    }
    return sr;
}

void serve_revocation_close(serve_revocation *sr)
{
    if (sr == NULL)
        return;
    for (size_t i = 0; i < sr->count; i++) {
        revocation_ca *rc = &sr->cas[i];
        revocation_close(rc->list);
        issued_serials_close(rc->issued);
        pthread_mutex_destroy(&rc->crl_lock);
        free(rc->crl_der);
        free(rc->name);
        free(rc->logical);
        free(rc->home);
    }
    free(sr->cas);
    free(sr);
}

bool serve_public_path(const char *url)
{
    return strcmp(url, "/crl") == 0 || strncmp(url, "/crl/", 5) == 0 || strcmp(url, "/ocsp") == 0 ||
           strncmp(url, "/ocsp/", 6) == 0;
}

static enum MHD_Result send_bytes(struct MHD_Connection *conn, unsigned status,
                                  const char *content_type, unsigned char *data, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    char *copy = strdup(text);
    return copy ? send_bytes(conn, status, "text/plain", (unsigned char *)copy, strlen(copy))
                : MHD_NO;
}

/* A signer over CA rc's issuing key through a pooled session; *t gets the token index. */
static int borrow_signer(server *srv, revocation_ca *rc, hsm_session *session, signer *s,
                         hsm_signer_ctx *ctx, enroll_error *err)
{
    if (session_pool_get(srv, srv->ca_token[rc->index], session, err) != 0)
        return -1;
    local_ca_signer(srv->cas[rc->index], session, s, ctx);
    return 0;
}

/* The CA's CRL (DER), made again when a revocation was recorded since, or half its validity
 * has passed. Returns a malloc'd copy. */
static unsigned char *current_crl(server *srv, revocation_ca *rc, size_t *len, enroll_error *err)
{
    revocation_refresh(rc->list);
    pthread_mutex_lock(&rc->crl_lock);
    time_t now = time(NULL);
    if (rc->crl_der == NULL || rc->crl_list_size != revocation_size(rc->list) ||
        now - rc->crl_made > rc->valid_seconds / 2) {
        hsm_session session;
        signer s;
        hsm_signer_ctx ctx;
        if (borrow_signer(srv, rc, &session, &s, &ctx, err) == 0) {
            long long size = revocation_size(rc->list);
            X509_CRL *crl = crl_make(rc->home, local_ca_issuing(srv->cas[rc->index]), &s, rc->list,
                                     rc->valid_seconds, err);
            session_pool_put(srv, srv->ca_token[rc->index], &session);
            unsigned char *der = NULL;
            int n = crl ? i2d_X509_CRL(crl, &der) : -1;
            if (n > 0) {
                free(rc->crl_der);
                rc->crl_der = malloc((size_t)n);
                if (rc->crl_der != NULL) {
                    memcpy(rc->crl_der, der, (size_t)n);
                    rc->crl_len = (size_t)n;
                    rc->crl_list_size = size;
                    rc->crl_made = now;
                }
            }
            OPENSSL_free(der);
            X509_CRL_free(crl);
        }
    }
    unsigned char *copy = NULL;
    if (rc->crl_der != NULL && (copy = malloc(rc->crl_len)) != NULL) {
        memcpy(copy, rc->crl_der, rc->crl_len);
        *len = rc->crl_len;
    }
    pthread_mutex_unlock(&rc->crl_lock);
    return copy;
}

typedef struct lookup_ctx {
    revocation_ca *rc;
} lookup_ctx;

static int lookup_serial(void *ctx, const char *serial, revocation_entry *entry)
{
    revocation_ca *rc = ((lookup_ctx *)ctx)->rc;
    if (revocation_find(rc->list, serial, entry))
        return V_OCSP_CERTSTATUS_REVOKED;
    return issued_serials_contains(rc->issued, serial) ? V_OCSP_CERTSTATUS_GOOD
                                                       : V_OCSP_CERTSTATUS_UNKNOWN;
}

static enum MHD_Result answer_ocsp(server *srv, struct MHD_Connection *conn,
                                   const unsigned char *req, size_t req_len)
{
    serve_revocation *sr = srv->revocation;
    revocation_ca *rc = &sr->cas[0];
    for (size_t i = 0; i < sr->count; i++) {
        if (ocsp_request_for(req, req_len, local_ca_issuing(srv->cas[sr->cas[i].index]))) {
            rc = &sr->cas[i];
            break;
        }
    }
    revocation_refresh(rc->list);
    enroll_error err;
    enroll_error_clear(&err);
    lookup_ctx lctx = {rc};
    ocsp_ca oca = {.issuer = local_ca_issuing(srv->cas[rc->index]),
                   .lookup = lookup_serial,
                   .lookup_ctx = &lctx};
    hsm_signer_ctx sctx;
    hsm_session session;
    size_t len = 0;
    unsigned char *der = NULL;
    if (borrow_signer(srv, rc, &session, &oca.sign, &sctx, &err) == 0) {
        der = ocsp_answer(req, req_len, &oca, rc->valid_seconds, &len);
        session_pool_put(srv, srv->ca_token[rc->index], &session);
    } else {
        log_error("ocsp: %s", err.message);
        /* tryLater (RFC 6960 section 4.2.1): OCSPResponse { responseStatus 3 } */
        static const unsigned char try_later[] = {0x30, 0x03, 0x0a, 0x01, 0x03};
        der = malloc(sizeof try_later);
        if (der != NULL) {
            memcpy(der, try_later, sizeof try_later);
            len = sizeof try_later;
        }
    }
    if (der == NULL)
        return MHD_NO;
    return send_bytes(conn, MHD_HTTP_OK, "application/ocsp-response", der, len);
}

/* Percent-decodes s in place (libmicrohttpd passes the path decoded already; this is for a
 * client that encoded twice). */
static void percent_decode(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '%' && r[1] && r[2]) {
            char hex[3] = {r[1], r[2], 0};
            char *end;
            long v = strtol(hex, &end, 16);
            if (*end == '\0') {
                *w++ = (char)v;
                r += 2;
                continue;
            }
        }
        *w++ = *r;
    }
    *w = '\0';
}

enum MHD_Result serve_public_answer(server *srv, struct MHD_Connection *conn, const char *method,
                                    const char *url, const char *body, size_t body_len)
{
    serve_revocation *sr = srv->revocation;
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (sr == NULL || sr->count == 0)
        return send_text(conn, MHD_HTTP_NOT_FOUND, "this server has no embedded CA\n");
    if (strncmp(url, "/crl", 4) == 0) {
        if (!get)
            return send_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "/crl takes GET\n");
        revocation_ca *rc = url[4] == '\0' ? &sr->cas[0] : NULL;
        for (size_t i = 0; rc == NULL && i < sr->count; i++)
            if (strcasecmp(url + 5, sr->cas[i].name) == 0 ||
                strcasecmp(url + 5, sr->cas[i].logical) == 0)
                rc = &sr->cas[i];
        if (rc == NULL)
            return send_text(conn, MHD_HTTP_NOT_FOUND, "no such CA\n");
        enroll_error err;
        enroll_error_clear(&err);
        size_t len = 0;
        unsigned char *der = current_crl(srv, rc, &len, &err);
        if (der == NULL) {
            log_error("crl of CA \"%s\": %s", rc->name, err.message);
            return send_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "the CRL cannot be made\n");
        }
        return send_bytes(conn, MHD_HTTP_OK, "application/pkix-crl", der, len);
    }
    if (post && strcmp(url, "/ocsp") == 0)
        return answer_ocsp(srv, conn, (const unsigned char *)body, body_len);
    if (get && strncmp(url, "/ocsp/", 6) == 0) {
        char *text = strdup(url + 6);
        if (text == NULL)
            return MHD_NO;
        percent_decode(text);
        size_t len = 0;
        unsigned char *req = base64_decode(text, strlen(text), 0, &len);
        free(text);
        enum MHD_Result rc =
            answer_ocsp(srv, conn, req ? req : (const unsigned char *)"", req ? len : 0);
        free(req);
        return rc;
    }
    return send_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "/ocsp takes POST, or GET /ocsp/BASE64\n");
}

static time_t parse_iso(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (end == NULL)
        return (time_t)-1;
    return timegm(&tm);
}

void api_revoke(server *srv, const api_call *call, api_answer *answer)
{
    if (!serve_user_has_permission(call->caller.user, REVOKE_PERMISSION)) {
        api_error(answer, HSE_FORBIDDEN, "user \"%s\" lacks the permission %s",
                  serve_user_name(call->caller.user), REVOKE_PERMISSION);
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb(call->body, call->body_len, 0, &jerr);
    json_t *ids = jobj_get(body, "CertificateIds");
    json_t *reason_json = jobj_get(body, "Reason");
    const char *comment = json_string_value(jobj_get(body, "Comment"));
    const char *effective = json_string_value(jobj_get(body, "EffectiveDate"));
    if (!json_is_object(body) || !json_is_array(ids) || json_array_size(ids) == 0) {
        api_error(answer, HSE_INVALID_JSON,
                  "the body must be a JSON object with CertificateIds, a non-empty array");
        json_decref(body);
        return;
    }
    int reason = REVOKE_UNSPECIFIED;
    if (reason_json != NULL) {
        char text[32];
        if (json_is_integer(reason_json))
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(reason_json));
        else
            snprintf(text, sizeof text, "%.30s",
                     json_string_value(reason_json) ? json_string_value(reason_json) : "?");
        if ((reason = revocation_reason_parse(text)) < 0) {
            api_error(answer, HSE_REVOKE_REASON, "Reason %s is not an RFC 5280 reason", text);
            json_decref(body);
            return;
        }
    }
    time_t when = effective ? parse_iso(effective) : time(NULL);
    if (when == (time_t)-1) {
        api_error(answer, HSE_INVALID_FIELD, "EffectiveDate is not ISO 8601 UTC");
        json_decref(body);
        return;
    }
    serve_revocation *sr = srv->revocation;
    json_t *revoked = json_array(), *failed = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        long long kfid = json_integer_value(id);
        X509 *cert = NULL;
        revocation_ca *rc = NULL;
        for (size_t k = 0; cert == NULL && sr != NULL && k < sr->count; k++)
            if (json_is_integer(id) && (cert = local_ca_log_find(sr->cas[k].home, kfid)) != NULL)
                rc = &sr->cas[k];
        enroll_error err;
        enroll_error_clear(&err);
        revocation_entry entry = {.revoked = when, .reason = reason, .keyfactor_id = kfid};
        if (cert == NULL)
            enroll_error_set(&err, HSE_REVOKE_NOT_FOUND, "CertificateIds",
                             "no certificate with KeyfactorID %lld in this server's CAs", kfid);
        else if (revocation_serial_of(X509_get0_serialNumber(cert), entry.serial) != 0)
            enroll_error_set(&err, HSE_CA_REVOKE_FAILED, "CertificateIds",
                             "KeyfactorID %lld has no usable serial number", kfid);
        else
            revocation_add(rc->list, &entry, NULL, &err); /* once: revoked again is no error */
        X509_free(cert);
        if (err.code[0] == '\0') {
            json_array_append_new(revoked, json_integer(kfid));
            log_info("revoked KeyfactorID %lld (serial %s) of CA \"%s\" by \"%s\": %s%s%.200s",
                     kfid, entry.serial, rc->name, serve_user_name(call->caller.user),
                     revocation_reason_name(reason), comment ? ", " : "", comment ? comment : "");
        } else {
            json_array_append_new(failed,
                                  json_pack("{s:I, s:s, s:s}", "CertificateId", (json_int_t)kfid,
                                            "ErrorCode", err.code, "Message", err.message));
        }
    }
    if (json_array_size(revoked) == 0 && json_array_size(failed) > 0) {
        json_t *first = json_array_get(failed, 0);
        api_error(answer,
                  hse_code_from_name(json_string_value(json_object_get(first, "ErrorCode"))), "%s",
                  json_string_value(json_object_get(first, "Message")));
        json_object_set(answer->body, "FailedRevocations", failed);
    } else {
        answer->status = MHD_HTTP_OK;
        answer->body =
            json_pack("{s:O, s:O}", "SuccessfulRevocations", revoked, "FailedRevocations", failed);
    }
    json_decref(revoked);
    json_decref(failed);
    json_decref(body);
}
