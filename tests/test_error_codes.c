/* The table of error codes (formats/error_codes.def) against the README's error tables, both
 * ways, plus its own sanity (unique names, real HTTP statuses, meanings), and a scan of the
 * sources: no code is passed as a string literal any more, every one comes from the table. */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/error.h"
#include "formats/error_codes.h"
#include "support.h"

#define MAX_NAMES 512

/* The codes named in the README's error tables: the tables whose first header cell is "code";
 * every backticked upper-case word of a row's first cell. "`_REQUIRED`" after
 * "`POLICY_METADATA_UNKNOWN`" stands for POLICY_METADATA_REQUIRED (the suffix replaces as many
 * trailing words of the previous full code as it has). */
static size_t readme_codes(char names[][48], size_t max)
{
    char path[512];
    snprintf(path, sizeof path, "%s/README.md", HSMENROLL_SOURCE_DIR);
    char *text = test_read_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    size_t n = 0;
    bool in_table = false;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        while (*line == ' ')
            line++;
        if (line[0] != '|') {
            in_table = false;
            continue;
        }
        char *cell = line + 1, *end = strchr(cell, '|');
        if (end == NULL)
            continue;
        *end = '\0';
        while (*cell == ' ')
            cell++;
        if (strncmp(cell, "code ", 5) == 0) { /* a header: | code | when | */
            in_table = true;
            continue;
        }
        if (!in_table || cell[0] == '-')
            continue;
        char previous[48] = "";
        for (char *p = strchr(cell, '`'); p != NULL && n < max; p = strchr(p, '`')) {
            char *close = strchr(p + 1, '`');
            if (close == NULL)
                break;
            size_t len = (size_t)(close - p - 1);
            char word[48];
            snprintf(word, sizeof word, "%.*s", (int)len, p + 1);
            p = close + 1;
            if (word[0] == '_' && previous[0] != '\0') {
                size_t parts = 0;
                for (const char *c = word; *c; c++)
                    parts += *c == '_';
                char expanded[48];
                snprintf(expanded, sizeof expanded, "%s", previous);
                for (size_t k = 0; k < parts; k++) {
                    char *cut = strrchr(expanded, '_');
                    CU_ASSERT_PTR_NOT_NULL_FATAL(cut);
                    *cut = '\0';
                }
                snprintf(names[n++], 48, "%s%s", expanded, word);
                continue;
            }
            if (strspn(word, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != strlen(word) || len < 3)
                continue;
            snprintf(previous, sizeof previous, "%s", word);
            snprintf(names[n++], 48, "%s", word);
        }
    }
    free(text);
    return n;
}

static void test_readme_both_ways(void)
{
    static char names[MAX_NAMES][48];
    size_t n = readme_codes(names, MAX_NAMES);
    CU_ASSERT(n > 100);
    for (size_t i = 0; i < n; i++) {
        if (hse_code_from_name(names[i]) == HSE_NONE) {
            fprintf(stderr, "README names %s, which is not in formats/error_codes.def\n", names[i]);
            CU_FAIL("a README code is not in the table");
        }
    }
    for (int c = HSE_NONE + 1; c < HSE_CODE_COUNT; c++) {
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
            found = strcmp(names[i], hse_code_name((hse_code)c)) == 0;
        if (!found) {
            fprintf(stderr, "%s is in no README error table\n", hse_code_name((hse_code)c));
            CU_FAIL("a table code is not in the README");
        }
    }
}

static void test_table_sane(void)
{
    static const unsigned statuses[] = {400, 401, 403, 404, 405, 408, 409, 413,
                                        422, 429, 500, 501, 502, 503, 504, 507};
    CU_ASSERT_STRING_EQUAL(hse_code_name(HSE_NONE), "");
    CU_ASSERT_EQUAL(hse_code_from_name(""), HSE_NONE);
    CU_ASSERT_EQUAL(hse_code_from_name("NO_SUCH_CODE"), HSE_NONE);
    CU_ASSERT_EQUAL(hse_code_from_name(NULL), HSE_NONE);
    CU_ASSERT_STRING_EQUAL(hse_code_name(HSE_INVALID_FIELD), "INVALID_FIELD");
    CU_ASSERT_EQUAL(hse_code_http_status(HSE_FORBIDDEN), 403);
    for (int c = HSE_NONE + 1; c < HSE_CODE_COUNT; c++) {
        const char *name = hse_code_name((hse_code)c);
        CU_ASSERT(name[0] != '\0');
        CU_ASSERT(strlen(name) < sizeof((enroll_error *)0)->code);
        CU_ASSERT(strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == strlen(name));
        CU_ASSERT_EQUAL(hse_code_from_name(name), (hse_code)c); /* also: names are unique */
        CU_ASSERT(hse_code_meaning((hse_code)c)[0] != '\0');
        bool valid = false;
        for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++)
            valid |= hse_code_http_status((hse_code)c) == statuses[i];
        if (!valid)
            fprintf(stderr, "%s: HTTP status %u\n", name, hse_code_http_status((hse_code)c));
        CU_ASSERT(valid);
        for (int d = c + 1; d < HSE_CODE_COUNT; d++)
            CU_ASSERT(strcmp(name, hse_code_name((hse_code)d)) != 0);
    }
    enroll_error err;
    enroll_error_set(&err, HSE_DISK_FULL, "Id", "the disk is %s", "full");
    CU_ASSERT_STRING_EQUAL(err.code, "DISK_FULL");
    CU_ASSERT_EQUAL(err.code_id, HSE_DISK_FULL);
    CU_ASSERT_STRING_EQUAL(err.field, "Id");
    CU_ASSERT_STRING_EQUAL(err.message, "the disk is full");
    enroll_error_clear(&err);
    CU_ASSERT_EQUAL(err.code_id, HSE_NONE);
    CU_ASSERT_STRING_EQUAL(err.code, "");
}

/* The functions whose argument 1 (0-based) is a code. */
static const char *const code_takers[] = {"enroll_error_set",
                                          "error_list_add",
                                          "hsm_error_to_enroll",
                                          "api_error",
                                          "import_kek",
                                          "problem",
                                          "ADD",
                                          "ERR",
                                          "CFG_ERR",
                                          NULL};

/* Index after the string or character literal that starts at s[i]. */
static size_t skip_literal(const char *s, size_t i)
{
    char q = s[i++];
    while (s[i] != '\0' && s[i] != q)
        i += s[i] == '\\' && s[i + 1] != '\0' ? 2 : 1;
    return s[i] ? i + 1 : i;
}

/* Counts the upper-case string literals in the code argument of calls in text, and names them
 * (unless path is NULL). */
static int scan_text(const char *path, const char *s)
{
    int found = 0;
    size_t i = 0, len = strlen(s);
    while (i < len) {
        if (s[i] == '"' || s[i] == '\'') {
            i = skip_literal(s, i);
            continue;
        }
        if (s[i] == '/' && s[i + 1] == '*') {
            const char *end = strstr(s + i + 2, "*/");
            i = end ? (size_t)(end - s) + 2 : len;
            continue;
        }
        if (s[i] == '/' && s[i + 1] == '/') {
            const char *end = strchr(s + i, '\n');
            i = end ? (size_t)(end - s) : len;
            continue;
        }
        bool start = i == 0 || !(s[i - 1] == '_' || (s[i - 1] >= 'a' && s[i - 1] <= 'z') ||
                                 (s[i - 1] >= 'A' && s[i - 1] <= 'Z') ||
                                 (s[i - 1] >= '0' && s[i - 1] <= '9'));
        size_t name_len = 0;
        for (size_t k = 0; start && code_takers[k] != NULL && name_len == 0; k++) {
            size_t l = strlen(code_takers[k]);
            if (strncmp(s + i, code_takers[k], l) == 0 && s[i + l] == '(')
                name_len = l;
        }
        if (name_len == 0) {
            i++;
            continue;
        }
        /* walk the arguments; look inside argument 1 for "UPPER_CASE" */
        size_t j = i + name_len + 1;
        int depth = 0, arg = 0;
        while (j < len && depth >= 0) {
            char c = s[j];
            if (c == '"' && arg == 1) {
                size_t end = skip_literal(s, j);
                size_t k = j + 1;
                while (k < end - 1 && ((s[k] >= 'A' && s[k] <= 'Z') || s[k] == '_' ||
                                       (s[k] >= '0' && s[k] <= '9')))
                    k++;
                if (k == end - 1 && end - j > 3 && path != NULL) {
                    int line = 1;
                    for (size_t m = 0; m < j; m++)
                        line += s[m] == '\n';
                    fprintf(stderr, "%s:%d: a code as a string literal: %.*s\n", path, line,
                            (int)(end - j), s + j);
                }
                found += k == end - 1 && end - j > 3;
                j = end;
                continue;
            }
            if (c == '"' || c == '\'') {
                j = skip_literal(s, j);
                continue;
            }
            if (c == '(' || c == '[' || c == '{')
                depth++;
            else if (c == ')' || c == ']' || c == '}')
                depth--;
            else if (c == ',' && depth == 0)
                arg++;
            j++;
        }
        i += name_len;
    }
    return found;
}

static int scan_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        size_t l = strlen(e->d_name);
        if (S_ISDIR(st.st_mode)) {
            found += scan_dir(path);
        } else if (l > 2 &&
                   (strcmp(e->d_name + l - 2, ".c") == 0 || strcmp(e->d_name + l - 2, ".h") == 0)) {
            char *text = test_read_file(path, NULL);
            if (text != NULL)
                found += scan_text(path, text);
            free(text);
        }
    }
    closedir(d);
    return found;
}

static void test_no_literal_codes(void)
{
    /* the scanner itself finds one */
    CU_ASSERT_EQUAL(scan_text(NULL, "x; enroll_error_set(err, \"DISK_FULL\", NULL, \"m\");"), 1);
    CU_ASSERT_EQUAL(scan_text(NULL, "error_list_add(l, c ? \"A_B\" : \"C_D\", \"F\", \"m\");"), 2);
    CU_ASSERT_EQUAL(scan_text(NULL, "enroll_error_set(err, HSE_DISK_FULL, \"FIELD\", \"m\");"), 0);
    static const char *const dirs[] = {"formats", "batch", "ca",    "engine", "serve",
                                       "cli",     "fuzz",  "tests", "bench",  NULL};
    int found = 0;
    for (size_t i = 0; dirs[i] != NULL; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", HSMENROLL_SOURCE_DIR, dirs[i]);
        found += scan_dir(path);
    }
    CU_ASSERT_EQUAL(found, 0);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_table_sane),
        TEST_CASE(test_readme_both_ways),
        TEST_CASE(test_no_literal_codes),
        TEST_END,
    };
    return test_main("error_codes", cases, NULL, NULL);
}
