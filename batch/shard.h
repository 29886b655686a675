/* Sharded runs: a deterministic partition of a batch among N engines reading the same file. A line
 * belongs to shard SHA-256(Id) mod N (the first 8 bytes of the digest, big-endian), or, when it has
 * no string Id, to shard (line - 1) mod N; so every line has exactly one shard, and both lines of a
 * duplicated Id land in the same one. */
#ifndef HSMENROLL_BATCH_SHARD_H
#define HSMENROLL_BATCH_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct shard_spec {
    unsigned index, count; /* 0 <= index < count; count 0 or 1: no sharding */
} shard_spec;

/* Parses "I/N" (0 <= I < N <= 65536, decimal). 0, or -1 when it is not that. */
int shard_parse(const char *text, shard_spec *out);

/* "I/N" in buf, or NULL when spec is not sharded (count 0 or 1). */
const char *shard_format(const shard_spec *spec, char *buf, size_t size);

/* The first 8 bytes of SHA-256(id), big-endian: what the shard of an Id is computed from. */
uint64_t shard_id_hash(const char *id, size_t len);

/* The shard of an Id (its bytes), for count shards (count >= 1). */
unsigned shard_of_id(const char *id, size_t len, unsigned count);

/* The Id of a batch line: the string value of its member named "Id" in any case (as request lines
 * are read), malloc'd; NULL when the line is not a JSON object or has no string Id. */
char *shard_line_id(const char *text, size_t len);

/* The shard a batch line (text, its 1-based number) belongs to, for count shards. */
unsigned shard_of_line(const char *text, size_t len, long line, unsigned count);

/* Whether the line belongs to this shard (always, when the run is not sharded). */
bool shard_owns(const shard_spec *spec, const char *text, size_t len, long line);

#endif
