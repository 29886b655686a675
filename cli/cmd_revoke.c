/* `hsmenroll revoke`: revokes the certificates of results files (all issued lines, or those
 * named by --id / --serial) at the CA that issued them, journaled like `run`: a killed revoke
 * goes on with --resume, and no certificate is recorded twice. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch/idset.h"
#include "batch/journal.h"
#include "batch/log.h"
#include "batch/output.h"
#include "batch/results.h"
#include "ca/ocsp.h"
#include "ca/revocation.h"
#include "ca/revoke_net.h"
#include "cli/cli.h"
#include "engine/setup.h"

static const char revoke_usage[] =
    "usage: hsmenroll revoke RESULTS.ndjson... -o OUTDIR [options]\n"
    "\n"
    "Revokes the certificates of the results of `run` (or `renew`): every issued line, or only\n"
    "those named by --id and --serial. For an embedded CA the revocation is recorded in the CA's\n"
    "home (revoked.ndjson), where `ca crl` and `serve`'s /crl and /ocsp read it; a Keyfactor CA\n"
    "gets POST /Certificates/Revoke with the line's KeyfactorID, a CFSSL CA POST\n"
    "/api/v1/cfssl/revoke with the serial and the issuer's key id. Each revocation is journaled\n"
    "(OUTDIR/journal.ndjson): a revoke that was stopped or killed goes on with --resume, and a\n"
    "certificate is never recorded twice.\n"
    "OUTDIR/revocations.ndjson gets one line per certificate: Id, SerialNumber,\n"
    "CertificateAuthority, KeyfactorID, Status (revoked or failed), Reason, RevocationDate,\n"
    "Error.\n"
    "\n"
    "options:\n"
    "  -o, --out DIR        output directory (revocations.ndjson, journal.ndjson)\n"
    "      --id ID          revoke the line with this Id (repeatable)\n"
    "      --serial HEX     revoke the certificate with this serial number (repeatable)\n"
    "      --reason R       an RFC 5280 reason: unspecified (default), keyCompromise,\n"
    "                       cACompromise, affiliationChanged, superseded, cessationOfOperation,\n"
    "                       certificateHold, privilegeWithdrawn, aACompromise\n"
    "      --resume         continue the revoke journaled in OUTDIR (its failed lines stay "
    "failed)\n"
    "      --retry-failed   with --resume: also try again the lines that failed\n"
    "      --force          start over in an OUTDIR that holds revocations\n"
    "  -c, --config FILE    configuration (default: the embedded default)\n"
    "      --home DIR       engine home of the embedded default\n"
    "  -q, --quiet / -v, --verbose\n"
    "  -h, --help\n"
    "\n"
    "Exit status: 0 all revoked, 1 some failed, 2 nothing done, 3 stopped (SIGINT/SIGTERM).\n";

/* One certificate to revoke, from a results line. */
typedef struct target {
    char *id;
    char *ca_name;
    char *issuer_dn; /* the results' IssuerDN, or NULL */
    char serial[REVOCATION_SERIAL_MAX];
    long long keyfactor_id;
} target;

typedef struct revoke_state {
    target *targets;
    size_t count, cap;
    char **ids, **serials; /* --id, --serial */
    size_t id_count, serial_count;
    bool *id_found, *serial_found;
    idset seen; /* serials of targets */
    idset done; /* serials journaled by an earlier process of this revoke, not tried again */
} revoke_state;

static volatile sig_atomic_t stop_asked;

static void on_stop(int sig)
{
    (void)sig;
    stop_asked = 1;
}

static bool wanted(revoke_state *st, const char *id, const char *serial)
{
    if (st->id_count == 0 && st->serial_count == 0)
        return true;
    bool want = false;
    for (size_t i = 0; i < st->id_count; i++)
        if (id != NULL && strcmp(st->ids[i], id) == 0)
            want = st->id_found[i] = true;
    for (size_t i = 0; i < st->serial_count; i++)
        if (strcmp(st->serials[i], serial) == 0)
            want = st->serial_found[i] = true;
    return want;
}

/* Reads the issued lines of a results file into st. -1 with err when it cannot be read. */
static int read_results(revoke_state *st, const char *path, enroll_error *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        enroll_error_set(err, HSE_RESULTS_UNREADABLE, NULL, "cannot read %s: %s", path,
                         strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    long n = 0;
    int rc = 0;
    while (getline(&line, &cap, f) > 0) {
        n++;
        json_t *o = json_loads(line, 0, NULL);
        if (o == NULL) {
            enroll_error_set(err, HSE_RESULTS_UNREADABLE, NULL, "%s line %ld is not JSON", path, n);
            rc = -1;
            break;
        }
        const char *status = json_string_value(json_object_get(o, "Status"));
        json_t *info = json_object_get(o, "CertificateInformation");
        const char *serial = json_string_value(json_object_get(info, "SerialNumber"));
        char norm[REVOCATION_SERIAL_MAX];
        const char *id = json_string_value(json_object_get(o, "Id"));
        if (status != NULL && strcmp(status, "issued") == 0 &&
            revocation_serial_norm(serial, norm) == 0 && wanted(st, id, norm)) {
            if (idset_insert(&st->seen, norm) == 1) { /* in two files: once */
                if (st->count == st->cap) {
                    st->cap = st->cap ? 2 * st->cap : 256;
                    st->targets = realloc(st->targets, st->cap * sizeof *st->targets);
                }
                target *t = &st->targets[st->count++];
                memset(t, 0, sizeof *t);
                t->id = strdup(id ? id : "");
                const char *ca = json_string_value(json_object_get(o, "CertificateAuthority"));
                t->ca_name = strdup(ca ? ca : "");
                const char *issuer = json_string_value(json_object_get(info, "IssuerDN"));
                t->issuer_dn = issuer ? strdup(issuer) : NULL;
                strcpy(t->serial, norm);
                t->keyfactor_id = json_integer_value(json_object_get(info, "KeyfactorID"));
            }
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    return rc;
}

/* Journal records: "R" {Serial, Result} with the whole result line. A serial tried again
 * (--retry-failed) has a later record: the last one holds. */
static int visit_record(void *ctx, const char *type, json_t *record)
{
    json_t *last = ctx; /* serial -> result */
    if (strcmp(type, "R") != 0)
        return 0;
    const char *serial = json_string_value(json_object_get(record, "Serial"));
    json_t *result = json_object_get(record, "Result");
    if (serial != NULL && json_is_object(result))
        json_object_set(last, serial, result);
    return 0;
}

/* The journaled results of the interrupted revoke: written again and marked done, but with
 * retry_failed the failed ones are left to be tried again. The number of failed lines left
 * failed (or to be tried again). */
static long take_journaled(revoke_state *st, json_t *last, bool retry_failed, results_writer *out)
{
    long failed = 0;
    const char *serial;
    json_t *result;
    json_object_foreach(last, serial, result)
    {
        const char *status = json_string_value(json_object_get(result, "Status"));
        bool is_failed = status != NULL && strcmp(status, "failed") == 0;
        failed += is_failed;
        if (is_failed && retry_failed)
            continue;
        idset_insert(&st->done, serial);
        results_write(out, result);
    }
    return failed;
}

/* The command that tries the failed lines again: the same results files, output, configuration,
 * home, names and reason, with --resume --retry-failed. */
static void retry_command(const revoke_state *st, int argc, char **argv, int first,
                          const char *out_path, const cli_common *common, int reason, char *buf,
                          size_t size)
{
    buf[0] = '\0';
    cli_append_word(buf, size, cli_program);
    cli_append_word(buf, size, "revoke");
    for (int i = first; i < argc; i++)
        cli_append_word(buf, size, argv[i]);
    const char *pairs[][2] = {
        {"-o", out_path},
        {"--config", common->config_path},
        {"--home", common->home},
        {"--reason", reason != REVOKE_UNSPECIFIED ? revocation_reason_name(reason) : NULL},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        if (pairs[i][1] != NULL) {
            cli_append_word(buf, size, pairs[i][0]);
            cli_append_word(buf, size, pairs[i][1]);
        }
    for (size_t i = 0; i < st->id_count; i++) {
        cli_append_word(buf, size, "--id");
        cli_append_word(buf, size, st->ids[i]);
    }
    for (size_t i = 0; i < st->serial_count; i++) {
        cli_append_word(buf, size, "--serial");
        cli_append_word(buf, size, st->serials[i]);
    }
    cli_append_word(buf, size, "--resume");
    cli_append_word(buf, size, "--retry-failed");
}

static void iso_time(time_t t, char *buf, size_t size)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The local CAs' revocation lists and issued serials, opened at their first use. */
typedef struct ca_lists {
    revocation_list **lists;
    issued_serials **issued;
    net_revoker **net; /* network CAs (keyfactor, cfssl) */
    size_t count;
} ca_lists;

/* Revokes t; fills result. */
static void revoke_one(const config *cfg, ca_lists *cl, const target *t, int reason, json_t *result)
{
    enroll_error err;
    enroll_error_clear(&err);
    const config_ca *ca = config_find_ca_by_name(cfg, t->ca_name);
    revocation_entry entry = {
        .revoked = time(NULL), .reason = reason, .keyfactor_id = t->keyfactor_id};
    strcpy(entry.serial, t->serial);
    if (ca == NULL) {
        enroll_error_set(&err, HSE_UNKNOWN_CA, "CertificateAuthority",
                         "no CA \"%s\" in the configuration", t->ca_name);
    } else if (ca->type != CA_TYPE_LOCAL) {
        size_t k = (size_t)(ca - cfg->cas);
        if (t->keyfactor_id <= 0 && ca->type == CA_TYPE_KEYFACTOR)
            enroll_error_set(&err, HSE_REVOKE_NOT_FOUND, "KeyfactorID",
                             "the results line has no KeyfactorID: CA \"%s\" revokes by it",
                             ca->name);
        else if (cl->net[k] == NULL)
            cl->net[k] = net_revoker_open(cfg, ca, &err);
        /* err gets the CA's refusal or the transport error */
        if (err.code[0] == '\0' && ca->type == CA_TYPE_KEYFACTOR)
            net_revoker_keyfactor(cl->net[k], t->keyfactor_id, reason, entry.revoked,
                                  "hsmenroll revoke", &err);
        else if (err.code[0] == '\0')
            net_revoker_cfssl(cl->net[k], t->serial, t->issuer_dn, reason, &err);
    } else {
        size_t k = (size_t)(ca - cfg->cas);
        if (cl->lists[k] == NULL) {
            cl->lists[k] = revocation_open(ca->home, &err);
            cl->issued[k] = issued_serials_open(ca->home);
        }
        if (cl->lists[k] != NULL) {
            if (cl->issued[k] == NULL || !issued_serials_contains(cl->issued[k], t->serial)) {
                enroll_error_set(&err, HSE_REVOKE_NOT_FOUND, "SerialNumber",
                                 "CA \"%s\" has not issued serial %s", ca->name, t->serial);
            } else {
                revocation_entry earlier;
                int rc = revocation_add(cl->lists[k], &entry, &earlier, &err);
                if (rc == 1) /* revoked before (by an interrupted process of this revoke too) */
                    entry = earlier;
            }
        }
    }
    if (err.code[0] != '\0') {
        json_object_set_new(result, "Status", json_string("failed"));
        result_set_error(result, &err);
        return;
    }
    char when[32];
    iso_time(entry.revoked, when, sizeof when);
    json_object_set_new(result, "Status", json_string("revoked"));
    json_object_set_new(result, "Reason", json_string(revocation_reason_name(entry.reason)));
    json_object_set_new(result, "RevocationDate", json_string(when));
}

static json_t *result_of(const target *t)
{
    json_t *r = json_pack("{s:s, s:s, s:s}", "Id", t->id, "SerialNumber", t->serial,
                          "CertificateAuthority", t->ca_name);
    if (t->keyfactor_id > 0)
        json_object_set_new(r, "KeyfactorID", json_integer(t->keyfactor_id));
    return r;
}

int cli_revoke(int argc, char **argv)
{
    static const struct option options[] = {
        {"out", required_argument, NULL, 'o'},
        {"id", required_argument, NULL, 'I'},
        {"serial", required_argument, NULL, 'S'},
        {"reason", required_argument, NULL, 'R'},
        {"resume", no_argument, NULL, 'r'},
        {"retry-failed", no_argument, NULL, 'F'},
        {"force", no_argument, NULL, 'f'},
        CLI_COMMON_LONG,
        {NULL, 0, NULL, 0},
    };
    cli_common common = {0};
    revoke_state st;
    memset(&st, 0, sizeof st);
    idset_init(&st.seen);
    idset_init(&st.done);
    st.ids = calloc((size_t)argc + 1, sizeof *st.ids);
    st.serials = calloc((size_t)argc + 1, sizeof *st.serials);
    st.id_found = calloc((size_t)argc + 1, sizeof *st.id_found);
    st.serial_found = calloc((size_t)argc + 1, sizeof *st.serial_found);
    const char *out_path = NULL;
    int reason = REVOKE_UNSPECIFIED, c, exit_code = EXIT_NOTHING_DONE;
    bool resume = false, force = false, retry_failed = false;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT "o:", options, NULL)) != -1) {
        int handled = cli_common_option(c, optarg, revoke_usage, &common, &exit_code);
        if (handled < 0)
            goto free_args;
        if (handled)
            continue;
        switch (c) {
        case 'o':
            out_path = optarg;
            break;
        case 'I':
            st.ids[st.id_count++] = strdup(optarg);
            break;
        case 'S': {
            char norm[REVOCATION_SERIAL_MAX];
            if (revocation_serial_norm(optarg, norm) != 0) {
                cli_say("hsmenroll revoke: --serial %s: not a hexadecimal serial\n", optarg);
                goto free_args;
            }
            st.serials[st.serial_count++] = strdup(norm);
            break;
        }
        case 'R':
            if ((reason = revocation_reason_parse(optarg)) < 0) {
                cli_say("hsmenroll revoke: REVOKE_REASON: --reason %s is not an RFC 5280 reason "
                        "(keyCompromise, superseded, ...)\n",
                        optarg);
                goto free_args;
            }
            break;
        case 'r':
            resume = true;
            break;
        case 'f':
            force = true;
            break;
        case 'F':
            retry_failed = true;
            break;
        }
    }
    if ((retry_failed && !resume) || (resume && force)) {
        cli_say("hsmenroll revoke: USAGE: --retry-failed needs --resume; --resume and "
                "--force exclude each other\n");
        goto free_args;
    }
    if (optind >= argc || out_path == NULL) {
        cli_usage_error(revoke_usage, "give results files and -o OUTDIR");
        goto free_args;
    }
    cli_set_verbosity(common.quiet, common.verbose);

    engine_setup s;
    memset(&s, 0, sizeof s);
    enroll_error err;
    enroll_error_clear(&err);
    output_dir dir = {.fd = -1};
    results_writer out;
    bool out_open = false;
    journal *j = NULL;
    ca_lists cl = {0};
    char journal_path[4096], results_path[4096];
    snprintf(journal_path, sizeof journal_path, "%s/journal.ndjson", out_path);
    snprintf(results_path, sizeof results_path, "%s/revocations.ndjson", out_path);
    if (setup_config(&s, common.config_path, common.home, &err) != 0)
        goto done;
    for (int i = optind; i < argc; i++)
        if (read_results(&st, argv[i], &err) != 0)
            goto done;
    bool journaled = access(journal_path, F_OK) == 0;
    if (resume && !journaled) {
        enroll_error_set(&err, HSE_JOURNAL_UNREADABLE, NULL, "--resume: %s has no journal",
                         out_path);
        goto done;
    }
    if (!resume && !force && (journaled || access(results_path, F_OK) == 0)) {
        enroll_error_set(&err, HSE_OUTPUT_DIR, NULL,
                         "%s holds another revoke: --resume to finish it, --force to start over",
                         out_path);
        goto done;
    }
    if (output_dir_open(&dir, out_path, true, &err) != 0 ||
        results_open(&out, &dir, "revocations.ndjson", &err) != 0)
        goto done;
    out_open = true;
    long failed_before = 0; /* failed lines of the interrupted revoke */
    if (resume) {
        json_t *last = json_object();
        off_t good = 0, torn = 0;
        int rc = last ? journal_read(journal_path, visit_record, last, &good, &torn, &err) : -1;
        if (rc == 0)
            failed_before = take_journaled(&st, last, retry_failed, &out);
        json_decref(last);
        if (rc != 0 || (j = journal_reopen(journal_path, good, &err)) == NULL)
            goto done;
        if (torn > 0)
            log_info("the journal's last %lld bytes were torn: cut", (long long)torn);
        if (retry_failed && failed_before > 0)
            log_info("trying again %ld line%s that failed", failed_before,
                     failed_before == 1 ? "" : "s");
    } else {
        if (force)
            unlink(journal_path);
        if ((j = journal_create(journal_path, &err)) == NULL)
            goto done;
    }
    /* Named certificates that are in no results file: a line each. */
    for (size_t i = 0; i < st.id_count + st.serial_count; i++) {
        bool by_id = i < st.id_count;
        if (by_id ? st.id_found[i] : st.serial_found[i - st.id_count])
            continue;
        enroll_error nf;
        const char *name = by_id ? st.ids[i] : st.serials[i - st.id_count];
        enroll_error_set(&nf, HSE_REVOKE_NOT_FOUND, by_id ? "Id" : "SerialNumber",
                         "no issued line with %s %s in the results", by_id ? "Id" : "serial", name);
        json_t *line = json_pack("{s:s?, s:s?, s:s}", "Id", by_id ? name : NULL, "SerialNumber",
                                 by_id ? NULL : name, "Status", "failed");
        result_set_error(line, &nf);
        results_write(&out, line);
        json_decref(line);
    }
    cl.count = s.cfg->ca_count;
    cl.lists = calloc(cl.count, sizeof *cl.lists);
    cl.issued = calloc(cl.count, sizeof *cl.issued);
    cl.net = calloc(cl.count, sizeof *cl.net);
    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);
    long skipped = 0, stopped = 0;
    for (size_t i = 0; i < st.count; i++) {
        target *t = &st.targets[i];
        if (idset_contains(&st.done, t->serial)) {
            skipped++;
            continue;
        }
        if (stop_asked) {
            stopped++;
            continue;
        }
        json_t *line = result_of(t);
        revoke_one(s.cfg, &cl, t, reason, line);
        json_t *record = json_pack("{s:s, s:O}", "Serial", t->serial, "Result", line);
        uint64_t seq = journal_append(j, "R", record);
        json_decref(record);
        if (seq == 0 || journal_sync(j, seq) != 0) {
            err = *journal_failed(j);
            json_decref(line);
            goto done;
        }
        results_write(&out, line);
        json_decref(line);
    }
    long revoked = 0, failed = out.failed;
    revoked = out.other; /* "revoked" lines are neither issued nor failed */
    log_info("%ld revoked, %ld failed%s (%s)", revoked, failed,
             skipped ? " (counting those of the interrupted revoke)" : "", results_path);
    if (failed_before > 0 && !retry_failed)
        log_warning("%ld line%s that failed in the interrupted revoke %s left failed",
                    failed_before, failed_before == 1 ? "" : "s",
                    failed_before == 1 ? "was" : "were");
    if (failed > 0 && stopped == 0) {
        char command[8192];
        retry_command(&st, argc, argv, optind, out_path, &common, reason, command, sizeof command);
        log_warning("%ld failed; try %s again with: %s", failed, failed == 1 ? "it" : "them",
                    command);
    }
    if (stopped > 0) {
        log_error("stopped with %ld certificates left: run again with --resume", stopped);
        exit_code = EXIT_STOPPED;
    } else {
        exit_code = failed > 0 ? EXIT_SOME_FAILED : EXIT_ALL_DONE;
    }
done:
    if (err.code[0] != '\0')
        log_error("%s: %s", err.code, err.message);
    if (j != NULL && journal_close(j) != 0 && exit_code != EXIT_NOTHING_DONE)
        exit_code = EXIT_NOTHING_DONE;
    if (out_open && results_close(&out) != 0)
        exit_code = EXIT_NOTHING_DONE;
    output_dir_close(&dir);
    for (size_t k = 0; k < cl.count; k++) {
        revocation_close(cl.lists[k]);
        issued_serials_close(cl.issued[k]);
        net_revoker_close(cl.net[k]);
    }
    free(cl.net);
    free(cl.lists);
    free(cl.issued);
    setup_free(&s);
    for (size_t i = 0; i < st.count; i++) {
        free(st.targets[i].id);
        free(st.targets[i].ca_name);
        free(st.targets[i].issuer_dn);
    }
    free(st.targets);
free_args:
    for (size_t i = 0; i < st.id_count; i++)
        free(st.ids[i]);
    for (size_t i = 0; i < st.serial_count; i++)
        free(st.serials[i]);
    free(st.ids);
    free(st.serials);
    free(st.id_found);
    free(st.serial_found);
    idset_free(&st.seen);
    idset_free(&st.done);
    return exit_code;
}
