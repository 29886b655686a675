/* Configuration loading and validation: typed views over the JSON document, cross references
 * (template -> CAs, pattern -> template and CAs), the seed's pattern rules, JSON-path errors. */
#include "config.h"

#include <errno.h>
#include "batch/suggest.h"

#include <ctype.h>
#include <libgen.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef HSMENROLL_DEFAULT_MODULE
#define HSMENROLL_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

#define CFG_ERR(list, code, path, ...) error_list_add((list), (code), (path), __VA_ARGS__)

static const char *const top_keys[] = {"Hsm",
                                       "CertificateAuthorities",
                                       "Templates",
                                       "MetadataFields",
                                       "EnrollmentPatterns",
                                       "Stores",
                                       "Settings",
                                       "Roles",
                                       NULL};
static const char *const role_keys[] = {"Id", "Name", "Description", NULL};
static const char *const hsm_keys[] = {
    "Module",       "Tokens",   "Token",   "PinEnv",      "PinFile",     "SoPinEnv",   "SoPinFile",
    "RestartEvery", "InitArgs", "Profile", "MaxSessions", "Concurrency", "EdDSAToken", NULL};
static const char *const ca_keys[] = {"Id",
                                      "Name",
                                      "Type",
                                      "Url",
                                      "TrustBundle",
                                      "Auth",
                                      "ChainFile",
                                      "Profile",
                                      "Label",
                                      "Home",
                                      "Token",
                                      "ApiVersion",
                                      "TimeoutSeconds",
                                      "Retries",
                                      "InsecureSkipTlsVerify",
                                      "ClientCertificate",
                                      "ClientKey",
                                      "RemoteName",
                                      "RetryDelayMs",
                                      "RateLimit",
                                      "MaxInFlight",
                                      "Description",
                                      "CrlUrl",
                                      "OcspUrl",
                                      "CrlDays",
                                      "LookupSettleMs",
                                      "LookupResubmit",
                                      "PinEnv",
                                      "PinFile",
                                      NULL};
static const char *const template_keys[] = {
    "Id", "Name", "Description", "CertificateAuthorities", "ValidityDays", "KeyRetention", NULL};
static const char *const pattern_keys[] = {"Id",
                                           "Name",
                                           "Description",
                                           "Template",
                                           "TemplateDefault",
                                           "UseADPermissions",
                                           "AssociatedRoles",
                                           "CertificateAuthorities",
                                           "AllowedEnrollmentTypes",
                                           "Regexes",
                                           "MetadataFields",
                                           "RestrictCAs",
                                           "Policies",
                                           "Defaults",
                                           "EnrollmentFields",
                                           NULL};
static const char *const settings_keys[] = {"PasswordLength",
                                            "RequireCustomFriendlyName",
                                            "CommonNameRegex",
                                            "Pkcs12Iterations",
                                            "AllowCSPs",
                                            "CSPs",
                                            NULL};

static const char *keep_path(config *cfg, char *full);

/* <state_dir>/cas/<the CA name's logical part>, '/' and leading dots made '_'. */
static const char *state_path(config *cfg, const char *name)
{
    const char *bs = strrchr(name, '\\');
    const char *logical = bs ? bs + 1 : name;
    char *full = NULL;
    if (asprintf(&full, "%s/cas/%s", cfg->state_dir, logical) < 0)
        return NULL;
    for (char *p = full + strlen(cfg->state_dir) + 5; *p; p++)
        if (*p == '/' || (*p == '.' && (p[-1] == '/')))
            *p = '_';
    return keep_path(cfg, full);
}

static const char *resolve_path(config *cfg, const char *path)
{
    if (path == NULL || path[0] == '/' || cfg->base_dir == NULL)
        return path;
    char *full = NULL;
    if (asprintf(&full, "%s/%s", cfg->base_dir, path) < 0)
        return path;
    const char *kept = keep_path(cfg, full);
    return kept != NULL ? kept : path;
}

/* full (allocated) owned by cfg from now on; NULL when it could not be kept (then freed). */
static const char *keep_path(config *cfg, char *full)
{
    char **paths = realloc(cfg->owned_paths, (cfg->owned_path_count + 1) * sizeof *paths);
    if (paths == NULL) {
        free(full);
        return NULL;
    }
    cfg->owned_paths = paths;
    paths[cfg->owned_path_count++] = full;
    return full;
}

/* Reads an array of integers (ids); reports non-integers. */
static long long *read_ids(const json_t *arr, const char *path, size_t *count, error_list *errors)
{
    *count = 0;
    if (arr == NULL || json_is_null(arr))
        return NULL;
    if (!json_is_array(arr)) {
        CFG_ERR(errors, HSE_CONFIG_TYPE, path, "%s: expected an array of integers", path);
        return NULL;
    }
    long long *ids = calloc(json_array_size(arr) + 1, sizeof *ids);
    size_t i;
    json_t *v;
    char where[256];
    json_array_foreach(arr, i, v)
    {
        if (!json_is_integer(v)) {
            CFG_ERR(errors, HSE_CONFIG_TYPE, json_path_index(where, sizeof where, path, i),
                    "%s: expected an integer", where);
            continue;
        }
        if (ids != NULL)
            ids[(*count)++] = json_integer_value(v);
    }
    return ids;
}

static const char *const store_keys[] = {"Id", "Token", "AgentGuid", "Name", NULL};

bool config_is_guid(const char *s)
{
    if (s == NULL || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* Stores: certificate stores, each a PKCS#11 token, named by a GUID as Keyfactor names them. */
static void load_stores(config *cfg, const json_t *stores, error_list *errors)
{
    if (stores == NULL)
        return;
    if (!json_is_array(stores)) {
        CFG_ERR(errors, HSE_CONFIG_TYPE, "Stores", "Stores: expected an array");
        return;
    }
    cfg->stores =
        calloc(json_array_size(stores) ? json_array_size(stores) : 1, sizeof *cfg->stores);
    if (cfg->stores == NULL) {
        CFG_ERR(errors, HSE_CONFIG_MEMORY, "Stores", "Stores: out of memory");
        return;
    }
    size_t i;
    json_t *entry;
    char path[256], where[300];
    json_array_foreach(stores, i, entry)
    {
        json_path_index(path, sizeof path, "Stores", i);
        if (!json_is_object(entry)) {
            CFG_ERR(errors, HSE_CONFIG_TYPE, path, "%s: expected an object", path);
            continue;
        }
        json_check_keys(entry, path, store_keys, errors);
        config_store *s = &cfg->stores[cfg->store_count];
        json_opt_string(entry, "Id", path, &s->id, errors);
        json_opt_string(entry, "Token", path, &s->token, errors);
        json_opt_string(entry, "AgentGuid", path, &s->agent_guid, errors);
        json_opt_string(entry, "Name", path, &s->name, errors);
        if (!config_is_guid(s->id))
            CFG_ERR(errors, s->id ? HSE_CONFIG_VALUE : HSE_CONFIG_MISSING,
                    json_path_key(where, sizeof where, path, "Id"),
                    "%s: required, a GUID (8-4-4-4-12 hexadecimal digits)", where);
        if (!config_is_guid(s->agent_guid))
            CFG_ERR(errors, s->agent_guid ? HSE_CONFIG_VALUE : HSE_CONFIG_MISSING,
                    json_path_key(where, sizeof where, path, "AgentGuid"),
                    "%s: required, the GUID of this engine as the store's orchestrator", where);
        if (s->token == NULL || *s->token == '\0' || strlen(s->token) > 32)
            CFG_ERR(errors, s->token ? HSE_CONFIG_VALUE : HSE_CONFIG_MISSING,
                    json_path_key(where, sizeof where, path, "Token"),
                    "%s: required, the label (1 to 32 bytes) of the store's PKCS#11 token", where);
        for (size_t k = 0; k < cfg->store_count && s->id != NULL; k++)
            if (cfg->stores[k].id != NULL && strcasecmp(cfg->stores[k].id, s->id) == 0)
                CFG_ERR(errors, HSE_CONFIG_DUPLICATE,
                        json_path_key(where, sizeof where, path, "Id"),
                        "%s: store %s is listed twice", where, s->id);
        cfg->store_count++;
    }
}

const config_store *config_find_store(const config *cfg, const char *id)
{
    for (size_t i = 0; id != NULL && i < cfg->store_count; i++)
        if (cfg->stores[i].id != NULL && strcasecmp(cfg->stores[i].id, id) == 0)
            return &cfg->stores[i];
    return NULL;
}

static void load_hsm(config *cfg, const json_t *hsm, error_list *errors)
{
    config_hsm *h = &cfg->hsm;
    h->pin_env = "HSMENROLL_PIN";
    h->so_pin_env = "HSMENROLL_SO_PIN";
    h->restart_every = -1;
    h->concurrency = -1;
    if (hsm == NULL) {
        CFG_ERR(errors, HSE_CONFIG_MISSING, "Hsm", "Hsm: required (the PKCS#11 module and tokens)");
        return;
    }
    if (!json_is_object(hsm)) {
        CFG_ERR(errors, HSE_CONFIG_TYPE, "Hsm", "Hsm: expected an object");
        return;
    }
    json_check_keys(hsm, "Hsm", hsm_keys, errors);
    json_opt_string(hsm, "Module", "Hsm", &h->module, errors);
    /* No Module: the environment's HSMENROLL_MODULE (containers, schedulers), else the build's
     * default. */
    if (h->module == NULL && getenv("HSMENROLL_MODULE") != NULL && *getenv("HSMENROLL_MODULE"))
        h->module = getenv("HSMENROLL_MODULE");
    json_opt_string(hsm, "PinEnv", "Hsm", &h->pin_env, errors);
    json_opt_string(hsm, "PinFile", "Hsm", &h->pin_file, errors);
    json_opt_string(hsm, "SoPinEnv", "Hsm", &h->so_pin_env, errors);
    json_opt_string(hsm, "SoPinFile", "Hsm", &h->so_pin_file, errors);
    json_opt_int(hsm, "RestartEvery", "Hsm", &h->restart_every, errors);
    if (jobj_get(hsm, "RestartEvery") != NULL && h->restart_every < 0)
        CFG_ERR(errors, HSE_CONFIG_VALUE, "Hsm.RestartEvery",
                "Hsm.RestartEvery: expected 0 (never) or a number of export keys");
    json_opt_string(hsm, "InitArgs", "Hsm", &h->init_args, errors);
    if (h->init_args == NULL && getenv("HSMENROLL_MODULE_INIT_ARGS") != NULL &&
        *getenv("HSMENROLL_MODULE_INIT_ARGS"))
        h->init_args = getenv("HSMENROLL_MODULE_INIT_ARGS");
    json_opt_string(hsm, "Profile", "Hsm", &h->profile, errors);
    if (h->profile != NULL && strcasecmp(h->profile, "auto") != 0 &&
        strcasecmp(h->profile, "softhsm") != 0 && strcasecmp(h->profile, "standard") != 0 &&
        strcasecmp(h->profile, "nss") != 0)
        CFG_ERR(errors, HSE_CONFIG_VALUE, "Hsm.Profile",
                "Hsm.Profile: expected \"auto\", \"softhsm\", \"nss\" or \"standard\"");
    json_opt_int(hsm, "MaxSessions", "Hsm", &h->max_sessions, errors);
    if (h->max_sessions < 0)
        CFG_ERR(errors, HSE_CONFIG_VALUE, "Hsm.MaxSessions",
                "Hsm.MaxSessions: expected a number of sessions per token (0: as the token "
                "states)");
    json_opt_int(hsm, "Concurrency", "Hsm", &h->concurrency, errors);
    if (jobj_get(hsm, "Concurrency") != NULL && (h->concurrency < 1 || h->concurrency > 1024))
        CFG_ERR(errors, HSE_CONFIG_VALUE, "Hsm.Concurrency",
                "Hsm.Concurrency: expected a number of HSM operations in flight, 1 to 1024");
    h->pin_file = resolve_path(cfg, h->pin_file);
    h->so_pin_file = resolve_path(cfg, h->so_pin_file);
    const char *single = NULL;
    json_opt_string(hsm, "Token", "Hsm", &single, errors);
    json_t *tokens = jobj_get(hsm, "Tokens");
    if (tokens != NULL && single != NULL) {
        CFG_ERR(errors, HSE_CONFIG_CONFLICT, "Hsm.Token",
                "Hsm.Token: give Token or Tokens, not both");
        return;
    }
    if (single != NULL) {
        h->tokens = calloc(1, sizeof *h->tokens);
        if (h->tokens != NULL) {
            h->tokens[0] = single;
            h->token_count = 1;
        }
    } else if (json_is_array(tokens) && json_array_size(tokens) > 0) {
        h->tokens = calloc(json_array_size(tokens), sizeof *h->tokens);
        size_t i;
        json_t *v;
        char where[256];
        json_array_foreach(tokens, i, v)
        {
            json_path_index(where, sizeof where, "Hsm.Tokens", i);
            if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 32) {
                CFG_ERR(errors, HSE_CONFIG_TYPE, where,
                        "%s: expected a token label of 1 to 32 bytes", where);
                continue;
            }
            for (size_t j = 0; j < h->token_count; j++)
                if (strcmp(h->tokens[j], json_string_value(v)) == 0)
                    CFG_ERR(errors, HSE_CONFIG_DUPLICATE, where, "%s: token \"%s\" listed twice",
                            where, json_string_value(v));
            if (h->tokens != NULL)
                h->tokens[h->token_count++] = json_string_value(v);
        }
    } else {
        CFG_ERR(errors, HSE_CONFIG_MISSING, "Hsm.Tokens",
                "Hsm.Tokens: required, a non-empty array of token labels");
    }
    json_opt_string(hsm, "EdDSAToken", "Hsm", &h->eddsa_token, errors);
    if (h->eddsa_token != NULL) {
        if (h->eddsa_token[0] == '\0' || strlen(h->eddsa_token) > 32)
            CFG_ERR(errors, HSE_CONFIG_VALUE, "Hsm.EdDSAToken",
                    "Hsm.EdDSAToken: expected a token label of 1 to 32 bytes");
        for (size_t j = 0; j < h->token_count; j++)
            if (strcmp(h->tokens[j], h->eddsa_token) == 0)
                CFG_ERR(errors, HSE_CONFIG_CONFLICT, "Hsm.EdDSAToken",
                        "Hsm.EdDSAToken: \"%s\" is in Hsm.Tokens too; the EdDSA keys' token is "
                        "one of its own (leave it out to keep them in Hsm.Tokens)",
                        h->eddsa_token);
    }
}

/* The common start of a CertificateAuthorities / Templates / EnrollmentPatterns entry: an object
 * with known keys, a required integer Id and a required non-empty Name. Returns false when the
 * entry is not an object (nothing else to check). */
static bool entry_begin(const json_t *entry, const char *path, const char *const *keys,
                        long long *id, const char **name, error_list *errors)
{
    char where[256];
    if (!json_is_object(entry)) {
        CFG_ERR(errors, HSE_CONFIG_TYPE, path, "%s: expected an object", path);
        return false;
    }
    json_check_keys(entry, path, keys, errors);
    *id = -1;
    json_opt_int(entry, "Id", path, id, errors);
    json_opt_string(entry, "Name", path, name, errors);
    if (jobj_get(entry, "Id") == NULL)
        CFG_ERR(errors, HSE_CONFIG_MISSING, json_path_key(where, sizeof where, path, "Id"),
                "%s: required", where);
    if (*name == NULL || **name == '\0') {
        CFG_ERR(errors, HSE_CONFIG_MISSING, json_path_key(where, sizeof where, path, "Name"),
                "%s: required", where);
        *name = "";
    }
    return true;
}

/* Reports an Id or Name that an earlier entry of the same list already uses. The entries are
 * structs of `stride` bytes holding `long long id` and `const char *name` at those offsets. */
static void check_unique(const void *entries, size_t stride, size_t count, size_t id_offset,
                         size_t name_offset, const char *kind, const char *path, error_list *errors)
{
    const char *base = entries;
    const char *last = base + (count - 1) * stride;
    long long id = *(const long long *)(last + id_offset);
    const char *name = *(const char *const *)(last + name_offset);
    char where[256];
    for (size_t j = 0; j + 1 < count; j++) {
        const char *other = base + j * stride;
        if (id >= 0 && *(const long long *)(other + id_offset) == id)
            CFG_ERR(errors, HSE_CONFIG_DUPLICATE, json_path_key(where, sizeof where, path, "Id"),
                    "%s: %s Id %lld is used twice", where, kind, id);
        if (*name && strcasecmp(*(const char *const *)(other + name_offset), name) == 0)
            CFG_ERR(errors, HSE_CONFIG_DUPLICATE, json_path_key(where, sizeof where, path, "Name"),
                    "%s: %s name \"%s\" is used twice", where, kind, name);
    }
}

#define CHECK_UNIQUE(array, count, kind, path, errors)                                             \
    check_unique((array), sizeof *(array), (count), offsetof(__typeof__(*(array)), id),            \
                 offsetof(__typeof__(*(array)), name), (kind), (path), (errors))

static ca_type parse_ca_type(const char *s)
{
    if (s == NULL)
        return 0;
    if (strcasecmp(s, "local") == 0)
        return CA_TYPE_LOCAL;
    if (strcasecmp(s, "keyfactor") == 0)
        return CA_TYPE_KEYFACTOR;
    if (strcasecmp(s, "cfssl") == 0)
        return CA_TYPE_CFSSL;
    return 0;
}

static void load_cas(config *cfg, const json_t *cas, error_list *errors)
{
    if (cas == NULL || !json_is_array(cas) || json_array_size(cas) == 0) {
        CFG_ERR(errors, HSE_CONFIG_MISSING, "CertificateAuthorities",
                "CertificateAuthorities: required, a non-empty array");
        return;
    }
    cfg->cas = calloc(json_array_size(cas), sizeof *cfg->cas);
    size_t i;
    json_t *entry;
    char path[256], where[256];
    json_array_foreach(cas, i, entry)
    {
        json_path_index(path, sizeof path, "CertificateAuthorities", i);
        config_ca *ca = &cfg->cas[cfg->ca_count];
        if (!entry_begin(entry, path, ca_keys, &ca->id, &ca->name, errors))
            continue;
        cfg->ca_count++;
        ca->raw = entry;
        const char *type = NULL;
        json_opt_string(entry, "Type", path, &type, errors);
        json_opt_string(entry, "Url", path, &ca->url, errors);
        json_opt_string(entry, "Home", path, &ca->home, errors);
        json_opt_string(entry, "Token", path, &ca->token, errors);
        json_opt_string(entry, "CrlUrl", path, &ca->crl_url, errors);
        json_opt_string(entry, "OcspUrl", path, &ca->ocsp_url, errors);
        ca->crl_days = 7;
        json_opt_int(entry, "CrlDays", path, &ca->crl_days, errors);
        if (ca->crl_days < 1 || ca->crl_days > 366)
            CFG_ERR(errors, HSE_CONFIG_VALUE, json_path_key(where, sizeof where, path, "CrlDays"),
                    "%s: must be between 1 and 366", where);
        const char *urls[] = {ca->crl_url, ca->ocsp_url};
        for (int u = 0; u < 2; u++)
            if (urls[u] != NULL && strncmp(urls[u], "http://", 7) != 0 &&
                strncmp(urls[u], "https://", 8) != 0)
                CFG_ERR(errors, HSE_CONFIG_VALUE,
                        json_path_key(where, sizeof where, path, u ? "OcspUrl" : "CrlUrl"),
                        "%s: must be an http:// or https:// URL", where);
        json_opt_string(entry, "PinEnv", path, &ca->pin_env, errors);
        json_opt_string(entry, "PinFile", path, &ca->pin_file, errors);
        ca->pin_file = resolve_path(cfg, ca->pin_file);
        ca->home = resolve_path(cfg, ca->home);
        if (ca->home == NULL && cfg->state_dir != NULL && ca->name != NULL)
            ca->home = state_path(cfg, ca->name);
        const char *bs = strrchr(ca->name, '\\');
        ca->logical = bs ? bs + 1 : ca->name;
        ca->type = parse_ca_type(type);
        if (ca->type == 0)
            CFG_ERR(errors, HSE_CONFIG_VALUE, json_path_key(where, sizeof where, path, "Type"),
                    "%s: must be \"local\", \"keyfactor\" or \"cfssl\"", where);
        if ((ca->type == CA_TYPE_KEYFACTOR || ca->type == CA_TYPE_CFSSL) && ca->url == NULL)
            CFG_ERR(errors, HSE_CONFIG_MISSING, json_path_key(where, sizeof where, path, "Url"),
                    "%s: required for a %s CA", where, type);
        if (ca->type == CA_TYPE_LOCAL && ca->token == NULL && cfg->hsm.token_count > 0)
            ca->token = cfg->hsm.tokens[0];
        if ((ca->pin_env != NULL || ca->pin_file != NULL) && ca->token != NULL) {
            /* A token has one user PIN: the CA's own cannot be on a token the keys use. */
            for (size_t t = 0; t < cfg->hsm.token_count; t++)
                if (strcmp(cfg->hsm.tokens[t], ca->token) == 0)
                    CFG_ERR(errors, HSE_CONFIG_CONFLICT,
                            json_path_key(where, sizeof where, path, "PinEnv"),
                            "%s: token \"%s\" is also in Hsm.Tokens, whose PIN it has; give the "
                            "CA a token of its own, or no PIN of its own",
                            where, ca->token);
        }
        CHECK_UNIQUE(cfg->cas, cfg->ca_count, "CA", path, errors);
    }
}

static void load_templates(config *cfg, const json_t *templates, error_list *errors)
{
    if (templates == NULL || !json_is_array(templates) || json_array_size(templates) == 0) {
        CFG_ERR(errors, HSE_CONFIG_MISSING, "Templates", "Templates: required, a non-empty array");
        return;
    }
    cfg->templates = calloc(json_array_size(templates), sizeof *cfg->templates);
    size_t i;
    json_t *entry;
    char path[256], where[256];
    json_array_foreach(templates, i, entry)
    {
        json_path_index(path, sizeof path, "Templates", i);
        config_template *t = &cfg->templates[cfg->template_count];
        if (!entry_begin(entry, path, template_keys, &t->id, &t->name, errors))
            continue;
        cfg->template_count++;
        t->validity_days = 365;
        json_opt_int(entry, "ValidityDays", path, &t->validity_days, errors);
        json_opt_bool(entry, "KeyRetention", path, &t->key_retention, errors);
        if (t->validity_days < 1 || t->validity_days > 36500)
            CFG_ERR(errors, HSE_CONFIG_VALUE,
                    json_path_key(where, sizeof where, path, "ValidityDays"),
                    "%s: must be between 1 and 36500", where);
        json_path_key(where, sizeof where, path, "CertificateAuthorities");
        t->ca_ids =
            read_ids(jobj_get(entry, "CertificateAuthorities"), where, &t->ca_count, errors);
        if (t->ca_count == 0)
            CFG_ERR(errors, HSE_CONFIG_MISSING, where,
                    "%s: a template needs at least one CA to enroll against", where);
        for (size_t k = 0; k < t->ca_count; k++)
            if (config_find_ca_by_id(cfg, t->ca_ids[k]) == NULL)
                CFG_ERR(errors, HSE_CONFIG_REFERENCE, where, "%s: no CA with Id %lld", where,
                        t->ca_ids[k]);
        CHECK_UNIQUE(cfg->templates, cfg->template_count, "template", path, errors);
    }
}

static bool id_listed(const long long *ids, size_t n, long long id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static void load_patterns(config *cfg, const json_t *patterns, error_list *errors)
{
    if (patterns == NULL || !json_is_array(patterns) || json_array_size(patterns) == 0) {
        CFG_ERR(errors, HSE_CONFIG_MISSING, "EnrollmentPatterns",
                "EnrollmentPatterns: required, a non-empty array");
        return;
    }
    cfg->patterns = calloc(json_array_size(patterns), sizeof *cfg->patterns);
    size_t i;
    json_t *entry;
    char path[256], where[256];
    json_array_foreach(patterns, i, entry)
    {
        json_path_index(path, sizeof path, "EnrollmentPatterns", i);
        config_pattern *p = &cfg->patterns[cfg->pattern_count];
        if (!entry_begin(entry, path, pattern_keys, &p->id, &p->name, errors))
            continue;
        cfg->pattern_count++;
        p->raw = entry;
        p->template_id = -1;
        p->allowed_enrollment_types = 7;
        p->use_ad_permissions = true;
        json_opt_int(entry, "Template", path, &p->template_id, errors);
        json_opt_bool(entry, "TemplateDefault", path, &p->template_default, errors);
        json_opt_bool(entry, "RestrictCAs", path, &p->restrict_cas, errors);
        json_opt_bool(entry, "UseADPermissions", path, &p->use_ad_permissions, errors);
        json_opt_int(entry, "AllowedEnrollmentTypes", path, &p->allowed_enrollment_types, errors);
        json_path_key(where, sizeof where, path, "Template");
        p->template_ = NULL;
        for (size_t t = 0; t < cfg->template_count; t++)
            if (cfg->templates[t].id == p->template_id)
                p->template_ = &cfg->templates[t];
        if (jobj_get(entry, "Template") == NULL)
            CFG_ERR(errors, HSE_CONFIG_MISSING, where, "%s: required (a template Id)", where);
        else if (p->template_ == NULL)
            CFG_ERR(errors, HSE_CONFIG_REFERENCE, where, "%s: no template with Id %lld", where,
                    p->template_id);
        if (p->allowed_enrollment_types < 0 || p->allowed_enrollment_types > 7)
            CFG_ERR(errors, HSE_CONFIG_VALUE,
                    json_path_key(where, sizeof where, path, "AllowedEnrollmentTypes"),
                    "%s: a sum of 1 (PFX), 2 (CSR) and 4 (CSR generation)", where);
        json_path_key(where, sizeof where, path, "CertificateAuthorities");
        p->ca_ids =
            read_ids(jobj_get(entry, "CertificateAuthorities"), where, &p->ca_count, errors);
        for (size_t k = 0; k < p->ca_count; k++) {
            if (config_find_ca_by_id(cfg, p->ca_ids[k]) == NULL)
                CFG_ERR(errors, HSE_CONFIG_REFERENCE, where, "%s: no CA with Id %lld", where,
                        p->ca_ids[k]);
            else if (p->template_ != NULL &&
                     !id_listed(p->template_->ca_ids, p->template_->ca_count, p->ca_ids[k]))
                CFG_ERR(errors, HSE_CONFIG_REFERENCE, where,
                        "%s: CA %lld does not offer template \"%s\"", where, p->ca_ids[k],
                        p->template_->name);
        }
        if (p->restrict_cas && p->ca_count == 0)
            CFG_ERR(errors, HSE_CONFIG_RULE, where,
                    "%s: RestrictCAs is true, so at least one CA must be listed", where);
        pattern_policy_load(&p->policy, entry, path, cfg->metadata_fields,
                            cfg->metadata_field_count, errors);
        if (cfg->role_count > 0) {
            const pattern_policy *pp = &p->policy;
            char at[256];
            json_path_key(at, sizeof at, path, "Policies");
            if (pp->default_owner_id >= 0 && !config_find_role_by_id(cfg, pp->default_owner_id))
                CFG_ERR(errors, HSE_CONFIG_REFERENCE, at,
                        "%s.DefaultCertificateOwnerRoleId: no role with Id %lld in Roles", at,
                        pp->default_owner_id);
            if (pp->default_owner_name && !config_find_role_by_name(cfg, pp->default_owner_name))
                CFG_ERR(errors, HSE_CONFIG_REFERENCE, at,
                        "%s.DefaultCertificateOwnerRoleName: no role named \"%s\" in Roles", at,
                        pp->default_owner_name);
            for (size_t r = 0; r < pp->role_count; r++)
                if (!config_find_role_by_name(cfg, pp->roles[r]))
                    CFG_ERR(errors, HSE_CONFIG_REFERENCE,
                            json_path_key(at, sizeof at, path, "AssociatedRoles"),
                            "%s: no role named \"%s\" in Roles", at, pp->roles[r]);
        }
        json_t *roles = jobj_get(entry, "AssociatedRoles");
        json_path_key(where, sizeof where, path, "AssociatedRoles");
        if (roles != NULL && !json_is_array(roles))
            CFG_ERR(errors, HSE_CONFIG_TYPE, where, "%s: expected an array of role names", where);
        if (!p->use_ad_permissions && (!json_is_array(roles) || json_array_size(roles) == 0))
            CFG_ERR(errors, HSE_CONFIG_RULE, where,
                    "%s: UseADPermissions is false, so at least one role must be given", where);
        CHECK_UNIQUE(cfg->patterns, cfg->pattern_count, "pattern", path, errors);
    }
    /* One TemplateDefault per template; a template whose patterns name none gets its first. */
    for (size_t t = 0; t < cfg->template_count; t++) {
        config_pattern *first = NULL, *def = NULL;
        for (size_t k = 0; k < cfg->pattern_count; k++) {
            config_pattern *p = &cfg->patterns[k];
            if (p->template_ != &cfg->templates[t])
                continue;
            if (first == NULL)
                first = p;
            if (p->template_default) {
                if (def != NULL) {
                    json_path_index(path, sizeof path, "EnrollmentPatterns", k);
                    CFG_ERR(errors, HSE_CONFIG_RULE,
                            json_path_key(where, sizeof where, path, "TemplateDefault"),
                            "%s: template \"%s\" already has default pattern \"%s\"", where,
                            cfg->templates[t].name, def->name);
                }
                def = p;
            }
        }
        if (def == NULL && first != NULL)
            first->template_default = true;
    }
}

static void compile_common_name_regex(config_settings *s, error_list *errors)
{
    char why[200];
    s->common_name = regex_compile(s->common_name_regex, true, why, sizeof why);
    if (s->common_name == NULL)
        CFG_ERR(errors, HSE_CONFIG_REGEX, "Settings.CommonNameRegex",
                "Settings.CommonNameRegex: not a valid regular expression: %s", why);
}

static void load_settings(config *cfg, const json_t *settings, error_list *errors)
{
    config_settings *s = &cfg->settings;
    s->password_length = 12;
    s->common_name_regex = ".+";
    s->pkcs12_iterations = 2048;
    s->allow_csps = true;
    if (settings == NULL) {
        compile_common_name_regex(s, errors);
        return;
    }
    if (!json_is_object(settings)) {
        CFG_ERR(errors, HSE_CONFIG_TYPE, "Settings", "Settings: expected an object");
        return;
    }
    json_check_keys(settings, "Settings", settings_keys, errors);
    json_opt_int(settings, "PasswordLength", "Settings", &s->password_length, errors);
    json_opt_bool(settings, "RequireCustomFriendlyName", "Settings",
                  &s->require_custom_friendly_name, errors);
    json_opt_string(settings, "CommonNameRegex", "Settings", &s->common_name_regex, errors);
    json_opt_int(settings, "Pkcs12Iterations", "Settings", &s->pkcs12_iterations, errors);
    json_opt_bool(settings, "AllowCSPs", "Settings", &s->allow_csps, errors);
    json_t *csps = jobj_get(settings, "CSPs");
    if (json_is_array(csps)) {
        s->csps = calloc(json_array_size(csps) + 1, sizeof *s->csps);
        size_t i;
        json_t *v;
        json_array_foreach(csps, i, v)
        {
            char at[64];
            if (!json_is_string(v) || json_string_length(v) == 0)
                CFG_ERR(errors, HSE_CONFIG_TYPE, json_path_index(at, sizeof at, "Settings.CSPs", i),
                        "%s: expected a CSP name", at);
            else if (s->csps != NULL)
                s->csps[s->csp_count++] = strdup(json_string_value(v));
        }
    } else if (csps != NULL && !json_is_null(csps)) {
        CFG_ERR(errors, HSE_CONFIG_TYPE, "Settings.CSPs", "Settings.CSPs: expected an array");
    }
    if (s->password_length < 1 || s->password_length > 128)
        CFG_ERR(errors, HSE_CONFIG_VALUE, "Settings.PasswordLength",
                "Settings.PasswordLength: must be between 1 and 128");
    if (s->pkcs12_iterations < 1 || s->pkcs12_iterations > 10000000)
        CFG_ERR(errors, HSE_CONFIG_VALUE, "Settings.Pkcs12Iterations",
                "Settings.Pkcs12Iterations: must be between 1 and 10000000");
    compile_common_name_regex(s, errors);
}

static void load_roles(config *cfg, const json_t *roles, error_list *errors)
{
    if (roles == NULL || json_is_null(roles))
        return;
    if (!json_is_array(roles)) {
        CFG_ERR(errors, HSE_CONFIG_TYPE, "Roles", "Roles: expected an array");
        return;
    }
    cfg->roles = calloc(json_array_size(roles) + 1, sizeof *cfg->roles);
    size_t i;
    json_t *entry;
    char path[64];
    json_array_foreach(roles, i, entry)
    {
        json_path_index(path, sizeof path, "Roles", i);
        config_role *r = &cfg->roles[cfg->role_count];
        if (cfg->roles == NULL || !entry_begin(entry, path, role_keys, &r->id, &r->name, errors))
            continue;
        cfg->role_count++;
        CHECK_UNIQUE(cfg->roles, cfg->role_count, "role", path, errors);
    }
}

static config *load_json(json_t *doc, const char *base_dir, const char *state_dir,
                         const char *source, error_list *errors);

config *config_load_json(json_t *doc, const char *base_dir, const char *source, error_list *errors)
{
    return load_json(doc, base_dir, NULL, source, errors);
}

static config *load_json(json_t *doc, const char *base_dir, const char *state_dir,
                         const char *source, error_list *errors)
{
    size_t errors_before = errors->count;
    config *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) {
        CFG_ERR(errors, HSE_CONFIG_MEMORY, "", "out of memory");
        return NULL;
    }
    cfg->doc = json_incref(doc);
    cfg->base_dir = base_dir ? strdup(base_dir) : NULL;
    cfg->state_dir = state_dir ? strdup(state_dir) : NULL;
    cfg->source = strdup(source ? source : "(configuration)");
    if (!json_is_object(doc)) {
        CFG_ERR(errors, HSE_CONFIG_TYPE, "", "the configuration must be a JSON object");
        config_free(cfg);
        return NULL;
    }
    json_check_keys(doc, "", top_keys, errors);
    load_hsm(cfg, jobj_get(doc, "Hsm"), errors);
    load_cas(cfg, jobj_get(doc, "CertificateAuthorities"), errors);
    load_templates(cfg, jobj_get(doc, "Templates"), errors);
    load_roles(cfg, jobj_get(doc, "Roles"), errors);
    metadata_fields_load(jobj_get(doc, "MetadataFields"), &cfg->metadata_fields,
                         &cfg->metadata_field_count, errors);
    load_patterns(cfg, jobj_get(doc, "EnrollmentPatterns"), errors);
    load_settings(cfg, jobj_get(doc, "Settings"), errors);
    load_stores(cfg, jobj_get(doc, "Stores"), errors);
    if (errors->count > errors_before) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

config *config_load_file(const char *path, error_list *errors)
{
    return config_load_file_in(path, NULL, errors);
}

config *config_load_file_in(const char *path, const char *home, error_list *errors)
{
    json_error_t jerr;
    FILE *f = fopen(path, "re");
    if (f == NULL) { /* not jansson's "line -1, column -1: unable to open" */
        error_list_add(errors, HSE_CONFIG_JSON, "", "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    json_t *doc = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    if (doc == NULL) {
        error_list_add(errors, HSE_CONFIG_JSON, "", "line %d, column %d: %s", jerr.line,
                       jerr.column, jerr.text);
        return NULL;
    }
    char *copy = strdup(path);
    const char *dir = copy ? dirname(copy) : ".";
    config *cfg = load_json(doc, dir, home, path, errors);
    free(copy);
    json_decref(doc);
    return cfg;
}

json_t *config_default_document(const char *home, bool legacy)
{
    char pin_file[4096], so_pin_file[4096], ca_home[4096], ca_pin_file[4096];
    snprintf(pin_file, sizeof pin_file, "%s/pin", home);
    snprintf(so_pin_file, sizeof so_pin_file, "%s/so-pin", home);
    snprintf(ca_home, sizeof ca_home, "%s/ca", home);
    snprintf(ca_pin_file, sizeof ca_pin_file, "%s/ca-pin", home);
    json_t *doc = json_pack("{s:{s:s, s:[s], s:s, s:s, s:s, s:s}, s:[{s:i, s:s, s:s, s:s, s:s}],"
                            " s:[{s:i, s:s, s:[i], s:i}], s:[{s:i, s:s, s:i, s:b, s:b, s:i}],"
                            " s:{s:i, s:b, s:s, s:i, s:b}}",
                            "Hsm", "Module", HSMENROLL_DEFAULT_MODULE, "Tokens",
                            legacy ? "hsmenroll" : "hsmenroll-keys", "PinEnv", "HSMENROLL_PIN",
                            "PinFile", pin_file, "SoPinEnv", "HSMENROLL_SO_PIN", "SoPinFile",
                            so_pin_file, "CertificateAuthorities", "Id", 1, "Name", "embedded",
                            "Type", "local", "Home", ca_home, "Token", "hsmenroll-ca", "Templates",
                            "Id", 1, "Name", "Default", "CertificateAuthorities", 1, "ValidityDays",
                            365, "EnrollmentPatterns", "Id", 1, "Name", "Default", "Template", 1,
                            "TemplateDefault", 1, "UseADPermissions", 1, "AllowedEnrollmentTypes",
                            7, "Settings", "PasswordLength", 12, "RequireCustomFriendlyName", 0,
                            "CommonNameRegex", ".+", "Pkcs12Iterations", 2048, "AllowCSPs", 1);
    if (doc != NULL && !legacy) {
        json_object_set_new(json_object_get(doc, "Hsm"), "EdDSAToken",
                            json_string("hsmenroll-eddsa"));
        json_t *ca = json_array_get(json_object_get(doc, "CertificateAuthorities"), 0);
        json_object_set_new(ca, "PinEnv", json_string("HSMENROLL_CA_PIN"));
        json_object_set_new(ca, "PinFile", json_string(ca_pin_file));
    }
    return doc;
}

void config_free(config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->hsm.tokens);
    free(cfg->stores);
    free(cfg->cas);
    for (size_t i = 0; i < cfg->template_count; i++)
        free(cfg->templates[i].ca_ids);
    free(cfg->templates);
    for (size_t i = 0; i < cfg->pattern_count; i++) {
        free(cfg->patterns[i].ca_ids);
        pattern_policy_free(&cfg->patterns[i].policy);
    }
    free(cfg->patterns);
    metadata_rules_free(cfg->metadata_fields, cfg->metadata_field_count);
    free(cfg->roles);
    regex_free(cfg->settings.common_name);
    for (size_t i = 0; i < cfg->settings.csp_count; i++)
        free(cfg->settings.csps[i]);
    free(cfg->settings.csps);
    for (size_t i = 0; i < cfg->owned_path_count; i++)
        free(cfg->owned_paths[i]);
    free(cfg->owned_paths);
    json_decref(cfg->doc);
    free(cfg->base_dir);
    free(cfg->state_dir);
    free(cfg->source);
    free(cfg);
}

void config_token_pin(const config *cfg, const char *label, const char **env, const char **file)
{
    *env = cfg->hsm.pin_env;
    *file = cfg->hsm.pin_file;
    for (size_t i = 0; label != NULL && i < cfg->ca_count; i++) {
        const config_ca *ca = &cfg->cas[i];
        if (ca->type == CA_TYPE_LOCAL && ca->token != NULL && strcmp(ca->token, label) == 0 &&
            (ca->pin_env != NULL || ca->pin_file != NULL)) {
            *env = ca->pin_env;
            *file = ca->pin_file;
            return;
        }
    }
}

const config_ca *config_find_ca_by_id(const config *cfg, long long id)
{
    for (size_t i = 0; i < cfg->ca_count; i++)
        if (cfg->cas[i].id == id)
            return &cfg->cas[i];
    return NULL;
}

const config_ca *config_find_ca_by_name(const config *cfg, const char *name)
{
    const char *bs = strrchr(name, '\\');
    for (size_t i = 0; i < cfg->ca_count; i++) {
        const config_ca *ca = &cfg->cas[i];
        if (strcasecmp(ca->name, name) == 0)
            return ca;
        /* "logical" alone matches "host\\logical" */
        if (bs == NULL && strcasecmp(ca->logical, name) == 0)
            return ca;
    }
    return NULL;
}

void config_template_hint(const config *cfg, const char *name, char *buf, size_t size)
{
    const char *names[64] = {NULL};
    size_t n = 0;
    for (size_t i = 0; i < cfg->template_count && n < 64; i++)
        names[n++] = cfg->templates[i].name;
    const char *near = suggest_closest(name, names, n);
    char list[512];
    suggest_list(list, sizeof list, names, n, 12);
    if (near != NULL)
        snprintf(buf, size, "did you mean \"%s\"? (templates: %s)", near, list);
    else
        snprintf(buf, size, "templates: %s", n ? list : "none");
}

void config_pattern_hint(const config *cfg, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "patterns:");
    for (size_t i = 0; i < cfg->pattern_count && i < 12 && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s %lld (%s)", i ? "," : "",
                                 cfg->patterns[i].id, cfg->patterns[i].name);
    if (cfg->pattern_count == 0 && used < size)
        snprintf(buf + used, size - used, " none");
    else if (cfg->pattern_count > 12 && used < size)
        snprintf(buf + used, size - used, ", ...");
}

const config_template *config_find_template_by_name(const config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->template_count; i++)
        if (strcasecmp(cfg->templates[i].name, name) == 0)
            return &cfg->templates[i];
    return NULL;
}

const config_pattern *config_find_pattern(const config *cfg, long long id)
{
    for (size_t i = 0; i < cfg->pattern_count; i++)
        if (cfg->patterns[i].id == id)
            return &cfg->patterns[i];
    return NULL;
}

const config_pattern *config_default_pattern(const config *cfg, const config_template *tmpl)
{
    for (size_t i = 0; i < cfg->pattern_count; i++)
        if (cfg->patterns[i].template_ == tmpl && cfg->patterns[i].template_default)
            return &cfg->patterns[i];
    return NULL;
}

const config_role *config_find_role_by_id(const config *cfg, long long id)
{
    for (size_t i = 0; i < cfg->role_count; i++)
        if (cfg->roles[i].id == id)
            return &cfg->roles[i];
    return NULL;
}

const config_role *config_find_role_by_name(const config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->role_count; i++)
        if (strcasecmp(cfg->roles[i].name, name) == 0)
            return &cfg->roles[i];
    return NULL;
}
