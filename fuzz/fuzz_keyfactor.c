/* Fuzz target: a Keyfactor server's answer to POST /Enrollment/CSR as the keyfactor connector
 * reads it (ca/answer.h keyfactor_answer), and as a refusal's body. */
#include "support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_ca_answer(keyfactor_answer, data, size);
    return 0;
}
