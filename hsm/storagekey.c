/* The token's persistent storage key and sealing through it: what the engine keeps outside the
 * HSM across a crash (the journal's copy of a run's wrapping key) is encrypted by a key that
 * never leaves the token. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ckr.h"
#include "hsm.h"
#include "internal.h"

int hsm_storage_key(hsm_session *session, const char *label, CK_OBJECT_HANDLE *out, hsm_error *err)
{
    if (session == NULL || label == NULL || out == NULL) {
        hsm_error_set(err, "", CKR_ARGUMENTS_BAD, "hsm_storage_key: missing argument");
        return -1;
    }
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof cls},
                           {CKA_LABEL, (void *)label, strlen(label)}};
    CK_RV rv = session->f->C_FindObjectsInit(session->handle, find, 2);
    CK_ULONG found = 0;
    if (rv == CKR_OK) {
        rv = session->f->C_FindObjects(session->handle, out, 1, &found);
        session->f->C_FindObjectsFinal(session->handle);
    }
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_FindObjects", rv, "C_FindObjects failed: %s", ckr_name(rv));
        return -1;
    }
    if (found == 1)
        return 0;
    CK_KEY_TYPE type = CKK_AES;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_TOKEN, &yes, sizeof yes},     {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_ENCRYPT, &yes, sizeof yes},   {CKA_DECRYPT, &yes, sizeof yes},
        {CKA_WRAP, &no, sizeof no},        {CKA_UNWRAP, &no, sizeof no},
        {CKA_VALUE_LEN, &len, sizeof len}, {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    hsm_token_write_begin(session);
    rv = session->f->C_GenerateKey(session->handle, &mech, tmpl, sizeof tmpl / sizeof tmpl[0], out);
    hsm_token_write_end(session);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_GenerateKey", rv, "C_GenerateKey failed for the storage key: %s",
                      ckr_name(rv));
        return -1;
    }
    return 0;
}

typedef CK_RV (*crypt_init_fn)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
typedef CK_RV (*crypt_fn)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);

static int aes_cbc(hsm_session *session, CK_OBJECT_HANDLE key, bool encrypt, unsigned char iv[16],
                   const unsigned char *in, size_t in_len, unsigned char *out, size_t *out_len,
                   hsm_error *err)
{
    CK_MECHANISM mech = {CKM_AES_CBC_PAD, iv, 16};
    crypt_init_fn init = encrypt ? session->f->C_EncryptInit : session->f->C_DecryptInit;
    crypt_fn run = encrypt ? session->f->C_Encrypt : session->f->C_Decrypt;
    const char *name = encrypt ? "C_Encrypt" : "C_Decrypt";
    CK_RV rv = init(session->handle, &mech, key);
    CK_ULONG len = (CK_ULONG)*out_len;
    if (rv == CKR_OK)
        rv = run(session->handle, (CK_BYTE_PTR)in, (CK_ULONG)in_len, out, &len);
    if (rv != CKR_OK) {
        hsm_error_set(err, name, rv, "%s failed: %s", name, ckr_name(rv));
        return -1;
    }
    *out_len = len;
    return 0;
}

int hsm_aes_encrypt(hsm_session *session, CK_OBJECT_HANDLE key, const unsigned char *in,
                    size_t in_len, unsigned char **out, size_t *out_len, hsm_error *err)
{
    size_t cap = 16 + in_len + 16;
    unsigned char *buf = malloc(cap);
    if (buf == NULL || getrandom(buf, 16, 0) != 16) {
        free(buf);
        hsm_error_set(err, "", CKR_HOST_MEMORY, "no memory or randomness for the IV");
        return -1;
    }
    unsigned char iv[16];
    memcpy(iv, buf, 16);
    size_t len = cap - 16;
    if (aes_cbc(session, key, true, iv, in, in_len, buf + 16, &len, err) != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = 16 + len;
    return 0;
}

int hsm_aes_decrypt(hsm_session *session, CK_OBJECT_HANDLE key, const unsigned char *in,
                    size_t in_len, unsigned char **out, size_t *out_len, hsm_error *err)
{
    if (in_len < 32 || in_len % 16 != 0) {
        hsm_error_set(err, "C_Decrypt", CKR_ENCRYPTED_DATA_LEN_RANGE,
                      "the encrypted data is not IV + AES-CBC blocks");
        return -1;
    }
    unsigned char iv[16];
    memcpy(iv, in, 16);
    size_t len = in_len - 16;
    unsigned char *buf = malloc(len);
    if (buf == NULL) {
        hsm_error_set(err, "", CKR_HOST_MEMORY, "out of memory");
        return -1;
    }
    if (aes_cbc(session, key, false, iv, in + 16, in_len - 16, buf, &len, err) != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* ---- sealing: what the journal keeps of a secret, by the first scheme the token can do ---- */

const char *hsm_seal_name(hsm_seal_scheme scheme)
{
    switch (scheme) {
    case HSM_SEAL_AES_CBC_PAD:
        return "AES-CBC-PAD";
    case HSM_SEAL_AES_GCM:
        return "AES-GCM";
    case HSM_SEAL_RSA_OAEP_SHA256:
        return "RSA-OAEP-SHA256";
    case HSM_SEAL_RSA_OAEP_SHA1:
        return "RSA-OAEP-SHA1";
    default:
        return "none";
    }
}

hsm_seal_scheme hsm_seal_from_name(const char *name)
{
    for (int s = HSM_SEAL_AES_CBC_PAD; s <= HSM_SEAL_RSA_OAEP_SHA1; s++)
        if (name != NULL && strcmp(name, hsm_seal_name((hsm_seal_scheme)s)) == 0)
            return (hsm_seal_scheme)s;
    return HSM_SEAL_NONE;
}

/* The token's RSA key pair labelled label: the private key (decrypt only, never extractable)
 * and the public key of the same CKA_ID; made (RSA-2048) when there is no private key. */
static int storage_rsa(hsm_session *s, const char *label, CK_OBJECT_HANDLE *priv,
                       CK_OBJECT_HANDLE *pub, hsm_error *err)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE type = CKK_RSA;
    CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof cls},
                           {CKA_KEY_TYPE, &type, sizeof type},
                           {CKA_LABEL, (void *)label, strlen(label)}};
    CK_ULONG found = 0;
    CK_RV rv = s->f->C_FindObjectsInit(s->handle, find, 3);
    if (rv == CKR_OK) {
        rv = s->f->C_FindObjects(s->handle, priv, 1, &found);
        s->f->C_FindObjectsFinal(s->handle);
    }
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_FindObjects", rv, "C_FindObjects failed: %s", ckr_name(rv));
        return -1;
    }
    unsigned char id[16];
    if (found == 1) {
        CK_ATTRIBUTE a = {CKA_ID, id, sizeof id};
        rv = s->f->C_GetAttributeValue(s->handle, *priv, &a, 1);
        if (rv != CKR_OK || a.ulValueLen != sizeof id) {
            hsm_error_set(err, "C_GetAttributeValue", rv,
                          "the storage key pair \"%s\" has no CKA_ID of this engine", label);
            return -1;
        }
        cls = CKO_PUBLIC_KEY;
        CK_ATTRIBUTE pf[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, id, sizeof id}};
        found = 0;
        rv = s->f->C_FindObjectsInit(s->handle, pf, 2);
        if (rv == CKR_OK) {
            rv = s->f->C_FindObjects(s->handle, pub, 1, &found);
            s->f->C_FindObjectsFinal(s->handle);
        }
        if (rv != CKR_OK || found != 1) {
            hsm_error_set(err, "C_FindObjects", rv == CKR_OK ? CKR_KEY_HANDLE_INVALID : rv,
                          "the storage key pair \"%s\" has no public key", label);
            return -1;
        }
        return 0;
    }
    if (getrandom(id, sizeof id, 0) != sizeof id) {
        hsm_error_set(err, "", CKR_FUNCTION_FAILED, "no randomness for a key id");
        return -1;
    }
    CK_ULONG bits = 2048;
    CK_BYTE e[] = {1, 0, 1};
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE pubt[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_ENCRYPT, &yes, sizeof yes},
        {CKA_MODULUS_BITS, &bits, sizeof bits},
        {CKA_PUBLIC_EXPONENT, e, sizeof e},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_ID, id, sizeof id},
    };
    CK_ATTRIBUTE privt[] = {
        {CKA_TOKEN, &yes, sizeof yes},     {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_DECRYPT, &yes, sizeof yes},   {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_ID, id, sizeof id},
    };
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    hsm_token_write_begin(s);
    rv = s->f->C_GenerateKeyPair(s->handle, &mech, pubt, sizeof pubt / sizeof pubt[0], privt,
                                 sizeof privt / sizeof privt[0], pub, priv);
    hsm_token_write_end(s);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_GenerateKeyPair", rv,
                      "C_GenerateKeyPair failed for the storage key pair: %s", ckr_name(rv));
        return -1;
    }
    return 0;
}

static int crypt_once(hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE key, bool encrypt,
                      const unsigned char *in, size_t in_len, unsigned char *out, size_t *out_len,
                      hsm_error *err)
{
    crypt_init_fn init = encrypt ? s->f->C_EncryptInit : s->f->C_DecryptInit;
    crypt_fn run = encrypt ? s->f->C_Encrypt : s->f->C_Decrypt;
    const char *name = encrypt ? "C_Encrypt" : "C_Decrypt";
    CK_RV rv = init(s->handle, mech, key);
    CK_ULONG len = (CK_ULONG)*out_len;
    if (rv == CKR_OK)
        rv = run(s->handle, (CK_BYTE_PTR)in, (CK_ULONG)in_len, out, &len);
    if (rv != CKR_OK) {
        hsm_error_set(err, name, rv, "%s (%s) failed: %s", name,
                      mech->mechanism == CKM_AES_GCM ? "AES-GCM" : "RSA-OAEP", ckr_name(rv));
        return -1;
    }
    *out_len = len;
    return 0;
}

int hsm_seal(hsm_session *session, const char *label, hsm_seal_scheme scheme,
             const unsigned char *in, size_t in_len, unsigned char **out, size_t *out_len,
             hsm_error *err)
{
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;
    if (scheme == HSM_SEAL_AES_CBC_PAD || scheme == HSM_SEAL_AES_GCM) {
        if (hsm_storage_key(session, label, &key, err) != 0)
            return -1;
        if (scheme == HSM_SEAL_AES_CBC_PAD)
            return hsm_aes_encrypt(session, key, in, in_len, out, out_len, err);
        /* AES-256-GCM: 12-byte IV, 128-bit tag; *out = IV || ciphertext || tag. */
        size_t cap = 12 + in_len + 16;
        unsigned char *buf = malloc(cap);
        if (buf == NULL || getrandom(buf, 12, 0) != 12) {
            free(buf);
            hsm_error_set(err, "", CKR_HOST_MEMORY, "no memory or randomness for the IV");
            return -1;
        }
        CK_GCM_PARAMS gcm = {buf, 12, 96, NULL, 0, 128};
        CK_MECHANISM mech = {CKM_AES_GCM, &gcm, sizeof gcm};
        size_t len = cap - 12;
        if (crypt_once(session, &mech, key, true, in, in_len, buf + 12, &len, err) != 0) {
            free(buf);
            return -1;
        }
        *out = buf;
        *out_len = 12 + len;
        return 0;
    }
    if (scheme != HSM_SEAL_RSA_OAEP_SHA256 && scheme != HSM_SEAL_RSA_OAEP_SHA1) {
        hsm_error_set(err, "", CKR_MECHANISM_INVALID, "no sealing scheme");
        return -1;
    }
    char rsa_label[128];
    snprintf(rsa_label, sizeof rsa_label, "%s-rsa", label);
    if (storage_rsa(session, rsa_label, &key, &pub, err) != 0)
        return -1;
    bool sha256 = scheme == HSM_SEAL_RSA_OAEP_SHA256;
    CK_RSA_PKCS_OAEP_PARAMS oaep = {sha256 ? CKM_SHA256 : CKM_SHA_1,
                                    sha256 ? CKG_MGF1_SHA256 : CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED,
                                    NULL, 0};
    CK_MECHANISM mech = {CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
    size_t len = 1024;
    unsigned char *buf = malloc(len);
    if (buf == NULL) {
        hsm_error_set(err, "", CKR_HOST_MEMORY, "out of memory");
        return -1;
    }
    if (crypt_once(session, &mech, pub, true, in, in_len, buf, &len, err) != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int hsm_unseal(hsm_session *session, const char *label, hsm_seal_scheme scheme,
               const unsigned char *in, size_t in_len, unsigned char **out, size_t *out_len,
               hsm_error *err)
{
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;
    CK_MECHANISM mech;
    CK_GCM_PARAMS gcm;
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    const unsigned char *data = in;
    size_t data_len = in_len;
    if (scheme == HSM_SEAL_AES_CBC_PAD || scheme == HSM_SEAL_AES_GCM) {
        if (hsm_storage_key(session, label, &key, err) != 0)
            return -1;
        if (scheme == HSM_SEAL_AES_CBC_PAD)
            return hsm_aes_decrypt(session, key, in, in_len, out, out_len, err);
        if (in_len < 12 + 16) {
            hsm_error_set(err, "C_Decrypt", CKR_ENCRYPTED_DATA_LEN_RANGE,
                          "the sealed data is not IV + AES-GCM output");
            return -1;
        }
        gcm = (CK_GCM_PARAMS){(CK_BYTE_PTR)in, 12, 96, NULL, 0, 128};
        mech = (CK_MECHANISM){CKM_AES_GCM, &gcm, sizeof gcm};
        data = in + 12;
        data_len = in_len - 12;
    } else if (scheme == HSM_SEAL_RSA_OAEP_SHA256 || scheme == HSM_SEAL_RSA_OAEP_SHA1) {
        char rsa_label[128];
        snprintf(rsa_label, sizeof rsa_label, "%s-rsa", label);
        if (storage_rsa(session, rsa_label, &key, &pub, err) != 0)
            return -1;
        bool sha256 = scheme == HSM_SEAL_RSA_OAEP_SHA256;
        oaep = (CK_RSA_PKCS_OAEP_PARAMS){sha256 ? CKM_SHA256 : CKM_SHA_1,
                                         sha256 ? CKG_MGF1_SHA256 : CKG_MGF1_SHA1,
                                         CKZ_DATA_SPECIFIED, NULL, 0};
        mech = (CK_MECHANISM){CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
    } else {
        hsm_error_set(err, "", CKR_MECHANISM_INVALID, "no sealing scheme");
        return -1;
    }
    size_t len = data_len + 16;
    unsigned char *buf = malloc(len);
    if (buf == NULL) {
        hsm_error_set(err, "", CKR_HOST_MEMORY, "out of memory");
        return -1;
    }
    if (crypt_once(session, &mech, key, false, data, data_len, buf, &len, err) != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int hsm_seal_best(hsm_session *session, const hsm_caps *caps, const char *label,
                  const unsigned char *in, size_t in_len, unsigned char **out, size_t *out_len,
                  hsm_seal_scheme *used, char *tried, size_t tried_size, hsm_error *err)
{
    static const struct {
        hsm_seal_scheme scheme;
        CK_MECHANISM_TYPE mech, keygen;
    } order[] = {
        {HSM_SEAL_AES_CBC_PAD, CKM_AES_CBC_PAD, CKM_AES_KEY_GEN},
        {HSM_SEAL_AES_GCM, CKM_AES_GCM, CKM_AES_KEY_GEN},
        {HSM_SEAL_RSA_OAEP_SHA256, CKM_RSA_PKCS_OAEP, CKM_RSA_PKCS_KEY_PAIR_GEN},
        {HSM_SEAL_RSA_OAEP_SHA1, CKM_RSA_PKCS_OAEP, CKM_RSA_PKCS_KEY_PAIR_GEN},
    };
    tried[0] = '\0';
    hsm_error_set(err, "", CKR_MECHANISM_INVALID, "no sealing mechanism");
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *name = hsm_seal_name(order[i].scheme);
        size_t at = strlen(tried);
        if (caps != NULL && (!hsm_caps_has(caps, order[i].mech, CKF_ENCRYPT | CKF_DECRYPT) ||
                             !hsm_caps_mechanism(caps, order[i].keygen)))
            continue; /* not offered: not tried */
        /* Proven by a round trip before anything depends on it. */
        unsigned char *sealed = NULL, *back = NULL;
        size_t sealed_len = 0, back_len = 0;
        int ok =
            hsm_seal(session, label, order[i].scheme, in, in_len, &sealed, &sealed_len, err) == 0 &&
            hsm_unseal(session, label, order[i].scheme, sealed, sealed_len, &back, &back_len,
                       err) == 0 &&
            back_len == in_len && memcmp(back, in, in_len) == 0;
        if (back != NULL) {
            memset(back, 0, back_len);
            free(back);
        }
        if (ok) {
            *out = sealed;
            *out_len = sealed_len;
            *used = order[i].scheme;
            return 0;
        }
        free(sealed);
        snprintf(tried + at, tried_size - at, "%s%s %s", at ? ", " : "", name,
                 err->rv != CKR_OK ? ckr_name(err->rv) : "the round trip differs");
        if (hsm_rv_transient(err->rv)) {
            *used = HSM_SEAL_NONE; /* says nothing of the next schemes either: the caller retries */
            return -1;
        }
    }
    if (tried[0] == '\0')
        snprintf(tried, tried_size, "none offered");
    *used = HSM_SEAL_NONE;
    return -1;
}
