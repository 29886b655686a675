/* Sharded runs: which of N engines takes a batch line (SHA-256 of its Id, else its line number),
 * and the "I/N" option. */
#include "shard.h"

#include <jansson.h>
#include <stdio.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int shard_parse(const char *text, shard_spec *out)
{
    if (text == NULL || out == NULL)
        return -1;
    char *end;
    if (*text < '0' || *text > '9')
        return -1;
    unsigned long i = strtoul(text, &end, 10);
    if (*end != '/' || end[1] < '0' || end[1] > '9')
        return -1;
    unsigned long n = strtoul(end + 1, &end, 10);
    if (*end != '\0' || n < 1 || n > 65536 || i >= n)
        return -1;
    out->index = (unsigned)i;
    out->count = (unsigned)n;
    return 0;
}

const char *shard_format(const shard_spec *spec, char *buf, size_t size)
{
    if (spec == NULL || spec->count <= 1 || buf == NULL || size == 0)
        return NULL;
    snprintf(buf, size, "%u/%u", spec->index, spec->count);
    return buf;
}

uint64_t shard_id_hash(const char *id, size_t len)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)id, len, md);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | md[i];
    return v;
}

unsigned shard_of_id(const char *id, size_t len, unsigned count)
{
    if (count <= 1 || id == NULL)
        return 0;
    return (unsigned)(shard_id_hash(id, len) % count);
}

char *shard_line_id(const char *text, size_t len)
{
    json_t *doc = text ? json_loadb(text, len, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
    char *id = NULL;
    if (json_is_object(doc)) {
        const char *key;
        json_t *value;
        json_object_foreach(doc, key, value)
        {
            if (strcasecmp(key, "Id") == 0 && json_is_string(value)) {
                id = strndup(json_string_value(value), json_string_length(value));
                break;
            }
        }
    }
    json_decref(doc);
    return id;
}

unsigned shard_of_line(const char *text, size_t len, long line, unsigned count)
{
    if (count <= 1)
        return 0;
    char *id = shard_line_id(text, len);
    unsigned shard = id != NULL ? shard_of_id(id, strlen(id), count)
                                : (unsigned)((unsigned long)(line > 0 ? line - 1 : 0) % count);
    free(id);
    return shard;
}

bool shard_owns(const shard_spec *spec, const char *text, size_t len, long line)
{
    if (spec == NULL || spec->count <= 1)
        return true;
    return shard_of_line(text, len, line, spec->count) == spec->index;
}
