/* Public keys already certified, for the AllowKeyReuse policy: SHA-256 fingerprints of their
 * SubjectPublicKeyInfo, read from the local CAs' issuance logs and added as a batch goes. A
 * resumed run's own earlier issuances are kept apart: a request certified before the crash may
 * present its key again, no other request may. */
#ifndef HSMENROLL_BATCH_KEYHISTORY_H
#define HSMENROLL_BATCH_KEYHISTORY_H

#include <stdbool.h>
#include <stddef.h>

#include "idset.h"

/* The field of issued.ndjson lines holding the fingerprint (hex). */
#define KEY_HISTORY_FIELD "PublicKeySha256"

typedef struct key_history {
    idset seen;      /* keys certified by other runs, or by earlier lines of this batch */
    idset run_keys;  /* keys certified for this run before it was interrupted */
    idset run_pairs; /* the same, as "fingerprint \x1f request Id" */
} key_history;

void key_history_init(key_history *h);
void key_history_free(key_history *h);
/* Adds the fingerprints of an issuance log (NDJSON lines with KEY_HISTORY_FIELD). Lines whose
 * RunId is run_id (the run being resumed; NULL for none) are this run's own. A missing file is
 * an empty log. Returns how many were read, -1 when the file cannot be read. */
long key_history_load_log(key_history *h, const char *path, const char *run_id);
/* True when the key was certified before for anything but this run's request request_id. */
bool key_history_reused(const key_history *h, const unsigned char fingerprint[32],
                        const char *request_id);
void key_history_add(key_history *h, const unsigned char fingerprint[32]);
/* The fingerprint as lower-case hex (65 bytes with the NUL). */
void key_history_hex(const unsigned char fingerprint[32], char out[65]);

#endif
