/* The run's live metrics: what the stages record (stage time histograms, error codes, requests
 * in the HSM and at each CA) and their Prometheus text rendering for `run --metrics-listen`; the
 * progress line's bottleneck. */
#ifndef HSMENROLL_ENGINE_METRICS_H
#define HSMENROLL_ENGINE_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "engine/run_state.h"

void run_metrics_init(run *r);
void run_metrics_free(run *r);
/* One stage of one request took ns (adds to the stage's sum as well). */
void run_metrics_stage(run *r, run_stage stage, uint64_t ns);
/* A request failed with this code. */
void run_metrics_error(run *r, const char *code);
/* The Prometheus text exposition (0.0.4) of r now; a metrics_render_fn. */
void run_metrics_render(FILE *out, void *r);
/* What holds the run back now: "HSM" (every lane in a key stage), "CA" (requests waiting on
 * CAs fill the network window or a CA's MaxInFlight), or "CPU". */
const char *run_metrics_bottleneck(run *r);

#endif
