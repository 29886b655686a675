/* Revoking at network CAs (revoke_net.h): each revocation is one POST on an event loop of its
 * own (retries, backoff, TLS and credentials as the connectors have them), waited for; the
 * answer's SuccessfulRevocations / FailedRevocations decide. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch/jsonobj.h"
#include "ca/net.h"
#include "ca/revoke_net.h"

struct net_revoker {
    ca_env env; /* only cfg and the event loop are used */
    net_ca nc;
    bool nc_open;
    char version_header[64];
};

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    http_request *req; /* set by the loop thread when the request is over */
} waiter;

static void on_done(http_request *req, void *user)
{
    waiter *w = user;
    pthread_mutex_lock(&w->lock);
    w->req = req;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

net_revoker *net_revoker_open(const config *cfg, const config_ca *ca, enroll_error *err)
{
    if (ca->type != CA_TYPE_KEYFACTOR) {
        enroll_error_set(err, HSE_CA_REVOKE_FAILED, "CertificateAuthority",
                         "CA \"%s\" is a CFSSL CA: revoke does not reach CFSSL (revoke the "
                         "certificate at the CFSSL server: cfssl revoke -serial ... -aki ...)",
                         ca->name);
        return NULL;
    }
    net_revoker *r = calloc(1, sizeof *r);
    if (r == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    r->env.cfg = cfg;
    r->env.inflight = 1;
    r->nc_open = true;
    if (net_ca_open(&r->nc, ca, &r->env, err) != 0) {
        net_revoker_close(r);
        return NULL;
    }
    const char *version = json_string_value(jobj_get(ca->raw, "ApiVersion"));
    snprintf(r->version_header, sizeof r->version_header, "x-keyfactor-api-version: %.20s",
             version ? version : "1");
    return r;
}

void net_revoker_close(net_revoker *r)
{
    if (r == NULL)
        return;
    if (r->env.http != NULL)
        http_loop_stop(r->env.http);
    if (r->nc_open)
        net_ca_close(&r->nc);
    free(r);
}

/* The CA's refusal in a Keyfactor error body ({"ErrorCode", "Message"}) or a FailedRevocations
 * item into err. */
static void refusal(const char *ca_name, json_t *item, enroll_error *err)
{
    const char *code = json_string_value(jobj_get(item, "ErrorCode"));
    const char *message = json_string_value(jobj_get(item, "Message"));
    hse_code c = code != NULL && strcmp(code, "REVOKE_NOT_FOUND") == 0 ? HSE_REVOKE_NOT_FOUND
                                                                       : HSE_CA_REVOKE_FAILED;
    enroll_error_set(err, c, "KeyfactorID", "CA \"%s\" refused the revocation: %.40s%s%.300s",
                     ca_name, code ? code : "", code ? ": " : "", message ? message : "no message");
}

int net_revoker_keyfactor(net_revoker *r, long long keyfactor_id, int reason, time_t effective,
                          const char *comment, enroll_error *err)
{
    char when[32];
    struct tm tm;
    gmtime_r(&effective, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *body =
        json_pack("{s:[I], s:i, s:s, s:s}", "CertificateIds", (json_int_t)keyfactor_id, "Reason",
                  reason, "Comment", comment ? comment : "", "EffectiveDate", when);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    size_t n = strlen(r->nc.base_url) + sizeof "/Certificates/Revoke";
    char *url = malloc(n);
    const char *headers[] = {"x-keyfactor-requested-with: APIClient", r->version_header, NULL};
    http_request *req = NULL;
    if (text != NULL && url != NULL) {
        snprintf(url, n, "%s/Certificates/Revoke", r->nc.base_url);
        req = http_request_new(&r->nc.endpoint, url, text, headers);
    }
    free(url);
    free(text);
    if (req == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    waiter w = {.req = NULL};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    req->done = on_done;
    req->user = &w;
    http_loop_submit(r->env.http, req);
    pthread_mutex_lock(&w.lock);
    while (w.req == NULL)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    req = w.req;

    const char *name = r->nc.cfg->name;
    json_t *doc = json_loadb(req->response ? req->response : "", req->response_len, 0, NULL);
    int rc = -1;
    if (!http_request_ok(req)) {
        if (req->status >= 400 && req->status < 500 && req->status != 401 && req->status != 403 &&
            json_is_string(jobj_get(doc, "ErrorCode")))
            refusal(name, doc, err);
        else
            http_request_error(req, name, err);
    } else {
        /* Keyfactor Command answers 204 (no body) or the revoked ids; this project's serve
         * answers {SuccessfulRevocations, FailedRevocations}. */
        json_t *ok = json_is_array(doc) ? doc : jobj_get(doc, "SuccessfulRevocations");
        json_t *failed = jobj_get(doc, "FailedRevocations");
        size_t i;
        json_t *item;
        if (doc == NULL && req->response_len == 0)
            rc = 0;
        json_array_foreach(ok, i, item)
        {
            if (json_integer_value(item) == keyfactor_id)
                rc = 0;
        }
        if (rc != 0 && json_array_size(failed) > 0)
            refusal(name, json_array_get(failed, 0), err);
        else if (rc != 0)
            enroll_error_set(err, HSE_CA_REVOKE_FAILED, "KeyfactorID",
                             "CA \"%s\" answered without KeyfactorID %lld among its "
                             "SuccessfulRevocations",
                             name, keyfactor_id);
    }
    json_decref(doc);
    http_request_free(req);
    return rc;
}
