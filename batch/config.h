/* The engine's configuration document (SPEC section 5): Hsm, CertificateAuthorities, Templates,
 * MetadataFields, EnrollmentPatterns, Stores, Settings. Loaded once, validated with the rules of
 * the Keyfactor pages, every error reported with its JSON path. The embedded default is the same
 * document, built in code and loaded through the same validator. */
#ifndef HSMENROLL_BATCH_CONFIG_H
#define HSMENROLL_BATCH_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "jsonpath.h"
#include "pattern.h"
#include "regex.h"

typedef enum ca_type { CA_TYPE_LOCAL = 1, CA_TYPE_KEYFACTOR, CA_TYPE_CFSSL } ca_type;

typedef struct config_ca {
    long long id;
    const char *name;    /* "host\\logical" or "logical" */
    const char *logical; /* the part after the last backslash (the whole name if none) */
    ca_type type;
    const char *url;      /* keyfactor, cfssl */
    const char *home;     /* local: directory of the CA's certificates and state */
    const char *token;    /* local: label of the token holding the CA keys */
    const char *crl_url;  /* local: CrlUrl, the CRL distribution point of issued certificates */
    const char *ocsp_url; /* local: OcspUrl, the OCSP access location of issued certificates */
    long long crl_days;   /* local: CrlDays, a CRL's and an OCSP answer's validity (default 7) */
    const char *pin_env;  /* local: PinEnv, the CA token's own user PIN; NULL: Hsm's */
    const char *pin_file; /* local: PinFile (used when the variable is unset); NULL: Hsm's */
    const json_t *raw;    /* the whole entry, for connector-specific keys */
} config_ca;

typedef struct config_template {
    long long id;
    const char *name;
    long long *ca_ids;
    size_t ca_count;
    long long validity_days; /* default 365 */
    bool key_retention;      /* CSR enrollments may hand their private key to the engine */
} config_template;

typedef struct config_pattern {
    long long id;
    const char *name;
    long long template_id;
    const config_template *template_;
    bool template_default; /* explicit or implied (the first pattern of a template without one) */
    bool restrict_cas;
    long long *ca_ids;
    size_t ca_count;
    long long allowed_enrollment_types; /* bits: 1 PFX, 2 CSR, 4 CSR generation; default 7 */
    bool use_ad_permissions;
    pattern_policy policy; /* Regexes, Defaults, Policies, MetadataFields, EnrollmentFields */
    const json_t *raw;     /* the whole entry */
} config_pattern;

/* A security role (top-level "Roles", optional): when listed, owner roles must be among them. */
typedef struct config_role {
    long long id;
    const char *name;
} config_role;

typedef struct config_hsm {
    const char *module;  /* PKCS#11 module path; NULL: the default SoftHSM2 module */
    const char **tokens; /* labels of the tokens keys are spread over (at least one) */
    size_t token_count;
    const char *eddsa_token; /* EdDSAToken: where Ed25519/Ed448 `token` keys go (libp11 0.4.12
                                cannot list a token holding one); NULL: Hsm.Tokens */
    const char *pin_env;     /* environment variable holding the user PIN (default HSMENROLL_PIN) */
    const char *pin_file;    /* file holding the user PIN (used when the variable is unset) */
    const char *so_pin_env, *so_pin_file; /* for `token init` */
    long long restart_every; /* restart the module after this many session (export) key pairs:
                                0 never, -1 the default (20,000 where the module keeps destroyed
                                objects, never elsewhere) */
    const char *init_args;   /* C_Initialize's pReserved (NSS: "configdir='sql:...' ..."); NULL */
    const char *profile;     /* "auto" (default: quirks seen from behaviour), "softhsm",
                                "standard" */
    long long max_sessions;  /* sessions the run may open per token; 0: as the token states */
    long long concurrency;   /* HSM operations in flight (threads with their own sessions);
                                -1: the default (HSM_CONCURRENCY_DEFAULT, bounded by the token) */
} config_hsm;

typedef struct config_settings {
    long long password_length; /* minimum PFX/PEM password length; default 12 */
    bool require_custom_friendly_name;
    const char *common_name_regex; /* default ".+" */
    regex *common_name;            /* compiled */
    long long pkcs12_iterations;   /* PBKDF2 / MAC iterations; default 2048 */
    bool allow_csps;               /* MicrosoftTargetCSP may be given (default true) */
    char **csps;                   /* when not empty, the CSP names allowed */
    size_t csp_count;
} config_settings;

/* A certificate store: a PKCS#11 token holding keys and certificates under aliases (CKA_LABEL),
 * named by a GUID (KeystoreId, StoreId) and served by this engine as orchestrator AgentGuid. */
typedef struct config_store {
    const char *id;
    const char *token;
    const char *agent_guid;
    const char *name; /* optional, for people */
} config_store;

typedef struct config {
    json_t *doc;     /* owns every string above */
    char *base_dir;  /* relative paths are taken from here (the config file's directory) */
    char *state_dir; /* the hsmenroll home: a local CA without Home lives in its cas/<name> */
    char *source;    /* the file, or "(embedded default)" */
    config_hsm hsm;
    config_ca *cas;
    size_t ca_count;
    config_template *templates;
    size_t template_count;
    config_pattern *patterns;
    size_t pattern_count;
    metadata_rule *metadata_fields; /* the global MetadataFields */
    size_t metadata_field_count;
    config_role *roles;
    size_t role_count;
    config_settings settings;
    config_store *stores;
    size_t store_count;
    char **owned_paths; /* resolved paths, freed with the config */
    size_t owned_path_count;
} config;

/* Loads and validates a configuration file. On any error returns NULL and fills errors with
 * every problem found (code CONFIG_*, field = JSON path). */
config *config_load_file(const char *path, error_list *errors);
/* The same with the hsmenroll home (NULL: none): a local CA without "Home" gets
 * <home>/cas/<its logical name>, so that no state is written beside the configuration. */
config *config_load_file_in(const char *path, const char *home, error_list *errors);
/* Validates an already parsed document (takes a reference of doc). base_dir resolves relative
 * paths; source names it in messages. */
config *config_load_json(json_t *doc, const char *base_dir, const char *source, error_list *errors);
/* Where the user PIN of the token labelled label comes from: the PinEnv/PinFile of a local CA on
 * that token that has its own, else Hsm's. */
void config_token_pin(const config *cfg, const char *label, const char **env, const char **file);

/* The embedded default document for an engine home directory (see SPEC section 5): keys in token
 * "hsmenroll-keys", the CA in "hsmenroll-ca" under a PIN of its own (HSMENROLL_CA_PIN or
 * HOME/ca-pin). A home made before that (legacy) keeps "hsmenroll" and one PIN for both. */
json_t *config_default_document(const char *home, bool legacy);
void config_free(config *cfg);

const config_ca *config_find_ca_by_id(const config *cfg, long long id);
/* The store with this GUID (case-insensitive), or NULL. */
const config_store *config_find_store(const config *cfg, const char *id);
/* True for a GUID written 8-4-4-4-12 in hexadecimal digits. */
bool config_is_guid(const char *s);
/* By full name ("host\\logical") or by logical name, case-insensitively. */
const config_ca *config_find_ca_by_name(const config *cfg, const char *name);
/* What to tell about a template name or pattern Id the configuration does not have: into buf,
 * "did you mean \"X\"? " when one is close, then the known ones ("templates: A, B" / "patterns:
 * 1 (Default), 2 (Web)"). */
void config_template_hint(const config *cfg, const char *name, char *buf, size_t size);
void config_pattern_hint(const config *cfg, char *buf, size_t size);

const config_template *config_find_template_by_name(const config *cfg, const char *name);
const config_pattern *config_find_pattern(const config *cfg, long long id);
const config_pattern *config_default_pattern(const config *cfg, const config_template *tmpl);
/* The role with this Id / name (case-insensitive), or NULL; with no Roles configured, NULL. */
const config_role *config_find_role_by_id(const config *cfg, long long id);
const config_role *config_find_role_by_name(const config *cfg, const char *name);

#endif
