/* Fuzz target: the Authorization header of a `serve` request (serve/auth.h
 * basic_auth_parse: "Basic <base64(user:password)>"). */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/auth.h"
#include "support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *header = fuzz_cstring(data, size);
    char *user = NULL, *password = NULL;
    int rc = basic_auth_parse(header, &user, &password);
    if ((rc == 0) != (user != NULL && password != NULL) || (user && strchr(user, ':'))) {
        fprintf(stderr, "fuzz_serve_auth: basic_auth_parse broke its contract (rc %d)\n", rc);
        abort();
    }
    if (password != NULL)
        OPENSSL_cleanse(password, strlen(password));
    free(password);
    free(user);
    free(header);
    return 0;
}
