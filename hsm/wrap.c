/* Export keys leaving the token: the per-run AES wrapping key, C_WrapKey with RFC 5649 AES key
 * wrap with padding, and CKA_VALUE for key types the module will not wrap. */
#include "hsm.h"

#include <stdlib.h>
#include <string.h>

#include "ckr.h"

int hsm_import_wrapping_key(hsm_session *session, const unsigned char kek[32],
                            CK_OBJECT_HANDLE *out, hsm_error *err)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    static const char label[] = "hsmenroll-run-wrapping-key";
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_TOKEN, &no, sizeof no},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_WRAP, &yes, sizeof yes},
        {CKA_UNWRAP, &no, sizeof no},
        {CKA_ENCRYPT, &no, sizeof no},
        {CKA_DECRYPT, &no, sizeof no},
        {CKA_LABEL, (void *)label, sizeof label - 1},
        {CKA_VALUE, (void *)kek, 32},
    };
    CK_RV rv = session->f->C_CreateObject(session->handle, tmpl, sizeof tmpl / sizeof tmpl[0], out);
    if (rv != CKR_OK) {
        hsm_session_note(session, rv);
        hsm_error_set(err, "C_CreateObject", rv,
                      "C_CreateObject failed for the run's wrapping key: %s", ckr_name(rv));
        return -1;
    }
    return 0;
}

int hsm_wrap_private_key(hsm_session *session, CK_OBJECT_HANDLE wrapping_key,
                         CK_OBJECT_HANDLE private_key, unsigned char **out, size_t *out_len,
                         hsm_error *err)
{
    CK_MECHANISM mech = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_ULONG len = 0;
    CK_RV rv = session->f->C_WrapKey(session->handle, &mech, wrapping_key, private_key, NULL, &len);
    unsigned char *buf = NULL;
    if (rv == CKR_OK) {
        buf = malloc(len ? len : 1);
        if (buf == NULL) {
            hsm_error_set(err, "", CKR_HOST_MEMORY, "out of memory");
            return -1;
        }
        rv = session->f->C_WrapKey(session->handle, &mech, wrapping_key, private_key, buf, &len);
    }
    if (rv != CKR_OK) {
        free(buf);
        hsm_session_note(session, rv);
        hsm_error_set(err, "C_WrapKey", rv, "C_WrapKey failed: %s", ckr_name(rv));
        return -1;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int hsm_read_private_value(hsm_session *session, CK_OBJECT_HANDLE private_key, unsigned char **out,
                           size_t *out_len, hsm_error *err)
{
    return hsm_get_attribute(session, private_key, CKA_VALUE, out, out_len, err);
}
