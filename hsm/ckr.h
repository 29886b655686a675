/* Names of PKCS#11 return values, for error messages that say what failed and why. */
#ifndef HSMENROLL_HSM_CKR_H
#define HSMENROLL_HSM_CKR_H

#include <p11-kit/pkcs11.h>

/* "CKR_PIN_INCORRECT"; for an unknown value, "CKR_0x000000XX" in a static per-thread buffer. */
const char *ckr_name(CK_RV rv);

#endif
