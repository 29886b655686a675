/* CA connectors: one table of functions per CA type (like curl's TLS backends), chosen by
 * CertificateAuthorities[].Type. A connector either issues at once in the calling worker (local)
 * or takes the job onto its own event loop and hands it back when the CA has answered. */
#ifndef HSMENROLL_ENGINE_CONNECTOR_H
#define HSMENROLL_ENGINE_CONNECTOR_H

#include "batch/config.h"
#include "formats/error.h"
#include "run.h"

typedef struct ca_connector ca_connector;

typedef enum submit_status {
    SUBMIT_DONE = 0, /* answered: job->cert/chain/ids set, or job->failed with job->err */
    SUBMIT_PENDING,  /* the connector will call run_job_answered(job) later */
} submit_status;

typedef struct ca_connector_ops {
    const char *type; /* "local", "keyfactor", "cfssl" */
    int (*open)(ca_connector *conn, run *r, enroll_error *err);
    submit_status (*submit)(ca_connector *conn, worker *w, job *j);
    /* The HSM module was restarted (every handle is new); NULL when the connector keeps none. */
    int (*hsm_restarted)(ca_connector *conn, run *r, enroll_error *err);
    void (*close)(ca_connector *conn);
} ca_connector_ops;

struct ca_connector {
    const ca_connector_ops *ops;
    const config_ca *cfg;
    void *state;
};

/* The table for a CA type, or NULL when this build has no connector for it. */
const ca_connector_ops *connector_ops_for(ca_type type);

/* Opens a connector for each CA of the configuration that a request may reach. Codes:
 * CA_UNAVAILABLE. 0, or -1 with err (the run cannot start). */
int connectors_open(run *r, enroll_error *err);
void connectors_close(run *r);

extern const ca_connector_ops connector_local;
extern const ca_connector_ops connector_keyfactor;
extern const ca_connector_ops connector_cfssl;

#endif
