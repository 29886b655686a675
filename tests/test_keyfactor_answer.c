/* The keyfactor connector's reading of a Keyfactor server's answer, every RequestDisposition:
 * ISSUED gives the certificate, PENDING and EXTERNAL VALIDATION wait, DENIED, FAILED and unknown
 * values fail with the CA's message (Keyfactor's CA plugins answer refusals with HTTP 200). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/answer.h"
#include "tests/support.h"

static const config_ca ca = {.id = 1, .name = "kf-test", .logical = "kf-test"};

/* The answer to a 200 whose body is CertificateInformation with this disposition and message. */
static ca_answer read_disposition(const char *disposition, const char *message)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"CertificateInformation\":{\"KeyfactorRequestId\":77,\"RequestDisposition\":\"%s\","
             "\"DispositionMessage\":\"%s\",\"Certificates\":[]},\"Metadata\":{}}",
             disposition, message);
    net_ca nc = {.cfg = &ca};
    ca_submission sub = {0};
    http_request req = {.status = 200, .response = body, .response_len = strlen(body)};
    keyfactor_answer(&nc, &sub, &req);
    return sub.answer;
}

static void test_pending_dispositions_wait(void)
{
    ca_answer a = read_disposition("PENDING", "Awaiting approval");
    CU_ASSERT_TRUE(a.pending);
    CU_ASSERT_FALSE(a.failed);
    CU_ASSERT_STRING_EQUAL(a.disposition, "PENDING");
    CU_ASSERT_EQUAL(a.request_id, 77);
    a = read_disposition("EXTERNAL VALIDATION", "Waiting for the CA");
    CU_ASSERT_TRUE(a.pending);
    CU_ASSERT_STRING_EQUAL(a.disposition_message, "Waiting for the CA");
}

static void test_refusals_fail_with_the_message(void)
{
    static const char *const refusals[] = {"DENIED", "FAILED", "Denied", "REVOKED", "WHATEVER"};
    for (size_t i = 0; i < sizeof refusals / sizeof *refusals; i++) {
        ca_answer a = read_disposition(refusals[i], "Template not allowed for this requester");
        CU_ASSERT_TRUE(a.failed);
        CU_ASSERT_FALSE(a.pending);
        CU_ASSERT_STRING_EQUAL(a.err.code, "CA_REJECTED");
        CU_ASSERT_PTR_NOT_NULL(strstr(a.err.message, "Template not allowed for this requester"));
        CU_ASSERT_PTR_NOT_NULL(strstr(a.err.message, refusals[i]));
        CU_ASSERT_PTR_NOT_NULL(strstr(a.err.message, "kf-test"));
    }
    ca_answer a = read_disposition("DENIED", "");
    CU_ASSERT_TRUE(a.failed);
    CU_ASSERT_PTR_NOT_NULL(strstr(a.err.message, "no message"));
}

static void test_issued_without_certificates_fails(void)
{
    /* ISSUED but nothing to read: a failure, not a pending request. */
    ca_answer a = read_disposition("ISSUED", "Issued");
    CU_ASSERT_TRUE(a.failed);
    CU_ASSERT_FALSE(a.pending);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_pending_dispositions_wait),
        TEST_CASE(test_refusals_fail_with_the_message),
        TEST_CASE(test_issued_without_certificates_fails),
        TEST_END,
    };
    return test_main("keyfactor_answer", cases, NULL, NULL);
}
