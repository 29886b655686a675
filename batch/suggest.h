/* "Did you mean": the known name closest to a mistyped one (case-insensitive edit distance with
 * transpositions), for unknown request fields, configuration keys, templates and patterns. */
#ifndef HSMENROLL_BATCH_SUGGEST_H
#define HSMENROLL_BATCH_SUGGEST_H

#include <stddef.h>

#define SUGGEST_NULL_TERMINATED ((size_t)-1)

/* The name of names[0..count) (or, with count SUGGEST_NULL_TERMINATED, of the NULL-terminated
 * names) nearest to word,
 * when it is near enough to be a likely typo (at most 1 edit for short words, 2 or a third of
 * the length for longer ones); NULL otherwise. */
const char *suggest_closest(const char *word, const char *const *names, size_t count);

/* Writes into buf (size size) the names joined by ", " (at most max of them, then ", ..."). */
void suggest_list(char *buf, size_t size, const char *const *names, size_t count, size_t max);

#endif
