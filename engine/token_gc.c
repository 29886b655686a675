/* `token gc`: one pass over each key token's private keys, checked against the CKA_IDs the given
 * journals record (K records: keys made or imported for a request). What no journal knows is an
 * orphan: left by a crash before it was journaled, or by a run whose journal is gone. */
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

static int collect_key_ids(void *ctx, const char *type, json_t *record)
{
    const char *hex = json_string_value(json_object_get(record, "KeyId"));
    if (strcmp(type, "K") == 0 && hex != NULL)
        idset_insert(ctx, hex);
    return 0;
}

long token_gc(engine_setup *s, const char *const *journals, size_t count, bool delete, bool as_json,
              enroll_error *err)
{
    idset known;
    idset_init(&known);
    for (size_t i = 0; i < count; i++) {
        off_t good, torn;
        if (journal_read(journals[i], collect_key_ids, &known, &good, &torn, err) != 0) {
            idset_free(&known);
            return -1;
        }
    }
    long orphans = 0;
    json_t *list = json_array();
    for (size_t t = 0; t < s->hsm.key_token_count; t++) {
        hsm_session session;
        hsm_context_login_session(&s->hsm, t, &session);
        static const CK_OBJECT_CLASS private_key = CKO_PRIVATE_KEY;
        CK_OBJECT_HANDLE *handles;
        hsm_error herr;
        long n = hsm_list_objects(&session, &private_key, &handles, &herr);
        for (long i = 0; i < n; i++) {
            unsigned char *id = NULL, *label = NULL;
            size_t id_len = 0, label_len = 0;
            hsm_get_attribute(&session, handles[i], CKA_ID, &id, &id_len, &herr);
            hsm_get_attribute(&session, handles[i], CKA_LABEL, &label, &label_len, &herr);
            char hex[2 * 64 + 1] = ""; /* the first 64 bytes of a longer CKA_ID */
            if (id != NULL)
                hex_encode(id, id_len < 64 ? id_len : 64, hex, sizeof hex, false);
            if (!idset_contains(&known, hex)) {
                orphans++;
                char *uri = hsm_object_uri(&s->hsm.tokens[t].desc, id, id_len, (char *)label,
                                           CKO_PRIVATE_KEY);
                json_array_append_new(list, json_pack("{s:s, s:s?, s:b}", "Label",
                                                      label ? (char *)label : "", "Uri", uri,
                                                      "Deleted", delete));
                free(uri);
                if (delete) {
                    if (id_len > 0)
                        hsm_destroy_keypair_by_id(&session, id, id_len);
                    else /* no CKA_ID to find its public half by */
                        hsm_destroy_object(&session, handles[i], &herr);
                }
            }
            free(id);
            free(label);
        }
        free(handles);
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
