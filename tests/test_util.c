/* The shared small utilities: case-insensitive member access and the unknown-key checker
 * (batch/jsonobj.h, and the configuration's reporter over it), the compact JSON writer
 * (batch/json_out.h) against jansson's, hex (formats/hex.h) and base 64 (formats/base64.h) at
 * their edges. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch/json_out.h"
#include "batch/jsonobj.h"
#include "batch/jsonpath.h"
#include "formats/base64.h"
#include "formats/hex.h"
#include "tests/support.h"

static json_t *parse_json(const char *text)
{
    json_t *doc = json_loads(text, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    return doc;
}

static void test_get_first_casing_wins(void)
{
    json_t *doc = parse_json("{\"auth\":1,\"Auth\":2,\"Other\":3}");
    CU_ASSERT_EQUAL(json_integer_value(jobj_get(doc, "Auth")), 1); /* first in the text */
    CU_ASSERT_EQUAL(json_integer_value(jobj_get(doc, "AUTH")), 1);
    CU_ASSERT_EQUAL(json_integer_value(jobj_get(doc, "other")), 3);
    CU_ASSERT_PTR_NULL(jobj_get(doc, "Missing"));
    CU_ASSERT_PTR_NULL(jobj_get(doc, "Aut"));
    CU_ASSERT_PTR_NULL(jobj_get(doc, NULL));
    json_decref(doc);
    doc = parse_json("{\"B\":1,\"b\":2}");
    CU_ASSERT_EQUAL(json_integer_value(jobj_get(doc, "b")), 1); /* even with an exact match later */
    json_decref(doc);
    json_t *array = parse_json("[1]");
    CU_ASSERT_PTR_NULL(jobj_get(array, "x"));
    CU_ASSERT_PTR_NULL(jobj_get(NULL, "x"));
    json_decref(array);
}

static void test_del_every_casing(void)
{
    json_t *doc = parse_json("{\"id\":1,\"Name\":\"n\",\"ID\":2,\"Id\":3}");
    CU_ASSERT_EQUAL(jobj_del(doc, "Id"), 3);
    CU_ASSERT_EQUAL(json_object_size(doc), 1);
    CU_ASSERT_EQUAL(jobj_del(doc, "Id"), 0);
    CU_ASSERT_EQUAL(jobj_del(NULL, "Id"), 0);
    json_decref(doc);
}

static const char *const known[] = {"Type", "User", "Password", NULL};

static void test_check_keys_in_order(void)
{
    json_t *doc = parse_json(
        "{\"type\":\"a\",\"Colour\":1,\"user\":\"u\",\"TYPE\":\"b\",\"Shape\":2,\"Type\":\"c\"}");
    jobj_key_check check = {0};
    CU_ASSERT_TRUE_FATAL(jobj_check_keys(doc, known, &check));
    CU_ASSERT_STRING_EQUAL(check.key, "Colour");
    CU_ASSERT_EQUAL(check.known_index, -1);
    CU_ASSERT_EQUAL(check.position, 1);
    CU_ASSERT_PTR_NULL(check.first);
    CU_ASSERT_PTR_NULL(check.suggestion);
    CU_ASSERT_EQUAL(json_integer_value(check.value), 1);
    CU_ASSERT_TRUE_FATAL(jobj_check_keys(doc, known, &check));
    CU_ASSERT_STRING_EQUAL(check.key, "TYPE");
    CU_ASSERT_EQUAL(check.known_index, 0);
    CU_ASSERT_EQUAL(check.position, 3);
    CU_ASSERT_STRING_EQUAL(check.first, "type");
    CU_ASSERT_TRUE_FATAL(jobj_check_keys(doc, known, &check));
    CU_ASSERT_STRING_EQUAL(check.key, "Shape");
    CU_ASSERT_EQUAL(check.position, 4);
    CU_ASSERT_TRUE_FATAL(jobj_check_keys(doc, known, &check));
    CU_ASSERT_STRING_EQUAL(check.key, "Type");
    CU_ASSERT_STRING_EQUAL(check.first, "type"); /* always the first casing, not the previous */
    CU_ASSERT_FALSE(jobj_check_keys(doc, known, &check));
    CU_ASSERT_FALSE(jobj_check_keys(doc, known, &check)); /* stays at the end */
    json_decref(doc);
}

static void test_check_keys_clean_and_odd_inputs(void)
{
    json_t *doc = parse_json("{\"TYPE\":1,\"password\":2}");
    jobj_key_check check = {0};
    CU_ASSERT_FALSE(jobj_check_keys(doc, known, &check));
    json_decref(doc);
    doc = parse_json("{}");
    check = (jobj_key_check){0};
    CU_ASSERT_FALSE(jobj_check_keys(doc, known, &check));
    json_decref(doc);
    doc = parse_json("[\"Type\"]");
    check = (jobj_key_check){0};
    CU_ASSERT_FALSE(jobj_check_keys(doc, known, &check)); /* not an object: nothing to check */
    json_decref(doc);
    /* Unknown keys in two casings are two unknown keys, never a repeat. */
    doc = parse_json("{\"colour\":1,\"Colour\":2}");
    check = (jobj_key_check){0};
    CU_ASSERT_TRUE(jobj_check_keys(doc, known, &check) && check.known_index == -1);
    CU_ASSERT_TRUE(jobj_check_keys(doc, known, &check) && check.known_index == -1 &&
                   check.first == NULL);
    CU_ASSERT_FALSE(jobj_check_keys(doc, known, &check));
    json_decref(doc);
    CU_ASSERT_EQUAL(jobj_key_index(known, "password"), 2);
    CU_ASSERT_EQUAL(jobj_key_index(known, "pass"), -1);
}

/* The configuration's reporter keeps its codes, paths and messages. */
static void test_config_reporter(void)
{
    static const char *const keys[] = {"Module", "Tokens", NULL};
    json_t *doc = parse_json("{\"Tokens\":1,\"Pin\":2,\"tokens\":3}");
    error_list errors = {0};
    json_check_keys(doc, "Hsm", keys, &errors);
    CU_ASSERT_EQUAL_FATAL(errors.count, 2);
    CU_ASSERT_STRING_EQUAL(errors.items[0].code, "CONFIG_UNKNOWN_KEY");
    CU_ASSERT_STRING_EQUAL(errors.items[0].field, "Hsm.Pin");
    CU_ASSERT_STRING_EQUAL(errors.items[0].message, "Hsm.Pin: unknown key");
    CU_ASSERT_STRING_EQUAL(errors.items[1].code, "CONFIG_DUPLICATE_KEY");
    CU_ASSERT_STRING_EQUAL(errors.items[1].field, "Hsm.tokens");
    CU_ASSERT_STRING_EQUAL(errors.items[1].message,
                           "Hsm.tokens: given twice (as \"Tokens\" and \"tokens\")");
    error_list_free(&errors);
    json_decref(doc);
    /* The path names the casing that sorts last, whichever came first. */
    doc = parse_json("{\"tokens\":1,\"Tokens\":2}");
    json_check_keys(doc, "", keys, &errors);
    CU_ASSERT_EQUAL_FATAL(errors.count, 1);
    CU_ASSERT_STRING_EQUAL(errors.items[0].field, "tokens");
    CU_ASSERT_STRING_EQUAL(errors.items[0].message,
                           "tokens: given twice (as \"Tokens\" and \"tokens\")");
    error_list_free(&errors);
    json_decref(doc);
}

static void test_hex_encode(void)
{
    const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff};
    char out[9];
    CU_ASSERT_EQUAL(hex_encode(bytes, 4, out, sizeof out, false), 8);
    CU_ASSERT_STRING_EQUAL(out, "000fa5ff");
    CU_ASSERT_EQUAL(hex_encode(bytes, 4, out, sizeof out, true), 8);
    CU_ASSERT_STRING_EQUAL(out, "000FA5FF");
    CU_ASSERT_EQUAL(hex_encode(bytes, 0, out, sizeof out, false), 0);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_EQUAL(hex_encode(NULL, 0, out, 1, false), 0);
    CU_ASSERT_STRING_EQUAL(out, "");
    /* One byte short of the NUL: nothing but an empty string. */
    memset(out, 'x', sizeof out);
    CU_ASSERT_EQUAL(hex_encode(bytes, 4, out, 8, false), -1);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_EQUAL(hex_encode(bytes, 1, out, 0, false), -1);
    CU_ASSERT_EQUAL(out[0], '\0');
    char *alloc = hex_encode_alloc(bytes, 3, true);
    CU_ASSERT_STRING_EQUAL(alloc, "000FA5");
    free(alloc);
    alloc = hex_encode_alloc(bytes, 0, false);
    CU_ASSERT_STRING_EQUAL(alloc, "");
    free(alloc);
}

static void test_hex_decode(void)
{
    unsigned char out[4];
    CU_ASSERT_EQUAL(hex_decode("000fA5Ff", out, 4), 0);
    CU_ASSERT_EQUAL(memcmp(out, "\x00\x0f\xa5\xff", 4), 0);
    CU_ASSERT_EQUAL(hex_decode("", out, 0), 0);
    CU_ASSERT_EQUAL(hex_decode(NULL, out, 1), -1);
    CU_ASSERT_EQUAL(hex_decode("000", out, 2), -1);    /* odd length */
    CU_ASSERT_EQUAL(hex_decode("000fa5", out, 4), -1); /* too short */
    CU_ASSERT_EQUAL(hex_decode("0g", out, 1), -1);
    CU_ASSERT_EQUAL(hex_decode(" f", out, 1), -1); /* what sscanf("%2x") let through */
    CU_ASSERT_EQUAL(hex_decode("+f", out, 1), -1);
    CU_ASSERT_EQUAL(hex_decode("-1", out, 1), -1);
}

/* Decodes text (whole) with flags; the result's length in *len, or NULL. */
static unsigned char *decode(const char *text, unsigned flags, size_t *len)
{
    *len = (size_t)-1;
    return base64_decode(text, text ? strlen(text) : 0, flags, len);
}

static void expect_decoded(const char *text, unsigned flags, const char *want)
{
    size_t len;
    unsigned char *out = decode(text, flags, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_EQUAL(len, strlen(want));
    CU_ASSERT_EQUAL(memcmp(out, want, len), 0);
    CU_ASSERT_EQUAL(out[len], '\0'); /* always NUL-terminated */
    free(out);
}

static void expect_refused(const char *text, unsigned flags)
{
    size_t len;
    unsigned char *out = decode(text, flags, &len);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_EQUAL(len, (size_t)-1); /* untouched */
    free(out);
}

static void test_base64_decode(void)
{
    expect_decoded("QUJD", 0, "ABC");
    expect_decoded("QUI=", 0, "AB");
    expect_decoded("QQ==", 0, "A");
    expect_decoded("YWJjZGVm", BASE64_CANONICAL, "abcdef");
    /* Empty text and lengths that are not a multiple of 4. */
    expect_refused("", 0);
    expect_refused(NULL, 0);
    expect_refused("QUJ", 0);
    expect_refused("QUJDQ", 0);
    expect_refused("QQ=", 0);
    /* Characters outside the alphabet: URL-safe ones, controls, bytes above 0x7f. */
    expect_refused("QU-D", 0);
    expect_refused("QU_D", 0);
    expect_refused("QU\x01"
                   "D",
                   0);
    expect_refused("QU\x80"
                   "D",
                   0);
    expect_refused("Q.JD", 0);
    /* Padding only at the end, at most two. */
    expect_refused("====", 0);
    expect_refused("Q===", 0);
    expect_refused("QQ=A", 0);
    expect_refused("QQ==QUJD", 0);
    expect_refused("Q=QQ", 0);
    /* Unused bits: accepted, unless canonical. */
    expect_decoded("QR==", 0, "A");
    expect_refused("QR==", BASE64_CANONICAL);
    expect_decoded("QUJ=", 0, "AB");
    expect_refused("QUJ=", BASE64_CANONICAL);
    /* Whitespace (line breaks of PEM-like bodies) only when asked to skip it. */
    expect_decoded("QUJD\nREVG\r\n", BASE64_SKIP_SPACE, "ABCDEF");
    expect_decoded(" Q U\tJ D ", BASE64_SKIP_SPACE, "ABC");
    expect_decoded("QQ\n==", BASE64_SKIP_SPACE, "A");
    expect_refused("QUJD\n", 0);
    expect_refused(" QUJD", BASE64_CANONICAL);
    expect_refused(" \n\t ", BASE64_SKIP_SPACE); /* nothing but whitespace */
    /* len bounds the text: the rest is not read. */
    size_t len;
    unsigned char *out = base64_decode("QUJD$QQ==", 4, 0, &len);
    CU_ASSERT_TRUE(out != NULL && len == 3 && memcmp(out, "ABC", 3) == 0);
    free(out);
}

static void test_base64_round_trip(void)
{
    unsigned char data[64];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 1; n <= sizeof data; n++) {
        char *text = base64_encode(data, n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        CU_ASSERT_EQUAL(strlen(text), 4 * ((n + 2) / 3));
        size_t len = 0;
        unsigned char *back = base64_decode(text, strlen(text), BASE64_CANONICAL, &len);
        CU_ASSERT_TRUE(back != NULL && len == n && memcmp(back, data, n) == 0);
        free(back);
        free(text);
    }
    char *empty = base64_encode(data, 0);
    CU_ASSERT_STRING_EQUAL(empty, "");
    free(empty);
}

/* json_out_compact writes what json_dumps(v, JSON_COMPACT) writes, byte for byte: every control
 * character, quote, backslash, slash, DEL, UTF-8 (two to four bytes), an embedded NUL, keys that
 * need escapes, integers at their limits, reals, literals, empty and nested containers, and a
 * result line as the engine writes it. */
static void check_same(json_t *v)
{
    char *ours = json_out_compact(v), *theirs = json_dumps(v, JSON_COMPACT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ours);
    CU_ASSERT_PTR_NOT_NULL_FATAL(theirs);
    CU_ASSERT_STRING_EQUAL(ours, theirs);
    free(ours);
    free(theirs);
}

static void test_json_out_compact(void)
{
    char all[128];
    for (int i = 0; i < 127; i++)
        all[i] = (char)(i + 1);
    all[127] = '\0';
    json_t *doc = json_object();
    json_object_set_new(doc, "ascii", json_string(all));
    json_object_set_new(doc, "nul", json_stringn("a\0b", 3));
    json_object_set_new(doc, "utf8",
                        json_string("\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91 /"));
    json_object_set_new(doc, "k\"e\\y\n\x01", json_string(""));
    json_object_set_new(
        doc, "ints",
        json_pack("[I, I, i, i]", (json_int_t)INT64_MAX, (json_int_t)INT64_MIN, 0, -7));
    json_object_set_new(doc, "reals",
                        json_pack("[f, f, f, f, f]", 1.0, 0.1, -2.5e-300, 1e300, 123456789.125));
    json_object_set_new(doc, "lits", json_pack("[b, b, n]", 1, 0));
    json_object_set_new(doc, "empty",
                        json_pack("{s:{}, s:[], s:[[]], s:{s:{}}}", "o", "a", "aa", "oo", "x"));
    json_object_set_new(doc, "z-last", json_integer(1)); /* insertion order, not sorted */
    json_object_set_new(doc, "a-after", json_integer(2));
    check_same(doc);
    json_decref(doc);
    json_t *line = parse_json(
        "{\"Id\":\"r-1\",\"Line\":3,\"Status\":\"issued\",\"CertificateInformation\":{"
        "\"SerialNumber\":\"5F2A\",\"IssuerDN\":\"CN=Issuing CA,O=hsmenroll\",\"Thumbprint\":"
        "\"0A1B\",\"NotBefore\":\"2026-12-01T00:00:00Z\",\"Password\":\"p\\\"w\\\\d\"},"
        "\"Metadata\":{\"Owner\":\"\\u00e9\\ud83d\\udd11\"},\"Files\":[\"r-1.pem\"],\"Error\":"
        "null}");
    check_same(line);
    json_decref(line);
    CU_ASSERT_PTR_NULL(json_out_compact(NULL));
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_get_first_casing_wins),
        TEST_CASE(test_del_every_casing),
        TEST_CASE(test_check_keys_in_order),
        TEST_CASE(test_check_keys_clean_and_odd_inputs),
        TEST_CASE(test_config_reporter),
        TEST_CASE(test_json_out_compact),
        TEST_CASE(test_hex_encode),
        TEST_CASE(test_hex_decode),
        TEST_CASE(test_base64_decode),
        TEST_CASE(test_base64_round_trip),
        TEST_END,
    };
    return test_main("util", cases, NULL, NULL);
}
