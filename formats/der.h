/* A small DER writer: tag-length-value assembly for the few structures built by hand (a CRL's
 * TBSCertList, an OCSP ResponseData), whose parts come from OpenSSL's own i2d functions. */
#ifndef HSMENROLL_FORMATS_DER_H
#define HSMENROLL_FORMATS_DER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct der_buf {
    unsigned char *data;
    size_t len, cap;
    bool failed; /* an allocation failed: every later put is a no-op, der_wrap returns NULL */
} der_buf;

/* Appends bytes. */
void der_put(der_buf *b, const void *data, size_t len);
/* Appends a tag and a DER length (definite, minimal). */
void der_put_header(der_buf *b, unsigned char tag, size_t len);
/* Appends tag, the length of inner and inner's bytes; frees inner's buffer. */
void der_put_wrapped(der_buf *b, unsigned char tag, der_buf *inner);
/* The bytes of tag, length and b's content (malloc'd, length in *out_len); frees b's buffer.
 * NULL when an allocation failed. */
unsigned char *der_wrap(der_buf *b, unsigned char tag, size_t *out_len);
void der_free(der_buf *b);

#endif
