/* Fuzz target: the run journal reader (batch/journal.h journal_read) on a file made from the
 * input: each input line becomes a record line with its CRC-32 put in front, so the fuzzer reaches
 * the JSON; a line starting with '!' goes in raw (torn and corrupt records, wrong checksums). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "batch/journal.h"
#include "support.h"

/* Counts the records; a header without a RunId stops the reading with an error, as --resume's
 * visitor does, so that path runs too. */
static int visit(void *ctx, const char *type, json_t *record)
{
    size_t *records = ctx;
    (*records)++;
    if (strcmp(type, "H") == 0 && json_object_get(record, "RunId") == NULL)
        return -1;
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-journal", 0);
    if (fd < 0)
        return 0;
    fuzz_lines lines;
    fuzz_lines_split(&lines, data, size, 256);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < lines.count; i++) {
        const char *text = lines.line[i];
        size_t len = lines.len[i];
        bool last = i + 1 == lines.count;
        if (last && len == 0)
            break; /* the input ended with a newline */
        if (len > 0 && text[0] == '!') {
            rc = write_all(fd, text + 1, len - 1);
        } else {
            char crc[16];
            snprintf(crc, sizeof crc, "%08lx ",
                     crc32(0L, (const Bytef *)text, (uInt)len) & 0xffffffffUL);
            rc = write_all(fd, crc, 9) || write_all(fd, text, len);
        }
        if (rc == 0 && !last)
            rc = write_all(fd, "\n", 1);
    }
    fuzz_lines_free(&lines);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    size_t records = 0;
    off_t good = 0, torn = 0;
    enroll_error err;
    enroll_error_clear(&err);
    if (rc == 0)
        journal_read(path, visit, &records, &good, &torn, &err);
    close(fd);
    return 0;
}
