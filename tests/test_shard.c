/* batch/shard.c: the "I/N" option, and the partition: by SHA-256 of the Id (any case of the key),
 * by line number without one, about even over many Ids. */
#include <stdio.h>
#include <string.h>

#include "batch/shard.h"
#include "tests/support.h"

static void test_parse(void)
{
    shard_spec s;
    CU_ASSERT_EQUAL(shard_parse("0/1", &s), 0);
    CU_ASSERT_EQUAL(shard_parse("3/4", &s), 0);
    CU_ASSERT_TRUE(s.index == 3 && s.count == 4);
    CU_ASSERT_EQUAL(shard_parse("65535/65536", &s), 0);
    static const char *bad[] = {"4/4",  "1/0",  "x",       "1/", "/4",   "-1/4",
                                "1/4x", "1 /4", "0/65537", "",   "1//4", "+1/4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_EQUAL(shard_parse(bad[i], &s), -1);
    char buf[32];
    s = (shard_spec){2, 8};
    CU_ASSERT_STRING_EQUAL(shard_format(&s, buf, sizeof buf), "2/8");
    s = (shard_spec){0, 1};
    CU_ASSERT_PTR_NULL(shard_format(&s, buf, sizeof buf));
}

static void test_partition(void)
{
    /* The same Id, whatever the rest of the line or the key's case, is in the same shard. */
    const char *a = "{\"Id\":\"dev-42\",\"Subject\":\"CN=a\"}";
    const char *b = "{\"Subject\":\"CN=b\",\"id\":\"dev-42\",\"KeyType\":\"RSA\"}";
    CU_ASSERT_EQUAL(shard_of_line(a, strlen(a), 1, 7), shard_of_line(b, strlen(b), 99, 7));
    CU_ASSERT_EQUAL(shard_of_line(a, strlen(a), 1, 7), shard_of_id("dev-42", 6, 7));
    /* No string Id: by line number. */
    const char *none[] = {"not json", "{\"Id\":42}", "[1,2]", "{}"};
    for (size_t i = 0; i < 4; i++)
        for (long line = 1; line <= 9; line++)
            CU_ASSERT_EQUAL(shard_of_line(none[i], strlen(none[i]), line, 4),
                            (unsigned)((line - 1) % 4));
    /* 4,000 Ids over 4 shards: each gets its share within 10%; every shard owns its own. */
    unsigned counts[4] = {0};
    for (int i = 0; i < 4000; i++) {
        char line[64];
        snprintf(line, sizeof line, "{\"Id\":\"device-%05d\"}", i);
        unsigned s = shard_of_line(line, strlen(line), i + 1, 4);
        CU_ASSERT_TRUE_FATAL(s < 4);
        counts[s]++;
        for (unsigned k = 0; k < 4; k++)
            CU_ASSERT_EQUAL(shard_owns(&(shard_spec){k, 4}, line, strlen(line), i + 1), k == s);
    }
    for (int k = 0; k < 4; k++)
        CU_ASSERT_TRUE(counts[k] > 900 && counts[k] < 1100);
    /* Not sharded: every line is owned. */
    CU_ASSERT_TRUE(shard_owns(&(shard_spec){0, 0}, a, strlen(a), 1));
    CU_ASSERT_TRUE(shard_owns(&(shard_spec){0, 1}, a, strlen(a), 1));
    /* The documented rule: "abc" has SHA-256 ba7816bf8f01cfea..., 0xba7816bf8f01cfea mod 1000
     * is 74. */
    CU_ASSERT_EQUAL(shard_of_id("abc", 3, 1000), (unsigned)(0xba7816bf8f01cfeaULL % 1000));
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_parse),
        TEST_CASE(test_partition),
        TEST_END,
    };
    return test_main("shard", cases, NULL, NULL);
}
