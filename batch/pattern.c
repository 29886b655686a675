/* Compiling enrollment-pattern policy from the configuration document, and checking metadata
 * values against their rules. */
#include "pattern.h"

#include <ctype.h>
#include <openssl/obj_mac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "formats/dn.h"

#define ERR(errors, code, path, ...) error_list_add((errors), (code), (path), __VA_ARGS__)

static const char *const global_metadata_keys[] = {
    "Id",           "Name",          "Description", "DataType", "Hint",
    "Validation",   "Enrollment",    "Message",     "Options",  "DefaultValue",
    "DisplayOrder", "CaseSensitive", NULL};
static const char *const pattern_metadata_keys[] = {
    "MetadataId", "DefaultValue", "Validation",    "Enrollment",
    "Message",    "Options",      "CaseSensitive", NULL};
static const char *const regex_keys[] = {"SubjectPart", "Regex", "Error", "CaseSensitive", NULL};
static const char *const default_keys[] = {"SubjectPart", "Value", NULL};
static const char *const policies_keys[] = {"AllowKeyReuse",
                                            "AllowWildcards",
                                            "RFCEnforcement",
                                            "CertificateOwnerRole",
                                            "DefaultCertificateOwnerRoleId",
                                            "DefaultCertificateOwnerRoleName",
                                            "KeyInfo",
                                            NULL};
static const char *const key_info_keys[] = {"RSA", "ECDSA", "ECC", "Ed25519", "Ed448", NULL};
static const char *const key_entry_keys[] = {"bit_lengths", "curves", NULL};
static const char *const field_keys[] = {"Name", "DataType", "Options", NULL};

bool option_listed(char *const *options, size_t count, const char *value, bool case_sensitive)
{
    for (size_t i = 0; i < count; i++)
        if (case_sensitive ? strcmp(options[i], value) == 0 : strcasecmp(options[i], value) == 0)
            return true;
    return false;
}

static void free_options(char **options, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(options[i]);
    free(options);
}

/* Options as a JSON array of strings or one comma-separated string (the seed shows both). */
static char **read_options(const json_t *v, const char *path, size_t *count, error_list *errors)
{
    *count = 0;
    if (v == NULL || json_is_null(v))
        return NULL;
    char **out = NULL;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = 1;
        for (const char *p = s; *p; p++)
            n += *p == ',';
        out = calloc(n, sizeof *out);
        const char *start = s;
        for (const char *p = s;; p++) {
            if (*p == ',' || *p == '\0') {
                while (start < p && isspace((unsigned char)*start))
                    start++;
                const char *end = p;
                while (end > start && isspace((unsigned char)end[-1]))
                    end--;
                if (end > start && out != NULL)
                    out[(*count)++] = strndup(start, (size_t)(end - start));
                if (*p == '\0')
                    break;
                start = p + 1;
            }
        }
    } else if (json_is_array(v)) {
        out = calloc(json_array_size(v) + 1, sizeof *out);
        size_t i;
        json_t *item;
        char where[256];
        json_array_foreach(v, i, item)
        {
            if (!json_is_string(item) || json_string_length(item) == 0) {
                ERR(errors, HSE_CONFIG_TYPE, json_path_index(where, sizeof where, path, i),
                    "%s: expected a non-empty string", where);
                continue;
            }
            if (out != NULL)
                out[(*count)++] = strdup(json_string_value(item));
        }
    } else {
        ERR(errors, HSE_CONFIG_TYPE, path,
            "%s: expected an array of strings or a comma-separated "
            "string",
            path);
    }
    return out;
}

static regex *compile_at(const char *source, bool case_sensitive, const char *path,
                         error_list *errors)
{
    char why[200];
    regex *re = regex_compile(source, case_sensitive, why, sizeof why);
    if (re == NULL)
        ERR(errors, HSE_CONFIG_REGEX, path, "%s: not a valid regular expression: %s", path, why);
    return re;
}

static bool is_string_type(metadata_type t)
{
    return t == METADATA_STRING || t == METADATA_BIG_TEXT || t == METADATA_EMAIL ||
           t == METADATA_OTHER;
}

static bool valid_date(const char *s)
{
    int y, m, d, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10 || s[10] != '\0')
        return false;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d, .tm_hour = 12};
    time_t t = timegm(&tm);
    struct tm back;
    gmtime_r(&t, &back);
    return back.tm_year == y - 1900 && back.tm_mon == m - 1 && back.tm_mday == d;
}

const char *metadata_value_problem(const metadata_rule *rule, const char *value)
{
    switch (rule->type) {
    case METADATA_INTEGER: {
        const char *p = value + (*value == '-' || *value == '+');
        if (*p == '\0')
            return "must be an integer";
        for (; *p; p++)
            if (!isdigit((unsigned char)*p))
                return "must be an integer";
        break;
    }
    case METADATA_DATE:
        if (!valid_date(value))
            return "must be a date (YYYY-MM-DD)";
        break;
    case METADATA_BOOLEAN:
        if (strcasecmp(value, "true") != 0 && strcasecmp(value, "false") != 0)
            return "must be true or false";
        break;
    case METADATA_EMAIL: {
        const char *at = strchr(value, '@');
        if (at == NULL || at == value || at[1] == '\0' || strchr(at + 1, '@') ||
            strchr(at + 1, '.') == NULL || strpbrk(value, " \t") != NULL)
            return "must be an e-mail address";
        break;
    }
    case METADATA_MULTIPLE_CHOICE:
        if (!option_listed(rule->options, rule->option_count, value, rule->case_sensitive))
            return "is not one of the field's options";
        break;
    default:
        break;
    }
    if (rule->validation != NULL && !regex_match(rule->validation, value))
        return rule->message && *rule->message ? rule->message
                                               : "does not match the field's validation";
    return NULL;
}

/* Reads Validation / Options / Message / Enrollment / DefaultValue / CaseSensitive of a metadata
 * entry (global or override) into rule, then checks them together. */
static void read_metadata_settings(metadata_rule *rule, const json_t *entry, const char *path,
                                   bool is_override, error_list *errors)
{
    char where[256];
    long long enrollment = rule->enrollment;
    const char *validation = NULL;
    bool was_case_sensitive = rule->case_sensitive;
    json_opt_bool(entry, "CaseSensitive", path, &rule->case_sensitive, errors);
    json_opt_int(entry, "Enrollment", path, &enrollment, errors);
    json_opt_string(entry, "DefaultValue", path, &rule->default_value, errors);
    json_opt_string(entry, "Message", path, &rule->message, errors);
    json_opt_string(entry, "Validation", path, &validation, errors);
    if (enrollment < 0 || enrollment > 2)
        ERR(errors, HSE_CONFIG_VALUE, json_path_key(where, sizeof where, path, "Enrollment"),
            "%s: 0 (optional), 1 (required) or 2 (hidden)", where);
    rule->enrollment = (field_enrollment)enrollment;
    if (rule->default_value != NULL && *rule->default_value == '\0')
        rule->default_value = NULL;
    if (validation != NULL && *validation != '\0') {
        json_path_key(where, sizeof where, path, "Validation");
        if (!is_string_type(rule->type)) {
            ERR(errors, HSE_CONFIG_RULE, where,
                "%s: a validation expression applies to string fields only", where);
        } else {
            regex_free(rule->validation);
            rule->validation = compile_at(validation, rule->case_sensitive, where, errors);
        }
    } else if (is_override && jobj_get(entry, "Validation") != NULL && rule->validation) {
        regex_free(rule->validation); /* "" clears the global expression */
        rule->validation = NULL;
    } else if (rule->validation != NULL && rule->case_sensitive != was_case_sensitive) {
        /* The inherited expression, matched with the overriding case rule. */
        regex *again =
            compile_at(regex_source(rule->validation), rule->case_sensitive,
                       json_path_key(where, sizeof where, path, "CaseSensitive"), errors);
        regex_free(rule->validation);
        rule->validation = again;
    }
    json_t *options = jobj_get(entry, "Options");
    if (options != NULL && !json_is_null(options) &&
        !(json_is_string(options) && json_string_length(options) == 0)) {
        json_path_key(where, sizeof where, path, "Options");
        size_t n = 0;
        char **list = read_options(options, where, &n, errors);
        if (rule->type != METADATA_MULTIPLE_CHOICE) {
            ERR(errors, HSE_CONFIG_RULE, where, "%s: options apply to multiple-choice fields only",
                where);
            free_options(list, n);
        } else {
            free_options(rule->options, rule->option_count);
            rule->options = list;
            rule->option_count = n;
        }
    }
    if (rule->type == METADATA_MULTIPLE_CHOICE && rule->option_count == 0)
        ERR(errors, HSE_CONFIG_RULE, json_path_key(where, sizeof where, path, "Options"),
            "%s: a multiple-choice field needs its options", where);
    if (rule->default_value != NULL) {
        const char *problem = metadata_value_problem(rule, rule->default_value);
        if (problem != NULL)
            ERR(errors, HSE_CONFIG_RULE, json_path_key(where, sizeof where, path, "DefaultValue"),
                "%s: the default value \"%s\" %s", where, rule->default_value, problem);
    }
}

void metadata_rules_free(metadata_rule *rules, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        regex_free(rules[i].validation);
        free_options(rules[i].options, rules[i].option_count);
    }
    free(rules);
}

int metadata_fields_load(const json_t *fields, metadata_rule **out, size_t *count,
                         error_list *errors)
{
    size_t before = errors->count;
    *out = NULL;
    *count = 0;
    if (fields == NULL || json_is_null(fields))
        return 0;
    if (!json_is_array(fields)) {
        ERR(errors, HSE_CONFIG_TYPE, "MetadataFields", "MetadataFields: expected an array");
        return -1;
    }
    *out = calloc(json_array_size(fields) + 1, sizeof **out);
    if (*out == NULL)
        return -1;
    size_t i;
    json_t *entry;
    char path[256], where[256];
    json_array_foreach(fields, i, entry)
    {
        json_path_index(path, sizeof path, "MetadataFields", i);
        if (!json_is_object(entry)) {
            ERR(errors, HSE_CONFIG_TYPE, path, "%s: expected an object", path);
            continue;
        }
        json_check_keys(entry, path, global_metadata_keys, errors);
        metadata_rule *rule = &(*out)[(*count)++];
        rule->id = -1;
        rule->case_sensitive = true;
        long long type = METADATA_STRING;
        json_opt_int(entry, "Id", path, &rule->id, errors);
        json_opt_string(entry, "Name", path, &rule->name, errors);
        json_opt_int(entry, "DataType", path, &type, errors);
        if (jobj_get(entry, "Id") == NULL)
            ERR(errors, HSE_CONFIG_MISSING, json_path_key(where, sizeof where, path, "Id"),
                "%s: required", where);
        if (rule->name == NULL || *rule->name == '\0') {
            ERR(errors, HSE_CONFIG_MISSING, json_path_key(where, sizeof where, path, "Name"),
                "%s: required", where);
            rule->name = "";
        }
        if (type < 1 || type > 8)
            ERR(errors, HSE_CONFIG_VALUE, json_path_key(where, sizeof where, path, "DataType"),
                "%s: 1 string, 2 integer, 3 date, 4 boolean, 5 multiple choice, 6 big text, "
                "7 e-mail, 8 other",
                where);
        rule->type = (metadata_type)type;
        read_metadata_settings(rule, entry, path, false, errors);
        for (size_t j = 0; j + 1 < *count; j++) {
            if ((*out)[j].id == rule->id && rule->id >= 0)
                ERR(errors, HSE_CONFIG_DUPLICATE, json_path_key(where, sizeof where, path, "Id"),
                    "%s: metadata field Id %lld is used twice", where, rule->id);
            if (*rule->name && strcasecmp((*out)[j].name, rule->name) == 0)
                ERR(errors, HSE_CONFIG_DUPLICATE, json_path_key(where, sizeof where, path, "Name"),
                    "%s: metadata field \"%s\" is defined twice", where, rule->name);
        }
    }
    return errors->count > before ? -1 : 0;
}

/* Copies a global rule (its own copies of the compiled parts) for a pattern to override. */
static int copy_rule(metadata_rule *dst, const metadata_rule *src)
{
    *dst = *src;
    dst->validation = NULL;
    dst->options = NULL;
    dst->option_count = 0;
    if (src->validation != NULL) {
        char why[200];
        dst->validation =
            regex_compile(regex_source(src->validation), src->case_sensitive, why, sizeof why);
        if (dst->validation == NULL)
            return -1;
    }
    if (src->option_count > 0) {
        dst->options = calloc(src->option_count, sizeof *dst->options);
        if (dst->options == NULL)
            return -1;
        for (size_t i = 0; i < src->option_count; i++)
            dst->options[dst->option_count++] = strdup(src->options[i]);
    }
    return 0;
}

static void load_metadata_overrides(pattern_policy *out, const json_t *list, const char *path,
                                    const metadata_rule *global, size_t global_count,
                                    error_list *errors)
{
    out->metadata = calloc(global_count + 1, sizeof *out->metadata);
    if (out->metadata == NULL)
        return;
    for (size_t g = 0; g < global_count; g++)
        if (copy_rule(&out->metadata[out->metadata_count], &global[g]) == 0)
            out->metadata_count++;
    if (list == NULL || json_is_null(list))
        return;
    if (!json_is_array(list)) {
        ERR(errors, HSE_CONFIG_TYPE, path, "%s: expected an array", path);
        return;
    }
    size_t i;
    json_t *entry;
    char item[256], where[256];
    json_array_foreach(list, i, entry)
    {
        json_path_index(item, sizeof item, path, i);
        if (!json_is_object(entry)) {
            ERR(errors, HSE_CONFIG_TYPE, item, "%s: expected an object", item);
            continue;
        }
        json_check_keys(entry, item, pattern_metadata_keys, errors);
        long long id = -1;
        json_opt_int(entry, "MetadataId", item, &id, errors);
        metadata_rule *rule = NULL;
        for (size_t g = 0; g < out->metadata_count; g++)
            if (out->metadata[g].id == id)
                rule = &out->metadata[g];
        json_path_key(where, sizeof where, item, "MetadataId");
        if (jobj_get(entry, "MetadataId") == NULL) {
            ERR(errors, HSE_CONFIG_MISSING, where, "%s: required", where);
            continue;
        }
        if (rule == NULL) {
            ERR(errors, HSE_CONFIG_REFERENCE, where,
                "%s: no field with Id %lld in the top-level MetadataFields", where, id);
            continue;
        }
        read_metadata_settings(rule, entry, item, true, errors);
    }
}

static void load_regexes(pattern_policy *out, const json_t *list, const char *path,
                         error_list *errors)
{
    if (list == NULL || json_is_null(list))
        return;
    if (!json_is_array(list)) {
        ERR(errors, HSE_CONFIG_TYPE, path, "%s: expected an array", path);
        return;
    }
    out->regexes = calloc(json_array_size(list) + 1, sizeof *out->regexes);
    size_t i;
    json_t *entry;
    char item[256], where[256];
    json_array_foreach(list, i, entry)
    {
        json_path_index(item, sizeof item, path, i);
        if (!json_is_object(entry) || out->regexes == NULL) {
            ERR(errors, HSE_CONFIG_TYPE, item, "%s: expected an object", item);
            continue;
        }
        json_check_keys(entry, item, regex_keys, errors);
        subject_regex r = {0};
        const char *source = NULL;
        bool case_sensitive = true;
        json_opt_string(entry, "SubjectPart", item, &r.part, errors);
        json_opt_string(entry, "Regex", item, &source, errors);
        json_opt_string(entry, "Error", item, &r.error, errors);
        json_opt_bool(entry, "CaseSensitive", item, &case_sensitive, errors);
        r.nid = r.part ? dn_keyword_nid(r.part) : NID_undef;
        if (r.nid == NID_undef) {
            ERR(errors, HSE_CONFIG_VALUE, json_path_key(where, sizeof where, item, "SubjectPart"),
                "%s: \"%s\" is not a subject part (CN, OU, O, L, ST, C, E, ...)", where,
                r.part ? r.part : "");
            continue;
        }
        if (source == NULL) {
            ERR(errors, HSE_CONFIG_MISSING, json_path_key(where, sizeof where, item, "Regex"),
                "%s: required", where);
            continue;
        }
        r.re = compile_at(source, case_sensitive, json_path_key(where, sizeof where, item, "Regex"),
                          errors);
        if (r.re != NULL)
            out->regexes[out->regex_count++] = r;
    }
}

static void load_defaults(pattern_policy *out, const json_t *list, const char *path,
                          error_list *errors)
{
    if (list == NULL || json_is_null(list))
        return;
    if (!json_is_array(list)) {
        ERR(errors, HSE_CONFIG_TYPE, path, "%s: expected an array", path);
        return;
    }
    out->defaults = calloc(json_array_size(list) + 1, sizeof *out->defaults);
    size_t i;
    json_t *entry;
    char item[256], where[256];
    json_array_foreach(list, i, entry)
    {
        json_path_index(item, sizeof item, path, i);
        if (!json_is_object(entry) || out->defaults == NULL) {
            ERR(errors, HSE_CONFIG_TYPE, item, "%s: expected an object", item);
            continue;
        }
        json_check_keys(entry, item, default_keys, errors);
        subject_default d = {0};
        json_opt_string(entry, "SubjectPart", item, &d.part, errors);
        json_opt_string(entry, "Value", item, &d.value, errors);
        d.nid = d.part ? dn_keyword_nid(d.part) : NID_undef;
        if (d.nid == NID_undef)
            ERR(errors, HSE_CONFIG_VALUE, json_path_key(where, sizeof where, item, "SubjectPart"),
                "%s: \"%s\" is not a subject part (CN, OU, O, L, ST, C, E, ...)", where,
                d.part ? d.part : "");
        else if (d.value == NULL || *d.value == '\0')
            ERR(errors, HSE_CONFIG_MISSING, json_path_key(where, sizeof where, item, "Value"),
                "%s: required", where);
        else
            out->defaults[out->default_count++] = d;
    }
}

static void read_int_list(const json_t *arr, const char *path, int *out, size_t *count,
                          const int *allowed, size_t allowed_count, error_list *errors)
{
    *count = 0;
    if (arr == NULL || json_is_null(arr))
        return;
    if (!json_is_array(arr) || json_array_size(arr) > 8) {
        ERR(errors, HSE_CONFIG_TYPE, path, "%s: expected an array of at most 8 sizes", path);
        return;
    }
    size_t i;
    json_t *v;
    char where[256];
    json_array_foreach(arr, i, v)
    {
        json_path_index(where, sizeof where, path, i);
        long long n = json_is_integer(v) ? json_integer_value(v) : -1;
        bool ok = n > 0;
        if (ok && allowed != NULL) {
            ok = false;
            for (size_t k = 0; k < allowed_count; k++)
                ok = ok || allowed[k] == n;
        }
        if (!ok)
            ERR(errors, HSE_CONFIG_VALUE, where, "%s: not a supported key size", where);
        else
            out[(*count)++] = (int)n;
    }
}

static int curve_nid_of(const char *s)
{
    static const struct {
        const char *oid, *name1, *name2;
        int nid;
    } curves[] = {
        {"1.2.840.10045.3.1.7", "P-256", "prime256v1", NID_X9_62_prime256v1},
        {"1.3.132.0.34", "P-384", "secp384r1", NID_secp384r1},
        {"1.3.132.0.35", "P-521", "secp521r1", NID_secp521r1},
    };
    for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++)
        if (strcmp(s, curves[i].oid) == 0 || strcasecmp(s, curves[i].name1) == 0 ||
            strcasecmp(s, curves[i].name2) == 0)
            return curves[i].nid;
    return NID_undef;
}

static void load_key_info(key_policy *keys, const json_t *info, const char *path,
                          error_list *errors)
{
    if (info == NULL || json_is_null(info))
        return;
    if (!json_is_object(info)) {
        ERR(errors, HSE_CONFIG_TYPE, path, "%s: expected an object", path);
        return;
    }
    json_check_keys(info, path, key_info_keys, errors);
    keys->restricted = true;
    static const int ecc_sizes[] = {256, 384, 521};
    const char *key;
    json_t *entry;
    char item[256], where[256];
    json_object_foreach((json_t *)info, key, entry)
    {
        json_path_key(item, sizeof item, path, key);
        if (entry == NULL || json_is_null(entry))
            continue; /* null: this algorithm is not allowed */
        if (!json_is_object(entry)) {
            ERR(errors, HSE_CONFIG_TYPE, item, "%s: expected an object or null", item);
            continue;
        }
        json_check_keys(entry, item, key_entry_keys, errors);
        json_t *bits = jobj_get(entry, "bit_lengths");
        json_t *curves = jobj_get(entry, "curves");
        if (strcasecmp(key, "RSA") == 0) {
            keys->rsa = true;
            read_int_list(bits, json_path_key(where, sizeof where, item, "bit_lengths"),
                          keys->rsa_bits, &keys->rsa_bits_count, NULL, 0, errors);
            if (curves != NULL && !json_is_null(curves))
                ERR(errors, HSE_CONFIG_RULE, json_path_key(where, sizeof where, item, "curves"),
                    "%s: RSA keys have no curve", where);
        } else if (strcasecmp(key, "ECDSA") == 0 || strcasecmp(key, "ECC") == 0) {
            keys->ecc = true;
            read_int_list(bits, json_path_key(where, sizeof where, item, "bit_lengths"),
                          keys->ecc_bits, &keys->ecc_bits_count, ecc_sizes, 3, errors);
            if (curves != NULL && !json_is_null(curves)) {
                json_path_key(where, sizeof where, item, "curves");
                if (!json_is_array(curves) || json_array_size(curves) > 8) {
                    ERR(errors, HSE_CONFIG_TYPE, where, "%s: expected an array of curve OIDs",
                        where);
                    continue;
                }
                size_t i;
                json_t *c;
                char at[256];
                json_array_foreach(curves, i, c)
                {
                    int nid = json_is_string(c) ? curve_nid_of(json_string_value(c)) : NID_undef;
                    if (nid == NID_undef)
                        ERR(errors, HSE_CONFIG_VALUE, json_path_index(at, sizeof at, where, i),
                            "%s: not 1.2.840.10045.3.1.7, 1.3.132.0.34 or 1.3.132.0.35", at);
                    else
                        keys->curves[keys->curve_count++] = nid;
                }
            }
        } else if (strcasecmp(key, "Ed25519") == 0) {
            keys->ed25519 = true;
        } else if (strcasecmp(key, "Ed448") == 0) {
            keys->ed448 = true;
        }
    }
}

static void load_policies(pattern_policy *out, const json_t *policies, const char *path,
                          error_list *errors)
{
    if (policies == NULL || json_is_null(policies))
        return;
    if (!json_is_object(policies)) {
        ERR(errors, HSE_CONFIG_TYPE, path, "%s: expected an object", path);
        return;
    }
    json_check_keys(policies, path, policies_keys, errors);
    long long owner = OWNER_OPTIONAL;
    json_opt_bool(policies, "AllowKeyReuse", path, &out->allow_key_reuse, errors);
    json_opt_bool(policies, "AllowWildcards", path, &out->allow_wildcards, errors);
    json_opt_bool(policies, "RFCEnforcement", path, &out->rfc_enforcement, errors);
    json_opt_int(policies, "CertificateOwnerRole", path, &owner, errors);
    json_opt_int(policies, "DefaultCertificateOwnerRoleId", path, &out->default_owner_id, errors);
    json_opt_string(policies, "DefaultCertificateOwnerRoleName", path, &out->default_owner_name,
                    errors);
    char where[256];
    if (owner < 0 || owner > 2)
        ERR(errors, HSE_CONFIG_VALUE,
            json_path_key(where, sizeof where, path, "CertificateOwnerRole"),
            "%s: 0 (optional), 1 (required) or 2 (hidden)", where);
    out->owner = (owner_rule)owner;
    if (out->default_owner_name != NULL && *out->default_owner_name == '\0')
        out->default_owner_name = NULL;
    load_key_info(&out->keys, jobj_get(policies, "KeyInfo"),
                  json_path_key(where, sizeof where, path, "KeyInfo"), errors);
}

static void load_enrollment_fields(pattern_policy *out, const json_t *list, const char *path,
                                   error_list *errors)
{
    if (list == NULL || json_is_null(list))
        return;
    if (!json_is_array(list)) {
        ERR(errors, HSE_CONFIG_TYPE, path, "%s: expected an array", path);
        return;
    }
    out->fields = calloc(json_array_size(list) + 1, sizeof *out->fields);
    size_t i;
    json_t *entry;
    char item[256], where[256];
    json_array_foreach(list, i, entry)
    {
        json_path_index(item, sizeof item, path, i);
        if (!json_is_object(entry) || out->fields == NULL) {
            ERR(errors, HSE_CONFIG_TYPE, item, "%s: expected an object", item);
            continue;
        }
        json_check_keys(entry, item, field_keys, errors);
        enrollment_field_rule f = {0};
        long long type = 1;
        json_opt_string(entry, "Name", item, &f.name, errors);
        json_opt_int(entry, "DataType", item, &type, errors);
        f.data_type = (int)type;
        if (f.name == NULL || *f.name == '\0') {
            ERR(errors, HSE_CONFIG_MISSING, json_path_key(where, sizeof where, item, "Name"),
                "%s: required", where);
            continue;
        }
        if (type != 1 && type != 2) {
            ERR(errors, HSE_CONFIG_VALUE, json_path_key(where, sizeof where, item, "DataType"),
                "%s: 1 (string) or 2 (multiple choice)", where);
            continue;
        }
        json_path_key(where, sizeof where, item, "Options");
        f.options = read_options(jobj_get(entry, "Options"), where, &f.option_count, errors);
        if (type == 2 && f.option_count == 0)
            ERR(errors, HSE_CONFIG_RULE, where, "%s: a multiple-choice field needs its options",
                where);
        for (size_t j = 0; j < out->field_count; j++)
            if (strcasecmp(out->fields[j].name, f.name) == 0)
                ERR(errors, HSE_CONFIG_DUPLICATE, json_path_key(where, sizeof where, item, "Name"),
                    "%s: enrollment field \"%s\" is defined twice", where, f.name);
        out->fields[out->field_count++] = f;
    }
}

int pattern_policy_load(pattern_policy *out, const json_t *pattern, const char *path,
                        const metadata_rule *global, size_t global_count, error_list *errors)
{
    size_t before = errors->count;
    memset(out, 0, sizeof *out);
    out->allow_wildcards = true;
    out->default_owner_id = -1;
    char where[256];
    load_regexes(out, jobj_get(pattern, "Regexes"),
                 json_path_key(where, sizeof where, path, "Regexes"), errors);
    load_defaults(out, jobj_get(pattern, "Defaults"),
                  json_path_key(where, sizeof where, path, "Defaults"), errors);
    load_policies(out, jobj_get(pattern, "Policies"),
                  json_path_key(where, sizeof where, path, "Policies"), errors);
    load_metadata_overrides(out, jobj_get(pattern, "MetadataFields"),
                            json_path_key(where, sizeof where, path, "MetadataFields"), global,
                            global_count, errors);
    load_enrollment_fields(out, jobj_get(pattern, "EnrollmentFields"),
                           json_path_key(where, sizeof where, path, "EnrollmentFields"), errors);
    json_t *roles = jobj_get(pattern, "AssociatedRoles");
    if (json_is_array(roles)) {
        out->roles = calloc(json_array_size(roles) + 1, sizeof *out->roles);
        size_t i;
        json_t *r;
        json_path_key(where, sizeof where, path, "AssociatedRoles");
        json_array_foreach(roles, i, r)
        {
            char at[256];
            if (!json_is_string(r) || json_string_length(r) == 0)
                ERR(errors, HSE_CONFIG_TYPE, json_path_index(at, sizeof at, where, i),
                    "%s: expected a role name", at);
            else if (out->roles != NULL)
                out->roles[out->role_count++] = json_string_value(r);
        }
    }
    return errors->count > before ? -1 : 0;
}

void pattern_policy_free(pattern_policy *policy)
{
    for (size_t i = 0; i < policy->regex_count; i++)
        regex_free(policy->regexes[i].re);
    free(policy->regexes);
    free(policy->defaults);
    metadata_rules_free(policy->metadata, policy->metadata_count);
    for (size_t i = 0; i < policy->field_count; i++)
        free_options(policy->fields[i].options, policy->fields[i].option_count);
    free(policy->fields);
    free(policy->roles);
    memset(policy, 0, sizeof *policy);
}
