/* Fuzz target: certificates a CA sends back as text (ca/net.h
 * net_parse_certificates: PEM blocks among other text, or one base-64 DER certificate), each then
 * described as results and `serve` describe certificates (certinfo_describe). */
#include <openssl/err.h>
#include <stdlib.h>

#include "batch/certinfo.h"
#include "support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstring(data, size);
    STACK_OF(X509) *certs = net_parse_certificates(text);
    for (int i = 0; i < sk_X509_num(certs); i++)
        json_decref(certinfo_describe(sk_X509_value(certs, i)));
    sk_X509_pop_free(certs, X509_free);
    free(text);
    ERR_clear_error();
    return 0;
}
