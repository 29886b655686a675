/* PCRE2 wrapper: compile once (JIT when available), match from any thread. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "regex.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct regex {
    pcre2_code *code;
    char *source;
};

regex *regex_compile(const char *pattern, bool case_sensitive, char *error, size_t error_size)
{
    int code = 0;
    PCRE2_SIZE offset = 0;
    uint32_t options = PCRE2_UTF | (case_sensitive ? 0 : PCRE2_CASELESS);
    pcre2_code *compiled =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options, &code, &offset, NULL);
    if (compiled == NULL) {
        PCRE2_UCHAR text[160];
        pcre2_get_error_message(code, text, sizeof text);
        snprintf(error, error_size, "%s at offset %zu", (const char *)text, (size_t)offset);
        return NULL;
    }
    pcre2_jit_compile(compiled, PCRE2_JIT_COMPLETE); /* an interpreter fallback if it fails */
    regex *re = calloc(1, sizeof *re);
    if (re == NULL) {
        pcre2_code_free(compiled);
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    re->code = compiled;
    re->source = strdup(pattern);
    return re;
}

bool regex_match(const regex *re, const char *value)
{
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (md == NULL)
        return false;
    int rc = pcre2_match(re->code, (PCRE2_SPTR)value, strlen(value), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

const char *regex_source(const regex *re)
{
    return re->source;
}

void regex_free(regex *re)
{
    if (re == NULL)
        return;
    pcre2_code_free(re->code);
    free(re->source);
    free(re);
}
