/* Fingerprints of certified public keys, in an 8-byte-per-key set. */
#include "keyhistory.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hex.h"

void key_history_init(key_history *h)
{
    idset_init(&h->seen);
    idset_init(&h->run_keys);
    idset_init(&h->run_pairs);
}

void key_history_free(key_history *h)
{
    idset_free(&h->seen);
    idset_free(&h->run_keys);
    idset_free(&h->run_pairs);
}

void key_history_hex(const unsigned char fingerprint[32], char out[65])
{
    hex_encode(fingerprint, 32, out, 65, false);
}

/* "fingerprint \x1f request Id", or NULL when it does not fit. */
static const char *run_pair(char *buf, size_t size, const char *hex, const char *request_id)
{
    int n = snprintf(buf, size, "%s\x1f%s", hex, request_id ? request_id : "");
    return n > 0 && (size_t)n < size ? buf : NULL;
}

bool key_history_reused(const key_history *h, const unsigned char fingerprint[32],
                        const char *request_id)
{
    char hex[65], pair[512];
    key_history_hex(fingerprint, hex);
    if (idset_contains(&h->seen, hex) == 1)
        return true;
    if (idset_contains(&h->run_keys, hex) != 1)
        return false;
    const char *key = run_pair(pair, sizeof pair, hex, request_id);
    return key == NULL || idset_contains(&h->run_pairs, key) != 1;
}

void key_history_add(key_history *h, const unsigned char fingerprint[32])
{
    char hex[65];
    key_history_hex(fingerprint, hex);
    idset_insert(&h->seen, hex);
}

long key_history_load_log(key_history *h, const char *path, const char *run_id)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? 0 : -1;
    char *line = NULL;
    size_t cap = 0;
    long n = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *v = json_loads(line, 0, NULL);
        const char *hex = json_string_value(json_object_get(v, KEY_HISTORY_FIELD));
        const char *run = json_string_value(json_object_get(v, "RunId"));
        if (hex != NULL && strlen(hex) == 64) {
            char pair[512];
            const char *key = run_pair(pair, sizeof pair, hex,
                                       json_string_value(json_object_get(v, "RequestId")));
            if (run_id != NULL && run != NULL && strcmp(run, run_id) == 0 && key != NULL) {
                idset_insert(&h->run_keys, hex);
                idset_insert(&h->run_pairs, key);
            } else {
                idset_insert(&h->seen, hex);
            }
            n++;
        }
        json_decref(v);
    }
    free(line);
    fclose(f);
    return n;
}
