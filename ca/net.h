/* What the network connectors (keyfactor, cfssl) share: the endpoint built from the CA's entry
 * (URL, trust bundle, credentials from the environment or a file, timeouts, retries), the run's
 * one event loop, and turning an answer's certificates into the job's certificate and chain. */
#ifndef HSMENROLL_CA_NET_H
#define HSMENROLL_CA_NET_H

#include <jansson.h>

#include "ca/connector.h"
#include "ca/http_loop.h"

typedef struct net_ca net_ca;

/* Reads an answer into the submission (on the loop thread): sets its answer's cert and chain,
 * or pending with the disposition, or failed with err. */
typedef void (*net_answer_fn)(net_ca *nc, ca_submission *sub, const http_request *req);

struct net_ca {
    const config_ca *cfg;
    ca_env *env;    /* the connectors' environment: configuration, the shared event loop */
    char *base_url; /* Url without a trailing slash */
    http_endpoint endpoint;
    char *authorization; /* secret: wiped on close */
    char *trust_bundle, *client_cert, *client_key;
    STACK_OF(X509) * chain; /* ChainFile certificates, or NULL */
};

/* Reads the CA entry's common keys (Url, TrustBundle, InsecureSkipTlsVerify, ClientCertificate,
 * ClientKey, Auth, TimeoutSeconds, Retries, RetryDelayMs, ChainFile) and starts the run's event
 * loop if it is not running. 0, or -1 with err (code CA_UNAVAILABLE, naming the JSON path). */
int net_ca_open(net_ca *nc, const config_ca *cfg, ca_env *env, enroll_error *err);
void net_ca_close(net_ca *nc);

/* POSTs body (taken; NULL counts as out of memory) to base_url + path with the extra headers;
 * on the answer, answer() fills sub->answer and sub->done is called. SUBMIT_PENDING, or
 * SUBMIT_DONE with sub->answer.failed. */
submit_status net_ca_submit(net_ca *nc, ca_submission *sub, const char *path, json_t *body,
                            const char *const *headers, net_answer_fn answer);

/* Sends one more request to the CA outside a submission (a lookup): POST body to base_url + path
 * (body NULL: GET), its first attempt delay_ms from now; done gets the finished request (and
 * owns it). 0, or -1 when it cannot be prepared. */
int net_ca_call(net_ca *nc, const char *path, const char *body, const char *const *headers,
                long delay_ms, http_done_fn done, void *user);

/* For a connector whose state struct (of state_size bytes) starts with its net_ca: allocates it
 * zeroed, opens the net_ca, and sets conn->state. NULL with err on failure. */
void *net_connector_open(ca_connector *conn, ca_env *env, size_t state_size, enroll_error *err);
/* The close of such a connector. */
void net_connector_close(ca_connector *conn);

/* Every certificate in text: PEM blocks (text around them is ignored), or else one base-64 DER
 * certificate. NULL when there is none. */
STACK_OF(X509) * net_parse_certificates(const char *text);

/* Sets the answer's cert to the certificate of certs whose key is the CSR's, and its chain to the
 * others plus (when none came) the CA's ChainFile. Takes certs. 0, or -1 with the answer failed
 * (CA_BAD_ANSWER). */
int net_take_certificates(net_ca *nc, ca_submission *sub, STACK_OF(X509) * certs);

/* The request's SANs as a Keyfactor SANs object ({"dns":[...],"ip4":[...]}). */
json_t *net_sans_object(const GENERAL_NAMES *sans);

/* The CSR as PEM text (malloc'd). */
char *net_csr_pem(const X509_REQ *csr);

#endif
