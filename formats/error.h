/* The error value every layer above hsm/ fills in: a stable code, the request field it is about,
 * and a human message. Modelled on jansson's json_error_t: fixed buffers, no allocation, so an
 * error can always be reported, even when memory is short. Messages never carry a secret. */
#ifndef HSMENROLL_FORMATS_ERROR_H
#define HSMENROLL_FORMATS_ERROR_H

#include <stddef.h>

#include "formats/error_codes.h"

typedef struct enroll_error {
    char code[40];     /* hse_code_name(code_id): "INVALID_SUBJECT", "HSM_ERROR", ... */
    char field[80];    /* request field it concerns: "Subject", "SANs.ip4[1]"; "" if none */
    char message[320]; /* for a person; never a PIN, password or key */
    hse_code code_id;  /* the code itself (error_codes.def); HSE_NONE when cleared */
} enroll_error;

/* Fills err (if not NULL) with code (its name goes to err->code), field (may be NULL) and a
 * printf-style message. */
void enroll_error_set(enroll_error *err, hse_code code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Changes only the code of err (if not NULL), keeping its field and message. */
void enroll_error_set_code(enroll_error *err, hse_code code);

/* Clears err to the empty state (code ""). */
void enroll_error_clear(enroll_error *err);

/* Puts prefix (e.g. "CA \"embedded\": ") in front of err->message, truncating at the end. */
void enroll_error_prefix(enroll_error *err, const char *prefix);

/* Appends the first queued OpenSSL error reason, as " (reason)", to err->message, and empties
 * the OpenSSL error queue of this thread. */
void enroll_error_add_openssl(enroll_error *err);

#endif
