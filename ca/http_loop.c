/* The libcurl multi event loop of the network connectors: admission up to `inflight` transfers,
 * completion callbacks, and the retry schedule (exponential backoff with jitter, Retry-After). */
#include "ca/http_loop.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "batch/log.h"

#define MAX_RETRY_DELAY_MS 30000L
#define MAX_RETRY_AFTER_MS 300000L
#define MAX_RESPONSE_BYTES (4L << 20)
/* A 429 does not use up a retry: a request waits out the CA's quota up to this many times. */
#define MAX_THROTTLED 100

struct http_loop {
    pthread_mutex_t lock;
    pthread_cond_t idle;    /* outstanding reached 0 */
    http_request *new_head; /* submitted, not yet started (FIFO) */
    http_request *new_tail;
    http_request *retry_head; /* waiting for their next attempt, sorted by due_ns */
    size_t outstanding;       /* submitted and not yet done */
    int active, inflight;
    bool stopping;
    CURLM *multi;
    pthread_t thread;
    uint64_t rng;
};

static unsigned long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static double next_unit_random(http_loop *loop)
{
    uint64_t x = loop->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    loop->rng = x;
    return (double)(x >> 11) / (double)(1ull << 53);
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    http_request *req = userp;
    size_t len = size * n;
    if (req->response_len + len > (size_t)MAX_RESPONSE_BYTES)
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    char *grown = realloc(req->response, req->response_len + len + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + req->response_len, data, len);
    req->response = grown;
    req->response_len += len;
    req->response[req->response_len] = '\0';
    return len;
}

/* Retry-After: delta-seconds or an HTTP-date. */
static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    http_request *req = userp;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        char value[64];
        size_t vlen = len - (sizeof name - 1);
        if (vlen >= sizeof value)
            vlen = sizeof value - 1;
        memcpy(value, data + sizeof name - 1, vlen);
        value[vlen] = '\0';
        char *v = value;
        while (*v == ' ' || *v == '\t')
            v++;
        for (char *e = v + strlen(v); e > v && isspace((unsigned char)e[-1]); e--)
            e[-1] = '\0';
        char *end;
        long secs = strtol(v, &end, 10);
        if (end != v && *end == '\0' && secs >= 0) {
            req->retry_after_ms = secs * 1000;
        } else {
            time_t when = curl_getdate(v, NULL);
            if (when != -1) {
                long delta = (long)(when - time(NULL));
                req->retry_after_ms = delta > 0 ? delta * 1000 : 0;
            }
        }
    }
    return len;
}

static int configure_easy(http_request *req)
{
    const http_endpoint *ep = req->endpoint;
    CURL *e = curl_easy_init();
    if (e == NULL)
        return -1;
    req->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    if (req->body != NULL) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(e, CURLOPT_PRIVATE, req);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->curl_message);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ep->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     ep->timeout_ms < 10000 ? ep->timeout_ms : 10000L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (ep->trust_bundle != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, ep->trust_bundle);
    if (ep->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (ep->client_cert != NULL)
        curl_easy_setopt(e, CURLOPT_SSLCERT, ep->client_cert);
    if (ep->client_key != NULL)
        curl_easy_setopt(e, CURLOPT_SSLKEY, ep->client_key);
    return 0;
}

http_request *http_request_new(http_endpoint *endpoint, const char *url, const char *body,
                               const char *const *headers)
{
    http_request *req = calloc(1, sizeof *req);
    if (req == NULL)
        return NULL;
    req->endpoint = endpoint;
    req->url = strdup(url);
    req->body_len = body ? strlen(body) : 0;
    req->body = body ? strdup(body) : NULL;
    req->retry_after_ms = -1;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = h ? curl_slist_append(h, "Accept: application/json") : NULL;
    h = h ? curl_slist_append(h, "Expect:") : NULL; /* no 100-continue round trip */
    for (size_t i = 0; h != NULL && headers != NULL && headers[i] != NULL; i++)
        h = curl_slist_append(h, headers[i]);
    if (h != NULL && endpoint->authorization != NULL) {
        size_t n = strlen(endpoint->authorization) + 32;
        char *line = malloc(n);
        if (line != NULL) {
            snprintf(line, n, "Authorization: %s", endpoint->authorization);
            h = curl_slist_append(h, line);
            OPENSSL_cleanse(line, n);
            free(line);
        }
    }
    req->headers = h;
    if (req->url == NULL || (body != NULL && req->body == NULL) || h == NULL ||
        configure_easy(req) != 0) {
        http_request_free(req);
        return NULL;
    }
    return req;
}

void http_request_free(http_request *req)
{
    if (req == NULL)
        return;
    if (req->easy != NULL)
        curl_easy_cleanup(req->easy);
    if (req->headers != NULL) {
        /* The Authorization line is a credential: wipe it. */
        for (struct curl_slist *h = req->headers; h != NULL; h = h->next)
            OPENSSL_cleanse(h->data, strlen(h->data));
        curl_slist_free_all(req->headers);
    }
    free(req->url);
    free(req->body);
    free(req->response);
    free(req);
}

bool http_request_ok(const http_request *req)
{
    return req->curl_rc == CURLE_OK && req->status >= 200 && req->status < 300;
}

static bool transport_retryable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_COULDNT_RESOLVE_HOST:
        return true;
    default:
        return false;
    }
}

/* The transport failed before the request could have reached the server. */
static bool never_sent(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return true;
    default:
        return false;
    }
}

bool http_request_uncertain(const http_request *req)
{
    return req->maybe_received && (req->curl_rc != CURLE_OK || req->status >= 500);
}

static bool status_retryable(long status)
{
    return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
           status == 504;
}

static void insert_retry_locked(http_loop *loop, http_request *req)
{
    http_request **at = &loop->retry_head;
    while (*at != NULL && (*at)->due_ns <= req->due_ns)
        at = &(*at)->next;
    req->next = *at;
    *at = req;
}

/* The URL for a debug line, with any user:password@ left out. */
static const char *url_for_log(const char *url, char *buf, size_t size)
{
    const char *host = strstr(url, "://");
    const char *at = host != NULL ? strchr(host + 3, '@') : NULL;
    const char *slash = host != NULL ? strchr(host + 3, '/') : NULL;
    if (at == NULL || (slash != NULL && at > slash))
        return url;
    snprintf(buf, size, "%.*s%s", (int)(host + 3 - url), url, at + 1);
    return buf;
}

/* The most request starts per second for ep: its RateLimit, else what its 429s taught. */
static double endpoint_rate(const http_endpoint *ep)
{
    return ep->rate_limit > 0 ? ep->rate_limit : ep->learned_rate;
}

/* A CA without RateLimit, learnt from its answers (under the lock): at a 429 (at most once a
 * second) the rate goes to 95% of what the CA accepted in the last whole second (at the first
 * 429, what it accepted so far, until that second is over); each
 * second without a 429 it goes up by 10% (at least one request per second), to find the quota
 * again when it was set low, or when it grew. */
static void learn_rate_locked(http_endpoint *ep, bool quota, unsigned long long now)
{
    if (ep->rate_limit > 0)
        return;
    if (ep->window_ns == 0)
        ep->window_ns = now;
    if (!quota)
        ep->window_ok++;
    double elapsed = (double)(now - ep->window_ns) / 1e9;
    if (elapsed >= 1.0) {
        ep->ok_rate = (double)ep->window_ok / elapsed;
        ep->window_ok = 0;
        ep->window_ns = now;
        if (ep->rate_provisional) {
            /* The second of the first 429 is over: what the CA took in it, unless the first
             * guess was higher (the pauses of that second may have held requests back; a rate
             * too high meets a 429 soon, measured at the CA's limit). */
            ep->rate_provisional = false;
            if (ep->ok_rate > ep->learned_rate)
                ep->learned_rate = ep->ok_rate;
            log_verbose("http: the CA answers 429: %.1f requests/s from now on", ep->learned_rate);
        } else if (ep->learned_rate > 0 && now - ep->lowered_ns >= 1000000000ull) {
            double step = ep->learned_rate * 0.1;
            ep->learned_rate += step > 1 ? step : 1;
        }
    }
    if (!quota || (ep->lowered_ns != 0 && now - ep->lowered_ns < 1000000000ull))
        return;
    ep->lowered_ns = now;
    if (ep->learned_rate == 0) {
        /* The first 429: what the CA took so far this second, for now, and what it took in
         * the whole second once that is over. */
        double so_far = (double)ep->window_ok / (elapsed > 0.1 ? elapsed : 0.1);
        ep->learned_rate = so_far > 1 ? so_far : 1;
        ep->rate_provisional = true;
        return;
    }
    double next = ep->ok_rate * 0.95;
    if (next <= 0 || ep->learned_rate * 0.95 < next)
        next = ep->learned_rate * 0.95; /* still refused at the learned rate: lower it */
    ep->learned_rate = next > 0.5 ? next : 0.5;
    log_verbose("http: the CA answers 429: %.1f requests/s from now on", ep->learned_rate);
}

/* One attempt ended: schedule the next one, or hand the request to its owner. */
static void attempt_ended(http_loop *loop, http_request *req, CURLcode rc)
{
    curl_multi_remove_handle(loop->multi, req->easy);
    req->curl_rc = rc;
    req->status = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status);
    req->attempts++;
    /* No byte of the request issued (a timeout in the TLS handshake, say): it cannot have
     * reached the server, whatever the transport error. */
    long issued = 0;
    curl_easy_getinfo(req->easy, CURLINFO_REQUEST_SIZE, &issued);
    if (rc == CURLE_OK ? req->status >= 500 && req->status != 503 : !never_sent(rc) && issued > 0)
        req->maybe_received = true;
    bool retry = rc == CURLE_OK ? status_retryable(req->status) : transport_retryable(rc);
    if (req->no_blind_resend && req->maybe_received)
        retry = false;
    bool quota = rc == CURLE_OK && req->status == 429;
    char shown[512];
    if (log_get_level() >= LOG_DEBUG && rc == CURLE_OK)
        log_debug("http: POST %s: HTTP %ld (attempt %d)",
                  url_for_log(req->url, shown, sizeof shown), req->status, req->attempts);
    else if (log_get_level() >= LOG_DEBUG)
        log_debug("http: POST %s: %s (attempt %d)", url_for_log(req->url, shown, sizeof shown),
                  curl_easy_strerror(rc), req->attempts);
    http_endpoint *ep = req->endpoint;
    pthread_mutex_lock(&loop->lock);
    loop->active--;
    ep->active--;
    if (quota) {
        req->throttled++;
        atomic_fetch_add(&ep->throttled, 1);
    }
    if (rc == CURLE_OK)
        learn_rate_locked(ep, quota, now_ns());
    if (retry &&
        (quota ? req->throttled <= MAX_THROTTLED : req->attempts - req->throttled <= ep->retries)) {
        long delay;
        if (quota) {
            /* The CA's quota: the whole CA waits (Retry-After, else one second), then starts
             * again at its rate. */
            delay = req->retry_after_ms >= 0 ? req->retry_after_ms : 1000;
            long interval_ms = endpoint_rate(ep) > 0 ? (long)(1000.0 / endpoint_rate(ep)) + 1 : 100;
            if (delay < interval_ms) /* "Retry-After: 0" is no reason to hammer */
                delay = interval_ms;
            if (delay > MAX_RETRY_AFTER_MS)
                delay = MAX_RETRY_AFTER_MS;
            unsigned long long until = now_ns() + (unsigned long long)delay * 1000000ull;
            if (until > ep->paused_ns)
                ep->paused_ns = until;
        } else if (req->retry_after_ms >= 0) {
            delay =
                req->retry_after_ms < MAX_RETRY_AFTER_MS ? req->retry_after_ms : MAX_RETRY_AFTER_MS;
        } else {
            long base = req->endpoint->retry_delay_ms;
            for (int i = 1; i < req->attempts && base < MAX_RETRY_DELAY_MS; i++)
                base *= 2;
            if (base > MAX_RETRY_DELAY_MS)
                base = MAX_RETRY_DELAY_MS;
            delay = (long)((double)base * (0.5 + 0.5 * next_unit_random(loop)));
        }
        atomic_fetch_add(&ep->retried, 1);
        free(req->response);
        req->response = NULL;
        req->response_len = 0;
        req->retry_after_ms = -1;
        req->due_ns = now_ns() + (unsigned long long)delay * 1000000ull;
        insert_retry_locked(loop, req);
        pthread_mutex_unlock(&loop->lock);
        return;
    }
    pthread_mutex_unlock(&loop->lock);
    req->done(req, req->user); /* the owner takes req */
    pthread_mutex_lock(&loop->lock);
    if (--loop->outstanding == 0)
        pthread_cond_broadcast(&loop->idle);
    pthread_mutex_unlock(&loop->lock);
}

/* Whether a request to ep may start at now; if not, *when gets the earliest time it may (0:
 * when a transfer of its CA ends). GCRA with a tolerance of one interval: the CA never sees more
 * than its rate over any second plus one request, and a late wake-up is made up once. */
static bool endpoint_ready(const http_endpoint *ep, unsigned long long now,
                           unsigned long long *when)
{
    *when = 0;
    if (ep->max_in_flight > 0 && ep->active >= ep->max_in_flight)
        return false;
    if (ep->paused_ns > now) {
        *when = ep->paused_ns;
        return false;
    }
    if (endpoint_rate(ep) > 0) {
        unsigned long long interval = (unsigned long long)(1e9 / endpoint_rate(ep));
        if (ep->next_ns > now + interval) {
            *when = ep->next_ns - interval;
            return false;
        }
    }
    return true;
}

static void endpoint_started(http_endpoint *ep, unsigned long long now)
{
    ep->active++;
    if (endpoint_rate(ep) > 0) {
        unsigned long long interval = (unsigned long long)(1e9 / endpoint_rate(ep));
        ep->next_ns = (ep->next_ns > now ? ep->next_ns : now) + interval;
    }
}

/* The first request of list *head that may start now (unlinked), or NULL; *wake gets the
 * earliest time a request held back by its CA's limits may start. */
static http_request *take_ready(http_request **head, http_request **tail, unsigned long long now,
                                bool due_only, unsigned long long *wake)
{
    http_request *prev = NULL;
    for (http_request *req = *head; req != NULL; prev = req, req = req->next) {
        if (due_only && req->due_ns > now)
            break; /* sorted by due_ns */
        unsigned long long when;
        if (!endpoint_ready(req->endpoint, now, &when)) {
            if (when != 0 && (*wake == 0 || when < *wake))
                *wake = when;
            continue;
        }
        if (prev != NULL)
            prev->next = req->next;
        else
            *head = req->next;
        if (tail != NULL && *tail == req)
            *tail = prev;
        req->next = NULL;
        return req;
    }
    return NULL;
}

/* Starts what may start now (due retries first), within the loop's and each CA's limits;
 * returns false when the loop should end. */
static bool admit(http_loop *loop, long *wait_ms)
{
    pthread_mutex_lock(&loop->lock);
    unsigned long long now = now_ns(), wake = 0;
    while (loop->active < loop->inflight) {
        http_request *req = take_ready(&loop->retry_head, NULL, now, true, &wake);
        if (req == NULL)
            req = take_ready(&loop->new_head, &loop->new_tail, now, false, &wake);
        if (req == NULL)
            break;
        loop->active++;
        endpoint_started(req->endpoint, now);
        if (log_get_level() >= LOG_DEBUG) {
            char shown[512];
            log_debug("http: POST %s (%zu bytes)", url_for_log(req->url, shown, sizeof shown),
                      req->body_len);
        }
        curl_multi_add_handle(loop->multi, req->easy);
    }
    /* The next retry not due yet (those due and still here wait on their CA: wake covers them). */
    http_request *next = loop->retry_head;
    while (next != NULL && next->due_ns <= now)
        next = next->next;
    if (next != NULL && loop->active < loop->inflight && (wake == 0 || next->due_ns < wake))
        wake = next->due_ns;
    if (wake != 0 && loop->active < loop->inflight) {
        long ms = wake > now ? (long)((wake - now + 999999ull) / 1000000ull) : 0;
        if (ms < *wait_ms)
            *wait_ms = ms;
    }
    bool go_on = !(loop->stopping && loop->outstanding == 0);
    pthread_mutex_unlock(&loop->lock);
    return go_on;
}

/* Whether a request waits that could start now. */
static bool admit_waiting(http_loop *loop)
{
    pthread_mutex_lock(&loop->lock);
    unsigned long long now = now_ns(), when;
    bool more = false;
    for (http_request *r = loop->new_head; r != NULL && !more && loop->active < loop->inflight;
         r = r->next)
        more = endpoint_ready(r->endpoint, now, &when);
    for (http_request *r = loop->retry_head;
         r != NULL && !more && loop->active < loop->inflight && r->due_ns <= now; r = r->next)
        more = endpoint_ready(r->endpoint, now, &when);
    pthread_mutex_unlock(&loop->lock);
    return more;
}

static void *loop_main(void *arg)
{
    http_loop *loop = arg;
    for (;;) {
        long wait_ms = 1000;
        if (!admit(loop, &wait_ms))
            break;
        int running = 0;
        curl_multi_perform(loop->multi, &running);
        CURLMsg *msg;
        int left;
        bool completed = false;
        while ((msg = curl_multi_info_read(loop->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            completed = true;
            http_request *req = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
            attempt_ended(loop, req, msg->data.result);
        }
        long curl_ms = -1;
        curl_multi_timeout(loop->multi, &curl_ms);
        if (curl_ms >= 0 && curl_ms < wait_ms)
            wait_ms = curl_ms;
        /* A completion may have freed a slot for a waiting request: look again at once. */
        if (completed && admit_waiting(loop))
            continue;
        curl_multi_poll(loop->multi, NULL, 0, (int)wait_ms, NULL);
    }
    return NULL;
}

http_loop *http_loop_start(int inflight, enroll_error *err)
{
    http_loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    loop->inflight = inflight > 0 ? inflight : 1;
    if (RAND_bytes((unsigned char *)&loop->rng, sizeof loop->rng) != 1 || loop->rng == 0)
        loop->rng = 0x9e3779b97f4a7c15ull ^ now_ns();
    loop->multi = curl_multi_init();
    if (loop->multi == NULL) {
        free(loop);
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "cannot start libcurl");
        return NULL;
    }
    curl_multi_setopt(loop->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(loop->multi, CURLMOPT_MAXCONNECTS, (long)loop->inflight);
    pthread_mutex_init(&loop->lock, NULL);
    pthread_cond_init(&loop->idle, NULL);
    if (pthread_create(&loop->thread, NULL, loop_main, loop) != 0) {
        curl_multi_cleanup(loop->multi);
        pthread_mutex_destroy(&loop->lock);
        pthread_cond_destroy(&loop->idle);
        free(loop);
        enroll_error_set(err, HSE_THREAD, NULL, "cannot start the network thread");
        return NULL;
    }
    return loop;
}

void http_loop_submit(http_loop *loop, http_request *req)
{
    req->next = NULL;
    pthread_mutex_lock(&loop->lock);
    if (loop->new_tail != NULL)
        loop->new_tail->next = req;
    else
        loop->new_head = req;
    loop->new_tail = req;
    loop->outstanding++;
    pthread_mutex_unlock(&loop->lock);
    curl_multi_wakeup(loop->multi);
}

void http_loop_submit_after(http_loop *loop, http_request *req, long delay_ms)
{
    pthread_mutex_lock(&loop->lock);
    req->due_ns = now_ns() + (unsigned long long)(delay_ms > 0 ? delay_ms : 0) * 1000000ull;
    insert_retry_locked(loop, req);
    loop->outstanding++;
    pthread_mutex_unlock(&loop->lock);
    curl_multi_wakeup(loop->multi);
}

void http_loop_stop(http_loop *loop)
{
    if (loop == NULL)
        return;
    pthread_mutex_lock(&loop->lock);
    while (loop->outstanding > 0)
        pthread_cond_wait(&loop->idle, &loop->lock);
    loop->stopping = true;
    pthread_mutex_unlock(&loop->lock);
    curl_multi_wakeup(loop->multi);
    pthread_join(loop->thread, NULL);
    curl_multi_cleanup(loop->multi);
    pthread_mutex_destroy(&loop->lock);
    pthread_cond_destroy(&loop->idle);
    free(loop);
}

/* A short printable excerpt of an error answer: its JSON "Message" (Keyfactor) or "errors"
 * (CFSSL) when there is one, else the first characters of the body. */
static void answer_excerpt(const http_request *req, char *out, size_t size)
{
    out[0] = '\0';
    if (req->response == NULL || req->response_len == 0)
        return;
    json_t *doc = json_loadb(req->response, req->response_len, 0, NULL);
    const char *text = NULL;
    if (json_is_object(doc)) {
        const char *key;
        json_t *value;
        json_object_foreach(doc, key, value)
        {
            if (strcasecmp(key, "Message") == 0 && json_is_string(value))
                text = json_string_value(value);
            if (strcasecmp(key, "errors") == 0 && json_is_array(value) &&
                json_is_object(json_array_get(value, 0)))
                text = json_string_value(json_object_get(json_array_get(value, 0), "message"));
        }
    }
    size_t n = 0;
    for (const char *s = text ? text : req->response; *s != '\0' && n + 1 < size && n < 200; s++)
        out[n++] = isprint((unsigned char)*s) ? *s : ' ';
    out[n] = '\0';
    json_decref(doc);
}

void http_request_error(const http_request *req, const char *ca_name, enroll_error *err)
{
    char excerpt[256];
    if (req->curl_rc != CURLE_OK) {
        hse_code code = HSE_CA_UNREACHABLE;
        switch (req->curl_rc) {
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CIPHER:
            code = HSE_CA_TLS;
            break;
        case CURLE_OPERATION_TIMEDOUT:
            code = HSE_CA_TIMEOUT;
            break;
        default:
            break;
        }
        enroll_error_set(err, code, NULL, "CA \"%s\": %s after %d attempt%s: %s", ca_name,
                         curl_easy_strerror(req->curl_rc), req->attempts,
                         req->attempts == 1 ? "" : "s",
                         req->curl_message[0] ? req->curl_message : "no detail");
        return;
    }
    answer_excerpt(req, excerpt, sizeof excerpt);
    hse_code code = req->status == 401                                    ? HSE_CA_AUTH_FAILED
                    : req->status == 403                                  ? HSE_CA_FORBIDDEN
                    : req->status >= 500 || status_retryable(req->status) ? HSE_CA_UNAVAILABLE
                                                                          : HSE_CA_REJECTED;
    enroll_error_set(err, code, NULL, "CA \"%s\": HTTP %ld after %d attempt%s%s%s", ca_name,
                     req->status, req->attempts, req->attempts == 1 ? "" : "s",
                     excerpt[0] ? ": " : "", excerpt);
}
