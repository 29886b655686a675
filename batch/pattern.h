/* Enrollment-pattern policy, compiled once from the configuration (seed 002): subject Regexes
 * and Defaults, Policies (KeyInfo, AllowWildcards, RFCEnforcement, AllowKeyReuse, certificate
 * owner role), MetadataFields (the global fields with the pattern's overrides), EnrollmentFields
 * and AssociatedRoles. Every problem in the configuration is reported with its JSON path. */
#ifndef HSMENROLL_BATCH_PATTERN_H
#define HSMENROLL_BATCH_PATTERN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "jsonpath.h"
#include "regex.h"

/* Metadata DataType values (Keyfactor numbers them 1 to 8). */
typedef enum metadata_type {
    METADATA_STRING = 1,
    METADATA_INTEGER = 2,
    METADATA_DATE = 3,
    METADATA_BOOLEAN = 4,
    METADATA_MULTIPLE_CHOICE = 5,
    METADATA_BIG_TEXT = 6,
    METADATA_EMAIL = 7,
    METADATA_OTHER = 8, /* checked as a string */
} metadata_type;

/* Enrollment: 0 optional, 1 required, 2 hidden (the requester may not set it). */
typedef enum field_enrollment {
    FIELD_OPTIONAL = 0,
    FIELD_REQUIRED = 1,
    FIELD_HIDDEN = 2,
} field_enrollment;

typedef struct metadata_rule {
    long long id;
    const char *name;
    metadata_type type;
    field_enrollment enrollment;
    const char *default_value; /* or NULL */
    regex *validation;         /* string types only; or NULL */
    const char *message;       /* shown when validation fails; or NULL */
    char **options;            /* multiple choice */
    size_t option_count;
    bool case_sensitive; /* for validation and options; default true */
} metadata_rule;

typedef struct subject_regex {
    int nid;
    const char *part; /* as configured: "O", "CN", ... */
    regex *re;
    const char *error; /* the pattern's Error text, or NULL */
} subject_regex;

typedef struct subject_default {
    int nid;
    const char *part;
    const char *value;
} subject_default;

typedef struct key_policy {
    bool restricted; /* Policies.KeyInfo given: only the algorithms it lists are allowed */
    bool rsa, ecc, ed25519, ed448;
    int rsa_bits[8], ecc_bits[8], curves[8]; /* empty lists: any size or curve the engine has */
    size_t rsa_bits_count, ecc_bits_count, curve_count;
} key_policy;

typedef enum owner_rule { OWNER_OPTIONAL = 0, OWNER_REQUIRED = 1, OWNER_HIDDEN = 2 } owner_rule;

typedef struct enrollment_field_rule {
    const char *name;
    int data_type; /* 1 string, 2 multiple choice */
    char **options;
    size_t option_count;
} enrollment_field_rule;

typedef struct pattern_policy {
    subject_regex *regexes;
    size_t regex_count;
    subject_default *defaults;
    size_t default_count;
    key_policy keys;
    bool allow_key_reuse; /* default false */
    bool allow_wildcards; /* default true */
    bool rfc_enforcement; /* default false */
    owner_rule owner;
    long long default_owner_id; /* -1 when none */
    const char *default_owner_name;
    metadata_rule *metadata; /* the effective fields: global ones, overridden by the pattern */
    size_t metadata_count;
    enrollment_field_rule *fields;
    size_t field_count;
    const char **roles;
    size_t role_count;
} pattern_policy;

/* Loads the global MetadataFields array (NULL: none). *out is an array of *count rules. */
int metadata_fields_load(const json_t *fields, metadata_rule **out, size_t *count,
                         error_list *errors);
void metadata_rules_free(metadata_rule *rules, size_t count);

/* Compiles the policy parts of one EnrollmentPatterns entry at path. Strings point into
 * pattern (the configuration document owns them). 0, or -1 with errors added. */
int pattern_policy_load(pattern_policy *out, const json_t *pattern, const char *path,
                        const metadata_rule *global, size_t global_count, error_list *errors);
void pattern_policy_free(pattern_policy *policy);

/* Checks one metadata value against its rule: type, validation regex, options. NULL when it is
 * valid, else the reason (static text or the rule's Message). */
const char *metadata_value_problem(const metadata_rule *rule, const char *value);

/* True when value is one of options (case-insensitively unless case_sensitive). */
bool option_listed(char *const *options, size_t count, const char *value, bool case_sensitive);

#endif
