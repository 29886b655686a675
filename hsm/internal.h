/* Helpers shared by the files of hsm/ and not part of its public interface. */
#ifndef HSMENROLL_HSM_INTERNAL_H
#define HSMENROLL_HSM_INTERNAL_H

#include "hsm.h"

/* DER CKA_EC_PARAMS (the curve OID) for an EC or EdDSA key spec; NULL for RSA. */
const unsigned char *hsm_curve_params(const hsm_key_spec *spec, size_t *len);
/* Reads the public part of pair->public_key into pair (modulus/exponent or EC point). */
int hsm_read_public_parts(hsm_session *session, hsm_keypair *pair, hsm_error *err);

/* Around a call that writes token objects (C_GenerateKeyPair or C_CreateObject of token
 * objects, C_DestroyObject): one at a time where the module has HSM_QUIRK_SERIAL_TOKEN_WRITES,
 * nothing elsewhere. The quirks must not change while calls are in flight. */
void hsm_token_write_begin(const hsm_session *session);
void hsm_token_write_end(const hsm_session *session);

#endif
