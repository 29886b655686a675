/* Hill climbing on the run's own rate (lane_tuner.h): from the first finished job on, each
 * window of LANE_TUNER_WINDOW_MS compares jobs finished per second with the window before the
 * last raise; lanes double while the CPU has room and each raise pays, and stop for good
 * otherwise (the lanes already started stay). */
#include "engine/lane_tuner.h"

#include <time.h>
#include <unistd.h>

#include "batch/log.h"

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void lane_tuner_init(lane_tuner *t, bool active, int lanes, int cap, uint64_t now_ns, long finished)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    *t = (lane_tuner){
        .active = active && cap > lanes,
        .cap = cap,
        .cpus = cpus > 0 ? (int)cpus : 1,
        .warmup = 1,
        .window_ns = now_ns,
        .window_cpu_s = cpu_seconds(),
        .window_finished = finished,
    };
}

int lane_tuner_tick(lane_tuner *t, int lanes, uint64_t now_ns, long finished, bool busy)
{
    if (!t->active || t->settled)
        return lanes;
    if (t->warmup > 0) {
        /* The first window starts with the first finished job: key generation, the CA's
         * first answer and the caches are warm by then. */
        if (finished > t->window_finished) {
            t->warmup = 0;
            t->window_ns = now_ns;
            t->window_cpu_s = cpu_seconds();
            t->window_finished = finished;
        }
        return lanes;
    }
    if (now_ns - t->window_ns < LANE_TUNER_WINDOW_MS * 1000000ull)
        return lanes;
    double seconds = (double)(now_ns - t->window_ns) / 1e9;
    double cpu = cpu_seconds();
    double rate = (double)(finished - t->window_finished) / seconds;
    double cpu_share = (cpu - t->window_cpu_s) / seconds / t->cpus;
    t->window_ns = now_ns;
    t->window_cpu_s = cpu;
    t->window_finished = finished;
    if (busy) {
        t->settled = true;
        log_verbose("lanes: the module answered busy: %d HSM operations in flight at most", lanes);
        return lanes;
    }
    if (t->judging) {
        t->judging = false;
        if (rate < t->rate_before * LANE_TUNER_GAIN) {
            t->settled = true;
            log_verbose("lanes: %d did not go faster (%.0f/s against %.0f/s): no more raises",
                        lanes, rate, t->rate_before);
            return lanes;
        }
    }
    if (cpu_share >= LANE_TUNER_CPU_FULL)
        return lanes; /* the CPU is the limit now: more lanes would only wait for it */
    int more = lanes > 8 ? lanes : 8;
    int next = lanes + more < t->cap ? lanes + more : t->cap;
    if (next <= lanes) {
        t->settled = true;
        return lanes;
    }
    t->rate_before = rate;
    t->judging = true;
    t->raises++;
    log_verbose("lanes: %.0f requests/s with the CPU %.0f%% busy: %d HSM operations in flight "
                "(were %d)",
                rate, cpu_share * 100, next, lanes);
    return next;
}
