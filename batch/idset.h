/* The set of request Ids seen in a batch, to refuse duplicates with flat memory: 8 bytes per Id
 * (a 64-bit hash), open addressing. Two different Ids collide with probability about n^2/2^65
 * (3e-8 for a million lines): such a line would be refused as a duplicate, never issued twice. */
#ifndef HSMENROLL_BATCH_IDSET_H
#define HSMENROLL_BATCH_IDSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct idset {
    uint64_t *slots; /* 0 = empty */
    size_t cap, count;
} idset;

void idset_init(idset *set);
void idset_free(idset *set);
/* 1 when id is new (and now in the set), 0 when it was seen before, -1 when out of memory. */
int idset_insert(idset *set, const char *id);
/* True when id is in the set (nothing is inserted). */
int idset_contains(const idset *set, const char *id);
uint64_t idset_hash(const char *id);

#endif
