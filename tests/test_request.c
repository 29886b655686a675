/* Request lines: the field vocabulary (case-insensitive, unknown and doubled fields refused), the
 * defaults, key specs, formats and storages, operation-specific fields, and that every problem of
 * a line is reported. */
#include <openssl/obj_mac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/request.h"
#include "formats/dn.h"
#include "tests/support.h"

typedef struct parsed {
    enroll_request *req;
    error_list errors;
} parsed;

static void parse(const char *text, parsed *out)
{
    memset(out, 0, sizeof *out);
    request_defaults d = {.pattern_id = -1, .password_length = 12};
    out->req = request_parse(text, strlen(text), 7, &d, &out->errors);
}

static void release(parsed *p)
{
    request_free(p->req);
    error_list_free(&p->errors);
}

/* The codes, in the order reported, joined by spaces ("" when none). */
static const char *codes(const parsed *p)
{
    static char buf[512];
    buf[0] = '\0';
    for (size_t i = 0; i < p->errors.count; i++) {
        if (i)
            strncat(buf, " ", sizeof buf - strlen(buf) - 1);
        strncat(buf, p->errors.items[i].code, sizeof buf - strlen(buf) - 1);
    }
    return buf;
}

#define BASE "\"Id\":\"r1\",\"Template\":\"Default\",\"Subject\":\"CN=r1\""

/* A table of lines and the codes they give, in order. */
static void test_codes_table(void)
{
    static const struct {
        const char *line;
        const char *codes;
    } cases[] = {
        {"{" BASE "}", ""},
        {"{\"id\":\"r1\",\"TEMPLATE\":\"Default\",\"subject\":\"CN=r1\",\"keytype\":\"ecc\"}", ""},
        {"{" BASE ",\"KeySize\":2048}", "UNKNOWN_FIELD"},
        {"{" BASE ",\"keyType\":\"RSA\",\"KeyType\":\"ECC\"}", "DUPLICATE_FIELD"},
        {"{" BASE ",\"KeyType\":\"DSA\"}", "UNKNOWN_KEY_TYPE"},
        {"{" BASE ",\"KeyType\":\"RSA\",\"KeyLength\":1024}", "INVALID_KEY_LENGTH"},
        {"{" BASE ",\"KeyType\":\"RSA\",\"KeyLength\":0}", "INVALID_KEY_LENGTH"},
        {"{" BASE ",\"KeyLength\":0}", "INVALID_KEY_LENGTH"},
        {"{" BASE ",\"KeyType\":\"ECC\",\"KeyLength\":\"0\"}", "INVALID_KEY_LENGTH"},
        {"{" BASE ",\"KeyType\":\"ECC\",\"KeyLength\":-256}", "INVALID_KEY_LENGTH"},
        {"{" BASE ",\"KeyType\":\"RSA\",\"KeyLength\":null}", ""},
        {"{\"Id\":\"r1\",\"EnrollmentPatternId\":-1,\"Subject\":\"CN=r1\"}", "INVALID_FIELD"},
        {"{\"Id\":\"r1\",\"EnrollmentPatternId\":0,\"Subject\":\"CN=r1\"}", "INVALID_FIELD"},
        {"{\"Id\":\"r1\",\"EnrollmentPatternId\":\"-1\",\"Subject\":\"CN=r1\"}", "INVALID_FIELD"},
        {"{\"Id\":\"r1\",\"EnrollmentPatternId\":3,\"Subject\":\"CN=r1\"}", ""},
        {"{" BASE ",\"KeyType\":\"RSA\",\"KeyLength\":\"two\"}", "INVALID_FIELD"},
        {"{" BASE ",\"KeyType\":\"RSA\",\"Curve\":\"1.3.132.0.34\"}", "KEY_SPEC_MISMATCH"},
        {"{" BASE ",\"KeyType\":\"ECC\",\"Curve\":\"1.2.3.4\"}", "INVALID_CURVE"},
        {"{" BASE ",\"KeyType\":\"ECC\",\"KeyLength\":384,\"Curve\":\"P-256\"}",
         "KEY_SPEC_MISMATCH"},
        {"{" BASE ",\"KeyType\":\"Ed25519\",\"KeyLength\":448}", "KEY_SPEC_MISMATCH"},
        {"{" BASE ",\"KeyType\":\"Ed448\",\"Curve\":\"1.3.101.113\"}", ""},
        {"{" BASE ",\"Format\":\"P12\"}", "INVALID_FIELD"},
        {"{" BASE ",\"Format\":\"PFX\",\"KeyStorage\":\"token\"}", "STORAGE_FORMAT_MISMATCH"},
        {"{" BASE ",\"KeyStorage\":\"disk\"}", "INVALID_FIELD"},
        {"{" BASE ",\"ChainOrder\":\"LeafFirst\"}", "INVALID_FIELD"},
        {"{" BASE ",\"IncludeChain\":\"yes\"}", "INVALID_FIELD"},
        {"{" BASE ",\"Password\":\"short\"}", "PASSWORD_TOO_SHORT"},
        {"{" BASE ",\"Timestamp\":\"2023-11-19T16:23:01Z\"}", ""},
        {"{" BASE ",\"Timestamp\":\"2023-11-19T16:23:01.123+00:00\"}", ""},
        {"{" BASE ",\"Timestamp\":\"2023-02-30T16:23:01Z\"}", "INVALID_TIMESTAMP"},
        {"{" BASE ",\"Timestamp\":\"2023-11-19 16:23:01\"}", "INVALID_TIMESTAMP"},
        {"{" BASE ",\"Timestamp\":\"2023-11-19T16:23:01+02:00\"}", ""},
        {"{" BASE ",\"Timestamp\":\"2023-11-19T16:23:01.123456789-07:30\"}", ""},
        {"{" BASE ",\"Timestamp\":\"2023-11-19T16:23:01\"}", ""},
        {"{" BASE ",\"Timestamp\":\"2023-11-19T16:23:01+2:00\"}", "INVALID_TIMESTAMP"},
        {"{" BASE ",\"Timestamp\":\"2023-11-19T16:23:01+24:00\"}", "INVALID_TIMESTAMP"},
        {"{" BASE ",\"Timestamp\":\"2023-11-19T16:23:01Z \"}", "INVALID_TIMESTAMP"},
        {"{" BASE ",\"OwnerRoleId\":3,\"OwnerRoleName\":\"x\"}", "OWNER_ROLE_CONFLICT"},
        {"{" BASE ",\"Metadata\":[1]}", "INVALID_FIELD"},
        {"{" BASE ",\"SANs\":{\"dns\":[\"a.example\"],\"ip4\":[\"300.1.1.1\"]}}", "INVALID_SAN"},
        {"{" BASE ",\"SANs\":{\"mail\":[\"a@b.c\"]}}", "UNKNOWN_SAN_TYPE"},
        {"{" BASE ",\"SANs\":[\"a\"]}", "INVALID_FIELD"},
        /* PFX v2 store delivery */
        {"{" BASE ",\"Stores\":[{\"StoreId\":\"x\"}]}", "INVALID_FIELD"},
        {"{" BASE ",\"Stores\":[{\"StoreId\":\"6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10\",\"Alias\":"
         "\"a\",\"Overwrite\":true},{\"StoreId\":\"6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e11\"}],"
         "\"RenewalCertificateId\":12,\"InstallIntoExistingCertificateStores\":false}",
         ""},
        {"{" BASE ",\"Stores\":[{\"StoreId\":\"6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10\","
         "\"Overwrite\":\"yes\"}]}",
         "INVALID_FIELD"},
        /* Store entry keys in any case, but one casing each. */
        {"{" BASE ",\"Stores\":[{\"storeid\":\"6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10\","
         "\"ALIAS\":\"a\",\"overwrite\":false}]}",
         ""},
        {"{" BASE ",\"Stores\":[{\"StoreId\":\"6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10\","
         "\"storeId\":\"6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e11\"}]}",
         "INVALID_FIELD"},
        {"{" BASE ",\"Stores\":[{\"StoreId\":\"6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10\","
         "\"Colour\":1}]}",
         "INVALID_FIELD"},
        /* Unknown and twice-given fields in the line's order, each reported. */
        {"{" BASE ",\"Bogus\":1,\"keyType\":\"RSA\",\"KeyType\":\"ECC\",\"Other\":2,"
         "\"KEYTYPE\":\"RSA\"}",
         "UNKNOWN_FIELD DUPLICATE_FIELD UNKNOWN_FIELD DUPLICATE_FIELD"},
        {"{" BASE ",\"RenewalCertificateId\":0}", "INVALID_FIELD"},
        {"{" BASE ",\"Format\":\"DER\",\"Stores\":[{\"StoreId\":"
         "\"6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10\"}]}",
         "STORE_NEEDS_KEY"},
        {"{" BASE ",\"JobTime\":\"2030-01-01T00:00:00Z\"}", "FIELD_NOT_SUPPORTED"},
        {"{" BASE ",\"JobTime\":\"\",\"PopulateMissingValuesFromAD\":false}", ""},
        {"{" BASE ",\"PopulateMissingValuesFromAD\":true}", "FIELD_NOT_SUPPORTED"},
        {"{" BASE ",\"CSR\":\"MIIB\"}", "FIELD_NOT_ALLOWED"},
        {"{" BASE ",\"Alias\":\"a\"}", "FIELD_NOT_ALLOWED"},
        /* Reenrollment lines (seed 003): Subject is SubjectName there, the store fields required.
         */
        {"{" BASE ",\"Operation\":\"Reenrollment\"}",
         "FIELD_NOT_ALLOWED MISSING_FIELD MISSING_FIELD MISSING_FIELD MISSING_FIELD"},
        {"{\"Id\":\"e1\",\"Operation\":\"Reenrollment\",\"CertificateTemplate\":\"Default\","
         "\"KeystoreId\":\"6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10\",\"Alias\":\"web\",\"AgentGuid\":"
         "\"0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b\",\"SubjectName\":\"CN=web,O=E\",\"KeyType\":"
         "\"ECC\",\"Format\":\"DER\",\"JobProperties\":{}}",
         ""},
        {"{\"Id\":\"e1\",\"Operation\":\"Reenrollment\",\"Template\":\"Default\","
         "\"KeystoreId\":\"not-a-guid\",\"Alias\":\"web\",\"AgentGuid\":"
         "\"0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b\",\"SubjectName\":\"CN=web\",\"Format\":\"PFX\","
         "\"JobProperties\":{\"NetscalerVserver\":\"v\"},\"Stores\":[],\"PrivateKey\":\"x\"}",
         "FIELD_NOT_ALLOWED FIELD_NOT_ALLOWED INVALID_FIELD INVALID_FIELD FIELD_NOT_SUPPORTED"},
        {"{" BASE ",\"Operation\":\"Renew\"}", "INVALID_FIELD"},
        {"{\"Template\":\"Default\",\"Subject\":\"CN=x\"}", "MISSING_FIELD"},
        {"{\"Id\":\"has space\",\"Template\":\"Default\",\"Subject\":\"CN=x\"}", "INVALID_ID"},
        {"{\"Id\":\".hidden\",\"Template\":\"Default\",\"Subject\":\"CN=x\"}", "INVALID_ID"},
        {"{\"Id\":[1],\"Template\":\"Default\",\"Subject\":\"CN=x\"}", "INVALID_FIELD"},
        {"{\"Id\":\"r1\",\"Subject\":\"CN=x\"}", "MISSING_FIELD"},
        {"{\"Id\":\"r1\",\"Template\":\"Default\"}", "MISSING_FIELD"},
        {"{\"Id\":\"r1\",\"Template\":\"Default\",\"Subject\":\"CN=x,O=\\\"open\"}",
         "INVALID_SUBJECT"},
        /* CSR lines: the key and subject come from the CSR. */
        {"{\"Id\":\"c1\",\"Operation\":\"CSR\",\"Template\":\"Default\"}", "MISSING_FIELD"},
        {"{\"Id\":\"c1\",\"Operation\":\"csr\",\"Template\":\"Default\",\"CSR\":\"!!\"}",
         "INVALID_CSR"},
        {"{\"Id\":\"c1\",\"Operation\":\"CSR\",\"Template\":\"Default\",\"CSR\":\"x\","
         "\"KeyType\":\"RSA\",\"Subject\":\"CN=x\",\"Password\":\"0123456789abc\"}",
         "FIELD_NOT_ALLOWED FIELD_NOT_ALLOWED FIELD_NOT_ALLOWED INVALID_CSR"},
        {"{\"Id\":\"c1\",\"Operation\":\"CSR\",\"Template\":\"Default\",\"CSR\":\"x\","
         "\"Format\":\"PFX\"}",
         "INVALID_FIELD INVALID_CSR"},
        /* Every problem, in order. */
        {"{\"Id\":\"r1\",\"Template\":\"Default\",\"Subject\":\"CN=x,O=\\\"open\","
         "\"KeyType\":\"DSA\",\"Colour\":\"red\",\"Password\":\"short\"}",
         "UNKNOWN_FIELD UNKNOWN_KEY_TYPE INVALID_SUBJECT PASSWORD_TOO_SHORT"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parsed p;
        parse(cases[i].line, &p);
        CU_ASSERT_PTR_NOT_NULL(p.req);
        if (strcmp(codes(&p), cases[i].codes) != 0)
            fprintf(stderr, "\n  line %zu: %s\n  expected [%s] got [%s]\n", i, cases[i].line,
                    cases[i].codes, codes(&p));
        CU_ASSERT_STRING_EQUAL(codes(&p), cases[i].codes);
        release(&p);
    }
}

static void test_not_json(void)
{
    parsed p;
    parse("{\"Id\":", &p);
    CU_ASSERT_PTR_NULL(p.req);
    CU_ASSERT_STRING_EQUAL(codes(&p), "INVALID_JSON");
    CU_ASSERT_PTR_NOT_NULL(strstr(p.errors.items[0].message, "column"));
    release(&p);
    parse("[1,2]", &p);
    CU_ASSERT_PTR_NULL(p.req);
    CU_ASSERT_STRING_EQUAL(codes(&p), "INVALID_JSON");
    release(&p);
    parse("{\"Id\":\"a\",\"Id\":\"b\"}", &p); /* the same key twice is not JSON we accept */
    CU_ASSERT_STRING_EQUAL(codes(&p), "INVALID_JSON");
    release(&p);
}

static void test_defaults(void)
{
    parsed p;
    parse("{" BASE "}", &p);
    CU_ASSERT_EQUAL(p.errors.count, 0);
    enroll_request *r = p.req;
    CU_ASSERT_STRING_EQUAL(r->id, "r1");
    CU_ASSERT_EQUAL(r->line, 7);
    CU_ASSERT_EQUAL(r->operation, OP_PFX);
    CU_ASSERT_EQUAL(r->format, FORMAT_PFX);
    CU_ASSERT_EQUAL(r->storage, STORAGE_EXPORT);
    CU_ASSERT_EQUAL(r->key.algorithm, KEYALG_RSA);
    CU_ASSERT_EQUAL(r->key.bits, 2048);
    CU_ASSERT_TRUE(r->include_chain);
    CU_ASSERT_TRUE(r->include_subject_header);
    CU_ASSERT_EQUAL(r->chain_order, CHAIN_END_ENTITY_FIRST);
    CU_ASSERT_FALSE(r->legacy_encryption);
    CU_ASSERT_PTR_NULL(r->password);
    CU_ASSERT_EQUAL(r->pattern_id, -1);
    CU_ASSERT_STRING_EQUAL(r->template_name, "Default");
    /* A Timestamp is filled in, ISO 8601 UTC with milliseconds. */
    CU_ASSERT_EQUAL(strlen(r->timestamp), 24);
    CU_ASSERT_EQUAL(r->timestamp[23], 'Z');
    release(&p);

    /* Offsets and zone-less times are kept in UTC. */
    parse("{" BASE ",\"Timestamp\":\"2023-11-19T01:23:01.5+02:00\"}", &p);
    CU_ASSERT_STRING_EQUAL(p.req->timestamp, "2023-11-18T23:23:01.5Z");
    release(&p);
    parse("{" BASE ",\"Timestamp\":\"2023-12-31T23:00:00-01:30\"}", &p);
    CU_ASSERT_STRING_EQUAL(p.req->timestamp, "2024-01-01T00:30:00Z");
    release(&p);
    parse("{" BASE ",\"Timestamp\":\"2025-01-02T03:04:05\"}", &p);
    CU_ASSERT_STRING_EQUAL(p.req->timestamp, "2025-01-02T03:04:05Z");
    release(&p);

    parse("{" BASE ",\"Format\":\"der\"}", &p);
    CU_ASSERT_EQUAL(p.req->storage, STORAGE_TOKEN);
    release(&p);
    parse("{" BASE ",\"Format\":\"DER\",\"KeyStorage\":\"export\"}", &p);
    CU_ASSERT_EQUAL(p.errors.count, 0);
    CU_ASSERT_EQUAL(p.req->storage, STORAGE_EXPORT);
    release(&p);
    parse("{" BASE ",\"Format\":\"PEM\"}", &p);
    CU_ASSERT_EQUAL(p.req->storage, STORAGE_EXPORT);
    release(&p);
    parse("{" BASE ",\"KeyType\":\"ECDSA\"}", &p);
    CU_ASSERT_EQUAL(p.req->key.algorithm, KEYALG_ECC);
    CU_ASSERT_EQUAL(p.req->key.curve_nid, NID_X9_62_prime256v1);
    release(&p);
    parse("{" BASE ",\"KeyType\":\"ECC\",\"KeyLength\":\"384\"}", &p);
    CU_ASSERT_EQUAL(p.req->key.curve_nid, NID_secp384r1);
    release(&p);
    parse("{" BASE ",\"KeyType\":\"ECC\",\"Curve\":\"1.3.132.0.35\",\"KeyLength\":521}", &p);
    CU_ASSERT_EQUAL(p.errors.count, 0);
    CU_ASSERT_EQUAL(p.req->key.bits, 521);
    release(&p);
    parse("{\"Id\":42,\"Template\":\"Default\",\"Subject\":\"CN=x\"}", &p);
    CU_ASSERT_STRING_EQUAL(p.req->id, "42");
    release(&p);
    /* A given password is kept (for the bundle) and an empty one means "generate". */
    parse("{" BASE ",\"Password\":\"correct horse battery\"}", &p);
    CU_ASSERT_STRING_EQUAL(p.req->password, "correct horse battery");
    release(&p);
    parse("{" BASE ",\"Password\":\"\"}", &p);
    CU_ASSERT_EQUAL(p.errors.count, 0);
    CU_ASSERT_PTR_NULL(p.req->password);
    release(&p);
}

static void test_fields_land_where_they_should(void)
{
    parsed p;
    parse("{\"Id\":\"f1\",\"EnrollmentPatternId\":\"5\",\"Subject\":\"CN=f1,O=\\\"A, B\\\"\","
          "\"SANs\":{\"DNS\":[\"f1.example\",\"f1.example\"],\"ip6\":\"2001:db8::1\"},"
          "\"CertificateAuthority\":\"host\\\\ca\",\"IncludeChain\":false,"
          "\"ChainOrder\":\"rootfirst\",\"IncludeSubjectHeader\":false,"
          "\"UseLegacyEncryption\":true,\"CustomFriendlyName\":\"F One\","
          "\"MicrosoftTargetCSP\":\"CSP\",\"Metadata\":{\"k\":\"v\"},"
          "\"AdditionalEnrollmentFields\":{\"a\":\"b\"},\"OwnerRoleName\":\"Ops\"}",
          &p);
    CU_ASSERT_EQUAL_FATAL(p.errors.count, 0);
    enroll_request *r = p.req;
    CU_ASSERT_EQUAL(r->pattern_id, 5);
    CU_ASSERT_PTR_NULL(r->template_name);
    char *subject = dn_format(r->subject);
    CU_ASSERT_STRING_EQUAL(subject, "CN=f1,O=\"A, B\"");
    free(subject);
    /* The same name twice is certified once. */
    CU_ASSERT_EQUAL(sk_GENERAL_NAME_num(r->sans), 2);
    CU_ASSERT_STRING_EQUAL(r->ca_name, "host\\ca");
    CU_ASSERT_FALSE(r->include_chain);
    CU_ASSERT_EQUAL(r->chain_order, CHAIN_ROOT_FIRST);
    CU_ASSERT_FALSE(r->include_subject_header);
    CU_ASSERT_TRUE(r->legacy_encryption);
    CU_ASSERT_STRING_EQUAL(r->friendly_name, "F One");
    CU_ASSERT_STRING_EQUAL(r->csp_name, "CSP");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r->metadata, "k")), "v");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r->additional_fields, "a")), "b");
    CU_ASSERT_STRING_EQUAL(r->owner_role_name, "Ops");
    CU_ASSERT_EQUAL(r->owner_role_id, -1);
    release(&p);
}

static void test_errors_name_their_field(void)
{
    parsed p;
    parse("{" BASE ",\"SANs\":{\"dns\":[\"ok.example\",\"-bad.example\"]}}", &p);
    CU_ASSERT_STRING_EQUAL(codes(&p), "INVALID_SAN");
    CU_ASSERT_STRING_EQUAL(p.errors.items[0].field, "SANs.dns[1]");
    release(&p);
    parse("{" BASE ",\"keylength\":\"x\"}", &p);
    CU_ASSERT_STRING_EQUAL(p.errors.items[0].field, "KeyLength");
    release(&p);
    parse("{" BASE ",\"Bogus\":1}", &p);
    CU_ASSERT_STRING_EQUAL(p.errors.items[0].field, "Bogus");
    release(&p);
    /* A password never appears in an error. */
    parse("{" BASE ",\"Password\":\"s3cr3t\"}", &p);
    CU_ASSERT_PTR_NULL(strstr(p.errors.items[0].message, "s3cr3t"));
    release(&p);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_codes_table),
        TEST_CASE(test_not_json),
        TEST_CASE(test_defaults),
        TEST_CASE(test_fields_land_where_they_should),
        TEST_CASE(test_errors_name_their_field),
        TEST_END,
    };
    return test_main("request", cases, NULL, NULL);
}
