/* The libcurl multi event loop of the network connectors: admission up to `inflight` transfers,
 * completion callbacks, and the retry schedule (exponential backoff with jitter, Retry-After). */
#include "ca/http_loop.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_RETRY_DELAY_MS 30000L
#define MAX_RETRY_AFTER_MS 300000L
#define MAX_RESPONSE_BYTES (4L << 20)

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
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
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

http_request *http_request_new(const http_endpoint *endpoint, const char *url, const char *body,
                               const char *const *headers)
{
    http_request *req = calloc(1, sizeof *req);
    if (req == NULL)
        return NULL;
    req->endpoint = endpoint;
    req->url = strdup(url);
    req->body_len = strlen(body);
    req->body = strdup(body);
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
    if (req->url == NULL || req->body == NULL || h == NULL || configure_easy(req) != 0) {
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

/* One attempt ended: schedule the next one, or hand the request to its owner. */
static void attempt_ended(http_loop *loop, http_request *req, CURLcode rc)
{
    curl_multi_remove_handle(loop->multi, req->easy);
    req->curl_rc = rc;
    req->status = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status);
    req->attempts++;
    bool retry = rc == CURLE_OK ? status_retryable(req->status) : transport_retryable(rc);
    pthread_mutex_lock(&loop->lock);
    loop->active--;
    if (retry && req->attempts <= req->endpoint->retries) {
        long delay;
        if (req->retry_after_ms >= 0) {
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

/* Starts what may start now (due retries first); returns false when the loop should end. */
static bool admit(http_loop *loop, long *wait_ms)
{
    pthread_mutex_lock(&loop->lock);
    unsigned long long now = now_ns();
    while (loop->active < loop->inflight) {
        http_request *req = NULL;
        if (loop->retry_head != NULL && loop->retry_head->due_ns <= now) {
            req = loop->retry_head;
            loop->retry_head = req->next;
        } else if (loop->new_head != NULL) {
            req = loop->new_head;
            loop->new_head = req->next;
            if (loop->new_head == NULL)
                loop->new_tail = NULL;
        } else {
            break;
        }
        req->next = NULL;
        loop->active++;
        curl_multi_add_handle(loop->multi, req->easy);
    }
    if (loop->retry_head != NULL && loop->active < loop->inflight) {
        unsigned long long due = loop->retry_head->due_ns;
        long ms = due > now ? (long)((due - now) / 1000000ull) + 1 : 0;
        if (ms < *wait_ms)
            *wait_ms = ms;
    }
    bool go_on = !(loop->stopping && loop->outstanding == 0);
    pthread_mutex_unlock(&loop->lock);
    return go_on;
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
        while ((msg = curl_multi_info_read(loop->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            http_request *req = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
            attempt_ended(loop, req, msg->data.result);
        }
        long curl_ms = -1;
        curl_multi_timeout(loop->multi, &curl_ms);
        if (curl_ms >= 0 && curl_ms < wait_ms)
            wait_ms = curl_ms;
        /* A completion may have freed a slot for a waiting request: look again at once. */
        pthread_mutex_lock(&loop->lock);
        bool more = loop->active < loop->inflight &&
                    (loop->new_head != NULL ||
                     (loop->retry_head != NULL && loop->retry_head->due_ns <= now_ns()));
        pthread_mutex_unlock(&loop->lock);
        if (more)
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
