/* Timing of a run: the monotonic clock, and request latencies without keeping one sample per
 * request: a log-linear histogram (16 buckets per power of two of nanoseconds, so within 1/16
 * = 6.25% of the true value), lock-free, fixed size (about 8 KiB) whatever the batch. Percentiles
 * and the CDF come from the buckets. */
#ifndef HSMENROLL_ENGINE_LATENCY_H
#define HSMENROLL_ENGINE_LATENCY_H

#include <stdatomic.h>
#include <stdint.h>

#define LATENCY_SUB_BUCKETS 16
#define LATENCY_BUCKETS     (64 * LATENCY_SUB_BUCKETS)

typedef struct latency_histogram {
    _Atomic uint64_t counts[LATENCY_BUCKETS];
    _Atomic uint64_t total, sum_ns, max_ns;
} latency_histogram;

/* Records one latency. Thread-safe. */
void latency_record(latency_histogram *h, uint64_t ns);
/* The latency below which a fraction q (0..1) of the samples lie, in ns (an upper bound within
 * 6.25%); the recorded maximum for q = 1; 0 when there are no samples. */
uint64_t latency_quantile(const latency_histogram *h, double q);
/* The smallest value that falls in bucket i (for a CDF). */
uint64_t latency_bucket_low(int i);

/* The monotonic clock every stage time, latency and schedule of a run is read from, in ns. */
uint64_t run_clock_ns(void);

#endif
