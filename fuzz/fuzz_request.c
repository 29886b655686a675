/* Fuzz target: a batch file (NDJSON) through the NDJSON reader and the checks `run` and `validate`
 * make of each line before any HSM work: request_parse, the policy of fuzz_config(), then the
 * in-order checks (duplicate Ids, store aliases, key reuse). Each line is an exact-size copy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/linecheck.h"
#include "batch/ndjson.h"
#include "support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0; /* fmemopen refuses an empty buffer */
    FILE *f = fmemopen((void *)data, size, "r");
    if (f == NULL)
        return 0;
    ndjson_reader reader;
    ndjson_open_stream(&reader, f, 4096);
    line_checker lc;
    request_defaults defaults = {.pattern_id = -1, .password_length = 12};
    line_checker_init(&lc, fuzz_config(), &defaults, NULL, NULL);
    const char *text;
    size_t len;
    long line;
    ndjson_status st;
    while ((st = ndjson_next(&reader, &text, &len, &line)) != NDJSON_EOF && st != NDJSON_ERROR) {
        if (st != NDJSON_LINE)
            continue;
        char *copy = malloc(len ? len : 1);
        if (copy == NULL)
            break;
        memcpy(copy, text, len);
        policy_decision decision;
        error_list errors = {0};
        const char *id;
        enroll_request *req = line_check(&lc, copy, len, line, &decision, &errors, &id);
        if (req != NULL) {
            char label[32];
            request_key_label(&req->key, label, sizeof label);
        }
        request_free(req);
        error_list_free(&errors);
        free(copy);
    }
    line_checker_free(&lc);
    ndjson_close(&reader);
    fclose(f);
    return 0;
}
