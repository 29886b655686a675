/* Hexadecimal encoding and decoding of bytes (see hex.h). */
#include "formats/hex.h"

#include <stdlib.h>
#include <string.h>

long hex_encode(const unsigned char *data, size_t len, char *out, size_t out_size, bool upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    if (out_size == 0 || len > (out_size - 1) / 2) {
        if (out_size > 0)
            out[0] = '\0';
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 15];
    }
    out[2 * len] = '\0';
    return (long)(2 * len);
}

char *hex_encode_alloc(const unsigned char *data, size_t len, bool upper)
{
    if (len > (((size_t)-1) - 1) / 2)
        return NULL;
    char *out = malloc(2 * len + 1);
    if (out != NULL)
        hex_encode(data, len, out, 2 * len + 1, upper);
    return out;
}

static int digit_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int hex_decode(const char *text, unsigned char *out, size_t len)
{
    if (text == NULL || strlen(text) != 2 * len)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int hi = digit_value(text[2 * i]), lo = digit_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}
