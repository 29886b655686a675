/* `token gc`: one pass over each key token's private and public keys, checked against the CKA_IDs
 * the given journals record (K records: keys made or imported for a request). What no journal
 * knows is an orphan: left by a crash before it was journaled, or by a run whose journal is gone;
 * so is a public key whose private half is gone (a kill between the two destroys). */
#include "engine/token_gc.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/idset.h"
#include "batch/journal.h"
#include "formats/hex.h"
#include "ca/hsm_signer.h"
#include "batch/log.h"
#include "engine/recovery.h"

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

long token_gc(engine_setup *s, const char *const *journals, size_t count, bool delete, bool as_json,
              enroll_error *err)
{
    idset known;
    idset_init(&known);
    for (size_t i = 0; i < count; i++) {
        off_t good, torn;
        known_keys kk = {.ids = &known};
        if (journal_read(journals[i], collect_key_ids, &kk, &good, &torn, err) != 0) {
            idset_free(&known);
            return -1;
        }
    }
    long orphans = 0;
    json_t *list = json_array();
    for (size_t t = 0; t < s->hsm.key_token_count; t++) {
        hsm_session session;
        hsm_context_login_session(&s->hsm, t, &session);
        static const CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
        idset privates; /* hex CKA_IDs of the private keys seen */
        idset_init(&privates);
        long n = 0;
        hsm_error herr;
        for (size_t c = 0; c < 2 && n >= 0; c++) {
            CK_OBJECT_HANDLE *handles = NULL;
            n = hsm_list_objects(&session, &classes[c], &handles, &herr);
            for (long i = 0; i < n; i++) {
                unsigned char *id = NULL, *label = NULL;
                size_t id_len = 0, label_len = 0;
                hsm_get_attribute(&session, handles[i], CKA_ID, &id, &id_len, &herr);
                hsm_get_attribute(&session, handles[i], CKA_LABEL, &label, &label_len, &herr);
                char hex[2 * 64 + 1] = ""; /* the first 64 bytes of a longer CKA_ID */
                if (id != NULL)
                    hex_encode(id, id_len < 64 ? id_len : 64, hex, sizeof hex, false);
                bool orphan;
                if (classes[c] == CKO_PRIVATE_KEY) {
                    idset_insert(&privates, hex);
                    orphan = !idset_contains(&known, hex);
                } else {
                    /* With its private half: listed (and deleted) with it, or kept with it. */
                    orphan = id_len == 0 || !idset_contains(&privates, hex);
                }
                if (orphan) {
                    orphans++;
                    char *uri = hsm_object_uri(&s->hsm.tokens[t].desc, id, id_len, (char *)label,
                                               classes[c]);
                    json_array_append_new(
                        list, json_pack("{s:s, s:s?, s:s, s:b}", "Label",
                                        label ? (char *)label : "", "Uri", uri, "Class",
                                        classes[c] == CKO_PRIVATE_KEY ? "private" : "public",
                                        "Deleted", delete));
                    free(uri);
                    if (delete) {
                        if (id_len > 0)
                            hsm_destroy_keypair_by_id(&session, id, id_len);
                        else /* no CKA_ID to find its other half by */
                            hsm_destroy_object(&session, handles[i], &herr);
                    }
                }
                free(id);
                free(label);
            }
            free(handles);
        }
        idset_free(&privates);
        if (n < 0) {
            hsm_error_to_enroll(&herr, HSE_HSM_ERROR, err);
            json_decref(list);
            idset_free(&known);
            return -1;
        }
    }
    if (as_json) {
        json_dumpf(list, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        size_t i;
        json_t *k;
        json_array_foreach(list, i, k) printf("%s  %s  %s\n", delete ? "deleted" : "orphan ",
                                              json_string_value(json_object_get(k, "Label")),
                                              json_string_value(json_object_get(k, "Uri")));
    }
    log_info("%ld orphan key%s%s (%zu keys known to %zu journal%s)", orphans,
             orphans == 1 ? "" : "s", delete &&orphans ? ", deleted" : "", known.count, count,
             count == 1 ? "" : "s");
    json_decref(list);
    idset_free(&known);
    return orphans;
}
