/* What the fuzz targets share: the libFuzzer entry point each defines, copies of the input as C
 * strings, the configuration requests are checked against, and a CA answer fed to a connector's
 * reader. Built into the libFuzzer binaries and into the corpus replays alike. */
#ifndef HSMENROLL_FUZZ_SUPPORT_H
#define HSMENROLL_FUZZ_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "batch/config.h"
#include "ca/answer.h"

/* Defined by each fuzz/fuzz_<name>.c; called by libFuzzer, or by replay_main.c per file. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a NUL-terminated string (malloc'd; a NUL inside ends it early). Aborts when out of
 * memory, which is not what a target looks for. */
char *fuzz_cstring(const uint8_t *data, size_t size);

/* The input cut into lines at '\n' (no '\n' kept; lines point into a copy owned by the list).
 * At most max lines; what follows them is ignored. An empty input is one empty line. */
typedef struct fuzz_lines {
    char *copy;
    char **line;
    size_t *len;
    size_t count;
} fuzz_lines;
void fuzz_lines_split(fuzz_lines *out, const uint8_t *data, size_t size, size_t max);
void fuzz_lines_free(fuzz_lines *lines);

/* tests/data/policy-config.json, loaded once (roles, patterns with regexes, defaults, metadata
 * fields, key policies): what request lines and API calls are checked against. Aborts when it
 * does not load. */
const config *fuzz_config(void);
/* The same document, parsed anew (a new reference). */
json_t *fuzz_config_document(void);

/* Feeds data to answer() as the body of a CA's HTTP answer to a job whose CSR is a fixed P-256
 * request (the answer's certificates match it when they carry its key), on a CA whose ChainFile
 * holds one certificate; then to http_request_error as the body of a refusal. Frees what the
 * job got. */
void fuzz_ca_answer(net_answer_fn answer, const uint8_t *data, size_t size);

#endif
