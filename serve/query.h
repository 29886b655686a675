/* Keyfactor's query language (QueryString, pq.queryString, sq.queryString): a parsed filter of
 * field comparisons (-eq, -ne, -contains, -startswith, -endswith, -gt, -ge, -lt, -le) joined by
 * AND, OR and parentheses, evaluated against JSON objects whose members are the queryable fields.
 */
#ifndef HSMENROLL_SERVE_QUERY_H
#define HSMENROLL_SERVE_QUERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct query query;

/* Parses text; fields lists the field names the resource knows (matched case-insensitively).
 * NULL with a message in error (size bytes) on a syntax error or an unknown field. An empty or
 * blank text is a query matching everything. */
query *query_parse(const char *text, const char *const *fields, char *error, size_t size);
/* True when item (an object whose members are named as in fields) matches. String comparisons
 * ignore case and the spaces around a quoted value; numbers compare as numbers. */
bool query_match(const query *q, const json_t *item);
void query_free(query *q);

#endif
