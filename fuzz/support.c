/* The fuzz targets' shared pieces (support.h): input copies, the checking configuration, and the
 * fixed job and CA a CA answer is read for. */
#include "support.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A P-256 request for CN=fuzz.example (dNSName fuzz.example, iPAddress 10.0.0.1); the seeds of
 * fuzz/corpus/keyfactor and fuzz/corpus/cfssl hold a certificate of its key, issued by CA_PEM. */
static const char CSR_PEM[] = "-----BEGIN CERTIFICATE REQUEST-----\n"
                              "MIIBLDCB0gIBADBAMRUwEwYDVQQDDAxmdXp6LmV4YW1wbGUxGjAYBgNVBAoMEUtl\n"
                              "eSBFeGFtcGxlLCBJbmMuMQswCQYDVQQGEwJVUzBZMBMGByqGSM49AgEGCCqGSM49\n"
                              "AwEHA0IABGlbbwZeoQ97OIZzxWuJnCOMD+/cWx4HfwJBz0q+kZ6Wj7+6+lePh/o8\n"
                              "8j+Tzzw4yMhUnX1FmXFjqQBKX93QC8ygMDAuBgkqhkiG9w0BCQ4xITAfMB0GA1Ud\n"
                              "EQQWMBSCDGZ1enouZXhhbXBsZYcECgAAATAKBggqhkjOPQQDAgNJADBGAiEAsGVN\n"
                              "2ghMv+rmKAhXYw9kWTYD11l7U2O998RUKJkfkWACIQCzjsePHRBqmn5btxjwpqKj\n"
                              "qGs/TrHgfm/2+QEN7Dw+Kw==\n"
                              "-----END CERTIFICATE REQUEST-----\n";

/* The CA's ChainFile: "Fuzz CA". */
static const char CA_PEM[] = "-----BEGIN CERTIFICATE-----\n"
                             "MIIBojCCAUegAwIBAgIUX9IzZMQMuPF42R/f6BNpHppOaQQwCgYIKoZIzj0EAwIw\n"
                             "JjEQMA4GA1UEAwwHRnV6eiBDQTESMBAGA1UECgwJaHNtZW5yb2xsMB4XDTI2MTEy\n"
                             "NDIyNTQyM1oXDTM2MTEyMTIyNTQyM1owJjEQMA4GA1UEAwwHRnV6eiBDQTESMBAG\n"
                             "A1UECgwJaHNtZW5yb2xsMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE3gZOqkeX\n"
                             "gS/EVi4HMQZSaNuuwdhY6DdxI+fEFI0uTjKHgcnAhrdM4RWHvKfYetoznBPC05nr\n"
                             "LMCNJxJbsJbroKNTMFEwHQYDVR0OBBYEFJ7y0sWVTS3idGV1Kz43UTHAL9wiMB8G\n"
                             "A1UdIwQYMBaAFJ7y0sWVTS3idGV1Kz43UTHAL9wiMA8GA1UdEwEB/wQFMAMBAf8w\n"
                             "CgYIKoZIzj0EAwIDSQAwRgIhAK5X9oZrDuisCNYnq5vNBDzLf6GznMZ1Ap8A2sRn\n"
                             "MnkZAiEAyZGc+ztmrXSVsZ5dVqCcLXAE3fECgWYWUmIov2W/A08=\n"
                             "-----END CERTIFICATE-----\n";

static void *must(void *p)
{
    if (p == NULL) {
        fprintf(stderr, "fuzz: out of memory\n");
        abort();
    }
    return p;
}

char *fuzz_cstring(const uint8_t *data, size_t size)
{
    char *s = must(malloc(size + 1));
    if (size > 0)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

void fuzz_lines_split(fuzz_lines *out, const uint8_t *data, size_t size, size_t max)
{
    memset(out, 0, sizeof *out);
    out->copy = fuzz_cstring(data, size);
    out->line = must(calloc(max, sizeof *out->line));
    out->len = must(calloc(max, sizeof *out->len));
    char *p = out->copy, *end = out->copy + size;
    while (out->count < max) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        out->line[out->count] = p;
        out->len[out->count] = nl ? (size_t)(nl - p) : (size_t)(end - p);
        out->count++;
        if (nl == NULL)
            break;
        *nl = '\0';
        p = nl + 1;
    }
}

void fuzz_lines_free(fuzz_lines *lines)
{
    free(lines->copy);
    free(lines->line);
    free(lines->len);
    memset(lines, 0, sizeof *lines);
}

#define CONFIG_PATH HSMENROLL_SOURCE_DIR "/tests/data/policy-config.json"

const config *fuzz_config(void)
{
    static config *cfg;
    if (cfg == NULL) {
        error_list errors = {0};
        cfg = config_load_file(CONFIG_PATH, &errors);
        if (cfg == NULL) {
            fprintf(stderr, "fuzz: %s does not load: %s\n", CONFIG_PATH,
                    errors.count ? errors.items[0].message : "?");
            abort();
        }
        error_list_free(&errors);
    }
    return cfg;
}

json_t *fuzz_config_document(void)
{
    return must(json_deep_copy(fuzz_config()->doc));
}

void fuzz_ca_answer(net_answer_fn answer, const uint8_t *data, size_t size)
{
    static X509_REQ *csr;
    static STACK_OF(X509) * chain;
    static const config_ca ca = {.id = 1, .name = "fuzz-ca", .logical = "fuzz-ca"};
    if (csr == NULL) {
        BIO *bio = must(BIO_new_mem_buf(CSR_PEM, -1));
        csr = must(PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL));
        BIO_free(bio);
        chain = must(net_parse_certificates(CA_PEM));
    }
    net_ca nc = {.cfg = &ca, .chain = chain};
    ca_submission sub = {.csr = csr};
    http_request req = {
        .status = 200, .response = fuzz_cstring(data, size), .response_len = size, .attempts = 1};
    answer(&nc, &sub, &req);
    ca_answer_clear(&sub.answer);
    req.status = 400;
    http_request_error(&req, ca.name, &sub.answer.err);
    free(req.response);
    ERR_clear_error();
}
