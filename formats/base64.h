/* Base 64 (standard alphabet, padded) for the engine's text formats: request lines, journal
 * records, CA answers and logs; and certificates as base-64 DER. */
#ifndef HSMENROLL_FORMATS_BASE64_H
#define HSMENROLL_FORMATS_BASE64_H

#include <openssl/x509.h>
#include <stddef.h>

/* The base 64 of data, NUL-terminated (malloc'd); NULL on allocation failure. */
char *base64_encode(const unsigned char *data, size_t len);

/* How base64_decode reads its text (flags, or-ed). */
#define BASE64_SKIP_SPACE 1u /* whitespace (isspace) anywhere in the text is ignored */
#define BASE64_CANONICAL  2u /* the unused bits before the padding must be zero */

/* The bytes of the first len characters of text, padded base 64 of the standard alphabet:
 * malloc'd, *out_len bytes followed by a NUL (wipe and free them when they are secret). NULL
 * when text is NULL, the text (less whitespace with BASE64_SKIP_SPACE) is empty or not a multiple
 * of 4 long, holds a character outside the alphabet or a '=' anywhere but in the last two places,
 * or (BASE64_CANONICAL) has non-zero unused bits; nothing of a refused text is left in memory.
 * The alphabet is checked without a branch or table lookup on the characters. */
unsigned char *base64_decode(const char *text, size_t len, unsigned flags, size_t *out_len);

/* A certificate's DER in base 64 (malloc'd), and back (NULL when text is not one). */
char *x509_to_base64(X509 *cert);
X509 *x509_from_base64(const char *text);

#endif
