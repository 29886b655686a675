/* A token's inventory in one pass: every private key, public key and certificate with its handle,
 * class, label, CKA_ID, key type and (certificates) DER value. What certificate stores are indexed
 * from, once per run, instead of a C_FindObjects per alias. */
#include "hsm.h"

#include <stdlib.h>
#include <string.h>

#include "ckr.h"

/* Reads one variable-length attribute (two calls: length, then value) into a malloc'd buffer with
 * a NUL after it. An attribute the object does not have gives an empty buffer. */
static int read_attribute(hsm_session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                          unsigned char **out, size_t *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv = s->f->C_GetAttributeValue(s->handle, h, &a, 1);
    if (rv == CKR_ATTRIBUTE_TYPE_INVALID || a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
        a.ulValueLen = 0;
    else if (rv != CKR_OK)
        return -1;
    unsigned char *buf = malloc(a.ulValueLen + 1);
    if (buf == NULL)
        return -1;
    if (a.ulValueLen > 0) {
        a.pValue = buf;
        if (s->f->C_GetAttributeValue(s->handle, h, &a, 1) != CKR_OK) {
            free(buf);
            return -1;
        }
    }
    buf[a.ulValueLen] = '\0';
    *out = buf;
    *len = a.ulValueLen;
    return 0;
}

static int describe(hsm_session *s, hsm_object_info *o, hsm_error *err)
{
    CK_ATTRIBUTE cls = {CKA_CLASS, &o->cls, sizeof o->cls};
    CK_RV rv = s->f->C_GetAttributeValue(s->handle, o->handle, &cls, 1);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_GetAttributeValue", rv, "C_GetAttributeValue failed: %s",
                      ckr_name(rv));
        return -1;
    }
    unsigned char *label = NULL;
    size_t label_len = 0;
    if (read_attribute(s, o->handle, CKA_LABEL, &label, &label_len) != 0 ||
        read_attribute(s, o->handle, CKA_ID, &o->id, &o->id_len) != 0) {
        free(label);
        hsm_error_set(err, "C_GetAttributeValue", CKR_GENERAL_ERROR,
                      "cannot read an object's label or id");
        return -1;
    }
    o->label = (char *)label;
    if (memchr(o->label, '\0', label_len) != NULL)
        o->label[0] = '\0'; /* a label with a NUL in it is no alias */
    if (o->cls == CKO_PRIVATE_KEY || o->cls == CKO_PUBLIC_KEY) {
        CK_ATTRIBUTE kt = {CKA_KEY_TYPE, &o->key_type, sizeof o->key_type};
        if (s->f->C_GetAttributeValue(s->handle, o->handle, &kt, 1) != CKR_OK)
            o->key_type = (CK_KEY_TYPE)-1;
    } else if (o->cls == CKO_CERTIFICATE &&
               read_attribute(s, o->handle, CKA_VALUE, &o->value, &o->value_len) != 0) {
        hsm_error_set(err, "C_GetAttributeValue", CKR_GENERAL_ERROR,
                      "cannot read a certificate's value");
        return -1;
    }
    return 0;
}

long hsm_inventory(hsm_session *session, hsm_object_info **out, hsm_error *err)
{
    if (session == NULL || out == NULL) {
        hsm_error_set(err, "", CKR_ARGUMENTS_BAD, "hsm_inventory: no session or output");
        return -1;
    }
    *out = NULL;
    CK_RV rv = session->f->C_FindObjectsInit(session->handle, NULL, 0);
    if (rv != CKR_OK) {
        hsm_error_set(err, "C_FindObjectsInit", rv, "C_FindObjectsInit failed: %s", ckr_name(rv));
        return -1;
    }
    size_t count = 0, cap = 0;
    CK_OBJECT_HANDLE *handles = NULL;
    for (;;) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            CK_OBJECT_HANDLE *n = realloc(handles, ncap * sizeof *n);
            if (n == NULL) {
                rv = CKR_HOST_MEMORY;
                break;
            }
            handles = n;
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
        hsm_error_set(err, "C_FindObjects", rv, "C_FindObjects failed: %s", ckr_name(rv));
        return -1;
    }
    hsm_object_info *objs = calloc(count ? count : 1, sizeof *objs);
    if (objs == NULL) {
        free(handles);
        hsm_error_set(err, "", CKR_HOST_MEMORY, "out of memory");
        return -1;
    }
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        hsm_object_info *o = &objs[kept];
        o->handle = handles[i];
        if (describe(session, o, err) != 0) {
            free(handles);
            hsm_inventory_free(objs, (long)kept + 1);
            return -1;
        }
        if (o->cls == CKO_PRIVATE_KEY || o->cls == CKO_PUBLIC_KEY || o->cls == CKO_CERTIFICATE) {
            kept++;
        } else { /* secret keys, data objects: not part of a store */
            free(o->label);
            free(o->id);
            free(o->value);
            memset(o, 0, sizeof *o);
        }
    }
    free(handles);
    *out = objs;
    return (long)kept;
}

void hsm_inventory_free(hsm_object_info *objects, long count)
{
    if (objects == NULL)
        return;
    for (long i = 0; i < count; i++) {
        free(objects[i].label);
        free(objects[i].id);
        free(objects[i].value);
    }
    free(objects);
}
