/* Case-insensitive JSON member access, key checking and typed getters with JSON-path errors. */
#include "jsonpath.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

json_t *json_get_ci(const json_t *obj, const char *key)
{
    if (!json_is_object(obj))
        return NULL;
    json_t *exact = json_object_get(obj, key);
    if (exact != NULL)
        return exact;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        if (strcasecmp(k, key) == 0)
            return v;
    }
    return NULL;
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
    const char *k;
    json_t *v;
    char where[256];
    json_object_foreach((json_t *)obj, k, v)
    {
        bool found = false;
        for (const char *const *p = known; *p != NULL; p++) {
            if (strcasecmp(*p, k) == 0) {
                found = true;
                break;
            }
        }
        json_path_key(where, sizeof where, path, k);
        if (!found) {
            error_list_add(errors, HSE_CONFIG_UNKNOWN_KEY, where, "%s: unknown key", where);
            continue;
        }
        /* The same key twice with different casing is ambiguous. */
        const char *k2;
        json_t *v2;
        json_object_foreach((json_t *)obj, k2, v2)
        {
            if (k2 != k && strcmp(k2, k) < 0 && strcasecmp(k2, k) == 0)
                error_list_add(errors, HSE_CONFIG_DUPLICATE_KEY, where,
                               "%s: given twice (as \"%s\" and \"%s\")", where, k2, k);
        }
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
    json_t *v = json_get_ci(obj, key);
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
    json_t *v = json_get_ci(obj, key);
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
    json_t *v = json_get_ci(obj, key);
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_boolean(v))
        return wrong_type(path, key, "true or false", errors);
    *out = json_is_true(v);
    return true;
}
