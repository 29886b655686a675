/* A streaming NDJSON line reader: constant memory whatever the batch size, line numbers, blank
 * lines skipped, CRLF and a leading UTF-8 BOM tolerated, over-long lines reported (not fatal). */
#ifndef HSMENROLL_BATCH_NDJSON_H
#define HSMENROLL_BATCH_NDJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "formats/error.h"

typedef struct ndjson_reader {
    FILE *file;
    bool owns_file;
    char *buf;
    size_t cap, start, end;
    long line;       /* number of the last line returned (1-based) */
    size_t max_line; /* longest line accepted, in bytes */
    bool eof, error;
} ndjson_reader;

typedef enum ndjson_status {
    NDJSON_ERROR = -1, /* read error (errno) */
    NDJSON_EOF = 0,
    NDJSON_LINE = 1, /* text and len hold the line (not NUL-terminated), valid until next call */
    NDJSON_TOO_LONG = 2, /* the line was longer than max_line and was skipped */
} ndjson_status;

/* Opens path ("-" for standard input). max_line 0 means 1 MiB. 0, or -1 with err. */
int ndjson_open(ndjson_reader *r, const char *path, size_t max_line, enroll_error *err);
/* Reads from an already open stream (not closed by ndjson_close). */
void ndjson_open_stream(ndjson_reader *r, FILE *stream, size_t max_line);
ndjson_status ndjson_next(ndjson_reader *r, const char **text, size_t *len, long *line);
void ndjson_close(ndjson_reader *r);

/* Whole-file mistakes, seen in the first lines (read ahead, nothing consumed): a JSON array, a
 * pretty-printed JSON object, CSV or other text where no line is a JSON object. 0 when the input
 * can be NDJSON (a bad line among good ones is the line's own error), -1 with err
 * BATCH_NOT_NDJSON (message and the command that converts it) otherwise; name is the batch as
 * the user gave it. */
int ndjson_check_shape(ndjson_reader *r, const char *name, enroll_error *err);

#endif
