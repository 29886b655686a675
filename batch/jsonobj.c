/* Case-insensitive member lookup, deletion and unknown-key checking over jansson objects (see
 * jsonobj.h). */
#include "batch/jsonobj.h"

#include <strings.h>

json_t *jobj_get(const json_t *obj, const char *key)
{
    if (!json_is_object(obj) || key == NULL)
        return NULL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        if (strcasecmp(k, key) == 0)
            return v;
    }
    return NULL;
}

size_t jobj_del(json_t *obj, const char *key)
{
    if (!json_is_object(obj) || key == NULL)
        return 0;
    size_t removed = 0;
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(obj, tmp, k, v)
    {
        if (strcasecmp(k, key) == 0 && json_object_del(obj, k) == 0)
            removed++;
    }
    return removed;
}

long jobj_key_index(const char *const *known, const char *key)
{
    for (long i = 0; known != NULL && known[i] != NULL; i++)
        if (strcasecmp(known[i], key) == 0)
            return i;
    return -1;
}

/* The first key of obj equal to key case-insensitively (key itself when it is the first). */
static const char *first_spelling(const json_t *obj, const char *key)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        if (strcasecmp(k, key) == 0)
            return k;
    }
    return key;
}

bool jobj_check_keys(const json_t *obj, const char *const *known, jobj_key_check *check)
{
    if (!json_is_object(obj))
        return false;
    void *it = check->started_ ? check->next_ : json_object_iter((json_t *)obj);
    size_t position = check->started_ ? check->next_position_ : 0;
    check->started_ = true;
    for (; it != NULL; it = json_object_iter_next((json_t *)obj, it), position++) {
        const char *key = json_object_iter_key(it);
        long index = jobj_key_index(known, key);
        const char *first = index >= 0 ? first_spelling(obj, key) : key;
        if (index >= 0 && first == key)
            continue;
        check->key = key;
        check->value = json_object_iter_value(it);
        check->position = position;
        check->known_index = index;
        check->first = index >= 0 ? first : NULL;
        check->suggestion = NULL;
        check->next_ = json_object_iter_next((json_t *)obj, it);
        check->next_position_ = position + 1;
        return true;
    }
    check->next_ = NULL;
    check->next_position_ = position;
    return false;
}
