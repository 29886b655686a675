/* The `keyfactor` connector: POST {Url}/Enrollment/CSR with the seed's body and headers on the
 * shared event loop; the answer's CertificateInformation (keys matched case-insensitively) gives
 * the certificate and chain, a pending disposition (approval, external validation), or a
 * refusal (DENIED, FAILED, any other disposition) as a failure with the CA's message. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ca/answer.h"
#include "batch/jsonobj.h"

typedef struct keyfactor_state {
    net_ca nc;               /* first: net_connector_close */
    const char *remote_name; /* the CA's name at the Keyfactor server (RemoteName, else Name) */
    char version_header[64];
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
    json_decref(doc);
    net_take_certificates(nc, sub, certs);
}

static char *iso_now(char *buf, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static submit_status keyfactor_submit(ca_connector *conn, ca_submission *sub)
{
    keyfactor_state *st = conn->state;
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

const ca_connector_ops connector_keyfactor = {
    .type = "keyfactor",
    .open = keyfactor_open,
    .submit = keyfactor_submit,
    .close = net_connector_close,
};
