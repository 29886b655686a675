/* A tiny HTTP listener for Prometheus: GET /metrics answers the text exposition format 0.0.4
 * that a render callback writes; anything else is 404. Used by `run --metrics-listen` and
 * `serve --metrics-listen`. */
#ifndef HSMENROLL_ENGINE_METRICS_HTTP_H
#define HSMENROLL_ENGINE_METRICS_HTTP_H

#include <stdio.h>

#include "formats/error.h"

typedef struct metrics_http metrics_http;

/* Writes the current metrics to out (an open memory stream); called on the listener's thread. */
typedef void (*metrics_render_fn)(FILE *out, void *user);

/* Listens on listen ("ADDR:PORT", IPv4; port 0: any free one). NULL with err (code
 * METRICS_LISTEN) when the address is bad or taken. */
metrics_http *metrics_http_start(const char *listen, metrics_render_fn render, void *user,
                                 enroll_error *err);
/* The port it listens on. */
unsigned metrics_http_port(const metrics_http *m);
void metrics_http_stop(metrics_http *m);

#endif
