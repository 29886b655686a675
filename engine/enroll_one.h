/* One PFX enrollment outside a run (serve's POST /Enrollment/PFX): key pair generated in the HSM
 * as an export key, CSR signed there, the certificate from a caller-given issuer, and the PKCS#12
 * built with the same options as a run's PFX bundle. */
#ifndef HSMENROLL_ENGINE_ENROLL_ONE_H
#define HSMENROLL_ENGINE_ENROLL_ONE_H

#include "batch/request.h"
#include "engine/hsm_context.h"

/* Issues a certificate for csr: *cert (owned by the caller) and *chain (the issuer's chain,
 * borrowed; may be NULL). 0, or -1 with err. */
typedef int engine_issue_fn(void *arg, X509_REQ *csr, X509 **cert, STACK_OF(X509) * *chain,
                            enroll_error *err);

typedef struct engine_pfx {
    unsigned char *pfx; /* the PKCS#12 (DER), malloc'd */
    size_t pfx_len;
    char *password; /* the request's, or a generated one (secret: engine_pfx_free wipes it) */
    bool password_generated;
    X509 *cert; /* the issued certificate */
} engine_pfx;

/* Makes the PFX of req (a PFX request with KeyStorage export) on key token t of hsm, through
 * session s on that token: the key pair is a session object (sensitive and extractable, wrapped
 * under the context's wrapping key and unwrapped in process; or readable where the module will
 * not wrap the key type, as a run does), destroyed before the CSR leaves. password_length is
 * the minimum length of a generated password (at least 16), iterations the PKCS#12 ones.
 * 0, or -1 with err (HSM_CANNOT_GENERATE, HSM_CANNOT_EXPORT, HSM_KEYGEN_FAILED, ...). */
int engine_make_pfx(hsm_context *hsm, size_t t, hsm_session *s, const enroll_request *req,
                    long long password_length, int iterations, engine_issue_fn *issue,
                    void *issue_arg, engine_pfx *out, enroll_error *err);
void engine_pfx_free(engine_pfx *p);

/* Reenrolls req's Alias in store (a Reenrollment request; s is a session on the store's token,
 * token index t of hsm) as a run does: a new key pair in the token labelled with the alias, the
 * CSR for SubjectName signed there, the certificate from issue installed next to it, then every
 * other entry of the alias retired. Calls are serialized (one swap at a time). *cert (owned)
 * is the new certificate. 0, or -1 with err (STORE_ALIAS_UNKNOWN, STORE_INSTALL_FAILED, ...);
 * a key made for a certificate that was not installed is destroyed. */
int engine_reenroll(hsm_context *hsm, size_t t, hsm_session *s, const config_store *store,
                    const enroll_request *req, engine_issue_fn *issue, void *issue_arg, X509 **cert,
                    enroll_error *err);

#endif
