/* The `cfssl` connector: POST {Url}/api/v1/cfssl/sign ({"certificate_request", "hosts",
 * "profile", "label"}) on the shared event loop; the chain comes from the entry's ChainFile. */
#include <stdlib.h>
#include <string.h>

#include "ca/answer.h"
#include "batch/jsonobj.h"
#include "formats/san.h"

typedef struct cfssl_state {
    net_ca nc; /* first: net_connector_close */
    const char *profile, *label;
} cfssl_state;

static int cfssl_open(ca_connector *conn, ca_env *env, enroll_error *err)
{
    cfssl_state *st = net_connector_open(conn, env, sizeof *st, err);
    if (st == NULL)
        return -1;
    st->profile = json_string_value(jobj_get(conn->cfg->raw, "Profile"));
    st->label = json_string_value(jobj_get(conn->cfg->raw, "Label"));
    return 0;
}

void cfssl_answer(net_ca *nc, ca_submission *sub, const http_request *req)
{
    json_t *doc = json_loadb(req->response ? req->response : "", req->response_len, 0, NULL);
    json_t *result = json_object_get(doc, "result");
    const char *pem = json_string_value(json_object_get(result, "certificate"));
    if (!json_is_true(json_object_get(doc, "success")) || pem == NULL) {
        const char *why = json_string_value(
            json_object_get(json_array_get(json_object_get(doc, "errors"), 0), "message"));
        enroll_error_set(&sub->answer.err, HSE_CA_BAD_ANSWER, NULL, "CA \"%s\": %s", nc->cfg->name,
                         why ? why : "the answer holds no certificate");
        sub->answer.failed = true;
    } else {
        net_take_certificates(nc, sub, net_parse_certificates(pem));
    }
    json_decref(doc);
}

/* CFSSL's "hosts": the DNS names, IP addresses, e-mail addresses and URIs to certify. The other
 * SAN kinds have no place there and are refused rather than dropped. */
static json_t *hosts_of(const GENERAL_NAMES *sans, enroll_error *err)
{
    json_t *hosts = json_array();
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        char *text = san_entry_text(sk_GENERAL_NAME_value(sans, i));
        char *colon = text ? strchr(text, ':') : NULL;
        if (colon == NULL || strncmp(text, "ms_ntprincipalname:", 19) == 0 ||
            strncmp(text, "registeredid:", 13) == 0) {
            enroll_error_set(err, HSE_CA_UNSUPPORTED, "SANs",
                             "a cfssl CA certifies only dns, ip4, ip6, rfc822 and uri SANs");
            free(text);
            json_decref(hosts);
            return NULL;
        }
        json_array_append_new(hosts, json_string(colon + 1));
        free(text);
    }
    return hosts;
}

static submit_status cfssl_submit(ca_connector *conn, ca_submission *sub)
{
    cfssl_state *st = conn->state;
    json_t *hosts = hosts_of(sub->req->sans, &sub->answer.err);
    if (hosts == NULL) {
        sub->answer.failed = true;
        return SUBMIT_DONE;
    }
    char *pem = net_csr_pem(sub->csr);
    json_t *body = json_pack("{s:s?, s:o}", "certificate_request", pem, "hosts", hosts);
    free(pem);
    if (body != NULL && st->profile != NULL)
        json_object_set_new(body, "profile", json_string(st->profile));
    if (body != NULL && st->label != NULL)
        json_object_set_new(body, "label", json_string(st->label));
    return net_ca_submit(&st->nc, sub, "/api/v1/cfssl/sign", body, NULL, cfssl_answer);
}

const ca_connector_ops connector_cfssl = {
    .type = "cfssl",
    .open = cfssl_open,
    .submit = cfssl_submit,
    .close = net_connector_close,
};
