/* What the HTTP plumbing (serve.c) and the endpoints (api.c) both use: the HSM session pool, the
 * Keyfactor-style error answer, the server's non-secret random numbers and the configuration in
 * force (serve_config). */
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/internal.h"

double serve_random(server *srv)
{
    pthread_mutex_lock(&srv->rng_lock);
    unsigned long long x = srv->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    srv->rng = x;
    pthread_mutex_unlock(&srv->rng_lock);
    return (double)(x >> 11) / (double)(1ull << 53);
}

void api_error(api_answer *answer, hse_code code, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    json_decref(answer->body);
    answer->status = hse_code_http_status(code);
    answer->body = json_pack("{s:s, s:s}", "ErrorCode", hse_code_name(code), "Message", message);
}

int session_pool_get(server *srv, size_t t, hsm_session *out, enroll_error *err)
{
    session_pool *pool = &srv->pools[t];
    pthread_mutex_lock(&pool->lock);
    if (pool->free_count > 0) {
        *out = pool->free_list[--pool->free_count];
        pthread_mutex_unlock(&pool->lock);
        return 0;
    }
    pthread_mutex_unlock(&pool->lock);
    hsm_error herr;
    if (hsm_session_open(&srv->setup->hsm.tokens[t], out, &herr) != 0) {
        enroll_error_set(err, HSE_HSM_SESSION, NULL, "%s", herr.message);
        return -1;
    }
    return 0;
}

void session_pool_put(server *srv, size_t t, hsm_session *s)
{
    session_pool *pool = &srv->pools[t];
    pthread_mutex_lock(&pool->lock);
    if (pool->free_count == pool->free_cap) {
        size_t cap = pool->free_cap ? pool->free_cap * 2 : 8;
        hsm_session *grown = realloc(pool->free_list, cap * sizeof *grown);
        if (grown == NULL) {
            pthread_mutex_unlock(&pool->lock);
            hsm_session_close(s);
            return;
        }
        pool->free_list = grown;
        pool->free_cap = cap;
    }
    pool->free_list[pool->free_count++] = *s;
    pthread_mutex_unlock(&pool->lock);
}

serve_config *serve_config_new(config *cfg)
{
    serve_config *sc = calloc(1, sizeof *sc);
    if (sc == NULL)
        return NULL;
    sc->cfg = cfg;
    request_defaults defaults = {.pattern_id = -1,
                                 .password_length = cfg->settings.password_length};
    line_checker_init(&sc->checker, cfg, &defaults, NULL, NULL);
    pthread_mutex_init(&sc->order_lock, NULL);
    return sc;
}

void serve_config_free(serve_config *sc)
{
    if (sc == NULL)
        return;
    line_checker_free(&sc->checker);
    pthread_mutex_destroy(&sc->order_lock);
    config_free(sc->cfg);
    free(sc);
}
