/* Fuzz target: the X.500 Subject parser (formats/dn.h dn_parse) and the printer it must agree
 * with: a name that parses prints (dn_format) to text that parses to an equal name and prints
 * back identically; anything else aborts. */
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/dn.h"
#include "support.h"

static void fail(const char *what, const char *input, const char *printed)
{
    fprintf(stderr, "fuzz_dn: %s\n  input:   \"%s\"\n  printed: \"%s\"\n", what, input,
            printed ? printed : "(null)");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstring(data, size);
    enroll_error err;
    X509_NAME *name = dn_parse(text, "Subject", &err);
    if (name != NULL) {
        char *printed = dn_format(name);
        if (printed == NULL)
            fail("a parsed name does not print", text, NULL);
        X509_NAME *again = dn_parse(printed, "Subject", &err);
        if (again == NULL)
            fail("the printed name does not parse", text, printed);
        if (X509_NAME_cmp(name, again) != 0)
            fail("the printed name parses to another name", text, printed);
        char *reprinted = dn_format(again);
        if (reprinted == NULL || strcmp(printed, reprinted) != 0)
            fail("the printed name does not print back identically", printed, reprinted);
        free(dn_get_text(name, NID_commonName));
        free(reprinted);
        X509_NAME_free(again);
        free(printed);
        X509_NAME_free(name);
    }
    ERR_clear_error();
    free(text);
    return 0;
}
