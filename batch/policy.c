/* Policy enforcement for one request (see policy.h for the order and what is applied). */
#include "policy.h"

#include <openssl/obj_mac.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "formats/dn.h"
#include "formats/san.h"

#define ADD(errors, code, field, ...) error_list_add((errors), (code), (field), __VA_ARGS__)

/* A cheap thread-safe PRNG for picking among allowed CAs (not for anything secret). */
static uint64_t next_random(void)
{
    static _Atomic uint64_t state;
    uint64_t s = atomic_load(&state);
    if (s == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t seed = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ 0x9e3779b97f4a7c15ULL;
        if (atomic_compare_exchange_strong(&state, &s, seed)) /* else s holds another seed */
            s = seed;
    }
    uint64_t x;
    do {
        x = s;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    } while (!atomic_compare_exchange_weak(&state, &s, x));
    return x;
}

static bool id_listed(const long long *ids, size_t n, long long id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static void resolve(const config *cfg, const enroll_request *req, policy_decision *out,
                    error_list *errors)
{
    const config_template *named = NULL;
    if (req->template_name != NULL) {
        named = config_find_template_by_name(cfg, req->template_name);
        if (named == NULL) {
            char hint[700];
            config_template_hint(cfg, req->template_name, hint, sizeof hint);
            ADD(errors, HSE_UNKNOWN_TEMPLATE, "Template", "no template named \"%.80s\" in %s; %s",
                req->template_name, cfg->source, hint);
            return;
        }
    }
    if (req->pattern_id >= 0) {
        out->pattern = config_find_pattern(cfg, req->pattern_id);
        if (out->pattern == NULL) {
            char hint[700];
            config_pattern_hint(cfg, hint, sizeof hint);
            ADD(errors, HSE_UNKNOWN_PATTERN, "EnrollmentPatternId",
                "no enrollment pattern with Id %lld in %s; %s", req->pattern_id, cfg->source, hint);
            return;
        }
        if (named != NULL && named != out->pattern->template_) {
            ADD(errors, HSE_TEMPLATE_MISMATCH, "Template",
                "Template \"%.80s\" is not the template of enrollment pattern %lld (\"%.80s\")",
                req->template_name, req->pattern_id, out->pattern->template_->name);
            out->pattern = NULL;
            return;
        }
    } else if (named != NULL) {
        out->pattern = config_default_pattern(cfg, named);
        if (out->pattern == NULL) {
            ADD(errors, HSE_NO_DEFAULT_PATTERN, "Template",
                "template \"%.80s\" has no enrollment pattern to enroll with", named->name);
            return;
        }
    } else {
        return; /* neither: already reported by the parser */
    }
    out->template_ = out->pattern->template_;

    const long long *ids = out->template_->ca_ids;
    size_t n = out->template_->ca_count;
    if (out->pattern->restrict_cas) {
        ids = out->pattern->ca_ids;
        n = out->pattern->ca_count;
    }
    if (req->ca_name != NULL) {
        const config_ca *ca = config_find_ca_by_name(cfg, req->ca_name);
        if (ca == NULL)
            ADD(errors, HSE_UNKNOWN_CA, "CertificateAuthority",
                "no certificate authority named \"%.80s\" in %s", req->ca_name, cfg->source);
        else if (!id_listed(ids, n, ca->id))
            ADD(errors, HSE_CA_NOT_ALLOWED, "CertificateAuthority",
                "certificate authority \"%.80s\" is not allowed for pattern \"%.80s\" (template "
                "\"%.80s\")",
                ca->name, out->pattern->name, out->template_->name);
        else
            out->ca = ca;
    } else if (n > 0) {
        out->ca = config_find_ca_by_id(cfg, ids[n == 1 ? 0 : next_random() % n]);
    } else {
        ADD(errors, HSE_CA_NOT_ALLOWED, "CertificateAuthority",
            "no certificate authority is available for pattern \"%.80s\"", out->pattern->name);
    }
}

/* The values of one subject attribute type, most specific first; count is 0 when absent. */
static size_t subject_values(const X509_NAME *name, int nid, char **out, size_t max)
{
    size_t n = 0;
    for (int i = X509_NAME_entry_count(name) - 1; i >= 0 && n < max; i--) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
        if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)) != nid)
            continue;
        unsigned char *utf8 = NULL;
        if (ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e)) >= 0) {
            out[n++] = strdup((char *)utf8);
            OPENSSL_free(utf8);
        }
    }
    return n;
}

static void free_values(char **values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(values[i]);
}

static void check_subject(const config *cfg, const pattern_policy *p, enroll_request *req,
                          error_list *errors)
{
    if (req->subject == NULL)
        return;
    for (size_t i = 0; i < p->default_count; i++) {
        const subject_default *d = &p->defaults[i];
        if (X509_NAME_get_index_by_NID(req->subject, d->nid, -1) >= 0)
            continue;
        enroll_error e;
        if (dn_add_default(req->subject, d->nid, d->value, &e) != 0)
            ADD(errors, HSE_POLICY_DEFAULT, "Subject", "%s", e.message);
    }
    char *values[16];
    size_t n = subject_values(req->subject, NID_commonName, values, 16);
    const char *cn = n > 0 ? values[0] : "";
    if (cfg->settings.common_name != NULL && !regex_match(cfg->settings.common_name, cn))
        ADD(errors, HSE_POLICY_COMMON_NAME, "Subject.CN",
            "the common name \"%.80s\" does not match the CommonNameRegex %.80s", cn,
            cfg->settings.common_name_regex);
    free_values(values, n);
    for (size_t i = 0; i < p->regex_count; i++) {
        const subject_regex *r = &p->regexes[i];
        char field[40];
        snprintf(field, sizeof field, "Subject.%s", r->part);
        n = subject_values(req->subject, r->nid, values, 16);
        const char *empty[1] = {""};
        size_t count = n ? n : 1;
        for (size_t k = 0; k < count; k++) {
            const char *value = n ? values[k] : empty[0];
            if (regex_match(r->re, value))
                continue;
            if (r->error != NULL && *r->error != '\0')
                ADD(errors, HSE_POLICY_REGEX, field, "%s", r->error);
            else
                ADD(errors, HSE_POLICY_REGEX, field, "%s \"%.80s\" does not match %.100s", r->part,
                    value, regex_source(r->re));
        }
        free_values(values, n);
    }
}

static bool has_dns_san(const GENERAL_NAMES *sans)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++)
        if (sk_GENERAL_NAME_value(sans, i)->type == GEN_DNS)
            return true;
    return false;
}

static void check_names(const pattern_policy *p, enroll_request *req, error_list *errors)
{
    char *cn = req->subject ? dn_get_text(req->subject, NID_commonName) : NULL;
    if (p->rfc_enforcement && req->sans != NULL) {
        /* RFC 2818: the host name goes in a dNSName; the CN is added as one when it is a host
         * name not listed yet (as Keyfactor adds such SANs automatically). */
        if (cn != NULL && *cn != '\0' && !san_has_dns(req->sans, cn)) {
            enroll_error e;
            san_add(req->sans, SAN_DNS, cn, "Subject.CN", &e); /* not a host name: not added */
        }
        if (!has_dns_san(req->sans))
            ADD(errors, HSE_POLICY_RFC2818, "SANs.dns",
                "RFC 2818 enforcement: the certificate needs a DNS name, and the CN \"%.80s\" is "
                "not one and no dns SAN was given",
                cn ? cn : "");
    }
    if (!p->allow_wildcards) {
        if (cn != NULL && strchr(cn, '*') != NULL)
            ADD(errors, HSE_POLICY_WILDCARD, "Subject.CN",
                "wildcards are not allowed by this pattern (CN \"%.80s\")", cn);
        for (int i = 0; req->sans != NULL && i < sk_GENERAL_NAME_num(req->sans); i++) {
            GENERAL_NAME *g = sk_GENERAL_NAME_value(req->sans, i);
            if (g->type != GEN_DNS)
                continue;
            const ASN1_STRING *s = g->d.dNSName;
            if (memchr(ASN1_STRING_get0_data(s), '*', (size_t)ASN1_STRING_length(s)) != NULL)
                ADD(errors, HSE_POLICY_WILDCARD, "SANs.dns",
                    "wildcards are not allowed by this pattern (dns \"%.*s\")",
                    ASN1_STRING_length(s) > 80 ? 80 : ASN1_STRING_length(s),
                    (const char *)ASN1_STRING_get0_data(s));
        }
    }
    free(cn);
}

static bool int_listed(const int *list, size_t n, int v)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == v)
            return true;
    return false;
}

static void check_key(const pattern_policy *p, const enroll_request *req, error_list *errors)
{
    const key_policy *k = &p->keys;
    const char *field = req->operation == OP_CSR ? "CSR" : "KeyType";
    char label[32];
    request_key_label(&req->key, label, sizeof label);
    if (!k->restricted || req->key.algorithm == 0)
        return;
    switch (req->key.algorithm) {
    case KEYALG_RSA:
        if (!k->rsa)
            ADD(errors, HSE_POLICY_KEY_ALGORITHM, field, "%s keys are not allowed by this pattern",
                "RSA");
        else if (k->rsa_bits_count > 0 &&
                 !int_listed(k->rsa_bits, k->rsa_bits_count, req->key.bits))
            ADD(errors, HSE_POLICY_KEY_SIZE, req->operation == OP_CSR ? "CSR" : "KeyLength",
                "%s: the pattern allows RSA keys of other sizes only", label);
        break;
    case KEYALG_ECC:
        if (!k->ecc)
            ADD(errors, HSE_POLICY_KEY_ALGORITHM, field, "%s keys are not allowed by this pattern",
                "ECC");
        else if (k->ecc_bits_count > 0 &&
                 !int_listed(k->ecc_bits, k->ecc_bits_count, req->key.bits))
            ADD(errors, HSE_POLICY_KEY_SIZE, req->operation == OP_CSR ? "CSR" : "KeyLength",
                "%s: the pattern allows ECC keys of other sizes only", label);
        else if (k->curve_count > 0 && !int_listed(k->curves, k->curve_count, req->key.curve_nid))
            ADD(errors, HSE_POLICY_KEY_CURVE, req->operation == OP_CSR ? "CSR" : "Curve",
                "%s: the pattern allows other curves only", label);
        break;
    case KEYALG_ED25519:
        if (!k->ed25519)
            ADD(errors, HSE_POLICY_KEY_ALGORITHM, field, "%s keys are not allowed by this pattern",
                "Ed25519");
        break;
    case KEYALG_ED448:
        if (!k->ed448)
            ADD(errors, HSE_POLICY_KEY_ALGORITHM, field, "%s keys are not allowed by this pattern",
                "Ed448");
        break;
    }
}

static void check_owner(const config *cfg, const pattern_policy *p, enroll_request *req,
                        error_list *errors)
{
    bool given = req->owner_role_id >= 0 || req->owner_role_name != NULL;
    if (given && p->owner == OWNER_HIDDEN) {
        ADD(errors, HSE_POLICY_OWNER_NOT_ALLOWED,
            req->owner_role_id >= 0 ? "OwnerRoleId" : "OwnerRoleName",
            "this pattern sets the certificate owner itself; leave OwnerRoleId and "
            "OwnerRoleName out");
        return;
    }
    if (given && cfg->role_count > 0) {
        if (req->owner_role_id >= 0 && !config_find_role_by_id(cfg, req->owner_role_id))
            ADD(errors, HSE_POLICY_OWNER_UNKNOWN, "OwnerRoleId", "no security role with Id %lld",
                req->owner_role_id);
        if (req->owner_role_name != NULL && !config_find_role_by_name(cfg, req->owner_role_name))
            ADD(errors, HSE_POLICY_OWNER_UNKNOWN, "OwnerRoleName",
                "no security role named \"%.80s\"", req->owner_role_name);
    }
    if (!given) {
        if (p->default_owner_id >= 0)
            req->owner_role_id = p->default_owner_id;
        else if (p->default_owner_name != NULL)
            req->owner_role_name = strdup(p->default_owner_name);
        else if (p->owner == OWNER_REQUIRED)
            ADD(errors, HSE_POLICY_OWNER_REQUIRED, "OwnerRoleId",
                "this pattern requires a certificate owner: give OwnerRoleId or OwnerRoleName");
    }
}

/* A metadata value as text: strings as they are, numbers and booleans written out. */
static char *metadata_text(const json_t *v)
{
    char buf[64];
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_integer(v))
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, sizeof buf, "%s", json_is_true(v) ? "true" : "false");
    else
        return NULL;
    return strdup(buf);
}

static void check_metadata(const config *cfg, const pattern_policy *p, enroll_request *req,
                           error_list *errors)
{
    const char *key;
    json_t *value;
    char field[120];
    if (req->metadata != NULL && cfg->metadata_field_count > 0) {
        json_object_foreach(req->metadata, key, value)
        {
            snprintf(field, sizeof field, "Metadata.%.100s", key);
            const metadata_rule *rule = NULL;
            for (size_t i = 0; i < p->metadata_count && rule == NULL; i++)
                if (strcasecmp(p->metadata[i].name, key) == 0)
                    rule = &p->metadata[i];
            if (rule == NULL) {
                ADD(errors, HSE_POLICY_METADATA_UNKNOWN, field, "no metadata field named \"%.80s\"",
                    key);
                continue;
            }
            if (rule->enrollment == FIELD_HIDDEN) {
                ADD(errors, HSE_POLICY_METADATA_HIDDEN, field,
                    "metadata field \"%.80s\" is hidden by this pattern and cannot be set", key);
                continue;
            }
            char *text = metadata_text(value);
            const char *problem = text ? metadata_value_problem(rule, text) : "must be a string";
            hse_code code = rule->type == METADATA_MULTIPLE_CHOICE ? HSE_POLICY_METADATA_OPTION
                                                                   : HSE_POLICY_METADATA_INVALID;
            if (problem != NULL && problem == rule->message)
                ADD(errors, code, field, "%s", problem); /* the field's own Message */
            else if (problem != NULL)
                ADD(errors, code, field, "%.80s %s", key, problem);
            free(text);
        }
    }
    for (size_t i = 0; i < p->metadata_count; i++) {
        const metadata_rule *rule = &p->metadata[i];
        if (jobj_get(req->metadata, rule->name) != NULL)
            continue;
        if (rule->default_value != NULL) {
            if (req->metadata == NULL)
                req->metadata = json_object();
            json_object_set_new(req->metadata, rule->name, json_string(rule->default_value));
        } else if (rule->enrollment == FIELD_REQUIRED) {
            snprintf(field, sizeof field, "Metadata.%.100s", rule->name);
            ADD(errors, HSE_POLICY_METADATA_REQUIRED, field, "metadata field \"%.80s\" is required",
                rule->name);
        }
    }
}

static void check_enrollment_fields(const pattern_policy *p, const enroll_request *req,
                                    error_list *errors)
{
    char field[140];
    const char *key;
    json_t *value;
    if (req->additional_fields != NULL) {
        json_object_foreach(req->additional_fields, key, value)
        {
            snprintf(field, sizeof field, "AdditionalEnrollmentFields.%.100s", key);
            const enrollment_field_rule *rule = NULL;
            for (size_t i = 0; i < p->field_count && rule == NULL; i++)
                if (strcasecmp(p->fields[i].name, key) == 0)
                    rule = &p->fields[i];
            if (rule == NULL) {
                ADD(errors, HSE_POLICY_ENROLLMENT_FIELD_UNKNOWN, field,
                    "the pattern has no enrollment field \"%.80s\"", key);
            } else if (!json_is_string(value)) {
                ADD(errors, HSE_POLICY_ENROLLMENT_FIELD_INVALID, field, "%s must be a string",
                    field);
            } else if (rule->data_type == 2 && !option_listed(rule->options, rule->option_count,
                                                              json_string_value(value), true)) {
                ADD(errors, HSE_POLICY_ENROLLMENT_FIELD_OPTION, field,
                    "\"%.80s\" is not one of the options of enrollment field \"%.80s\"",
                    json_string_value(value), rule->name);
            }
        }
    }
    for (size_t i = 0; i < p->field_count; i++) {
        if (jobj_get(req->additional_fields, p->fields[i].name) == NULL) {
            snprintf(field, sizeof field, "AdditionalEnrollmentFields.%.100s", p->fields[i].name);
            ADD(errors, HSE_POLICY_ENROLLMENT_FIELD_REQUIRED, field,
                "enrollment field \"%.80s\" is mandatory for this pattern", p->fields[i].name);
        }
    }
}

static void check_settings(const config *cfg, const policy_decision *d, const enroll_request *req,
                           error_list *errors)
{
    const config_settings *s = &cfg->settings;
    if (s->require_custom_friendly_name && req->format == FORMAT_PFX && req->friendly_name == NULL)
        ADD(errors, HSE_POLICY_FRIENDLY_NAME_REQUIRED, "CustomFriendlyName",
            "CustomFriendlyName is required (Settings.RequireCustomFriendlyName)");
    if (req->csp_name != NULL) {
        if (!s->allow_csps)
            ADD(errors, HSE_POLICY_CSP, "MicrosoftTargetCSP",
                "MicrosoftTargetCSP is not allowed (Settings.AllowCSPs is false)");
        else if (s->csp_count > 0 && !option_listed(s->csps, s->csp_count, req->csp_name, false))
            ADD(errors, HSE_POLICY_CSP, "MicrosoftTargetCSP",
                "\"%.80s\" is not one of the CSPs of Settings.CSPs", req->csp_name);
    }
    if (req->private_key != NULL && d->template_ != NULL && !d->template_->key_retention)
        ADD(errors, HSE_POLICY_KEY_RETENTION, "PrivateKey",
            "template \"%.80s\" does not allow private key retention (KeyRetention)",
            d->template_->name);
}

/* Certificate stores: every store a line names must be configured, and a reenrollment's must be
 * served by this engine (its AgentGuid). */
static void check_store(const config *cfg, const enroll_request *req, policy_decision *out,
                        error_list *errors)
{
    for (size_t i = 0; i < req->store_count; i++)
        if (config_find_store(cfg, req->stores[i].store_id) == NULL)
            ADD(errors, HSE_STORE_UNKNOWN, "Stores",
                "Stores[%zu]: no certificate store %s in the configuration (Stores)", i,
                req->stores[i].store_id);
    if (req->operation != OP_REENROLLMENT || req->store_id == NULL)
        return;
    out->store = config_find_store(cfg, req->store_id);
    if (out->store == NULL)
        ADD(errors, HSE_STORE_UNKNOWN, "KeystoreId",
            "no certificate store %s in the configuration (Stores)", req->store_id);
    else if (req->agent_guid != NULL && strcasecmp(req->agent_guid, out->store->agent_guid) != 0)
        ADD(errors, HSE_STORE_AGENT_MISMATCH, "AgentGuid",
            "store %s is served by orchestrator %s, not %s", out->store->id, out->store->agent_guid,
            req->agent_guid);
}

int policy_apply(const config *cfg, enroll_request *req, policy_decision *out, error_list *errors)
{
    size_t before = errors->count;
    memset(out, 0, sizeof *out);
    check_store(cfg, req, out, errors);
    resolve(cfg, req, out, errors);
    if (out->pattern == NULL)
        return errors->count > before ? -1 : 0;
    const pattern_policy *p = &out->pattern->policy;
    /* A reenrollment submits a CSR made on the store's device: a CSR enrollment. */
    long long wanted = req->operation == OP_PFX ? 1 : 2;
    if ((out->pattern->allowed_enrollment_types & wanted) == 0)
        ADD(errors, HSE_ENROLLMENT_TYPE_NOT_ALLOWED, "Operation",
            "enrollment pattern \"%.80s\" does not allow %s enrollment", out->pattern->name,
            wanted == 1 ? "PFX" : "CSR");
    check_subject(cfg, p, req, errors);
    check_names(p, req, errors);
    check_key(p, req, errors);
    check_owner(cfg, p, req, errors);
    check_metadata(cfg, p, req, errors);
    check_enrollment_fields(p, req, errors);
    check_settings(cfg, out, req, errors);
    return errors->count == before ? 0 : -1;
}
