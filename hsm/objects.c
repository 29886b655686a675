/* Object search and inspection for start-up and maintenance (the CA's keys, token listings,
 * garbage collection). The hot path keeps the handles C_GenerateKeyPair returns instead. */
#include "hsm.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include "ckr.h"

int hsm_find_objects(hsm_session *session, CK_OBJECT_CLASS cls, const unsigned char *id,
                     size_t id_len, const char *label, CK_OBJECT_HANDLE *out, size_t max,
                     hsm_error *err)
{
    CK_ATTRIBUTE tmpl[3];
    CK_ULONG n = 0;
    tmpl[n++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof cls};
    if (id != NULL && id_len > 0)
        tmpl[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)id, id_len};
    if (label != NULL)
        tmpl[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
    CK_RV rv = session->f->C_FindObjectsInit(session->handle, tmpl, n);
    if (rv != CKR_OK) {
        hsm_session_note(session, rv);
        hsm_error_set(err, "C_FindObjectsInit", rv, "C_FindObjectsInit failed: %s", ckr_name(rv));
        return -1;
    }
    size_t found = 0;
    while (found < max) {
        CK_ULONG got = 0;
        rv = session->f->C_FindObjects(session->handle, out + found, max - found, &got);
        if (rv != CKR_OK || got == 0)
            break;
        found += got;
    }
    session->f->C_FindObjectsFinal(session->handle);
    if (rv != CKR_OK) {
        hsm_session_note(session, rv);
        hsm_error_set(err, "C_FindObjects", rv, "C_FindObjects failed: %s", ckr_name(rv));
        return -1;
    }
    return (int)found;
}

long hsm_list_objects(hsm_session *session, const CK_OBJECT_CLASS *cls, CK_OBJECT_HANDLE **out,
                      hsm_error *err)
{
    *out = NULL;
    CK_OBJECT_CLASS wanted = cls != NULL ? *cls : 0;
    CK_ATTRIBUTE tmpl = {CKA_CLASS, &wanted, sizeof wanted};
    CK_RV rv = session->f->C_FindObjectsInit(session->handle, cls != NULL ? &tmpl : NULL,
                                             cls != NULL ? 1 : 0);
    if (rv != CKR_OK) {
        hsm_session_note(session, rv);
        hsm_error_set(err, "C_FindObjectsInit", rv, "C_FindObjectsInit failed: %s", ckr_name(rv));
        return -1;
    }
    size_t count = 0, cap = 0;
    CK_OBJECT_HANDLE *handles = NULL;
    for (;;) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            CK_OBJECT_HANDLE *grown = realloc(handles, ncap * sizeof *grown);
            if (grown == NULL) {
                rv = CKR_HOST_MEMORY;
                break;
            }
            handles = grown;
            cap = ncap;
        }
        CK_ULONG got = 0;
        rv = session->f->C_FindObjects(session->handle, handles + count, cap - count, &got);
        if (rv != CKR_OK || got == 0)
            break;
        count += got;
    }
    session->f->C_FindObjectsFinal(session->handle);
    if (rv != CKR_OK) {
        free(handles);
        hsm_session_note(session, rv);
        hsm_error_set(err, "C_FindObjects", rv, "C_FindObjects failed: %s", ckr_name(rv));
        return -1;
    }
    *out = handles;
    return (long)count;
}

int hsm_get_bool(hsm_session *session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, bool *out,
                 hsm_error *err)
{
    CK_BBOOL value = CK_FALSE;
    CK_ATTRIBUTE a = {type, &value, sizeof value};
    CK_RV rv = session->f->C_GetAttributeValue(session->handle, object, &a, 1);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_GetAttributeValue", rv, "C_GetAttributeValue failed: %s",
                      ckr_name(rv));
        return -1;
    }
    *out = value != CK_FALSE;
    return 0;
}

int hsm_get_ulong(hsm_session *session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type,
                  CK_ULONG *out, hsm_error *err)
{
    CK_ATTRIBUTE a = {type, out, sizeof *out};
    CK_RV rv = session->f->C_GetAttributeValue(session->handle, object, &a, 1);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_GetAttributeValue", rv, "C_GetAttributeValue failed: %s",
                      ckr_name(rv));
        return -1;
    }
    return 0;
}

int hsm_destroy_object(hsm_session *session, CK_OBJECT_HANDLE object, hsm_error *err)
{
    hsm_token_write_begin(session);
    CK_RV rv = session->f->C_DestroyObject(session->handle, object);
    hsm_token_write_end(session);
    if (rv != CKR_OK) {
        hsm_session_note(session, rv);
        hsm_error_set(err, "C_DestroyObject", rv, "C_DestroyObject failed: %s", ckr_name(rv));
        return -1;
    }
    return 0;
}

int hsm_destroy_keypair_by_id(hsm_session *session, const unsigned char *id, size_t id_len)
{
    static const CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
    int destroyed = 0;
    for (size_t c = 0; c < 2; c++) {
        CK_OBJECT_HANDLE found[4];
        hsm_error err;
        int n = hsm_find_objects(session, classes[c], id, id_len, NULL, found, 4, &err);
        for (int i = 0; i < n; i++)
            destroyed += hsm_destroy_object(session, found[i], &err) == 0;
    }
    return destroyed;
}
