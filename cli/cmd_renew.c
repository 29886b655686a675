/* `hsmenroll renew`: a new run of the issued, unrevoked certificates of results files that expire
 * within DAYS: each line's Request (subject, SANs, key type, template, format) replayed with a new
 * key. Owns the selection and OUT/renew-batch.ndjson; the run itself is `run`'s. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/objects.h>

#include "batch/certinfo.h"
#include "batch/log.h"
#include "batch/output.h"
#include "ca/revocation.h"
#include "cli/cli.h"
#include "engine/hsm_context.h"
#include "engine/setup.h"
#include "engine/store.h"

#define RENEW_BATCH "renew-batch.ndjson"

static const char renew_usage[] =
    "usage: hsmenroll renew RESULTS.ndjson... --within DAYS [-o OUTDIR] [options]\n"
    "\n"
    "Enrolls again, with new keys, the certificates of the results of `run` (or an earlier\n"
    "`renew`) that are issued, not revoked, and expire within DAYS days: same subject, SANs, key\n"
    "type and size, template, CA and format (the line's Request member). An Id found in several\n"
    "files counts with its newest certificate. CSR lines are skipped (their key came from\n"
    "outside), and so are lines without a Request member. The selection is written to\n"
    "OUTDIR/" RENEW_BATCH " and run as `run` does: bundles and results.ndjson in OUTDIR,\n"
    "the same summary and exit status.\n"
    "With a configuration that has Stores, every store alias whose current certificate expires\n"
    "within DAYS is reenrolled too (a Reenrollment line: same subject and key type, --template);\n"
    "results files are then optional.\n"
    "\n"
    "options:\n"
    "      --within DAYS       renew what expires before now + DAYS days (0: what has expired)\n"
    "  -o, --out OUTDIR        output directory (default ./out)\n"
    "  -w, --workers N         worker threads, as for run\n"
    "      --template NAME     the template of store aliases' reenrollments (default: the\n"
    "                          configuration's first template)\n"
    "      --resume            finish the interrupted renew of OUTDIR (its " RENEW_BATCH ")\n"
    "      --force             start over in an OUTDIR that holds a renew\n"
    "  -c, --config FILE       configuration (default: the embedded default)\n"
    "      --home DIR          engine home of the embedded default\n"
    "  -q, --quiet / -v, --verbose\n"
    "  -h, --help\n"
    "\n"
    "Exit status: as run: 0 all renewed (or nothing to renew), 1 some failed, 2 nothing done,\n"
    "3 stopped (run again with --resume).\n";

/* "2026-12-01T13:53:50Z" (seconds and the zone optional) as a time_t; -1 when unreadable. */
static time_t parse_iso(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                            &tm.tm_hour, &tm.tm_min, &tm.tm_sec) < 5)
        return (time_t)-1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

/* Reads the issued lines of path into by_id (Id -> newest line). -1 when unreadable. */
static int read_results(json_t *by_id, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        log_error("cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    char *text = NULL;
    size_t cap = 0;
    long n = 0;
    int rc = 0;
    while (getline(&text, &cap, f) > 0) {
        n++;
        json_t *o = json_loads(text, 0, NULL);
        if (o == NULL) {
            log_error("%s line %ld is not JSON", path, n);
            rc = -1;
            break;
        }
        const char *status = json_string_value(json_object_get(o, "Status"));
        const char *id = json_string_value(json_object_get(o, "Id"));
        json_t *info = json_object_get(o, "CertificateInformation");
        time_t not_after = parse_iso(json_string_value(json_object_get(info, "NotAfter")));
        if (status != NULL && strcmp(status, "issued") == 0 && id != NULL &&
            not_after != (time_t)-1) {
            json_t *earlier = json_object_get(by_id, id);
            json_t *einfo = json_object_get(earlier, "CertificateInformation");
            if (earlier == NULL ||
                parse_iso(json_string_value(json_object_get(einfo, "NotAfter"))) < not_after)
                json_object_set(by_id, id, o);
        }
        json_decref(o);
    }
    free(text);
    fclose(f);
    return rc;
}

/* The revocation lists of the embedded CAs, opened at their first use. */
typedef struct revoked_lists {
    revocation_list **lists;
    size_t count;
} revoked_lists;

static bool is_revoked(const config *cfg, revoked_lists *rl, json_t *line)
{
    const char *ca_name = json_string_value(json_object_get(line, "CertificateAuthority"));
    const config_ca *ca = ca_name ? config_find_ca_by_name(cfg, ca_name) : NULL;
    json_t *info = json_object_get(line, "CertificateInformation");
    char serial[REVOCATION_SERIAL_MAX];
    if (ca == NULL || ca->type != CA_TYPE_LOCAL ||
        revocation_serial_norm(json_string_value(json_object_get(info, "SerialNumber")), serial) !=
            0)
        return false;
    size_t k = (size_t)(ca - cfg->cas);
    if (rl->lists[k] == NULL) {
        enroll_error err;
        enroll_error_clear(&err);
        rl->lists[k] = revocation_open(ca->home, &err);
        if (rl->lists[k] == NULL)
            return false;
    }
    return revocation_find(rl->lists[k], serial, NULL);
}

/* The key of a certificate as request members (KeyType, and KeyLength or Curve) into line. */
static void key_members(X509 *cert, json_t *line)
{
    EVP_PKEY *key = X509_get0_pubkey(cert);
    int id = key ? EVP_PKEY_get_base_id(key) : 0;
    if (id == EVP_PKEY_RSA) {
        json_object_set_new(line, "KeyType", json_string("RSA"));
        json_object_set_new(line, "KeyLength", json_integer(EVP_PKEY_get_bits(key)));
    } else if (id == EVP_PKEY_EC) {
        char group[80], oid[80];
        size_t len = 0;
        json_object_set_new(line, "KeyType", json_string("ECC"));
        if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) == 1) {
            ASN1_OBJECT *obj = OBJ_nid2obj(OBJ_sn2nid(group));
            if (obj != NULL && OBJ_obj2txt(oid, sizeof oid, obj, 1) > 0)
                json_object_set_new(line, "Curve", json_string(oid));
        }
    } else if (id == EVP_PKEY_ED25519) {
        json_object_set_new(line, "KeyType", json_string("Ed25519"));
    } else if (id == EVP_PKEY_ED448) {
        json_object_set_new(line, "KeyType", json_string("Ed448"));
    }
}

/* The aliases of the configured stores whose current certificate expires before limit, as
 * Reenrollment lines (Id store-STOREID-ALIAS) on mem, except those in taken ("StoreId/Alias").
 * A store that cannot be read is logged and left out. */
static void select_store_aliases(engine_setup *s, const char *tmpl, time_t limit, json_t *taken,
                                 FILE *mem, long *due, long *later, long *skipped)
{
    enroll_error err;
    enroll_error_clear(&err);
    if (setup_module(s, false, &err) != 0 || setup_login(s, &err) != 0) {
        log_error("renew: the stores cannot be read: %s", err.message);
        return;
    }
    for (size_t i = 0; i < s->cfg->store_count; i++) {
        const config_store *store = &s->cfg->stores[i];
        int t = hsm_context_token_index(&s->hsm, store->token);
        store_index ix;
        hsm_session session;
        if (t >= 0)
            hsm_context_login_session(&s->hsm, (size_t)t, &session);
        if (t < 0 || store_index_build(&ix, store, &session, &err) != 0) {
            log_warning("renew: store %s left out: %s", store->id,
                        t < 0 ? "its token is not present" : err.message);
            enroll_error_clear(&err);
            continue;
        }
        for (size_t k = 0; k < ix.alias_count; k++) {
            const store_alias *a = &ix.aliases[k];
            const store_entry *e = store_alias_current(a);
            if (e == NULL || e->cert == NULL)
                continue; /* no complete entry: nothing to renew */
            json_t *info = certinfo_describe(e->cert);
            const char *subject = json_string_value(json_object_get(info, "SubjectDN"));
            char key[600], id[600];
            snprintf(key, sizeof key, "%s/%s", store->id, a->alias);
            snprintf(id, sizeof id, "store-%s-%s", store->id, a->alias);
            for (char *p = id; *p; p++)
                if (!(*p == '.' || *p == '_' || *p == '-' || (*p >= '0' && *p <= '9') ||
                      (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
                    *p = '_';
            if (parse_iso(json_string_value(json_object_get(info, "NotAfter"))) > limit) {
                (*later)++;
            } else if (json_object_get(taken, key) != NULL) {
                /* renewed from a results line already */
            } else if (subject == NULL || subject[0] == '\0' || !output_name_is_safe(id)) {
                log_info("renew: store %s alias %s: skipped: %s", store->id, a->alias,
                         subject == NULL || subject[0] == '\0' ? "its certificate has no subject"
                                                               : "the alias makes no Id");
                (*skipped)++;
            } else {
                json_t *line = json_pack(
                    "{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "Id", id, "Operation", "Reenrollment",
                    "KeystoreId", store->id, "Alias", a->alias, "SubjectName", subject, "AgentGuid",
                    store->agent_guid ? store->agent_guid : "", "Template", tmpl);
                key_members(e->cert, line);
                char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
                fprintf(mem, "%s\n", text);
                free(text);
                json_decref(line);
                json_object_set_new(taken, key, json_true());
                (*due)++;
            }
            json_decref(info);
        }
        store_index_free(&ix);
    }
}

/* The batch of by_id's lines due for renewal, as NDJSON text (NULL when none); counts and
 * per-line notes logged. */
static char *select_due(engine_setup *s, const char *tmpl, json_t *by_id, long within_days,
                        long *due_out)
{
    const config *cfg = s->cfg;
    json_t *taken = json_object(); /* "StoreId/Alias" of the Reenrollment lines selected */
    revoked_lists rl = {calloc(cfg->ca_count + 1, sizeof *rl.lists), cfg->ca_count};
    time_t limit = time(NULL) + (time_t)within_days * 86400;
    char *batch = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&batch, &size);
    long due = 0, later = 0, skipped = 0;
    const char *id;
    json_t *line;
    json_object_foreach(by_id, id, line)
    {
        json_t *info = json_object_get(line, "CertificateInformation");
        if (parse_iso(json_string_value(json_object_get(info, "NotAfter"))) > limit) {
            later++;
            continue;
        }
        json_t *request = json_object_get(line, "Request");
        const char *op = json_string_value(json_object_get(request, "Operation"));
        if (is_revoked(cfg, &rl, line)) {
            log_info("renew: %s: skipped: revoked", id);
            skipped++;
        } else if (!json_is_object(request) || op == NULL) {
            log_info("renew: %s: skipped: a CSR line (its key came from outside) or a result "
                     "without a Request member",
                     id);
            skipped++;
        } else {
            json_t *out = json_pack("{s:s}", "Id", id);
            json_object_update(out, request);
            const char *store = json_string_value(json_object_get(request, "KeystoreId"));
            const char *alias = json_string_value(json_object_get(request, "Alias"));
            if (store != NULL && alias != NULL) {
                char key[600];
                snprintf(key, sizeof key, "%s/%s", store, alias);
                json_object_set_new(taken, key, json_true());
            }
            char *text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
            fprintf(mem, "%s\n", text);
            free(text);
            json_decref(out);
            due++;
        }
    }
    if (cfg->store_count > 0)
        select_store_aliases(s, tmpl, limit, taken, mem, &due, &later, &skipped);
    json_decref(taken);
    fclose(mem);
    for (size_t i = 0; i < rl.count; i++)
        if (rl.lists[i] != NULL)
            revocation_close(rl.lists[i]);
    free(rl.lists);
    log_info("renew: %ld certificate%s to renew within %ld day%s, %ld skipped, %ld expiring later",
             due, due == 1 ? "" : "s", within_days, within_days == 1 ? "" : "s", skipped, later);
    *due_out = due;
    if (due == 0) {
        free(batch);
        return NULL;
    }
    return batch;
}

int cli_renew(int argc, char **argv)
{
    static const struct option options[] = {
        {"out", required_argument, NULL, 'o'},
        {"within", required_argument, NULL, 'W'},
        {"workers", required_argument, NULL, 'w'},
        {"template", required_argument, NULL, 'T'},
        {"resume", no_argument, NULL, 'r'},
        {"force", no_argument, NULL, 'f'},
        CLI_COMMON_LONG,
        {NULL, 0, NULL, 0},
    };
    cli_common common = {0};
    const char *out_path = "out", *workers = NULL, *tmpl = NULL;
    long within = -1;
    bool resume = false, force = false;
    int c, exit_code;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT "o:w:", options, NULL)) != -1) {
        int handled = cli_common_option(c, optarg, renew_usage, &common, &exit_code);
        if (handled < 0)
            return exit_code;
        if (handled)
            continue;
        switch (c) {
        case 'o':
            out_path = optarg;
            break;
        case 'w':
            workers = optarg;
            break;
        case 'T':
            tmpl = optarg;
            break;
        case 'W': {
            char *end;
            errno = 0;
            within = strtol(optarg, &end, 10);
            if (errno != 0 || *optarg == '\0' || *end != '\0' || within < 0 || within > 36500) {
                cli_say("hsmenroll renew: --within takes days, 0 to 36500\n");
                return EXIT_NOTHING_DONE;
            }
            break;
        }
        case 'r':
            resume = true;
            break;
        case 'f':
            force = true;
            break;
        }
    }
    if (within < 0 || (resume && force)) {
        return cli_usage_error(renew_usage, "give results files (or a configuration with Stores) "
                                            "and --within DAYS (--resume excludes --force)");
    }
    cli_set_verbosity(common.quiet, common.verbose);

    char batch_path[4096];
    snprintf(batch_path, sizeof batch_path, "%s/" RENEW_BATCH, out_path);
    if (!resume) {
        engine_setup s;
        memset(&s, 0, sizeof s);
        enroll_error err;
        enroll_error_clear(&err);
        json_t *by_id = json_object();
        char *batch = NULL;
        long due = 0;
        exit_code = EXIT_NOTHING_DONE;
        if (setup_config(&s, common.config_path, common.home, &err) != 0)
            goto selected;
        for (int i = optind; i < argc; i++)
            if (read_results(by_id, argv[i]) != 0)
                goto selected;
        if (optind >= argc && s.cfg->store_count == 0) {
            enroll_error_set(&err, HSE_MISSING_FIELD, NULL,
                             "no results files, and the configuration has no Stores");
            goto selected;
        }
        if (tmpl == NULL && s.cfg->template_count > 0)
            tmpl = s.cfg->templates[0].name;
        batch = select_due(&s, tmpl ? tmpl : "", by_id, within, &due);
        if (batch == NULL) {
            log_info("renew: nothing to renew");
            exit_code = EXIT_ALL_DONE;
            goto selected;
        }
        if (!force && access(batch_path, F_OK) == 0) {
            enroll_error_set(&err, HSE_OUTPUT_DIR, NULL,
                             "%s holds another renew: --resume to finish it, --force to start "
                             "over",
                             out_path);
            goto selected;
        }
        output_dir dir = {.fd = -1};
        if (output_dir_open(&dir, out_path, true, &err) == 0 &&
            output_write_atomic(&dir, RENEW_BATCH, batch, strlen(batch), 0640, &err) == 0)
            exit_code = EXIT_ALL_DONE;
        output_dir_close(&dir);
    selected:
        if (err.code[0] != '\0')
            log_error("%s", err.message);
        free(batch);
        json_decref(by_id);
        setup_free(&s);
        if (exit_code != EXIT_ALL_DONE || due == 0)
            return exit_code;
    } else if (access(batch_path, R_OK) != 0) {
        log_error("--resume: %s has no %s", out_path, RENEW_BATCH);
        return EXIT_NOTHING_DONE;
    }

    /* The selection runs as `run` runs a batch: same output, summary, signals and exit status. */
    char *run_argv[16];
    int run_argc = 0;
    run_argv[run_argc++] = "run";
    run_argv[run_argc++] = batch_path;
    run_argv[run_argc++] = "--out";
    run_argv[run_argc++] = (char *)out_path;
    if (resume)
        run_argv[run_argc++] = "--resume";
    if (force)
        run_argv[run_argc++] = "--force";
    if (workers != NULL) {
        run_argv[run_argc++] = "--workers";
        run_argv[run_argc++] = (char *)workers;
    }
    if (common.quiet)
        run_argv[run_argc++] = "--quiet";
    if (common.verbose)
        run_argv[run_argc++] = "--verbose";
    cli_common_to_argv(&common, run_argv, &run_argc);
    run_argv[run_argc] = NULL;
    return cli_run(run_argc, run_argv);
}
