/* The alias index of a certificate store: the token's inventory (one pass), grouped by label and
 * CKA_ID, sorted for lookups by alias, certificates parsed once. */
#include "engine/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/log.h"
#include "ca/hsm_signer.h"
#include "engine/fault_hooks.h"

static int by_alias(const void *a, const void *b)
{
    return strcmp(((const store_alias *)a)->alias, ((const store_alias *)b)->alias);
}

/* Orders the inventory by label, then by CKA_ID, so that each alias and each of its entries is
 * one run of objects. */
static int by_label_then_id(const void *a, const void *b)
{
    const hsm_object_info *x = a, *y = b;
    int c = strcmp(x->label, y->label);
    if (c != 0)
        return c;
    if (x->id_len != y->id_len)
        return x->id_len < y->id_len ? -1 : 1;
    return x->id_len ? memcmp(x->id, y->id, x->id_len) : 0;
}

static bool same_id(const hsm_object_info *o, const store_entry *e)
{
    return o->id_len == e->id_len && (o->id_len == 0 || memcmp(o->id, e->id, o->id_len) == 0);
}

static void add_object(store_entry *e, const hsm_object_info *o)
{
    switch (o->cls) {
    case CKO_PRIVATE_KEY:
        e->private_key = o->handle;
        e->key_type = o->key_type;
        break;
    case CKO_PUBLIC_KEY:
        e->public_key = o->handle;
        if (e->key_type == (CK_KEY_TYPE)-1)
            e->key_type = o->key_type;
        break;
    case CKO_CERTIFICATE:
        e->certificate = o->handle;
        if (e->cert == NULL && o->value != NULL) {
            const unsigned char *p = o->value;
            e->cert = d2i_X509(NULL, &p, (long)o->value_len);
        }
        break;
    default:
        break;
    }
}

int store_index_build(store_index *index, const config_store *store, hsm_session *session,
                      enroll_error *err)
{
    if (index == NULL || session == NULL || session->token == NULL) {
        enroll_error_set(err, HSE_STORE_UNAVAILABLE, NULL, "store_index_build: no session");
        return -1;
    }
    memset(index, 0, sizeof *index);
    index->store = store;
    index->token = session->token->desc;
    hsm_object_info *objs = NULL;
    hsm_error herr;
    long n = hsm_inventory(session, &objs, &herr);
    if (n < 0) {
        enroll_error_set(err, HSE_STORE_UNAVAILABLE, NULL, "token \"%s\": %s",
                         session->token->desc.label, herr.message);
        return -1;
    }
    qsort(objs, (size_t)n, sizeof *objs, by_label_then_id);
    /* At most one alias per labelled object: allocate for the worst case. */
    index->aliases = calloc(n > 0 ? (size_t)n : 1, sizeof *index->aliases);
    if (index->aliases == NULL) {
        hsm_inventory_free(objs, n);
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    for (long i = 0; i < n; i++) {
        const hsm_object_info *o = &objs[i];
        if (o->label[0] == '\0' || o->id_len > sizeof index->aliases[0].entries[0].id)
            continue;
        store_alias *a = index->alias_count ? &index->aliases[index->alias_count - 1] : NULL;
        if (a == NULL || strcmp(a->alias, o->label) != 0) {
            a = &index->aliases[index->alias_count];
            a->alias = strdup(o->label);
            if (a->alias == NULL)
                break;
            index->alias_count++;
        }
        store_entry *e = a->entry_count ? &a->entries[a->entry_count - 1] : NULL;
        if (e == NULL || !same_id(o, e)) {
            store_entry *grown = realloc(a->entries, (a->entry_count + 1) * sizeof *grown);
            if (grown == NULL)
                break;
            a->entries = grown;
            e = &a->entries[a->entry_count++];
            memset(e, 0, sizeof *e);
            memcpy(e->id, o->id, o->id_len);
            e->id_len = o->id_len;
            e->private_key = e->public_key = e->certificate = CK_INVALID_HANDLE;
            e->key_type = (CK_KEY_TYPE)-1;
        }
        add_object(e, o);
    }
    hsm_inventory_free(objs, n); /* the aliases came out sorted, as the inventory was */
    return 0;
}

void store_index_free(store_index *index)
{
    if (index == NULL)
        return;
    for (size_t i = 0; i < index->alias_count; i++) {
        for (size_t k = 0; k < index->aliases[i].entry_count; k++)
            X509_free(index->aliases[i].entries[k].cert);
        free(index->aliases[i].entries);
        free(index->aliases[i].alias);
    }
    free(index->aliases);
    memset(index, 0, sizeof *index);
}

const store_alias *store_index_find(const store_index *index, const char *alias)
{
    if (index == NULL || alias == NULL || index->alias_count == 0)
        return NULL;
    store_alias key = {.alias = (char *)alias};
    return bsearch(&key, index->aliases, index->alias_count, sizeof key, by_alias);
}

const store_entry *store_alias_current(const store_alias *alias)
{
    const store_entry *best = NULL;
    for (size_t i = 0; alias != NULL && i < alias->entry_count; i++) {
        const store_entry *e = &alias->entries[i];
        if (e->private_key == CK_INVALID_HANDLE || e->cert == NULL)
            continue;
        if (best == NULL ||
            ASN1_TIME_compare(X509_get0_notBefore(e->cert), X509_get0_notBefore(best->cert)) > 0)
            best = e;
    }
    return best;
}

void store_target_set(store_target *t, const config_store *store, const char *alias, bool overwrite)
{
    t->store = store;
    snprintf(t->alias, sizeof t->alias, "%s", alias);
    t->overwrite = overwrite;
}

int store_registry_init(store_registry *reg, const config *cfg)
{
    memset(reg, 0, sizeof *reg);
    reg->cfg = cfg;
    pthread_mutex_init(&reg->lock, NULL);
    size_t n = cfg->store_count ? cfg->store_count : 1;
    reg->indexes = calloc(n, sizeof *reg->indexes);
    reg->built = calloc(n, sizeof *reg->built);
    return reg->indexes != NULL && reg->built != NULL ? 0 : -1;
}

void store_registry_reset(store_registry *reg)
{
    for (size_t i = 0; reg->cfg != NULL && i < reg->cfg->store_count; i++)
        if (reg->built != NULL && reg->built[i]) {
            store_index_free(&reg->indexes[i]);
            reg->built[i] = false;
        }
}

void store_registry_free(store_registry *reg)
{
    if (reg->cfg == NULL)
        return;
    store_registry_reset(reg);
    free(reg->indexes);
    free(reg->built);
    pthread_mutex_destroy(&reg->lock);
    memset(reg, 0, sizeof *reg);
}

const store_index *store_registry_get(store_registry *reg, const config_store *store,
                                      hsm_session *session, enroll_error *err)
{
    size_t i = (size_t)(store - reg->cfg->stores);
    if (store == NULL || i >= reg->cfg->store_count) {
        enroll_error_set(err, HSE_STORE_UNAVAILABLE, NULL, "store_registry_get: not a store");
        return NULL;
    }
    pthread_mutex_lock(&reg->lock);
    const store_index *ix = NULL;
    if (reg->built[i] || store_index_build(&reg->indexes[i], store, session, err) == 0) {
        reg->built[i] = true;
        ix = &reg->indexes[i];
    }
    pthread_mutex_unlock(&reg->lock);
    return ix;
}

/* Whether handle h still names the object of class cls labelled alias with CKA_ID id: 1 yes,
 * 0 it names another (or nothing: gone), -1 it cannot be read. */
static int still_names(hsm_session *s, CK_OBJECT_HANDLE h, CK_OBJECT_CLASS cls, const char *alias,
                       const store_entry *e)
{
    hsm_error herr;
    CK_ULONG have_cls;
    if (hsm_get_ulong(s, h, CKA_CLASS, &have_cls, &herr) != 0)
        return herr.rv == CKR_OBJECT_HANDLE_INVALID ? 0 : -1;
    unsigned char *label = NULL, *id = NULL;
    size_t label_len = 0, id_len = 0;
    int rc = -1;
    if (hsm_get_attribute(s, h, CKA_LABEL, &label, &label_len, &herr) == 0 &&
        hsm_get_attribute(s, h, CKA_ID, &id, &id_len, &herr) == 0)
        rc = have_cls == cls && label_len == strlen(alias) &&
             memcmp(label, alias, label_len) == 0 && id_len == e->id_len &&
             memcmp(id, e->id, id_len) == 0;
    free(label);
    free(id);
    return rc;
}

/* Destroys the entry's object of class cls: by the index's handle when that handle, read now,
 * still names it (class, label, CKA_ID); else found again by label and CKA_ID (a module may
 * renumber handles when every session of a slot closed, as after a failover, and the index is
 * older). Nothing is destroyed that was not checked to be it. Gone already (a store index older
 * than a resumed job's clean-up) is fine. */
static int destroy_entry_object(hsm_session *s, CK_OBJECT_HANDLE h, CK_OBJECT_CLASS cls,
                                const char *alias, const store_entry *e)
{
    if (h == CK_INVALID_HANDLE)
        return 0;
    hsm_error herr;
    int named = still_names(s, h, cls, alias, e);
    if (named < 0)
        return -1;
    CK_OBJECT_HANDLE found[4];
    int n = 1;
    if (named == 1) {
        found[0] = h;
    } else if ((n = hsm_find_objects(s, cls, e->id, e->id_len, alias, found, 4, &herr)) < 0) {
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (hsm_destroy_object(s, found[i], &herr) != 0 && herr.rv != CKR_OBJECT_HANDLE_INVALID)
            return -1;
    return 0;
}

int store_retire_others(hsm_session *s, const store_alias *a, const unsigned char *keep_id,
                        enroll_error *err)
{
    for (size_t i = 0; a != NULL && i < a->entry_count; i++) {
        const store_entry *e = &a->entries[i];
        if (e->id_len == HSM_KEY_ID_LEN && memcmp(e->id, keep_id, HSM_KEY_ID_LEN) == 0)
            continue;
        if (destroy_entry_object(s, e->certificate, CKO_CERTIFICATE, a->alias, e) != 0 ||
            destroy_entry_object(s, e->private_key, CKO_PRIVATE_KEY, a->alias, e) != 0 ||
            destroy_entry_object(s, e->public_key, CKO_PUBLIC_KEY, a->alias, e) != 0) {
            enroll_error_set(err, HSE_STORE_INSTALL_FAILED, "Alias",
                             "the new certificate is installed under \"%.80s\", but an old key "
                             "or certificate could not be removed",
                             a->alias);
            return -1;
        }
        fault_point("store-retiring");
    }
    return 0;
}

/* The install, with the CKR of a refusal by the token in *refused (0 otherwise). */
static int install_rv(hsm_session *s, X509 *cert, const char *alias, const unsigned char *id,
                      size_t id_len, CK_RV *refused, enroll_error *err)
{
    *refused = 0;
    unsigned char *value = NULL, *subject = NULL, *issuer = NULL, *serial = NULL;
    int vl = i2d_X509(cert, &value);
    int sl = i2d_X509_NAME(X509_get_subject_name(cert), &subject);
    int il = i2d_X509_NAME(X509_get_issuer_name(cert), &issuer);
    int nl = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &serial);
    int rc = -1;
    hsm_error herr;
    if (vl > 0 && sl > 0 && il > 0 && nl > 0) {
        hsm_certificate_der der = {value,      subject,    issuer,     serial,
                                   (size_t)vl, (size_t)sl, (size_t)il, (size_t)nl};
        rc = hsm_create_certificate(s, &der, alias, id, id_len, NULL, &herr);
        if (rc != 0) {
            *refused = herr.rv;
            hsm_error_to_enroll(&herr, HSE_STORE_INSTALL_FAILED, err);
        }
    } else {
        enroll_error_set(err, HSE_STORE_INSTALL_FAILED, NULL, "cannot encode the certificate");
    }
    OPENSSL_free(value);
    OPENSSL_free(subject);
    OPENSSL_free(issuer);
    OPENSSL_free(serial);
    return rc;
}

int store_install_certificate(hsm_session *s, X509 *cert, const char *alias,
                              const unsigned char *id, enroll_error *err)
{
    CK_RV refused;
    return install_rv(s, cert, alias, id, HSM_KEY_ID_LEN, &refused, err);
}

int store_install_making_room(hsm_session *s, X509 *cert, const char *alias, const store_alias *a,
                              const unsigned char *id, enroll_error *err)
{
    CK_RV refused = 0;
    if (install_rv(s, cert, alias, id, HSM_KEY_ID_LEN, &refused, err) == 0)
        return 0;
    bool others = false;
    for (size_t i = 0; a != NULL && i < a->entry_count; i++)
        others = others || (a->entries[i].certificate != CK_INVALID_HANDLE &&
                            (a->entries[i].id_len != HSM_KEY_ID_LEN ||
                             memcmp(a->entries[i].id, id, HSM_KEY_ID_LEN) != 0));
    if (refused != CKR_ATTRIBUTE_VALUE_INVALID || !others)
        return -1;
    log_verbose("token \"%s\" keeps one subject per label: the old certificate of \"%.80s\" goes "
                "before the new one is installed",
                s->token->desc.label, alias);
    enroll_error_clear(err);
    size_t retired = 0;
    for (size_t i = 0; i < a->entry_count; i++) {
        const store_entry *e = &a->entries[i];
        if (e->certificate == CK_INVALID_HANDLE ||
            (e->id_len == HSM_KEY_ID_LEN && memcmp(e->id, id, HSM_KEY_ID_LEN) == 0))
            continue;
        if (destroy_entry_object(s, e->certificate, CKO_CERTIFICATE, alias, e) != 0) {
            enroll_error_set(err, HSE_STORE_INSTALL_FAILED, "Alias",
                             "the token refused a second certificate under \"%.80s\", and the "
                             "old certificate could not be removed to make room",
                             alias);
            return -1;
        }
        retired++;
    }
    fault_point("store-old-certificate-retired");
    if (install_rv(s, cert, alias, id, HSM_KEY_ID_LEN, &refused, err) == 0)
        return 0;
    /* Refused still: the old certificates go back (best effort), the alias as it was. */
    for (size_t i = 0; retired > 0 && i < a->entry_count; i++) {
        const store_entry *e = &a->entries[i];
        enroll_error ignored;
        CK_RV again;
        if (e->cert != NULL && e->certificate != CK_INVALID_HANDLE &&
            !(e->id_len == HSM_KEY_ID_LEN && memcmp(e->id, id, HSM_KEY_ID_LEN) == 0))
            install_rv(s, e->cert, alias, e->id, e->id_len, &again, &ignored);
    }
    return -1;
}
