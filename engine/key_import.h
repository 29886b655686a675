/* Retaining a CSR enrollment's private key in the HSM: the key's parts taken out of OpenSSL and
 * created as token objects, then wiped from memory. */
#ifndef HSMENROLL_ENGINE_KEY_IMPORT_H
#define HSMENROLL_ENGINE_KEY_IMPORT_H

#include <openssl/evp.h>

#include "formats/error.h"
#include "hsm/hsm.h"

/* Imports key into session's token (label = the request Id); code HSM_IMPORT_FAILED. */
int key_import(hsm_session *session, EVP_PKEY *key, const char *label, hsm_keypair *out,
               enroll_error *err);

#endif
