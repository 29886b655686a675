/* The DER writer of der.h. */
#include "formats/der.h"

#include <stdlib.h>
#include <string.h>

void der_put(der_buf *b, const void *data, size_t len)
{
    if (b->failed || len == 0)
        return;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len)
            cap *= 2;
        unsigned char *grown = realloc(b->data, cap);
        if (grown == NULL) {
            b->failed = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

void der_put_header(der_buf *b, unsigned char tag, size_t len)
{
    unsigned char h[10];
    size_t n = 0;
    h[n++] = tag;
    if (len < 0x80) {
        h[n++] = (unsigned char)len;
    } else {
        unsigned char bytes[8];
        size_t k = 0;
        for (size_t v = len; v > 0; v >>= 8)
            bytes[k++] = (unsigned char)(v & 0xff);
        h[n++] = (unsigned char)(0x80 | k);
        while (k > 0)
            h[n++] = bytes[--k];
    }
    der_put(b, h, n);
}

void der_put_wrapped(der_buf *b, unsigned char tag, der_buf *inner)
{
    if (inner->failed)
        b->failed = true;
    der_put_header(b, tag, inner->len);
    der_put(b, inner->data, inner->len);
    der_free(inner);
}

unsigned char *der_wrap(der_buf *b, unsigned char tag, size_t *out_len)
{
    der_buf out = {0};
    der_put_wrapped(&out, tag, b);
    if (out.failed) {
        der_free(&out);
        return NULL;
    }
    *out_len = out.len;
    return out.data;
}

void der_free(der_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}
