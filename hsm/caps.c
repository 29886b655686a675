/* What a token can do, asked of the module once at start: its mechanisms with their flags and key
 * sizes, the token's flags, PIN length range and session limits; and the checks the engine makes
 * against them before it generates a key (keygen of a key spec, wrap mechanisms). */
#include "hsm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckr.h"

int hsm_caps_probe(hsm_module *module, CK_SLOT_ID slot, hsm_caps *out, hsm_error *err)
{
    memset(out, 0, sizeof *out);
    out->slot = slot;
    CK_FUNCTION_LIST *f = hsm_module_functions(module);
    CK_TOKEN_INFO ti;
    CK_RV rv = f->C_GetTokenInfo(slot, &ti);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_GetTokenInfo", rv, "C_GetTokenInfo failed: %s", ckr_name(rv));
        return -1;
    }
    out->token_flags = ti.flags;
    out->min_pin = ti.ulMinPinLen;
    out->max_pin = ti.ulMaxPinLen;
    out->max_sessions = ti.ulMaxSessionCount;
    out->max_rw_sessions = ti.ulMaxRwSessionCount;
    CK_ULONG n = 0;
    rv = f->C_GetMechanismList(slot, NULL, &n);
    if (rv == CKR_OK && n > 0) {
        /* Room to spare: p11-kit's client module (0.24) counts the mechanisms it will pass on
         * but then copies the server's whole list, more than it counted. The size we give is
         * the room we have, and what it writes back is what we read. */
        n = n * 2 + 64;
        out->mechanisms = calloc(n, sizeof *out->mechanisms);
        out->infos = calloc(n, sizeof *out->infos);
        if (out->mechanisms == NULL || out->infos == NULL) {
            hsm_caps_free(out);
            hsm_error_set(err, "", CKR_HOST_MEMORY, "out of memory");
            return -1;
        }
        rv = f->C_GetMechanismList(slot, out->mechanisms, &n);
    }
    if (rv != CKR_OK) {
        hsm_caps_free(out);
        hsm_error_set(err, "C_GetMechanismList", rv, "C_GetMechanismList failed: %s", ckr_name(rv));
        return -1;
    }
    size_t kept = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        /* A mechanism the module lists but will not describe is not counted on. */
        if (f->C_GetMechanismInfo(slot, out->mechanisms[i], &out->infos[kept]) == CKR_OK)
            out->mechanisms[kept++] = out->mechanisms[i];
    }
    out->count = kept;
    return 0;
}

void hsm_caps_free(hsm_caps *caps)
{
    free(caps->mechanisms);
    free(caps->infos);
    caps->mechanisms = NULL;
    caps->infos = NULL;
    caps->count = 0;
}

const CK_MECHANISM_INFO *hsm_caps_mechanism(const hsm_caps *caps, CK_MECHANISM_TYPE mechanism)
{
    for (size_t i = 0; i < caps->count; i++)
        if (caps->mechanisms[i] == mechanism)
            return &caps->infos[i];
    return NULL;
}

bool hsm_caps_has(const hsm_caps *caps, CK_MECHANISM_TYPE mechanism, CK_FLAGS flags)
{
    const CK_MECHANISM_INFO *info = hsm_caps_mechanism(caps, mechanism);
    return info != NULL && (info->flags & flags) == flags;
}

/* Key sizes as the mechanism states them (0 = not stated); EC sizes are field bits. */
static bool size_fits(const CK_MECHANISM_INFO *info, CK_ULONG bits)
{
    if (info->ulMaxKeySize == 0 || info->ulMinKeySize > info->ulMaxKeySize)
        return true; /* a range the module does not really state */
    return bits >= info->ulMinKeySize && bits <= info->ulMaxKeySize;
}

bool hsm_caps_keygen(const hsm_caps *caps, const hsm_key_spec *spec, char *why, size_t why_size)
{
    CK_MECHANISM_TYPE mech;
    CK_ULONG bits = 0;
    const char *name;
    switch (spec->type) {
    case HSM_KEY_RSA:
        mech = CKM_RSA_PKCS_KEY_PAIR_GEN, bits = spec->rsa_bits, name = "RSA";
        break;
    case HSM_KEY_EC:
        mech = CKM_EC_KEY_PAIR_GEN, name = "ECC";
        bits = spec->curve == HSM_CURVE_P384 ? 384 : spec->curve == HSM_CURVE_P521 ? 521 : 256;
        break;
    case HSM_KEY_ED25519:
        mech = CKM_EC_EDWARDS_KEY_PAIR_GEN, name = "Ed25519";
        break;
    default:
        mech = CKM_EC_EDWARDS_KEY_PAIR_GEN, name = "Ed448";
        break;
    }
    const CK_MECHANISM_INFO *info = hsm_caps_mechanism(caps, mech);
    if (info == NULL || (info->flags & CKF_GENERATE_KEY_PAIR) == 0) {
        snprintf(why, why_size, "this module cannot generate %s keys (no %s)", name,
                 mech == CKM_RSA_PKCS_KEY_PAIR_GEN ? "CKM_RSA_PKCS_KEY_PAIR_GEN"
                 : mech == CKM_EC_KEY_PAIR_GEN     ? "CKM_EC_KEY_PAIR_GEN"
                                                   : "CKM_EC_EDWARDS_KEY_PAIR_GEN");
        return false;
    }
    /* EdDSA key sizes are stated inconsistently (bits of the field, of the key, or 0). */
    if (bits != 0 && !size_fits(info, bits)) {
        snprintf(why, why_size, "this module generates %s keys of %lu to %lu bits, not %lu", name,
                 (unsigned long)info->ulMinKeySize, (unsigned long)info->ulMaxKeySize,
                 (unsigned long)bits);
        return false;
    }
    return true;
}

size_t hsm_caps_pin_length(const hsm_caps *caps, size_t wanted)
{
    size_t n = wanted;
    if (caps->max_pin > 0 && caps->max_pin != CK_UNAVAILABLE_INFORMATION && n > caps->max_pin)
        n = caps->max_pin;
    if (caps->min_pin != CK_UNAVAILABLE_INFORMATION && n < caps->min_pin)
        n = caps->min_pin;
    return n;
}
