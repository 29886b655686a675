/* `hsmenroll bench --kdf`: CPU time of one derivation (PBKDF2-HMAC-SHA256 and PKCS#12's MAC key)
 * by the engine's code, by OpenSSL's, and the block function's bound, measured in turns on one
 * thread so that the machine's drift falls on all of them alike. */
#include "cli/bench_kdf.h"

#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <stdio.h>
#include <time.h>

#include "formats/kdf.h"

#define ROUNDS 5

static volatile unsigned kdf_sink; /* what the derivations made, so that none is optimised away */

enum { ENGINE_PBKDF2, OPENSSL_PBKDF2, BOUND_PBKDF2, ENGINE_P12, OPENSSL_P12, BOUND_P12, METHODS };

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* One derivation by method m; 0 or -1. */
static int derive(int m, unsigned iterations, const unsigned char salt[16], unsigned *sink)
{
    static const char password[] = "bench-password-1";
    unsigned char out[32];
    int ok = 1;
    switch (m) {
    case ENGINE_PBKDF2:
        ok = kdf_pbkdf2_hmac_sha256(password, sizeof password - 1, salt, 16, iterations, out,
                                    sizeof out) == 0;
        break;
    case OPENSSL_PBKDF2:
        ok = PKCS5_PBKDF2_HMAC(password, sizeof password - 1, salt, 16, (int)iterations,
                               EVP_sha256(), sizeof out, out) == 1;
        break;
    case BOUND_PBKDF2:
        *sink += kdf_sha256_block_bound(2 * iterations);
        return 0;
    case ENGINE_P12:
        ok = kdf_pkcs12(NID_sha256, PKCS12_MAC_ID, password, salt, 8, iterations, out,
                        sizeof out) == 0;
        break;
    case OPENSSL_P12:
        ok = PKCS12_key_gen_utf8(password, -1, (unsigned char *)salt, 8, PKCS12_MAC_ID,
                                 (int)iterations, sizeof out, out, EVP_sha256()) == 1;
        break;
    case BOUND_P12:
        *sink += kdf_sha256_block_bound(iterations);
        return 0;
    }
    *sink += out[0];
    return ok ? 0 : -1;
}

json_t *bench_kdf(long count, long iterations, FILE *table)
{
    if (count < 1 || iterations < 1 || iterations > 10000000)
        return NULL;
    unsigned char salt[16] = "bench-kdf-salt!";
    unsigned sink = 0;
    double best[METHODS];
    for (int m = 0; m < METHODS; m++)
        best[m] = -1;
    for (int r = 0; r < ROUNDS; r++)
        for (int m = 0; m < METHODS; m++) {
            double start = cpu_seconds();
            for (long i = 0; i < count; i++)
                if (derive(m, (unsigned)iterations, salt, &sink) != 0)
                    return NULL;
            double ms = (cpu_seconds() - start) * 1e3 / (double)count;
            if (best[m] < 0 || ms < best[m])
                best[m] = ms;
        }
    if (table != NULL)
        fprintf(table,
                "key derivation, %ld iterations (CPU ms per derivation, best of %d rounds of %ld; "
                "bound: the SHA-256 block function alone)\n",
                iterations, ROUNDS, count);
    if (table != NULL)
        fputs("| derivation | engine | OpenSSL | bound | bound / engine | OpenSSL / engine |\n"
              "|---|---|---|---|---|---|\n",
              table);
    const char *names[2] = {"PBKDF2-HMAC-SHA256", "PKCS#12 MAC key (SHA-256)"};
    const char *keys[2] = {"Pbkdf2HmacSha256", "Pkcs12MacKeySha256"};
    json_t *out =
        json_pack("{s:i, s:i}", "Iterations", (json_int_t)iterations, "Count", (json_int_t)count);
    for (int k = 0; k < 2 && out != NULL; k++) {
        double e = best[3 * k], o = best[3 * k + 1], b = best[3 * k + 2];
        if (table != NULL)
            fprintf(table, "| %s | %.3f | %.3f | %.3f | %.2f | %.2f |\n", names[k], e, o, b, b / e,
                    o / e);
        json_object_set_new(out, keys[k],
                            json_pack("{s:f, s:f, s:f, s:f}", "EngineMs", e, "OpenSslMs", o,
                                      "BoundMs", b, "BoundOverEngine", b / e));
    }
    kdf_sink = sink;
    return out;
}
