/* The NDJSON line reader: line numbers, blank lines, CRLF, a BOM, and the last line of a file
 * that does not end with a newline (which once lost its first bytes when lines came before it). */
#include <stdio.h>
#include <string.h>

#include "batch/ndjson.h"
#include "tests/support.h"

/* Reads text whole and expects the lines want (NULL-terminated) with the numbers want_line. */
static void expect_lines(const char *text, const char *const *want, const long *want_line)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    ndjson_reader r;
    ndjson_open_stream(&r, f, 0);
    const char *line;
    size_t len;
    long number;
    size_t i = 0;
    ndjson_status st;
    while ((st = ndjson_next(&r, &line, &len, &number)) == NDJSON_LINE) {
        CU_ASSERT_PTR_NOT_NULL(want[i]);
        if (want[i] == NULL)
            break;
        CU_ASSERT_EQUAL(len, strlen(want[i]));
        CU_ASSERT(len == strlen(want[i]) && memcmp(line, want[i], len) == 0);
        CU_ASSERT_EQUAL(number, want_line[i]);
        i++;
    }
    CU_ASSERT_EQUAL(st, NDJSON_EOF);
    CU_ASSERT_PTR_NULL(want[i]);
    ndjson_close(&r);
    fclose(f);
}

static void test_lines(void)
{
    static const char *const lines[] = {"{\"a\":1}", "{\"b\":2}", NULL};
    static const long numbers[] = {1, 3};
    expect_lines("{\"a\":1}\n\n{\"b\":2}\n", lines, numbers);
    expect_lines("\xEF\xBB\xBF{\"a\":1}\r\n \t\r\n{\"b\":2}\r\n", lines, numbers);
}

static void test_last_line_without_newline(void)
{
    static const char *const one[] = {"{\"only\":1}", NULL};
    static const long one_number[] = {1};
    expect_lines("{\"only\":1}", one, one_number);
    static const char *const two[] = {"a", "bb", NULL};
    static const long two_numbers[] = {1, 2};
    expect_lines("a\nbb", two, two_numbers);
    static const char *const long_first[] = {"{\"first line, longer than the last\":1}", "{}",
                                             NULL};
    expect_lines("{\"first line, longer than the last\":1}\n{}", long_first, two_numbers);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_lines),
        TEST_CASE(test_last_line_without_newline),
        TEST_END,
    };
    return test_main("ndjson", cases, NULL, NULL);
}
