/* Checking a whole batch without an HSM or a CA, on several threads: lines are read in chunks,
 * checked alone in parallel (parsing, policy), then finished and written in line order (duplicate
 * Ids, key reuse), so the results are those of a single thread, in the batch's order. */
#ifndef HSMENROLL_ENGINE_VALIDATE_H
#define HSMENROLL_ENGINE_VALIDATE_H

#include <stdio.h>

#include "batch/linecheck.h"
#include "batch/ndjson.h"

typedef struct validate_counts {
    long valid, invalid;
} validate_counts;

/* Checks every line of reader with threads workers and writes one result line each to out.
 * Returns 0, or -1 when the batch could not be read to its end. */
int validate_batch(line_checker *checker, ndjson_reader *reader, FILE *out, int threads,
                   validate_counts *counts);

#endif
