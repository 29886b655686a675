/* Hexadecimal text of bytes: the one encoder (key ids, fingerprints, run ids, DN tags) and the
 * one decoder (key ids read back from the journal and the embedded CA's state). */
#ifndef HSMENROLL_FORMATS_HEX_H
#define HSMENROLL_FORMATS_HEX_H

#include <stdbool.h>
#include <stddef.h>

/* Writes the 2 * len hex digits of data (upper case when upper, else lower) and a NUL into out.
 * Returns 2 * len, or -1 with out set to "" (when out_size > 0) when out_size < 2 * len + 1. */
long hex_encode(const unsigned char *data, size_t len, char *out, size_t out_size, bool upper);

/* The same into a malloc'd string; NULL on allocation failure. */
char *hex_encode_alloc(const unsigned char *data, size_t len, bool upper);

/* Reads exactly 2 * len hex digits (either case, nothing else) into out[len]. 0, or -1 when
 * text is NULL, of another length or holds anything else (out is then undefined). */
int hex_decode(const char *text, unsigned char *out, size_t len);

#endif
