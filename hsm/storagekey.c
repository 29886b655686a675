/* The token's persistent storage key and AES-CBC through it: what the engine keeps outside the
 * HSM across a crash (the journal's copy of a run's wrapping key) is encrypted by a key that
 * never leaves the token. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ckr.h"
#include "hsm.h"

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
    rv = session->f->C_GenerateKey(session->handle, &mech, tmpl, sizeof tmpl / sizeof tmpl[0], out);
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
