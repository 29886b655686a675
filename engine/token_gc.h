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

/* Lists the private keys in the key tokens that are orphans: no journal and no results file
 * given records their CKA_ID, no certificate object in their token has it, and no local CA's
 * issuance log holds their public key's SHA-256 fingerprint. With delete, destroys them (and
 * their public halves) only when they are exactly the keys the confirm listing shows; else
 * GC_LIST_CHANGED and nothing is destroyed. s must be logged in. Returns the number of orphans,
 * or -1 with err. */
long token_gc(engine_setup *s, const token_gc_options *o, enroll_error *err);

#endif
