/* Request lines: the Keyfactor field vocabulary (case-insensitive), types and defaults, key spec
 * resolution (KeyType / KeyLength / Curve), subject and SAN parsing, format/storage rules. */
#include "request.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/obj_mac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "formats/dn.h"
#include "formats/san.h"
#include "output.h"

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

static const char *const field_names[F_COUNT] = {
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

static int fail(enroll_error *err, const char *code, field_id f, const char *fmt, const char *arg)
{
    enroll_error_set(err, code, field_names[f], fmt, field_names[f], arg ? arg : "");
    return -1;
}

static int want_string(json_t *v, field_id f, const char **out, enroll_error *err)
{
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(err, "INVALID_FIELD", f, "%s must be a string%s", NULL);
    *out = json_string_value(v);
    return 0;
}

static int want_bool(json_t *v, field_id f, bool *out, enroll_error *err)
{
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return fail(err, "INVALID_FIELD", f, "%s must be true or false%s", NULL);
    *out = json_is_true(v);
    return 0;
}

/* An integer given as a JSON number or a decimal string ("2048"). */
static int want_int(json_t *v, field_id f, long long *out, enroll_error *err)
{
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        long long n = strtoll(s, &end, 10);
        if (*s != '\0' && *end == '\0') {
            *out = n;
            return 0;
        }
    }
    return fail(err, "INVALID_FIELD", f, "%s must be an integer%s", NULL);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int parse_key(json_t *const *v, request_key *key, enroll_error *err)
{
    const char *type = NULL, *curve = NULL;
    long long length = 0;
    if (want_string(v[F_KEY_TYPE], F_KEY_TYPE, &type, err) ||
        want_string(v[F_CURVE], F_CURVE, &curve, err) ||
        want_int(v[F_KEY_LENGTH], F_KEY_LENGTH, &length, err))
        return -1;
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
        enroll_error_set(err, "UNKNOWN_KEY_TYPE", "KeyType",
                         "KeyType \"%.60s\" is not one of RSA, ECC, Ed25519, Ed448", type);
        return -1;
    }
    key->curve_nid = NID_undef;
    switch (key->algorithm) {
    case KEYALG_RSA:
        if (curve != NULL) {
            enroll_error_set(err, "KEY_SPEC_MISMATCH", "Curve", "Curve is given for an RSA key");
            return -1;
        }
        key->bits = length ? (int)length : 2048;
        if (length != 0 && length != 2048 && length != 3072 && length != 4096) {
            enroll_error_set(err, "INVALID_KEY_LENGTH", "KeyLength",
                             "KeyLength %lld is not an RSA size (2048, 3072, 4096)", length);
            return -1;
        }
        return 0;
    case KEYALG_ECC: {
        static const struct {
            const char *oid, *names[3];
            int nid, bits;
        } curves[] = {
            {"1.2.840.10045.3.1.7",
             {"P-256", "prime256v1", "secp256r1"},
             NID_X9_62_prime256v1,
             256},
            {"1.3.132.0.34", {"P-384", "secp384r1", NULL}, NID_secp384r1, 384},
            {"1.3.132.0.35", {"P-521", "secp521r1", NULL}, NID_secp521r1, 521},
        };
        int by_curve = -1, by_length = -1;
        for (int i = 0; i < 3; i++) {
            if (curve != NULL) {
                if (strcmp(curve, curves[i].oid) == 0)
                    by_curve = i;
                for (int n = 0; n < 3; n++)
                    if (curves[i].names[n] && strcasecmp(curve, curves[i].names[n]) == 0)
                        by_curve = i;
            }
            if (length == curves[i].bits)
                by_length = i;
        }
        if (curve != NULL && by_curve < 0) {
            enroll_error_set(err, "INVALID_CURVE", "Curve",
                             "Curve \"%.60s\" is not 1.2.840.10045.3.1.7 (P-256), 1.3.132.0.34 "
                             "(P-384) or 1.3.132.0.35 (P-521)",
                             curve);
            return -1;
        }
        if (length != 0 && by_length < 0) {
            enroll_error_set(err, "INVALID_KEY_LENGTH", "KeyLength",
                             "KeyLength %lld is not an ECC size (256, 384, 521)", length);
            return -1;
        }
        if (by_curve >= 0 && by_length >= 0 && by_curve != by_length) {
            enroll_error_set(err, "KEY_SPEC_MISMATCH", "Curve",
                             "Curve %s is a %d-bit curve but KeyLength is %lld",
                             curves[by_curve].oid, curves[by_curve].bits, length);
            return -1;
        }
        int pick = by_curve >= 0 ? by_curve : by_length >= 0 ? by_length : 0; /* P-256 */
        key->curve_nid = curves[pick].nid;
        key->bits = curves[pick].bits;
        return 0;
    }
    case KEYALG_ED25519:
    case KEYALG_ED448: {
        bool ed25519 = key->algorithm == KEYALG_ED25519;
        const char *oid = ed25519 ? "1.3.101.112" : "1.3.101.113";
        key->bits = ed25519 ? 255 : 448;
        if (curve != NULL && strcmp(curve, oid) != 0 &&
            strcasecmp(curve, ed25519 ? "Ed25519" : "Ed448") != 0) {
            enroll_error_set(err, "KEY_SPEC_MISMATCH", "Curve",
                             "Curve \"%.60s\" does not go with "
                             "KeyType %s (use %s or leave Curve out)",
                             curve, ed25519 ? "Ed25519" : "Ed448", oid);
            return -1;
        }
        if (length != 0 && length != key->bits && !(ed25519 && length == 256) &&
            !(!ed25519 && length == 456)) {
            enroll_error_set(err, "KEY_SPEC_MISMATCH", "KeyLength",
                             "KeyLength %lld does not go with KeyType %s", length,
                             ed25519 ? "Ed25519" : "Ed448");
            return -1;
        }
        return 0;
    }
    }
    return -1;
}

static int parse_sans(json_t *sans, GENERAL_NAMES *out, enroll_error *err)
{
    if (sans == NULL || json_is_null(sans))
        return 0;
    if (!json_is_object(sans)) {
        enroll_error_set(err, "INVALID_FIELD", "SANs",
                         "SANs must be an object of arrays, e.g. {\"dns\": [\"a.example\"]}");
        return -1;
    }
    const char *key;
    json_t *values;
    char field[80];
    json_object_foreach(sans, key, values)
    {
        san_kind kind = san_kind_from_key(key);
        snprintf(field, sizeof field, "SANs.%.60s", key);
        if (kind == SAN_UNKNOWN) {
            enroll_error_set(err, "UNKNOWN_SAN_TYPE", field,
                             "SAN key \"%.60s\" is not one of dns, ip4, ip6, uri, rfc822, "
                             "ms_ntprincipalname, registeredid",
                             key);
            return -1;
        }
        if (json_is_string(values)) {
            if (san_add(out, kind, json_string_value(values), field, err) != 0)
                return -1;
            continue;
        }
        if (!json_is_array(values)) {
            enroll_error_set(err, "INVALID_FIELD", field, "%s must be an array of strings", field);
            return -1;
        }
        size_t i;
        json_t *v;
        json_array_foreach(values, i, v)
        {
            snprintf(field, sizeof field, "SANs.%.50s[%zu]", key, i);
            if (!json_is_string(v)) {
                enroll_error_set(err, "INVALID_FIELD", field, "%s must be a string", field);
                return -1;
            }
            if (san_add(out, kind, json_string_value(v), field, err) != 0)
                return -1;
        }
    }
    return 0;
}

/* ISO 8601 UTC: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00). */
static bool timestamp_valid(const char *s)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return false;
    for (int i = 0; i < 19; i++)
        if ((i == 4 || i == 7)     ? s[i] != '-'
            : i == 10              ? s[i] != 'T'
            : (i == 13 || i == 16) ? s[i] != ':'
                                   : !isdigit((unsigned char)s[i]))
            return false;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
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
    return back.tm_year == y - 1900 && back.tm_mon == mo - 1 && back.tm_mday == d &&
           back.tm_hour == h && back.tm_min == mi && back.tm_sec == sec;
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

/* Collects the members into v[] by field, rejecting unknown and twice-given fields. */
static int index_fields(json_t *obj, json_t **v, enroll_error *err)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        int f = -1;
        for (int i = 0; i < F_COUNT; i++) {
            if (strcasecmp(key, field_names[i]) == 0) {
                f = i;
                break;
            }
        }
        if (f < 0) {
            enroll_error_set(err, "UNKNOWN_FIELD", key,
                             "\"%.60s\" is not a request field (see the README for the list)", key);
            return -1;
        }
        if (v[f] != NULL) {
            enroll_error_set(err, "DUPLICATE_FIELD", field_names[f],
                             "%s is given twice (field names are case-insensitive)",
                             field_names[f]);
            return -1;
        }
        v[f] = value;
    }
    return 0;
}

static int parse_fields(json_t *const *v, enroll_request *r, const request_defaults *defaults,
                        enroll_error *err)
{
    const char *s = NULL;
    /* Operation, then format and storage with their defaults. */
    if (want_string(v[F_OPERATION], F_OPERATION, &s, err))
        return -1;
    if (s == NULL || strcasecmp(s, "PFX") == 0)
        r->operation = OP_PFX;
    else if (strcasecmp(s, "CSR") == 0)
        r->operation = OP_CSR;
    else if (strcasecmp(s, "Reenrollment") == 0)
        r->operation = OP_REENROLLMENT;
    else
        return fail(err, "INVALID_FIELD", F_OPERATION, "%s must be PFX, CSR or Reenrollment%s",
                    NULL);
    if (r->operation != OP_PFX)
        return fail(err, "UNSUPPORTED_OPERATION", F_OPERATION,
                    "%s \"%s\" is not available in this version of hsmenroll",
                    r->operation == OP_CSR ? "CSR" : "Reenrollment");
    static const field_id other_ops[] = {F_CSR,         F_PRIVATE_KEY,    F_FORCE_ENROLL,
                                         F_KEYSTORE_ID, F_ALIAS,          F_SUBJECT_NAME,
                                         F_AGENT_GUID,  F_JOB_PROPERTIES, F_CERTIFICATE_TEMPLATE};
    for (size_t i = 0; i < sizeof other_ops / sizeof other_ops[0]; i++)
        if (v[other_ops[i]] != NULL)
            return fail(err, "FIELD_NOT_ALLOWED", other_ops[i],
                        "%s does not apply to Operation PFX%s", NULL);
    static const field_id unsupported[] = {F_STORES, F_RENEWAL_ID, F_INSTALL_INTO_STORES};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (v[unsupported[i]] != NULL && !json_is_null(v[unsupported[i]]))
            return fail(err, "FIELD_NOT_SUPPORTED", unsupported[i],
                        "%s (certificate store delivery) is not available in this version%s", NULL);
    s = NULL;
    if (want_string(v[F_JOB_TIME], F_JOB_TIME, &s, err))
        return -1;
    if (s != NULL && *s != '\0')
        return fail(err, "FIELD_NOT_SUPPORTED", F_JOB_TIME,
                    "%s: scheduled delivery is not supported, the engine enrolls at once%s", NULL);
    bool from_ad = false;
    if (want_bool(v[F_POPULATE_FROM_AD], F_POPULATE_FROM_AD, &from_ad, err))
        return -1;
    if (from_ad)
        return fail(err, "FIELD_NOT_SUPPORTED", F_POPULATE_FROM_AD,
                    "%s: the engine has no Active Directory to read from%s", NULL);

    s = NULL;
    if (want_string(v[F_FORMAT], F_FORMAT, &s, err))
        return -1;
    if (s == NULL || strcasecmp(s, "PFX") == 0)
        r->format = FORMAT_PFX;
    else if (strcasecmp(s, "PEM") == 0)
        r->format = FORMAT_PEM;
    else if (strcasecmp(s, "DER") == 0)
        r->format = FORMAT_DER;
    else
        return fail(err, "INVALID_FIELD", F_FORMAT, "%s must be PFX, PEM or DER%s", NULL);
    s = NULL;
    if (want_string(v[F_KEY_STORAGE], F_KEY_STORAGE, &s, err))
        return -1;
    if (s == NULL)
        r->storage = r->format == FORMAT_DER ? STORAGE_TOKEN : STORAGE_EXPORT;
    else if (strcasecmp(s, "token") == 0)
        r->storage = STORAGE_TOKEN;
    else if (strcasecmp(s, "export") == 0)
        r->storage = STORAGE_EXPORT;
    else
        return fail(err, "INVALID_FIELD", F_KEY_STORAGE, "%s must be token or export%s", NULL);
    if (r->format == FORMAT_PFX && r->storage == STORAGE_TOKEN)
        return fail(err, "STORAGE_FORMAT_MISMATCH", F_KEY_STORAGE,
                    "%s token keeps the key in the HSM, but a PFX must hold its key: use "
                    "KeyStorage export, or Format PEM or DER%s",
                    NULL);

    if (parse_key(v, &r->key, err) != 0)
        return -1;

    s = NULL;
    if (want_string(v[F_SUBJECT], F_SUBJECT, &s, err))
        return -1;
    if (s == NULL || *s == '\0')
        return fail(err, "MISSING_FIELD", F_SUBJECT,
                    "%s is required (X.500, e.g. CN=dev-1.example.com,O=Example,C=US)%s", NULL);
    r->subject_text = strdup(s);
    r->subject = dn_parse(s, "Subject", err);
    if (r->subject == NULL)
        return -1;
    r->sans = sk_GENERAL_NAME_new_null();
    if (r->sans == NULL || parse_sans(v[F_SANS], r->sans, err) != 0)
        return -1;

    const char *tmpl = NULL, *ca = NULL;
    if (want_string(v[F_TEMPLATE], F_TEMPLATE, &tmpl, err) ||
        want_int(v[F_PATTERN_ID], F_PATTERN_ID, &r->pattern_id, err) ||
        want_string(v[F_CA], F_CA, &ca, err))
        return -1;
    if (tmpl != NULL && *tmpl == '\0')
        tmpl = NULL;
    if (tmpl == NULL && r->pattern_id < 0) {
        tmpl = defaults ? defaults->template_name : NULL;
        r->pattern_id = defaults ? defaults->pattern_id : -1;
    }
    if (tmpl == NULL && r->pattern_id < 0)
        return fail(err, "MISSING_FIELD", F_TEMPLATE,
                    "%s or EnrollmentPatternId is required (or run --template / --pattern)%s",
                    NULL);
    r->template_name = dup_or_null(tmpl);
    r->ca_name = (ca != NULL && *ca != '\0') ? strdup(ca) : NULL;

    r->include_chain = true;
    r->include_subject_header = true;
    if (want_bool(v[F_INCLUDE_CHAIN], F_INCLUDE_CHAIN, &r->include_chain, err) ||
        want_bool(v[F_SUBJECT_HEADER], F_SUBJECT_HEADER, &r->include_subject_header, err) ||
        want_bool(v[F_LEGACY], F_LEGACY, &r->legacy_encryption, err))
        return -1;
    s = NULL;
    if (want_string(v[F_CHAIN_ORDER], F_CHAIN_ORDER, &s, err))
        return -1;
    if (s == NULL || strcasecmp(s, "EndEntityFirst") == 0)
        r->chain_order = CHAIN_END_ENTITY_FIRST;
    else if (strcasecmp(s, "RootFirst") == 0)
        r->chain_order = CHAIN_ROOT_FIRST;
    else
        return fail(err, "INVALID_FIELD", F_CHAIN_ORDER, "%s must be EndEntityFirst or RootFirst%s",
                    NULL);

    const char *password = NULL, *friendly = NULL, *csp = NULL;
    if (want_string(v[F_PASSWORD], F_PASSWORD, &password, err) ||
        want_string(v[F_FRIENDLY_NAME], F_FRIENDLY_NAME, &friendly, err) ||
        want_string(v[F_CSP], F_CSP, &csp, err))
        return -1;
    if (password != NULL && *password != '\0') {
        long long min = defaults ? defaults->password_length : 12;
        if ((long long)strlen(password) < min) {
            enroll_error_set(err, "PASSWORD_TOO_SHORT", "Password",
                             "Password is shorter than the minimum of %lld characters", min);
            return -1;
        }
        r->password = strdup(password);
    }
    r->friendly_name = (friendly && *friendly) ? strdup(friendly) : NULL;
    r->csp_name = (csp && *csp) ? strdup(csp) : NULL;

    if (v[F_METADATA] != NULL && !json_is_null(v[F_METADATA])) {
        if (!json_is_object(v[F_METADATA]))
            return fail(err, "INVALID_FIELD", F_METADATA, "%s must be an object%s", NULL);
        r->metadata = json_incref(v[F_METADATA]);
    }
    if (v[F_ADDITIONAL_FIELDS] != NULL && !json_is_null(v[F_ADDITIONAL_FIELDS])) {
        if (!json_is_object(v[F_ADDITIONAL_FIELDS]))
            return fail(err, "INVALID_FIELD", F_ADDITIONAL_FIELDS, "%s must be an object%s", NULL);
        r->additional_fields = json_incref(v[F_ADDITIONAL_FIELDS]);
    }
    const char *role_name = NULL;
    if (want_int(v[F_OWNER_ROLE_ID], F_OWNER_ROLE_ID, &r->owner_role_id, err) ||
        want_string(v[F_OWNER_ROLE_NAME], F_OWNER_ROLE_NAME, &role_name, err))
        return -1;
    if (r->owner_role_id >= 0 && role_name != NULL)
        return fail(err, "OWNER_ROLE_CONFLICT", F_OWNER_ROLE_NAME,
                    "give OwnerRoleId or %s, not both%s", NULL);
    r->owner_role_name = dup_or_null(role_name);

    s = NULL;
    if (want_string(v[F_TIMESTAMP], F_TIMESTAMP, &s, err))
        return -1;
    if (s != NULL && !timestamp_valid(s))
        return fail(err, "INVALID_TIMESTAMP", F_TIMESTAMP,
                    "%s must be ISO 8601 UTC, e.g. 2023-11-19T16:23:01Z%s", NULL);
    r->timestamp = s ? strdup(s) : now_timestamp();
    return 0;
}

enroll_request *request_parse(const char *text, size_t len, long line,
                              const request_defaults *defaults, char **id_out, enroll_error *err)
{
    *id_out = NULL;
    json_error_t jerr;
    json_t *obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL) {
        enroll_error_set(err, "INVALID_JSON", NULL, "not valid JSON: %s (column %d)", jerr.text,
                         jerr.column);
        return NULL;
    }
    enroll_request *r = NULL;
    if (!json_is_object(obj)) {
        enroll_error_set(err, "INVALID_JSON", NULL, "a request line must be a JSON object");
        goto fail;
    }
    json_t *v[F_COUNT] = {0};
    /* Read the Id first, so that every other error is reported under it. */
    json_t *id = NULL;
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        if (strcasecmp(key, "Id") == 0 && id == NULL)
            id = value;
    }
    char idbuf[32];
    const char *id_text = NULL;
    if (json_is_string(id))
        id_text = json_string_value(id);
    else if (json_is_integer(id)) {
        snprintf(idbuf, sizeof idbuf, "%lld", (long long)json_integer_value(id));
        id_text = idbuf;
    }
    if (id_text != NULL)
        *id_out = strdup(id_text);
    if (index_fields(obj, v, err) != 0)
        goto fail;
    if (id == NULL) {
        enroll_error_set(err, "MISSING_FIELD", "Id", "Id is required (unique in the batch)");
        goto fail;
    }
    if (id_text == NULL) {
        enroll_error_set(err, "INVALID_FIELD", "Id", "Id must be a string");
        goto fail;
    }
    if (!output_name_is_safe(id_text)) {
        enroll_error_set(err, "INVALID_ID", "Id",
                         "Id must be 1-200 characters of A-Z a-z 0-9 . _ - and not start with "
                         "'.' (it names the output files)");
        goto fail;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL) {
        enroll_error_set(err, "OUT_OF_MEMORY", NULL, "out of memory");
        goto fail;
    }
    r->id = strdup(id_text);
    r->line = line;
    r->pattern_id = -1;
    r->owner_role_id = -1;
    if (parse_fields(v, r, defaults, err) != 0) {
        request_free(r);
        r = NULL;
    }
fail:
    json_decref(obj);
    return r;
}

void request_free(enroll_request *req)
{
    if (req == NULL)
        return;
    free(req->id);
    X509_NAME_free(req->subject);
    free(req->subject_text);
    GENERAL_NAMES_free(req->sans);
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
