/* Compact JSON text for the lines the engine writes per request (results, journal records):
 * the same bytes as jansson's json_dumps(v, JSON_COMPACT), written without its per-character
 * callbacks. */
#ifndef HSMENROLL_BATCH_JSON_OUT_H
#define HSMENROLL_BATCH_JSON_OUT_H

#include <jansson.h>

/* malloc'd, NUL-terminated, or NULL (out of memory, or v NULL). Real numbers are formatted by
 * jansson itself. */
char *json_out_compact(const json_t *v);

#endif
