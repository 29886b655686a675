/* Buffered NDJSON reading with a fixed-size buffer (max_line + one read block). */
#include "ndjson.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

enum { READ_BLOCK = 64 * 1024, DEFAULT_MAX_LINE = 1024 * 1024 };

void ndjson_open_stream(ndjson_reader *r, FILE *stream, size_t max_line)
{
    memset(r, 0, sizeof *r);
    r->file = stream;
    r->max_line = max_line ? max_line : DEFAULT_MAX_LINE;
    r->cap = r->max_line + READ_BLOCK + 1;
    r->buf = malloc(r->cap);
    if (r->buf == NULL)
        r->error = true;
}

int ndjson_open(ndjson_reader *r, const char *path, size_t max_line, enroll_error *err)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rbe");
    if (f == NULL) {
        memset(r, 0, sizeof *r);
        enroll_error_set(err, HSE_BATCH_UNREADABLE, NULL, "cannot open batch %s: %s", path,
                         strerror(errno));
        return -1;
    }
    ndjson_open_stream(r, f, max_line);
    r->owns_file = f != stdin;
    if (r->buf == NULL) {
        enroll_error_set(err, HSE_BATCH_UNREADABLE, NULL, "out of memory");
        ndjson_close(r);
        return -1;
    }
    return 0;
}

void ndjson_close(ndjson_reader *r)
{
    if (r->owns_file && r->file != NULL)
        fclose(r->file);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

/* Reads more input after moving what is left to the front; false at end of input or error. */
static bool fill(ndjson_reader *r)
{
    if (r->eof || r->error)
        return false;
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    size_t room = r->cap - 1 - r->end;
    if (room == 0)
        return false;
    size_t n = fread(r->buf + r->end, 1, room, r->file);
    if (n == 0) {
        if (ferror(r->file))
            r->error = true;
        else
            r->eof = true;
        return false;
    }
    if (r->line == 0 && r->end == 0 && n >= 3 && memcmp(r->buf, "\xEF\xBB\xBF", 3) == 0)
        r->start = 3; /* UTF-8 byte order mark */
    r->end += n;
    return true;
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

ndjson_status ndjson_next(ndjson_reader *r, const char **text, size_t *len, long *line)
{
    for (;;) {
        char *begin = r->buf + r->start;
        char *nl = memchr(begin, '\n', r->end - r->start);
        if (nl == NULL && r->end - r->start > r->max_line) {
            /* Too long: skip to the end of this line. */
            r->line++;
            *line = r->line;
            r->start = r->end = 0;
            for (;;) {
                if (!fill(r))
                    return r->error ? NDJSON_ERROR : NDJSON_TOO_LONG;
                nl = memchr(r->buf, '\n', r->end);
                if (nl != NULL) {
                    r->start = (size_t)(nl - r->buf) + 1;
                    return NDJSON_TOO_LONG;
                }
                r->end = 0;
            }
        }
        if (nl == NULL) {
            if (fill(r))
                continue;
            if (r->error)
                return NDJSON_ERROR;
            if (r->start == r->end)
                return NDJSON_EOF;
            begin = r->buf + r->start; /* fill moved the line to the front */
            nl = r->buf + r->end;      /* last line without a newline */
            r->buf[r->end] = '\n';
            r->end++;
        }
        size_t n = (size_t)(nl - begin);
        r->start += n + 1;
        r->line++;
        if (n > r->max_line) {
            *line = r->line;
            return NDJSON_TOO_LONG;
        }
        if (n > 0 && begin[n - 1] == '\r')
            n--;
        if (is_blank(begin, n))
            continue;
        *text = begin;
        *len = n;
        *line = r->line;
        return NDJSON_LINE;
    }
}

static const char *skip_space(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

static size_t line_length(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    return n;
}

int ndjson_check_shape(ndjson_reader *r, const char *name, enroll_error *err)
{
    if (r->buf == NULL)
        return 0;
    if (r->end == r->start)
        fill(r);
    const char *begin = r->buf + r->start, *end = r->buf + r->end;
    const char *p = skip_space(begin, end);
    if (p == end)
        return 0; /* empty: no lines, no mistake */
    const char *shown = strcmp(name, "-") == 0 ? "BATCH" : name;
    if (*p == '[') {
        enroll_error_set(err, HSE_BATCH_NOT_NDJSON, NULL,
                         "%s is a JSON array, not NDJSON (one JSON object per line); convert it "
                         "with: jq -c '.[]' %s > batch.ndjson",
                         name, shown);
        return -1;
    }
    if (*p == '{') {
        size_t n = line_length(p, end);
        json_error_t jerr;
        json_t *doc = json_loadb(p, n, 0, &jerr);
        if (doc != NULL) {
            json_decref(doc);
            return 0; /* the first line is a whole object */
        }
        /* One object over several lines: pretty-printed JSON (or a first line cut short). */
        doc = json_loadb(p, (size_t)(end - p), JSON_DISABLE_EOF_CHECK, &jerr);
        bool several =
            doc != NULL && json_is_object(doc) && memchr(p, '\n', (size_t)jerr.position) != NULL;
        json_decref(doc);
        if (several || (n == 1 && !r->eof)) {
            enroll_error_set(err, HSE_BATCH_NOT_NDJSON, NULL,
                             "%s is pretty-printed JSON (an object over several lines), not "
                             "NDJSON (one object per line); convert it with: jq -c . %s > "
                             "batch.ndjson",
                             name, shown);
            return -1;
        }
        return 0;
    }
    /* Text first: a mistake when none of the first five lines is an object. */
    const char *first = p;
    size_t first_len = line_length(first, end);
    for (int lines = 0; p < end && lines < 5; lines++) {
        if (*p == '{')
            return 0;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break;
        p = skip_space(nl + 1, end);
    }
    bool csv = memchr(first, ',', first_len) != NULL || memchr(first, ';', first_len) != NULL ||
               memchr(first, '\t', first_len) != NULL;
    enroll_error_set(err, HSE_BATCH_NOT_NDJSON, NULL,
                     "%s %s (first line: \"%.*s%s\"), not NDJSON: each line must be one JSON "
                     "object, e.g. {\"Id\":\"dev-1\",\"Subject\":\"CN=dev-1\"}",
                     name, csv ? "looks like CSV" : "holds no JSON object in its first lines",
                     (int)(first_len > 60 ? 60 : first_len), first, first_len > 60 ? "..." : "");
    return -1;
}
