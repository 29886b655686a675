/* 64-bit-hash open-addressing set for duplicate Id detection. */
#include "idset.h"

#include <stdlib.h>
#include <string.h>

void idset_init(idset *set)
{
    memset(set, 0, sizeof *set);
}

void idset_free(idset *set)
{
    free(set->slots);
    memset(set, 0, sizeof *set);
}

uint64_t idset_hash(const char *id)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, then a murmur3 finalizer to spread bits */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h ? h : 1;
}

static int grow(idset *set)
{
    size_t cap = set->cap ? set->cap * 2 : 1024;
    uint64_t *slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < set->cap; i++) {
        uint64_t h = set->slots[i];
        if (h == 0)
            continue;
        size_t j = h & (cap - 1);
        while (slots[j] != 0)
            j = (j + 1) & (cap - 1);
        slots[j] = h;
    }
    free(set->slots);
    set->slots = slots;
    set->cap = cap;
    return 0;
}

int idset_insert(idset *set, const char *id)
{
    if ((set->count + 1) * 2 > set->cap && grow(set) != 0)
        return -1;
    uint64_t h = idset_hash(id);
    size_t j = h & (set->cap - 1);
    while (set->slots[j] != 0) {
        if (set->slots[j] == h)
            return 0;
        j = (j + 1) & (set->cap - 1);
    }
    set->slots[j] = h;
    set->count++;
    return 1;
}

int idset_contains(const idset *set, const char *id)
{
    if (set->cap == 0)
        return 0;
    uint64_t h = idset_hash(id);
    for (size_t j = h & (set->cap - 1); set->slots[j] != 0; j = (j + 1) & (set->cap - 1))
        if (set->slots[j] == h)
            return 1;
    return 0;
}
