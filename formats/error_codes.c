/* The lookups over the table of error codes (error_codes.def): name, HTTP status, meaning, and
 * the code of a name. */
#include "error_codes.h"

#include <stddef.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned status;
    const char *meaning;
} table[HSE_CODE_COUNT] = {
    [HSE_NONE] = {"", 500, ""},
#define X(name, status, meaning) [HSE_##name] = {#name, status, meaning},
#include "formats/error_codes.def"
#undef X
};

static int in_table(hse_code code)
{
    return (int)code > (int)HSE_NONE && (int)code < (int)HSE_CODE_COUNT;
}

const char *hse_code_name(hse_code code)
{
    return in_table(code) ? table[code].name : "";
}

unsigned hse_code_http_status(hse_code code)
{
    return in_table(code) ? table[code].status : 500;
}

const char *hse_code_meaning(hse_code code)
{
    return in_table(code) ? table[code].meaning : "";
}

hse_code hse_code_from_name(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return HSE_NONE;
    for (int i = HSE_NONE + 1; i < HSE_CODE_COUNT; i++)
        if (strcmp(table[i].name, name) == 0)
            return (hse_code)i;
    return HSE_NONE;
}
