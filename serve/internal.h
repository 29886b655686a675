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

struct server {
    serve_options opt;
    engine_setup *setup;
    serve_credentials *creds;
    struct MHD_Daemon *daemon;
    char url[128];
    pthread_rwlock_t config_lock; /* read: an API call; write: a pattern added */
    serve_config *current;
    local_ca *cas; /* one per configuration CA; opened for the local ones */
    bool *ca_open;
    size_t *ca_token;               /* the HSM context token index of each local CA */
    session_pool *pools;            /* one per HSM context token */
    _Atomic long long next_id;      /* request Ids ("api-N") */
    _Atomic long long next_pending; /* KeyfactorRequestId of pending answers */
    pthread_mutex_t rng_lock;
    unsigned long long rng;
    char *tls_cert_pem, *tls_key_pem, *client_ca_pem;
    serve_guard *guard; /* request deadlines, failed-login throttling */
};

/* The answer of one API call: a status and a JSON body (owned). */
typedef struct api_answer {
    unsigned status;
    json_t *body;
    const char *retry_after; /* a Retry-After header value, or NULL */
} api_answer;

/* Who is calling: the authenticated user. */
typedef struct api_caller {
    const serve_user *user;
} api_caller;

/* A request to the API, once read whole. */
typedef struct api_call {
    const char *method;
    const char *path; /* below /KeyfactorAPI, e.g. "/Enrollment/CSR" */
    const char *body;
    size_t body_len;
    const char *certificate_format; /* x-certificateformat, or NULL */
    const char *requested_with;     /* x-keyfactor-requested-with, or NULL */
    const char *content_type;
    api_caller caller;
} api_call;

/* Answers one call (the caller is authenticated); called with the configuration read-locked by
 * the plumbing except for POST /EnrollmentPatterns, which takes the write lock itself. */
void api_dispatch(server *srv, const api_call *call, api_answer *answer);

/* {"ErrorCode": code, "Message": message} with the code's HTTP status (formats/error_codes.def). */
void api_error(api_answer *answer, hse_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A new serve_config over cfg (taken). NULL on failure. */
serve_config *serve_config_new(config *cfg);
void serve_config_free(serve_config *sc);

/* A session on token index t of the server's HSM context, from the pool. */
int session_pool_get(server *srv, size_t t, hsm_session *out, enroll_error *err);
void session_pool_put(server *srv, size_t t, hsm_session *s);

/* A uniform random number in [0, 1) (not for secrets). */
double serve_random(server *srv);

#endif
