/* `hsmenroll merge`: the results of N shards of one batch put together, and checked: every request
 * line of the batch has exactly one result line among the shards' results.ndjson, whose Id is
 * the line's. Memory: 24 bytes per batch line, whatever the size of the results. */
#ifndef HSMENROLL_BATCH_MERGE_H
#define HSMENROLL_BATCH_MERGE_H

#include <jansson.h>
#include <stdio.h>

#include "formats/error.h"

/* Reads the batch and the result files, writes the merged results (in batch line order, one per
 * line that has one; the first when a line has several) to merged when not NULL, and returns the
 * report: {"Lines", "Results", "Issued", "Failed", "Pending", "Missing": [{"Line", "Id"}],
 * "Doubled": [{"Line", "Id", "Results"}], "Strays": [{"File", "Line", "Id", "Why"}],
 * "Exact": true|false}. Strays are result lines of no batch line (a Line beyond the batch, a
 * blank line, or an Id that is not the line's: another batch). At most 1000 entries are listed in
 * each array ("...Count" members hold the totals). NULL with err when a file cannot be read
 * (codes BATCH_UNREADABLE, RESULTS_UNREADABLE). */
json_t *merge_results(const char *batch_path, const char *const *results_paths, size_t count,
                      FILE *merged, enroll_error *err);

#endif
