/* `hsmenroll bench --kdf`: the password-based key derivations of the bundles (formats/kdf.c)
 * against OpenSSL's own and against the SHA-256 block function alone (the hardware's bound). */
#ifndef HSMENROLL_CLI_BENCH_KDF_H
#define HSMENROLL_CLI_BENCH_KDF_H

#include <jansson.h>
#include <stdio.h>

/* count derivations of iterations rounds with each method, taking turns over rounds; prints a
 * Markdown table on table (NULL: none) and returns its figures as JSON (NULL on failure). */
json_t *bench_kdf(long count, long iterations, FILE *table);

#endif
