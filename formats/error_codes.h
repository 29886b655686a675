/* The error codes of every layer above hsm/, generated from the one table in error_codes.def:
 * the enum, each code's stable name (what results and answers carry), the HTTP status `serve`
 * answers with it, and its one-line meaning. */
#ifndef HSMENROLL_FORMATS_ERROR_CODES_H
#define HSMENROLL_FORMATS_ERROR_CODES_H

typedef enum hse_code {
    HSE_NONE = 0, /* no error: name "" (the cleared state of an enroll_error) */
#define X(name, status, meaning) HSE_##name,
#include "formats/error_codes.def"
#undef X
    HSE_CODE_COUNT
} hse_code;

/* "INVALID_FIELD" for HSE_INVALID_FIELD; "" for HSE_NONE or a value outside the table. */
const char *hse_code_name(hse_code code);

/* The HTTP status `serve` answers with the code (400, 403, 500, ...); 500 outside the table. */
unsigned hse_code_http_status(hse_code code);

/* One line saying what the code means; "" for HSE_NONE or a value outside the table. */
const char *hse_code_meaning(hse_code code);

/* The code named name (e.g. read back from a journal or results file), or HSE_NONE. */
hse_code hse_code_from_name(const char *name);

#endif
