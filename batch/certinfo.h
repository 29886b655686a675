/* A certificate described the way Keyfactor's CertificateInformation does: SerialNumber and
 * Thumbprint (SHA-1) in upper-case hex, IssuerDN and SubjectDN, NotBefore and NotAfter (ISO 8601
 * UTC). Shared by the result lines of `run` and the answers of `serve`. */
#ifndef HSMENROLL_BATCH_CERTINFO_H
#define HSMENROLL_BATCH_CERTINFO_H

#include <jansson.h>
#include <openssl/x509.h>

/* A new object with those six members (NULL on allocation failure). */
json_t *certinfo_describe(X509 *cert);

#endif
