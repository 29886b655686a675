/* Small helpers over jansson for documents whose keys are matched case-insensitively (Keyfactor's
 * own clients disagree on casing), with errors that carry the JSON path of what is wrong. */
#ifndef HSMENROLL_BATCH_JSONPATH_H
#define HSMENROLL_BATCH_JSONPATH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "formats/error.h"

/* A growing list of errors (for documents where every error is reported, not just the first). */
typedef struct error_list {
    enroll_error *items;
    size_t count, cap;
} error_list;

void error_list_add(error_list *list, hse_code code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void error_list_free(error_list *list);

/* The member of obj whose key equals key case-insensitively (the first one), or NULL. */
json_t *json_get_ci(const json_t *obj, const char *key);

/* Checks that every key of obj is one of `known` (case-insensitively, NULL-terminated list) and
 * appears once; reports "unknown key" / "duplicate key" with path "<path>.<key>". */
void json_check_keys(const json_t *obj, const char *path, const char *const *known,
                     error_list *errors);

/* Typed getters: each returns true when the member is absent (out untouched) or has the right
 * type (out set); on a wrong type it reports "<path>.<key>: expected <type>" and returns false. */
bool json_opt_string(const json_t *obj, const char *key, const char *path, const char **out,
                     error_list *errors);
bool json_opt_int(const json_t *obj, const char *key, const char *path, long long *out,
                  error_list *errors);
bool json_opt_bool(const json_t *obj, const char *key, const char *path, bool *out,
                   error_list *errors);

/* "parent.key" or "parent[index]" into buf. */
const char *json_path_key(char *buf, size_t size, const char *parent, const char *key);
const char *json_path_index(char *buf, size_t size, const char *parent, size_t index);

#endif
