/* The number of lanes found by the run when the operator set none (no --hsm-concurrency, no
 * Hsm.Concurrency): while the CPU has room and the last raise made the run faster, more lanes
 * (HSM operations in flight) hide more of the module's latency. */
#ifndef HSMENROLL_ENGINE_LANE_TUNER_H
#define HSMENROLL_ENGINE_LANE_TUNER_H

#include <stdbool.h>
#include <stdint.h>

/* Owned by the reader thread of pipeline_run (engine/pipeline.c), which alone ticks it. */
typedef struct lane_tuner {
    bool active;          /* the operator left the lanes to the run */
    bool settled;         /* no more raises this run */
    bool judging;         /* the last window followed a raise */
    int cap;              /* most lanes the tokens and the configuration allow */
    int cpus;             /* online CPUs */
    int warmup;           /* windows still to skip (the first keys, the CA's start) */
    uint64_t window_ns;   /* start of the current window */
    double window_cpu_s;  /* process CPU time at its start */
    long window_finished; /* jobs finished at its start */
    double rate_before;   /* jobs/s of the window before the last raise */
    int raises;           /* raises so far */
} lane_tuner;

/* The window the run looks at: long enough for a few hundred requests on a fast module. */
#define LANE_TUNER_WINDOW_MS 200
/* A raise is kept when the next window is this much faster; the CPU is full above this share. */
#define LANE_TUNER_GAIN     1.05
#define LANE_TUNER_CPU_FULL 0.85

void lane_tuner_init(lane_tuner *t, bool active, int lanes, int cap, uint64_t now_ns,
                     long finished);
/* Called after each admission: at the end of a window, the lanes to run with from now on
 * (lanes itself: no change). busy: the module has answered busy (engine/throttle.h): no raise. */
int lane_tuner_tick(lane_tuner *t, int lanes, uint64_t now_ns, long finished, bool busy);

#endif
