/* The configuration loader: the embedded default, JSON paths in errors, unknown and duplicate
 * keys, cross references, the enrollment-pattern rules of the Keyfactor page, path resolution. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/config.h"
#include "tests/support.h"

static const char base[] =
    "{\"Hsm\":{\"Tokens\":[\"t1\"]},"
    "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"corp\\\\Issuing1\",\"Type\":\"local\"}],"
    "\"Templates\":[{\"Id\":1,\"Name\":\"Web\",\"CertificateAuthorities\":[1]}],"
    "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Web\",\"Template\":1}]}";

/* Loads text; returns the config or NULL, with the errors in *errors. */
static config *load(const char *text, error_list *errors)
{
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    if (doc == NULL) {
        fprintf(stderr, "bad test JSON: %s: %s\n", jerr.text, text);
        return NULL;
    }
    config *cfg = config_load_json(doc, "/etc/hsmenroll", "test.json", errors);
    json_decref(doc);
    return cfg;
}

/* True when some error has this path and its message contains `text`. */
static int has_error(const error_list *errors, const char *path, const char *text)
{
    for (size_t i = 0; i < errors->count; i++)
        if (strcmp(errors->items[i].field, path) == 0 && strstr(errors->items[i].message, text))
            return 1;
    for (size_t i = 0; i < errors->count; i++)
        fprintf(stderr, "  [%s] %s\n", errors->items[i].field, errors->items[i].message);
    return 0;
}

/* Expects text to fail with an error at path mentioning what. */
static void expect_error(const char *text, const char *path, const char *what)
{
    error_list errors = {0};
    config *cfg = load(text, &errors);
    CU_ASSERT_PTR_NULL(cfg);
    CU_ASSERT_TRUE(has_error(&errors, path, what));
    config_free(cfg);
    error_list_free(&errors);
}

static void test_embedded_default_loads(void)
{
    json_t *doc = config_default_document("/srv/home", false);
    error_list errors = {0};
    config *cfg = config_load_json(doc, "/srv/home", "(embedded default)", &errors);
    json_decref(doc);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL(errors.count, 0);
    CU_ASSERT_EQUAL(cfg->hsm.token_count, 1);
    /* No label a prefix of the other (OpenSC's --token-label matches by prefix). */
    CU_ASSERT_STRING_EQUAL(cfg->hsm.tokens[0], "hsmenroll-keys");
    CU_ASSERT_STRING_EQUAL(cfg->hsm.pin_file, "/srv/home/pin");
    CU_ASSERT_EQUAL(cfg->ca_count, 1);
    CU_ASSERT_EQUAL(cfg->cas[0].type, CA_TYPE_LOCAL);
    CU_ASSERT_STRING_EQUAL(cfg->cas[0].home, "/srv/home/ca");
    CU_ASSERT_STRING_EQUAL(cfg->cas[0].token, "hsmenroll-ca");
    /* The CA token's own PIN. */
    const char *env, *file;
    config_token_pin(cfg, "hsmenroll-ca", &env, &file);
    CU_ASSERT_STRING_EQUAL(env ? env : "", "HSMENROLL_CA_PIN");
    CU_ASSERT_STRING_EQUAL(file ? file : "", "/srv/home/ca-pin");
    config_token_pin(cfg, "hsmenroll-keys", &env, &file);
    CU_ASSERT_STRING_EQUAL(env ? env : "", "HSMENROLL_PIN");
    CU_ASSERT_STRING_EQUAL(file ? file : "", "/srv/home/pin");
    const config_template *t = config_find_template_by_name(cfg, "default");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(t->validity_days, 365);
    const config_pattern *p = config_default_pattern(cfg, t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(p->id, 1);
    CU_ASSERT_EQUAL(p->allowed_enrollment_types, 7);
    CU_ASSERT_EQUAL(cfg->settings.password_length, 12);
    CU_ASSERT_EQUAL(cfg->settings.pkcs12_iterations, 2048);
    config_free(cfg);
}

/* A home made before the CA token had a PIN of its own keeps its labels and its one PIN. */
static void test_embedded_default_legacy_home(void)
{
    json_t *doc = config_default_document("/srv/home", true);
    error_list errors = {0};
    config *cfg = config_load_json(doc, "/srv/home", "(embedded default)", &errors);
    json_decref(doc);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_STRING_EQUAL(cfg->hsm.tokens[0], "hsmenroll");
    const char *env, *file;
    config_token_pin(cfg, "hsmenroll-ca", &env, &file);
    CU_ASSERT_STRING_EQUAL(file ? file : "", "/srv/home/pin");
    config_free(cfg);
    error_list_free(&errors);
}

/* A CA's own PIN on a token the keys use too is a conflict (a token has one user PIN). */
static void test_ca_pin_on_key_token_refused(void)
{
    expect_error("{\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Id\":1,"
                 "\"Name\":\"c\",\"Type\":\"local\",\"Token\":\"t\",\"PinEnv\":\"X\"}],"
                 "\"Templates\":[{\"Id\":1,\"Name\":\"T\",\"CertificateAuthorities\":[1]}]}",
                 "CertificateAuthorities[0].PinEnv", "whose PIN it has");
}

static void test_minimal_document_and_lookups(void)
{
    error_list errors = {0};
    config *cfg = load(base, &errors);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    /* Local CA token defaults to the first key token; names match whole or logical part. */
    CU_ASSERT_STRING_EQUAL(cfg->cas[0].token, "t1");
    CU_ASSERT_PTR_EQUAL(config_find_ca_by_name(cfg, "corp\\Issuing1"), &cfg->cas[0]);
    CU_ASSERT_PTR_EQUAL(config_find_ca_by_name(cfg, "issuing1"), &cfg->cas[0]);
    CU_ASSERT_PTR_NULL(config_find_ca_by_name(cfg, "other\\Issuing1"));
    CU_ASSERT_PTR_NULL(config_find_ca_by_name(cfg, "corp"));
    /* The only pattern of a template becomes its default. */
    CU_ASSERT_PTR_EQUAL(config_default_pattern(cfg, &cfg->templates[0]), &cfg->patterns[0]);
    CU_ASSERT_EQUAL(cfg->hsm.pin_env ? 1 : 0, 1);
    CU_ASSERT_STRING_EQUAL(cfg->hsm.pin_env, "HSMENROLL_PIN");
    CU_ASSERT_PTR_NULL(cfg->hsm.module); /* the build's default */
    config_free(cfg);
    /* No Module: HSMENROLL_MODULE names it; a Module in the document wins. */
    setenv("HSMENROLL_MODULE", "/opt/vendor/libpkcs11.so", 1);
    cfg = load(base, &errors);
    CU_ASSERT_STRING_EQUAL(cfg && cfg->hsm.module ? cfg->hsm.module : "",
                           "/opt/vendor/libpkcs11.so");
    config_free(cfg);
    cfg = load("{\"Hsm\":{\"Module\":\"/usr/lib/other.so\",\"Tokens\":[\"t1\"]},"
               "\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"c\",\"Type\":\"local\"}],"
               "\"Templates\":[{\"Id\":1,\"Name\":\"Web\",\"CertificateAuthorities\":[1]}],"
               "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Web\",\"Template\":1}]}",
               &errors);
    CU_ASSERT_STRING_EQUAL(cfg && cfg->hsm.module ? cfg->hsm.module : "", "/usr/lib/other.so");
    config_free(cfg);
    unsetenv("HSMENROLL_MODULE");
}

static void test_keys_are_case_insensitive_and_paths_relative(void)
{
    error_list errors = {0};
    config *cfg = load("{\"hsm\":{\"tokens\":[\"a\",\"b\"],\"pinfile\":\"secrets/pin\"},"
                       "\"certificateauthorities\":[{\"id\":3,\"name\":\"x\",\"type\":\"LOCAL\","
                       "\"home\":\"ca\",\"token\":\"c\"}],"
                       "\"templates\":[{\"id\":1,\"name\":\"T\",\"certificateAuthorities\":[3],"
                       "\"validityDays\":30}],"
                       "\"enrollmentPatterns\":[{\"id\":9,\"name\":\"P\",\"template\":1}]}",
                       &errors);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL(cfg->hsm.token_count, 2);
    CU_ASSERT_STRING_EQUAL(cfg->hsm.pin_file, "/etc/hsmenroll/secrets/pin");
    CU_ASSERT_STRING_EQUAL(cfg->cas[0].home, "/etc/hsmenroll/ca");
    CU_ASSERT_EQUAL(cfg->templates[0].validity_days, 30);
    CU_ASSERT_PTR_EQUAL(config_find_pattern(cfg, 9), &cfg->patterns[0]);
    config_free(cfg);
}

static void test_not_json_and_not_object(void)
{
    expect_error("[1,2]", "", "must be a JSON object");
}

static void test_unknown_and_duplicate_keys(void)
{
    expect_error(
        "{\"Hsm\":{\"Tokens\":[\"t\"],\"Pin\":\"1234\"},\"CertificateAuthorities\":[{\"Id\":1,"
        "\"Name\":\"c\",\"Type\":\"local\"}],\"Templates\":[{\"Id\":1,\"Name\":\"T\","
        "\"CertificateAuthorities\":[1]}],\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"P\","
        "\"Template\":1}]}",
        "Hsm.Pin", "unknown key");
    expect_error(
        "{\"Hsm\":{\"Tokens\":[\"t\"]},\"hsm\":{},\"CertificateAuthorities\":[{\"Id\":1,"
        "\"Name\":\"c\",\"Type\":\"local\"}],\"Templates\":[{\"Id\":1,\"Name\":\"T\","
        "\"CertificateAuthorities\":[1]}],\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"P\","
        "\"Template\":1}],\"Colour\":1}",
        "Colour", "unknown key");
    expect_error(
        "{\"Hsm\":{\"Tokens\":[\"t\"]},\"hsm\":{},\"CertificateAuthorities\":[{\"Id\":1,"
        "\"Name\":\"c\",\"Type\":\"local\"}],\"Templates\":[{\"Id\":1,\"Name\":\"T\","
        "\"CertificateAuthorities\":[1]}],\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"P\","
        "\"Template\":1}]}",
        "hsm", "given twice");
}

static void test_hsm_section(void)
{
    expect_error("{\"CertificateAuthorities\":[],\"Templates\":[],\"EnrollmentPatterns\":[]}",
                 "Hsm", "required");
    expect_error("{\"Hsm\":{\"Tokens\":[]}}", "Hsm.Tokens", "non-empty");
    expect_error("{\"Hsm\":{\"Tokens\":[\"a\"],\"Token\":\"b\"}}", "Hsm.Token", "not both");
    expect_error("{\"Hsm\":{\"Tokens\":[\"a\",\"a\"]}}", "Hsm.Tokens[1]", "listed twice");
    expect_error("{\"Hsm\":{\"Tokens\":[\"a-label-that-is-longer-than-32-bytes\"]}}",
                 "Hsm.Tokens[0]", "1 to 32 bytes");
    expect_error("{\"Hsm\":{\"Tokens\":[\"a\"],\"Module\":7}}", "Hsm.Module", "expected a string");
}

static void test_ca_and_template_entries(void)
{
    expect_error("{\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Name\":\"c\","
                 "\"Type\":\"local\"}]}",
                 "CertificateAuthorities[0].Id", "required");
    expect_error(
        "{\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"c\","
        "\"Type\":\"acme\"}]}",
        "CertificateAuthorities[0].Type", "must be");
    expect_error(
        "{\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"c\","
        "\"Type\":\"cfssl\"}]}",
        "CertificateAuthorities[0].Url", "required for a cfssl CA");
    expect_error(
        "{\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"c\","
        "\"Type\":\"local\"},{\"Id\":1,\"Name\":\"C\",\"Type\":\"local\"}]}",
        "CertificateAuthorities[1].Id", "used twice");
    expect_error(
        "{\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"c\","
        "\"Type\":\"local\"},{\"Id\":2,\"Name\":\"C\",\"Type\":\"local\"}]}",
        "CertificateAuthorities[1].Name", "used twice");
    expect_error(
        "{\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"c\","
        "\"Type\":\"local\"}],\"Templates\":[{\"Id\":1,\"Name\":\"T\","
        "\"CertificateAuthorities\":[2]}]}",
        "Templates[0].CertificateAuthorities", "no CA with Id 2");
    expect_error(
        "{\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"c\","
        "\"Type\":\"local\"}],\"Templates\":[{\"Id\":1,\"Name\":\"T\"}]}",
        "Templates[0].CertificateAuthorities", "at least one CA");
    expect_error(
        "{\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"c\","
        "\"Type\":\"local\"}],\"Templates\":[{\"Id\":1,\"Name\":\"T\","
        "\"CertificateAuthorities\":[1],\"ValidityDays\":0}]}",
        "Templates[0].ValidityDays", "between 1 and 36500");
    expect_error(
        "{\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"c\","
        "\"Type\":\"local\"}],\"Templates\":[{\"Id\":1,\"Name\":\"T\","
        "\"CertificateAuthorities\":[\"1\"]}]}",
        "Templates[0].CertificateAuthorities[0]", "expected an integer");
}

/* The rules of POST /EnrollmentPatterns (seed 002). */
static const char head[] =
    "{\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"a\","
    "\"Type\":\"local\"},{\"Id\":2,\"Name\":\"b\",\"Type\":\"local\"}],\"Templates\":[{\"Id\":1,"
    "\"Name\":\"T\",\"CertificateAuthorities\":[1]},{\"Id\":2,\"Name\":\"U\","
    "\"CertificateAuthorities\":[1,2]}],\"EnrollmentPatterns\":";

static void expect_pattern_error(const char *patterns, const char *path, const char *what)
{
    char text[2048];
    snprintf(text, sizeof text, "%s%s}", head, patterns);
    expect_error(text, path, what);
}

static void test_pattern_rules(void)
{
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"RestrictCAs\":true}]",
                         "EnrollmentPatterns[0].CertificateAuthorities", "RestrictCAs is true");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"UseADPermissions\":false}]",
                         "EnrollmentPatterns[0].AssociatedRoles", "UseADPermissions is false");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"UseADPermissions\":false,"
                         "\"AssociatedRoles\":[]}]",
                         "EnrollmentPatterns[0].AssociatedRoles", "at least one role");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"TemplateDefault\":true},"
                         "{\"Id\":2,\"Name\":\"Q\",\"Template\":1,\"TemplateDefault\":true}]",
                         "EnrollmentPatterns[1].TemplateDefault", "already has default pattern");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":5}]",
                         "EnrollmentPatterns[0].Template", "no template with Id 5");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\"}]", "EnrollmentPatterns[0].Template",
                         "required");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"RestrictCAs\":true,"
                         "\"CertificateAuthorities\":[2]}]",
                         "EnrollmentPatterns[0].CertificateAuthorities",
                         "CA 2 does not offer template \"T\"");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"AllowedEnrollmentTypes\":9}]",
                         "EnrollmentPatterns[0].AllowedEnrollmentTypes", "a sum of 1");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1},{\"Id\":1,\"Name\":\"Q\","
                         "\"Template\":2}]",
                         "EnrollmentPatterns[1].Id", "used twice");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"Colour\":\"red\"}]",
                         "EnrollmentPatterns[0].Colour", "unknown key");
}

/* Pattern policy sections (Regexes, Defaults, MetadataFields, Policies, EnrollmentFields). */
static void test_pattern_policy_sections(void)
{
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"Regexes\":[{\"SubjectPart\":"
                         "\"O\",\"Regex\":\"(unclosed\"}]}]",
                         "EnrollmentPatterns[0].Regexes[0].Regex", "at offset");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"Regexes\":[{\"SubjectPart\":"
                         "\"XYZ\",\"Regex\":\"a\"}]}]",
                         "EnrollmentPatterns[0].Regexes[0].SubjectPart", "not a subject part");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"Regexes\":[{\"SubjectPart\":"
                         "\"CN\"}]}]",
                         "EnrollmentPatterns[0].Regexes[0].Regex", "required");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"Defaults\":[{\"SubjectPart\":"
                         "\"L\"}]}]",
                         "EnrollmentPatterns[0].Defaults[0].Value", "required");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"MetadataFields\":[{"
                         "\"MetadataId\":9}]}]",
                         "EnrollmentPatterns[0].MetadataFields[0].MetadataId",
                         "no field with Id 9");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"Policies\":{\"KeyInfo\":{"
                         "\"DSA\":{}}}}]",
                         "EnrollmentPatterns[0].Policies.KeyInfo.DSA", "unknown key");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"Policies\":{\"KeyInfo\":{"
                         "\"ECDSA\":{\"bit_lengths\":[300]}}}}]",
                         "EnrollmentPatterns[0].Policies.KeyInfo.ECDSA.bit_lengths[0]",
                         "not a supported key size");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"Policies\":{\"KeyInfo\":{"
                         "\"ECDSA\":{\"curves\":[\"1.2.3\"]}}}}]",
                         "EnrollmentPatterns[0].Policies.KeyInfo.ECDSA.curves[0]",
                         "not 1.2.840.10045.3.1.7");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"Policies\":{\"KeyInfo\":{"
                         "\"RSA\":{\"curves\":[\"P-256\"]}}}}]",
                         "EnrollmentPatterns[0].Policies.KeyInfo.RSA.curves", "no curve");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"Policies\":{"
                         "\"CertificateOwnerRole\":5}}]",
                         "EnrollmentPatterns[0].Policies.CertificateOwnerRole", "0 (optional)");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"Policies\":{"
                         "\"AllowWildcards\":\"no\"}}]",
                         "EnrollmentPatterns[0].Policies.AllowWildcards", "true or false");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"EnrollmentFields\":[{"
                         "\"Name\":\"C\",\"DataType\":2}]}]",
                         "EnrollmentPatterns[0].EnrollmentFields[0].Options", "needs its options");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"EnrollmentFields\":[{"
                         "\"Name\":\"C\",\"DataType\":3}]}]",
                         "EnrollmentPatterns[0].EnrollmentFields[0].DataType", "1 (string)");
    expect_pattern_error("[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"EnrollmentFields\":[{"
                         "\"Name\":\"C\"},{\"Name\":\"c\"}]}]",
                         "EnrollmentPatterns[0].EnrollmentFields[1].Name", "defined twice");
}

/* Global MetadataFields, pattern overrides, Roles, Settings. */
static void test_metadata_roles_and_settings(void)
{
    char text[4096];
    static const char tail[] =
        "\"Hsm\":{\"Tokens\":[\"t\"]},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":\"a\","
        "\"Type\":\"local\"}],\"Templates\":[{\"Id\":1,\"Name\":\"T\","
        "\"CertificateAuthorities\":[1]}]";
    snprintf(text, sizeof text,
             "{%s,\"MetadataFields\":[{\"Id\":1,\"Name\":\"M\",\"DataType\":9}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"P\",\"Template\":1}]}",
             tail);
    expect_error(text, "MetadataFields[0].DataType", "1 string");
    snprintf(text, sizeof text,
             "{%s,\"MetadataFields\":[{\"Id\":1,\"Name\":\"M\",\"DataType\":5}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"P\",\"Template\":1}]}",
             tail);
    expect_error(text, "MetadataFields[0].Options", "needs its options");
    snprintf(text, sizeof text,
             "{%s,\"MetadataFields\":[{\"Id\":1,\"Name\":\"M\",\"DataType\":2,"
             "\"Validation\":\"^1\"}],\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"P\","
             "\"Template\":1}]}",
             tail);
    expect_error(text, "MetadataFields[0].Validation", "string fields only");
    snprintf(text, sizeof text,
             "{%s,\"MetadataFields\":[{\"Id\":1,\"Name\":\"Mail\",\"DataType\":1,"
             "\"Validation\":\"@example\\\\.com$\"}],\"EnrollmentPatterns\":[{\"Id\":1,"
             "\"Name\":\"P\",\"Template\":1,\"MetadataFields\":[{\"MetadataId\":1,"
             "\"DefaultValue\":\"a@example.org\",\"Enrollment\":3}]}]}",
             tail);
    error_list errors = {0};
    config *cfg = load(text, &errors);
    CU_ASSERT_PTR_NULL(cfg);
    CU_ASSERT_TRUE(
        has_error(&errors, "EnrollmentPatterns[0].MetadataFields[0].Enrollment", "0 (optional)"));
    CU_ASSERT_TRUE(has_error(&errors, "EnrollmentPatterns[0].MetadataFields[0].DefaultValue",
                             "does not match"));
    error_list_free(&errors);
    snprintf(text, sizeof text,
             "{%s,\"Roles\":[{\"Id\":3,\"Name\":\"Ops\"}],\"EnrollmentPatterns\":[{\"Id\":1,"
             "\"Name\":\"P\",\"Template\":1,\"UseADPermissions\":false,"
             "\"AssociatedRoles\":[\"Ops\",\"Devs\"],\"Policies\":{"
             "\"DefaultCertificateOwnerRoleName\":\"Nobody\"}}]}",
             tail);
    errors = (error_list){0};
    cfg = load(text, &errors);
    CU_ASSERT_PTR_NULL(cfg);
    CU_ASSERT_TRUE(has_error(&errors, "EnrollmentPatterns[0].AssociatedRoles", "\"Devs\""));
    CU_ASSERT_TRUE(has_error(&errors, "EnrollmentPatterns[0].Policies", "\"Nobody\""));
    error_list_free(&errors);
    snprintf(text, sizeof text,
             "{%s,\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"P\",\"Template\":1}],"
             "\"Settings\":{\"CommonNameRegex\":\"[\"}}",
             tail);
    expect_error(text, "Settings.CommonNameRegex", "not a valid regular expression");
    /* A valid policy document compiles. */
    errors = (error_list){0};
    cfg = config_load_file(HSMENROLL_SOURCE_DIR "/tests/data/policy-config.json", &errors);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    const config_pattern *web = config_find_pattern(cfg, 1);
    CU_ASSERT_EQUAL(web->policy.regex_count, 1);
    CU_ASSERT_EQUAL(web->policy.default_count, 2);
    CU_ASSERT_TRUE(web->policy.keys.restricted);
    CU_ASSERT_TRUE(web->policy.keys.ecc);
    CU_ASSERT_FALSE(web->policy.keys.rsa);
    CU_ASSERT_EQUAL(web->policy.keys.curve_count, 3);
    CU_ASSERT_TRUE(web->policy.rfc_enforcement);
    CU_ASSERT_EQUAL(web->policy.default_owner_id, 3);
    /* Every global field, with the pattern's overrides on Email-Contact (4). */
    CU_ASSERT_EQUAL(web->policy.metadata_count, 6);
    for (size_t i = 0; i < web->policy.metadata_count; i++)
        if (web->policy.metadata[i].id == 4)
            CU_ASSERT_EQUAL(web->policy.metadata[i].enrollment, FIELD_REQUIRED);
    config_free(cfg);
}

static void test_every_error_is_reported(void)
{
    error_list errors = {0};
    char text[2048];
    snprintf(text, sizeof text, "%s%s}", head,
             "[{\"Id\":1,\"Name\":\"P\",\"Template\":1,\"RestrictCAs\":true},"
             "{\"Id\":2,\"Name\":\"Q\",\"Template\":7,\"UseADPermissions\":false}]");
    config *cfg = load(text, &errors);
    CU_ASSERT_PTR_NULL(cfg);
    CU_ASSERT_TRUE(errors.count >= 3);
    CU_ASSERT_TRUE(
        has_error(&errors, "EnrollmentPatterns[0].CertificateAuthorities", "RestrictCAs"));
    CU_ASSERT_TRUE(has_error(&errors, "EnrollmentPatterns[1].Template", "no template"));
    CU_ASSERT_TRUE(has_error(&errors, "EnrollmentPatterns[1].AssociatedRoles", "UseADPermissions"));
    error_list_free(&errors);
}

static void test_default_pattern_choice(void)
{
    char text[2048];
    snprintf(text, sizeof text, "%s%s}", head,
             "[{\"Id\":1,\"Name\":\"P\",\"Template\":2},{\"Id\":2,\"Name\":\"Q\",\"Template\":2,"
             "\"TemplateDefault\":true},{\"Id\":3,\"Name\":\"R\",\"Template\":1}]");
    error_list errors = {0};
    config *cfg = load(text, &errors);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    /* Template U names its default explicitly; template T's only pattern is implied. */
    CU_ASSERT_EQUAL(config_default_pattern(cfg, config_find_template_by_name(cfg, "U"))->id, 2);
    CU_ASSERT_EQUAL(config_default_pattern(cfg, config_find_template_by_name(cfg, "T"))->id, 3);
    CU_ASSERT_FALSE(cfg->patterns[0].template_default);
    config_free(cfg);
}

static void test_settings(void)
{
    char text[2048];
    snprintf(text, sizeof text,
             "%s[{\"Id\":1,\"Name\":\"P\",\"Template\":1}],\"Settings\":{\"PasswordLength\":0}}",
             head);
    expect_error(text, "Settings.PasswordLength", "between 1 and 128");
    snprintf(text, sizeof text,
             "%s[{\"Id\":1,\"Name\":\"P\",\"Template\":1}],\"Settings\":{\"Colour\":1}}", head);
    expect_error(text, "Settings.Colour", "unknown key");
    snprintf(text, sizeof text,
             "%s[{\"Id\":1,\"Name\":\"P\",\"Template\":1}],\"Settings\":{\"PasswordLength\":20,"
             "\"Pkcs12Iterations\":10000,\"RequireCustomFriendlyName\":true}}",
             head);
    error_list errors = {0};
    config *cfg = load(text, &errors);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL(cfg->settings.password_length, 20);
    CU_ASSERT_EQUAL(cfg->settings.pkcs12_iterations, 10000);
    CU_ASSERT_TRUE(cfg->settings.require_custom_friendly_name);
    config_free(cfg);
}

static void test_stores(void)
{
    static const char guid[] = "6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10";
    static const char agent[] = "0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
    char text[1024];
    snprintf(
        text, sizeof text,
        "{\"Hsm\":{\"Tokens\":[\"t1\"],\"RestartEvery\":0},\"CertificateAuthorities\":[{\"Id\":1,"
        "\"Name\":\"c\",\"Type\":\"local\"}],\"Templates\":[{\"Id\":1,\"Name\":\"W\","
        "\"CertificateAuthorities\":[1]}],\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"W\","
        "\"Template\":1}],\"Stores\":[{\"Id\":\"%s\",\"Token\":\"store-1\","
        "\"AgentGuid\":\"%s\",\"Name\":\"web servers\"}]}",
        guid, agent);
    error_list errors = {0};
    config *cfg = load(text, &errors);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL(cfg->store_count, 1);
    CU_ASSERT_EQUAL(cfg->hsm.restart_every, 0);
    /* Found case-insensitively, as GUIDs are compared. */
    const config_store *s = config_find_store(cfg, "6B0E4A3C-0D0C-4F57-9A53-2F1A7C3C9E10");
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(s->token, "store-1");
    CU_ASSERT_STRING_EQUAL(s->agent_guid, agent);
    CU_ASSERT_PTR_NULL(config_find_store(cfg, "00000000-0000-0000-0000-000000000000"));
    config_free(cfg);
    error_list_free(&errors);

    expect_error("{\"Hsm\":{\"Tokens\":[\"t1\"]},\"Stores\":{}}", "Stores", "expected an array");
    expect_error("{\"Hsm\":{\"Tokens\":[\"t1\"]},\"Stores\":[{\"Id\":\"not-a-guid\","
                 "\"Token\":\"s\",\"AgentGuid\":\"0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b\"}]}",
                 "Stores[0].Id", "GUID");
    expect_error("{\"Hsm\":{\"Tokens\":[\"t1\"]},\"Stores\":[{\"Id\":"
                 "\"6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10\",\"AgentGuid\":"
                 "\"0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b\"}]}",
                 "Stores[0].Token", "required");
    expect_error("{\"Hsm\":{\"Tokens\":[\"t1\"]},\"Stores\":[{\"Id\":"
                 "\"6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10\",\"Token\":\"s\"}]}",
                 "Stores[0].AgentGuid", "required");
    expect_error("{\"Hsm\":{\"Tokens\":[\"t1\"]},\"Stores\":[{\"Id\":"
                 "\"6b0e4a3c-0d0c-4f57-9a53-2f1a7c3c9e10\",\"Token\":\"s\",\"AgentGuid\":"
                 "\"0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b\"},{\"Id\":"
                 "\"6B0E4A3C-0D0C-4F57-9A53-2F1A7C3C9E10\",\"Token\":\"s2\",\"AgentGuid\":"
                 "\"0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b\"}]}",
                 "Stores[1].Id", "listed twice");
    expect_error("{\"Hsm\":{\"Tokens\":[\"t1\"],\"RestartEvery\":-5}}", "Hsm.RestartEvery",
                 "0 (never)");
}

static void test_example_configuration_loads(void)
{
    error_list errors = {0};
    config *cfg = config_load_file(HSMENROLL_SOURCE_DIR "/examples/config.json", &errors);
    for (size_t i = 0; i < errors.count; i++)
        fprintf(stderr, "%s\n", errors.items[i].message);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL(cfg->hsm.token_count, 2);
    CU_ASSERT_EQUAL(cfg->pattern_count, 2);
    config_free(cfg);
    error_list_free(&errors);
    cfg = config_load_file("/nonexistent/config.json", &errors);
    CU_ASSERT_PTR_NULL(cfg);
    CU_ASSERT_EQUAL(errors.count, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(errors.items[0].message, "/nonexistent/config.json"));
    error_list_free(&errors);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_embedded_default_loads),
        TEST_CASE(test_embedded_default_legacy_home),
        TEST_CASE(test_ca_pin_on_key_token_refused),
        TEST_CASE(test_minimal_document_and_lookups),
        TEST_CASE(test_keys_are_case_insensitive_and_paths_relative),
        TEST_CASE(test_not_json_and_not_object),
        TEST_CASE(test_unknown_and_duplicate_keys),
        TEST_CASE(test_hsm_section),
        TEST_CASE(test_ca_and_template_entries),
        TEST_CASE(test_pattern_rules),
        TEST_CASE(test_pattern_policy_sections),
        TEST_CASE(test_metadata_roles_and_settings),
        TEST_CASE(test_every_error_is_reported),
        TEST_CASE(test_default_pattern_choice),
        TEST_CASE(test_settings),
        TEST_CASE(test_stores),
        TEST_CASE(test_example_configuration_loads),
        TEST_END,
    };
    return test_main("config", cases, NULL, NULL);
}
