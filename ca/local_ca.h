/* The embedded CA: a root and an issuing CA whose keys are non-extractable keys in the HSM, their
 * certificates and state in a directory (root.pem, issuing.pem, chain.pem, ca.json, issued.ndjson).
 * Issues end-entity certificates from PKCS#10 requests after checking proof of possession. */
#ifndef HSMENROLL_CA_LOCAL_CA_H
#define HSMENROLL_CA_LOCAL_CA_H

#include <jansson.h>
#include <openssl/x509.h>
#include <stdbool.h>

#include <openssl/x509v3.h>

#include "formats/error.h"
#include "hsm/hsm.h"
#include "ca/hsm_signer.h"

typedef struct local_ca_options {
    hsm_key_spec root_key;    /* default ECC P-384 */
    hsm_key_spec issuing_key; /* default ECC P-256: cheap signatures for bulk issuance */
    int root_days;            /* default 7300 */
    int issuing_days;         /* default 3650 */
    const char *name;         /* CN stem, default "hsmenroll" */
} local_ca_options;

void local_ca_default_options(local_ca_options *opt);

/* Which keys a CA gets, checked against what session's token can generate (its capabilities,
 * probed once here) before any key is made. explicit_keys: the caller chose them (--key-type,
 * --root-key, --issuing-key) and they are only checked; otherwise a module without the default
 * ECC keys gets RSA-3072 (root) and RSA-2048 (issuing), and *chosen_rsa says so. Code
 * HSM_CANNOT_GENERATE with the module's reason and the choices that remain. 0 or -1. */
int local_ca_fit_keys(local_ca_options *opt, hsm_session *session, bool explicit_keys,
                      bool *chosen_rsa, enroll_error *err);
/* "ECC-P384", "RSA-3072", ...: the spelling --root-key takes. */
const char *local_ca_key_name(const hsm_key_spec *spec, char *buf, size_t size);

/* An open CA (opaque): its certificates, the handle of its issuing key, its issuance log. */
typedef struct local_ca local_ca;

/* True when home holds a CA (ca.json). */
bool local_ca_exists(const char *home);

/* Creates a new CA in home: key pairs generated in the token of `session` (persistent,
 * sensitive, non-extractable), a self-signed root and an issuing CA signed by it. Fails with
 * CA_EXISTS when home already holds one. */
int local_ca_create(const char *home, hsm_session *session, const local_ca_options *opt,
                    enroll_error *err);

/* Loads the CA of home; finds its issuing key in session's token once (by CKA_ID); opens its
 * issuance log for appending. NULL and err on failure. */
local_ca *local_ca_open(const char *home, hsm_session *session, enroll_error *err);
/* Flushes the issuance log and frees. NULL is a no-op. */
void local_ca_close(local_ca *ca);
/* The certificate the CA of home issued as KeyfactorID keyfactor_id (from its issuance log), or
 * NULL. One pass over the log. */
X509 *local_ca_log_find(const char *home, long long keyfactor_id);
/* Calls fn for each issuance of the CA of home that a `serve` caller asked for: its Caller,
 * CsrSha256 and KeyfactorID. 0, or -1 when the log cannot be read. */
int local_ca_log_callers(const char *home,
                         void (*fn)(void *ctx, const char *caller, const char *csr_sha256,
                                    long long keyfactor_id),
                         void *ctx);
/* Finds the issuing key in session's token again (by CKA_ID): after a module restart. */
int local_ca_find_key(local_ca *ca, hsm_session *session, enroll_error *err);

/* What an open CA is, borrowed from it (valid until local_ca_close). */
STACK_OF(X509) * local_ca_chain(const local_ca *ca); /* issuing CA, then root */
X509 *local_ca_root(const local_ca *ca);
X509 *local_ca_issuing(const local_ca *ca);
const char *local_ca_home(const local_ca *ca);
const char *local_ca_token_label(const local_ca *ca);
const char *local_ca_root_key_uri(const local_ca *ca);    /* RFC 7512, or NULL */
const char *local_ca_issuing_key_uri(const local_ca *ca); /* RFC 7512, or NULL */
/* The number of certificates issued (KeyfactorIDs taken), as of the open or this process's last
 * issuance. */
long long local_ca_issued_count(const local_ca *ca);

/* The CA of home as `ca show` tells it, read from its files (no token needed): {Name, Home,
 * Token, Root, IssuingCA (Subject, SerialNumber, NotBefore, NotAfter, SHA256Fingerprint, KeyType,
 * KeyBits), RootKeyUri, IssuingKeyUri, ChainFile, Issued}; name is the configuration's name of it.
 * NULL when its files cannot be read. */
json_t *local_ca_describe(const char *home, const char *name);

typedef struct local_ca_issue {
    int validity_days;
    const char *request_id;    /* the batch Id, for the issuance log */
    const GENERAL_NAMES *sans; /* the subjectAltName to certify; NULL: the request's own */
    const char *run_id;   /* the journaled run asking, or NULL: then (run_id, request_id) is issued
                             once, and asked again gives the same certificate back */
    bool resumed;         /* that run continues an interrupted one (else its id is new) */
    const char *crl_url;  /* a CRL distribution point for the certificate, or NULL */
    const char *ocsp_url; /* an OCSP access location (authorityInfoAccess), or NULL */
    const char *caller; /* `serve`: the user asking, logged with csr_sha256 (idempotent replay) */
    const char *csr_sha256; /* `serve`: the SHA-256 of the CSR's DER, 64 hex digits */
} local_ca_issue;

typedef struct local_ca_issued {
    X509 *cert;
    long long keyfactor_id;
} local_ca_issued;

/* Checks the request's signature, builds and signs (in the HSM, through session, which must be
 * on the CA's token) a certificate: random 128-bit serial, subject and subjectAltName from the
 * request (or params->sans), key usage for the key type, EKU serverAuth + clientAuth, SKI/AKI.
 * The issuance log line records the key's SHA-256 fingerprint (for AllowKeyReuse). Thread-safe. */
int local_ca_issue_cert(local_ca *ca, hsm_session *session, X509_REQ *csr,
                        const local_ca_issue *params, local_ca_issued *out, enroll_error *err);

/* A signer over the CA's issuing key through session (on the CA's token): for its CRLs and
 * OCSP answers (ca/crl.h, ca/ocsp.h). ctx must live as long as s is used. */
void local_ca_signer(local_ca *ca, hsm_session *session, signer *s, hsm_signer_ctx *ctx);

#endif
