/* Fuzz target: a CFSSL server's answer to /api/v1/cfssl/sign as the cfssl connector reads it
 * (ca/answer.h cfssl_answer), and as a refusal's body. */
#include "support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_ca_answer(cfssl_answer, data, size);
    return 0;
}
