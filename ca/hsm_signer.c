/* Signing callback over PKCS#11 keys (hash in process, C_Sign in the token) and public keys of
 * generated pairs. */
#include "ca/hsm_signer.h"

#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <string.h>

#include "formats/pubkey.h"

/* DER DigestInfo prefix for SHA-256 (RFC 8017 section 9.2 note 1). */
static const unsigned char sha256_digest_info[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                   0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                   0x01, 0x05, 0x00, 0x04, 0x20};

void hsm_error_to_enroll(const hsm_error *herr, hse_code code, enroll_error *err)
{
    enroll_error_set(err, code, NULL, "%s", herr->message);
}

void hsm_signer_init(signer *s, hsm_signer_ctx *ctx, hsm_session *session, CK_OBJECT_HANDLE key,
                     sig_alg alg)
{
    ctx->session = session;
    ctx->key = key;
    s->sign = hsm_signer_sign;
    s->ctx = ctx;
    s->alg = alg;
}

int hsm_signer_sign(void *ctx, sig_alg alg, const unsigned char *tbs, size_t tbs_len,
                    unsigned char *sig, size_t *sig_len, enroll_error *err)
{
    hsm_signer_ctx *c = ctx;
    unsigned char input[sizeof sha256_digest_info + EVP_MAX_MD_SIZE];
    const unsigned char *data = input;
    size_t data_len = 0;
    CK_MECHANISM_TYPE mechanism;
    const EVP_MD *md = sig_alg_digest(alg);

    switch (alg) {
    case SIG_RSA_PKCS1_SHA256: {
        unsigned int n = 0;
        memcpy(input, sha256_digest_info, sizeof sha256_digest_info);
        if (!EVP_Digest(tbs, tbs_len, input + sizeof sha256_digest_info, &n, md, NULL))
            goto digest_failed;
        data_len = sizeof sha256_digest_info + n;
        mechanism = CKM_RSA_PKCS;
        break;
    }
    case SIG_ECDSA_SHA256:
    case SIG_ECDSA_SHA384:
    case SIG_ECDSA_SHA512: {
        unsigned int n = 0;
        if (!EVP_Digest(tbs, tbs_len, input, &n, md, NULL))
            goto digest_failed;
        data_len = n;
        mechanism = CKM_ECDSA;
        break;
    }
    case SIG_ED25519:
    case SIG_ED448:
        data = tbs; /* pure EdDSA signs the message itself */
        data_len = tbs_len;
        mechanism = CKM_EDDSA;
        break;
    default:
        enroll_error_set(err, HSE_SIGN_FAILED, NULL, "unsupported signature algorithm");
        return -1;
    }

    hsm_error herr;
    if (mechanism != CKM_ECDSA)
        return hsm_sign(c->session, c->key, mechanism, data, data_len, sig, sig_len, &herr) == 0
                   ? 0
                   : (hsm_error_to_enroll(&herr, HSE_HSM_SIGN_FAILED, err), -1);
    unsigned char raw[160];
    size_t raw_len = sizeof raw;
    if (hsm_sign(c->session, c->key, mechanism, data, data_len, raw, &raw_len, &herr) != 0) {
        hsm_error_to_enroll(&herr, HSE_HSM_SIGN_FAILED, err);
        return -1;
    }
    if (ecdsa_raw_to_der(raw, raw_len, sig, sig_len) != 0) {
        enroll_error_set(err, HSE_HSM_SIGN_FAILED, NULL,
                         "the token returned an ECDSA signature of %zu bytes", raw_len);
        return -1;
    }
    return 0;

digest_failed:
    enroll_error_set(err, HSE_SIGN_FAILED, NULL, "digest failed");
    enroll_error_add_openssl(err);
    return -1;
}

EVP_PKEY *hsm_keypair_public(const hsm_keypair *pair, enroll_error *err)
{
    switch (pair->spec.type) {
    case HSM_KEY_RSA:
        return pubkey_from_rsa(pair->modulus, pair->modulus_len, pair->exponent, pair->exponent_len,
                               err);
    case HSM_KEY_EC: {
        int nid = pair->spec.curve == HSM_CURVE_P256   ? NID_X9_62_prime256v1
                  : pair->spec.curve == HSM_CURVE_P384 ? NID_secp384r1
                                                       : NID_secp521r1;
        return pubkey_from_ec_point(nid, pair->ec_point, pair->ec_point_len, err);
    }
    case HSM_KEY_ED25519:
        return pubkey_from_eddsa(NID_ED25519, pair->ec_point, pair->ec_point_len, err);
    case HSM_KEY_ED448:
        return pubkey_from_eddsa(NID_ED448, pair->ec_point, pair->ec_point_len, err);
    }
    enroll_error_set(err, HSE_INVALID_KEY, NULL, "unknown key type");
    return NULL;
}
