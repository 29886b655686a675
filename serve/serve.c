/* The HTTP side of `serve`: the libmicrohttpd daemon (a thread per connection, so injected latency
 * costs no other caller), request bodies up to a limit, authentication (Basic, or a client
 * certificate under mutual TLS), injected faults, and sending the JSON answers. */
#include "serve/serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "batch/log.h"
#include "batch/secret.h"
#include "engine/metrics_http.h"
#include "serve/internal.h"

#define API_PREFIX "/KeyfactorAPI"

/* One HTTP request being read. */
typedef struct call_state {
    char *body;
    size_t len, cap;
    bool too_large;
} call_state;

/* Counts an answer for /metrics: by status, and by error code when it has one. */
static void count_answer(server *srv, const api_answer *answer)
{
    unsigned st = answer->status < 600 ? answer->status : 0;
    atomic_fetch_add(&srv->status_counts[st], 1);
    const char *code = json_string_value(json_object_get(answer->body, "ErrorCode"));
    if (code == NULL)
        return;
    pthread_mutex_lock(&srv->codes_lock);
    int i = 0;
    while (i < SERVE_METRICS_CODES - 1 && srv->codes[i][0] != '\0' && strcmp(srv->codes[i], code))
        i++;
    if (srv->codes[i][0] == '\0')
        snprintf(srv->codes[i], sizeof srv->codes[i], "%s",
                 i == SERVE_METRICS_CODES - 1 ? "OTHER" : code);
    srv->code_counts[i]++;
    pthread_mutex_unlock(&srv->codes_lock);
}

static enum MHD_Result send_answer(server *srv, struct MHD_Connection *conn, api_answer *answer)
{
    count_answer(srv, answer);
    char *text = answer->no_body ? strdup("")
                 : answer->body  ? json_dumps(answer->body, JSON_COMPACT | JSON_ENCODE_ANY)
                                 : strdup("{}");
    json_decref(answer->body);
    answer->body = NULL;
    if (text == NULL)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    if (!answer->no_body)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "application/json; charset=utf-8");
    if (answer->product_version != NULL)
        MHD_add_response_header(resp, "x-keyfactor-product-version", answer->product_version);
    if (answer->status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Basic realm=\"hsmenroll\", charset=\"UTF-8\"");
    if (answer->retry_after != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, answer->retry_after);
    enum MHD_Result rc = MHD_queue_response(conn, answer->status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* The user a client certificate names (its CN), when mutual TLS is on and the certificate
 * verifies against the client CA. */
static const serve_user *certificate_user(server *srv, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (info == NULL || info->tls_session == NULL)
        return NULL;
    gnutls_session_t tls = (gnutls_session_t)info->tls_session;
    unsigned status = 0;
    if (gnutls_certificate_verify_peers2(tls, &status) != GNUTLS_E_SUCCESS || status != 0)
        return NULL;
    unsigned count = 0;
    const gnutls_datum_t *chain = gnutls_certificate_get_peers(tls, &count);
    if (chain == NULL || count == 0)
        return NULL;
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) != GNUTLS_E_SUCCESS)
        return NULL;
    char cn[256];
    size_t cn_len = sizeof cn;
    const serve_user *user = NULL;
    if (gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS &&
        gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &cn_len) ==
            GNUTLS_E_SUCCESS)
        user = serve_credentials_find(srv->creds, cn);
    gnutls_x509_crt_deinit(crt);
    return user;
}

/* The caller: a client certificate's user, or HTTP Basic credentials checked against the users
 * file; *tried is set when a password was checked (what failed-login throttling counts). */
static const serve_user *authenticate(server *srv, struct MHD_Connection *conn, bool *tried,
                                      char **tried_name)
{
    *tried = false;
    *tried_name = NULL;
    if (srv->opt.client_ca != NULL) {
        const serve_user *user = certificate_user(srv, conn);
        if (user != NULL)
            return user;
    }
    const char *header =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    char *name = NULL, *password = NULL;
    if (header == NULL)
        return NULL;
    *tried = true;
    if (basic_auth_parse(header, &name, &password) != 0)
        return NULL;
    const serve_user *user = serve_credentials_check(srv->creds, name, password);
    OPENSSL_cleanse(password, strlen(password));
    free(password);
    *tried_name = name; /* the guard counts failures per name */
    return user;
}

#define QUERY_MAX 32

typedef struct query_args {
    api_param items[QUERY_MAX];
    size_t count;
} query_args;

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    query_args *args = cls;
    if (args->count < QUERY_MAX)
        args->items[args->count++] = (api_param){key, value ? value : ""};
    return MHD_YES;
}

/* --rate-limit: whether one more API request fits the rate now (GCRA, tolerating a burst of
 * three); if not, *retry_after_s gets whole seconds to wait ("0": under half a second). */
static bool rate_admit(server *srv, long *retry_after_s)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long now =
        (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
    unsigned long long interval = (unsigned long long)(1e9 / srv->opt.rate_limit);
    pthread_mutex_lock(&srv->rate_lock);
    bool ok = srv->rate_next_ns <= now + 2 * interval;
    if (ok)
        srv->rate_next_ns = (srv->rate_next_ns > now ? srv->rate_next_ns : now) + interval;
    else
        *retry_after_s =
            (long)((srv->rate_next_ns - 2 * interval - now + 500000000ull) / 1000000000ull);
    pthread_mutex_unlock(&srv->rate_lock);
    atomic_fetch_add(ok ? &srv->rate_admitted : &srv->rate_limited, 1);
    return ok;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    server *srv = cls;
    call_state *cs = *con_cls;
    if (cs == NULL) {
        cs = calloc(1, sizeof *cs);
        if (cs == NULL)
            return MHD_NO;
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (cs->too_large || cs->len + n > srv->opt.max_body) {
            cs->too_large = true; /* read and dropped; answered 413 at the end */
            return MHD_YES;
        }
        if (cs->len + n + 1 > cs->cap) {
            size_t cap = (cs->len + n + 1) * 2;
            if (cap > srv->opt.max_body + 1)
                cap = srv->opt.max_body + 1;
            char *grown = realloc(cs->body, cap);
            if (grown == NULL)
                return MHD_NO;
            cs->body = grown;
            cs->cap = cap;
        }
        memcpy(cs->body + cs->len, upload_data, n);
        cs->len += n;
        cs->body[cs->len] = '\0';
        return MHD_YES;
    }

    /* The whole request is here: no deadline while it is answered. */
    const union MHD_ConnectionInfo *socket_info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (socket_info != NULL)
        serve_guard_request_read(srv->guard, socket_info->socket_context);
    api_answer answer = {.status = MHD_HTTP_OK};
    if (srv->opt.latency_ms > 0)
        sleep_ms(srv->opt.latency_ms);
    if (srv->opt.fail_rate > 0 && serve_random(srv) < srv->opt.fail_rate) {
        if (serve_random(srv) < 0.5)
            return MHD_NO; /* the connection is reset with no answer */
        api_error(&answer, HSE_SERVICE_UNAVAILABLE, "injected failure (--fail-rate)");
        answer.retry_after = "0";
        return send_answer(srv, conn, &answer);
    }
    long quota_wait = 0;
    if (srv->opt.rate_limit > 0 && !rate_admit(srv, &quota_wait)) {
        char quota_after[32];
        snprintf(quota_after, sizeof quota_after, "%ld", quota_wait);
        api_error(&answer, HSE_RATE_LIMITED, "more than %g requests per second (--rate-limit)",
                  srv->opt.rate_limit);
        answer.retry_after = quota_after;
        return send_answer(srv, conn, &answer);
    }
    if (serve_public_path(url)) { /* the CRL and OCSP: no authentication (serve/revocation.c) */
        if (cs->too_large) {
            api_error(&answer, HSE_BODY_TOO_LARGE, "the request body is larger than %zu bytes",
                      srv->opt.max_body);
            return send_answer(srv, conn, &answer);
        }
        return serve_public_answer(srv, conn, method, url, cs->body ? cs->body : "", cs->len);
    }
    if (strncmp(url, API_PREFIX, sizeof API_PREFIX - 1) != 0 ||
        (url[sizeof API_PREFIX - 1] != '/' && url[sizeof API_PREFIX - 1] != '\0')) {
        api_error(&answer, HSE_NOT_FOUND, "no such resource: %.200s", url);
        return send_answer(srv, conn, &answer);
    }
    query_args args = {.count = 0};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &args);
    api_call call = {
        .method = method,
        .query = args.items,
        .query_count = args.count,
        .api_version =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-keyfactor-api-version"),
        .path = url + sizeof API_PREFIX - 1,
        .body = cs->body ? cs->body : "",
        .body_len = cs->len,
        .certificate_format =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-certificateformat"),
        .requested_with =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-keyfactor-requested-with"),
        .content_type =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
    };
    const union MHD_ConnectionInfo *client =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *client_addr = client ? client->client_addr : NULL;
    long wait = serve_guard_login_wait(srv->guard, client_addr);
    char retry_after[32];
    bool tried = false;
    if (wait > 0) { /* locked out: not even a password hash is computed */
        snprintf(retry_after, sizeof retry_after, "%ld", wait);
        api_error(&answer, HSE_TOO_MANY_FAILED_LOGINS,
                  "too many failed logins from this address: try again in %ld s", wait);
        answer.retry_after = retry_after;
        return send_answer(srv, conn, &answer);
    }
    char *tried_name = NULL;
    call.caller.user = authenticate(srv, conn, &tried, &tried_name);
    if (tried)
        serve_guard_login_result(srv->guard, client_addr, tried_name, call.caller.user != NULL);
    free(tried_name);
    if (call.caller.user == NULL) {
        api_error(&answer, HSE_UNAUTHORIZED,
                  "authentication required: HTTP Basic with a user of the credentials file");
    } else if (cs->too_large) {
        api_error(&answer, HSE_BODY_TOO_LARGE, "the request body is larger than %zu bytes",
                  srv->opt.max_body);
    } else {
        atomic_fetch_add(&srv->in_flight, 1);
        api_dispatch(srv, &call, &answer);
        atomic_fetch_sub(&srv->in_flight, 1);
    }
    return send_answer(srv, conn, &answer);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    server *srv = cls;
    (void)toe;
    const union MHD_ConnectionInfo *socket_info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (socket_info != NULL)
        serve_guard_answered(srv->guard, socket_info->socket_context);
    call_state *cs = *con_cls;
    if (cs == NULL)
        return;
    free(cs->body);
    free(cs);
    *con_cls = NULL;
}

/* Connections opened and closed: their request deadlines. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = info ? serve_guard_opened(srv->guard, info->connect_fd) : NULL;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        serve_guard_closed(srv->guard, *socket_context);
        *socket_context = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    log_verbose("http: %s", line);
}

static char *read_text_file(const char *path, enroll_error *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        enroll_error_set(err, HSE_SERVE_TLS, NULL, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    size_t n;
    while (text != NULL && (n = fread(text + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char *grown = realloc(text, cap * 2);
            if (grown == NULL) {
                free(text);
                text = NULL;
                break;
            }
            text = grown;
            cap *= 2;
        }
    }
    fclose(f);
    if (text != NULL)
        text[len] = '\0';
    return text;
}

static int parse_listen(const char *listen, struct sockaddr_in *addr, enroll_error *err)
{
    char host[64];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host) {
        enroll_error_set(err, HSE_USAGE, NULL, "--listen takes ADDR:PORT, e.g. 127.0.0.1:8080");
        return -1;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    if (*end != '\0' || port < 0 || port > 65535 ||
        inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &addr->sin_addr) != 1) {
        enroll_error_set(err, HSE_USAGE, NULL,
                         "--listen %s: expected an IPv4 address and a port from 0 to 65535",
                         listen);
        return -1;
    }
    addr->sin_port = htons((uint16_t)port);
    return 0;
}

static int open_cas(server *srv, enroll_error *err)
{
    const config *cfg = srv->current->cfg;
    hsm_context *hsm = &srv->setup->hsm;
    srv->cas = calloc(cfg->ca_count, sizeof *srv->cas);
    srv->ca_open = calloc(cfg->ca_count, sizeof *srv->ca_open);
    srv->ca_token = calloc(cfg->ca_count, sizeof *srv->ca_token);
    srv->pools = calloc(hsm->token_count, sizeof *srv->pools);
    if (!srv->cas || !srv->ca_open || !srv->ca_token || !srv->pools) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    for (size_t t = 0; t < hsm->token_count; t++)
        pthread_mutex_init(&srv->pools[t].lock, NULL);
    for (size_t i = 0; i < cfg->ca_count; i++) {
        const config_ca *ca = &cfg->cas[i];
        if (ca->type != CA_TYPE_LOCAL)
            continue;
        int t = hsm_context_token_index(hsm, ca->token ? ca->token : "");
        if (t < 0) {
            enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "CA \"%s\": its token is not open",
                             ca->name);
            return -1;
        }
        hsm_session s;
        hsm_context_login_session(hsm, (size_t)t, &s);
        if ((srv->cas[i] = local_ca_open(ca->home, &s, err)) == NULL)
            return -1;
        srv->ca_open[i] = true;
        srv->ca_token[i] = (size_t)t;
    }
    api_replays_load(srv);
    return 0;
}

/* The PEM password callback: the password given, never a prompt. */
static int key_password(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    if (u == NULL)
        return -1;
    size_t n = strlen(u);
    if (n > (size_t)size)
        return -1;
    memcpy(buf, u, n);
    return (int)n;
}

/* The TLS key of opt as an unencrypted PKCS#8 PEM for libmicrohttpd: read, decrypted with its
 * password when it is encrypted (hsmenroll's own PEM bundles are), and checked against the
 * certificate, so that a key that cannot be used is said so, not taken for a listen failure. */
static char *load_tls_key(const serve_options *opt, const char *cert_pem, enroll_error *err)
{
    char *pem = read_text_file(opt->tls_key, err), *password = NULL, *out = NULL;
    if (pem == NULL)
        return NULL;
    bool encrypted = strstr(pem, "ENCRYPTED") != NULL;
    bool given = opt->tls_key_password_env != NULL || opt->tls_key_password_file != NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    BIO *in = NULL, *mem = NULL;
    if (encrypted && !given) {
        enroll_error_set(err, HSE_SERVE_TLS, NULL,
                         "the TLS key %s is encrypted: give its password with "
                         "--tls-key-password-env VAR or --tls-key-password-file FILE",
                         opt->tls_key);
        goto done;
    }
    if (given && (password = secret_read(opt->tls_key_password_env, opt->tls_key_password_file,
                                         "TLS key password", err)) == NULL)
        goto done;
    in = BIO_new_mem_buf(pem, -1);
    key = in ? PEM_read_bio_PrivateKey(in, NULL, key_password, password) : NULL;
    if (key == NULL) {
        enroll_error_set(err, HSE_SERVE_TLS, NULL, "the TLS key %s cannot be read%s", opt->tls_key,
                         encrypted ? ": a wrong password?" : " (not a PEM private key)");
        goto done;
    }
    BIO_free(in);
    in = BIO_new_mem_buf(cert_pem, -1);
    cert = in ? PEM_read_bio_X509(in, NULL, key_password, NULL) : NULL;
    if (cert == NULL) {
        enroll_error_set(err, HSE_SERVE_TLS, NULL,
                         "the TLS certificate %s is not a PEM certificate", opt->tls_cert);
        goto done;
    }
    if (X509_check_private_key(cert, key) != 1) {
        enroll_error_set(err, HSE_SERVE_TLS, NULL,
                         "the TLS key %s is not the key of the certificate %s", opt->tls_key,
                         opt->tls_cert);
        goto done;
    }
    mem = BIO_new(BIO_s_secmem());
    char *data;
    long len;
    if (mem != NULL && PEM_write_bio_PKCS8PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL) == 1 &&
        (len = BIO_get_mem_data(mem, &data)) > 0 && (out = malloc((size_t)len + 1)) != NULL) {
        memcpy(out, data, (size_t)len);
        out[len] = '\0';
    } else {
        enroll_error_set(err, HSE_SERVE_TLS, NULL, "the TLS key %s cannot be used", opt->tls_key);
    }
done:
    BIO_free(in);
    BIO_free(mem);
    X509_free(cert);
    EVP_PKEY_free(key);
    secret_free(password);
    OPENSSL_cleanse(pem, strlen(pem));
    free(pem);
    return out;
}

/* serve's /metrics: answers by status and error code, calls being answered, 429s of
 * --rate-limit. */
static void render_metrics(FILE *out, void *arg)
{
    server *srv = arg;
    fputs("# HELP hsmenroll_serve_answers_total API answers, by HTTP status.\n"
          "# TYPE hsmenroll_serve_answers_total counter\n",
          out);
    for (unsigned st = 0; st < 600; st++) {
        long long n = atomic_load(&srv->status_counts[st]);
        if (n > 0)
            fprintf(out, "hsmenroll_serve_answers_total{status=\"%u\"} %lld\n", st, n);
    }
    fputs("# HELP hsmenroll_serve_errors_total API answers with an error, by ErrorCode.\n"
          "# TYPE hsmenroll_serve_errors_total counter\n",
          out);
    pthread_mutex_lock(&srv->codes_lock);
    for (int i = 0; i < SERVE_METRICS_CODES && srv->codes[i][0] != '\0'; i++)
        fprintf(out, "hsmenroll_serve_errors_total{code=\"%s\"} %lld\n", srv->codes[i],
                srv->code_counts[i]);
    pthread_mutex_unlock(&srv->codes_lock);
    fprintf(out,
            "# HELP hsmenroll_serve_in_flight API calls being answered now.\n"
            "# TYPE hsmenroll_serve_in_flight gauge\nhsmenroll_serve_in_flight %ld\n"
            "# HELP hsmenroll_serve_rate_limited_total Requests answered 429 by --rate-limit.\n"
            "# TYPE hsmenroll_serve_rate_limited_total counter\n"
            "hsmenroll_serve_rate_limited_total %lld\n",
            atomic_load(&srv->in_flight), (long long)atomic_load(&srv->rate_limited));
}

server *server_start(const serve_options *opt, engine_setup *s, enroll_error *err)
{
    server *srv = calloc(1, sizeof *srv);
    if (srv == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    srv->opt = *opt;
    if (srv->opt.max_body == 0)
        srv->opt.max_body = 1u << 20;
    if (srv->opt.connection_timeout == 0)
        srv->opt.connection_timeout = 30;
    if (srv->opt.max_connections == 0)
        srv->opt.max_connections = 512;
    if (srv->opt.listen == NULL)
        srv->opt.listen = "127.0.0.1:8080";
    srv->setup = s;
    pthread_rwlock_init(&srv->config_lock, NULL);
    pthread_mutex_init(&srv->rng_lock, NULL);
    pthread_mutex_init(&srv->replay_lock, NULL);
    srv->replays = json_object();
    pthread_mutex_init(&srv->rate_lock, NULL);
    pthread_mutex_init(&srv->codes_lock, NULL);
    if (RAND_bytes((unsigned char *)&srv->rng, sizeof srv->rng) != 1 || srv->rng == 0)
        srv->rng = 0x9e3779b97f4a7c15ull;
    unsigned char run[8] = {0};
    if (RAND_bytes(run, sizeof run) != 1)
        memcpy(run, &srv->rng, sizeof run);
    snprintf(srv->run_id, sizeof srv->run_id, "serve-%02x%02x%02x%02x%02x%02x%02x%02x", run[0],
             run[1], run[2], run[3], run[4], run[5], run[6], run[7]);
    atomic_init(&srv->next_id, 1);
    atomic_init(&srv->next_pending, 1000000);

    struct sockaddr_in addr;
    if (parse_listen(srv->opt.listen, &addr, err) != 0)
        goto fail;
    if ((srv->creds = serve_credentials_load(opt->credentials, err)) == NULL)
        goto fail;
    srv->current = serve_config_new(s->cfg);
    if (srv->current == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        goto fail;
    }
    s->cfg = NULL; /* the server owns it now, and may replace it */
    if (open_cas(srv, err) != 0 || (srv->revocation = serve_revocation_open(srv, err)) == NULL)
        goto fail;

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if ((opt->tls_cert == NULL) != (opt->tls_key == NULL)) {
        enroll_error_set(err, HSE_USAGE, NULL, "--tls-cert and --tls-key go together");
        goto fail;
    }
    bool tls = opt->tls_cert != NULL && opt->tls_key != NULL;
    if (tls) {
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            enroll_error_set(err, HSE_SERVE_TLS, NULL, "this libmicrohttpd has no TLS support");
            goto fail;
        }
        flags |= MHD_USE_TLS;
        if ((srv->tls_cert_pem = read_text_file(opt->tls_cert, err)) == NULL ||
            (srv->tls_key_pem = load_tls_key(opt, srv->tls_cert_pem, err)) == NULL)
            goto fail;
        if (opt->client_ca != NULL &&
            (srv->client_ca_pem = read_text_file(opt->client_ca, err)) == NULL)
            goto fail;
    } else if (opt->client_ca != NULL) {
        enroll_error_set(err, HSE_USAGE, NULL, "--client-ca needs --tls-cert and --tls-key");
        goto fail;
    }
    struct MHD_OptionItem tls_options[] = {
        {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, srv->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key_pem},
        {srv->client_ca_pem ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0, srv->client_ca_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    srv->guard = serve_guard_new(srv->opt.request_timeout, srv->opt.max_login_failures, !tls);
    if (srv->guard == NULL) {
        enroll_error_set(err, HSE_SERVE_LISTEN, NULL, "cannot start the request watchdog");
        goto fail;
    }
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        srv, MHD_OPTION_CONNECTION_TIMEOUT, srv->opt.connection_timeout,
        MHD_OPTION_CONNECTION_LIMIT, srv->opt.max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)64 * 1024, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv, MHD_OPTION_ARRAY, tls_options,
        MHD_OPTION_END);
    if (srv->daemon == NULL) {
        enroll_error_set(err, HSE_SERVE_LISTEN, NULL, "cannot listen on %s (address in use?)",
                         srv->opt.listen);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    char host[64];
    inet_ntop(AF_INET, &addr.sin_addr, host, sizeof host);
    snprintf(srv->url, sizeof srv->url, "%s://%s:%u%s", tls ? "https" : "http", host,
             info ? (unsigned)info->port : (unsigned)ntohs(addr.sin_port), API_PREFIX);
    if (srv->opt.metrics_listen != NULL) {
        srv->metrics = metrics_http_start(srv->opt.metrics_listen, render_metrics, srv, err);
        if (srv->metrics == NULL)
            goto fail;
        log_info("metrics at http://%.*s:%u/metrics",
                 (int)(strrchr(srv->opt.metrics_listen, ':') - srv->opt.metrics_listen),
                 srv->opt.metrics_listen, metrics_http_port(srv->metrics));
    }
    return srv;
fail:
    server_stop(srv);
    return NULL;
}

const char *server_url(const server *srv)
{
    return srv->url;
}

void server_stop(server *srv)
{
    if (srv != NULL && srv->opt.rate_limit > 0)
        log_info("--rate-limit %g: %lld API requests taken, %lld answered 429", srv->opt.rate_limit,
                 (long long)atomic_load(&srv->rate_admitted),
                 (long long)atomic_load(&srv->rate_limited));
    if (srv == NULL)
        return;
    metrics_http_stop(srv->metrics);
    if (srv->daemon != NULL)
        MHD_stop_daemon(srv->daemon);
    serve_guard_free(srv->guard);
    serve_revocation_close(srv->revocation);
    if (srv->current != NULL) {
        for (size_t i = 0; i < srv->current->cfg->ca_count; i++)
            if (srv->ca_open != NULL && srv->ca_open[i])
                local_ca_close(srv->cas[i]);
        serve_config_free(srv->current);
    }
    if (srv->pools != NULL) {
        for (size_t t = 0; t < srv->setup->hsm.token_count; t++) {
            for (size_t k = 0; k < srv->pools[t].free_count; k++)
                hsm_session_close(&srv->pools[t].free_list[k]);
            free(srv->pools[t].free_list);
            pthread_mutex_destroy(&srv->pools[t].lock);
        }
    }
    free(srv->pools);
    free(srv->cas);
    free(srv->ca_open);
    free(srv->ca_token);
    serve_credentials_free(srv->creds);
    if (srv->tls_key_pem != NULL)
        OPENSSL_cleanse(srv->tls_key_pem, strlen(srv->tls_key_pem));
    free(srv->tls_key_pem);
    free(srv->tls_cert_pem);
    free(srv->client_ca_pem);
    pthread_rwlock_destroy(&srv->config_lock);
    pthread_mutex_destroy(&srv->rng_lock);
    pthread_mutex_destroy(&srv->replay_lock);
    json_decref(srv->replays);
    pthread_mutex_destroy(&srv->rate_lock);
    pthread_mutex_destroy(&srv->codes_lock);
    free(srv);
}
