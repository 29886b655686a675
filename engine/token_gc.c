/* `token gc`: one pass over each key token's certificates, private and public keys. A private key
 * is accounted for by a journal given (any record of its request), a results file given (KeyUri),
 * a certificate object with its CKA_ID in its token, or a local CA's issuance log (the fingerprint
 * of its public key); a public key by its private half. What nothing accounts for is an orphan;
 * --delete destroys only the orphans of a listing confirmed. */
#include "engine/token_gc.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/idset.h"
#include "batch/journal.h"
#include "batch/keyhistory.h"
#include "batch/log.h"
#include "ca/hsm_signer.h"
#include "formats/csr.h"
#include "formats/hex.h"
#include "formats/pubkey.h"
#include "engine/recovery.h"

/* Keys the engine keeps for itself, never orphans: the journal's RSA storage key pair (the
 * sealing of a module without AES-CBC-PAD and AES-GCM) and an embedded CA's keys on a module
 * with a single token. */
static bool engine_owned(const unsigned char *label, size_t len)
{
    static const char *const own[] = {RECOVERY_STORAGE_KEY_LABEL "-rsa", "hsmenroll-ca-root",
                                      "hsmenroll-ca-issuing"};
    for (size_t i = 0; label != NULL && i < sizeof own / sizeof own[0]; i++)
        if (len == strlen(own[i]) && memcmp(label, own[i], len) == 0)
            return true;
    return false;
}

#define ID_HEX_MAX (2 * 64 + 1) /* the first 64 bytes of a longer CKA_ID */

static void id_hex(const unsigned char *id, size_t len, char hex[ID_HEX_MAX])
{
    hex[0] = '\0';
    if (id != NULL && len > 0)
        hex_encode(id, len < 64 ? len : 64, hex, ID_HEX_MAX, false);
}

typedef struct known_keys {
    idset *ids;      /* hex CKA_IDs */
    char run_id[33]; /* the journal's, from its header */
} known_keys;

/* A K record's KeyId; and for any record of a request, the CKA_ID the run derives for its key:
 * a salvaged journal that lost a request's K record but kept another still knows its key. */
static int collect_key_ids(void *ctx, const char *type, json_t *record)
{
    known_keys *kk = ctx;
    const char *hex = json_string_value(json_object_get(record, "KeyId"));
    const char *run_id = json_string_value(json_object_get(record, "RunId"));
    const char *id = json_string_value(json_object_get(record, "Id"));
    if (strcmp(type, "H") == 0 && run_id != NULL)
        snprintf(kk->run_id, sizeof kk->run_id, "%s", run_id);
    if (strcmp(type, "K") == 0 && hex != NULL)
        idset_insert(kk->ids, hex);
    if (strcmp(type, "H") != 0 && id != NULL && kk->run_id[0] != '\0') {
        unsigned char derived[16];
        char derived_hex[33];
        recovery_derive_key_id(kk->run_id, id, derived);
        hex_encode(derived, sizeof derived, derived_hex, sizeof derived_hex, false);
        idset_insert(kk->ids, derived_hex);
    }
    return 0;
}

/* The CKA_ID of an RFC 7512 URI's id attribute (percent-decoded), as hex; false when none. */
static bool uri_id_hex(const char *uri, char hex[ID_HEX_MAX])
{
    const char *p = strncmp(uri, "pkcs11:", 7) == 0 ? uri + 7 : NULL;
    while (p != NULL && strncmp(p, "id=", 3) != 0) {
        p = strchr(p, ';');
        p = p ? p + 1 : NULL;
    }
    if (p == NULL)
        return false;
    unsigned char id[64];
    size_t n = 0;
    for (p += 3; *p != '\0' && *p != ';' && *p != '?' && n < sizeof id; p++) {
        if (*p == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            char two[3] = {p[1], p[2], '\0'};
            id[n++] = (unsigned char)strtoul(two, NULL, 16);
            p += 2;
        } else {
            id[n++] = (unsigned char)*p;
        }
    }
    id_hex(id, n, hex);
    return n > 0;
}

/* The CKA_IDs of the token keys a results file names (KeyUri). -1 with err when unreadable. */
static int collect_results(const char *path, idset *known, enroll_error *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        enroll_error_set(err, HSE_RESULTS_UNREADABLE, NULL, "cannot read the results file %s",
                         path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0, bad = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        json_t *v = json_loads(line, 0, NULL);
        if (v == NULL) {
            bad++;
            continue;
        }
        const char *uri = json_string_value(json_object_get(v, "KeyUri"));
        char hex[ID_HEX_MAX];
        if (uri != NULL && uri_id_hex(uri, hex))
            idset_insert(known, hex);
        json_decref(v);
    }
    free(line);
    fclose(f);
    if (bad > 0 && bad == lineno) {
        enroll_error_set(err, HSE_RESULTS_UNREADABLE, NULL,
                         "%s is not a results file (no line is JSON)", path);
        return -1;
    }
    return 0;
}

/* The fingerprints of the keys the local CAs certified. -1 with err when a log is unreadable. */
static int collect_issuances(const config *cfg, key_history *h, size_t *logs, enroll_error *err)
{
    for (size_t i = 0; i < cfg->ca_count; i++) {
        if (cfg->cas[i].type != CA_TYPE_LOCAL || cfg->cas[i].home == NULL)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", cfg->cas[i].home, "issued.ndjson");
        if (key_history_load_log(h, path, NULL) < 0) {
            enroll_error_set(err, HSE_RESULTS_UNREADABLE, NULL,
                             "cannot read the issuance log %s of CA %s: without it a certified key "
                             "would look orphaned",
                             path, cfg->cas[i].name);
            return -1;
        }
        (*logs)++;
    }
    return 0;
}

/* The curve of a CKA_EC_PARAMS (a DER OID, or for EdDSA a PrintableString curve name). */
static int curve_nid(const unsigned char *params, size_t len)
{
    const unsigned char *p = params;
    ASN1_OBJECT *oid = d2i_ASN1_OBJECT(NULL, &p, (long)len);
    if (oid != NULL) {
        int nid = OBJ_obj2nid(oid);
        ASN1_OBJECT_free(oid);
        return nid;
    }
    for (size_t i = 0; i + 10 <= len; i++) { /* "edwards25519", "edwards448" */
        if (memcmp(params + i, "edwards448", 10) == 0)
            return NID_ED448;
        if (memcmp(params + i, "edwards255", 10) == 0)
            return NID_ED25519;
    }
    return NID_undef;
}

/* The public key of a key pair, from its public object (or, for RSA, the private one). */
static EVP_PKEY *public_key(hsm_session *session, CK_OBJECT_HANDLE private_key,
                            const unsigned char *id, size_t id_len)
{
    hsm_error herr;
    CK_OBJECT_HANDLE pub[2];
    int found =
        id_len > 0 ? hsm_find_objects(session, CKO_PUBLIC_KEY, id, id_len, NULL, pub, 2, &herr) : 0;
    CK_OBJECT_HANDLE obj = found == 1 ? pub[0] : private_key;
    CK_ULONG type;
    if (hsm_get_ulong(session, obj, CKA_KEY_TYPE, &type, &herr) != 0)
        return NULL;
    enroll_error err;
    EVP_PKEY *key = NULL;
    unsigned char *a = NULL, *b = NULL;
    size_t a_len = 0, b_len = 0;
    if (type == CKK_RSA) {
        if (hsm_get_attribute(session, obj, CKA_MODULUS, &a, &a_len, &herr) == 0 &&
            hsm_get_attribute(session, obj, CKA_PUBLIC_EXPONENT, &b, &b_len, &herr) == 0)
            key = pubkey_from_rsa(a, a_len, b, b_len, &err);
    } else if ((type == CKK_EC || type == CKK_EC_EDWARDS) && found == 1 &&
               hsm_get_attribute(session, obj, CKA_EC_PARAMS, &a, &a_len, &herr) == 0 &&
               hsm_get_attribute(session, obj, CKA_EC_POINT, &b, &b_len, &herr) == 0) {
        int nid = curve_nid(a, a_len);
        key = type == CKK_EC ? pubkey_from_ec_point(nid, b, b_len, &err)
                             : pubkey_from_eddsa(nid, b, b_len, &err);
    }
    free(a);
    free(b);
    return key;
}

/* True when a local CA certified the key (its SubjectPublicKeyInfo's SHA-256 is logged). */
static bool certified(const key_history *h, hsm_session *session, CK_OBJECT_HANDLE private_key,
                      const unsigned char *id, size_t id_len)
{
    EVP_PKEY *key = public_key(session, private_key, id, id_len);
    X509_PUBKEY *spki = NULL;
    unsigned char fingerprint[32];
    bool yes = key != NULL && X509_PUBKEY_set(&spki, key) == 1 &&
               spki_fingerprint(spki, fingerprint) == 0 && key_history_reused(h, fingerprint, NULL);
    X509_PUBKEY_free(spki);
    EVP_PKEY_free(key);
    return yes;
}

/* The URIs of a listing `token gc` printed: its JSON (an array of objects with Uri) or its text
 * (the last field of each line). NULL with err when it cannot be read. */
static json_t *read_listing(const char *path, enroll_error *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        enroll_error_set(err, HSE_USAGE, NULL, "cannot read --confirm %s", path);
        return NULL;
    }
    json_t *uris = json_array();
    json_error_t jerr;
    int c;
    while ((c = getc(f)) != EOF && isspace(c))
        ;
    if (c != EOF)
        ungetc(c, f);
    if (c == '[') {
        json_t *list = json_loadf(f, 0, &jerr);
        size_t i;
        json_t *k;
        json_array_foreach(list, i, k)
        {
            const char *uri = json_string_value(json_object_get(k, "Uri"));
            if (uri != NULL)
                json_array_append_new(uris, json_string(uri));
        }
        if (list == NULL || json_array_size(uris) != json_array_size(list)) {
            enroll_error_set(err, HSE_USAGE, NULL,
                             "--confirm %s is not the listing `token gc --json` printed", path);
            json_decref(uris);
            uris = NULL;
        }
        json_decref(list);
    } else {
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
            char *uri = strstr(line, "pkcs11:");
            if (uri == NULL)
                continue;
            uri[strcspn(uri, " \t\r\n")] = '\0';
            json_array_append_new(uris, json_string(uri));
        }
        free(line);
    }
    fclose(f);
    return uris;
}

/* True when the orphans are exactly the listing's keys; else err says how they differ. */
static bool listing_matches(json_t *orphans, json_t *listing, const char *path, enroll_error *err)
{
    long missing = 0, gone = 0;
    size_t i, j;
    json_t *k, *u;
    json_array_foreach(orphans, i, k)
    {
        const char *uri = json_string_value(json_object_get(k, "Uri"));
        bool listed = false;
        json_array_foreach(listing, j, u) listed = listed || strcmp(json_string_value(u), uri) == 0;
        missing += !listed;
    }
    json_array_foreach(listing, j, u)
    {
        bool orphan = false;
        json_array_foreach(orphans, i, k) orphan =
            orphan ||
            strcmp(json_string_value(json_object_get(k, "Uri")), json_string_value(u)) == 0;
        gone += !orphan;
    }
    if (missing == 0 && gone == 0 && json_array_size(orphans) == json_array_size(listing))
        return true;
    enroll_error_set(err, HSE_GC_LIST_CHANGED, NULL,
                     "nothing deleted: the orphans are not the %zu key%s %s lists (%ld orphan%s "
                     "not in it, %ld of its keys no longer orphans); list them again with the same "
                     "--journal/--results and check the new listing",
                     json_array_size(listing), json_array_size(listing) == 1 ? "" : "s", path,
                     missing, missing == 1 ? "" : "s", gone);
    return false;
}

long token_gc(engine_setup *s, const token_gc_options *o, enroll_error *err)
{
    idset known;
    idset_init(&known);
    key_history issued;
    key_history_init(&issued);
    json_t *list = json_array(), *listing = NULL;
    long orphans = -1, by_record = 0, with_certificate = 0, by_ca = 0, keys = 0;
    size_t logs = 0;
    for (size_t i = 0; i < o->journal_count; i++) {
        off_t good, torn;
        known_keys kk = {.ids = &known};
        if (journal_read(o->journals[i], collect_key_ids, &kk, &good, &torn, err) != 0)
            goto out;
    }
    for (size_t i = 0; i < o->results_count; i++)
        if (collect_results(o->results[i], &known, err) != 0)
            goto out;
    if (collect_issuances(s->cfg, &issued, &logs, err) != 0)
        goto out;
    if (o->delete &&(listing = read_listing(o->confirm, err)) == NULL)
        goto out;

    for (size_t t = 0; t < s->hsm.key_token_count; t++) {
        hsm_session session;
        hsm_context_login_session(&s->hsm, t, &session);
        hsm_error herr;
        idset certificates, privates; /* hex CKA_IDs of the token's certificates, private keys */
        idset_init(&certificates);
        idset_init(&privates);
        static const CK_OBJECT_CLASS certificate = CKO_CERTIFICATE, private_key = CKO_PRIVATE_KEY;
        CK_OBJECT_HANDLE *handles = NULL;
        long n = hsm_list_objects(&session, &certificate, &handles, &herr);
        for (long i = 0; i < n; i++) {
            unsigned char *id = NULL;
            size_t id_len = 0;
            char hex[ID_HEX_MAX];
            if (hsm_get_attribute(&session, handles[i], CKA_ID, &id, &id_len, &herr) == 0 &&
                id_len > 0) {
                id_hex(id, id_len, hex);
                idset_insert(&certificates, hex);
            }
            free(id);
        }
        free(handles);
        handles = NULL;
        if (n >= 0)
            n = hsm_list_objects(&session, &private_key, &handles, &herr);
        for (long i = 0; i < n; i++) {
            unsigned char *id = NULL, *label = NULL;
            size_t id_len = 0, label_len = 0;
            hsm_get_attribute(&session, handles[i], CKA_ID, &id, &id_len, &herr);
            hsm_get_attribute(&session, handles[i], CKA_LABEL, &label, &label_len, &herr);
            char hex[ID_HEX_MAX];
            id_hex(id, id_len, hex);
            idset_insert(&privates, hex);
            keys++;
            bool accounted = hex[0] != '\0' && idset_contains(&known, hex) == 1;
            by_record += accounted;
            if (!accounted && hex[0] != '\0' && idset_contains(&certificates, hex) == 1) {
                accounted = true;
                with_certificate++;
            }
            if (!accounted && certified(&issued, &session, handles[i], id, id_len)) {
                accounted = true;
                by_ca++;
            }
            if (!accounted && engine_owned(label, label_len))
                accounted = true;
            if (!accounted) {
                char *uri = hsm_object_uri(&s->hsm.tokens[t].desc, id, id_len, (char *)label,
                                           CKO_PRIVATE_KEY);
                json_array_append_new(list,
                                      json_pack("{s:s, s:s?, s:s, s:I, s:I, s:b}", "Label",
                                                label ? (char *)label : "", "Uri", uri, "KeyId",
                                                hex, "Token", (json_int_t)t, "Handle",
                                                (json_int_t)handles[i], "Deleted", o->delete));
                free(uri);
            }
            free(id);
            free(label);
        }
        free(handles);
        handles = NULL;
        /* A public key whose private half is gone (a kill between the two destroys). */
        static const CK_OBJECT_CLASS public_key = CKO_PUBLIC_KEY;
        if (n >= 0)
            n = hsm_list_objects(&session, &public_key, &handles, &herr);
        for (long i = 0; i < n; i++) {
            unsigned char *id = NULL, *label = NULL;
            size_t id_len = 0, label_len = 0;
            hsm_get_attribute(&session, handles[i], CKA_ID, &id, &id_len, &herr);
            hsm_get_attribute(&session, handles[i], CKA_LABEL, &label, &label_len, &herr);
            char hex[ID_HEX_MAX];
            id_hex(id, id_len, hex);
            if (id_len == 0 || idset_contains(&privates, hex) != 1) {
                char *uri = hsm_object_uri(&s->hsm.tokens[t].desc, id, id_len, (char *)label,
                                           CKO_PUBLIC_KEY);
                json_array_append_new(
                    list, json_pack("{s:s, s:s?, s:s, s:s, s:I, s:I, s:b}", "Label",
                                    label ? (char *)label : "", "Uri", uri, "Class", "public",
                                    "KeyId", hex, "Token", (json_int_t)t, "Handle",
                                    (json_int_t)handles[i], "Deleted", o->delete));
                free(uri);
            }
            free(id);
            free(label);
        }
        free(handles);
        idset_free(&certificates);
        idset_free(&privates);
        if (n < 0) {
            hsm_error_to_enroll(&herr, HSE_HSM_ERROR, err);
            goto out;
        }
    }
    if (o->delete &&!listing_matches(list, listing, o->confirm, err))
        goto out;
    orphans = (long)json_array_size(list);
    size_t i;
    json_t *k;
    json_array_foreach(list, i, k)
    {
        if (o->delete) {
            hsm_session session;
            hsm_context_login_session(
                &s->hsm, (size_t)json_integer_value(json_object_get(k, "Token")), &session);
            unsigned char id[64];
            const char *hex = json_string_value(json_object_get(k, "KeyId"));
            size_t id_len = strlen(hex) / 2;
            hsm_error herr;
            if (id_len > 0 && hex_decode(hex, id, id_len) == 0)
                hsm_destroy_keypair_by_id(&session, id, id_len);
            else /* no CKA_ID to find its public half by */
                hsm_destroy_object(
                    &session, (CK_OBJECT_HANDLE)json_integer_value(json_object_get(k, "Handle")),
                    &herr);
        }
        json_object_del(k, "Token");
        json_object_del(k, "Handle");
    }
    if (o->as_json) {
        json_dumpf(list, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        json_array_foreach(list, i, k) printf("%s  %s  %s\n", o->delete ? "deleted" : "orphan ",
                                              json_string_value(json_object_get(k, "Label")),
                                              json_string_value(json_object_get(k, "Uri")));
    }
    log_info("%ld orphan%s%s; of the %ld private key%s, %ld known to %zu journal%s and %zu "
             "results file%s, %ld with a certificate in the token, %ld certified by the CA (%zu "
             "issuance log%s)",
             orphans, orphans == 1 ? "" : "s", o->delete &&orphans ? ", deleted" : "", keys,
             keys == 1 ? "" : "s", by_record, o->journal_count, o->journal_count == 1 ? "" : "s",
             o->results_count, o->results_count == 1 ? "" : "s", with_certificate, by_ca, logs,
             logs == 1 ? "" : "s");
    if (!o->delete &&orphans > 0)
        log_info("to delete them: save this listing (--json > FILE, or the text), then run the "
                 "same command with --delete --confirm FILE");
out:
    json_decref(list);
    json_decref(listing);
    key_history_free(&issued);
    idset_free(&known);
    return orphans;
}
