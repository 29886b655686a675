/* Base 64 through OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock, and certificates as base-64 DER
 * (see base64.h). */
#include "base64.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

char *base64_encode(const unsigned char *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* Base 64 (whitespace ignored) to bytes; NULL when not base 64. */
unsigned char *base64_decode(const char *text, size_t *out_len)
{
    if (text == NULL)
        return NULL;
    size_t n = strlen(text);
    char *clean = malloc(n + 1);
    if (clean == NULL)
        return NULL;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)text[i]))
            clean[m++] = text[i];
    clean[m] = '\0';
    unsigned char *out = NULL;
    if (m > 0 && m % 4 == 0) {
        out = malloc(m / 4 * 3 + 1);
        int len = out ? EVP_DecodeBlock(out, (unsigned char *)clean, (int)m) : -1;
        if (len < 0) {
            free(out);
            out = NULL;
        } else {
            /* EVP_DecodeBlock counts padding as zero bytes. */
            if (m >= 1 && clean[m - 1] == '=')
                len--;
            if (m >= 2 && clean[m - 2] == '=')
                len--;
            *out_len = (size_t)len;
        }
    }
    OPENSSL_cleanse(clean, m);
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
    unsigned char *der = text ? base64_decode(text, &len) : NULL;
    const unsigned char *p = der;
    X509 *cert = der ? d2i_X509(NULL, &p, (long)len) : NULL;
    free(der);
    return cert;
}
