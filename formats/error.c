/* enroll_error helpers: filling, clearing, and folding the OpenSSL error queue into a message. */
#include "error.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void enroll_error_set(enroll_error *err, hse_code code, const char *field, const char *fmt, ...)
{
    if (err == NULL)
        return;
    err->code_id = code;
    snprintf(err->code, sizeof err->code, "%s", code != HSE_NONE ? hse_code_name(code) : "ERROR");
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

void enroll_error_set_code(enroll_error *err, hse_code code)
{
    if (err == NULL)
        return;
    err->code_id = code;
    snprintf(err->code, sizeof err->code, "%s", code != HSE_NONE ? hse_code_name(code) : "ERROR");
}

void enroll_error_clear(enroll_error *err)
{
    if (err != NULL)
        memset(err, 0, sizeof *err);
}

void enroll_error_add_openssl(enroll_error *err)
{
    unsigned long e = ERR_peek_error();
    if (err != NULL && e != 0) {
        char reason[160];
        ERR_error_string_n(e, reason, sizeof reason);
        size_t used = strlen(err->message);
        if (used < sizeof err->message - 4)
            snprintf(err->message + used, sizeof err->message - used, " (%s)", reason);
    }
    ERR_clear_error();
}

void enroll_error_prefix(enroll_error *err, const char *prefix)
{
    if (err == NULL || prefix == NULL)
        return;
    size_t plen = strlen(prefix), size = sizeof err->message;
    if (plen >= size - 1)
        plen = size - 1;
    size_t mlen = strnlen(err->message, size - 1);
    if (plen + mlen > size - 1)
        mlen = size - 1 - plen;
    memmove(err->message + plen, err->message, mlen);
    memcpy(err->message, prefix, plen);
    err->message[plen + mlen] = '\0';
}
