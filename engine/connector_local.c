/* The `local` connector: the embedded CA, issuing in the calling worker through the worker's
 * session on the CA's token. */
#include <stdlib.h>
#include <string.h>

#include "connector.h"
#include "localca.h"
#include "recovery.h"

typedef struct local_state {
    local_ca ca;
    size_t token; /* index of the CA's token in the run's HSM context */
} local_state;

static int local_open(ca_connector *conn, run *r, enroll_error *err)
{
    const config_ca *cfg = conn->cfg;
    int token = hsm_context_token_index(r->hsm, cfg->token ? cfg->token : "");
    if (token < 0) {
        enroll_error_set(err, "CA_UNAVAILABLE", NULL,
                         "CA \"%s\": its token \"%s\" is not open in this run", cfg->name,
                         cfg->token ? cfg->token : "");
        return -1;
    }
    local_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        enroll_error_set(err, "OUT_OF_MEMORY", NULL, "out of memory");
        return -1;
    }
    st->token = (size_t)token;
    hsm_session s;
    hsm_context_login_session(r->hsm, st->token, &s);
    if (local_ca_open(&st->ca, cfg->home, &s, err) != 0) {
        char prefix[128];
        snprintf(prefix, sizeof prefix, "CA \"%.80s\": ", cfg->name);
        enroll_error_prefix(err, prefix);
        local_ca_close(&st->ca);
        free(st);
        return -1;
    }
    conn->state = st;
    return 0;
}

static submit_status local_submit(ca_connector *conn, worker *w, job *j)
{
    local_state *st = conn->state;
    local_ca_issue params = {
        .validity_days = (int)j->policy.template_->validity_days,
        .request_id = j->req->id,
        .sans = j->req->sans,
        .run_id = recovery_run_id(w->run),
        .resumed = recovery_resumed(w->run),
    };
    local_ca_issued issued;
    if (local_ca_issue_cert(&st->ca, &w->sessions[st->token], j->csr, &params, &issued, &j->err) !=
        0) {
        j->failed = true;
        return SUBMIT_DONE;
    }
    j->cert = issued.cert;
    j->keyfactor_id = issued.keyfactor_id;
    j->request_id = issued.keyfactor_id;
    j->chain = sk_X509_new_null();
    for (int i = 0; j->chain != NULL && i < sk_X509_num(st->ca.chain); i++) {
        X509 *c = sk_X509_value(st->ca.chain, i);
        X509_up_ref(c);
        sk_X509_push(j->chain, c);
    }
    return SUBMIT_DONE;
}

static int local_hsm_restarted(ca_connector *conn, run *r, enroll_error *err)
{
    local_state *st = conn->state;
    hsm_session s;
    hsm_context_login_session(r->hsm, st->token, &s);
    return local_ca_find_key(&st->ca, &s, err);
}

static void local_close(ca_connector *conn)
{
    local_state *st = conn->state;
    local_ca_close(&st->ca);
    free(st);
    conn->state = NULL;
}

const ca_connector_ops connector_local = {
    .type = "local",
    .open = local_open,
    .submit = local_submit,
    .hsm_restarted = local_hsm_restarted,
    .close = local_close,
};
