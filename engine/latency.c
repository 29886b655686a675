/* The log-linear latency histogram (see latency.h). */
#include "engine/latency.h"

#include <time.h>

/* Bucket of v: values below 16 ns have their own buckets; above, the power of two (its top bit)
 * picks a group of 16 and the next four bits the bucket within it. */
static int bucket_of(uint64_t v)
{
    if (v < LATENCY_SUB_BUCKETS)
        return (int)v;
    int top = 63 - __builtin_clzll(v); /* >= 4 */
    int sub = (int)((v >> (top - 4)) & (LATENCY_SUB_BUCKETS - 1));
    int i = (top - 3) * LATENCY_SUB_BUCKETS + sub;
    return i < LATENCY_BUCKETS ? i : LATENCY_BUCKETS - 1;
}

uint64_t latency_bucket_low(int i)
{
    if (i < LATENCY_SUB_BUCKETS)
        return (uint64_t)i;
    int top = i / LATENCY_SUB_BUCKETS + 3, sub = i % LATENCY_SUB_BUCKETS;
    return ((uint64_t)(LATENCY_SUB_BUCKETS + sub)) << (top - 4);
}

void latency_record(latency_histogram *h, uint64_t ns)
{
    atomic_fetch_add_explicit(&h->counts[bucket_of(ns)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
    uint64_t max = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
    while (ns > max && !atomic_compare_exchange_weak(&h->max_ns, &max, ns)) {
    }
}

uint64_t latency_quantile(const latency_histogram *h, double q)
{
    uint64_t total = atomic_load(&h->total), max = atomic_load(&h->max_ns);
    if (total == 0)
        return 0;
    if (q >= 1.0)
        return max;
    uint64_t rank = (uint64_t)(q * (double)total), seen = 0;
    for (int i = 0; i < LATENCY_BUCKETS; i++) {
        seen += atomic_load(&h->counts[i]);
        if (seen > rank) {
            uint64_t upper = i + 1 < LATENCY_BUCKETS ? latency_bucket_low(i + 1) - 1 : max;
            return upper < max ? upper : max;
        }
    }
    return max;
}

uint64_t run_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
