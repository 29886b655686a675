/* GET /Certificates (QueryString over the embedded CAs' issuance logs), GET /Certificates/{id}
 * and POST /Certificates/Download (P7B, PEM or DER, with the chain as asked). Certificates are
 * read from each embedded CA's issuance log (ca/issuance_log.h). */
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch/certinfo.h"
#include "ca/issuance_log.h"
#include "batch/jsonobj.h"
#include "formats/base64.h"
#include "formats/bundle.h"
#include "formats/dn.h"
#include "serve/internal.h"

/* One issued certificate of an embedded CA. */
typedef struct issued_cert {
    X509 *cert;
    long long id; /* its KeyfactorID */
    const config_ca *ca;
    size_t ca_index;
    char issued[40]; /* when, from the log */
} issued_cert;

typedef struct issued_list {
    issued_cert *items;
    size_t count, cap;
} issued_list;

static void issued_free(issued_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        X509_free(l->items[i].cert);
    free(l->items);
}

/* read_issued's walk of one CA's log. */
typedef struct issued_walk {
    issued_list *out;
    const config_ca *ca;
    size_t ca_index;
} issued_walk;

static bool take_issued(long long keyfactor_id, const char *issued, X509 *cert, void *user)
{
    issued_walk *w = user;
    issued_list *out = w->out;
    if (out->count == out->cap) {
        size_t n = out->cap ? out->cap * 2 : 64;
        issued_cert *grown = realloc(out->items, n * sizeof *grown);
        if (grown == NULL)
            return false;
        out->items = grown, out->cap = n;
    }
    issued_cert *ic = &out->items[out->count++];
    X509_up_ref(cert);
    ic->cert = cert;
    ic->id = keyfactor_id;
    ic->ca = w->ca;
    ic->ca_index = w->ca_index;
    snprintf(ic->issued, sizeof ic->issued, "%s", issued);
    return true;
}

/* Every certificate the server's embedded CAs issued, oldest first (each CA home read once),
 * from their issuance logs. */
static void read_issued(server *srv, issued_list *out)
{
    const config *cfg = srv->current->cfg;
    for (size_t c = 0; c < cfg->ca_count; c++) {
        if (!srv->ca_open[c])
            continue;
        bool seen = false;
        for (size_t k = 0; k < c && !seen; k++)
            seen = srv->ca_open[k] &&
                   strcmp(local_ca_home(srv->cas[k]), local_ca_home(srv->cas[c])) == 0;
        if (seen)
            continue;
        enroll_error err;
        issuance_log *log = issuance_log_open(local_ca_home(srv->cas[c]), false, &err);
        if (log == NULL)
            continue; /* nothing issued yet */
        issued_walk w = {.out = out, .ca = &cfg->cas[c], .ca_index = c};
        issuance_log_each(log, take_issued, &w);
        issuance_log_close(log);
    }
}

static json_t *common_name(X509 *cert)
{
    X509_NAME *name = X509_get_subject_name(cert);
    int at = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (at < 0)
        return json_null();
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at)));
    json_t *out = n >= 0 ? json_stringn((const char *)utf8, (size_t)n) : json_null();
    OPENSSL_free(utf8);
    return out;
}

/* Keyfactor's KeyType numbers: 1 RSA, 3 ECC, 5 Ed448, 6 Ed25519 (0 unknown). */
static int key_type(EVP_PKEY *key)
{
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
        return 1;
    case EVP_PKEY_EC:
        return 3;
    case EVP_PKEY_ED448:
        return 5;
    case EVP_PKEY_ED25519:
        return 6;
    }
    return 0;
}

/* SubjectAltNameElements: {Id, Value, Type, ValueHash} (Type: 2 DNS, 7 IP, 1 email, 6 URI). */
static json_t *san_elements(X509 *cert)
{
    json_t *out = json_array();
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        char buf[256] = "";
        int type = gn->type;
        if (gn->type == GEN_DNS || gn->type == GEN_EMAIL || gn->type == GEN_URI) {
            const ASN1_IA5STRING *s = gn->d.ia5;
            snprintf(buf, sizeof buf, "%.*s", ASN1_STRING_length(s),
                     (const char *)ASN1_STRING_get0_data(s));
        } else if (gn->type == GEN_IPADD) {
            const unsigned char *a = ASN1_STRING_get0_data(gn->d.ip);
            int len = ASN1_STRING_length(gn->d.ip);
            if (len == 4)
                snprintf(buf, sizeof buf, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
            else
                for (int k = 0; k + 1 < len; k += 2)
                    snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%02x%02x",
                             k ? ":" : "", a[k], a[k + 1]);
        } else {
            continue;
        }
        json_array_append_new(out, json_pack("{s:i, s:s, s:i, s:n}", "Id", i + 1, "Value", buf,
                                             "Type", type, "ValueHash"));
    }
    GENERAL_NAMES_free(names);
    return out;
}

/* The certificate as GET /Certificates shows it, and the view the query reads (views: the
 * QueryString fields). */
static json_t *certificate_json(const issued_cert *ic, json_t **view)
{
    json_t *info = certinfo_describe(ic->cert);
    char *issued_dn = dn_format(X509_get_subject_name(ic->cert));
    EVP_PKEY *key = X509_get0_pubkey(ic->cert);
    char *der = x509_to_base64(ic->cert);
    json_t *cn = common_name(ic->cert);
    json_t *out = json_pack(
        "{s:I, s:O, s:O, s:s?, s:O, s:s, s:O, s:O, s:O, s:n, s:n, s:n, s:i, s:i, s:i, s:s, "
        "s:s, s:n, s:i, s:I, s:s, s:b, s:b, s:I, s:s?, s:[], s:o, s:[], s:[], s:[], s:o, s:s}",
        "Id", (json_int_t)ic->id, "Thumbprint", json_object_get(info, "Thumbprint"), "SerialNumber",
        json_object_get(info, "SerialNumber"), "IssuedDN", issued_dn, "IssuedCN", cn, "ImportDate",
        ic->issued[0] ? ic->issued : "1970-01-01T00:00:00Z", "NotBefore",
        json_object_get(info, "NotBefore"), "NotAfter", json_object_get(info, "NotAfter"),
        "IssuerDN", json_object_get(info, "IssuerDN"), "PrincipalId", "OwnerRoleId",
        "OwnerRoleName", "CertState", 1, "KeySizeInBits", key ? EVP_PKEY_get_bits(key) : 0,
        "KeyType", key_type(key), "CertStateString", "Active", "KeyTypeString",
        key_type(key) == 1   ? "RSA"
        : key_type(key) == 3 ? "ECC"
                             : "Other",
        "RevocationEffDate", "RevocationReason", 0, "CertificateAuthorityId",
        (json_int_t)ic->ca->id, "CertificateAuthorityName", ic->ca->logical, "HasPrivateKey", 0,
        "ArchivedKey", 0, "CertRequestId", (json_int_t)ic->id, "ContentBytes", der,
        "ExtendedKeyUsages", "SubjectAltNameElements", san_elements(ic->cert),
        "CRLDistributionPoints", "LocationsCount", "Locations", "Metadata", json_object(),
        "RequesterName", "hsmenroll");
    *view = json_pack(
        "{s:I, s:I, s:I, s:O, s:O, s:s?, s:O, s:O, s:O, s:O, s:s, s:s, s:s, "
        "s:O, s:s}",
        "Id", (json_int_t)ic->id, "CertID", (json_int_t)ic->id, "CertRequestId", (json_int_t)ic->id,
        "IssuedCN", cn, "CN", cn, "IssuedDN", issued_dn, "IssuerDN",
        json_object_get(info, "IssuerDN"), "SerialNumber", json_object_get(info, "SerialNumber"),
        "Thumbprint", json_object_get(info, "Thumbprint"), "NotAfter",
        json_object_get(info, "NotAfter"), "CA", ic->ca->logical, "CAName", ic->ca->name,
        "ImportDate", ic->issued, "NotBefore", json_object_get(info, "NotBefore"),
        "CertificateAuthorityName", ic->ca->logical);
    free(der);
    free(issued_dn);
    json_decref(cn); /* taken by both with O */
    json_decref(info);
    return out;
}

static const char *const certificate_fields[] = {
    "Id",        "CertID",   "CertRequestId", "IssuedCN",   "CN",
    "IssuedDN",  "IssuerDN", "SerialNumber",  "Thumbprint", "NotAfter",
    "NotBefore", "CA",       "CAName",        "ImportDate", "CertificateAuthorityName",
    NULL};

void api_list_certificates(server *srv, const api_call *call, api_answer *answer, long long id)
{
    (void)id;
    issued_list all = {0};
    read_issued(srv, &all);
    json_t *list = json_array(), *views = json_array();
    for (size_t i = all.count; i-- > 0;) { /* newest first */
        json_t *view;
        json_array_append_new(list, certificate_json(&all.items[i], &view));
        /* The CA field also matches "host\logical" (vault and go clients send either). */
        json_array_append_new(views, view);
    }
    issued_free(&all);
    json_t *out = api_filter(call, list, views, certificate_fields, answer);
    if (out != NULL)
        answer->body = out;
}

static const issued_cert *find_issued(const issued_list *all, long long id)
{
    for (size_t i = 0; i < all->count; i++)
        if (all->items[i].id == id)
            return &all->items[i];
    return NULL;
}

void api_get_certificate(server *srv, const api_call *call, api_answer *answer, long long id)
{
    (void)call;
    issued_list all = {0};
    read_issued(srv, &all);
    const issued_cert *ic = find_issued(&all, id);
    if (ic == NULL) {
        api_error(answer, HSE_NOT_FOUND, "no certificate has Id %lld", id);
    } else {
        json_t *view;
        answer->body = certificate_json(ic, &view);
        json_decref(view);
    }
    issued_free(&all);
}

/* The certificate a download body names: CertID, or Thumbprint, or SerialNumber with IssuerDN. */
static const issued_cert *download_target(const issued_list *all, const json_t *body)
{
    json_t *id = jobj_get(body, "CertID");
    if (json_is_integer(id))
        return find_issued(all, json_integer_value(id));
    const char *thumb = json_string_value(jobj_get(body, "Thumbprint"));
    const char *serial = json_string_value(jobj_get(body, "SerialNumber"));
    const char *issuer = json_string_value(jobj_get(body, "IssuerDN"));
    for (size_t i = 0; i < all->count; i++) {
        json_t *info = certinfo_describe(all->items[i].cert);
        bool hit =
            (thumb &&
             strcasecmp(thumb, json_string_value(json_object_get(info, "Thumbprint"))) == 0) ||
            (serial && issuer &&
             strcasecmp(serial, json_string_value(json_object_get(info, "SerialNumber"))) == 0 &&
             strcasecmp(issuer, json_string_value(json_object_get(info, "IssuerDN"))) == 0);
        json_decref(info);
        if (hit)
            return &all->items[i];
    }
    return NULL;
}

/* The certificates as a DER PKCS#7 certs-only bundle, in their order. */
static int p7b_write(BIO *bio, STACK_OF(X509) * certs)
{
    PKCS7 *p7 = PKCS7_new();
    int rc = -1;
    if (p7 != NULL && PKCS7_set_type(p7, NID_pkcs7_signed) == 1 &&
        PKCS7_content_new(p7, NID_pkcs7_data) == 1) {
        rc = 0;
        for (int i = 0; i < sk_X509_num(certs) && rc == 0; i++)
            if (PKCS7_add_certificate(p7, sk_X509_value(certs, i)) != 1)
                rc = -1;
        if (rc == 0 && i2d_PKCS7_bio(bio, p7) != 1)
            rc = -1;
    }
    PKCS7_free(p7);
    return rc;
}

void api_download_certificate(server *srv, const api_call *call, api_answer *answer,
                              long long unused)
{
    (void)unused;
    const char *format = call->certificate_format ? call->certificate_format : "P7B";
    bool p7b = strcasecmp(format, "P7B") == 0, pem = strcasecmp(format, "PEM") == 0,
         der = strcasecmp(format, "DER") == 0;
    if (!p7b && !pem && !der) {
        api_error(answer, HSE_INVALID_HEADER, "x-certificateformat: must be P7B, PEM or DER");
        return;
    }
    json_t *body = api_body_object(call, answer);
    if (body == NULL)
        return;
    json_t *chain_flag = jobj_get(body, "IncludeChain");
    const char *order_text = json_string_value(jobj_get(body, "ChainOrder"));
    json_t *header_flag = jobj_get(body, "IncludeSubjectHeader");
    if (order_text != NULL && strcasecmp(order_text, "EndEntityFirst") != 0 &&
        strcasecmp(order_text, "RootFirst") != 0) {
        api_error(answer, HSE_INVALID_FIELD, "ChainOrder: EndEntityFirst or RootFirst");
        json_decref(body);
        return;
    }
    chain_order order = order_text && strcasecmp(order_text, "RootFirst") == 0
                            ? CHAIN_ROOT_FIRST
                            : CHAIN_END_ENTITY_FIRST;
    issued_list all = {0};
    read_issued(srv, &all);
    const issued_cert *ic = download_target(&all, body);
    if (ic == NULL) {
        api_error(answer, HSE_NOT_FOUND,
                  "no certificate matches CertID, Thumbprint or SerialNumber and IssuerDN");
        goto done;
    }
    STACK_OF(X509) *certs = chain_arrange(ic->cert, local_ca_chain(srv->cas[ic->ca_index]),
                                          json_is_true(chain_flag), order);
    BIO *bio = BIO_new(BIO_s_mem());
    int rc = -1;
    enroll_error err;
    if (bio != NULL && certs != NULL) {
        if (p7b) {
            rc = p7b_write(bio, certs);
        } else if (pem) {
            pem_bundle_options po = {.include_subject_header = json_is_true(header_flag)};
            rc = pem_bundle_write(bio, certs, &po, &err);
        } else {
            rc = i2d_X509_bio(bio, ic->cert) == 1 ? 0 : -1;
        }
    }
    if (rc == 0) {
        char *data;
        long len = BIO_get_mem_data(bio, &data);
        char *b64 = base64_encode((const unsigned char *)data, (size_t)len);
        answer->body = json_pack("{s:s?}", "Content", b64);
        free(b64);
    } else {
        api_error(answer, HSE_INTERNAL, "the certificate could not be encoded");
    }
    BIO_free(bio);
    sk_X509_pop_free(certs, X509_free);
done:
    issued_free(&all);
    json_decref(body);
}
