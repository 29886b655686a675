/* Base 64 (standard alphabet, padded) for the engine's text formats: request lines, journal
 * records, CA answers and logs; and certificates as base-64 DER. */
#ifndef HSMENROLL_FORMATS_BASE64_H
#define HSMENROLL_FORMATS_BASE64_H

#include <openssl/x509.h>
#include <stddef.h>

/* The base 64 of data, NUL-terminated (malloc'd); NULL on allocation failure. */
char *base64_encode(const unsigned char *data, size_t len);
/* Bytes of base-64 text (whitespace ignored), malloc'd with *len set; NULL when text is NULL
 * or not base 64. */
unsigned char *base64_decode(const char *text, size_t *len);

/* A certificate's DER in base 64 (malloc'd), and back (NULL when text is not one). */
char *x509_to_base64(X509 *cert);
X509 *x509_from_base64(const char *text);

#endif
