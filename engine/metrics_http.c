/* The /metrics listener: one libmicrohttpd daemon (internal polling thread) rendering the text
 * format into a memory stream per scrape. */
#include "engine/metrics_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct metrics_http {
    struct MHD_Daemon *daemon;
    metrics_render_fn render;
    void *user;
    unsigned port;
};

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    metrics_http *m = cls;
    bool found = strcmp(url, "/metrics") == 0 && strcmp(method, "GET") == 0;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL)
        return MHD_NO;
    if (found)
        m->render(out, m->user);
    else
        fputs("not found: GET /metrics\n", out);
    if (fclose(out) != 0) {
        free(text);
        return MHD_NO;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            found ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain");
    enum MHD_Result rc = MHD_queue_response(conn, found ? MHD_HTTP_OK : MHD_HTTP_NOT_FOUND, resp);
    MHD_destroy_response(resp);
    return rc;
}

metrics_http *metrics_http_start(const char *listen, metrics_render_fn render, void *user,
                                 enroll_error *err)
{
    char host[64];
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host || end == colon + 1 ||
        *end != '\0' || port < 0 || port > 65535) {
        enroll_error_set(err, HSE_METRICS_LISTEN, NULL,
                         "--metrics-listen: expected ADDR:PORT (an IPv4 address), got \"%.80s\"",
                         listen ? listen : "");
        return NULL;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        enroll_error_set(err, HSE_METRICS_LISTEN, NULL,
                         "--metrics-listen: \"%.60s\" is not an IPv4 address", host);
        return NULL;
    }
    sa.sin_port = htons((unsigned short)port);
    metrics_http *m = calloc(1, sizeof *m);
    if (m == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    m->render = render;
    m->user = user;
    m->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                                 answer, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                 MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT,
                                 10u, MHD_OPTION_END);
    if (m->daemon == NULL) {
        free(m);
        enroll_error_set(err, HSE_METRICS_LISTEN, NULL, "--metrics-listen: cannot listen on %.80s",
                         listen);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info ? info->port : (unsigned)port;
    return m;
}

unsigned metrics_http_port(const metrics_http *m)
{
    return m ? m->port : 0;
}

void metrics_http_stop(metrics_http *m)
{
    if (m == NULL)
        return;
    MHD_stop_daemon(m->daemon);
    free(m);
}
