/* `hsmenroll token init|list`: creating the configuration's tokens, and listing tokens and the
 * keys in them. */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ca/hsm_signer.h"
#include "batch/log.h"
#include "batch/certinfo.h"
#include "engine/setup.h"
#include "engine/store.h"
#include "engine/token_gc.h"

static const char token_usage[] =
    "usage: hsmenroll token init [options]\n"
    "       hsmenroll token list [options]\n"
    "       hsmenroll token gc --journal FILE... [--results FILE...] [--json] [options]\n"
    "       hsmenroll token gc (the same) --delete --confirm LISTING\n"
    "\n"
    "init: initializes the tokens the configuration uses (Hsm.Tokens and the local CAs' tokens)\n"
    "      that do not exist yet, or the one named by --label, in a free slot of the module.\n"
    "      User PIN: $HSMENROLL_PIN (Hsm.PinEnv) or Hsm.PinFile; SO PIN: $HSMENROLL_SO_PIN\n"
    "      (Hsm.SoPinEnv) or Hsm.SoPinFile. A PIN file that does not exist is created with a\n"
    "      random PIN (mode 0600). PINs are never taken from arguments.\n"
    "list: the module's tokens; with --keys, the private keys in the configuration's tokens\n"
    "      (label, type, storage, RFC 7512 URI), which needs the user PIN. With --aliases, the\n"
    "      aliases of the configuration's certificate stores (Stores), or of the token --label\n"
    "      names: subject, serial, not-after, key type and URI of each. With --caps, per\n"
    "      token and key type (RSA-2048 ... Ed448) whether the module can generate it (token\n"
    "      storage) and export it (export storage, and by which wrap), the journal's sealing\n"
    "      schemes, PIN length and session limit; from the mechanism list, no PIN needed.\n"
    "gc:   the private keys in the key tokens that nothing accounts for: no journal and no\n"
    "      results file given records them, no certificate object in the token has their\n"
    "      CKA_ID, no issuance of the embedded CA certified their public key. Orphans, left by\n"
    "      a crash or by an uncertified run whose journal is gone. Listed (exit 1 when any).\n"
    "      --delete destroys them only with --confirm LISTING, the listing printed before\n"
    "      (--json or text, saved to a file), and only if the orphans are still exactly its\n"
    "      keys; else nothing is deleted (GC_LIST_CHANGED, exit 2).\n"
    "\n"
    "options:\n"
    "  -c, --config FILE   configuration (default: the embedded default)\n"
    "      --home DIR      engine home of the embedded default\n"
    "      --label LABEL   init: only this token\n"
    "      --keys          list: the keys too\n"
    "      --aliases       list: the certificate stores' aliases\n"
    "      --caps          list: what each token can do per key type\n"
    "      --json          list, gc: print JSON\n"
    "      --journal FILE  gc: a run's journal (OUTDIR/journal.ndjson); repeatable\n"
    "      --results FILE  gc: a run's results (OUTDIR/results.ndjson); repeatable\n"
    "      --delete        gc: destroy the orphans (needs --confirm)\n"
    "      --confirm FILE  gc: the listing the same command printed, saved\n"
    "  -q, --quiet / -v, --verbose\n"
    "  -h, --help\n";

static const char *key_type_name(CK_ULONG type)
{
    switch (type) {
    case CKK_RSA:
        return "RSA";
    case CKK_EC:
        return "ECC";
    case CKK_EC_EDWARDS:
        return "EdDSA";
    default:
        return "other";
    }
}

static json_t *list_keys(engine_setup *s, size_t t)
{
    json_t *keys = json_array();
    hsm_session session;
    hsm_context_login_session(&s->hsm, t, &session);
    static const CK_OBJECT_CLASS private_key = CKO_PRIVATE_KEY;
    CK_OBJECT_HANDLE *handles;
    hsm_error herr;
    long n = hsm_list_objects(&session, &private_key, &handles, &herr);
    for (long i = 0; i < n; i++) {
        unsigned char *label = NULL, *id = NULL;
        size_t label_len = 0, id_len = 0;
        CK_ULONG type = 0;
        bool on_token = false, extractable = true;
        hsm_get_attribute(&session, handles[i], CKA_LABEL, &label, &label_len, &herr);
        hsm_get_attribute(&session, handles[i], CKA_ID, &id, &id_len, &herr);
        hsm_get_ulong(&session, handles[i], CKA_KEY_TYPE, &type, &herr);
        hsm_get_bool(&session, handles[i], CKA_TOKEN, &on_token, &herr);
        hsm_get_bool(&session, handles[i], CKA_EXTRACTABLE, &extractable, &herr);
        char *uri =
            hsm_object_uri(&s->hsm.tokens[t].desc, id, id_len, (char *)label, CKO_PRIVATE_KEY);
        json_array_append_new(keys, json_pack("{s:s, s:s, s:b, s:b, s:s?}", "Label",
                                              label ? (char *)label : "", "KeyType",
                                              key_type_name(type), "Persistent", on_token,
                                              "Extractable", extractable, "Uri", uri));
        free(uri);
        free(label);
        free(id);
    }
    free(handles);
    return keys;
}

/* One alias as JSON: what its current entry holds (or its first, when none is complete). */
static json_t *alias_json(const store_index *ix, const store_alias *a)
{
    const store_entry *e = store_alias_current(a);
    bool complete = e != NULL;
    if (e == NULL)
        e = &a->entries[0];
    json_t *o = json_pack("{s:s, s:b, s:s}", "Alias", a->alias, "Complete", complete, "KeyType",
                          e->key_type == (CK_KEY_TYPE)-1 ? "none" : key_type_name(e->key_type));
    json_t *info = e->cert != NULL ? certinfo_describe(e->cert) : NULL;
    if (info != NULL)
        json_object_update(o, info); /* SerialNumber, SubjectDN, NotAfter, ... */
    json_decref(info);
    char *uri =
        hsm_object_uri(&ix->token, e->id, e->id_len, a->alias,
                       e->private_key != CK_INVALID_HANDLE ? CKO_PRIVATE_KEY : CKO_CERTIFICATE);
    json_object_set_new(o, "Uri", json_string(uri ? uri : ""));
    free(uri);
    if (a->entry_count > 1)
        json_object_set_new(o, "Entries", json_integer((json_int_t)a->entry_count));
    return o;
}

/* The aliases of every configured store, or of the token `label`. */
static int list_aliases(engine_setup *s, const char *label, bool as_json, enroll_error *err)
{
    if (setup_login(s, err) != 0)
        return -1;
    json_t *out = json_array();
    size_t n = label != NULL ? 1 : s->cfg->store_count;
    if (n == 0)
        log_info("the configuration has no Stores: name a token with --label");
    for (size_t i = 0; i < n; i++) {
        const config_store *store = label != NULL ? NULL : &s->cfg->stores[i];
        const char *token = label != NULL ? label : store->token;
        json_t *entry = json_pack("{s:s?, s:s?, s:s}", "StoreId", store ? store->id : NULL, "Name",
                                  store ? store->name : NULL, "Token", token);
        json_array_append_new(out, entry);
        int t = hsm_context_token_index(&s->hsm, token);
        store_index ix;
        hsm_session session;
        if (t >= 0)
            hsm_context_login_session(&s->hsm, (size_t)t, &session);
        if (t < 0 || store_index_build(&ix, store, &session, err) != 0) {
            json_object_set_new(entry, "Error",
                                json_string(t < 0 ? "the token is not present" : err->message));
            enroll_error_clear(err);
            continue;
        }
        json_t *aliases = json_array();
        for (size_t k = 0; k < ix.alias_count; k++)
            json_array_append_new(aliases, alias_json(&ix, &ix.aliases[k]));
        json_object_set_new(entry, "Aliases", aliases);
        store_index_free(&ix);
    }
    if (as_json) {
        json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
    } else {
        size_t i;
        json_t *st;
        json_array_foreach(out, i, st)
        {
            const char *id = json_string_value(json_object_get(st, "StoreId"));
            printf("%s%s (token %s)\n", id ? "store " : "token", id ? id : "",
                   json_string_value(json_object_get(st, "Token")));
            if (json_object_get(st, "Error") != NULL) {
                printf("    %s\n", json_string_value(json_object_get(st, "Error")));
                continue;
            }
            printf("    %-24s  %-6s  %-20s  %-32s  %s\n", "ALIAS", "KEY", "NOT AFTER", "SERIAL",
                   "SUBJECT");
            size_t k;
            json_t *a;
            json_array_foreach(json_object_get(st, "Aliases"), k, a)
            {
                const char *na = json_string_value(json_object_get(a, "NotAfter"));
                const char *serial = json_string_value(json_object_get(a, "SerialNumber"));
                const char *subject = json_string_value(json_object_get(a, "SubjectDN"));
                printf("    %-24s  %-6s  %-20s  %-32s  %s%s\n",
                       json_string_value(json_object_get(a, "Alias")),
                       json_string_value(json_object_get(a, "KeyType")), na ? na : "-",
                       serial ? serial : "-", subject ? subject : "(no certificate)",
                       json_is_true(json_object_get(a, "Complete")) ? "" : "  [incomplete]");
            }
        }
    }
    json_decref(out);
    return 0;
}

/* What a token can do per key type, from its mechanism list (hsm_caps_probe, no login): key pair
 * generation (token storage) and the wrap an export would use (export storage). A run proves the
 * export wrap by a round trip before the first CSR; a module may still refuse a key type at that
 * point (then it is read or refused, as the run says). */
static json_t *token_caps(hsm_module *module, CK_SLOT_ID slot)
{
    hsm_caps caps;
    hsm_error herr;
    if (hsm_caps_probe(module, slot, &caps, &herr) != 0)
        return json_pack("{s:s}", "Error", herr.message);
    static const CK_MECHANISM_TYPE wraps[] = {CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD,
                                              CKM_AES_CBC_PAD};
    static const char *const wrap_names[] = {"CKM_AES_KEY_WRAP_KWP", "CKM_AES_KEY_WRAP_PAD",
                                             "CKM_AES_CBC_PAD"};
    const char *wrap = NULL;
    for (size_t m = 0; wrap == NULL && m < sizeof wraps / sizeof wraps[0]; m++)
        if (hsm_caps_has(&caps, wraps[m], CKF_WRAP) && hsm_caps_mechanism(&caps, CKM_AES_KEY_GEN))
            wrap = wrap_names[m];
    static const struct {
        const char *name;
        hsm_key_spec spec;
    } types[] = {
        {"RSA-2048", {HSM_KEY_RSA, 2048, 0}},
        {"RSA-3072", {HSM_KEY_RSA, 3072, 0}},
        {"RSA-4096", {HSM_KEY_RSA, 4096, 0}},
        {"ECC-P256", {HSM_KEY_EC, 0, HSM_CURVE_P256}},
        {"ECC-P384", {HSM_KEY_EC, 0, HSM_CURVE_P384}},
        {"ECC-P521", {HSM_KEY_EC, 0, HSM_CURVE_P521}},
        {"Ed25519", {HSM_KEY_ED25519, 0, 0}},
        {"Ed448", {HSM_KEY_ED448, 0, 0}},
    };
    json_t *list = json_array();
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char why[300];
        bool gen = hsm_caps_keygen(&caps, &types[i].spec, why, sizeof why);
        json_t *o = json_pack("{s:s, s:b, s:b}", "KeyType", types[i].name, "Token", gen, "Export",
                              gen && wrap != NULL);
        if (gen && wrap != NULL)
            json_object_set_new(o, "ExportWrap", json_string(wrap));
        else
            json_object_set_new(o, "Why",
                                json_string(gen ? "no AES key wrap or AES-CBC-PAD wrapping "
                                                  "mechanism (with CKM_AES_KEY_GEN)"
                                                : why));
        json_array_append_new(list, o);
    }
    /* The journal's sealing of the run's wrapping key (export runs), as the run would choose. */
    json_t *seal = json_array();
    if (hsm_caps_has(&caps, CKM_AES_CBC_PAD, CKF_ENCRYPT | CKF_DECRYPT) &&
        hsm_caps_mechanism(&caps, CKM_AES_KEY_GEN))
        json_array_append_new(seal, json_string("AES-CBC-PAD"));
    if (hsm_caps_has(&caps, CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT) &&
        hsm_caps_mechanism(&caps, CKM_AES_KEY_GEN))
        json_array_append_new(seal, json_string("AES-GCM"));
    if (hsm_caps_has(&caps, CKM_RSA_PKCS_OAEP, CKF_ENCRYPT | CKF_DECRYPT) &&
        hsm_caps_mechanism(&caps, CKM_RSA_PKCS_KEY_PAIR_GEN))
        json_array_append_new(seal, json_string("RSA-OAEP"));
    /* 0 (CK_EFFECTIVELY_INFINITE), ~0 (unavailable) and openCryptoki's ~0 - 1 state no limit. */
    bool stated = caps.max_sessions != CK_EFFECTIVELY_INFINITE && caps.max_sessions <= INT_MAX;
    json_t *out =
        json_pack("{s:o, s:o, s:[I,I], s:o, s:I}", "KeyTypes", list, "JournalSeal", seal,
                  "PinLength", (json_int_t)caps.min_pin, (json_int_t)caps.max_pin, "MaxSessions",
                  stated ? json_integer((json_int_t)caps.max_sessions) : json_null(), "Mechanisms",
                  (json_int_t)caps.count);
    hsm_caps_free(&caps);
    return out;
}

static void print_caps(json_t *caps)
{
    if (json_object_get(caps, "Error") != NULL) {
        printf("    capabilities: %s\n", json_string_value(json_object_get(caps, "Error")));
        return;
    }
    printf("    %-10s %-6s %s\n", "KEY TYPE", "TOKEN", "EXPORT");
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(caps, "KeyTypes"), i, k)
    {
        bool gen = json_is_true(json_object_get(k, "Token"));
        bool exp = json_is_true(json_object_get(k, "Export"));
        const char *why = json_string_value(json_object_get(k, "Why"));
        printf("    %-10s %-6s %s%s%s\n", json_string_value(json_object_get(k, "KeyType")),
               gen ? "yes" : "no", exp ? json_string_value(json_object_get(k, "ExportWrap")) : "no",
               exp ? "" : ": ",
               exp   ? ""
               : why ? why
                     : "");
    }
    json_t *seal = json_object_get(caps, "JournalSeal");
    printf("    journal seal offered (export runs): ");
    if (json_array_size(seal) == 0)
        printf("none (export runs need --no-journal)");
    json_array_foreach(seal, i, k) printf("%s%s", i ? ", " : "", json_string_value(k));
    json_t *max = json_object_get(caps, "MaxSessions");
    if (!json_is_integer(max))
        max = NULL;
    json_t *pin = json_object_get(caps, "PinLength");
    char sessions[64] = "no session limit stated";
    if (max != NULL)
        snprintf(sessions, sizeof sessions, "at most %lld sessions",
                 (long long)json_integer_value(max));
    printf("\n    PIN length %lld-%lld, %s, %lld mechanisms\n",
           (long long)json_integer_value(json_array_get(pin, 0)),
           (long long)json_integer_value(json_array_get(pin, 1)), sessions,
           (long long)json_integer_value(json_object_get(caps, "Mechanisms")));
}

static int list(engine_setup *s, bool with_keys, bool with_caps, bool as_json, enroll_error *err)
{
    hsm_error herr;
    hsm_module *module = s->module;
    hsm_token_desc tokens[64];
    int n = hsm_module_list_tokens(module, tokens, 64, &herr);
    if (n < 0) {
        hsm_error_to_enroll(&herr, HSE_HSM_MODULE, err);
        return -1;
    }
    json_t *out = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:I, s:b}", "Label",
                                             tokens[i].label, "Serial", tokens[i].serial,
                                             "Manufacturer", tokens[i].manufacturer, "Model",
                                             tokens[i].model, "Slot", (json_int_t)tokens[i].slot,
                                             "Initialized", tokens[i].initialized));
        if (with_caps && tokens[i].initialized)
            json_object_set_new(json_array_get(out, (size_t)i), "Capabilities",
                                token_caps(module, tokens[i].slot));
    }
    if (with_keys) {
        if (setup_login(s, err) != 0) {
            json_decref(out);
            return -1;
        }
        size_t i;
        json_t *t;
        json_array_foreach(out, i, t)
        {
            int index =
                hsm_context_token_index(&s->hsm, json_string_value(json_object_get(t, "Label")));
            /* The token opened under that label, not another one carrying it too. */
            if (index >= 0 && (json_int_t)s->hsm.tokens[index].desc.slot ==
                                  json_integer_value(json_object_get(t, "Slot")))
                json_object_set_new(t, "Keys", list_keys(s, (size_t)index));
        }
    }
    if (as_json) {
        json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
    } else {
        printf("%-32s  %-16s  %-10s  %s\n", "TOKEN", "SERIAL", "SLOT", "MODEL");
        size_t i;
        json_t *t;
        json_array_foreach(out, i, t)
        {
            if (!json_is_true(json_object_get(t, "Initialized")))
                continue;
            printf("%-32s  %-16s  %-10lld  %s (%s)\n",
                   json_string_value(json_object_get(t, "Label")),
                   json_string_value(json_object_get(t, "Serial")),
                   (long long)json_integer_value(json_object_get(t, "Slot")),
                   json_string_value(json_object_get(t, "Model")),
                   json_string_value(json_object_get(t, "Manufacturer")));
            if (json_object_get(t, "Capabilities") != NULL)
                print_caps(json_object_get(t, "Capabilities"));
            json_t *keys = json_object_get(t, "Keys");
            size_t k;
            json_t *key;
            json_array_foreach(keys, k, key)
            {
                printf("    %-28s %-6s %-10s %s\n",
                       json_string_value(json_object_get(key, "Label")),
                       json_string_value(json_object_get(key, "KeyType")),
                       json_is_true(json_object_get(key, "Persistent")) ? "token" : "session",
                       json_string_value(json_object_get(key, "Uri")));
            }
        }
    }
    json_decref(out);
    return 0;
}

int cli_token(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"home", required_argument, NULL, 'H'},
        {"label", required_argument, NULL, 'L'},
        {"keys", no_argument, NULL, 'k'},
        {"aliases", no_argument, NULL, 'A'},
        {"json", no_argument, NULL, 'j'},
        {"journal", required_argument, NULL, 'J'},
        {"delete", no_argument, NULL, 'D'},
        {"results", required_argument, NULL, 'R'},
        {"confirm", required_argument, NULL, 'C'},
        {"caps", no_argument, NULL, 'P'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *label = NULL;
    cli_common common = {0};
    bool with_keys = false, as_json = false, delete = false, aliases = false, with_caps = false;
    const char *journals[64], *results[64];
    token_gc_options gc = {.journals = journals, .results = results};
    int c, exit_code;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, options, NULL)) != -1) {
        int handled = cli_common_option(c, optarg, token_usage, &common, &exit_code);
        if (handled < 0)
            return exit_code;
        if (handled)
            continue;
        switch (c) {
        case 'L':
            label = optarg;
            break;
        case 'k':
            with_keys = true;
            break;
        case 'A':
            aliases = true;
            break;
        case 'P':
            with_caps = true;
            break;
        case 'j':
            as_json = true;
            break;
        case 'J':
        case 'R':
            if ((c == 'J' ? gc.journal_count : gc.results_count) == 64) {
                cli_say("hsmenroll token gc: at most 64 %s\n",
                        c == 'J' ? "journals" : "results files");
                return EXIT_NOTHING_DONE;
            }
            if (c == 'J')
                journals[gc.journal_count++] = optarg;
            else
                results[gc.results_count++] = optarg;
            break;
        case 'C':
            gc.confirm = optarg;
            break;
        case 'D':
            delete = true;
            break;
        }
    }
    static const char *const words[] = {"init", "list", "gc", NULL};
    int operand = cli_operand(argc, argv, token_usage, words);
    if (operand < 0)
        return EXIT_NOTHING_DONE;
    bool init = operand == 0;
    cli_set_verbosity(common.quiet, common.verbose);
    engine_setup s;
    enroll_error err;
    enroll_error_clear(&err);
    int rc = EXIT_NOTHING_DONE;
    if (setup_config(&s, common.config_path, common.home, &err) != 0)
        goto done;
    if (operand == 2) {
        if (gc.journal_count + gc.results_count == 0) {
            enroll_error_set(&err, HSE_USAGE, NULL,
                             "token gc needs at least one --journal or --results: without one "
                             "every key in progress would look orphaned");
            goto done;
        }
        if (delete != (gc.confirm != NULL)) {
            enroll_error_set(&err, HSE_USAGE, NULL,
                             delete ? "token gc --delete needs --confirm FILE: save the listing "
                                      "`token gc` printed (the same options, --json > FILE) and "
                                      "name it; only its keys are deleted"
                                    : "--confirm goes with --delete");
            goto done;
        }
        gc.delete = delete;
        gc.as_json = as_json;
        if (setup_module(&s, false, &err) != 0 || setup_login(&s, &err) != 0)
            goto done;
        long orphans = token_gc(&s, &gc, &err);
        rc = orphans < 0 ? EXIT_NOTHING_DONE : orphans > 0 && !delete ? EXIT_SOME_FAILED : 0;
        goto done;
    }
    if (!init && aliases) {
        if (setup_module(&s, false, &err) == 0 || s.module != NULL) {
            enroll_error_clear(&err);
            rc = list_aliases(&s, label, as_json, &err) == 0 ? 0 : EXIT_NOTHING_DONE;
        }
        goto done;
    }
    if (!init) {
        if (setup_module(&s, false, &err) == 0 || s.module != NULL) {
            enroll_error_clear(&err);
            rc = list(&s, with_keys, with_caps, as_json, &err) == 0 ? 0 : EXIT_NOTHING_DONE;
        }
        goto done;
    }
    if (label != NULL) {
        hsm_error herr;
        bool created = false;
        s.module = hsm_module_load_args(s.cfg->hsm.module, s.cfg->hsm.init_args, &herr);
        if (s.module == NULL) {
            hsm_error_to_enroll(&herr, HSE_HSM_MODULE, &err);
            goto done;
        }
        if (setup_ensure_token(&s, label, &created, &err) != 0)
            goto done;
        if (!created)
            log_info("token \"%s\" already exists", label);
    } else if (setup_module(&s, true, &err) != 0) {
        goto done;
    }
    rc = 0;
done:
    if (err.code[0] != '\0')
        log_error("%s", err.message);
    setup_free(&s);
    return rc;
}
