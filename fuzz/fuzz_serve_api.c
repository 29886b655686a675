/* Fuzz target: `serve`'s handling of an API call (serve/internal.h api_dispatch) as the
 * HTTP plumbing hands it over, up to where an HSM would be needed: the input is
 * "METHOD PATH\n", header lines ("Name: value"), an empty line, then the body. No CA is served,
 * so a good enrollment ends as CA_NOT_SERVED; patterns are added to a fresh configuration. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "serve/internal.h"
#include "support.h"

/* "fleet" may use every pattern of fuzz_config() and add patterns; "reader" may do neither. */
static serve_credentials *credentials(void)
{
    static serve_credentials *creds;
    if (creds != NULL)
        return creds;
    char path[] = "/tmp/hsmenroll-fuzz-creds-XXXXXX";
    int fd = mkstemp(path);
    char *hash = serve_password_hash("fuzz-password", 1000);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL || hash == NULL) {
        fprintf(stderr, "fuzz_serve_api: cannot write a credentials file\n");
        abort();
    }
    fprintf(f,
            "{\"Users\":[{\"Name\":\"fleet\",\"Password\":\"%s\",\"Roles\":[\"Fleet Operators\","
            "\"Power Users\"],\"Permissions\":[\"enrollment_pattern/modify\"]},"
            "{\"Name\":\"reader\",\"Password\":\"%s\"}]}",
            hash, hash);
    fclose(f);
    free(hash);
    enroll_error err;
    creds = serve_credentials_load(path, &err);
    unlink(path);
    if (creds == NULL) {
        fprintf(stderr, "fuzz_serve_api: %s\n", err.message);
        abort();
    }
    return creds;
}

/* The value of header name among the "Name: value" lines of block, or NULL; the last wins. */
static char *header(char *block, const char *name)
{
    char *found = NULL;
    size_t n = strlen(name);
    for (char *line = block; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            found = line + n + 1;
            while (*found == ' ')
                found++;
        }
        line = nl ? nl + 1 : NULL;
    }
    return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstring(data, size);
    /* The request line and headers end at the first empty line; the body is the rest, bytes. */
    char *body = strstr(text, "\n\n");
    size_t body_len = 0;
    if (body != NULL) {
        *body = '\0';
        body += 2;
        body_len = size - (size_t)(body - text);
    }
    char *headers = strchr(text, '\n');
    if (headers != NULL)
        *headers++ = '\0';
    char *method = text, *path = strchr(text, ' ');
    if (path != NULL)
        *path++ = '\0';
    /* Cut the header block into NUL-terminated values once every name has been looked up. */
    char *format = header(headers, "x-certificateformat");
    char *with = header(headers, "x-keyfactor-requested-with");
    char *type = header(headers, "content-type");
    char *auth = header(headers, "authorization");
    for (char *p = headers; p != NULL && (p = strchr(p, '\n')) != NULL;)
        *p++ = '\0';

    serve_credentials *creds = credentials();
    const serve_user *user = serve_credentials_find(creds, "fleet");
    if (auth != NULL) {
        char *name = NULL, *password = NULL;
        user = NULL;
        if (basic_auth_parse(auth, &name, &password) == 0) {
            user = serve_credentials_find(creds, name);
            OPENSSL_cleanse(password, strlen(password));
        }
        free(password);
        free(name);
    }
    if (user != NULL) {
        error_list errors = {0};
        json_t *doc = fuzz_config_document();
        config *cfg = config_load_json(doc, "/nonexistent/hsmenroll-fuzz", "fuzz", &errors);
        json_decref(doc);
        error_list_free(&errors);
        server srv = {.creds = creds, .opt = {.max_body = 1 << 20}};
        pthread_rwlock_init(&srv.config_lock, NULL);
        srv.current = cfg ? serve_config_new(cfg) : NULL;
        srv.ca_open = cfg ? calloc(cfg->ca_count + 1, sizeof *srv.ca_open) : NULL;
        if (srv.current == NULL || srv.ca_open == NULL) {
            fprintf(stderr, "fuzz_serve_api: the configuration does not load\n");
            abort();
        }
        api_call call = {.method = method,
                         .path = path ? path : "",
                         .body = body ? body : "",
                         .body_len = body_len,
                         .certificate_format = format,
                         .requested_with = with,
                         .content_type = type,
                         .caller = {.user = user}};
        api_answer answer = {.status = 200};
        api_dispatch(&srv, &call, &answer);
        free(answer.body ? json_dumps(answer.body, JSON_COMPACT) : NULL);
        json_decref(answer.body);
        serve_config_free(srv.current);
        free(srv.ca_open);
        pthread_rwlock_destroy(&srv.config_lock);
    }
    free(text);
    return 0;
}
