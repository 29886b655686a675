/* The password-based key derivations of the bundles, at the speed of SHA-256's block function:
 * PBKDF2-HMAC-SHA256 (RFC 8018, 5.2) and PKCS#12's MAC key derivation (RFC 7292, appendix B).
 * Each iteration is one call of the block function on a block padded once, with no buffering,
 * copying of contexts or length counting. */
/* SHA256_Transform is the one entry point of OpenSSL 3.0 to its block function (SHA-NI or AVX2,
 * chosen at run time); it is deprecated but kept through 3.x. */
#define OPENSSL_API_COMPAT 10101
#include "kdf.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/pkcs12.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

#define BLOCK  SHA256_CBLOCK        /* 64 */
#define DIGEST SHA256_DIGEST_LENGTH /* 32 */

/* The SHA-256 state of HMAC's inner or outer hash after its 64-byte padded key. */
static void keyed_state(SHA256_CTX *state, const unsigned char key[BLOCK], unsigned char pad)
{
    unsigned char block[BLOCK];
    for (int i = 0; i < BLOCK; i++)
        block[i] = key[i] ^ pad;
    SHA256_Init(state);
    SHA256_Update(state, block, sizeof block);
    OPENSSL_cleanse(block, sizeof block);
}

static void store_be32(unsigned char *out, const SHA_LONG *words)
{
    for (int i = 0; i < DIGEST / 4; i++) {
        out[4 * i] = (unsigned char)(words[i] >> 24);
        out[4 * i + 1] = (unsigned char)(words[i] >> 16);
        out[4 * i + 2] = (unsigned char)(words[i] >> 8);
        out[4 * i + 3] = (unsigned char)words[i];
    }
}

/* A block ending a message whose last 32 bytes are the block's first 32 (a digest), and whose
 * whole length is total bytes: 0x80, zeros, and the length in bits, big-endian. */
static void pad_digest_block(unsigned char block[BLOCK], unsigned total)
{
    memset(block + DIGEST, 0, BLOCK - DIGEST);
    block[DIGEST] = 0x80;
    block[BLOCK - 2] = (unsigned char)(total * 8 >> 8);
    block[BLOCK - 1] = (unsigned char)(total * 8);
}

int kdf_pbkdf2_hmac_sha256(const void *password, size_t password_len, const unsigned char *salt,
                           size_t salt_len, unsigned iterations, unsigned char *out, size_t out_len)
{
    if ((password == NULL && password_len > 0) || (salt == NULL && salt_len > 0) ||
        iterations == 0 || out == NULL || out_len == 0 || out_len > (size_t)UINT32_MAX * DIGEST)
        return -1;
    unsigned char key[BLOCK] = {0};
    if (password_len > BLOCK)
        SHA256(password, password_len, key);
    else if (password_len > 0)
        memcpy(key, password, password_len);
    SHA256_CTX inner, outer, ctx;
    keyed_state(&inner, key, 0x36);
    keyed_state(&outer, key, 0x5c);
    OPENSSL_cleanse(key, sizeof key);

    unsigned char ublock[BLOCK], oblock[BLOCK]; /* U(i) padded; the inner hash padded */
    pad_digest_block(ublock, BLOCK + DIGEST);   /* each hash follows the 64-byte keyed block */
    pad_digest_block(oblock, BLOCK + DIGEST);
    SHA_LONG t[DIGEST / 4];
    for (uint32_t index = 1; out_len > 0; index++) {
        /* U(1) = HMAC(password, salt || INT(index)), by the ordinary update and final; the
         * finals write the first 32 bytes of the padded blocks. */
        unsigned char be_index[4] = {(unsigned char)(index >> 24), (unsigned char)(index >> 16),
                                     (unsigned char)(index >> 8), (unsigned char)index};
        ctx = inner;
        SHA256_Update(&ctx, salt, salt_len);
        SHA256_Update(&ctx, be_index, sizeof be_index);
        SHA256_Final(oblock, &ctx);
        ctx = outer;
        SHA256_Update(&ctx, oblock, DIGEST);
        SHA256_Final(ublock, &ctx);
        for (int w = 0; w < DIGEST / 4; w++)
            t[w] = (SHA_LONG)ublock[4 * w] << 24 | (SHA_LONG)ublock[4 * w + 1] << 16 |
                   (SHA_LONG)ublock[4 * w + 2] << 8 | ublock[4 * w + 3];
        /* U(j) = HMAC(password, U(j-1)): one block function call for each hash. */
        for (unsigned j = 1; j < iterations; j++) {
            memcpy(ctx.h, inner.h, sizeof ctx.h);
            SHA256_Transform(&ctx, ublock);
            store_be32(oblock, ctx.h);
            memcpy(ctx.h, outer.h, sizeof ctx.h);
            SHA256_Transform(&ctx, oblock);
            store_be32(ublock, ctx.h);
            for (int w = 0; w < DIGEST / 4; w++)
                t[w] ^= ctx.h[w];
        }
        unsigned char block_out[DIGEST];
        store_be32(block_out, t);
        size_t n = out_len < DIGEST ? out_len : DIGEST;
        memcpy(out, block_out, n);
        OPENSSL_cleanse(block_out, sizeof block_out);
        out += n;
        out_len -= n;
    }
    OPENSSL_cleanse(&inner, sizeof inner);
    OPENSSL_cleanse(&outer, sizeof outer);
    OPENSSL_cleanse(&ctx, sizeof ctx);
    OPENSSL_cleanse(ublock, sizeof ublock);
    OPENSSL_cleanse(oblock, sizeof oblock);
    OPENSSL_cleanse(t, sizeof t);
    return 0;
}

int kdf_pkcs12_sha256(const char *password, const unsigned char *salt, size_t salt_len,
                      unsigned iterations, unsigned char *out, size_t out_len)
{
    if (password == NULL || salt == NULL || salt_len == 0 || salt_len > INT_MAX / 2 ||
        strlen(password) > INT_MAX / 4 || iterations == 0 || out == NULL || out_len == 0 ||
        out_len > DIGEST)
        return -1;
    /* The password as PKCS#12 has it: a BMPString with its terminating zero, as OpenSSL makes it
     * for PKCS12_key_gen_utf8 (so the MAC is the one OpenSSL and others check). */
    unsigned char *uni = NULL;
    int uni_len = 0;
    if (OPENSSL_utf82uni(password, -1, &uni, &uni_len) == NULL)
        return -1;
    /* A(1) = SHA-256(D || S || P): D is 64 bytes of the purpose (3, a MAC key); S and P the salt
     * and the password, each repeated to a whole number of 64-byte blocks. */
    unsigned char diversifier[BLOCK], fill[BLOCK];
    memset(diversifier, 3, sizeof diversifier);
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, diversifier, sizeof diversifier);
    const unsigned char *parts[2] = {salt, uni};
    size_t part_lens[2] = {salt_len, (size_t)uni_len};
    for (int k = 0; k < 2; k++) {
        size_t whole = (part_lens[k] + BLOCK - 1) / BLOCK * BLOCK;
        for (size_t done = 0; done < whole; done += BLOCK) {
            for (size_t i = 0; i < BLOCK; i++)
                fill[i] = parts[k][(done + i) % part_lens[k]];
            SHA256_Update(&ctx, fill, BLOCK);
        }
    }
    OPENSSL_cleanse(fill, sizeof fill);
    OPENSSL_clear_free(uni, (size_t)uni_len);
    unsigned char block[BLOCK];
    SHA256_Final(block, &ctx);
    /* A(j) = SHA-256(A(j-1)): a 32-byte message, one block. */
    pad_digest_block(block, DIGEST);
    SHA256_CTX start;
    SHA256_Init(&start);
    for (unsigned j = 1; j < iterations; j++) {
        memcpy(ctx.h, start.h, sizeof ctx.h);
        SHA256_Transform(&ctx, block);
        store_be32(block, ctx.h);
    }
    memcpy(out, block, out_len);
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(&ctx, sizeof ctx);
    return 0;
}

unsigned kdf_sha256_block_bound(unsigned blocks)
{
    SHA256_CTX ctx;
    unsigned char block[BLOCK] = {0};
    SHA256_Init(&ctx);
    for (unsigned i = 0; i < blocks; i++) {
        SHA256_Transform(&ctx, block);
        block[0] = (unsigned char)ctx.h[0]; /* chained, as a derivation's blocks are */
    }
    return ctx.h[0];
}
