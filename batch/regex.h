/* Regular expressions of enrollment patterns and metadata fields (PCRE2, which reads the
 * .NET-style syntax Keyfactor configurations use: (?:...), \d, lookarounds). Matching searches
 * the whole value, like .NET's Regex.IsMatch; anchor with ^...$ for a full match. */
#ifndef HSMENROLL_BATCH_REGEX_H
#define HSMENROLL_BATCH_REGEX_H

#include <stdbool.h>
#include <stddef.h>

typedef struct regex regex;

/* Compiles pattern (UTF-8), case-insensitively unless case_sensitive. NULL on error, with a
 * message such as "missing closing parenthesis at offset 12" in error. */
regex *regex_compile(const char *pattern, bool case_sensitive, char *error, size_t error_size);
/* True when the pattern matches somewhere in value (UTF-8). Thread-safe. */
bool regex_match(const regex *re, const char *value);
const char *regex_source(const regex *re);
void regex_free(regex *re);

#endif
