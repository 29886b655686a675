/* `hsmenroll token gc`: keys in the key tokens that no journal accounts for. */
#ifndef HSMENROLL_ENGINE_TOKEN_GC_H
#define HSMENROLL_ENGINE_TOKEN_GC_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/setup.h"

/* Lists (and with delete, destroys) the private keys (and their public halves) in the key tokens
 * whose CKA_ID no journal of journals records as made by a request, delivered or in progress.
 * s must be logged in. Returns the number of orphans found, or -1 with err. */
long token_gc(engine_setup *s, const char *const *journals, size_t count, bool delete, bool as_json,
              enroll_error *err);

#endif
