/* Public keys already certified, for the AllowKeyReuse policy: SHA-256 fingerprints of their
 * SubjectPublicKeyInfo, read from the local CAs' issuance logs and added as a batch goes. */
#ifndef HSMENROLL_BATCH_KEYHISTORY_H
#define HSMENROLL_BATCH_KEYHISTORY_H

#include <stdbool.h>
#include <stddef.h>

#include "idset.h"

/* The field of issued.ndjson lines holding the fingerprint (hex). */
#define KEY_HISTORY_FIELD "PublicKeySha256"

typedef struct key_history {
    idset seen;
} key_history;

void key_history_init(key_history *h);
void key_history_free(key_history *h);
/* Adds the fingerprints of an issuance log (NDJSON lines with KEY_HISTORY_FIELD). A missing
 * file is an empty log. Returns how many were read, -1 when the file cannot be read. */
long key_history_load_log(key_history *h, const char *path);
bool key_history_seen(const key_history *h, const unsigned char fingerprint[32]);
void key_history_add(key_history *h, const unsigned char fingerprint[32]);
/* The fingerprint as lower-case hex (65 bytes with the NUL). */
void key_history_hex(const unsigned char fingerprint[32], char out[65]);

#endif
