/* Fingerprints of certified public keys, in an 8-byte-per-key set. */
#include "keyhistory.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void key_history_init(key_history *h)
{
    idset_init(&h->seen);
}

void key_history_free(key_history *h)
{
    idset_free(&h->seen);
}

void key_history_hex(const unsigned char fingerprint[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[fingerprint[i] >> 4];
        out[2 * i + 1] = digits[fingerprint[i] & 15];
    }
    out[64] = '\0';
}

bool key_history_seen(const key_history *h, const unsigned char fingerprint[32])
{
    char hex[65];
    key_history_hex(fingerprint, hex);
    return idset_contains(&h->seen, hex) == 1;
}

void key_history_add(key_history *h, const unsigned char fingerprint[32])
{
    char hex[65];
    key_history_hex(fingerprint, hex);
    idset_insert(&h->seen, hex);
}

long key_history_load_log(key_history *h, const char *path)
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
        if (hex != NULL && strlen(hex) == 64) {
            idset_insert(&h->seen, hex);
            n++;
        }
        json_decref(v);
    }
    free(line);
    fclose(f);
    return n;
}
