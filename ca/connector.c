/* The connector registry: type -> function table, and opening, restarting and closing the
 * connectors of a configuration. */
#include "ca/connector.h"

#include <stdlib.h>
#include <string.h>

#include "ca/http_loop.h"
#include "ca/net.h"

const ca_connector_ops *connector_ops_for(ca_type type)
{
    switch (type) {
    case CA_TYPE_LOCAL:
        return &connector_local;
    case CA_TYPE_KEYFACTOR:
        return &connector_keyfactor;
    case CA_TYPE_CFSSL:
        return &connector_cfssl;
    default:
        return NULL;
    }
}

int connectors_open(ca_env *env, enroll_error *err)
{
    const config *cfg = env->cfg;
    env->connectors = calloc(cfg->ca_count ? cfg->ca_count : 1, sizeof *env->connectors);
    if (env->connectors == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->ca_count; i++) {
        const config_ca *ca = &cfg->cas[i];
        const ca_connector_ops *ops = connector_ops_for(ca->type);
        if (ops == NULL) {
            enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL,
                             "CertificateAuthorities[%zu] (\"%s\"): this build has no connector "
                             "for its Type",
                             i, ca->name);
            return -1;
        }
        ca_connector *conn = calloc(1, sizeof *conn);
        if (conn == NULL) {
            enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
            return -1;
        }
        conn->ops = ops;
        conn->cfg = ca;
        env->connectors[i] = conn;
        if (ops->open(conn, env, err) != 0)
            return -1;
    }
    return 0;
}

void connectors_close(ca_env *env)
{
    /* Every submission is answered by now, so the loop has nothing left in flight. */
    http_loop_stop(env->http);
    env->http = NULL;
    if (env->connectors == NULL)
        return;
    for (size_t i = 0; i < env->cfg->ca_count; i++) {
        ca_connector *conn = env->connectors[i];
        if (conn == NULL)
            continue;
        if (conn->state != NULL)
            conn->ops->close(conn);
        free(conn);
    }
    free(env->connectors);
    env->connectors = NULL;
}

int connectors_hsm_restarted(ca_env *env, enroll_error *err)
{
    for (size_t c = 0; env->connectors != NULL && c < env->cfg->ca_count; c++) {
        ca_connector *conn = env->connectors[c];
        if (conn != NULL && conn->ops->hsm_restarted != NULL &&
            conn->ops->hsm_restarted(conn, env, err) != 0)
            return -1;
    }
    return 0;
}

submit_status connector_submit(ca_env *env, const config_ca *ca, ca_submission *sub)
{
    ca_connector *conn = env->connectors[(size_t)(ca - env->cfg->cas)];
    memset(&sub->answer, 0, sizeof sub->answer);
    return conn->ops->submit(conn, sub);
}

void ca_answer_clear(ca_answer *answer)
{
    X509_free(answer->cert);
    sk_X509_pop_free(answer->chain, X509_free);
    memset(answer, 0, sizeof *answer);
}

int connector_net_counters(const ca_env *env, size_t i, ca_net_counters *out)
{
    const ca_connector *c = env->connectors != NULL ? env->connectors[i] : NULL;
    if (c == NULL || c->cfg->type == CA_TYPE_LOCAL || c->state == NULL)
        return -1;
    const net_ca *nc = c->state; /* a network connector's state opens with its net_ca */
    out->in_flight = atomic_load(&nc->endpoint.active);
    out->retries = atomic_load(&nc->endpoint.retried);
    out->throttled = atomic_load(&nc->endpoint.throttled);
    return 0;
}
