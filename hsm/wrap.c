/* Export keys leaving the token: the per-run AES wrapping key, C_WrapKey with the mechanism the
 * module offers (and how its CKM_AES_KEY_WRAP_PAD behaves), and CKA_VALUE for key types the
 * module will not wrap. */
#include "hsm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ckr.h"

int hsm_import_wrapping_key(hsm_session *session, const unsigned char kek[32],
                            CK_OBJECT_HANDLE *out, hsm_error *err)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    static const char label[] = "hsmenroll-run-wrapping-key";
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_TOKEN, &no, sizeof no},       {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_WRAP, &yes, sizeof yes},      {CKA_LABEL, (void *)label, sizeof label - 1},
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
    return hsm_wrap_private_key_with(session, CKM_AES_KEY_WRAP_PAD, wrapping_key, private_key, out,
                                     out_len, err);
}

int hsm_wrap_private_key_with(hsm_session *session, CK_MECHANISM_TYPE mechanism,
                              CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE private_key,
                              unsigned char **out, size_t *out_len, hsm_error *err)
{
    unsigned char iv[16];
    size_t head = 0;
    CK_MECHANISM mech = {mechanism, NULL, 0};
    if (mechanism == CKM_AES_CBC_PAD) {
        if (getrandom(iv, sizeof iv, 0) != (ssize_t)sizeof iv) {
            hsm_error_set(err, "", CKR_FUNCTION_FAILED, "getrandom failed: %s", strerror(errno));
            return -1;
        }
        mech.pParameter = iv;
        mech.ulParameterLen = sizeof iv;
        head = sizeof iv;
    }
    /* No size query first: a module does the whole wrap to answer one (SoftHSM does), so the
     * call goes straight to a buffer that holds any key this engine makes (an RSA-4096
     * PKCS#8 is about 2,400 bytes), and a module that wants more says so
     * (CKR_BUFFER_TOO_SMALL with the size, an estimate on some: NSS answers before padding):
     * then room for that and a block more, twice at most. */
    CK_ULONG cap = 4096, len = cap;
    unsigned char *buf = NULL;
    CK_RV rv = CKR_OK;
    for (int attempt = 0; attempt < 3; attempt++) {
        free(buf);
        buf = malloc(head + cap);
        if (buf == NULL) {
            hsm_error_set(err, "", CKR_HOST_MEMORY, "out of memory");
            return -1;
        }
        memcpy(buf, iv, head);
        len = cap;
        rv = session->f->C_WrapKey(session->handle, &mech, wrapping_key, private_key, buf + head,
                                   &len);
        if (rv != CKR_BUFFER_TOO_SMALL)
            break;
        cap = len > cap ? len + 32 : cap * 2;
    }
    if (rv != CKR_OK) {
        free(buf);
        hsm_session_note_key_use(session, rv);
        hsm_error_set(err, "C_WrapKey", rv, "C_WrapKey failed: %s", ckr_name(rv));
        return -1;
    }
    *out = buf;
    *out_len = head + len;
    return 0;
}

/* An AES-256 session key with a random value and these usages; CK_INVALID_HANDLE on failure
 * (the module's answer in *answer). */
static CK_OBJECT_HANDLE probe_key(hsm_session *s, bool wrap, CK_RV *answer)
{
    unsigned char value[32];
    if (getrandom(value, sizeof value, 0) != (ssize_t)sizeof value)
        return CK_INVALID_HANDLE;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_TOKEN, &no, sizeof no},
        {CKA_WRAP, wrap ? &yes : &no, sizeof yes},
        {CKA_EXTRACTABLE, wrap ? &no : &yes, sizeof yes},
        {CKA_VALUE, value, sizeof value},
    };
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = s->f->C_CreateObject(s->handle, tmpl, sizeof tmpl / sizeof tmpl[0], &h);
    if (rv != CKR_OK) {
        h = CK_INVALID_HANDLE;
        if (*answer == CKR_OK)
            *answer = rv;
    }
    memset(value, 0, sizeof value);
    return h;
}

hsm_wrap_scheme hsm_probe_wrap_pad(hsm_session *session, CK_RV *answer)
{
    *answer = CKR_OK;
    CK_OBJECT_HANDLE kek = probe_key(session, true, answer),
                     known = probe_key(session, false, answer);
    hsm_wrap_scheme scheme = HSM_WRAP_NONE;
    if (kek != CK_INVALID_HANDLE && known != CK_INVALID_HANDLE) {
        CK_MECHANISM mech = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
        unsigned char buf[128];
        CK_ULONG len = sizeof buf;
        CK_RV rv = session->f->C_WrapKey(session->handle, &mech, kek, known, buf, &len);
        if (rv == CKR_OK)
            scheme = len == 40   ? HSM_WRAP_RFC5649
                     : len == 56 ? HSM_WRAP_RFC3394_PKCS7
                                 : HSM_WRAP_NONE;
        else
            *answer = rv;
    }
    if (kek != CK_INVALID_HANDLE)
        session->f->C_DestroyObject(session->handle, kek);
    if (known != CK_INVALID_HANDLE)
        session->f->C_DestroyObject(session->handle, known);
    return scheme;
}

int hsm_read_private_value(hsm_session *session, CK_OBJECT_HANDLE private_key, unsigned char **out,
                           size_t *out_len, hsm_error *err)
{
    return hsm_get_attribute(session, private_key, CKA_VALUE, out, out_len, err);
}
