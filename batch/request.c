/* Request lines: the Keyfactor field vocabulary (case-insensitive), types and defaults, key spec
 * resolution (KeyType / KeyLength / Curve), subject and SAN parsing, format/storage rules, CSR
 * lines (the CSR, its key and SANs, a retained PrivateKey). Every problem of a line is reported,
 * not just the first. */
#include "request.h"

#include <ctype.h>
#include <stdarg.h>
#include <openssl/crypto.h>
#include <openssl/obj_mac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "formats/csr.h"
#include "formats/dn.h"
#include "formats/san.h"
#include "config.h"
#include "output.h"
#include "batch/suggest.h"

typedef enum field_id {
    F_ID,
    F_OPERATION,
    F_FORMAT,
    F_KEY_STORAGE,
    F_KEY_TYPE,
    F_KEY_LENGTH,
    F_CURVE,
    F_SUBJECT,
    F_SANS,
    F_TEMPLATE,
    F_PATTERN_ID,
    F_CA,
    F_INCLUDE_CHAIN,
    F_CHAIN_ORDER,
    F_SUBJECT_HEADER,
    F_PASSWORD,
    F_LEGACY,
    F_FRIENDLY_NAME,
    F_CSP,
    F_METADATA,
    F_ADDITIONAL_FIELDS,
    F_OWNER_ROLE_ID,
    F_OWNER_ROLE_NAME,
    F_TIMESTAMP,
    /* fields of other operations or Keyfactor features, checked below */
    F_CSR,
    F_PRIVATE_KEY,
    F_FORCE_ENROLL,
    F_KEYSTORE_ID,
    F_ALIAS,
    F_SUBJECT_NAME,
    F_AGENT_GUID,
    F_JOB_PROPERTIES,
    F_CERTIFICATE_TEMPLATE,
    F_STORES,
    F_RENEWAL_ID,
    F_INSTALL_INTO_STORES,
    F_JOB_TIME,
    F_POPULATE_FROM_AD,
    F_COUNT
} field_id;

static const char *const field_names[F_COUNT + 1] = {
    /* NULL-terminated */
    "Id",
    "Operation",
    "Format",
    "KeyStorage",
    "KeyType",
    "KeyLength",
    "Curve",
    "Subject",
    "SANs",
    "Template",
    "EnrollmentPatternId",
    "CertificateAuthority",
    "IncludeChain",
    "ChainOrder",
    "IncludeSubjectHeader",
    "Password",
    "UseLegacyEncryption",
    "CustomFriendlyName",
    "MicrosoftTargetCSP",
    "Metadata",
    "AdditionalEnrollmentFields",
    "OwnerRoleId",
    "OwnerRoleName",
    "Timestamp",
    "CSR",
    "PrivateKey",
    "forceEnroll",
    "KeystoreId",
    "Alias",
    "SubjectName",
    "AgentGuid",
    "JobProperties",
    "CertificateTemplate",
    "Stores",
    "RenewalCertificateId",
    "InstallIntoExistingCertificateStores",
    "JobTime",
    "PopulateMissingValuesFromAD",
};

const char *request_format_name(request_format f)
{
    return f == FORMAT_PFX ? "PFX" : f == FORMAT_PEM ? "PEM" : f == FORMAT_DER ? "DER" : "?";
}

const char *request_storage_name(request_storage s)
{
    return s == STORAGE_TOKEN ? "token" : s == STORAGE_EXPORT ? "export" : "?";
}

const char *key_algorithm_name(key_algorithm a)
{
    switch (a) {
    case KEYALG_RSA:
        return "RSA";
    case KEYALG_ECC:
        return "ECC";
    case KEYALG_ED25519:
        return "Ed25519";
    case KEYALG_ED448:
        return "Ed448";
    }
    return "?";
}

const char *request_key_label(const request_key *key, char *buf, size_t size)
{
    if (key->algorithm == KEYALG_RSA)
        snprintf(buf, size, "RSA-%d", key->bits);
    else if (key->algorithm == KEYALG_ECC)
        snprintf(buf, size, "ECC-P%d", key->bits);
    else
        snprintf(buf, size, "%s", key_algorithm_name(key->algorithm));
    return buf;
}

/* The line being parsed: its fields by id, and where problems go. */
typedef struct parse_ctx {
    json_t *v[F_COUNT];
    error_list *errors;
} parse_ctx;

static void problem(parse_ctx *c, hse_code code, field_id f, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(parse_ctx *c, hse_code code, field_id f, const char *fmt, ...)
{
    char message[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    error_list_add(c->errors, code, field_names[f], "%s", message);
}

/* Typed readers: true when the field is absent (out untouched) or well-typed (out set). */
static bool want_string(parse_ctx *c, field_id f, const char **out)
{
    json_t *v = c->v[f];
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_string(v)) {
        problem(c, HSE_INVALID_FIELD, f, "%s must be a string", field_names[f]);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

static bool want_bool(parse_ctx *c, field_id f, bool *out)
{
    json_t *v = c->v[f];
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_boolean(v)) {
        problem(c, HSE_INVALID_FIELD, f, "%s must be true or false", field_names[f]);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* An integer given as a JSON number or a decimal string ("2048"). */
static bool want_int(parse_ctx *c, field_id f, long long *out)
{
    json_t *v = c->v[f];
    if (v == NULL || json_is_null(v))
        return true;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        long long n = strtoll(s, &end, 10);
        if (*s != '\0' && *end == '\0') {
            *out = n;
            return true;
        }
    }
    problem(c, HSE_INVALID_FIELD, f, "%s must be an integer", field_names[f]);
    return false;
}

static bool given(const parse_ctx *c, field_id f)
{
    return c->v[f] != NULL && !json_is_null(c->v[f]);
}

static char *dup_or_null(const char *s)
{
    return (s != NULL && *s != '\0') ? strdup(s) : NULL;
}

static const struct {
    const char *oid, *names[3];
    int nid, bits;
} ec_curves[] = {
    {"1.2.840.10045.3.1.7", {"P-256", "prime256v1", "secp256r1"}, NID_X9_62_prime256v1, 256},
    {"1.3.132.0.34", {"P-384", "secp384r1", NULL}, NID_secp384r1, 384},
    {"1.3.132.0.35", {"P-521", "secp521r1", NULL}, NID_secp521r1, 521},
};

static void parse_key(parse_ctx *c, request_key *key)
{
    const char *type = NULL, *curve = NULL;
    long long length = 0;
    want_string(c, F_KEY_TYPE, &type);
    bool curve_ok = want_string(c, F_CURVE, &curve);
    bool length_ok = want_int(c, F_KEY_LENGTH, &length);
    if (curve != NULL && *curve == '\0')
        curve = NULL;
    if (type == NULL || strcasecmp(type, "RSA") == 0)
        key->algorithm = KEYALG_RSA;
    else if (strcasecmp(type, "ECC") == 0 || strcasecmp(type, "EC") == 0 ||
             strcasecmp(type, "ECDSA") == 0)
        key->algorithm = KEYALG_ECC;
    else if (strcasecmp(type, "Ed25519") == 0)
        key->algorithm = KEYALG_ED25519;
    else if (strcasecmp(type, "Ed448") == 0)
        key->algorithm = KEYALG_ED448;
    else {
        problem(c, HSE_UNKNOWN_KEY_TYPE, F_KEY_TYPE,
                "KeyType \"%.60s\" is not one of RSA, ECC, Ed25519, Ed448", type);
        return;
    }
    if (!curve_ok || !length_ok)
        return;
    if (length <= 0 && c->v[F_KEY_LENGTH] != NULL && !json_is_null(c->v[F_KEY_LENGTH])) {
        /* 0 is not "the default": leave KeyLength out for that. */
        problem(c, HSE_INVALID_KEY_LENGTH, F_KEY_LENGTH,
                "KeyLength %lld is not a key size (leave KeyLength out for the default)", length);
        return;
    }
    key->curve_nid = NID_undef;
    switch (key->algorithm) {
    case KEYALG_RSA:
        key->bits = length ? (int)length : 2048;
        if (curve != NULL)
            problem(c, HSE_KEY_SPEC_MISMATCH, F_CURVE, "Curve is given for an RSA key");
        if (length != 0 && length != 2048 && length != 3072 && length != 4096)
            problem(c, HSE_INVALID_KEY_LENGTH, F_KEY_LENGTH,
                    "KeyLength %lld is not an RSA size (2048, 3072, 4096)", length);
        return;
    case KEYALG_ECC: {
        int by_curve = -1, by_length = -1;
        for (int i = 0; i < 3; i++) {
            if (curve != NULL) {
                if (strcmp(curve, ec_curves[i].oid) == 0)
                    by_curve = i;
                for (int n = 0; n < 3; n++)
                    if (ec_curves[i].names[n] && strcasecmp(curve, ec_curves[i].names[n]) == 0)
                        by_curve = i;
            }
            if (length == ec_curves[i].bits)
                by_length = i;
        }
        if (curve != NULL && by_curve < 0)
            problem(c, HSE_INVALID_CURVE, F_CURVE,
                    "Curve \"%.60s\" is not 1.2.840.10045.3.1.7 (P-256), 1.3.132.0.34 (P-384) or "
                    "1.3.132.0.35 (P-521)",
                    curve);
        if (length != 0 && by_length < 0)
            problem(c, HSE_INVALID_KEY_LENGTH, F_KEY_LENGTH,
                    "KeyLength %lld is not an ECC size (256, 384, 521)", length);
        if (by_curve >= 0 && by_length >= 0 && by_curve != by_length)
            problem(c, HSE_KEY_SPEC_MISMATCH, F_CURVE,
                    "Curve %s is a %d-bit curve but KeyLength is %lld", ec_curves[by_curve].oid,
                    ec_curves[by_curve].bits, length);
        int pick = by_curve >= 0 ? by_curve : by_length >= 0 ? by_length : 0; /* P-256 */
        key->curve_nid = ec_curves[pick].nid;
        key->bits = ec_curves[pick].bits;
        return;
    }
    case KEYALG_ED25519:
    case KEYALG_ED448: {
        bool ed25519 = key->algorithm == KEYALG_ED25519;
        const char *oid = ed25519 ? "1.3.101.112" : "1.3.101.113";
        key->bits = ed25519 ? 255 : 448;
        if (curve != NULL && strcmp(curve, oid) != 0 &&
            strcasecmp(curve, ed25519 ? "Ed25519" : "Ed448") != 0)
            problem(c, HSE_KEY_SPEC_MISMATCH, F_CURVE,
                    "Curve \"%.60s\" does not go with KeyType %s (use %s or leave Curve out)",
                    curve, ed25519 ? "Ed25519" : "Ed448", oid);
        if (length != 0 && length != key->bits && !(ed25519 && length == 256) &&
            !(!ed25519 && length == 456))
            problem(c, HSE_KEY_SPEC_MISMATCH, F_KEY_LENGTH,
                    "KeyLength %lld does not go with KeyType %s", length,
                    ed25519 ? "Ed25519" : "Ed448");
        return;
    }
    }
}

/* The line's SANs object, appended to out; each bad key or value is a problem of its own. */
static void parse_sans(parse_ctx *c, GENERAL_NAMES *out)
{
    json_t *sans = c->v[F_SANS];
    if (sans == NULL || json_is_null(sans))
        return;
    if (!json_is_object(sans)) {
        problem(c, HSE_INVALID_FIELD, F_SANS,
                "SANs must be an object of arrays, e.g. {\"dns\": [\"a.example\"]}");
        return;
    }
    const char *key;
    json_t *values;
    char field[80];
    json_object_foreach(sans, key, values)
    {
        san_kind kind = san_kind_from_key(key);
        snprintf(field, sizeof field, "SANs.%.60s", key);
        if (kind == SAN_UNKNOWN) {
            error_list_add(c->errors, HSE_UNKNOWN_SAN_TYPE, field,
                           "SAN key \"%.60s\" is not one of dns, ip4, ip6, ip, uri, rfc822, "
                           "ms_ntprincipalname, registeredid",
                           key);
            continue;
        }
        if (json_is_string(values)) {
            enroll_error e;
            if (san_add(out, kind, json_string_value(values), field, &e) != 0)
                error_list_add(c->errors, e.code_id, e.field, "%s", e.message);
            continue;
        }
        if (!json_is_array(values)) {
            error_list_add(c->errors, HSE_INVALID_FIELD, field, "%s must be an array of strings",
                           field);
            continue;
        }
        size_t i;
        json_t *v;
        json_array_foreach(values, i, v)
        {
            snprintf(field, sizeof field, "SANs.%.50s[%zu]", key, i);
            enroll_error e;
            if (!json_is_string(v))
                error_list_add(c->errors, HSE_INVALID_FIELD, field, "%s must be a string", field);
            else if (san_add(out, kind, json_string_value(v), field, &e) != 0)
                error_list_add(c->errors, e.code_id, e.field, "%s", e.message);
        }
    }
}

/* RFC 3339 as a Keyfactor server reads it: YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z, an
 * offset (+HH:MM, -HH:MM) or nothing (UTC then). Written to out (32 bytes) in UTC as
 * YYYY-MM-DDTHH:MM:SS[.fraction]Z. False when s is not one. */
static bool timestamp_parse(const char *s, char *out, size_t size)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return false;
    for (int i = 0; i < 19; i++)
        if ((i == 4 || i == 7)     ? s[i] != '-'
            : i == 10              ? (s[i] != 'T' && s[i] != 't')
            : (i == 13 || i == 16) ? s[i] != ':'
                                   : !isdigit((unsigned char)s[i]))
            return false;
    const char *p = s + 19, *fraction = NULL;
    size_t fraction_len = 0;
    if (*p == '.') {
        fraction = ++p;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
        fraction_len = (size_t)(p - fraction);
        if (fraction_len > 9)
            return false;
    }
    long offset = 0; /* seconds east of UTC */
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, m = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m) != 2 || m != 5 ||
            !isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) ||
            !isdigit((unsigned char)p[4]) || !isdigit((unsigned char)p[5]) || oh > 23 || om > 59)
            return false;
        offset = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1);
        p += 6;
    }
    if (*p != '\0')
        return false;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    struct tm back;
    gmtime_r(&t, &back);
    if (back.tm_year != y - 1900 || back.tm_mon != mo - 1 || back.tm_mday != d ||
        back.tm_hour != h || back.tm_min != mi || back.tm_sec != sec)
        return false;
    t -= offset;
    gmtime_r(&t, &back);
    char date[24];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &back);
    snprintf(out, size, "%s%s%.*sZ", date, fraction ? "." : "", (int)fraction_len,
             fraction ? fraction : "");
    return true;
}

static char *now_timestamp(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char buf[32], ms[8];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ms, sizeof ms, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
    strncat(buf, ms, sizeof buf - strlen(buf) - 1);
    return strdup(buf);
}

/* The field an unknown name most likely meant: a common other name for it (other APIs' words),
 * else the nearest by spelling. */
static const char *field_suggestion(const char *key)
{
    static const char *const aliases[][2] = {
        {"KeySize", "KeyLength"},
        {"KeyBits", "KeyLength"},
        {"Bits", "KeyLength"},
        {"Algorithm", "KeyType"},
        {"KeyAlgorithm", "KeyType"},
        {"CommonName", "Subject"},
        {"CN", "Subject"},
        {"SubjectDN", "Subject"},
        {"SAN", "SANs"},
        {"SubjectAltNames", "SANs"},
        {"Storage", "KeyStorage"},
        {"CA", "CertificateAuthority"},
        {"OutputFormat", "Format"},
        {"Pattern", "EnrollmentPatternId"},
    };
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcasecmp(key, aliases[i][0]) == 0)
            return aliases[i][1];
    return suggest_closest(key, field_names, SUGGEST_NULL_TERMINATED);
}

/* Collects the members into c->v[] by field; unknown and twice-given fields are problems (in
 * the line's order), and of two casings the first is kept. */
static void index_fields(parse_ctx *c, json_t *obj)
{
    jobj_key_check check = {0};
    while (jobj_check_keys(obj, field_names, &check)) {
        if (check.known_index < 0) {
            const char *near = field_suggestion(check.key);
            if (near != NULL)
                error_list_add(c->errors, HSE_UNKNOWN_FIELD, check.key,
                               "\"%.60s\" is not a request field; did you mean \"%s\"?", check.key,
                               near);
            else
                error_list_add(c->errors, HSE_UNKNOWN_FIELD, check.key,
                               "\"%.60s\" is not a request field (the fields are listed in the "
                               "README, \"Request lines\")",
                               check.key);
        } else
            problem(c, HSE_DUPLICATE_FIELD, (field_id)check.known_index,
                    "%s is given twice (field names are case-insensitive)",
                    field_names[check.known_index]);
    }
    for (int f = 0; f < F_COUNT; f++)
        c->v[f] = jobj_get(obj, field_names[f]);
}

static void refuse(parse_ctx *c, const field_id *fields, size_t n, const char *op, const char *why)
{
    for (size_t i = 0; i < n; i++)
        if (c->v[fields[i]] != NULL)
            problem(c, HSE_FIELD_NOT_ALLOWED, fields[i], "%s does not apply to Operation %s%s",
                    field_names[fields[i]], op, why);
}

#define REFUSE(c, list, op, why) refuse(c, list, sizeof list / sizeof list[0], op, why)

/* Fields that belong to another operation than r->operation are refused by name. */
static void refuse_other_operations(parse_ctx *c, const enroll_request *r)
{
    static const field_id key_fields[] = {F_KEY_TYPE, F_KEY_LENGTH, F_CURVE};
    static const field_id bundle_fields[] = {F_KEY_STORAGE, F_SUBJECT,       F_PASSWORD,
                                             F_LEGACY,      F_FRIENDLY_NAME, F_CSP};
    static const field_id csr_only[] = {F_CSR, F_PRIVATE_KEY, F_FORCE_ENROLL};
    static const field_id reenroll_only[] = {F_KEYSTORE_ID,    F_ALIAS,
                                             F_SUBJECT_NAME,   F_AGENT_GUID,
                                             F_JOB_PROPERTIES, F_CERTIFICATE_TEMPLATE};
    static const field_id store_delivery[] = {F_STORES, F_RENEWAL_ID, F_INSTALL_INTO_STORES};
    switch (r->operation) {
    case OP_CSR:
        REFUSE(c, reenroll_only, "CSR", "");
        REFUSE(c, store_delivery, "CSR", " (store delivery is for PFX enrollments)");
        REFUSE(c, key_fields, "CSR", " (the key and subject come from the CSR)");
        REFUSE(c, bundle_fields, "CSR", " (the key and subject come from the CSR)");
        break;
    case OP_PFX:
        REFUSE(c, reenroll_only, "PFX", "");
        REFUSE(c, csr_only, "PFX", "");
        break;
    case OP_REENROLLMENT:
        REFUSE(c, csr_only, "Reenrollment", "");
        REFUSE(c, store_delivery, "Reenrollment", " (the store is KeystoreId)");
        REFUSE(c, bundle_fields, "Reenrollment",
               " (the key is made in the store's token, the subject is SubjectName)");
        break;
    }
    const char *s = NULL;
    want_string(c, F_JOB_TIME, &s);
    if (s != NULL && *s != '\0')
        problem(c, HSE_FIELD_NOT_SUPPORTED, F_JOB_TIME,
                "JobTime: scheduled delivery is not supported, the engine enrolls at once");
    bool from_ad = false;
    want_bool(c, F_POPULATE_FROM_AD, &from_ad);
    if (from_ad)
        problem(c, HSE_FIELD_NOT_SUPPORTED, F_POPULATE_FROM_AD,
                "PopulateMissingValuesFromAD: the engine has no Active Directory to read from");
}

static void parse_operation_and_format(parse_ctx *c, enroll_request *r)
{
    const char *s = NULL;
    r->operation = OP_PFX;
    if (want_string(c, F_OPERATION, &s) && s != NULL) {
        if (strcasecmp(s, "CSR") == 0)
            r->operation = OP_CSR;
        else if (strcasecmp(s, "Reenrollment") == 0)
            r->operation = OP_REENROLLMENT;
        else if (strcasecmp(s, "PFX") != 0)
            problem(c, HSE_INVALID_FIELD, F_OPERATION,
                    "Operation must be PFX, CSR or Reenrollment");
    }
    refuse_other_operations(c, r);
    s = NULL;
    r->format = r->operation == OP_PFX ? FORMAT_PFX : FORMAT_PEM;
    if (want_string(c, F_FORMAT, &s) && s != NULL) {
        if (strcasecmp(s, "PFX") == 0 && r->operation == OP_PFX)
            r->format = FORMAT_PFX;
        else if (strcasecmp(s, "PEM") == 0)
            r->format = FORMAT_PEM;
        else if (strcasecmp(s, "DER") == 0)
            r->format = FORMAT_DER;
        else
            problem(c, HSE_INVALID_FIELD, F_FORMAT, "Format must be %s",
                    r->operation == OP_CSR            ? "PEM or DER for a CSR enrollment"
                    : r->operation == OP_REENROLLMENT ? "PEM or DER (the certificate copy)"
                                                      : "PFX, PEM or DER");
    }
    if (r->operation == OP_REENROLLMENT) {
        r->storage = STORAGE_TOKEN; /* in the store's token */
        return;
    }
    if (r->operation == OP_CSR) {
        r->storage = STORAGE_TOKEN; /* nothing is exported; a PrivateKey is retained */
        return;
    }
    s = NULL;
    r->storage = r->format == FORMAT_DER ? STORAGE_TOKEN : STORAGE_EXPORT;
    if (want_string(c, F_KEY_STORAGE, &s) && s != NULL) {
        if (strcasecmp(s, "token") == 0)
            r->storage = STORAGE_TOKEN;
        else if (strcasecmp(s, "export") == 0)
            r->storage = STORAGE_EXPORT;
        else
            problem(c, HSE_INVALID_FIELD, F_KEY_STORAGE, "KeyStorage must be token or export");
    }
    if (r->format == FORMAT_PFX && r->storage == STORAGE_TOKEN)
        problem(c, HSE_STORAGE_FORMAT_MISMATCH, F_KEY_STORAGE,
                "KeyStorage token keeps the key in the HSM, but a PFX must hold its key: use "
                "KeyStorage export, or Format PEM or DER");
}

/* The key of a CSR, as a request_key; unsupported keys are problems. */
static void describe_csr_key(parse_ctx *c, enroll_request *r, EVP_PKEY *pub)
{
    int type, bits, curve;
    if (key_describe(pub, &type, &bits, &curve) != 0) {
        problem(c, HSE_UNKNOWN_KEY_TYPE, F_CSR, "the CSR's key is not RSA, ECC, Ed25519 or Ed448");
        return;
    }
    r->key.bits = bits;
    r->key.curve_nid = curve;
    switch (type) {
    case EVP_PKEY_RSA:
        r->key.algorithm = KEYALG_RSA;
        if (bits < 2048)
            problem(c, HSE_INVALID_KEY_LENGTH, F_CSR,
                    "the CSR's RSA key has %d bits; at least 2048 are required", bits);
        else if (bits > 4096) /* as for keys made here; a pattern's KeySizes may bound it lower */
            problem(c, HSE_INVALID_KEY_LENGTH, F_CSR,
                    "the CSR's RSA key has %d bits; at most 4096 are accepted", bits);
        break;
    case EVP_PKEY_EC:
        r->key.algorithm = KEYALG_ECC;
        if (curve != NID_X9_62_prime256v1 && curve != NID_secp384r1 && curve != NID_secp521r1)
            problem(c, HSE_INVALID_CURVE, F_CSR,
                    "the CSR's key is on curve %s, not P-256, P-384 or P-521",
                    curve != NID_undef ? OBJ_nid2sn(curve) : "(unknown)");
        break;
    case EVP_PKEY_ED25519:
        r->key.algorithm = KEYALG_ED25519;
        break;
    default:
        r->key.algorithm = KEYALG_ED448;
        break;
    }
}

static void parse_csr_line(parse_ctx *c, enroll_request *r)
{
    const char *text = NULL;
    if (!want_string(c, F_CSR, &text))
        return;
    if (text == NULL || *text == '\0') {
        problem(c, HSE_MISSING_FIELD, F_CSR,
                "CSR is required for Operation CSR (base-64 DER or PEM PKCS#10)");
        return;
    }
    enroll_error e;
    r->csr = csr_decode(text, &e);
    if (r->csr == NULL) {
        error_list_add(c->errors, e.code_id, e.field, "%s", e.message);
        return;
    }
    EVP_PKEY *pub = X509_REQ_get0_pubkey(r->csr);
    if (spki_has_unnamed_ec_curve(X509_REQ_get_X509_PUBKEY(r->csr)))
        problem(c, HSE_INVALID_CURVE, F_CSR,
                "the CSR's EC key gives its curve as explicit parameters; RFC 5480 allows only a "
                "named curve (P-256, P-384 or P-521 by OID)");
    describe_csr_key(c, r, pub);
    spki_fingerprint(X509_REQ_get_X509_PUBKEY(r->csr), r->key_fingerprint);
    r->subject = X509_NAME_dup(X509_REQ_get_subject_name(r->csr));
    GENERAL_NAMES *in_csr = csr_sans(r->csr);
    if (in_csr == NULL)
        problem(c, HSE_INVALID_CSR, F_CSR, "the CSR's subjectAltName extension does not decode");
    else if (san_merge(r->sans, in_csr) != 0)
        problem(c, HSE_OUT_OF_MEMORY, F_CSR, "out of memory");
    GENERAL_NAMES_free(in_csr);
    want_bool(c, F_FORCE_ENROLL, &r->force_enroll);
    const char *key_text = NULL;
    if (want_string(c, F_PRIVATE_KEY, &key_text) && key_text != NULL && *key_text != '\0') {
        r->private_key = privkey_decode(key_text, &e);
        if (r->private_key == NULL)
            error_list_add(c->errors, e.code_id, e.field, "%s", e.message);
        else if (EVP_PKEY_eq(r->private_key, pub) != 1)
            problem(c, HSE_PRIVATE_KEY_MISMATCH, F_PRIVATE_KEY,
                    "PrivateKey is not the key of the CSR");
        /* The key text stays in the parsed document only until this line is freed. */
        OPENSSL_cleanse((char *)key_text, strlen(key_text));
    }
}

/* PFX v2 delivery into certificate stores: Stores [{StoreId, Alias, Overwrite}], and
 * RenewalCertificateId with InstallIntoExistingCertificateStores (default true). */
static void parse_store_delivery(parse_ctx *c, enroll_request *r)
{
    r->install_into_existing = true;
    want_bool(c, F_INSTALL_INTO_STORES, &r->install_into_existing);
    want_int(c, F_RENEWAL_ID, &r->renewal_id);
    if (given(c, F_RENEWAL_ID) && r->renewal_id < 1)
        problem(
            c, HSE_INVALID_FIELD, F_RENEWAL_ID,
            "RenewalCertificateId must be the KeyfactorID (1 or more) of an issued certificate");
    json_t *stores = c->v[F_STORES];
    if (stores == NULL || json_is_null(stores))
        return;
    if (!json_is_array(stores) || json_array_size(stores) > REQUEST_STORES_MAX) {
        problem(c, HSE_INVALID_FIELD, F_STORES,
                "Stores must be an array of at most %d {StoreId, Alias, Overwrite} objects",
                REQUEST_STORES_MAX);
        return;
    }
    r->stores = calloc(json_array_size(stores) + 1, sizeof *r->stores);
    size_t i;
    json_t *e;
    json_array_foreach(stores, i, e)
    {
        static const char *const store_keys[] = {"StoreId", "Alias", "Overwrite", NULL};
        jobj_key_check check = {0};
        /* An unknown key, or one given twice under two casings, makes the entry unusable. */
        bool unknown = !json_is_object(e) || jobj_check_keys(e, store_keys, &check);
        json_t *id = jobj_get(e, "StoreId"), *alias = jobj_get(e, "Alias"),
               *overwrite = jobj_get(e, "Overwrite");
        const char *alias_text = json_string_value(alias);
        if (unknown || !config_is_guid(json_string_value(id)) ||
            (alias != NULL && (alias_text == NULL || *alias_text == '\0' ||
                               strlen(alias_text) > REQUEST_ALIAS_MAX)) ||
            (overwrite != NULL && !json_is_boolean(overwrite))) {
            error_list_add(c->errors, HSE_INVALID_FIELD, "Stores",
                           "Stores[%zu] must be {\"StoreId\": GUID, \"Alias\": label of 1 to %d "
                           "bytes (default: the Id), \"Overwrite\": true|false}",
                           i, REQUEST_ALIAS_MAX);
            continue;
        }
        if (r->stores == NULL)
            continue;
        request_store_target *t = &r->stores[r->store_count++];
        t->store_id = strdup(json_string_value(id));
        t->alias = alias_text ? strdup(alias_text) : NULL; /* NULL: the request Id */
        t->overwrite = json_is_true(overwrite);
    }
    if (r->store_count > 0 && r->storage == STORAGE_TOKEN)
        problem(c, HSE_STORE_NEEDS_KEY, F_STORES,
                "delivery into a store installs the key as well: use KeyStorage export");
}

static void parse_pfx_line(parse_ctx *c, enroll_request *r)
{
    parse_store_delivery(c, r);
    parse_key(c, &r->key);
    const char *s = NULL;
    if (want_string(c, F_SUBJECT, &s)) {
        if (s == NULL || *s == '\0') {
            problem(c, HSE_MISSING_FIELD, F_SUBJECT,
                    "Subject is required (X.500, e.g. CN=dev-1.example.com,O=Example,C=US)");
        } else {
            enroll_error e;
            r->subject_text = strdup(s);
            r->subject = dn_parse(s, "Subject", &e);
            if (r->subject == NULL)
                error_list_add(c->errors, e.code_id, e.field, "%s", e.message);
        }
    }
}

/* Seed 003: the store (KeystoreId), the alias in it, the new subject and this engine's id. */
static void parse_reenrollment_line(parse_ctx *c, enroll_request *r)
{
    parse_key(c, &r->key);
    const char *store = NULL, *alias = NULL, *subject = NULL, *agent = NULL;
    if (want_string(c, F_KEYSTORE_ID, &store) && !config_is_guid(store))
        problem(c, store ? HSE_INVALID_FIELD : HSE_MISSING_FIELD, F_KEYSTORE_ID,
                "KeystoreId is required: the GUID of a certificate store (configuration Stores)");
    if (want_string(c, F_AGENT_GUID, &agent) && !config_is_guid(agent))
        problem(c, agent ? HSE_INVALID_FIELD : HSE_MISSING_FIELD, F_AGENT_GUID,
                "AgentGuid is required: the GUID of this engine as the store's orchestrator");
    if (want_string(c, F_ALIAS, &alias) &&
        (alias == NULL || *alias == '\0' || strlen(alias) > REQUEST_ALIAS_MAX))
        problem(c, alias ? HSE_INVALID_FIELD : HSE_MISSING_FIELD, F_ALIAS,
                "Alias is required: the label (1 to %d bytes) of the key and certificate in the "
                "store",
                REQUEST_ALIAS_MAX);
    else if (alias != NULL)
        r->alias = strdup(alias);
    if (want_string(c, F_SUBJECT_NAME, &subject)) {
        if (subject == NULL || *subject == '\0') {
            problem(c, HSE_MISSING_FIELD, F_SUBJECT_NAME,
                    "SubjectName is required (X.500, e.g. CN=websrvr14.keyexample.com,O=Example)");
        } else {
            enroll_error e;
            r->subject_text = strdup(subject);
            r->subject = dn_parse(subject, "SubjectName", &e);
            if (r->subject == NULL)
                error_list_add(c->errors, e.code_id, e.field, "%s", e.message);
        }
    }
    if (given(c, F_JOB_PROPERTIES) &&
        !(json_is_object(c->v[F_JOB_PROPERTIES]) && json_object_size(c->v[F_JOB_PROPERTIES]) == 0))
        problem(c, HSE_FIELD_NOT_SUPPORTED, F_JOB_PROPERTIES,
                "JobProperties: a PKCS#11 store has no per-certificate job properties");
    r->store_id = dup_or_null(config_is_guid(store) ? store : NULL);
    r->agent_guid = dup_or_null(config_is_guid(agent) ? agent : NULL);
}

static void parse_enrollment(parse_ctx *c, enroll_request *r, const request_defaults *defaults)
{
    const char *tmpl = NULL, *ca = NULL;
    bool ok = want_string(c, F_TEMPLATE, &tmpl);
    if (tmpl == NULL && r->operation == OP_REENROLLMENT) /* the seed's deprecated name */
        ok = want_string(c, F_CERTIFICATE_TEMPLATE, &tmpl) && ok;
    bool pattern_ok = want_int(c, F_PATTERN_ID, &r->pattern_id);
    ok = pattern_ok && ok;
    if (pattern_ok && r->pattern_id <= 0 && c->v[F_PATTERN_ID] != NULL &&
        !json_is_null(c->v[F_PATTERN_ID])) {
        /* -1 or 0 is no pattern, not "the default one". */
        problem(c, HSE_INVALID_FIELD, F_PATTERN_ID,
                "EnrollmentPatternId %lld is not a pattern Id (a positive integer)", r->pattern_id);
        r->pattern_id = -1;
        ok = false;
    }
    want_string(c, F_CA, &ca);
    if (tmpl != NULL && *tmpl == '\0')
        tmpl = NULL;
    if (tmpl == NULL && r->pattern_id < 0 && ok) {
        tmpl = defaults ? defaults->template_name : NULL;
        r->pattern_id = defaults ? defaults->pattern_id : -1;
        if (tmpl == NULL && r->pattern_id < 0)
            problem(c, HSE_MISSING_FIELD, F_TEMPLATE,
                    "Template or EnrollmentPatternId is required (or run --template / "
                    "--pattern)");
    }
    r->template_name = dup_or_null(tmpl);
    r->ca_name = dup_or_null(ca);
}

static void parse_output(parse_ctx *c, enroll_request *r, const request_defaults *defaults)
{
    r->include_chain = r->operation != OP_CSR; /* the seeds' defaults */
    r->include_subject_header = true;
    want_bool(c, F_INCLUDE_CHAIN, &r->include_chain);
    want_bool(c, F_SUBJECT_HEADER, &r->include_subject_header);
    want_bool(c, F_LEGACY, &r->legacy_encryption);
    const char *s = NULL;
    if (want_string(c, F_CHAIN_ORDER, &s) && s != NULL) {
        if (strcasecmp(s, "RootFirst") == 0)
            r->chain_order = CHAIN_ROOT_FIRST;
        else if (strcasecmp(s, "EndEntityFirst") != 0)
            problem(c, HSE_INVALID_FIELD, F_CHAIN_ORDER,
                    "ChainOrder must be EndEntityFirst or RootFirst");
    }
    const char *password = NULL, *friendly = NULL, *csp = NULL;
    want_string(c, F_PASSWORD, &password);
    want_string(c, F_FRIENDLY_NAME, &friendly);
    want_string(c, F_CSP, &csp);
    if (password != NULL && *password != '\0') {
        long long min = defaults ? defaults->password_length : 12;
        if ((long long)strlen(password) < min)
            problem(c, HSE_PASSWORD_TOO_SHORT, F_PASSWORD,
                    "Password is shorter than the minimum of %lld characters", min);
        else
            r->password = strdup(password);
    }
    r->friendly_name = dup_or_null(friendly);
    r->csp_name = dup_or_null(csp);
}

static void parse_annotations(parse_ctx *c, enroll_request *r)
{
    if (given(c, F_METADATA)) {
        if (!json_is_object(c->v[F_METADATA]))
            problem(c, HSE_INVALID_FIELD, F_METADATA, "Metadata must be an object");
        else
            r->metadata = json_incref(c->v[F_METADATA]);
    }
    if (given(c, F_ADDITIONAL_FIELDS)) {
        if (!json_is_object(c->v[F_ADDITIONAL_FIELDS]))
            problem(c, HSE_INVALID_FIELD, F_ADDITIONAL_FIELDS,
                    "AdditionalEnrollmentFields must be an object");
        else
            r->additional_fields = json_incref(c->v[F_ADDITIONAL_FIELDS]);
    }
    const char *role_name = NULL;
    want_int(c, F_OWNER_ROLE_ID, &r->owner_role_id);
    want_string(c, F_OWNER_ROLE_NAME, &role_name);
    if (r->owner_role_id >= 0 && role_name != NULL)
        problem(c, HSE_OWNER_ROLE_CONFLICT, F_OWNER_ROLE_NAME,
                "give OwnerRoleId or OwnerRoleName, not both");
    r->owner_role_name = dup_or_null(role_name);
    const char *s = NULL;
    char utc[48];
    bool stamped = false;
    if (want_string(c, F_TIMESTAMP, &s) && s != NULL &&
        !(stamped = timestamp_parse(s, utc, sizeof utc)))
        problem(c, HSE_INVALID_TIMESTAMP, F_TIMESTAMP,
                "Timestamp must be an RFC 3339 date and time, e.g. 2023-11-19T16:23:01Z or "
                "2023-11-19T18:23:01+02:00 (without a zone: UTC)");
    r->timestamp = stamped ? strdup(utc) : now_timestamp();
}

/* The Id, read first so that every other problem is reported under it. */
static void parse_id(parse_ctx *c, json_t *obj, enroll_request *r)
{
    json_t *id = jobj_get(obj, "Id");
    char buf[32];
    const char *text = NULL;
    if (json_is_string(id))
        text = json_string_value(id);
    else if (json_is_integer(id)) {
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(id));
        text = buf;
    }
    if (id == NULL)
        problem(c, HSE_MISSING_FIELD, F_ID, "Id is required (unique in the batch)");
    else if (text == NULL)
        problem(c, HSE_INVALID_FIELD, F_ID, "Id must be a string");
    else if (!output_name_is_safe(text))
        problem(c, HSE_INVALID_ID, F_ID,
                "Id must be 1-200 characters of A-Z a-z 0-9 . _ - and not start with '.' (it "
                "names the output files)");
    if (text != NULL && output_name_is_safe(text))
        r->id = strdup(text);
}

enroll_request *request_parse(const char *text, size_t len, long line,
                              const request_defaults *defaults, error_list *errors)
{
    json_error_t jerr;
    json_t *obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL) {
        error_list_add(errors, HSE_INVALID_JSON, NULL, "not valid JSON: %s (column %d)", jerr.text,
                       jerr.column);
        return NULL;
    }
    if (!json_is_object(obj)) {
        error_list_add(errors, HSE_INVALID_JSON, NULL, "a request line must be a JSON object");
        json_decref(obj);
        return NULL;
    }
    enroll_request *r = calloc(1, sizeof *r);
    if (r == NULL) {
        error_list_add(errors, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        json_decref(obj);
        return NULL;
    }
    r->line = line;
    r->pattern_id = -1;
    r->renewal_id = -1;
    r->owner_role_id = -1;
    r->sans = sk_GENERAL_NAME_new_null();
    parse_ctx c = {.errors = errors};
    parse_id(&c, obj, r);
    index_fields(&c, obj);
    parse_operation_and_format(&c, r);
    if (r->operation == OP_CSR)
        parse_csr_line(&c, r);
    else if (r->operation == OP_PFX)
        parse_pfx_line(&c, r);
    else
        parse_reenrollment_line(&c, r);
    /* The line's SANs join those already there (a CSR's), each name once. */
    GENERAL_NAMES *line_sans = sk_GENERAL_NAME_new_null();
    if (r->sans != NULL && line_sans != NULL) {
        parse_sans(&c, line_sans);
        if (san_merge(r->sans, line_sans) != 0)
            error_list_add(errors, HSE_OUT_OF_MEMORY, NULL, "out of memory");
    }
    GENERAL_NAMES_free(line_sans);
    parse_enrollment(&c, r, defaults);
    parse_output(&c, r, defaults);
    parse_annotations(&c, r);
    json_decref(obj);
    return r;
}

void request_free(enroll_request *req)
{
    if (req == NULL)
        return;
    free(req->id);
    free(req->store_id);
    free(req->alias);
    for (size_t i = 0; i < req->store_count; i++) {
        free(req->stores[i].store_id);
        free(req->stores[i].alias);
    }
    free(req->stores);
    free(req->agent_guid);
    X509_NAME_free(req->subject);
    free(req->subject_text);
    GENERAL_NAMES_free(req->sans);
    X509_REQ_free(req->csr);
    EVP_PKEY_free(req->private_key);
    free(req->template_name);
    free(req->ca_name);
    if (req->password != NULL) {
        OPENSSL_cleanse(req->password, strlen(req->password));
        free(req->password);
    }
    free(req->friendly_name);
    free(req->csp_name);
    json_decref(req->metadata);
    json_decref(req->additional_fields);
    free(req->owner_role_name);
    free(req->timestamp);
    free(req);
}
