/* The OCSP responder of the embedded CA (see ocsp.h). OpenSSL signs a BasicOCSPResponse only
 * with a key it holds, so the ResponseData is assembled in DER from OpenSSL's encodings of the
 * SingleResponses and the nonce, signed through the signer and read back. */
#include "ca/ocsp.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "batch/idset.h"
#include "formats/der.h"

static unsigned char *response_der(OCSP_RESPONSE *resp, size_t *out_len)
{
    unsigned char *der = NULL, *copy = NULL;
    int len = resp ? i2d_OCSP_RESPONSE(resp, &der) : -1;
    if (len > 0 && (copy = malloc((size_t)len)) != NULL) {
        memcpy(copy, der, (size_t)len);
        *out_len = (size_t)len;
    }
    OPENSSL_free(der);
    return copy;
}

static unsigned char *status_only(int status, size_t *out_len)
{
    OCSP_RESPONSE *resp = OCSP_response_create(status, NULL);
    unsigned char *der = response_der(resp, out_len);
    OCSP_RESPONSE_free(resp);
    return der;
}

static bool id_is_of(OCSP_CERTID *cid, X509 *issuer)
{
    ASN1_OBJECT *md_oid = NULL;
    if (!OCSP_id_get0_info(NULL, &md_oid, NULL, NULL, cid))
        return false;
    const EVP_MD *md = EVP_get_digestbyobj(md_oid);
    if (md == NULL)
        return false;
    OCSP_CERTID *ours = OCSP_cert_to_id(md, NULL, issuer);
    bool same = ours != NULL && OCSP_id_issuer_cmp(ours, cid) == 0;
    OCSP_CERTID_free(ours);
    return same;
}

bool ocsp_request_for(const unsigned char *req, size_t req_len, X509 *issuer)
{
    const unsigned char *p = req;
    OCSP_REQUEST *r = d2i_OCSP_REQUEST(NULL, &p, (long)req_len);
    bool match = r != NULL && OCSP_request_onereq_count(r) > 0 &&
                 id_is_of(OCSP_onereq_get0_id(OCSP_request_onereq_get0(r, 0)), issuer);
    OCSP_REQUEST_free(r);
    return match;
}

#define PUT_I2D(buf, fn, obj)                                                                      \
    do {                                                                                           \
        unsigned char *der_ = NULL;                                                                \
        int len_ = fn(obj, &der_);                                                                 \
        if (len_ <= 0)                                                                             \
            (buf)->failed = true;                                                                  \
        else                                                                                       \
            der_put(buf, der_, (size_t)len_);                                                      \
        OPENSSL_free(der_);                                                                        \
    } while (0)

/* The ResponseData DER (RFC 6960 section 4.2.1) for the request's CertIDs. */
static unsigned char *response_data(OCSP_REQUEST *req, const ocsp_ca *ca, long valid_seconds,
                                    size_t *len)
{
    der_buf data = {0}, singles = {0};
    OCSP_BASICRESP *scratch = OCSP_BASICRESP_new(); /* holds the SingleResponses OpenSSL builds */
    time_t now = time(NULL);
    ASN1_TIME *this_update = ASN1_GENERALIZEDTIME_set(NULL, now);
    ASN1_TIME *next_update = ASN1_GENERALIZEDTIME_set(NULL, now + valid_seconds);
    unsigned char *out = NULL;
    if (scratch == NULL || this_update == NULL || next_update == NULL)
        goto done;
    /* responderID byKey [2] EXPLICIT: the SHA-1 of the issuing CA's public key */
    unsigned char hash[EVP_MAX_MD_SIZE];
    unsigned int hash_len = 0;
    if (!X509_pubkey_digest(ca->issuer, EVP_sha1(), hash, &hash_len))
        goto done;
    der_buf key_hash = {0};
    der_put_header(&key_hash, 0x04, hash_len);
    der_put(&key_hash, hash, hash_len);
    der_put_wrapped(&data, 0xa2, &key_hash);
    PUT_I2D(&data, i2d_ASN1_GENERALIZEDTIME, this_update); /* producedAt */
    for (int i = 0; i < OCSP_request_onereq_count(req); i++) {
        OCSP_CERTID *cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, i));
        ASN1_INTEGER *serial = NULL;
        char serial_hex[REVOCATION_SERIAL_MAX];
        int status = V_OCSP_CERTSTATUS_UNKNOWN;
        revocation_entry entry;
        memset(&entry, 0, sizeof entry);
        if (id_is_of(cid, ca->issuer) && OCSP_id_get0_info(NULL, NULL, NULL, &serial, cid) &&
            revocation_serial_of(serial, serial_hex) == 0)
            status = ca->lookup(ca->lookup_ctx, serial_hex, &entry);
        ASN1_TIME *revoked_at = NULL;
        int reason = OCSP_REVOKED_STATUS_NOSTATUS;
        if (status == V_OCSP_CERTSTATUS_REVOKED) {
            revoked_at = ASN1_GENERALIZEDTIME_set(NULL, entry.revoked);
            if (entry.reason != REVOKE_UNSPECIFIED)
                reason = entry.reason;
        }
        OCSP_SINGLERESP *single = OCSP_basic_add1_status(scratch, cid, status, reason, revoked_at,
                                                         this_update, next_update);
        ASN1_TIME_free(revoked_at);
        if (single == NULL)
            goto done;
        PUT_I2D(&singles, i2d_OCSP_SINGLERESP, single);
    }
    der_put_wrapped(&data, 0x30, &singles);
    int nonce = OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1);
    if (nonce >= 0) { /* responseExtensions [1] EXPLICIT: the nonce, echoed */
        der_buf exts = {0}, seq = {0};
        PUT_I2D(&exts, i2d_X509_EXTENSION, OCSP_REQUEST_get_ext(req, nonce));
        der_put_wrapped(&seq, 0x30, &exts);
        der_put_wrapped(&data, 0xa1, &seq);
    }
    out = der_wrap(&data, 0x30, len);
done:
    der_free(&data);
    der_free(&singles);
    OCSP_BASICRESP_free(scratch);
    ASN1_TIME_free(this_update);
    ASN1_TIME_free(next_update);
    return out;
}

unsigned char *ocsp_answer(const unsigned char *req_der, size_t req_len, const ocsp_ca *ca,
                           long valid_seconds, size_t *out_len)
{
    const unsigned char *p = req_der;
    OCSP_REQUEST *req = d2i_OCSP_REQUEST(NULL, &p, (long)req_len);
    if (req == NULL || OCSP_request_onereq_count(req) <= 0) {
        OCSP_REQUEST_free(req);
        return status_only(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST, out_len);
    }
    size_t data_len = 0, basic_len = 0;
    unsigned char *data = response_data(req, ca, valid_seconds, &data_len);
    OCSP_REQUEST_free(req);
    enroll_error err;
    enroll_error_clear(&err);
    unsigned char *basic = data ? der_sign_wrap(data, data_len, &ca->sign, &basic_len, &err) : NULL;
    free(data);
    const unsigned char *q = basic;
    OCSP_BASICRESP *bs = basic ? d2i_OCSP_BASICRESP(NULL, &q, (long)basic_len) : NULL;
    free(basic);
    OCSP_RESPONSE *resp = bs ? OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs) : NULL;
    OCSP_BASICRESP_free(bs);
    unsigned char *out = resp ? response_der(resp, out_len) : NULL;
    OCSP_RESPONSE_free(resp);
    if (out == NULL)
        return status_only(OCSP_RESPONSE_STATUS_INTERNALERROR, out_len);
    return out;
}

struct issued_serials {
    pthread_mutex_t lock;
    char *path;
    off_t read_end;
    idset serials;
};

issued_serials *issued_serials_open(const char *home)
{
    issued_serials *set = calloc(1, sizeof *set);
    if (set == NULL || asprintf(&set->path, "%s/issued.ndjson", home) < 0) {
        free(set);
        return NULL;
    }
    pthread_mutex_init(&set->lock, NULL);
    idset_init(&set->serials);
    return set;
}

void issued_serials_close(issued_serials *set)
{
    if (set == NULL)
        return;
    idset_free(&set->serials);
    pthread_mutex_destroy(&set->lock);
    free(set->path);
    free(set);
}

/* Indexes the whole lines appended since the last read (caller holds the lock). */
static void read_new(issued_serials *set)
{
    FILE *f = fopen(set->path, "r");
    if (f == NULL)
        return;
    if (fseeko(f, set->read_end, SEEK_SET) == 0) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, f)) > 0 && line[n - 1] == '\n') {
            set->read_end += n;
            json_t *o = json_loadb(line, (size_t)n, 0, NULL);
            char norm[REVOCATION_SERIAL_MAX];
            if (revocation_serial_norm(json_string_value(json_object_get(o, "Serial")), norm) == 0)
                idset_insert(&set->serials, norm);
            json_decref(o);
        }
        free(line);
    }
    fclose(f);
}

bool issued_serials_contains(issued_serials *set, const char *serial)
{
    char norm[REVOCATION_SERIAL_MAX];
    if (revocation_serial_norm(serial, norm) != 0)
        return false;
    pthread_mutex_lock(&set->lock);
    bool found = idset_contains(&set->serials, norm);
    if (!found) {
        read_new(set);
        found = idset_contains(&set->serials, norm);
    }
    pthread_mutex_unlock(&set->lock);
    return found;
}
