/* The password-based key derivations of the bundles, at the speed of SHA-256's block function:
 * PBKDF2-HMAC-SHA256 (RFC 8018, 5.2) and PKCS#12's own derivation (RFC 7292, appendix B), with
 * SHA-256 for a modern PFX's MAC key and SHA-1 for a legacy PFX's keys, IVs and MAC key.
 * Each iteration is one call of the block function on a block padded once, with no buffering,
 * copying of contexts or length counting. */
/* SHA1_Transform and SHA256_Transform are OpenSSL 3.0's entry points to its block functions
 * (SHA-NI or AVX2, chosen at run time); they are deprecated but kept through 3.x. */
#define OPENSSL_API_COMPAT 10101
#include "kdf.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

#include "algs.h"

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

/* n words, big-endian, into out: a digest as the hash writes it. */
static void store_be32(unsigned char *out, const SHA_LONG *words, int n)
{
    for (int i = 0; i < n; i++) {
        out[4 * i] = (unsigned char)(words[i] >> 24);
        out[4 * i + 1] = (unsigned char)(words[i] >> 16);
        out[4 * i + 2] = (unsigned char)(words[i] >> 8);
        out[4 * i + 3] = (unsigned char)words[i];
    }
}

/* A block ending a message whose last used bytes are the block's first (a digest), and whose
 * whole length is total bytes: 0x80, zeros, and the length in bits, big-endian. */
static void pad_digest_block(unsigned char block[BLOCK], size_t used, size_t total)
{
    memset(block + used, 0, BLOCK - used);
    block[used] = 0x80;
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
    /* Each hash follows the 64-byte keyed block. */
    pad_digest_block(ublock, DIGEST, BLOCK + DIGEST);
    pad_digest_block(oblock, DIGEST, BLOCK + DIGEST);
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
            store_be32(oblock, ctx.h, DIGEST / 4);
            memcpy(ctx.h, outer.h, sizeof ctx.h);
            SHA256_Transform(&ctx, oblock);
            store_be32(ublock, ctx.h, DIGEST / 4);
            for (int w = 0; w < DIGEST / 4; w++)
                t[w] ^= ctx.h[w];
        }
        unsigned char block_out[DIGEST];
        store_be32(block_out, t, DIGEST / 4);
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

/* A = H(A), count times, for a digest A of u bytes (20: SHA-1, 32: SHA-256): one block function
 * call each, from the digest's initial state, on a block padded once. */
static void iterate_digest(unsigned char *a, size_t u, unsigned count)
{
    unsigned char block[BLOCK];
    memcpy(block, a, u);
    pad_digest_block(block, u, u);
    if (u == SHA_DIGEST_LENGTH) {
        SHA_CTX start, ctx;
        SHA1_Init(&start);
        for (unsigned j = 0; j < count; j++) {
            ctx = start;
            SHA1_Transform(&ctx, block);
            SHA_LONG h[5] = {ctx.h0, ctx.h1, ctx.h2, ctx.h3, ctx.h4};
            store_be32(block, h, 5);
        }
        OPENSSL_cleanse(&ctx, sizeof ctx);
    } else {
        SHA256_CTX start, ctx;
        SHA256_Init(&start);
        for (unsigned j = 0; j < count; j++) {
            memcpy(ctx.h, start.h, sizeof ctx.h);
            SHA256_Transform(&ctx, block);
            store_be32(block, ctx.h, DIGEST / 4);
        }
        OPENSSL_cleanse(&ctx, sizeof ctx);
    }
    memcpy(a, block, u);
    OPENSSL_cleanse(block, sizeof block);
}

int kdf_pkcs12(int md_nid, int id, const char *password, const unsigned char *salt, size_t salt_len,
               unsigned iterations, unsigned char *out, size_t out_len)
{
    if ((md_nid != NID_sha1 && md_nid != NID_sha256) || id < 1 || id > 255 || password == NULL ||
        salt == NULL || salt_len == 0 || salt_len > 1024 || strlen(password) > 1024 ||
        iterations == 0 || out == NULL || out_len == 0 || out_len > 1024)
        return -1;
    const EVP_MD *md = algs_md(md_nid);
    size_t u = md_nid == NID_sha1 ? SHA_DIGEST_LENGTH : SHA256_DIGEST_LENGTH;
    /* The password as PKCS#12 has it: a BMPString with its terminating zero, as OpenSSL makes it
     * for PKCS12_key_gen_utf8 (so the keys are the ones OpenSSL and others derive). */
    unsigned char *uni = NULL;
    int uni_len = 0;
    if (OPENSSL_utf82uni(password, -1, &uni, &uni_len) == NULL)
        return -1;
    /* D || I, with D 64 bytes of the purpose (1: a key, 2: an IV, 3: a MAC key) and I = S || P:
     * the salt and the password, each repeated to a whole number of 64-byte blocks. */
    size_t s_len = (salt_len + BLOCK - 1) / BLOCK * BLOCK;
    size_t p_len = ((size_t)uni_len + BLOCK - 1) / BLOCK * BLOCK;
    size_t di_len = BLOCK + s_len + p_len;
    unsigned char *di = OPENSSL_malloc(di_len), a[SHA256_DIGEST_LENGTH];
    int rc = -1;
    if (di == NULL)
        goto done;
    memset(di, id, BLOCK);
    for (size_t i = 0; i < s_len; i++)
        di[BLOCK + i] = salt[i % salt_len];
    for (size_t i = 0; i < p_len; i++)
        di[BLOCK + s_len + i] = uni[i % (size_t)uni_len];
    unsigned char *in = di + BLOCK;
    for (;;) {
        /* A = H^iterations(D || I) */
        if (EVP_Digest(di, di_len, a, NULL, md, NULL) != 1)
            goto done;
        iterate_digest(a, u, iterations - 1);
        size_t n = out_len < u ? out_len : u;
        memcpy(out, a, n);
        out += n;
        out_len -= n;
        if (out_len == 0)
            break;
        /* Each 64-byte block of I becomes (I_j + B + 1) mod 2^512, B being A repeated to 64
         * bytes. */
        for (size_t j = 0; j < s_len + p_len; j += BLOCK) {
            unsigned carry = 1;
            for (size_t k = BLOCK; k-- > 0;) {
                carry += (unsigned)in[j + k] + a[k % u];
                in[j + k] = (unsigned char)carry;
                carry >>= 8;
            }
        }
    }
    rc = 0;
done:
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_clear_free(di, di_len);
    OPENSSL_clear_free(uni, (size_t)uni_len);
    return rc;
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
