/* One enrollment request: a line of the batch parsed into typed fields with the Keyfactor
 * vocabulary (matched case-insensitively), defaults applied, and everything that can be checked
 * without an HSM or a CA checked: the key spec, subject, SANs, format/storage combination. */
#ifndef HSMENROLL_BATCH_REQUEST_H
#define HSMENROLL_BATCH_REQUEST_H

#include <jansson.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stddef.h>

#include "formats/bundle.h"
#include "formats/error.h"
#include "jsonpath.h"

typedef enum request_operation { OP_PFX = 1, OP_CSR, OP_REENROLLMENT } request_operation;
typedef enum request_format { FORMAT_PFX = 1, FORMAT_PEM, FORMAT_DER } request_format;
typedef enum request_storage { STORAGE_EXPORT = 1, STORAGE_TOKEN } request_storage;
typedef enum key_algorithm {
    KEYALG_RSA = 1,
    KEYALG_ECC,
    KEYALG_ED25519,
    KEYALG_ED448
} key_algorithm;

typedef struct request_key {
    key_algorithm algorithm;
    int bits;      /* RSA 2048/3072/4096; ECC 256/384/521; Ed25519 255; Ed448 448 */
    int curve_nid; /* ECC: NID_X9_62_prime256v1, NID_secp384r1, NID_secp521r1; else NID_undef */
} request_key;

/* One entry of a PFX line's Stores: install the certificate and key there under alias. */
typedef struct request_store_target {
    char *store_id;
    char *alias; /* NULL: the request Id */
    bool overwrite;
} request_store_target;

#define REQUEST_STORES_MAX 16

typedef struct enroll_request {
    char *id;
    long line;
    request_operation operation;
    request_format format;
    request_storage storage;
    request_key key;
    X509_NAME *subject;    /* PFX: parsed from Subject; CSR: the CSR's subject */
    char *subject_text;    /* as given (PFX) */
    GENERAL_NAMES *sans;   /* the SANs to certify: PFX the line's; CSR the CSR's with the line's
                              merged in; policy may add the CN (RFC 2818). Never NULL. */
    X509_REQ *csr;         /* CSR: the request as given, signature checked */
    EVP_PKEY *private_key; /* CSR with PrivateKey: the key to retain in the HSM */
    bool force_enroll;
    unsigned char key_fingerprint[32]; /* CSR: SHA-256 of the public key (AllowKeyReuse) */
    char *template_name;
    long long pattern_id; /* -1 when absent */
    char *ca_name;
    bool include_chain;
    chain_order chain_order;
    bool include_subject_header;
    char *password; /* secret: wiped on free; NULL when the engine is to generate one */
    bool legacy_encryption;
    char *friendly_name;
    char *csp_name;
    json_t *metadata;          /* object, or NULL */
    json_t *additional_fields; /* object, or NULL */
    long long owner_role_id;   /* -1 when absent */
    char *owner_role_name;
    char *timestamp; /* ISO 8601 UTC, filled in when absent */
    /* Reenrollment (seed 003) */
    char *store_id;   /* KeystoreId: a GUID of the configuration's Stores */
    char *alias;      /* the key's and certificate's CKA_LABEL in the store's token */
    char *agent_guid; /* must be the store's AgentGuid */
    /* PFX v2 delivery into certificate stores (seed 001) */
    request_store_target *stores;
    size_t store_count;
    long long renewal_id;       /* RenewalCertificateId: a KeyfactorID, -1 when absent */
    bool install_into_existing; /* InstallIntoExistingCertificateStores (default true) */
} enroll_request;

#define REQUEST_ALIAS_MAX 128

/* Defaults for lines that name no template/pattern (run --template / --pattern), and the
 * application settings that bound what a line may ask. */
typedef struct request_defaults {
    const char *template_name;
    long long pattern_id;      /* -1: none */
    long long password_length; /* minimum */
} request_defaults;

/* Parses one line, reporting every problem it finds into errors (code, field, message; never a
 * secret). Returns the request, valid when no error was added, or NULL when the line is not a
 * JSON object at all. req->id is NULL when the line has no usable Id. */
enroll_request *request_parse(const char *text, size_t len, long line,
                              const request_defaults *defaults, error_list *errors);
void request_free(enroll_request *req);

const char *request_format_name(request_format f);
const char *request_storage_name(request_storage s);
const char *key_algorithm_name(key_algorithm a);
/* "RSA-2048", "ECC-P256", "Ed25519", ... */
const char *request_key_label(const request_key *key, char *buf, size_t size);

#endif
