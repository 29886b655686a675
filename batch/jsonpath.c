/* Case-insensitive JSON member access, key checking and typed getters with JSON-path errors. */
#include "jsonpath.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void error_list_add(error_list *list, hse_code code, const char *path, const char *fmt, ...)
{
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 8;
        enroll_error *items = realloc(list->items, cap * sizeof *items);
        if (items == NULL)
            return; /* the errors already listed still stop the load */
        list->items = items;
        list->cap = cap;
    }
    enroll_error *e = &list->items[list->count++];
    char message[sizeof e->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    enroll_error_set(e, code, path, "%s", message);
}

void error_list_free(error_list *list)
{
    free(list->items);
    memset(list, 0, sizeof *list);
}

const char *json_path_key(char *buf, size_t size, const char *parent, const char *key)
{
    if (parent == NULL || *parent == '\0')
        snprintf(buf, size, "%s", key);
    else
        snprintf(buf, size, "%s.%s", parent, key);
    return buf;
}

const char *json_path_index(char *buf, size_t size, const char *parent, size_t index)
{
    snprintf(buf, size, "%s[%zu]", parent ? parent : "", index);
    return buf;
}

void json_check_keys(const json_t *obj, const char *path, const char *const *known,
                     error_list *errors)
{
    char where[256];
    jobj_key_check check = {0};
    while (jobj_check_keys(obj, known, &check)) {
        if (check.known_index < 0) {
            json_path_key(where, sizeof where, path, check.key);
            error_list_add(errors, HSE_CONFIG_UNKNOWN_KEY, where, "%s: unknown key", where);
            continue;
        }
        /* The same key twice with different casing is ambiguous. */
        bool first_is_lower = strcmp(check.first, check.key) < 0;
        const char *lower = first_is_lower ? check.first : check.key;
        const char *upper = first_is_lower ? check.key : check.first;
        json_path_key(where, sizeof where, path, upper);
        error_list_add(errors, HSE_CONFIG_DUPLICATE_KEY, where,
                       "%s: given twice (as \"%s\" and \"%s\")", where, lower, upper);
    }
}

static bool wrong_type(const char *path, const char *key, const char *type, error_list *errors)
{
    char where[256];
    json_path_key(where, sizeof where, path, key);
    error_list_add(errors, HSE_CONFIG_TYPE, where, "%s: expected %s", where, type);
    return false;
}

bool json_opt_string(const json_t *obj, const char *key, const char *path, const char **out,
                     error_list *errors)
{
    json_t *v = jobj_get(obj, key);
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_string(v))
        return wrong_type(path, key, "a string", errors);
    *out = json_string_value(v);
    return true;
}

bool json_opt_int(const json_t *obj, const char *key, const char *path, long long *out,
                  error_list *errors)
{
    json_t *v = jobj_get(obj, key);
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_integer(v))
        return wrong_type(path, key, "an integer", errors);
    *out = json_integer_value(v);
    return true;
}

bool json_opt_bool(const json_t *obj, const char *key, const char *path, bool *out,
                   error_list *errors)
{
    json_t *v = jobj_get(obj, key);
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_boolean(v))
        return wrong_type(path, key, "true or false", errors);
    *out = json_is_true(v);
    return true;
}
