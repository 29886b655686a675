/* A token's inventory in one pass: every private key, public key and certificate with its handle,
 * class, label, CKA_ID, key type and (certificates) DER value. What certificate stores are indexed
 * from, once per run, instead of a C_FindObjects per alias. */
#include "hsm.h"

#include <stdlib.h>
#include <string.h>

/* hsm_get_attribute, with an attribute the object does not have (or will not show) read as
 * empty: such objects are listed, not an error. */
static int read_attribute(hsm_session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                          unsigned char **out, size_t *len)
{
    hsm_error herr;
    if (hsm_get_attribute(s, h, type, out, len, &herr) == 0)
        return 0;
    if (herr.rv != CKR_ATTRIBUTE_TYPE_INVALID && herr.rv != CKR_ATTRIBUTE_SENSITIVE)
        return -1;
    *out = calloc(1, 1);
    *len = 0;
    return *out != NULL ? 0 : -1;
}

/* Fills o for the object o->handle: 0, 1 when it is no key or certificate (secret keys, data
 * objects: not part of a store; nothing more is read), or -1 with err. */
static int describe(hsm_session *s, hsm_object_info *o, hsm_error *err)
{
    if (hsm_get_ulong(s, o->handle, CKA_CLASS, &o->cls, err) != 0)
        return -1;
    if (o->cls != CKO_PRIVATE_KEY && o->cls != CKO_PUBLIC_KEY && o->cls != CKO_CERTIFICATE)
        return 1;
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
    CK_OBJECT_HANDLE *handles;
    long listed = hsm_list_objects(session, NULL, &handles, err);
    if (listed < 0)
        return -1;
    size_t count = (size_t)listed;
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
        int rc = describe(session, o, err);
        if (rc < 0) {
            free(handles);
            hsm_inventory_free(objs, (long)kept + 1);
            return -1;
        }
        if (rc == 0)
            kept++;
        else
            memset(o, 0, sizeof *o);
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
