/* `hsmenroll serve`: the Keyfactor Command API subset under /KeyfactorAPI (POST /Enrollment/CSR,
 * GET and POST /EnrollmentPatterns) over libmicrohttpd, signed by the embedded CA, with Basic
 * authentication against a credentials file, pattern roles enforced, limits, and injected faults.
 */
#ifndef HSMENROLL_SERVE_SERVE_H
#define HSMENROLL_SERVE_SERVE_H

#include <stdbool.h>
#include <stddef.h>

#include "formats/error.h"
#include "engine/setup.h"

typedef struct serve_options {
    const char *listen;             /* "ADDR:PORT" (port 0: any free one); default 127.0.0.1:8080 */
    const char *credentials;        /* the users file (serve_auth.h) */
    const char *tls_cert, *tls_key; /* HTTPS when both are given (PEM files) */
    /* The password of an encrypted --tls-key: an environment variable's name, or a file (0600).
     * An encrypted key without either is SERVE_TLS. */
    const char *tls_key_password_env, *tls_key_password_file;
    const char *client_ca;       /* mutual TLS: client certificates must chain to these */
    long latency_ms;             /* added before each answer */
    double fail_rate;            /* share of requests answered 503 or reset (0..1) */
    double pending_rate;         /* share of enrollments answered pending (0..1) */
    double rate_limit;           /* API requests per second above which 429 (0: none) */
    const char *metrics_listen;  /* "ADDR:PORT" of /metrics (Prometheus), or NULL */
    size_t max_body;             /* bytes; default 1 MiB */
    unsigned connection_timeout; /* seconds idle before a connection is closed; default 30 */
    unsigned max_connections;    /* default 512 */
    unsigned request_timeout;    /* seconds to send a whole request (408 after); default 30 */
    unsigned max_login_failures; /* wrong passwords in a row per address before 429; 10 */
} serve_options;

typedef struct server server;

/* Starts serving with s's configuration, HSM context and local CAs. NULL with err on failure. */
server *server_start(const serve_options *opt, engine_setup *s, enroll_error *err);
/* The base URL it listens on ("http://127.0.0.1:41234/KeyfactorAPI"). */
const char *server_url(const server *srv);
/* Stops taking connections, finishes those in progress, frees everything. */
void server_stop(server *srv);

#endif
