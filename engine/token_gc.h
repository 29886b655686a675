/* `hsmenroll token gc`: keys in the key tokens that nothing accounts for (no journal, no results
 * file, no certificate object in the token, no issuance of the embedded CA). */
#ifndef HSMENROLL_ENGINE_TOKEN_GC_H
#define HSMENROLL_ENGINE_TOKEN_GC_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/setup.h"

typedef struct token_gc_options {
    const char *const *journals; /* run journals (K records: keys made for a request) */
    size_t journal_count;
    const char *const *results; /* results.ndjson files (KeyUri of token keys) */
    size_t results_count;
    bool delete;         /* destroy the orphans, only those confirm lists */
    const char *confirm; /* with delete: the listing `token gc` printed (JSON or text) */
    bool as_json;
} token_gc_options;

/* Lists the keys in the key tokens that are orphans: private keys that no journal (by a K record,
 * or any record of the request whose derived CKA_ID they have) and no results file given records,
 * with no certificate object of their CKA_ID in their token, and whose public key's SHA-256
 * fingerprint no local CA's issuance log holds; public keys without their private half. With
 * delete, destroys them (and their public halves) only when they are exactly the keys the confirm
 * listing shows; else GC_LIST_CHANGED and nothing is destroyed. s must be logged in. Returns the
 * number of orphans, or -1 with err. */
long token_gc(engine_setup *s, const token_gc_options *o, enroll_error *err);

#endif
