/* Revoking at network CAs (revoke_net.h): each revocation is one POST on an event loop of its
 * own (retries, backoff, TLS and credentials as the connectors have them), waited for. Keyfactor:
 * the answer's SuccessfulRevocations / FailedRevocations decide; CFSSL: its success flag, or its
 * first error's code and message. */
#include <openssl/bn.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch/jsonobj.h"
#include "ca/net.h"
#include "ca/revocation.h"
#include "ca/revoke_net.h"
#include "formats/dn.h"
#include "formats/hex.h"

/* CFSSL's error code for "no such certificate in the database" (CertStoreError + RecordNotFound,
 * errors/error.go). */
#define CFSSL_RECORD_NOT_FOUND 11200

struct net_revoker {
    ca_env env; /* only cfg and the event loop are used */
    net_ca nc;
    bool nc_open;
    char version_header[64];
    X509 *signer;   /* cfssl: the CA certificate of /api/v1/cfssl/info, asked once had; owned */
    bool empty_aki; /* cfssl: the CA recorded a certificate with an empty authority key id */
};

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    http_request *req; /* set by the loop thread when the request is over */
} waiter;

static void on_done(http_request *req, void *user)
{
    waiter *w = user;
    pthread_mutex_lock(&w->lock);
    w->req = req;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

net_revoker *net_revoker_open(const config *cfg, const config_ca *ca, enroll_error *err)
{
    if (ca->type != CA_TYPE_KEYFACTOR && ca->type != CA_TYPE_CFSSL) {
        enroll_error_set(err, HSE_CA_REVOKE_FAILED, "CertificateAuthority",
                         "CA \"%s\" is not a network CA", ca->name);
        return NULL;
    }
    net_revoker *r = calloc(1, sizeof *r);
    if (r == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    r->env.cfg = cfg;
    r->env.inflight = 1;
    r->nc_open = true;
    if (net_ca_open(&r->nc, ca, &r->env, err) != 0) {
        net_revoker_close(r);
        return NULL;
    }
    const char *version = json_string_value(jobj_get(ca->raw, "ApiVersion"));
    snprintf(r->version_header, sizeof r->version_header, "x-keyfactor-api-version: %.20s",
             version ? version : "1");
    return r;
}

void net_revoker_close(net_revoker *r)
{
    if (r == NULL)
        return;
    if (r->env.http != NULL)
        http_loop_stop(r->env.http);
    if (r->nc_open)
        net_ca_close(&r->nc);
    X509_free(r->signer);
    free(r);
}

/* POSTs body (taken; compact JSON) to base_url + path with headers and waits for the end of the
 * request (the loop's retries included). The finished request (the caller frees it), or NULL
 * with err when out of memory. */
static http_request *post_wait(net_revoker *r, const char *path, json_t *body,
                               const char *const *headers, enroll_error *err)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    size_t n = strlen(r->nc.base_url) + strlen(path) + 1;
    char *url = malloc(n);
    http_request *req = NULL;
    if (text != NULL && url != NULL) {
        snprintf(url, n, "%s%s", r->nc.base_url, path);
        req = http_request_new(&r->nc.endpoint, url, text, headers);
    }
    free(url);
    free(text);
    if (req == NULL) {
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    waiter w = {.req = NULL};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    req->done = on_done;
    req->user = &w;
    http_loop_submit(r->env.http, req);
    pthread_mutex_lock(&w.lock);
    while (w.req == NULL)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return w.req;
}

/* The CA's refusal in a Keyfactor error body ({"ErrorCode", "Message"}) or a FailedRevocations
 * item into err. */
static void refusal(const char *ca_name, json_t *item, enroll_error *err)
{
    const char *code = json_string_value(jobj_get(item, "ErrorCode"));
    const char *message = json_string_value(jobj_get(item, "Message"));
    hse_code c = code != NULL && strcmp(code, "REVOKE_NOT_FOUND") == 0 ? HSE_REVOKE_NOT_FOUND
                                                                       : HSE_CA_REVOKE_FAILED;
    enroll_error_set(err, c, "KeyfactorID", "CA \"%s\" refused the revocation: %.40s%s%.300s",
                     ca_name, code ? code : "", code ? ": " : "", message ? message : "no message");
}

int net_revoker_keyfactor(net_revoker *r, long long keyfactor_id, int reason, time_t effective,
                          const char *comment, enroll_error *err)
{
    char when[32];
    struct tm tm;
    gmtime_r(&effective, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *body =
        json_pack("{s:[I], s:i, s:s, s:s}", "CertificateIds", (json_int_t)keyfactor_id, "Reason",
                  reason, "Comment", comment ? comment : "", "EffectiveDate", when);
    const char *headers[] = {"x-keyfactor-requested-with: APIClient", r->version_header, NULL};
    http_request *req = post_wait(r, "/Certificates/Revoke", body, headers, err);
    if (req == NULL)
        return -1;

    const char *name = r->nc.cfg->name;
    json_t *doc = json_loadb(req->response ? req->response : "", req->response_len, 0, NULL);
    int rc = -1;
    if (!http_request_ok(req)) {
        if (req->status >= 400 && req->status < 500 && req->status != 401 && req->status != 403 &&
            json_is_string(jobj_get(doc, "ErrorCode")))
            refusal(name, doc, err);
        else
            http_request_error(req, name, err);
    } else {
        /* Keyfactor Command answers 204 (no body) or the revoked ids; this project's serve
         * answers {SuccessfulRevocations, FailedRevocations}. */
        json_t *ok = json_is_array(doc) ? doc : jobj_get(doc, "SuccessfulRevocations");
        json_t *failed = jobj_get(doc, "FailedRevocations");
        size_t i;
        json_t *item;
        if (doc == NULL && req->response_len == 0)
            rc = 0;
        json_array_foreach(ok, i, item)
        {
            if (json_integer_value(item) == keyfactor_id)
                rc = 0;
        }
        if (rc != 0 && json_array_size(failed) > 0)
            refusal(name, json_array_get(failed, 0), err);
        else if (rc != 0)
            enroll_error_set(err, HSE_CA_REVOKE_FAILED, "KeyfactorID",
                             "CA \"%s\" answered without KeyfactorID %lld among its "
                             "SuccessfulRevocations",
                             name, keyfactor_id);
    }
    json_decref(doc);
    http_request_free(req);
    return rc;
}

/* The Subject Key Identifier of cert as CFSSL records authority key ids: lower-case hex without
 * colons; "" when it has none. */
static void ski_hex(const X509 *cert, char *out, size_t size)
{
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id((X509 *)cert);
    char *hex =
        ski ? hex_encode_alloc(ASN1_STRING_get0_data(ski), (size_t)ASN1_STRING_length(ski), false)
            : NULL;
    snprintf(out, size, "%s", hex ? hex : "");
    free(hex);
}

static bool subject_is(const X509 *cert, const char *dn)
{
    char *subject = dn_format(X509_get_subject_name(cert));
    bool same = subject != NULL && strcmp(subject, dn) == 0;
    free(subject);
    return same;
}

/* CFSSL's signing certificate: POST /api/v1/cfssl/info with the entry's Label and Profile, asked
 * until it is had. NULL with err when it cannot be had. */
static X509 *cfssl_signer(net_revoker *r, enroll_error *err)
{
    if (r->signer != NULL)
        return r->signer;
    const char *label = json_string_value(jobj_get(r->nc.cfg->raw, "Label"));
    const char *profile = json_string_value(jobj_get(r->nc.cfg->raw, "Profile"));
    json_t *body =
        json_pack("{s:s, s:s}", "label", label ? label : "", "profile", profile ? profile : "");
    http_request *req = post_wait(r, "/api/v1/cfssl/info", body, (const char *const[]){NULL}, err);
    if (req == NULL)
        return NULL;
    if (http_request_ok(req)) {
        json_t *doc = json_loadb(req->response ? req->response : "", req->response_len, 0, NULL);
        const char *pem = json_string_value(jobj_get(jobj_get(doc, "result"), "certificate"));
        STACK_OF(X509) *certs = pem ? net_parse_certificates(pem) : NULL;
        if (sk_X509_num(certs) > 0)
            r->signer = sk_X509_shift(certs);
        sk_X509_pop_free(certs, X509_free);
        json_decref(doc);
        if (r->signer == NULL)
            enroll_error_set(err, HSE_CA_BAD_ANSWER, NULL,
                             "CA \"%s\": /api/v1/cfssl/info answered no certificate (the "
                             "issuer's key id is needed to revoke; give the CA a ChainFile)",
                             r->nc.cfg->name);
    } else {
        http_request_error(req, r->nc.cfg->name, err);
    }
    http_request_free(req);
    return r->signer;
}

/* The authority key id CFSSL recorded for certificates of issuer_dn: the Subject Key Identifier
 * of the ChainFile certificate with that subject, else of CFSSL's signing certificate. */
static int cfssl_aki(net_revoker *r, const char *issuer_dn, char *out, size_t size,
                     enroll_error *err)
{
    for (int i = 0; issuer_dn != NULL && i < sk_X509_num(r->nc.chain); i++) {
        const X509 *cert = sk_X509_value(r->nc.chain, i);
        if (subject_is(cert, issuer_dn)) {
            ski_hex(cert, out, size);
            return 0;
        }
    }
    X509 *signer = cfssl_signer(r, err);
    if (signer == NULL)
        return -1;
    if (issuer_dn != NULL && !subject_is(signer, issuer_dn)) {
        char *subject = dn_format(X509_get_subject_name(signer));
        enroll_error_set(
            err, HSE_REVOKE_NOT_FOUND, "IssuerDN",
            "CA \"%s\" signs as \"%.200s\", not as the certificate's issuer \"%.200s\"",
            r->nc.cfg->name, subject ? subject : "?", issuer_dn);
        free(subject);
        return -1;
    }
    ski_hex(signer, out, size);
    return 0;
}

/* One POST /api/v1/cfssl/revoke. 0 when CFSSL answers success; else -1, with *cfssl_code the
 * code of CFSSL's first error (0 when it named none) and err filled. */
static int cfssl_post(net_revoker *r, const char *serial_hex, const char *serial_dec,
                      const char *aki, const char *reason, int *cfssl_code, enroll_error *err)
{
    *cfssl_code = 0;
    json_t *body = json_pack("{s:s, s:s, s:s}", "serial", serial_dec, "authority_key_id", aki,
                             "reason", reason);
    http_request *req =
        post_wait(r, "/api/v1/cfssl/revoke", body, (const char *const[]){NULL}, err);
    if (req == NULL)
        return -1;
    const char *name = r->nc.cfg->name;
    json_t *doc = json_loadb(req->response ? req->response : "", req->response_len, 0, NULL);
    json_t *first = json_array_get(jobj_get(doc, "errors"), 0);
    int rc = -1;
    if (http_request_ok(req) && json_is_true(jobj_get(doc, "success"))) {
        rc = 0;
    } else if (req->curl_rc == CURLE_OK && json_is_object(first) && req->status != 401 &&
               req->status != 403) {
        /* CFSSL's refusal: {"success": false, "errors": [{"code", "message"}]} */
        *cfssl_code = (int)json_integer_value(jobj_get(first, "code"));
        const char *message = json_string_value(jobj_get(first, "message"));
        enroll_error_set(
            err,
            *cfssl_code == CFSSL_RECORD_NOT_FOUND ? HSE_REVOKE_NOT_FOUND : HSE_CA_REVOKE_FAILED,
            "SerialNumber", "CA \"%s\" refused the revocation of serial %s (%s): CFSSL %d: %.300s",
            name, serial_hex, serial_dec, *cfssl_code, message ? message : "no message");
    } else if (req->curl_rc == CURLE_OK && req->status == 404) {
        enroll_error_set(err, HSE_CA_REVOKE_FAILED, "CertificateAuthority",
                         "CA \"%s\" has no /api/v1/cfssl/revoke (HTTP 404): cfssl serve offers "
                         "it only with a certificate database (-db-config)",
                         name);
    } else if (http_request_ok(req)) {
        enroll_error_set(err, HSE_CA_BAD_ANSWER, NULL,
                         "CA \"%s\" answered the revocation without \"success\": true", name);
    } else {
        http_request_error(req, name, err);
    }
    json_decref(doc);
    http_request_free(req);
    return rc;
}

int net_revoker_cfssl(net_revoker *r, const char *serial_hex, const char *issuer_dn, int reason,
                      enroll_error *err)
{
    BIGNUM *bn = NULL;
    char *dec = NULL;
    if (BN_hex2bn(&bn, serial_hex) == 0 || (dec = BN_bn2dec(bn)) == NULL) {
        BN_free(bn);
        enroll_error_set(err, HSE_REVOKE_NOT_FOUND, "SerialNumber", "%s is not a hex serial",
                         serial_hex);
        return -1;
    }
    BN_free(bn);
    char aki[2 * 64 + 1];
    int rc = -1, code = 0;
    if (cfssl_aki(r, issuer_dn, aki, sizeof aki, err) == 0) {
        /* CFSSL before 2017 (#801) built with Go 1.9 or later, Debian 12's among them, records
         * every certificate with an empty authority key id: asked by the real one it finds none.
         * Such a row can only be the certificate with this serial that CFSSL signed. Once one
         * was found so, the empty id is asked first. */
        const char *why = revocation_reason_name(reason);
        const char *first = r->empty_aki ? "" : aki, *second = r->empty_aki ? aki : "";
        rc = cfssl_post(r, serial_hex, dec, first, why, &code, err);
        if (rc != 0 && code == CFSSL_RECORD_NOT_FOUND && aki[0] != '\0') {
            enroll_error again;
            enroll_error_clear(&again);
            if ((rc = cfssl_post(r, serial_hex, dec, second, why, &code, &again)) == 0) {
                enroll_error_clear(err);
                r->empty_aki = second[0] == '\0';
            } else if (code != CFSSL_RECORD_NOT_FOUND) {
                *err = again;
            }
        }
    }
    OPENSSL_free(dec);
    return rc;
}
