/* The network connectors' one event loop: a thread driving a libcurl multi handle, with at most
 * `inflight` transfers at a time, shared connections (HTTP/2 multiplexed where offered), bounded
 * retries with exponential backoff and jitter on 5xx, 429, resets and timeouts, and Retry-After;
 * per CA (endpoint) a request rate and a number of transfers in flight that are never exceeded,
 * and a 429 pauses that whole CA instead of failing the request. */
#ifndef HSMENROLL_CA_HTTP_LOOP_H
#define HSMENROLL_CA_HTTP_LOOP_H

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "formats/error.h"

typedef struct http_loop http_loop;
typedef struct http_request http_request;

/* Called on the loop thread when a request is over (answered, or failed after its last try). The
 * callback owns req from then on (http_request_free). */
typedef void (*http_done_fn)(http_request *req, void *user);

/* How a connection to one CA is made; shared by that CA's requests. Strings are borrowed. */
typedef struct http_endpoint {
    const char *trust_bundle; /* CA file for TLS verification; NULL: the system store */
    bool insecure;            /* no TLS verification (a loud warning is logged by the caller) */
    const char *client_cert, *client_key; /* mutual TLS, PEM files; NULL: none */
    const char *authorization;            /* whole Authorization header value, or NULL */
    long timeout_ms;                      /* per attempt */
    int retries;                          /* further attempts after the first */
    long retry_delay_ms;                  /* base of the exponential backoff */
    double rate_limit;                    /* most request starts per second; 0: no limit */
    int max_in_flight;                    /* most transfers at a time; 0: the loop's inflight */
    /* Private to the loop (under its lock): the CA's own schedule. */
    _Atomic int active;           /* transfers in flight to this CA */
    unsigned long long next_ns;   /* GCRA: the theoretical start time of the next request */
    unsigned long long paused_ns; /* a 429 pauses the CA until then */
    /* No rate_limit: the rate learned from the CA's 429s (lowered to what it accepted, raised
     * a little each second without one); 0 until the first 429. */
    double learned_rate;
    unsigned long long window_ns;    /* start of the current second of answers */
    long window_ok;                  /* answers other than 429 in it */
    double ok_rate;                  /* such answers per second in the last whole one */
    unsigned long long lowered_ns;   /* when learned_rate was last lowered */
    bool rate_provisional;           /* learned_rate from part of a second, until it is over */
    _Atomic unsigned long throttled; /* 429 answers seen (for the summary and metrics) */
    _Atomic unsigned long retried;   /* attempts scheduled again (429s included) */
} http_endpoint;

struct http_request {
    /* Set by the caller. */
    http_endpoint *endpoint; /* its schedule is updated by the loop */
    char *url;
    char *body; /* POST body (malloc'd, owned) */
    size_t body_len;
    struct curl_slist *headers; /* owned */
    http_done_fn done;
    void *user;
    /* Set by the submitter: an attempt that may have reached the server (its answer lost, or a
     * 5xx) is not sent again by the loop, its owner finds out what the server did first (a
     * certificate enrollment: sent again blindly, it may be issued twice). */
    bool no_blind_resend;
    /* Set by the loop. */
    long status;      /* HTTP status of the last attempt; 0 when none arrived */
    CURLcode curl_rc; /* transport result of the last attempt */
    char curl_message[CURL_ERROR_SIZE];
    char *response; /* the last answer's body, NUL-terminated (malloc'd) */
    size_t response_len;
    int attempts;
    bool maybe_received; /* an attempt may have reached the server and its answer been lost */
    int throttled;       /* of the attempts, answered 429 (not counted against the retries) */
    /* Private to the loop. */
    CURL *easy;
    long retry_after_ms; /* from the last answer's Retry-After; -1 none */
    unsigned long long due_ns;
    struct http_request *next;
};

/* Starts the loop thread. inflight: most transfers at a time (>= 1). NULL with err on failure. */
http_loop *http_loop_start(int inflight, enroll_error *err);
/* Queues a request (any thread). Its done callback runs later on the loop thread. */
void http_loop_submit(http_loop *loop, http_request *req);
/* Queues a request whose first attempt starts no sooner than delay_ms from now (any thread). */
void http_loop_submit_after(http_loop *loop, http_request *req, long delay_ms);
/* Waits until every submitted request is done, then stops the thread and frees the loop. */
void http_loop_stop(http_loop *loop);

/* A new request for endpoint: POST url with body (copied; NULL: a GET) and the given headers (each
 * "Name: value"; NULL-terminated list), plus Content-Type: application/json and Authorization. */
http_request *http_request_new(http_endpoint *endpoint, const char *url, const char *body,
                               const char *const *headers);
void http_request_free(http_request *req);

/* Describes why a finished request failed ("HTTP 503 after 5 attempts: <body excerpt>" or the
 * transport error) into err with code; the status decides the code for 401/403/4xx. */
void http_request_error(const http_request *req, const char *ca_name, enroll_error *err);

/* True when a failed request may nonetheless have been acted on by the server: an attempt's
 * answer was lost after the request could have been sent, and the last attempt did not end with
 * the server's own refusal (a 4xx). */
bool http_request_uncertain(const http_request *req);

/* True when the answer was a 2xx. */
bool http_request_ok(const http_request *req);

#endif
