/* CRLs of the embedded CA (RFC 5280 section 5): version 2, signed in the HSM by the issuing CA,
 * with the CA's key identifier, a CRL number kept in the CA's home (crlnumber, one more for each
 * CRL made) and each revoked serial with its date and reason. */
#ifndef HSMENROLL_CA_CRL_H
#define HSMENROLL_CA_CRL_H

#include <openssl/x509.h>
#include <time.h>

#include "ca/revocation.h"
#include "formats/error.h"
#include "formats/sign.h"

/* Builds and signs (through s, the issuing CA's key) a CRL of issuer over entries. NULL with err
 * (CA_SIGN_FAILED). The signature is checked with issuer's public key before it is returned. */
X509_CRL *crl_build(X509 *issuer, const signer *s, const revocation_entry *entries, size_t count,
                    long long number, time_t this_update, time_t next_update, enroll_error *err);

/* The next CRL number of the CA in home (HOME/crlnumber, locked, read, incremented, synced):
 * 1 for the first CRL. -1 with err. */
long long crl_next_number(const char *home, enroll_error *err);

/* A CRL of everything list holds now, valid for valid_seconds: crl_next_number, then crl_build. */
X509_CRL *crl_make(const char *home, X509 *issuer, const signer *s, revocation_list *list,
                   long valid_seconds, enroll_error *err);

#endif
