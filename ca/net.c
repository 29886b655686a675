/* The network connectors' common part: endpoint and credentials from the CA entry, submission
 * through the run's event loop, and certificates from an answer matched to the submission's CSR. */
#include "ca/net.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "formats/base64.h"
#include "formats/san.h"
#include "batch/jsonobj.h"
#include "batch/log.h"
#include "batch/secret.h"

static const char *entry_string(const config_ca *cfg, const char *key)
{
    return json_string_value(jobj_get(cfg->raw, key));
}

/* A path of the configuration, taken from the configuration file's directory when relative. */
static char *config_path(const config *cfg, const char *path)
{
    if (path == NULL)
        return NULL;
    if (path[0] == '/' || cfg->base_dir == NULL)
        return strdup(path);
    size_t n = strlen(cfg->base_dir) + strlen(path) + 2;
    char *out = malloc(n);
    if (out != NULL)
        snprintf(out, n, "%s/%s", cfg->base_dir, path);
    return out;
}

static long entry_number(const config_ca *cfg, const char *key, long fallback, long min, long max,
                         const char *where, enroll_error *err, int *bad)
{
    json_t *v = jobj_get(cfg->raw, key);
    if (v == NULL)
        return fallback;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "%s.%s: must be a number from %ld to %ld",
                         where, key, min, max);
        *bad = 1;
        return fallback;
    }
    return (long)json_integer_value(v);
}

/* The Authorization header value from the entry's Auth object: Basic (User or UserEnv/UserFile,
 * PasswordEnv/PasswordFile) or Bearer (TokenEnv/TokenFile). Secrets never come from the file
 * itself. */
static int read_authorization(net_ca *nc, const char *where, enroll_error *err)
{
    json_t *auth = jobj_get(nc->cfg->raw, "Auth");
    if (auth == NULL)
        return 0;
    static const char *const keys[] = {"Type",     "User",        "UserEnv",
                                       "UserFile", "PasswordEnv", "PasswordFile",
                                       "TokenEnv", "TokenFile",   NULL};
    /* The first key that is unknown or not a string, in the object's order; of two casings of
     * a key, the first is taken. */
    jobj_key_check unknown = {0};
    while (jobj_check_keys(auth, keys, &unknown) && unknown.known_index >= 0)
        ;
    bool has_unknown = unknown.key != NULL && unknown.known_index < 0;
    const char *k;
    json_t *v;
    size_t position = 0;
    json_object_foreach(auth, k, v)
    {
        if (has_unknown && position == unknown.position)
            break;
        if (!json_is_string(v)) {
            enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "%s.Auth.%s: must be a string", where,
                             k);
            return -1;
        }
        position++;
    }
    if (has_unknown) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "%s.Auth.%s: unknown key", where,
                         unknown.key);
        return -1;
    }
    const char *type = json_string_value(jobj_get(auth, "Type"));
    char *(*read)(const char *, const char *, const char *, enroll_error *) = secret_read;
    if (type != NULL && strcasecmp(type, "Bearer") == 0) {
        char *token = read(json_string_value(jobj_get(auth, "TokenEnv")),
                           json_string_value(jobj_get(auth, "TokenFile")), "bearer token", err);
        if (token == NULL)
            return -1;
        size_t n = strlen(token) + 8;
        nc->authorization = malloc(n);
        if (nc->authorization != NULL)
            snprintf(nc->authorization, n, "Bearer %s", token);
        secret_free(token);
        return nc->authorization ? 0 : -1;
    }
    if (type == NULL || strcasecmp(type, "Basic") != 0) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL,
                         "%s.Auth.Type: must be \"Basic\" or \"Bearer\"", where);
        return -1;
    }
    char *user = NULL;
    const char *plain_user = json_string_value(jobj_get(auth, "User"));
    if (plain_user != NULL)
        user = strdup(plain_user);
    else
        user = read(json_string_value(jobj_get(auth, "UserEnv")),
                    json_string_value(jobj_get(auth, "UserFile")), "user name", err);
    if (user == NULL)
        return -1;
    char *password = read(json_string_value(jobj_get(auth, "PasswordEnv")),
                          json_string_value(jobj_get(auth, "PasswordFile")), "password", err);
    if (password == NULL) {
        secret_free(user);
        return -1;
    }
    size_t n = strlen(user) + strlen(password) + 2;
    char *pair = malloc(n);
    char *encoded = NULL;
    if (pair != NULL) {
        snprintf(pair, n, "%s:%s", user, password);
        encoded = base64_encode((const unsigned char *)pair, strlen(pair));
        OPENSSL_cleanse(pair, n);
        free(pair);
    }
    secret_free(user);
    secret_free(password);
    if (encoded == NULL)
        return -1;
    n = strlen(encoded) + 8;
    nc->authorization = malloc(n);
    if (nc->authorization != NULL)
        snprintf(nc->authorization, n, "Basic %s", encoded);
    secret_free(encoded);
    return nc->authorization ? 0 : -1;
}

static int read_chain_file(net_ca *nc, const char *where, enroll_error *err)
{
    char *path = config_path(nc->env->cfg, entry_string(nc->cfg, "ChainFile"));
    if (path == NULL)
        return 0;
    BIO *bio = BIO_new_file(path, "r");
    if (bio != NULL) {
        nc->chain = sk_X509_new_null();
        X509 *cert;
        while (nc->chain != NULL && (cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
            sk_X509_push(nc->chain, cert);
        ERR_clear_error();
        BIO_free(bio);
    }
    if (nc->chain == NULL || sk_X509_num(nc->chain) == 0) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL, "%s.ChainFile: no certificate in %s", where,
                         path);
        free(path);
        return -1;
    }
    free(path);
    return 0;
}

int net_ca_open(net_ca *nc, const config_ca *cfg, ca_env *env, enroll_error *err)
{
    memset(nc, 0, sizeof *nc);
    nc->cfg = cfg;
    nc->env = env;
    char where[160];
    snprintf(where, sizeof where, "CertificateAuthorities[%zu]", (size_t)(cfg - env->cfg->cas));
    nc->base_url = strdup(cfg->url);
    if (nc->base_url == NULL)
        return -1;
    for (size_t n = strlen(nc->base_url); n > 0 && nc->base_url[n - 1] == '/'; n--)
        nc->base_url[n - 1] = '\0';
    int bad = 0;
    nc->endpoint.timeout_ms =
        1000 * entry_number(cfg, "TimeoutSeconds", 60, 1, 3600, where, err, &bad);
    nc->endpoint.retries = (int)entry_number(cfg, "Retries", 5, 0, 100, where, err, &bad);
    nc->endpoint.retry_delay_ms =
        entry_number(cfg, "RetryDelayMs", 250, 1, 60000, where, err, &bad);
    nc->endpoint.max_in_flight =
        (int)entry_number(cfg, "MaxInFlight", 0, 1, 100000, where, err, &bad);
    json_t *rate = jobj_get(cfg->raw, "RateLimit");
    if (rate != NULL && (!json_is_number(rate) || !(json_number_value(rate) > 0) ||
                         json_number_value(rate) > 1e6)) {
        enroll_error_set(err, HSE_CA_UNAVAILABLE, NULL,
                         "%s.RateLimit: must be a number of requests per second above 0", where);
        bad = 1;
    }
    nc->endpoint.rate_limit = rate != NULL ? json_number_value(rate) : 0;
    if (bad)
        return -1;
    nc->trust_bundle = config_path(env->cfg, entry_string(cfg, "TrustBundle"));
    nc->client_cert = config_path(env->cfg, entry_string(cfg, "ClientCertificate"));
    nc->client_key = config_path(env->cfg, entry_string(cfg, "ClientKey"));
    nc->endpoint.trust_bundle = nc->trust_bundle;
    nc->endpoint.client_cert = nc->client_cert;
    nc->endpoint.client_key = nc->client_key;
    nc->endpoint.insecure = json_is_true(jobj_get(cfg->raw, "InsecureSkipTlsVerify"));
    if (nc->endpoint.insecure)
        log_warning("CA \"%s\": TLS VERIFICATION IS OFF (InsecureSkipTlsVerify): anyone on the "
                    "path can impersonate this CA and read the requests",
                    cfg->name);
    if (read_authorization(nc, where, err) != 0) {
        char prefix[200];
        snprintf(prefix, sizeof prefix, "CA \"%.80s\": ", cfg->name);
        enroll_error_prefix(err, prefix);
        return -1;
    }
    nc->endpoint.authorization = nc->authorization;
    if (read_chain_file(nc, where, err) != 0)
        return -1;
    if (env->http == NULL && (env->http = http_loop_start(env->inflight, err)) == NULL)
        return -1;
    return 0;
}

void net_ca_close(net_ca *nc)
{
    free(nc->base_url);
    secret_free(nc->authorization);
    free(nc->trust_bundle);
    free(nc->client_cert);
    free(nc->client_key);
    sk_X509_pop_free(nc->chain, X509_free);
    memset(nc, 0, sizeof *nc);
}

typedef struct pending_call {
    net_ca *nc;
    ca_submission *sub;
    net_answer_fn answer;
} pending_call;

/* A 400 whose body is a key-reuse refusal (the embedded CA's POLICY_KEY_REUSE, or a message
 * saying the key was already certified or reused). */
static bool key_reuse_refusal(const http_request *req)
{
    const char *body = req->response ? req->response : "";
    return strcasestr(body, "POLICY_KEY_REUSE") != NULL ||
           strcasestr(body, "already certified") != NULL || strcasestr(body, "key reuse") != NULL;
}

static void on_answer(http_request *req, void *user)
{
    pending_call *call = user;
    ca_submission *sub = call->sub;
    if (!http_request_ok(req)) {
        http_request_error(req, call->nc->cfg->name, &sub->answer.err);
        sub->answer.failed = true;
        if (http_request_uncertain(req)) {
            sub->answer.uncertain = true;
            enroll_error_prefix(&sub->answer.err,
                                "no answer kept, and the CA may have issued it (its key is kept; "
                                "--resume --retry-failed asks again with the same CSR): ");
        } else if (req->status == 400 && (req->maybe_received || sub->repeat) &&
                   key_reuse_refusal(req)) {
            /* The CA refuses the engine's own earlier submission as key reuse: it has issued a
             * certificate for this key, which the engine never got. Not a failure. */
            sub->answer.uncertain = true;
            enroll_error_set(&sub->answer.err, HSE_CA_UNCERTAIN, NULL,
                             "CA \"%s\" refuses this CSR as key reuse after an earlier "
                             "submission of it whose answer was lost: it issued a certificate for "
                             "this key that the engine did not receive (the key is kept)",
                             call->nc->cfg->name);
        }
    } else {
        call->answer(call->nc, sub, req);
    }
    if (req->attempts > 1)
        log_debug("%s: answered after %d attempts", sub->req->id, req->attempts);
    http_request_free(req);
    free(call);
    sub->done(sub, sub->user);
}

void *net_connector_open(ca_connector *conn, ca_env *env, size_t state_size, enroll_error *err)
{
    net_ca *nc = calloc(1, state_size);
    if (nc == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    if (net_ca_open(nc, conn->cfg, env, err) != 0) {
        net_ca_close(nc);
        free(nc);
        return NULL;
    }
    conn->state = nc;
    return nc;
}

void net_connector_close(ca_connector *conn)
{
    net_ca *nc = conn->state; /* the state struct's first member */
    net_ca_close(nc);
    free(conn->state);
    conn->state = NULL;
}

submit_status net_ca_submit(net_ca *nc, ca_submission *sub, const char *path, json_t *body,
                            const char *const *headers, net_answer_fn answer)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    size_t n = strlen(nc->base_url) + strlen(path) + 1;
    char *url = malloc(n);
    pending_call *call = malloc(sizeof *call);
    http_request *req = NULL;
    if (text != NULL && url != NULL && call != NULL) {
        snprintf(url, n, "%s%s", nc->base_url, path);
        req = http_request_new(&nc->endpoint, url, text, headers);
    }
    free(url);
    free(text);
    if (req == NULL) {
        free(call);
        enroll_error_set(&sub->answer.err, HSE_OUT_OF_MEMORY, NULL,
                         "cannot prepare the request to CA \"%s\"", nc->cfg->name);
        sub->answer.failed = true;
        return SUBMIT_DONE;
    }
    *call = (pending_call){.nc = nc, .sub = sub, .answer = answer};
    req->no_blind_resend = true; /* an enrollment: never issued twice by a blind resend */
    req->done = on_answer;
    req->user = call;
    http_loop_submit(nc->env->http, req);
    return SUBMIT_PENDING;
}

int net_ca_call(net_ca *nc, const char *path, const char *body, const char *const *headers,
                long delay_ms, http_done_fn done, void *user)
{
    size_t n = strlen(nc->base_url) + strlen(path) + 1;
    char *url = malloc(n);
    if (url == NULL)
        return -1;
    snprintf(url, n, "%s%s", nc->base_url, path);
    http_request *req = http_request_new(&nc->endpoint, url, body, headers);
    free(url);
    if (req == NULL)
        return -1;
    req->done = done;
    req->user = user;
    if (delay_ms > 0)
        http_loop_submit_after(nc->env->http, req, delay_ms);
    else
        http_loop_submit(nc->env->http, req);
    return 0;
}

STACK_OF(X509) * net_parse_certificates(const char *text)
{
    if (text == NULL)
        return NULL;
    STACK_OF(X509) *certs = sk_X509_new_null();
    if (certs == NULL)
        return NULL;
    if (strstr(text, "-----BEGIN") != NULL) {
        BIO *bio = BIO_new_mem_buf(text, -1);
        X509 *cert;
        while (bio != NULL && (cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
            sk_X509_push(certs, cert);
        BIO_free(bio);
    } else {
        X509 *cert = x509_from_base64(text);
        if (cert != NULL)
            sk_X509_push(certs, cert);
    }
    ERR_clear_error();
    if (sk_X509_num(certs) == 0) {
        sk_X509_free(certs);
        return NULL;
    }
    return certs;
}

int net_take_certificates(net_ca *nc, ca_submission *sub, STACK_OF(X509) * certs)
{
    EVP_PKEY *csr_key = X509_REQ_get0_pubkey(sub->csr);
    int leaf = -1;
    for (int i = 0; certs != NULL && i < sk_X509_num(certs) && leaf < 0; i++)
        if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(certs, i)), csr_key) == 1)
            leaf = i;
    if (leaf < 0) {
        sk_X509_pop_free(certs, X509_free);
        enroll_error_set(&sub->answer.err, HSE_CA_BAD_ANSWER, NULL,
                         "CA \"%s\": the answer holds no certificate for the request's key",
                         nc->cfg->name);
        sub->answer.failed = true;
        return -1;
    }
    sub->answer.cert = sk_X509_delete(certs, leaf);
    if (sk_X509_num(certs) == 0 && nc->chain != NULL)
        for (int i = 0; i < sk_X509_num(nc->chain); i++) {
            X509 *c = sk_X509_value(nc->chain, i);
            X509_up_ref(c);
            sk_X509_push(certs, c);
        }
    sub->answer.chain = certs;
    return 0;
}

json_t *net_sans_object(const GENERAL_NAMES *sans)
{
    json_t *out = json_object();
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        char *text = san_entry_text(sk_GENERAL_NAME_value(sans, i));
        char *colon = text ? strchr(text, ':') : NULL;
        if (colon != NULL) {
            *colon = '\0';
            json_t *list = json_object_get(out, text);
            if (list == NULL) {
                list = json_array();
                json_object_set_new(out, text, list);
            }
            json_array_append_new(list, json_string(colon + 1));
        }
        free(text);
    }
    return out;
}

char *net_csr_pem(const X509_REQ *csr)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (bio != NULL && PEM_write_bio_X509_REQ(bio, (X509_REQ *)csr) == 1) {
        char *data;
        long len = BIO_get_mem_data(bio, &data);
        out = malloc((size_t)len + 1);
        if (out != NULL) {
            memcpy(out, data, (size_t)len);
            out[len] = '\0';
        }
    }
    BIO_free(bio);
    return out;
}
