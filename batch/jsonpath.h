/* Error lists and typed getters for JSON documents whose keys are matched case-insensitively
 * (through batch/jsonobj.h), with errors that carry the JSON path of what is wrong. */
#ifndef HSMENROLL_BATCH_JSONPATH_H
#define HSMENROLL_BATCH_JSONPATH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "batch/jsonobj.h"
#include "formats/error.h"

/* A growing list of errors (for documents where every error is reported, not just the first). */
typedef struct error_list {
    enroll_error *items;
    size_t count, cap;
} error_list;

void error_list_add(error_list *list, hse_code code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void error_list_free(error_list *list);

/* Checks (with jobj_check_keys) that every key of obj is one of `known` (case-insensitively,
 * NULL-terminated list) and appears once; reports CONFIG_UNKNOWN_KEY "<path>.<key>: unknown key"
 * and CONFIG_DUPLICATE_KEY "<path>.<key>: given twice (as "A" and "a")" (path at the casing that
 * sorts last), in the object's order. */
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
