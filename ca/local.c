/* The `local` connector: the embedded CA, issuing in the calling worker through the worker's
 * session on the CA's token. */
#include <stdlib.h>
#include <string.h>

#include "ca/connector.h"
#include "ca/local_ca.h"

typedef struct local_state {
    local_ca *ca;
    size_t
        token; /* index of the CA's token among the env's tokens (and the submission's sessions) */
} local_state;

/* The index of the token labelled label among env's tokens, or -1. */
static int token_index(const ca_env *env, const char *label)
{
    for (size_t i = 0; i < env->token_count; i++)
        if (strcmp(env->tokens[i].desc.label, label) == 0)
            return (int)i;
    return -1;
}

/* A session struct over a token's login session (not to be closed). */
static void login_session(const ca_env *env, size_t index, hsm_session *out)
{
    memset(out, 0, sizeof *out);
    out->token = &env->tokens[index];
    out->f = hsm_module_functions(env->tokens[index].module);
    out->handle = env->tokens[index].login_session;
}

static int local_open(ca_connector *conn, ca_env *env, enroll_error *err)
{
    const config_ca *cfg = conn->cfg;
    int token = token_index(env, cfg->token ? cfg->token : "");
    if (token < 0) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL,
                         "CA \"%s\": its token \"%s\" is not open in this run", cfg->name,
                         cfg->token ? cfg->token : "");
        return -1;
    }
    local_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    st->token = (size_t)token;
    hsm_session s;
    login_session(env, st->token, &s);
    if ((st->ca = local_ca_open(cfg->home, &s, err)) == NULL) {
        char prefix[128];
        snprintf(prefix, sizeof prefix, "CA \"%.80s\": ", cfg->name);
        enroll_error_prefix(err, prefix);
        free(st);
        return -1;
    }
    conn->state = st;
    return 0;
}

static submit_status local_submit(ca_connector *conn, ca_submission *sub)
{
    local_state *st = conn->state;
    ca_answer *a = &sub->answer;
    local_ca_issue params = {
        .validity_days = (int)sub->template_->validity_days,
        .request_id = sub->req->id,
        .sans = sub->req->sans,
        .run_id = sub->run_id,
        .resumed = sub->resumed,
        .crl_url = conn->cfg->crl_url,
        .ocsp_url = conn->cfg->ocsp_url,
    };
    local_ca_issued issued;
    if (local_ca_issue_cert(st->ca, &sub->sessions[st->token], sub->csr, &params, &issued,
                            &a->err) != 0) {
        a->failed = true;
        return SUBMIT_DONE;
    }
    a->cert = issued.cert;
    a->keyfactor_id = issued.keyfactor_id;
    a->request_id = issued.keyfactor_id;
    a->chain = sk_X509_new_null();
    STACK_OF(X509) *chain = local_ca_chain(st->ca);
    for (int i = 0; a->chain != NULL && i < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        X509_up_ref(c);
        sk_X509_push(a->chain, c);
    }
    return SUBMIT_DONE;
}

static int local_hsm_restarted(ca_connector *conn, ca_env *env, enroll_error *err)
{
    local_state *st = conn->state;
    hsm_session s;
    login_session(env, st->token, &s);
    return local_ca_find_key(st->ca, &s, err);
}

static void local_close(ca_connector *conn)
{
    local_state *st = conn->state;
    local_ca_close(st->ca);
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
