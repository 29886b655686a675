/* Fuzz target: the query language of serve's list endpoints (serve/query.h): the input is a
 * QueryString, parsed against the certificate fields and matched against a fixed certificate. */
#include <stdlib.h>

#include "serve/query.h"
#include "support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const fields[] = {"Id", "IssuedCN", "CA", "Thumbprint", "NotAfter", NULL};
    static json_t *item;
    if (item == NULL)
        item = json_pack("{s:i, s:s, s:s, s:s, s:s}", "Id", 42, "IssuedCN", "app.example.test",
                         "CA", "Example Issuing CA", "Thumbprint", "0A1B2C", "NotAfter",
                         "2027-01-02T03:04:05Z");
    char *text = fuzz_cstring(data, size);
    char error[256];
    query *q = query_parse(text, fields, error, sizeof error);
    if (q != NULL)
        query_match(q, item);
    query_free(q);
    free(text);
    return 0;
}
