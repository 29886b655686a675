/* Revoking at network CAs: a handle per CA entry (its endpoint, credentials and TLS read as the
 * connectors read them) that sends one revocation at a time and waits for the CA's answer.
 * Keyfactor Command's POST {Url}/Certificates/Revoke; CFSSL's POST {Url}/api/v1/cfssl/revoke. */
#ifndef HSMENROLL_CA_REVOKE_NET_H
#define HSMENROLL_CA_REVOKE_NET_H

#include <time.h>

#include "batch/config.h"
#include "formats/error.h"

typedef struct net_revoker net_revoker;

/* Opens a revoker for ca (an entry of cfg of type keyfactor or cfssl). NULL with err
 * (CA_UNAVAILABLE when the entry's endpoint or credentials cannot be read, CA_REVOKE_FAILED for
 * another CA type). */
net_revoker *net_revoker_open(const config *cfg, const config_ca *ca, enroll_error *err);
/* Waits for nothing in flight (there is none between calls) and frees the handle. */
void net_revoker_close(net_revoker *r);

/* Revokes the certificate with keyfactor_id at the CA, as of effective, with reason (RFC 5280
 * number) and comment. 0 when the CA answers that it revoked it (or had revoked it); -1 with err:
 * the CA's refusal (its code when it names one of ours, else CA_REVOKE_FAILED), or the transport
 * error of the last attempt (CA_UNAVAILABLE, CA_AUTH, ...). */
int net_revoker_keyfactor(net_revoker *r, long long keyfactor_id, int reason, time_t effective,
                          const char *comment, enroll_error *err);

/* Revokes the certificate with serial_hex (hex, as the results write it) issued by issuer_dn (the
 * results' IssuerDN, or NULL) at a CFSSL CA: {"serial": decimal, "authority_key_id": the issuer's
 * Subject Key Identifier in lower-case hex (from the entry's ChainFile, else CFSSL's
 * /api/v1/cfssl/info), "reason": the RFC 5280 name}. When CFSSL has no such certificate it is
 * asked once more with an empty authority key id, which CFSSL builds that lost it record. 0 when
 * CFSSL answers success (revoking again succeeds too); -1 with err: REVOKE_NOT_FOUND when CFSSL
 * has no such certificate, CA_REVOKE_FAILED with CFSSL's code and message for its other
 * refusals (and when it offers no revoke endpoint), or the transport error (CA_UNAVAILABLE, ...).
 */
int net_revoker_cfssl(net_revoker *r, const char *serial_hex, const char *issuer_dn, int reason,
                      enroll_error *err);

#endif
