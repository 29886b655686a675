/* CA connectors: one table of functions per CA type (like curl's TLS backends), chosen by
 * CertificateAuthorities[].Type. A connector takes a small submission (a CSR and what the CA's
 * body needs) and fills its answer, at once in the calling thread (local) or later, from its own
 * event loop, through the submission's done callback (keyfactor, cfssl). */
#ifndef HSMENROLL_CA_CONNECTOR_H
#define HSMENROLL_CA_CONNECTOR_H

#include <openssl/x509.h>
#include <stdbool.h>

#include "batch/config.h"
#include "batch/request.h"
#include "formats/error.h"
#include "hsm/hsm.h"

typedef struct ca_connector ca_connector;
typedef struct ca_submission ca_submission;
struct http_loop;

/* What the CA answered. Filled by the connector; the caller takes cert and chain. */
typedef struct ca_answer {
    X509 *cert;             /* issued: the certificate for the CSR's key (owned) */
    STACK_OF(X509) * chain; /* issued: the rest of the chain, issuing CA first (owned) */
    long long keyfactor_id, request_id; /* the CA's ids (0: none) */
    bool failed;                        /* refused or unreachable: err says why */
    bool uncertain; /* with failed: the CA may have issued it (an answer was lost, or it refused
                       a repeat of the engine's own submission as key reuse) */
    bool pending;   /* taken, not issued yet (approval, external validation) */
    char disposition[40];          /* the CA's RequestDisposition when pending */
    char disposition_message[200]; /* and its DispositionMessage */
    /* Issued, or uncertain, after an earlier submission's answer was lost: what the connector
     * found out (a lookup found it, the CA answered a repeat); "" when nothing was asked. */
    char note[300];
    enroll_error err;
} ca_answer;

/* Called, on the connector's event loop thread, when a SUBMIT_PENDING submission is answered. */
typedef void (*ca_done_fn)(ca_submission *sub, void *user);

/* One request to one CA. The caller (the engine's submit stage) sets everything above `answer`
 * and keeps the submission alive until it is answered. */
struct ca_submission {
    const enroll_request *req;        /* the checked request line: SANs, metadata, ... */
    const config_template *template_; /* the template the policy resolved */
    X509_REQ *csr;                    /* the CSR to certify (borrowed) */
    const char *run_id;               /* the journaled run asking, or NULL */
    bool resumed;                     /* that run continues an interrupted one */
    bool repeat;                      /* this CSR went to this CA before, with no answer kept */
    hsm_session *sessions;            /* local CA: the caller's sessions, by token index */
    ca_done_fn done;                  /* SUBMIT_PENDING: the answer has come */
    void *user;                       /* for done */
    ca_answer answer;                 /* set by the connector */
};

typedef enum submit_status {
    SUBMIT_DONE = 0, /* answered: sub->answer is set */
    SUBMIT_PENDING,  /* the connector will call sub->done later, from its event loop */
} submit_status;

/* What connectors are opened with: the configuration, the logged-in tokens (a local CA finds its
 * own by label, and signs through the submission's session of that index), and the shared event
 * loop of the network connectors. */
typedef struct ca_env {
    /* Set by the caller before connectors_open. */
    const config *cfg;
    hsm_token *tokens; /* the run's logged-in tokens (index = the sessions' index) */
    size_t token_count;
    int inflight; /* most requests in flight to network CAs */
    /* Set by connectors_open; owned until connectors_close. */
    ca_connector **connectors; /* one per cfg->cas entry; NULL when not opened */
    struct http_loop *http;    /* the network connectors' event loop; NULL when none is used */
} ca_env;

typedef struct ca_connector_ops {
    const char *type; /* "local", "keyfactor", "cfssl" */
    int (*open)(ca_connector *conn, ca_env *env, enroll_error *err);
    submit_status (*submit)(ca_connector *conn, ca_submission *sub);
    /* The HSM module was restarted (every handle is new); NULL when the connector keeps none. */
    int (*hsm_restarted)(ca_connector *conn, ca_env *env, enroll_error *err);
    void (*close)(ca_connector *conn);
} ca_connector_ops;

struct ca_connector {
    const ca_connector_ops *ops;
    const config_ca *cfg;
    void *state;
};

/* The table for a CA type, or NULL when this build has no connector for it. */
const ca_connector_ops *connector_ops_for(ca_type type);

/* Opens a connector for each CA of env->cfg. Codes: CA_UNAVAILABLE. 0, or -1 with err (the run
 * cannot start; connectors_close still frees what was opened). */
int connectors_open(ca_env *env, enroll_error *err);
/* Waits for the event loop to finish what it has in flight, then closes every connector. */
void connectors_close(ca_env *env);
/* Tells every connector that the module was restarted. 0, or -1 with err. */
int connectors_hsm_restarted(ca_env *env, enroll_error *err);

/* Submits sub to the connector of its CA (ca: an entry of env->cfg->cas). */
submit_status connector_submit(ca_env *env, const config_ca *ca, ca_submission *sub);

/* A network CA's live counters (metrics). */
typedef struct ca_net_counters {
    long in_flight;          /* transfers now */
    unsigned long retries;   /* attempts scheduled again */
    unsigned long throttled; /* 429 answers */
} ca_net_counters;
/* The counters of env->cfg->cas[i]; -1 when it is no network CA (or is not open). */
int connector_net_counters(const ca_env *env, size_t i, ca_net_counters *out);

/* Frees what an answer holds (cert and chain); the answer is cleared. */
void ca_answer_clear(ca_answer *answer);

extern const ca_connector_ops connector_local;
extern const ca_connector_ops connector_keyfactor;
extern const ca_connector_ops connector_cfssl;

#endif
