/* `hsmenroll bench`: a synthetic batch (count, key type, storage, format, SANs) run through the
 * real pipeline (`run`, in this process) once per worker count, reported as a table, a JSON record
 * and a Markdown report: certificates/s, latency percentiles, time per stage, time to the first
 * certificate, peak RSS. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/bench_kdf.h"
#include "cli/bench_refs.h"
#include "cli/cli.h"
#include "hsm/hsm.h"
#include "batch/log.h"
#include "engine/run.h"
#include "batch/secret.h"
#include "engine/setup.h"

static const char bench_usage[] =
    "usage: hsmenroll bench [options]\n"
    "\n"
    "Generates a synthetic batch and runs it through the real pipeline (the `run` command) once\n"
    "per worker count, then reports certificates/s, latency p50/p95/p99/max (from admission to\n"
    "result), the mean time per stage, the time to the first certificate and the peak RSS.\n"
    "By default on a throwaway CA and token (see --ca).\n"
    "\n"
    "options:\n"
    "  -n, --count N          requests per run (default 1000)\n"
    "      --key-type T       RSA, ECC, Ed25519 or Ed448 (default ECC)\n"
    "      --key-length L     RSA 2048/3072/4096, ECC 256/384/521 (default: the type's)\n"
    "      --storage S        export or token (default export)\n"
    "      --format F         PFX, PEM or DER (default PEM)\n"
    "      --sans N           DNS SANs per request (default 1)\n"
    "  -w, --workers LIST     worker counts to run, comma-separated (default: one per CPU)\n"
    "      --inflight M       requests in flight to network CAs (default 64)\n"
    "      --ca NAME          measure this CA of the configuration (--config, --home or the\n"
    "                         default home): its certificates are real, and listed in --issued\n"
    "                         for `hsmenroll revoke`. Without --ca, bench makes a throwaway CA\n"
    "                         and token in a temporary directory (on /dev/shm when there is\n"
    "                         one), removed afterwards: nothing is written to your home, tokens\n"
    "                         or CA\n"
    "      --issued FILE      with --ca: where to list the issued certificates (a results file\n"
    "                         for `hsmenroll revoke`; default DIR/issued.ndjson with --out, else\n"
    "                         hsmenroll-bench-issued-TIME.ndjson in the current directory)\n"
    "      --template NAME    template of the requests (default Default)\n"
    "      --no-journal       run without the journal\n"
    "      --out DIR          keep the batch and every run's output in DIR (default: a\n"
    "                         temporary directory, removed)\n"
    "      --json FILE        write the JSON record there ('-': standard output)\n"
    "      --markdown FILE    write a Markdown report there\n"
    "      --probe            after each run, the raw PKCS#11 probe (bench/p11probe: keygen +\n"
    "                         sign in a tight loop) on the same module, token and threads, and\n"
    "                         the ratio engine / probe\n"
    "      --floor            after each run, the floor probe (p11probe --floor: the mandatory\n"
    "                         cryptography of an export P-256 request: keygen, CSR signature,\n"
    "                         wrap, CA signature, proof-of-possession check, PBKDF2, unwrap and\n"
    "                         AES-CBC encryption of the key) on the same module, token and\n"
    "                         threads, and the ratio engine / floor\n"
    "      --ceiling          after each run, the engine's own ceiling: the same batch again\n"
    "                         with the module wrapped in p11fault (tests/tools) answering every\n"
    "                         key generation from a pool of key pairs made before the run (no\n"
    "                         HSM cost for keys), and certificates/s, per core and per CPU\n"
    "                         second; export P-256 only\n"
    "      --stock N          after each run, the stock-tool pipeline (bench/stock-pipeline.sh:\n"
    "                         pkcs11-tool keygen, openssl req through libp11, curl, PEM) for N\n"
    "                         requests with as many loops as workers, against `hsmenroll serve`\n"
    "                         on this configuration's CA, and the ratio engine / stock\n"
    "      --ca-rate LIST     CA benchmark: the batch is CSR lines with keys made beforehand\n"
    "                         in software (no HSM work), admitted at each of these rates\n"
    "                         (requests/s, comma-separated) to --ca with the first --workers\n"
    "                         count and --inflight; latency counts from each request's\n"
    "                         scheduled time (open loop: a slow CA cannot hide its stalls)\n"
    "      --hsm-concurrency N  HSM operations in flight (run --hsm-concurrency; default\n"
    "                         Hsm.Concurrency, else 32)\n"
    "      --hsm-latency LIST latency sweep: one run per value, each with the configured module\n"
    "                         wrapped in p11fault (tests/tools, next to this executable) adding\n"
    "                         that many ms (comma-separated, decimals allowed) to every\n"
    "                         C_GenerateKeyPair, C_Sign and C_WrapKey; the ratio of each run to\n"
    "                         the first (list 0 first for the zero-latency reference)\n"
    "      --kdf              only the password-based key derivations of the bundles\n"
    "                         (PBKDF2-HMAC-SHA256 and PKCS#12's MAC key, 2,048 iterations):\n"
    "                         CPU ms per derivation by the engine, by OpenSSL, and the SHA-256\n"
    "                         block function alone (the hardware's bound); -n derivations per\n"
    "                         round (default 200), five rounds taking turns\n"
    "      --plot DIR         draw throughput.png, latency-cdf.png and stages.png there\n"
    "                         (gnuplot), next to their data (runs.dat, cdf.dat, plots.gp)\n"
    "  -c, --config FILE / --home DIR / -q / -v / -h   as for run (--config and --home go with\n"
    "                         --ca)\n";

typedef struct bench_params {
    long count;
    const char *key_type, *storage, *format, *ca, *template_name;
    long key_length, sans;
    const char *workers;
    long inflight;
    bool no_journal;
    double rate;          /* the run's --rate, 0: none */
    long hsm_concurrency; /* run --hsm-concurrency, 0: the default */
    const char *module;   /* the module of the runs (the latency wrapper), NULL: configured */
    const char *tag;      /* names the run's output, NULL: from the workers and rate */
} bench_params;

/* The synthetic batch: unique Ids and subjects, the same key and output choices on every line. */
static int write_batch(const char *path, const bench_params *p)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    char key_length[64] = "";
    if (p->key_length > 0)
        snprintf(key_length, sizeof key_length, ",\"KeyLength\":%ld", p->key_length);
    char ca[300] = "";
    if (p->ca != NULL)
        snprintf(ca, sizeof ca, ",\"CertificateAuthority\":\"%s\"", p->ca);
    for (long i = 1; i <= p->count; i++) {
        fprintf(f,
                "{\"Id\":\"bench-%07ld\",\"Template\":\"%s\",\"Subject\":\"CN=bench-%07ld.bench."
                "example,O=hsmenroll bench\",\"KeyType\":\"%s\"%s,\"KeyStorage\":\"%s\","
                "\"Format\":\"%s\"%s,\"SANs\":{\"dns\":[",
                i, p->template_name, i, p->key_type, key_length, p->storage, p->format, ca);
        for (long s = 0; s < p->sans; s++)
            fprintf(f, "%s\"san%ld.bench-%07ld.bench.example\"", s ? "," : "", s, i);
        fputs("]}}\n", f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* --ca-rate: a key made in software (the CA benchmark measures the CA, not the HSM). */
static EVP_PKEY *software_key(const bench_params *p)
{
    if (strcasecmp(p->key_type, "RSA") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA",
                                 (size_t)(p->key_length > 0 ? p->key_length : 2048));
    if (strcasecmp(p->key_type, "Ed25519") == 0 || strcasecmp(p->key_type, "Ed448") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL,
                                 strcasecmp(p->key_type, "Ed448") ? "ED25519" : "ED448");
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC",
                             p->key_length == 384   ? "P-384"
                             : p->key_length == 521 ? "P-521"
                                                    : "P-256");
}

/* --ca-rate: the CSR of line i (its own key, the subject and SANs of the synthetic batch), PEM. */
static char *csr_pem(const bench_params *p, long i)
{
    EVP_PKEY *key = software_key(p);
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    GENERAL_NAMES *sans = GENERAL_NAMES_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    char cn[96];
    snprintf(cn, sizeof cn, "bench-%07ld.bench.example", i);
    int ok =
        key && req && name && sans && exts &&
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (unsigned char *)cn, -1, -1, 0) &&
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (unsigned char *)"hsmenroll bench", -1,
                                   -1, 0) &&
        X509_REQ_set_subject_name(req, name) && X509_REQ_set_pubkey(req, key);
    for (long s = 0; ok && s < p->sans; s++) {
        char dns[128];
        snprintf(dns, sizeof dns, "san%ld.%s", s, cn);
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
        ok = gn && ia5 && ASN1_STRING_set(ia5, dns, -1);
        if (ok) {
            GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
            ok = sk_GENERAL_NAME_push(sans, gn) > 0;
        } else {
            ASN1_IA5STRING_free(ia5);
            GENERAL_NAME_free(gn);
        }
    }
    X509_EXTENSION *ext = ok && p->sans > 0 ? X509V3_EXT_i2d(NID_subject_alt_name, 0, sans) : NULL;
    if (ext != NULL)
        ok = sk_X509_EXTENSION_push(exts, ext) > 0 && X509_REQ_add_extensions(req, exts);
    bool edwards =
        key && (EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 || EVP_PKEY_get_id(key) == EVP_PKEY_ED448);
    ok = ok && X509_REQ_sign(req, key, edwards ? NULL : EVP_sha256()) > 0;
    char *pem = NULL;
    BIO *mem = ok ? BIO_new(BIO_s_mem()) : NULL;
    if (mem != NULL && PEM_write_bio_X509_REQ(mem, req)) {
        char *data;
        long len = BIO_get_mem_data(mem, &data);
        pem = strndup(data, (size_t)len);
    }
    BIO_free(mem);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(sans);
    X509_NAME_free(name);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    return pem;
}

/* --ca-rate: the batch as CSR lines, one key each, made before any run starts. */
static int write_csr_batch(const char *path, const bench_params *p)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int rc = 0;
    for (long i = 1; i <= p->count && rc == 0; i++) {
        char id[32];
        snprintf(id, sizeof id, "bench-%07ld", i);
        char *pem = csr_pem(p, i);
        json_t *line =
            pem ? json_pack("{s:s, s:s, s:s, s:s, s:s}", "Id", id, "Operation", "CSR", "Template",
                            p->template_name, "CSR", pem, "Format", p->format)
                : NULL;
        if (line != NULL && p->ca != NULL)
            json_object_set_new(line, "CertificateAuthority", json_string(p->ca));
        if (line == NULL || json_dumpf(line, f, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0 ||
            fputc('\n', f) == EOF)
            rc = -1;
        json_decref(line);
        free(pem);
    }
    return fclose(f) == 0 ? rc : -1;
}

/* One run of the batch through the run API, in this process (as `run BATCH -o OUT --force
 * --progress never -q` would do it). Its figures (run_stats_json), or NULL. */
/* --ca: appends the issued lines of a run's results file to the list; their number, or -1. */
static long append_issued(const char *results, FILE *issued)
{
    FILE *f = fopen(results, "re");
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    long n = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        const char *status = json_string_value(json_object_get(o, "Status"));
        if (status != NULL && strcmp(status, "issued") == 0) {
            if (json_dumpf(o, issued, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0 ||
                fputc('\n', issued) == EOF)
                n = -1;
            else if (n >= 0)
                n++;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    return fflush(issued) == 0 ? n : -1;
}

static json_t *run_once(const char *dir, const char *batch, long workers, const bench_params *p,
                        const cli_common *common, FILE *issued, long *issued_count)
{
    char out[4096 + 128], stats[4096 + 128], tag[80];
    if (p->tag != NULL)
        snprintf(tag, sizeof tag, "%s-w%ld", p->tag, workers);
    else if (p->module != NULL)
        snprintf(tag, sizeof tag, "w%ld-l%g", workers, p->rate);
    else if (p->rate > 0)
        snprintf(tag, sizeof tag, "w%ld-r%g", workers, p->rate);
    else
        snprintf(tag, sizeof tag, "w%ld", workers);
    snprintf(out, sizeof out, "%s/out-%s", dir, tag);
    snprintf(stats, sizeof stats, "%s/stats-%s.json", dir, tag);
    run_options opt = {
        .batch_path = batch,
        .config_path = common->config_path,
        .home = common->home,
        .out_dir = out,
        .workers = (int)workers,
        .inflight = (int)p->inflight,
        .default_pattern = -1,
        .progress = PROGRESS_NEVER,
        .force = true,
        .no_journal = p->no_journal,
        .rate = p->module != NULL ? 0 : p->rate,
        .hsm_concurrency = (int)p->hsm_concurrency,
        .module = p->module,
    };
    log_level level = log_get_level();
    log_set_level(LOG_ERROR);
    run *r = NULL;
    enroll_error err;
    enroll_error_clear(&err);
    json_t *doc = NULL;
    int rc = EXIT_NOTHING_DONE;
    struct rusage before, after;
    if (run_open(&r, &opt, &err) == 0 && getrusage(RUSAGE_SELF, &before) == 0 &&
        run_execute(r, &err) == 0 && getrusage(RUSAGE_SELF, &after) == 0) {
        rc = run_finish(r);
        doc = run_stats_json(r);
        /* CPU time of this process during the run (the engine and an in-process module): per
         * certificate, it does not depend on what else the machine runs. */
        double cpu = (double)(after.ru_utime.tv_sec - before.ru_utime.tv_sec) +
                     (double)(after.ru_stime.tv_sec - before.ru_stime.tv_sec) +
                     (double)(after.ru_utime.tv_usec - before.ru_utime.tv_usec) / 1e6 +
                     (double)(after.ru_stime.tv_usec - before.ru_stime.tv_usec) / 1e6;
        double certificates = json_number_value(json_object_get(doc, "Issued"));
        if (doc != NULL && certificates > 0)
            json_object_set_new(doc, "CpuMsPerCertificate", json_real(cpu * 1000 / certificates));
        if (doc != NULL && json_dump_file(doc, stats, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
            log_error("cannot write %s", stats);
    }
    run_close(r);
    log_set_level(level);
    if (issued != NULL) {
        char results[4096 + 160];
        snprintf(results, sizeof results, "%s/results.ndjson", out);
        long n = append_issued(results, issued);
        if (n < 0 && access(results, F_OK) == 0)
            log_error("bench: cannot list the certificates of %s", results);
        else if (n > 0)
            *issued_count += n;
    }
    if (doc == NULL)
        log_error("bench: the run with %ld workers ended with %d and no figures%s%s", workers, rc,
                  err.code[0] ? ": " : "", err.message);
    else if (rc != 0)
        log_error("bench: the run with %ld workers ended with %d (see %s/results.ndjson)", workers,
                  rc, out);
    return doc;
}

static double num(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    if (b != NULL)
        v = json_object_get(v, b);
    return json_number_value(v);
}

static void print_table(FILE *f, json_t *runs, bool markdown)
{
    if (markdown)
        fputs("| workers | cert/s | p50 ms | p95 ms | p99 ms | max ms | first cert ms | peak RSS "
              "MiB | parse | keygen | csr | submit | bundle | write | journal | raw probe /s | "
              "engine / probe | stock pipeline /s | engine / stock | floor /s | engine / floor | "
              "ceiling /s | engine / ceiling | engine / floor in CPU time | ceiling per core /s | "
              "CPU ms per cert (engine, "
              "ceiling) | HSM ms/call: over first | offered /s |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---"
              "|---|---|---|---|---|---|"
              "\n",
              f);
    else
        fprintf(f, "%7s %9s %8s %8s %8s %8s %10s %8s   %s\n", "WORKERS", "CERT/S", "P50 MS",
                "P95 MS", "P99 MS", "MAX MS", "FIRST MS", "RSS MIB",
                "MEAN MS PER STAGE (parse keygen csr submit bundle write journal)");
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        double first = num(r, "FirstCertificateMs", NULL);
        fprintf(f,
                markdown ? "| %.0f | %.1f | %.2f | %.2f | %.2f | %.2f | %.1f | %.1f |"
                         : "%7.0f %9.1f %8.2f %8.2f %8.2f %8.2f %10.1f %8.1f  ",
                num(r, "Workers", NULL), num(r, "CertificatesPerSecond", NULL),
                num(r, "LatencyMs", "P50"), num(r, "LatencyMs", "P95"), num(r, "LatencyMs", "P99"),
                num(r, "LatencyMs", "Max"), first, num(r, "PeakRssMiB", NULL));
        for (int s = 0; s < STAGE_COUNT; s++)
            fprintf(f, markdown ? " %.3f |" : " %.3f", num(r, "StageMeanMs", run_stage_name(s)));
        static const char *const refs[][3] = {{"Probe", "EngineOverProbe", "probe"},
                                              {"Stock", "EngineOverStock", "stock"},
                                              {"Floor", "EngineOverFloor", "floor"},
                                              {"Ceiling", "EngineOverCeiling", "ceiling"}};
        for (size_t k = 0; k < 4; k++) {
            json_t *ref = json_object_get(r, refs[k][0]);
            if (ref != NULL && markdown)
                fprintf(f, " %.1f | %.2f |", num(ref, "PerSecond", NULL),
                        num(ref, refs[k][1], NULL));
            else if (ref != NULL)
                fprintf(f, "%s %s %.1f/s, engine/%s %.2f", k ? "," : "  ", refs[k][2],
                        num(ref, "PerSecond", NULL), refs[k][2], num(ref, refs[k][1], NULL));
            else if (markdown)
                fputs(" - | - |", f);
        }
        json_t *floor_cpu = json_object_get(json_object_get(r, "Floor"), "EngineOverFloorCpu");
        if (markdown)
            floor_cpu ? fprintf(f, " %.2f |", json_number_value(floor_cpu)) : fputs(" - |", f);
        else if (floor_cpu)
            fprintf(f, "; engine/floor in CPU time %.2f (%.3f vs %.3f ms per request)",
                    json_number_value(floor_cpu), num(r, "CpuMsPerCertificate", NULL),
                    num(json_object_get(r, "Floor"), "CpuMsPerRequest", NULL));
        json_t *ceiling = json_object_get(r, "Ceiling");
        if (markdown && ceiling != NULL)
            fprintf(f, " %.1f (%.0f per CPU second) | %.2f, %.2f |", num(ceiling, "PerCore", NULL),
                    num(ceiling, "PerCpuSecond", NULL), num(r, "CpuMsPerCertificate", NULL),
                    num(ceiling, "CpuMsPerCertificate", NULL));
        else if (markdown)
            fputs(" - | - |", f);
        else if (ceiling != NULL)
            fprintf(f,
                    "; ceiling %.1f/s per core, %.0f per CPU second (%ld of %ld keys from the "
                    "pool); CPU ms/cert %.2f, ceiling %.2f",
                    num(ceiling, "PerCore", NULL), num(ceiling, "PerCpuSecond", NULL),
                    (long)num(ceiling, "KeysFromPool", NULL), (long)num(ceiling, "Issued", NULL),
                    num(r, "CpuMsPerCertificate", NULL), num(ceiling, "CpuMsPerCertificate", NULL));
        json_t *lat = json_object_get(r, "HsmLatencyMs");
        if (markdown)
            lat ? fprintf(f, " %g ms: %.2f |", json_number_value(lat),
                          num(r, "OverFirstLatency", NULL))
                : fputs(" - |", f);
        else if (lat)
            fprintf(f, "   HSM +%g ms/call: %.2f of the first", json_number_value(lat),
                    num(r, "OverFirstLatency", NULL));
        json_t *offered = json_object_get(r, "OfferedPerSecond");
        if (markdown)
            offered ? fprintf(f, " %.1f |", json_number_value(offered)) : fputs(" - |", f);
        else if (offered)
            fprintf(f, "   offered %.1f/s", json_number_value(offered));
        fputc('\n', f);
    }
}

/* --hsm-latency: the wrapper module (libp11fault.so built with the tests, next to this
 * executable under tests/tools, or $HSMENROLL_P11FAULT). */
static int latency_wrapper(char *out, size_t size, const cli_common *common)
{
    (void)common;
    const char *env = getenv("HSMENROLL_P11FAULT");
    if (env != NULL && *env != '\0' && strlen(env) < size) {
        snprintf(out, size, "%s", env);
        return 0;
    }
    if (bench_sibling_path("tests/tools/libp11fault.so", out, size) == 0 ||
        bench_sibling_path("libp11fault.so", out, size) == 0)
        return 0;
    log_error("bench: --hsm-latency needs libp11fault.so (built with the tests) next to this "
              "executable, or its path in HSMENROLL_P11FAULT");
    return -1;
}

/* The wrapper's configuration at path: the configured module (refs) behind it, then body
 * (p11fault's directives); P11FAULT_CONFIG points at it. 0, or -1 (logged). */
static int write_wrapper_conf(const char *path, const engine_setup *refs, const char *body)
{
    const char *module = refs->cfg->hsm.module ? refs->cfg->hsm.module : hsm_default_module_path();
    FILE *f = fopen(path, "w");
    bool ok = f != NULL && fprintf(f, "module %s\n%s", module, body) > 0;
    if (f != NULL && fclose(f) != 0)
        ok = false;
    if (!ok || setenv("P11FAULT_CONFIG", path, 1) != 0) {
        log_error("bench: cannot write %s", path);
        return -1;
    }
    return 0;
}

/* --hsm-latency: ms added to each key generation, signature and wrap. */
static int write_latency_conf(const char *path, double ms, const engine_setup *refs)
{
    char body[200];
    snprintf(body, sizeof body,
             "latency C_GenerateKeyPair %g\nlatency C_Sign %g\nlatency C_WrapKey %g\n", ms, ms, ms);
    return write_wrapper_conf(path, refs, body);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Adds {"PerSecond": rate, ratio_name: engine rate / rate} to the run one as member name; -1 when
 * the reference could not be measured. */
static int add_reference(json_t *one, const char *name, const char *ratio_name, double rate)
{
    if (!(rate > 0))
        return -1;
    json_object_set_new(one, name,
                        json_pack("{s:f, s:f}", "PerSecond", rate, ratio_name,
                                  num(one, "CertificatesPerSecond", NULL) / rate));
    return 0;
}

/* Sums the counts of a p11fault log's lines "C_GenerateKeyPair ACTION N" (one set of lines per
 * C_Finalize); -1 when the log cannot be read. */
static long pool_count(const char *log, const char *action)
{
    FILE *f = fopen(log, "r");
    if (f == NULL)
        return -1;
    char line[256], fn[64], what[64];
    long total = 0, n;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "%63s %63s %ld", fn, what, &n) == 3 &&
            strcmp(fn, "C_GenerateKeyPair") == 0 && strcmp(what, action) == 0)
            total += n;
    fclose(f);
    return total;
}

/* --ceiling: the batch once more, through p11fault answering each key generation from a pool of
 * key pairs it made at login (outside the timed part), next to the run one. Adds "Ceiling" to one:
 * the rate, engine / ceiling, the rate per core (CPU permits, at most the CPUs), the CPU time per
 * certificate, and how many keys came from the pool; -1 when it could not be measured. */
static int add_ceiling(json_t *one, const char *dir, const char *batch, long workers,
                       const bench_params *p, const cli_common *common, const engine_setup *refs,
                       const char *wrapper, FILE *issued, long *issued_count)
{
    char conf[4200], log[4200];
    snprintf(conf, sizeof conf, "%s/p11fault-ceiling-w%ld.conf", dir, workers);
    snprintf(log, sizeof log, "%s/p11fault-ceiling-w%ld.log", dir, workers);
    unlink(log);
    /* One pool per key token (the CA's token needs none when the key tokens are named). */
    char body[4400];
    snprintf(body, sizeof body, "log %s\nkeypool %ld%s%s\n", log, p->count + 16,
             refs->cfg->hsm.token_count == 1 ? " " : "",
             refs->cfg->hsm.token_count == 1 ? refs->cfg->hsm.tokens[0] : "");
    if (write_wrapper_conf(conf, refs, body) != 0)
        return -1;
    bench_params cp = *p;
    cp.module = wrapper;
    cp.tag = "ceiling";
    cp.rate = 0;
    json_t *cr = run_once(dir, batch, workers, &cp, common, issued, issued_count);
    unsetenv("P11FAULT_CONFIG");
    long served = pool_count(log, "keypool-served"), missed = pool_count(log, "keypool-missed"),
         made = pool_count(log, "keypool-made");
    double rate = num(cr, "CertificatesPerSecond", NULL);
    if (cr == NULL || !(rate > 0) || served < 0) {
        log_error("bench: the ceiling run gave no figures (see %s)", log);
        json_decref(cr);
        return -1;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long cores = workers < cpus ? workers : cpus;
    json_object_set_new(
        one, "Ceiling",
        json_pack(
            "{s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:O}", "PerSecond", rate,
            "EngineOverCeiling", num(one, "CertificatesPerSecond", NULL) / rate, "PerCore",
            rate / (double)(cores > 0 ? cores : 1), "PerCpuSecond",
            num(cr, "CpuMsPerCertificate", NULL) > 0 ? 1000 / num(cr, "CpuMsPerCertificate", NULL)
                                                     : 0.0,
            "CpuMsPerCertificate", num(cr, "CpuMsPerCertificate", NULL), "Issued",
            (json_int_t)num(cr, "Issued", NULL), "Failed", (json_int_t)num(cr, "Failed", NULL),
            "KeysFromPool", (json_int_t)served, "KeysNotFromPool", (json_int_t)missed,
            "KeysMadeBefore", (json_int_t)made, "StageMeanMs", json_object_get(cr, "StageMeanMs")));
    json_decref(cr);
    return 0;
}

/* --plot DIR: the runs' data as gnuplot input, and three PNGs drawn by gnuplot: throughput vs
 * workers, latency CDFs, mean time per stage. */
static int write_plots(const char *dir, json_t *runs)
{
    char path[4096 + 64];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/runs.dat", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    /* --hsm-latency: throughput against the latency per HSM call instead of the workers. */
    bool sweep = json_object_get(json_array_get(runs, 0), "HsmLatencyMs") != NULL;
    fprintf(f, "# %s cert/s parse keygen csr submit bundle write journal (ms)\n",
            sweep ? "hsm-latency-ms" : "workers");
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        fprintf(f, "%g %.3f", num(r, sweep ? "HsmLatencyMs" : "Workers", NULL),
                num(r, "CertificatesPerSecond", NULL));
        for (int s = 0; s < STAGE_COUNT; s++)
            fprintf(f, " %.4f", num(r, "StageMeanMs", run_stage_name(s)));
        fputc('\n', f);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/cdf.dat", dir);
    if ((f = fopen(path, "w")) == NULL)
        return -1;
    json_array_foreach(runs, i, r) /* one block per run, separated by two blank lines */
    {
        fprintf(f, "# workers %.0f: latency ms, fraction\n", num(r, "Workers", NULL));
        size_t k;
        json_t *pt;
        json_array_foreach(json_object_get(r, "LatencyCdf"), k, pt)
            fprintf(f, "%.4f %.5f\n", json_number_value(json_array_get(pt, 0)),
                    json_number_value(json_array_get(pt, 1)));
        fputs("\n\n", f);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/plots.gp", dir);
    if ((f = fopen(path, "w")) == NULL)
        return -1;
    fprintf(f,
            "set terminal png size 900,540\nset datafile commentschars '#'\nset grid\n"
            "set key outside right\n"
            "set output 'throughput.png'\nset title 'Throughput vs %s'\n"
            "set xlabel '%s'\nset ylabel 'certificates/s'\nset yrange [0:*]\n%s"
            "plot 'runs.dat' using 1:2 with linespoints title 'hsmenroll'\nset yrange [*:*]\n"
            "set output 'latency-cdf.png'\nset title 'Latency CDF (admission to result)'\n"
            "set xlabel 'latency (ms)'\nset ylabel 'fraction of requests'\nset logscale x\n"
            "set xtics auto\n"
            "plot for [i=0:%zu] 'cdf.dat' index i using 1:2 with steps title sprintf('run "
            "%%d', i+1)\n"
            "unset logscale x\nset output 'stages.png'\n"
            "set title 'Mean time per request by stage'\nset style data histograms\n"
            "set style histogram rowstacked\nset style fill solid 0.8 border -1\n"
            "set boxwidth 0.6\nset xlabel '%s'\nset ylabel 'ms per request'\n"
            "plot 'runs.dat' using 3:xtic(1) title 'parse', '' using 4 title 'keygen', "
            "'' using 5 title 'csr', '' using 6 title 'submit', '' using 7 title 'bundle', "
            "'' using 8 title 'write', '' using 9 title 'journal'\n",
            sweep ? "HSM latency" : "workers",
            sweep ? "ms added to each keygen, sign and wrap" : "workers",
            sweep ? "set xtics auto\n" : "set xtics 1\n",
            json_array_size(runs) ? json_array_size(runs) - 1 : 0,
            sweep ? "HSM ms per call" : "workers");
    fclose(f);
    char cmd[4096 + 128];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot plots.gp", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A directory on tmpfs for bench's scratch files: /dev/shm when there is one, else $TMPDIR or
 * /tmp. */
static const char *scratch_base(void)
{
    struct stat st;
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
        return "/dev/shm";
    const char *tmp = getenv("TMPDIR");
    return tmp != NULL && tmp[0] == '/' ? tmp : "/tmp";
}

/* The throwaway CA and token of a bench without --ca: an embedded-default home made in a new
 * temporary directory (its own SoftHSM configuration and token store, key token, CA token, CA,
 * generated PINs), made before the first run so that its cost is in no run's figures. The
 * operator's PINs in the environment are not given to it. 0, or -1 (logged, nothing left). */
static int make_throwaway(char *home, size_t size)
{
    snprintf(home, size, "%s/hsmenroll-bench-ca-XXXXXX", scratch_base());
    if (mkdtemp(home) == NULL) {
        log_error("bench: cannot create a temporary directory for the throwaway CA: %s",
                  strerror(errno));
        return -1;
    }
    unsetenv("HSMENROLL_PIN");
    unsetenv("HSMENROLL_SO_PIN");
    unsetenv("HSMENROLL_CA_PIN");
    engine_setup s = {0};
    enroll_error err;
    enroll_error_clear(&err);
    log_level level = log_get_level();
    log_set_level(LOG_ERROR);
    int rc = setup_config(&s, NULL, home, &err) == 0 && setup_module(&s, true, &err) == 0 &&
                     setup_login(&s, &err) == 0 && setup_local_cas(&s, true, &err) == 0
                 ? 0
                 : -1;
    setup_free(&s);
    log_set_level(level);
    if (rc != 0) {
        log_error("bench: cannot make the throwaway CA and token: %s", err.message);
        nftw(home, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        return -1;
    }
    log_info("bench: on a throwaway CA and token in %s (SoftHSM configuration "
             "%s/softhsm2.conf), removed at the end; your home, tokens and CA are not touched "
             "(--ca NAME measures a configured CA)",
             home, home);
    return 0;
}

/* --ca: the list of issued certificates, a new file (never one that exists), mode 0600 (PFX
 * lines hold passwords). Its path into path. NULL when it cannot be made (logged). */
static FILE *open_issued(const char *given, const char *kept_dir, char *path, size_t size)
{
    if (given != NULL) {
        snprintf(path, size, "%s", given);
    } else if (kept_dir != NULL) {
        snprintf(path, size, "%s/issued.ndjson", kept_dir);
    } else {
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
        snprintf(path, size, "hsmenroll-bench-issued-%s.ndjson", stamp);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        log_error("bench: cannot create %s for the list of issued certificates: %s%s", path,
                  strerror(errno), errno == EEXIST ? " (give another --issued FILE)" : "");
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    return f;
}

/* --out with the throwaway CA: its chain beside the outputs (DIR/ca-chain.pem), to verify them. */
static void keep_chain(const char *home, const char *dir)
{
    char from[4200], to[4200];
    snprintf(from, sizeof from, "%s/ca/chain.pem", home);
    snprintf(to, sizeof to, "%s/ca-chain.pem", dir);
    FILE *in = fopen(from, "re"), *out = in ? fopen(to, "we") : NULL;
    char buf[4096];
    size_t n;
    while (out != NULL && (n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, out);
    if (in == NULL || out == NULL || fclose(out) != 0)
        log_warning("bench: cannot keep the throwaway CA's chain in %s", to);
    if (in != NULL)
        fclose(in);
}

/* The JSON record to json_path ("-": standard output; NULL: nowhere). 0, or -1 (logged). */
static int write_record(json_t *record, const char *json_path)
{
    if (json_path == NULL ||
        (strcmp(json_path, "-") == 0
             ? json_dumpf(record, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER)
             : json_dump_file(record, json_path, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) == 0)
        return 0;
    log_error("bench: cannot write %s", json_path);
    return -1;
}

/* bench --kdf: the key derivations alone (cli/bench_kdf.c), no HSM and no CA. */
static int bench_kdf_only(long count, const char *json_path, bool quiet)
{
    bool json_out = json_path != NULL && strcmp(json_path, "-") == 0;
    json_t *kdf = bench_kdf(count, 2048, quiet || json_out ? NULL : stdout);
    if (kdf == NULL) {
        log_error("bench: a key derivation failed");
        return EXIT_NOTHING_DONE;
    }
    json_t *record = json_pack("{s:o}", "Kdf", kdf);
    int rc = write_record(record, json_path) == 0 ? 0 : EXIT_NOTHING_DONE;
    json_decref(record);
    return rc;
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_bench(int argc, char **argv)
{
    static const struct option options[] = {
        {"count", required_argument, NULL, 'n'},
        {"key-type", required_argument, NULL, 'K'},
        {"key-length", required_argument, NULL, 'L'},
        {"storage", required_argument, NULL, 'S'},
        {"format", required_argument, NULL, 'F'},
        {"sans", required_argument, NULL, 'N'},
        {"workers", required_argument, NULL, 'w'},
        {"inflight", required_argument, NULL, 'i'},
        {"ca", required_argument, NULL, 'A'},
        {"issued", required_argument, NULL, 'I'},
        {"template", required_argument, NULL, 'T'},
        {"no-journal", no_argument, NULL, 'J'},
        {"out", required_argument, NULL, 'o'},
        {"json", required_argument, NULL, 'j'},
        {"markdown", required_argument, NULL, 'm'},
        {"plot", required_argument, NULL, 'G'},
        {"probe", no_argument, NULL, 'B'},
        {"floor", no_argument, NULL, 'O'},
        {"ceiling", no_argument, NULL, 'E'},
        {"stock", required_argument, NULL, 'P'},
        {"ca-rate", required_argument, NULL, 'R'},
        {"hsm-concurrency", required_argument, NULL, 'C'},
        {"hsm-latency", required_argument, NULL, 'Y'},
        {"kdf", no_argument, NULL, 'D'},
        CLI_COMMON_LONG,
        {NULL, 0, NULL, 0},
    };
    bench_params p = {.count = 1000,
                      .key_type = "ECC",
                      .storage = "export",
                      .format = "PEM",
                      .template_name = "Default",
                      .sans = 1,
                      .inflight = 64};
    const char *keep = NULL, *json_path = NULL, *md_path = NULL, *plot_dir = NULL;
    const char *issued_path = NULL;
    bool with_probe = false, with_floor = false, with_ceiling = false, with_kdf = false;
    bool count_given = false;
    long stock_count = 0;
    const char *ca_rates = NULL, *hsm_latencies = NULL;
    cli_common common = {0};
    int c, exit_code;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:w:" CLI_COMMON_SHORT, options, NULL)) != -1) {
        int handled = cli_common_option(c, optarg, bench_usage, &common, &exit_code);
        if (handled < 0)
            return exit_code;
        if (handled)
            continue;
        bool bad = false;
        switch (c) {
        case 'n':
            bad = parse_long(optarg, 1, 100000000, &p.count) != 0;
            count_given = true;
            break;
        case 'K':
            p.key_type = optarg;
            break;
        case 'L':
            bad = parse_long(optarg, 1, 16384, &p.key_length) != 0;
            break;
        case 'S':
            p.storage = optarg;
            break;
        case 'F':
            p.format = optarg;
            break;
        case 'N':
            bad = parse_long(optarg, 0, 100, &p.sans) != 0;
            break;
        case 'w':
            p.workers = optarg;
            break;
        case 'i':
            bad = parse_long(optarg, 1, 100000, &p.inflight) != 0;
            break;
        case 'A':
            p.ca = optarg;
            break;
        case 'I':
            issued_path = optarg;
            break;
        case 'T':
            p.template_name = optarg;
            break;
        case 'J':
            p.no_journal = true;
            break;
        case 'o':
            keep = optarg;
            break;
        case 'j':
            json_path = optarg;
            break;
        case 'm':
            md_path = optarg;
            break;
        case 'B':
            with_probe = true;
            break;
        case 'O':
            with_floor = true;
            break;
        case 'E':
            with_ceiling = true;
            break;
        case 'P':
            bad = parse_long(optarg, 1, 1000000, &stock_count) != 0;
            break;
        case 'R':
            ca_rates = optarg;
            break;
        case 'C':
            bad = parse_long(optarg, 1, 1024, &p.hsm_concurrency) != 0;
            break;
        case 'Y':
            hsm_latencies = optarg;
            break;
        case 'D':
            with_kdf = true;
            break;
        case 'G':
            if (strchr(optarg, '\'') != NULL) {
                cli_say("hsmenroll bench: --plot: no quote in the directory name\n");
                return EXIT_NOTHING_DONE;
            }
            plot_dir = optarg;
            break;
        }
        if (bad) {
            return cli_usage_error(bench_usage, "bad value \"%s\"", optarg);
        }
    }
    if (optind != argc) {
        return cli_usage_error(bench_usage, "unexpected operand %s", argv[optind]);
    }
    cli_set_verbosity(common.quiet, common.verbose);
    if (with_kdf)
        return bench_kdf_only(count_given ? p.count : 200, json_path, common.quiet);
    /* Without --ca, a throwaway CA and token: a configuration named without --ca would be
     * silently left aside. */
    bool throwaway = p.ca == NULL;
    if (throwaway && (common.config_path != NULL || common.home != NULL)) {
        cli_say("hsmenroll bench: --config and --home name a configuration to measure: "
                "give --ca NAME with them (bench then issues real certificates from "
                "that CA and lists them for `hsmenroll revoke`); without them bench "
                "uses a throwaway CA and token\n");
        return EXIT_NOTHING_DONE;
    }
    if (throwaway && issued_path != NULL) {
        cli_say("hsmenroll bench: --issued goes with --ca (a throwaway CA's "
                "certificates need no revocation)\n");
        return EXIT_NOTHING_DONE;
    }

    long counts[16];
    size_t runs = 0;
    char workers_default[16];
    snprintf(workers_default, sizeof workers_default, "%ld", sysconf(_SC_NPROCESSORS_ONLN));
    char *list = strdup(p.workers ? p.workers : workers_default);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok && runs < 16;
         tok = strtok_r(NULL, ",", &save))
        if (parse_long(tok, 1, 1024, &counts[runs]) == 0)
            runs++;
    free(list);
    if (runs == 0) {
        cli_say("hsmenroll bench: --workers wants numbers, e.g. 1,2,4\n");
        return EXIT_NOTHING_DONE;
    }
    /* --ca-rate: one run per rate, all with the first worker count; --hsm-latency: one run per
     * latency, the same way. */
    double rates[16];
    size_t nrates = 0;
    if (ca_rates != NULL && hsm_latencies != NULL) {
        cli_say("hsmenroll bench: --ca-rate and --hsm-latency go one at a time\n");
        return EXIT_NOTHING_DONE;
    }
    if (ca_rates != NULL || hsm_latencies != NULL) {
        list = strdup(ca_rates ? ca_rates : hsm_latencies);
        for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            char *end;
            double v = strtod(tok, &end);
            if (nrates == 16 || *end != '\0' || !(v >= (ca_rates ? 0.001 : 0) && v <= 1e7)) {
                nrates = 0;
                break;
            }
            rates[nrates++] = v;
        }
        free(list);
        if (nrates == 0 || (ca_rates && (with_probe || stock_count > 0))) {
            cli_say("hsmenroll bench: --ca-rate and --hsm-latency want up to 16 numbers, "
                    "e.g. 50,100,200; --ca-rate goes without --probe and --stock\n");
            return EXIT_NOTHING_DONE;
        }
        for (size_t i = 0; i < nrates; i++)
            counts[i] = counts[0];
        runs = nrates;
    }

    if (with_ceiling &&
        (ca_rates != NULL || hsm_latencies != NULL || strcasecmp(p.key_type, "ECC") != 0 ||
         (p.key_length != 0 && p.key_length != 256) || strcasecmp(p.storage, "export") != 0)) {
        fprintf(stderr, "hsmenroll bench: --ceiling measures export P-256 requests (its pool holds "
                        "such keys), without --ca-rate and --hsm-latency\n");
        return EXIT_NOTHING_DONE;
    }
    char dir[4096];
    if (keep != NULL) {
        snprintf(dir, sizeof dir, "%s", keep);
        mkdir(dir, 0700);
    } else {
        struct stat st;
        snprintf(dir, sizeof dir, "%s/hsmenroll-bench-XXXXXX",
                 stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (mkdtemp(dir) == NULL) {
            log_error("bench: cannot create a temporary directory");
            return EXIT_NOTHING_DONE;
        }
    }
    char batch[4200];
    snprintf(batch, sizeof batch, "%s/batch.ndjson", dir);
    char fault_conf[4200], wrapper[4096];
    snprintf(fault_conf, sizeof fault_conf, "%s/p11fault.conf", dir);
    if ((hsm_latencies != NULL || with_ceiling) &&
        latency_wrapper(wrapper, sizeof wrapper, &common) != 0)
        return EXIT_NOTHING_DONE;
    if (ca_rates == NULL && write_batch(batch, &p) != 0) {
        log_error("bench: cannot write %s", batch);
        return EXIT_NOTHING_DONE;
    }
    /* What the runs use: the throwaway home, or the configuration as given (--ca). */
    cli_common use = common;
    char scratch[4096] = "", issued_file[4300] = "";
    FILE *issued = NULL;
    long issued_count = 0;
    if (throwaway) {
        if (make_throwaway(scratch, sizeof scratch) != 0) {
            if (keep == NULL)
                nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
            return EXIT_NOTHING_DONE;
        }
        use.home = scratch;
        use.config_path = NULL;
    } else if ((issued = open_issued(issued_path, keep, issued_file, sizeof issued_file)) == NULL) {
        if (keep == NULL)
            nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        return EXIT_NOTHING_DONE;
    }
    json_t *results = json_array();
    int rc = EXIT_ALL_DONE;
    engine_setup refs = {0};
    bench_server server = {.pid = -1};
    bool refs_ready = true;
    if (with_probe || with_floor || with_ceiling || stock_count > 0 || hsm_latencies != NULL) {
        enroll_error err;
        refs_ready = setup_config(&refs, use.config_path, use.home, &err) == 0;
        if (!refs_ready)
            log_error("bench: %s", err.message);
        else if (stock_count > 0 && bench_server_start(&server, dir, &use) != 0)
            refs_ready = false;
        if (!refs_ready)
            rc = EXIT_NOTHING_DONE;
    }
    for (size_t i = 0; i < runs && refs_ready; i++) {
        p.rate = nrates > 0 ? rates[i] : 0;
        if (hsm_latencies != NULL) {
            if (write_latency_conf(fault_conf, rates[i], &refs) != 0) {
                rc = EXIT_NOTHING_DONE;
                break;
            }
            p.module = wrapper;
        }
        /* A CA refuses a key it has certified before: each rate gets keys of its own, made
         * before its run starts. */
        if (ca_rates != NULL &&
            (snprintf(batch, sizeof batch, "%s/batch-r%g.ndjson", dir, p.rate) < 0 ||
             write_csr_batch(batch, &p) != 0)) {
            log_error("bench: cannot write %s", batch);
            rc = EXIT_NOTHING_DONE;
            break;
        }
        json_t *one = run_once(dir, batch, counts[i], &p, &use, issued, &issued_count);
        if (one == NULL) {
            rc = EXIT_NOTHING_DONE;
            break;
        }
        if (ca_rates != NULL)
            json_object_set_new(one, "OfferedPerSecond", json_real(p.rate));
        if (hsm_latencies != NULL) {
            json_object_set_new(one, "HsmLatencyMs", json_real(p.rate));
            json_t *first = json_array_get(results, 0);
            double zero = num(first ? first : one, "CertificatesPerSecond", NULL);
            json_object_set_new(
                one, "OverFirstLatency",
                json_real(zero > 0 ? num(one, "CertificatesPerSecond", NULL) / zero : 0));
        }
        if (num(one, "Failed", NULL) > 0)
            rc = EXIT_SOME_FAILED;
        bench_ref_params ref = {.key_type = p.key_type,
                                .key_length = p.key_length,
                                .token_storage = strcasecmp(p.storage, "token") == 0,
                                .sans = p.sans,
                                .template_name = p.template_name,
                                .threads = counts[i],
                                .count = p.count};
        if (with_probe &&
            add_reference(one, "Probe", "EngineOverProbe", bench_probe_rate(&refs, &ref)) != 0)
            rc = EXIT_NOTHING_DONE;
        ref.floor = true;
        ref.iterations = refs_ready && refs.cfg ? (long)refs.cfg->settings.pkcs12_iterations : 0;
        if (with_floor &&
            add_reference(one, "Floor", "EngineOverFloor", bench_probe_rate(&refs, &ref)) != 0)
            rc = EXIT_NOTHING_DONE;
        /* The same ratio in CPU time: what each costs per request, whatever else the machine
         * runs (two CPU-bound programs on two cores go at 2 / CPU time per request). */
        json_t *floor_ref = json_object_get(one, "Floor");
        if (floor_ref != NULL && ref.cpu_ms > 0 && num(one, "CpuMsPerCertificate", NULL) > 0) {
            json_object_set_new(floor_ref, "CpuMsPerRequest", json_real(ref.cpu_ms));
            json_object_set_new(floor_ref, "EngineOverFloorCpu",
                                json_real(ref.cpu_ms / num(one, "CpuMsPerCertificate", NULL)));
        }
        if (with_ceiling && add_ceiling(one, dir, batch, counts[i], &p, &use, &refs, wrapper,
                                        issued, &issued_count) != 0)
            rc = EXIT_NOTHING_DONE;
        else if (with_ceiling && num(json_object_get(one, "Ceiling"), "Failed", NULL) > 0)
            rc = EXIT_SOME_FAILED;
        ref.floor = false;
        ref.count = stock_count;
        if (stock_count > 0 && add_reference(one, "Stock", "EngineOverStock",
                                             bench_stock_rate(&refs, &server, &ref)) != 0)
            rc = EXIT_NOTHING_DONE;
        json_array_append_new(results, one);
    }
    bench_server_stop(&server);
    if (with_probe || with_floor || with_ceiling || stock_count > 0)
        setup_free(&refs);
    json_t *record = json_pack(
        "{s:{s:I, s:s, s:s?, s:s, s:s, s:I, s:s, s:b, s:s?}, s:{s:I}, s:o}", "Params", "Count",
        (json_int_t)p.count, "KeyType", p.key_type, "KeyLength",
        p.key_length > 0 ? NULL : "default", "Storage", p.storage, "Format", p.format, "Sans",
        (json_int_t)p.sans, "Template", p.template_name, "Journal", !p.no_journal, "Ca", p.ca,
        "Machine", "Cpus", (json_int_t)sysconf(_SC_NPROCESSORS_ONLN), "Runs", results);
    json_object_set_new(json_object_get(record, "Params"), "Mode",
                        json_string(ca_rates        ? "ca (CSR lines, software keys, --rate)"
                                    : hsm_latencies ? "hsm latency sweep (p11fault)"
                                                    : "pipeline"));
    json_object_set_new(json_object_get(record, "Params"), "ThrowawayCa", json_boolean(throwaway));
    if (issued != NULL)
        json_object_set_new(json_object_get(record, "Params"), "IssuedFile",
                            json_string(issued_file));
    if (p.key_length > 0)
        json_object_set_new(json_object_get(record, "Params"), "KeyLength",
                            json_integer(p.key_length));
    if (!common.quiet && json_array_size(results) > 0) {
        char length[32] = "";
        if (p.key_length > 0)
            snprintf(length, sizeof length, "-%ld", p.key_length);
        if (ca_rates)
            printf("CA benchmark, %ld CSR lines per run (%s%s keys made in software), %s, %ld "
                   "SAN%s, CA %s%s\n",
                   p.count, p.key_type, length, p.format, p.sans, p.sans == 1 ? "" : "s",
                   p.ca ? p.ca : "of the template", p.no_journal ? ", no journal" : "");
        else
            printf("%ld requests per run: %s%s, %s storage, %s, %ld SAN%s%s, %s%s\n", p.count,
                   p.key_type, length, p.storage, p.format, p.sans, p.sans == 1 ? "" : "s",
                   p.no_journal ? ", no journal" : "", throwaway ? "throwaway CA" : "CA ",
                   throwaway ? "" : p.ca);
        print_table(stdout, results, false);
    }
    if (write_record(record, json_path) != 0)
        rc = EXIT_NOTHING_DONE;
    if (md_path != NULL) {
        FILE *f = fopen(md_path, "w");
        if (f == NULL) {
            log_error("bench: cannot write %s", md_path);
            rc = EXIT_NOTHING_DONE;
        } else {
            fprintf(f,
                    "# hsmenroll bench\n\n%ld requests per run: %s (key length %ld, 0 = the "
                    "type's default), %s storage, %s, %ld DNS SAN(s), %s, on %ld CPUs.\n\n",
                    p.count, p.key_type, p.key_length, p.storage, p.format, p.sans,
                    p.no_journal ? "no journal" : "journaled", sysconf(_SC_NPROCESSORS_ONLN));
            print_table(f, results, true);
            fputs("\nLatency is from admission to the result line; stage times are means per "
                  "request, in ms.\n",
                  f);
            fclose(f);
        }
    }
    if (plot_dir != NULL && json_array_size(results) > 0 && write_plots(plot_dir, results) != 0) {
        log_error("bench: the plots in %s could not be drawn (is gnuplot installed?)", plot_dir);
        rc = EXIT_NOTHING_DONE;
    }
    json_decref(record);
    if (keep == NULL && nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        log_warning("bench: cannot remove %s", dir);
    if (throwaway) {
        if (keep != NULL)
            keep_chain(scratch, dir);
        if (nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
            log_warning("bench: cannot remove the throwaway CA in %s", scratch);
    }
    if (issued != NULL) {
        if (fclose(issued) != 0) {
            log_error("bench: cannot write %s", issued_file);
            rc = EXIT_NOTHING_DONE;
        }
        /* Said even with -q: real certificates were issued. */
        char hint[4200] = "";
        if (common.config_path != NULL)
            snprintf(hint, sizeof hint, " --config '%s'", common.config_path);
        else if (common.home != NULL)
            snprintf(hint, sizeof hint, " --home '%s'", common.home);
        cli_say("hsmenroll bench: %ld certificate%s issued by CA \"%s\" listed in %s; revoke "
                "them with: hsmenroll revoke '%s' -o bench-revoked --reason "
                "cessationOfOperation%s\n",
                issued_count, issued_count == 1 ? "" : "s", p.ca, issued_file, issued_file, hint);
    }
    return rc;
}
