/* The defences of `serve` that need a clock: a deadline for reading each request (a client that
 * trickles its headers or body, slowloris, gets 408 and is cut off; libmicrohttpd's own timeout
 * only counts idle time), and failed-login throttling per client address (after N wrong
 * passwords, 429 for a lockout that doubles up to a minute, before any password hash is
 * computed; a success clears only the failures of the name that succeeded). */
#include "serve/guard.h"

#include "formats/error_codes.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/rand.h>

#include "batch/log.h"

#define THROTTLE_SLOTS 1024
#define LOCKOUT_MAX_S  60
#define NAMES_PER_SLOT 8

struct guard_conn {
    int fd;
    double deadline; /* monotonic seconds; 0: none (the request is being answered) */
    bool cut;
    bool answered; /* a request was answered on it: it may be an idle keep-alive connection */
    struct guard_conn *prev, *next;
};

/* The failures of one address, counted per user name tried: a success of a name clears that
 * name's failures only. Names beyond NAMES_PER_SLOT (and failures without a name) count in
 * `other`, which only time clears. The lockout looks at the sum. */
typedef struct throttle_slot {
    unsigned char addr[16];
    bool used;
    unsigned failures; /* the sum of names[].failures and other */
    unsigned other;
    struct {
        uint64_t name; /* keyed hash of the user name; 0: free */
        unsigned failures;
    } names[NAMES_PER_SLOT];
    double locked_until, last_failure;
} throttle_slot;

struct serve_guard {
    unsigned request_timeout, max_failures;
    bool plain_http;
    uint64_t name_key; /* random: the name hashes of one server are not predictable */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t watchdog;
    bool watching, stopping;
    guard_conn *conns;
    throttle_slot slots[THROTTLE_SLOTS];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Cuts off the connections past their deadline: on plain HTTP a 408 answer first when nothing
 * has been answered on the connection yet (a keep-alive connection idle since its last answer is
 * closed quietly, as HTTP clients expect), then shutdown, which ends libmicrohttpd's read. */
static void *watchdog_main(void *arg)
{
    char body[128];
    int body_len =
        snprintf(body, sizeof body, "{\"ErrorCode\":\"%s\",\"Message\":\"%s\"}",
                 hse_code_name(HSE_REQUEST_TIMEOUT), "the request did not arrive in time");
    char timeout_answer[256];
    int answer_len = snprintf(timeout_answer, sizeof timeout_answer,
                              "HTTP/1.1 %u Request Timeout\r\nConnection: close\r\nContent-Type: "
                              "application/json\r\nContent-Length: %d\r\n\r\n%s",
                              hse_code_http_status(HSE_REQUEST_TIMEOUT), body_len, body);
    serve_guard *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->stopping) {
        double t = now_s();
        for (guard_conn *c = g->conns; c != NULL; c = c->next) {
            if (c->cut || c->deadline == 0 || t < c->deadline)
                continue;
            if (g->plain_http && !c->answered) /* an idle keep-alive one is closed quietly */
                (void)!send(c->fd, timeout_answer, (size_t)answer_len, MSG_NOSIGNAL | MSG_DONTWAIT);
            shutdown(c->fd, SHUT_RDWR);
            c->cut = true;
            log_info("serve: a request did not arrive within %u s: connection closed (408)",
                     g->request_timeout);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->wake, &g->lock, &ts);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

serve_guard *serve_guard_new(unsigned request_timeout, unsigned max_failures, bool plain_http)
{
    serve_guard *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    g->request_timeout = request_timeout;
    g->max_failures = max_failures;
    g->plain_http = plain_http;
    if (RAND_bytes((unsigned char *)&g->name_key, sizeof g->name_key) != 1)
        g->name_key = (uint64_t)(now_s() * 1e9);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->wake, NULL);
    if (request_timeout > 0) {
        if (pthread_create(&g->watchdog, NULL, watchdog_main, g) != 0) {
            serve_guard_free(g);
            return NULL;
        }
        g->watching = true;
    }
    return g;
}

void serve_guard_free(serve_guard *g)
{
    if (g == NULL)
        return;
    if (g->watching) {
        pthread_mutex_lock(&g->lock);
        g->stopping = true;
        pthread_cond_signal(&g->wake);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->watchdog, NULL);
    }
    while (g->conns != NULL) {
        guard_conn *c = g->conns;
        g->conns = c->next;
        free(c);
    }
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

guard_conn *serve_guard_opened(serve_guard *g, int fd)
{
    if (g == NULL || fd < 0)
        return NULL;
    guard_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->fd = fd;
    pthread_mutex_lock(&g->lock);
    c->deadline = g->request_timeout ? now_s() + g->request_timeout : 0;
    c->next = g->conns;
    if (g->conns != NULL)
        g->conns->prev = c;
    g->conns = c;
    pthread_mutex_unlock(&g->lock);
    return c;
}

void serve_guard_closed(serve_guard *g, guard_conn *c)
{
    if (g == NULL || c == NULL)
        return;
    pthread_mutex_lock(&g->lock);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        g->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&g->lock);
    free(c);
}

void serve_guard_request_read(serve_guard *g, guard_conn *c)
{
    if (g == NULL || c == NULL)
        return;
    pthread_mutex_lock(&g->lock);
    c->deadline = 0;
    pthread_mutex_unlock(&g->lock);
}

void serve_guard_answered(serve_guard *g, guard_conn *c)
{
    if (g == NULL || c == NULL)
        return;
    pthread_mutex_lock(&g->lock);
    c->deadline = g->request_timeout ? now_s() + g->request_timeout : 0;
    c->answered = true;
    pthread_mutex_unlock(&g->lock);
}

/* The address as 16 bytes (IPv4 mapped), or false for another family. */
static bool addr_key(const struct sockaddr *sa, unsigned char out[16])
{
    memset(out, 0, 16);
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

static throttle_slot *slot_for(serve_guard *g, const unsigned char key[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return &g->slots[h % THROTTLE_SLOTS];
}

long serve_guard_login_wait(serve_guard *g, const struct sockaddr *client)
{
    unsigned char key[16];
    if (g == NULL || g->max_failures == 0 || !addr_key(client, key))
        return 0;
    pthread_mutex_lock(&g->lock);
    throttle_slot *s = slot_for(g, key);
    double t = now_s();
    long wait = s->used && memcmp(s->addr, key, 16) == 0 && s->locked_until > t
                    ? (long)(s->locked_until - t) + 1
                    : 0;
    pthread_mutex_unlock(&g->lock);
    return wait;
}

/* The keyed hash of a user name (never 0), or 0 for no name. */
static uint64_t name_hash(const serve_guard *g, const char *name)
{
    if (name == NULL)
        return 0;
    uint64_t h = 14695981039346656037u ^ g->name_key;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        h = (h ^ *p) * 1099511628211u;
        h ^= h >> 29;
    }
    h = (h ^ g->name_key) * 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    return h == 0 ? 1 : h;
}

void serve_guard_login_result(serve_guard *g, const struct sockaddr *client, const char *name,
                              bool ok)
{
    unsigned char key[16];
    if (g == NULL || g->max_failures == 0 || !addr_key(client, key))
        return;
    uint64_t who = name_hash(g, name);
    pthread_mutex_lock(&g->lock);
    throttle_slot *s = slot_for(g, key);
    double t = now_s();
    bool mine = s->used && memcmp(s->addr, key, 16) == 0;
    if (ok) {
        /* Only the failures of this name are forgiven: a user with an account cannot clear the
         * count of guesses at someone else's password. */
        for (size_t i = 0; mine && who != 0 && i < NAMES_PER_SLOT; i++)
            if (s->names[i].name == who) {
                s->failures -= s->names[i].failures;
                s->names[i].name = 0;
                s->names[i].failures = 0;
            }
        if (mine && s->failures == 0)
            s->used = false;
    } else {
        /* Another address in the slot gives way unless it is locked out now. */
        if (!mine && (!s->used || s->locked_until <= t)) {
            memset(s, 0, sizeof *s);
            memcpy(s->addr, key, 16);
            s->used = mine = true;
        }
        if (mine) {
            if (t - s->last_failure > 15 * 60) { /* an old streak is forgotten */
                memset(s->names, 0, sizeof s->names);
                s->failures = s->other = 0;
            }
            size_t at = NAMES_PER_SLOT;
            for (size_t i = 0; who != 0 && i < NAMES_PER_SLOT && at == NAMES_PER_SLOT; i++)
                if (s->names[i].name == who)
                    at = i;
            for (size_t i = 0; who != 0 && i < NAMES_PER_SLOT && at == NAMES_PER_SLOT; i++)
                if (s->names[i].name == 0) {
                    at = i;
                    s->names[i].name = who;
                }
            if (at < NAMES_PER_SLOT)
                s->names[at].failures++;
            else
                s->other++;
            s->failures++;
            s->last_failure = t;
            if (s->failures >= g->max_failures) {
                unsigned over = s->failures - g->max_failures;
                double lock = over >= 6 ? LOCKOUT_MAX_S : (double)(1u << over);
                s->locked_until = t + (lock > LOCKOUT_MAX_S ? LOCKOUT_MAX_S : lock);
            }
        }
    }
    pthread_mutex_unlock(&g->lock);
}
