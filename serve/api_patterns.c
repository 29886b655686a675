/* The configuration as the API shows it: GET /EnrollmentPatterns (filtered by QueryString),
 * GET /EnrollmentPatterns/{id}, POST /EnrollmentPatterns (the new pattern, v24 or v25 body, is
 * checked by the configuration loader), GET /MetadataFields, GET /Templates and
 * GET /CertificateAuthority, each in the shape of the official v25 schema. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch/jsonobj.h"
#include "serve/internal.h"

/* "host\logical": the host part (NULL when there is none). */
static json_t *ca_host(const config_ca *ca)
{
    const char *slash = strrchr(ca->name, '\\');
    return slash ? json_stringn(ca->name, (size_t)(slash - ca->name)) : json_null();
}

/* v24 Policies.KeyInfo {"RSA": {"bit_lengths": [...]}, ...} as v25 PrimaryKeyAlgorithms
 * [{"name": "RSA", "bit_lengths": [...], "curves": [...]}] (the algorithms allowed). */
static json_t *key_algorithms_v25(const json_t *key_info)
{
    json_t *out = json_array();
    const char *name;
    json_t *entry;
    json_object_foreach((json_t *)key_info, name, entry)
    {
        if (json_is_null(entry))
            continue;
        json_t *bits = jobj_get(entry, "bit_lengths"), *curves = jobj_get(entry, "curves");
        json_array_append_new(out, json_pack("{s:s, s:O?, s:O?}", "name", name, "bit_lengths",
                                             json_is_array(bits) ? bits : NULL, "curves",
                                             json_is_array(curves) ? curves : NULL));
    }
    return out;
}

/* And back: v25 PrimaryKeyAlgorithms as the KeyInfo the configuration loader checks. */
static json_t *key_info_v24(const json_t *algorithms)
{
    json_t *out = json_object();
    size_t i;
    json_t *a;
    json_array_foreach((json_t *)algorithms, i, a)
    {
        const char *name = json_string_value(jobj_get(a, "name"));
        if (name == NULL)
            continue;
        json_t *entry = json_object();
        json_t *bits = jobj_get(a, "bit_lengths"), *curves = jobj_get(a, "curves");
        if (json_is_array(bits))
            json_object_set(entry, "bit_lengths", bits);
        if (json_is_array(curves))
            json_object_set(entry, "curves", curves);
        json_object_set_new(out, name, entry);
    }
    return out;
}

static json_t *policies_v25(const json_t *raw)
{
    json_t *out = json_is_object(raw) ? json_deep_copy(raw) : json_object();
    json_t *key_info = jobj_get(out, "KeyInfo");
    json_t *algorithms = json_is_object(key_info) ? key_algorithms_v25(key_info) : json_null();
    jobj_del(out, "KeyInfo");
    json_object_set_new(out, "PrimaryKeyAlgorithms", algorithms);
    if (jobj_get(out, "DefaultCertificateOwnerOverride") == NULL)
        json_object_set_new(out, "DefaultCertificateOwnerOverride", json_false());
    if (jobj_get(out, "CertificateOwnerRole") == NULL)
        json_object_set_new(out, "CertificateOwnerRole", json_integer(0));
    return out;
}

/* A pattern as the v25 API shows it. */
static json_t *pattern_json(const config *cfg, const config_pattern *p)
{
    static const char *const copied[] = {"Description", "Regexes",          "MetadataFields",
                                         "Defaults",    "EnrollmentFields", NULL};
    json_t *out = json_object();
    json_object_set_new(out, "Id", json_integer(p->id));
    json_object_set_new(out, "Name", json_string(p->name));
    for (size_t i = 0; copied[i] != NULL; i++) {
        json_t *v = jobj_get(p->raw, copied[i]);
        json_object_set_new(out, copied[i], v ? json_deep_copy(v) : json_null());
    }
    json_object_set_new(out, "Template",
                        json_pack("{s:I, s:s, s:s, s:n, s:b, s:s}", "Id",
                                  (json_int_t)p->template_id, "TemplateName", p->template_->name,
                                  "CommonName", p->template_->name, "ConfigurationTenant",
                                  "RequiresApproval", 0, "FriendlyName", p->template_->name));
    json_object_set_new(out, "TemplateDefault", json_boolean(p->template_default));
    json_object_set_new(out, "UseADPermissions", json_boolean(p->use_ad_permissions));
    json_t *roles = json_array();
    for (size_t i = 0; i < p->policy.role_count; i++) {
        const config_role *role = config_find_role_by_name(cfg, p->policy.roles[i]);
        json_t *r = json_pack("{s:s}", "Name", p->policy.roles[i]);
        if (role != NULL)
            json_object_set_new(r, "Id", json_integer(role->id));
        json_array_append_new(roles, r);
    }
    json_object_set_new(out, "AssociatedRoles", roles);
    json_t *cas = json_array();
    for (size_t i = 0; i < p->ca_count; i++) {
        const config_ca *ca = config_find_ca_by_id(cfg, p->ca_ids[i]);
        if (ca != NULL)
            json_array_append_new(cas,
                                  json_pack("{s:I, s:s, s:o, s:n}", "Id", (json_int_t)p->ca_ids[i],
                                            "LogicalName", ca->logical, "HostName", ca_host(ca),
                                            "ConfigurationTenant"));
    }
    json_object_set_new(out, "CertificateAuthorities", cas);
    json_object_set_new(out, "AllowedEnrollmentTypes", json_integer(p->allowed_enrollment_types));
    json_object_set_new(out, "RestrictCAs", json_boolean(p->restrict_cas));
    json_object_set_new(out, "Policies", policies_v25(jobj_get(p->raw, "Policies")));
    return out;
}

/* What clients filter patterns by. */
static const char *const pattern_fields[] = {"Id",       "Name",       "Description",
                                             "Template", "TemplateId", NULL};

void api_list_patterns(server *srv, const api_call *call, api_answer *answer, long long id)
{
    (void)id;
    const config *cfg = srv->current->cfg;
    json_t *list = json_array(), *views = json_array();
    for (size_t i = 0; i < cfg->pattern_count; i++) {
        const config_pattern *p = &cfg->patterns[i];
        json_array_append_new(list, pattern_json(cfg, p));
        json_t *desc = jobj_get(p->raw, "Description");
        json_array_append_new(
            views, json_pack("{s:I, s:s, s:O?, s:s, s:I}", "Id", (json_int_t)p->id, "Name", p->name,
                             "Description", json_is_string(desc) ? desc : NULL, "Template",
                             p->template_->name, "TemplateId", (json_int_t)p->template_id));
    }
    json_t *out = api_filter(call, list, views, pattern_fields, answer);
    if (out != NULL)
        answer->body = out;
}

void api_get_pattern(server *srv, const api_call *call, api_answer *answer, long long id)
{
    (void)call;
    const config *cfg = srv->current->cfg;
    const config_pattern *p = config_find_pattern(cfg, id);
    if (p == NULL) {
        api_error(answer, HSE_NOT_FOUND, "no enrollment pattern has Id %lld", id);
        return;
    }
    answer->body = pattern_json(cfg, p);
}

/* "EnrollmentPatterns[3].Template: ..." -> "Template: ..." for the entry being added. */
static void strip_path_prefix(char *text, const char *prefix, size_t n)
{
    if (strncmp(text, prefix, n) != 0)
        return;
    size_t skip = n + (text[n] == '.');
    memmove(text, text + skip, strlen(text + skip) + 1);
    if (text[0] == '\0' || text[0] == ':')
        memmove(text + 6, text, strlen(text) + 1), memcpy(text, "(body)", 6);
}

/* A v25 body in the configuration's vocabulary: Policies.PrimaryKeyAlgorithms as KeyInfo,
 * DefaultCertificateOwnerOverride and empty AlternativeKeyAlgorithms taken (nothing to
 * enforce), explicit nulls left out. */
static void pattern_body_v24(json_t *body)
{
    json_t *policies = jobj_get(body, "Policies");
    if (json_is_object(policies)) {
        json_t *algorithms = jobj_get(policies, "PrimaryKeyAlgorithms");
        if (json_is_array(algorithms) && json_array_size(algorithms) > 0)
            json_object_set_new(policies, "KeyInfo", key_info_v24(algorithms));
        jobj_del(policies, "PrimaryKeyAlgorithms");
        json_t *alt = jobj_get(policies, "AlternativeKeyAlgorithms");
        if (alt != NULL && (json_is_null(alt) || json_array_size(alt) == 0))
            jobj_del(policies, "AlternativeKeyAlgorithms");
        jobj_del(policies, "DefaultCertificateOwnerOverride");
    }
    const char *key;
    json_t *value;
    void *tmp;
    json_object_foreach_safe(body, tmp, key, value)
    {
        if (json_is_null(value))
            json_object_del(body, key);
    }
}

void api_add_pattern(server *srv, const api_call *call, api_answer *answer, long long unused)
{
    (void)unused;
    json_t *body = api_body_object(call, answer);
    if (body == NULL)
        return;
    pattern_body_v24(body);
    const config *old = srv->current->cfg;
    json_t *doc = json_deep_copy(old->doc);
    json_t *patterns = jobj_get(doc, "EnrollmentPatterns");
    long long id = 0;
    for (size_t i = 0; i < old->pattern_count; i++)
        if (old->patterns[i].id > id)
            id = old->patterns[i].id;
    id++;
    jobj_del(body, "Id");
    json_object_set_new(body, "Id", json_integer(id));
    char prefix[64];
    int n = snprintf(prefix, sizeof prefix, "EnrollmentPatterns[%zu]", json_array_size(patterns));
    json_array_append_new(patterns, body);
    error_list errors = {0};
    config *cfg = config_load_json(doc, old->base_dir, "POST /EnrollmentPatterns", &errors);
    json_decref(doc);
    if (cfg == NULL) {
        /* Paths name the new entry as the configuration sees it; show them from the body. */
        for (size_t i = 0; i < errors.count; i++) {
            strip_path_prefix(errors.items[i].field, prefix, (size_t)n);
            strip_path_prefix(errors.items[i].message, prefix, (size_t)n);
        }
        if (errors.count == 0)
            error_list_add(&errors, HSE_CONFIG_RULE, NULL, "the pattern is not valid");
        api_answer_errors(answer, &errors);
        error_list_free(&errors);
        return;
    }
    serve_config *sc = serve_config_new(cfg);
    if (sc == NULL) {
        config_free(cfg);
        api_error(answer, HSE_INTERNAL, "out of memory");
        return;
    }
    serve_config_free(srv->current);
    srv->current = sc;
    answer->body = pattern_json(cfg, config_find_pattern(cfg, id));
}

static const char *const metadata_fields[] = {"Id", "Name", "DataType", NULL};

void api_list_metadata_fields(server *srv, const api_call *call, api_answer *answer, long long id)
{
    (void)id;
    const config *cfg = srv->current->cfg;
    json_t *list = json_array(), *views = json_array();
    for (size_t i = 0; i < cfg->metadata_field_count; i++) {
        const metadata_rule *m = &cfg->metadata_fields[i];
        char *options = NULL;
        size_t len = 0;
        for (size_t k = 0; k < m->option_count; k++)
            len += strlen(m->options[k]) + 1;
        if (m->option_count > 0 && (options = calloc(1, len)) != NULL)
            for (size_t k = 0; k < m->option_count; k++) {
                if (k > 0)
                    strcat(options, ",");
                strcat(options, m->options[k]);
            }
        json_array_append_new(
            list, json_pack("{s:I, s:s, s:s, s:i, s:n, s:n, s:i, s:s?, s:s?, s:s?, s:I, s:b, "
                            "s:b}",
                            "Id", (json_int_t)m->id, "Name", m->name, "Description", m->name,
                            "DataType", (int)m->type, "Hint", "Validation", "Enrollment",
                            (int)m->enrollment, "Message", m->message, "Options", options,
                            "DefaultValue", m->default_value, "DisplayOrder", (json_int_t)(i + 1),
                            "CaseSensitive", m->case_sensitive, "ExemptFromActionedCount", 0));
        json_array_append_new(views, json_pack("{s:I, s:s, s:i}", "Id", (json_int_t)m->id, "Name",
                                               m->name, "DataType", (int)m->type));
        free(options);
    }
    json_t *out = api_filter(call, list, views, metadata_fields, answer);
    if (out != NULL)
        answer->body = out;
}

static const char *const template_fields[] = {"Id", "CommonName", "TemplateName", "DisplayName",
                                              NULL};

void api_list_templates(server *srv, const api_call *call, api_answer *answer, long long id)
{
    (void)id;
    const config *cfg = srv->current->cfg;
    json_t *list = json_array(), *views = json_array();
    for (size_t i = 0; i < cfg->template_count; i++) {
        const config_template *t = &cfg->templates[i];
        json_array_append_new(
            list,
            json_pack(
                "{s:I, s:s, s:s, s:n, s:n, s:n, s:n, s:n, s:s, s:s, s:n, s:b, s:[], s:i, "
                "s:[], s:b, s:[], s:s, s:b, s:i, s:[]}",
                "Id", (json_int_t)t->id, "CommonName", t->name, "TemplateName", t->name, "Oid",
                "KeySize", "KeyType", "ForestRoot", "ConfigurationTenant", "FriendlyName", t->name,
                "KeyRetention", t->key_retention ? "Indefinite" : "None", "KeyRetentionDays",
                "KeyArchival", t->key_retention, "EnrollmentFields", "AllowedEnrollmentTypes", 3,
                "TemplateRegexes", "UseAllowedRequesters", 0, "AllowedRequesters", "DisplayName",
                t->name, "RequiresApproval", 0, "KeyUsage", 0, "ExtendedKeyUsages"));
        json_array_append_new(views, json_pack("{s:I, s:s, s:s, s:s}", "Id", (json_int_t)t->id,
                                               "CommonName", t->name, "TemplateName", t->name,
                                               "DisplayName", t->name));
    }
    json_t *out = api_filter(call, list, views, template_fields, answer);
    if (out != NULL)
        answer->body = out;
}

static const char *const ca_fields[] = {"Id", "LogicalName", "HostName", "Name", NULL};

void api_list_cas(server *srv, const api_call *call, api_answer *answer, long long id)
{
    (void)id;
    const config *cfg = srv->current->cfg;
    json_t *list = json_array(), *views = json_array();
    for (size_t i = 0; i < cfg->ca_count; i++) {
        const config_ca *ca = &cfg->cas[i];
        json_t *item = json_pack(
            "{s:I, s:s, s:o, s:b, s:b, s:n, s:n, s:b, s:n, s:b, s:b, s:n, s:n, s:n, s:n, s:b, "
            "s:s, s:i, s:i, s:n, s:b, s:b, s:n, s:n, s:b, s:[], s:i, s:b}",
            "Id", (json_int_t)ca->id, "LogicalName", ca->logical, "HostName", ca_host(ca),
            "Delegate", 0, "DelegateEnrollment", 0, "ForestRoot", "ConfigurationTenant", "Remote",
            ca->type != CA_TYPE_LOCAL, "Agent", "Standalone", 1, "MonitorThresholds", 0,
            "IssuanceMax", "IssuanceMin", "DenialMax", "FailureMax", "RFCEnforcement", 0,
            "Properties", "{}", "AllowedEnrollmentTypes", 3, "KeyRetention", 0, "KeyRetentionDays",
            "ExplicitCredentials", 0, "SubscriberTerms", 0, "ExplicitUser", "ExplicitPassword",
            "UseAllowedRequesters", 0, "AllowedRequesters", "CAType", 0, "EnforceUniqueDN", 0);
        json_array_append_new(list, item);
        json_array_append_new(views, json_pack("{s:I, s:s, s:o, s:s}", "Id", (json_int_t)ca->id,
                                               "LogicalName", ca->logical, "HostName", ca_host(ca),
                                               "Name", ca->name));
    }
    json_t *out = api_filter(call, list, views, ca_fields, answer);
    if (out != NULL)
        answer->body = out;
}
