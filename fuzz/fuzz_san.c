/* Fuzz target: subject alternative names (formats/san.h), one "key:value" a line as the batch's
 * SANs object gives them (key as in "dns", "IP4", ...). Each accepted entry must print
 * (san_entry_text) as text that san_add takes back to an equal entry; else it aborts. */
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/san.h"
#include "support.h"

static void check_round_trip(const GENERAL_NAME *entry)
{
    char *text = san_entry_text(entry);
    char *colon = text ? strchr(text, ':') : NULL;
    if (colon == NULL) {
        fprintf(stderr, "fuzz_san: an accepted entry does not print (\"%s\")\n",
                text ? text : "(null)");
        abort();
    }
    *colon = '\0';
    GENERAL_NAMES *again = GENERAL_NAMES_new();
    enroll_error err;
    if (again == NULL || san_add(again, san_kind_from_key(text), colon + 1, "SANs", &err) != 0 ||
        GENERAL_NAME_cmp(sk_GENERAL_NAME_value(again, 0), (GENERAL_NAME *)entry) != 0) {
        fprintf(stderr, "fuzz_san: %s:%s does not parse back to the entry it came from\n", text,
                colon + 1);
        abort();
    }
    GENERAL_NAMES_free(again);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_lines lines;
    fuzz_lines_split(&lines, data, size, 32);
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    for (size_t i = 0; names != NULL && i < lines.count; i++) {
        char *colon = strchr(lines.line[i], ':');
        if (colon == NULL)
            continue;
        *colon = '\0';
        enroll_error err;
        if (san_add(names, san_kind_from_key(lines.line[i]), colon + 1, "SANs", &err) == 0)
            check_round_trip(sk_GENERAL_NAME_value(names, sk_GENERAL_NAME_num(names) - 1));
        san_has_dns(names, colon + 1);
    }
    GENERAL_NAMES *merged = GENERAL_NAMES_new();
    if (merged != NULL && names != NULL) {
        san_merge(merged, names);
        san_merge(merged, names);
    }
    GENERAL_NAMES_free(merged);
    GENERAL_NAMES_free(names);
    fuzz_lines_free(&lines);
    ERR_clear_error();
    return 0;
}
