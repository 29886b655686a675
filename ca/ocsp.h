/* The embedded CA's OCSP responder (RFC 6960): reads a DER OCSPRequest, answers each CertID of
 * the CA with good, revoked (time and reason) or unknown, and signs the BasicOCSPResponse in the
 * HSM with the issuing CA's own key (responder ID by key hash, no delegated responder). Also the
 * index of the serials a CA issued, read from its issuance log as it grows. */
#ifndef HSMENROLL_CA_OCSP_H
#define HSMENROLL_CA_OCSP_H

#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <stdbool.h>

#include "ca/revocation.h"
#include "formats/sign.h"

/* What a CA knows of one of its serials (normalized hex): V_OCSP_CERTSTATUS_GOOD,
 * V_OCSP_CERTSTATUS_REVOKED (and *entry filled) or V_OCSP_CERTSTATUS_UNKNOWN. */
typedef int (*ocsp_lookup)(void *ctx, const char *serial, revocation_entry *entry);

typedef struct ocsp_ca {
    X509 *issuer; /* the issuing CA's certificate */
    signer sign;  /* over its key */
    ocsp_lookup lookup;
    void *lookup_ctx;
} ocsp_ca;

/* True when the DER request's first CertID names ca's issuer (name and key hash). */
bool ocsp_request_for(const unsigned char *req, size_t req_len, X509 *issuer);

/* The DER OCSPResponse to the DER request req: successful and signed by ca (CertIDs of another
 * issuer are unknown; a nonce is echoed; thisUpdate now, nextUpdate valid_seconds later), or an
 * unsigned malformedRequest / internalError. NULL only when memory runs out. malloc'd. */
unsigned char *ocsp_answer(const unsigned char *req, size_t req_len, const ocsp_ca *ca,
                           long valid_seconds, size_t *out_len);

/* The serials a CA issued (issued.ndjson of its home), read again from where it was last read
 * at each question. Thread-safe. */
typedef struct issued_serials issued_serials;
issued_serials *issued_serials_open(const char *home);
void issued_serials_close(issued_serials *set);
bool issued_serials_contains(issued_serials *set, const char *serial);

#endif
