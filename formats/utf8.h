/* UTF-8 validation shared by the subject and SAN parsers. */
#ifndef HSMENROLL_FORMATS_UTF8_H
#define HSMENROLL_FORMATS_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. */
bool utf8_valid(const unsigned char *s, size_t len);

#endif
