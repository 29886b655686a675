/* Base 64: encoding through OpenSSL's EVP_EncodeBlock, the one decoder (strict about padding,
 * constant-time over the alphabet), and certificates as base-64 DER (see base64.h). */
#include "base64.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

char *base64_encode(const unsigned char *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* The value (0..63) of a base64 character, or -1; no branch or table depends on c. */
static int char_value(unsigned char c)
{
    int ch = c, value = -1;
    value += (((0x40 - ch) & (ch - 0x5b)) >> 8) & (ch - 64); /* A-Z */
    value += (((0x60 - ch) & (ch - 0x7b)) >> 8) & (ch - 70); /* a-z */
    value += (((0x2f - ch) & (ch - 0x3a)) >> 8) & (ch + 5);  /* 0-9 */
    value += (((0x2a - ch) & (ch - 0x2c)) >> 8) & 63;        /* + */
    value += (((0x2e - ch) & (ch - 0x30)) >> 8) & 64;        /* / */
    return value;
}

/* Decodes len characters without whitespace (see base64_decode). */
static unsigned char *decode_groups(const char *in, size_t len, bool canonical, size_t *out_len)
{
    if (len == 0 || len % 4 != 0)
        return NULL;
    size_t pad = 0;
    if (in[len - 1] == '=')
        pad = in[len - 2] == '=' ? 2 : 1;
    size_t capacity = len / 4 * 3;
    unsigned char *out = malloc(capacity + 1);
    if (out == NULL)
        return NULL;
    int bad = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int v0 = char_value((unsigned char)in[i]);
        int v1 = char_value((unsigned char)in[i + 1]);
        int v2 = last && pad == 2 ? 0 : char_value((unsigned char)in[i + 2]);
        int v3 = last && pad >= 1 ? 0 : char_value((unsigned char)in[i + 3]);
        bad |= v0 | v1 | v2 | v3;
        unsigned group = ((unsigned)(v0 & 63) << 18) | ((unsigned)(v1 & 63) << 12) |
                         ((unsigned)(v2 & 63) << 6) | (unsigned)(v3 & 63);
        out[o++] = (unsigned char)(group >> 16);
        if (!(last && pad == 2))
            out[o++] = (unsigned char)(group >> 8);
        if (!(last && pad >= 1))
            out[o++] = (unsigned char)group;
        if (canonical && last && pad == 2 && (v1 & 15) != 0)
            bad = -1;
        if (canonical && last && pad == 1 && (v2 & 3) != 0)
            bad = -1;
    }
    if (bad < 0) {
        OPENSSL_cleanse(out, capacity + 1);
        free(out);
        return NULL;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

unsigned char *base64_decode(const char *text, size_t len, unsigned flags, size_t *out_len)
{
    if (text == NULL)
        return NULL;
    bool canonical = (flags & BASE64_CANONICAL) != 0;
    if ((flags & BASE64_SKIP_SPACE) == 0)
        return decode_groups(text, len, canonical, out_len);
    char *clean = malloc(len + 1);
    if (clean == NULL)
        return NULL;
    size_t m = 0;
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)text[i]))
            clean[m++] = text[i];
    unsigned char *out = decode_groups(clean, m, canonical, out_len);
    OPENSSL_cleanse(clean, len + 1);
    free(clean);
    return out;
}

char *x509_to_base64(X509 *cert)
{
    unsigned char *der = NULL;
    int len = i2d_X509(cert, &der);
    char *out = len > 0 ? base64_encode(der, (size_t)len) : NULL;
    OPENSSL_free(der);
    return out;
}

X509 *x509_from_base64(const char *text)
{
    size_t len = 0;
    unsigned char *der = text ? base64_decode(text, strlen(text), BASE64_SKIP_SPACE, &len) : NULL;
    const unsigned char *p = der;
    X509 *cert = der ? d2i_X509(NULL, &p, (long)len) : NULL;
    free(der);
    return cert;
}
