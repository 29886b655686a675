/* Case-insensitive access to the members of a JSON object (Keyfactor's own clients disagree on
 * casing): the one member getter, the one deleter and the one unknown-key checker that request
 * parsing, configuration, the credentials file, the server's bodies and the connectors share. */
#ifndef HSMENROLL_BATCH_JSONOBJ_H
#define HSMENROLL_BATCH_JSONOBJ_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The member of obj whose key equals key case-insensitively, or NULL (also when obj is not an
 * object). When two keys differ only in case, the first one in the object's order wins (jansson
 * keeps the order of the text). Callers that must not guess refuse such pairs first with
 * jobj_check_keys (request lines, configuration, credentials); the others take the first. */
json_t *jobj_get(const json_t *obj, const char *key);

/* Removes every member of obj whose key equals key case-insensitively; returns how many. */
size_t jobj_del(json_t *obj, const char *key);

/* One finding of jobj_check_keys. Zero it before the first call. */
typedef struct jobj_key_check {
    /* Set by jobj_check_keys (the strings belong to the object): */
    const char *key;        /* the key as written in the object */
    json_t *value;          /* its value */
    size_t position;        /* its place in the object's order, from 0 */
    long known_index;       /* its index in known, or -1 when it is not a known key */
    const char *first;      /* a repeat: the earlier key it repeats in another case; else NULL */
    const char *suggestion; /* reserved for a "did you mean" (a member of known); NULL today */
    /* Private: where the next call goes on. */
    void *next_;
    size_t next_position_;
    bool started_;
} jobj_key_check;

/* Walks obj's keys in the object's order against known (NULL-terminated, compared
 * case-insensitively) and stops at the next key that is not in known (known_index -1) or that
 * repeats an earlier key in another case (first set). Returns true with *check describing it;
 * call again with the same check for the one after; false when there is no more (or obj is not
 * an object). Callers that take the first of two casings skip the repeats. */
bool jobj_check_keys(const json_t *obj, const char *const *known, jobj_key_check *check);

/* The index of key in known (NULL-terminated, case-insensitive), or -1. */
long jobj_key_index(const char *const *known, const char *key);

#endif
