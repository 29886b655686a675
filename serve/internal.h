/* What serve.c (HTTP plumbing: connections, limits, authentication, faults) and serve_api.c (the
 * Keyfactor endpoints) share: the server's state and the answer of one API call. */
#ifndef HSMENROLL_SERVE_INTERNAL_H
#define HSMENROLL_SERVE_INTERNAL_H

#include <jansson.h>
#include <pthread.h>

#include "batch/linecheck.h"
#include "ca/local_ca.h"
#include "serve/serve.h"
#include "serve/auth.h"
#include "serve/guard.h"

/* The configuration in force and what is built over it; replaced whole when a pattern is added. */
typedef struct serve_config {
    config *cfg;
    line_checker checker;
    pthread_mutex_t order_lock; /* line_check_in_order: key reuse history */
} serve_config;

typedef struct session_pool {
    pthread_mutex_t lock;
    hsm_session *free_list;
    size_t free_count, free_cap;
} session_pool;

#define SERVE_METRICS_CODES 64 /* distinct error codes counted (then "OTHER") */

struct server {
    serve_options opt;
    engine_setup *setup;
    serve_credentials *creds;
    struct MHD_Daemon *daemon;
    char url[128];
    pthread_rwlock_t config_lock; /* read: an API call; write: a pattern added */
    serve_config *current;
    local_ca **cas; /* one per configuration CA; opened for the local ones */
    bool *ca_open;
    size_t *ca_token;          /* the HSM context token index of each local CA */
    session_pool *pools;       /* one per HSM context token */
    _Atomic long long next_id; /* request Ids ("api-N") */
    char run_id[40]; /* "serve-<random hex>", new at each start: the issuance log's RunId, so
                      * that it records each certificate (GET /Certificates reads them) */
    _Atomic long long next_pending; /* KeyfactorRequestId of pending answers */
    pthread_mutex_t rng_lock;
    unsigned long long rng;
    char *tls_cert_pem, *tls_key_pem, *client_ca_pem;
    serve_guard *guard;                  /* request deadlines, failed-login throttling */
    struct serve_revocation *revocation; /* serve/revocation.c: CRLs, OCSP, revocations */
    /* Idempotent replay (api_enrollment.c): "<CA index> US <user> US <CSR SHA-256>" -> the KeyfactorID
     * issued for it, 0 while it is being issued. Loaded from the CAs' logs at start. */
    pthread_mutex_t replay_lock;
    json_t *replays;
    /* --rate-limit (serve.c): GCRA schedule under rate_lock, and the 429s it answered. */
    pthread_mutex_t rate_lock;
    unsigned long long rate_next_ns;
    _Atomic long long rate_limited, rate_admitted;
    /* /metrics (serve.c): answers by status and by error code, API calls being answered. */
    _Atomic long long status_counts[600]; /* index 0: a status out of range */
    _Atomic long in_flight;
    pthread_mutex_t codes_lock;
    char codes[SERVE_METRICS_CODES][40];
    long long code_counts[SERVE_METRICS_CODES];
    struct metrics_http *metrics; /* --metrics-listen, NULL: none */
};

/* Loads the replay index from the open CAs' issuance logs (api.c). */
void api_replays_load(server *srv);

/* The answer of one API call: a status and a JSON body (owned). */
typedef struct api_answer {
    unsigned status;
    json_t *body;
    const char *retry_after;     /* a Retry-After header value, or NULL */
    const char *product_version; /* an x-keyfactor-product-version header value, or NULL */
    bool no_body;                /* 204: nothing is sent */
} api_answer;

/* Who is calling: the authenticated user. */
typedef struct api_caller {
    const serve_user *user;
} api_caller;

/* One query parameter, decoded ('+' and %20 as spaces). */
typedef struct api_param {
    const char *name, *value; /* value "" when the parameter has no '=' */
} api_param;

/* A request to the API, once read whole. */
typedef struct api_call {
    const char *method;
    const char *path; /* below /KeyfactorAPI, e.g. "/Enrollment/CSR" */
    const api_param *query;
    size_t query_count;
    const char *api_version; /* x-keyfactor-api-version, or NULL (then 1) */
    const char *body;
    size_t body_len;
    const char *certificate_format; /* x-certificateformat, or NULL */
    const char *requested_with;     /* x-keyfactor-requested-with, or NULL */
    const char *content_type;
    api_caller caller;
} api_call;

/* Answers one call (the caller is authenticated): the dispatch table (api.c) finds the handler
 * and takes the configuration lock it needs. */
void api_dispatch(server *srv, const api_call *call, api_answer *answer);

/* The handlers, by resource; id is the {id} segment of the path (-1 when the path has none).
 * Each is called with the configuration locked as its table entry says. */
typedef void api_handler(server *srv, const api_call *call, api_answer *answer, long long id);
api_handler api_enroll_csr, api_enroll_pfx, api_enrollment_context, api_store_reenrollment;
api_handler api_list_patterns, api_get_pattern, api_add_pattern;
api_handler api_list_metadata_fields, api_list_templates, api_list_cas;
api_handler api_list_certificates, api_get_certificate, api_download_certificate;

/* The body as a JSON object, read as a Keyfactor server reads it (body.c: raw newlines inside
 * strings, stray backslashes, content after the object); NULL with a 400 answer. */
json_t *api_body_object(const api_call *call, api_answer *answer);
/* A query parameter by name (case-insensitive), or NULL. */
const char *api_query_value(const api_call *call, const char *name);
/* The same, also under the prefixes pq. and sq. that older clients use (pq.queryString). */
const char *api_query_param(const api_call *call, const char *name);
/* Several errors of a request as one answer: the first as ErrorCode/Message/Field (its code's
 * status), all in Errors. */
void api_answer_errors(api_answer *answer, const error_list *errors);
/* The caller holds one of the pattern's AssociatedRoles (or it uses AD permissions). */
bool api_caller_may_use(const api_call *call, const config_pattern *pattern);
/* The filtered list: items (taken) that match the query parameter QueryString, at most
 * ReturnLimit from PageReturned; NULL with a 400 answer on a bad query. */
json_t *api_filter(const api_call *call, json_t *items, json_t *views, const char *const *fields,
                   api_answer *answer);

/* {"ErrorCode": code, "Message": message} with the code's HTTP status (formats/error_codes.def). */
void api_error(api_answer *answer, hse_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A new serve_config over cfg (taken). NULL on failure. */
serve_config *serve_config_new(config *cfg);
void serve_config_free(serve_config *sc);

/* A session on token index t of the server's HSM context, from the pool. */
int session_pool_get(server *srv, size_t t, hsm_session *out, enroll_error *err);
void session_pool_put(server *srv, size_t t, hsm_session *s);

/* serve/revocation.c: the local CAs' revocation state (opened after the CAs), the public
 * /crl and /ocsp paths answered without authentication, POST /Certificates/Revoke. */
typedef struct serve_revocation serve_revocation;
serve_revocation *serve_revocation_open(server *srv, enroll_error *err);
void serve_revocation_close(serve_revocation *sr);
bool serve_public_path(const char *url);
struct MHD_Connection;
enum MHD_Result serve_public_answer(server *srv, struct MHD_Connection *conn, const char *method,
                                    const char *url, const char *body, size_t body_len);
void api_revoke(server *srv, const api_call *call, api_answer *answer);

/* A uniform random number in [0, 1) (not for secrets). */
double serve_random(server *srv);

#endif
