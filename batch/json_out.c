/* json_out_compact (json_out.h): objects in their keys' insertion order (as jansson iterates
 * them), strings escaped as jansson escapes them without JSON_ENSURE_ASCII or
 * JSON_ESCAPE_SLASH: quote, backslash, \b \f \n \r \t, other control characters as \u00XX in
 * upper-case hexadecimal; everything else, UTF-8 included, as it is. */
#include "batch/json_out.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct out_buf {
    char *data;
    size_t len, cap;
    bool failed;
} out_buf;

static void put(out_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *bigger = realloc(b->data, cap);
        if (bigger == NULL) {
            b->failed = true;
            return;
        }
        b->data = bigger;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void put_string(out_buf *b, const char *s, size_t n)
{
    put(b, "\"", 1);
    size_t run = 0; /* characters copied as they are, in one piece */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(b, s + run, i - run);
        run = i + 1;
        char esc[8];
        switch (c) {
        case '"':
            put(b, "\\\"", 2);
            break;
        case '\\':
            put(b, "\\\\", 2);
            break;
        case '\b':
            put(b, "\\b", 2);
            break;
        case '\f':
            put(b, "\\f", 2);
            break;
        case '\n':
            put(b, "\\n", 2);
            break;
        case '\r':
            put(b, "\\r", 2);
            break;
        case '\t':
            put(b, "\\t", 2);
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04X", (unsigned)c);
            put(b, esc, 6);
        }
    }
    put(b, s + run, n - run);
    put(b, "\"", 1);
}

static void put_value(out_buf *b, const json_t *v)
{
    char num[40];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        put(b, "{", 1);
        bool first = true;
        for (void *it = json_object_iter((json_t *)v); it != NULL;
             it = json_object_iter_next((json_t *)v, it)) {
            if (!first)
                put(b, ",", 1);
            first = false;
            put_string(b, json_object_iter_key(it), json_object_iter_key_len(it));
            put(b, ":", 1);
            put_value(b, json_object_iter_value(it));
        }
        put(b, "}", 1);
        break;
    }
    case JSON_ARRAY:
        put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i > 0)
                put(b, ",", 1);
            put_value(b, json_array_get(v, i));
        }
        put(b, "]", 1);
        break;
    case JSON_STRING:
        put_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER: {
        int n = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        put(b, num, (size_t)n);
        break;
    }
    case JSON_REAL: { /* jansson's own format (precision, ".0", exponent) */
        char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (text == NULL)
            b->failed = true;
        else
            put(b, text, strlen(text));
        free(text);
        break;
    }
    case JSON_TRUE:
        put(b, "true", 4);
        break;
    case JSON_FALSE:
        put(b, "false", 5);
        break;
    case JSON_NULL:
        put(b, "null", 4);
        break;
    }
}

char *json_out_compact(const json_t *v)
{
    if (v == NULL)
        return NULL;
    out_buf b = {0};
    put_value(&b, v);
    put(&b, "", 0);
    if (b.failed || b.data == NULL) {
        free(b.data);
        return NULL;
    }
    b.data[b.len] = '\0';
    return b.data;
}
