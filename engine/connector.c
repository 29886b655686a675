/* The connector registry: type -> function table, and opening/closing a run's connectors. */
#include "connector.h"

#include <stdlib.h>

#include "http_loop.h"

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

int connectors_open(run *r, enroll_error *err)
{
    const config *cfg = r->cfg;
    r->connectors = calloc(cfg->ca_count ? cfg->ca_count : 1, sizeof *r->connectors);
    if (r->connectors == NULL) {
        enroll_error_set(err, "OUT_OF_MEMORY", NULL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->ca_count; i++) {
        const config_ca *ca = &cfg->cas[i];
        const ca_connector_ops *ops = connector_ops_for(ca->type);
        if (ops == NULL) {
            enroll_error_set(err, "CA_UNAVAILABLE", NULL,
                             "CertificateAuthorities[%zu] (\"%s\"): this build has no connector "
                             "for its Type",
                             i, ca->name);
            return -1;
        }
        ca_connector *conn = calloc(1, sizeof *conn);
        if (conn == NULL) {
            enroll_error_set(err, "OUT_OF_MEMORY", NULL, "out of memory");
            return -1;
        }
        conn->ops = ops;
        conn->cfg = ca;
        r->connectors[i] = conn;
        if (ops->open(conn, r, err) != 0)
            return -1;
    }
    return 0;
}

void connectors_close(run *r)
{
    /* Every job is done by now, so the loop has nothing left in flight. */
    http_loop_stop(r->http);
    r->http = NULL;
    if (r->connectors == NULL)
        return;
    for (size_t i = 0; i < r->cfg->ca_count; i++) {
        ca_connector *conn = r->connectors[i];
        if (conn == NULL)
            continue;
        if (conn->state != NULL)
            conn->ops->close(conn);
        free(conn);
    }
    free(r->connectors);
    r->connectors = NULL;
}
