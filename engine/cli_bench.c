/* `hsmenroll bench`: a synthetic batch (count, key type, storage, format, SANs) run through the
 * real pipeline (`run`, in this process) once per worker count, reported as a table, a JSON record
 * and a Markdown report: certificates/s, latency percentiles, time per stage, time to the first
 * certificate, peak RSS. */
#include <ftw.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "hsm/hsm.h"
#include "log.h"
#include "secret.h"
#include "setup.h"

static const char bench_usage[] =
    "usage: hsmenroll bench [options]\n"
    "\n"
    "Generates a synthetic batch and runs it through the real pipeline (the `run` command) once\n"
    "per worker count, then reports certificates/s, latency p50/p95/p99/max (from admission to\n"
    "result), the mean time per stage, the time to the first certificate and the peak RSS.\n"
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
    "      --ca NAME          the CA to enroll with (default: the template's)\n"
    "      --template NAME    template of the requests (default Default)\n"
    "      --no-journal       run without the journal\n"
    "      --out DIR          keep the batch and every run's output in DIR (default: a\n"
    "                         temporary directory, removed)\n"
    "      --json FILE        write the JSON record there ('-': standard output)\n"
    "      --markdown FILE    write a Markdown report there\n"
    "      --probe            after each run, the raw PKCS#11 probe (bench/p11probe: keygen +\n"
    "                         sign in a tight loop) on the same module, token and threads, and\n"
    "                         the ratio engine / probe\n"
    "      --plot DIR         draw throughput.png, latency-cdf.png and stages.png there\n"
    "                         (gnuplot), next to their data (runs.dat, cdf.dat, plots.gp)\n"
    "  -c, --config FILE / --home DIR / -q / -v / -h   as for run\n";

typedef struct bench_params {
    long count;
    const char *key_type, *storage, *format, *ca, *template_name;
    long key_length, sans;
    const char *workers;
    long inflight;
    bool no_journal;
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

/* One run: `run BATCH -o OUT --stats-json STATS ...` in this process. Its figures, or NULL. */
static json_t *run_once(const char *dir, const char *batch, long workers, const bench_params *p,
                        const cli_common *common)
{
    char out[4096 + 64], stats[4096 + 64], w[32], inflight[32];
    snprintf(out, sizeof out, "%s/out-w%ld", dir, workers);
    snprintf(stats, sizeof stats, "%s/stats-w%ld.json", dir, workers);
    snprintf(w, sizeof w, "%ld", workers);
    snprintf(inflight, sizeof inflight, "%ld", p->inflight);
    char *argv[32];
    int argc = 0;
    argv[argc++] = "run";
    argv[argc++] = (char *)batch;
    argv[argc++] = "-o";
    argv[argc++] = out;
    argv[argc++] = "--force";
    argv[argc++] = "--progress";
    argv[argc++] = "never";
    argv[argc++] = "-q";
    argv[argc++] = "--workers";
    argv[argc++] = w;
    argv[argc++] = "--inflight";
    argv[argc++] = inflight;
    argv[argc++] = "--stats-json";
    argv[argc++] = stats;
    if (p->no_journal)
        argv[argc++] = "--no-journal";
    if (common->config_path != NULL) {
        argv[argc++] = "--config";
        argv[argc++] = (char *)common->config_path;
    }
    if (common->home != NULL) {
        argv[argc++] = "--home";
        argv[argc++] = (char *)common->home;
    }
    argv[argc] = NULL;
    int rc = cli_run(argc, argv);
    json_t *doc = json_load_file(stats, 0, NULL);
    if (doc == NULL)
        log_error("bench: the run with %ld workers ended with %d and no figures", workers, rc);
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
    static const char *stages[] = {"Parse", "Keygen", "Csr", "Submit", "Bundle", "Write"};
    if (markdown)
        fputs("| workers | cert/s | p50 ms | p95 ms | p99 ms | max ms | first cert ms | peak RSS "
              "MiB | parse | keygen | csr | submit | bundle | write | raw probe /s | engine / "
              "probe |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
              f);
    else
        fprintf(f, "%7s %9s %8s %8s %8s %8s %10s %8s   %s\n", "WORKERS", "CERT/S", "P50 MS",
                "P95 MS", "P99 MS", "MAX MS", "FIRST MS", "RSS MIB",
                "MEAN MS PER STAGE (parse keygen csr submit bundle write)");
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
        for (size_t s = 0; s < sizeof stages / sizeof stages[0]; s++)
            fprintf(f, markdown ? " %.3f |" : " %.3f", num(r, "StageMeanMs", stages[s]));
        json_t *probe = json_object_get(r, "Probe");
        if (probe != NULL)
            fprintf(f, markdown ? " %.1f | %.2f |" : "   probe %.1f/s, engine/probe %.2f",
                    num(probe, "PerSecond", NULL), num(probe, "EngineOverProbe", NULL));
        else if (markdown)
            fputs(" - | - |", f);
        fputc('\n', f);
    }
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The raw PKCS#11 probe's name for the key of the batch (bench/p11probe.c), or NULL. */
static const char *probe_key(const bench_params *p)
{
    if (strcasecmp(p->key_type, "ECC") == 0)
        return p->key_length == 384 ? "p384" : p->key_length == 521 ? "p521" : "p256";
    if (strcasecmp(p->key_type, "RSA") == 0)
        return p->key_length == 3072 ? "rsa3072" : p->key_length == 4096 ? "rsa4096" : "rsa2048";
    if (strcasecmp(p->key_type, "Ed25519") == 0)
        return "ed25519";
    if (strcasecmp(p->key_type, "Ed448") == 0)
        return "ed448";
    return NULL;
}

/* The reference point measured next to each run: bench/p11probe (key generation + one signature
 * in a tight loop, straight through the module's function list) on the same module, key token and
 * thread count; token objects when the batch keeps its keys in the token. It is found next to
 * this executable. The PIN reaches it in its environment, never in its arguments. Keygen+sign
 * per second, or a negative value. */
static double probe_rate(const engine_setup *s, const bench_params *p, long threads)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 16);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        return -1;
    strcpy(slash + 1, "p11probe");
    const char *module = s->cfg->hsm.module ? s->cfg->hsm.module : hsm_default_module_path();
    const char *key = probe_key(p);
    if (access(self, X_OK) != 0 || key == NULL || strchr(self, '\'') || strchr(module, '\'') ||
        strchr(s->cfg->hsm.tokens[0], '\'')) {
        log_error("bench: no probe at %s (or names it cannot quote)", self);
        return -1;
    }
    enroll_error err;
    char *pin = secret_read(s->cfg->hsm.pin_env, s->cfg->hsm.pin_file, "user PIN", &err);
    if (pin == NULL) {
        log_error("bench: %s", err.message);
        return -1;
    }
    setenv("HSMENROLL_BENCH_PROBE_PIN", pin, 1);
    secret_free(pin);
    char cmd[8192 + 256];
    snprintf(cmd, sizeof cmd,
             "'%s' --module '%s' --token '%s' --pin-env HSMENROLL_BENCH_PROBE_PIN --threads %ld "
             "--count %ld --key %s%s",
             self, module, s->cfg->hsm.tokens[0], threads, p->count, key,
             strcasecmp(p->storage, "token") == 0 ? " --token-objects" : "");
    FILE *f = popen(cmd, "r");
    char line[1024] = "";
    double rate = -1;
    if (f != NULL) {
        while (fgets(line, sizeof line, f) != NULL) {
            json_t *doc = json_loads(line, 0, NULL);
            if (json_is_number(json_object_get(doc, "per_second")))
                rate = json_number_value(json_object_get(doc, "per_second"));
            json_decref(doc);
        }
        if (pclose(f) != 0)
            rate = -1;
    }
    char *left = getenv("HSMENROLL_BENCH_PROBE_PIN");
    if (left != NULL)
        OPENSSL_cleanse(left, strlen(left));
    unsetenv("HSMENROLL_BENCH_PROBE_PIN");
    return rate;
}

/* --plot DIR: the runs' data as gnuplot input, and three PNGs drawn by gnuplot: throughput vs
 * workers, latency CDFs, mean time per stage. */
static int write_plots(const char *dir, json_t *runs)
{
    static const char *stages[] = {"Parse", "Keygen", "Csr", "Submit", "Bundle", "Write"};
    char path[4096 + 64];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/runs.dat", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs("# workers cert/s parse keygen csr submit bundle write (ms)\n", f);
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        fprintf(f, "%.0f %.3f", num(r, "Workers", NULL), num(r, "CertificatesPerSecond", NULL));
        for (size_t s = 0; s < sizeof stages / sizeof stages[0]; s++)
            fprintf(f, " %.4f", num(r, "StageMeanMs", stages[s]));
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
            "set output 'throughput.png'\nset title 'Throughput vs workers'\n"
            "set xlabel 'workers'\nset ylabel 'certificates/s'\nset xtics 1\n"
            "plot 'runs.dat' using 1:2 with linespoints title 'hsmenroll'\n"
            "set output 'latency-cdf.png'\nset title 'Latency CDF (admission to result)'\n"
            "set xlabel 'latency (ms)'\nset ylabel 'fraction of requests'\nset logscale x\n"
            "set xtics auto\n"
            "plot for [i=0:%zu] 'cdf.dat' index i using 1:2 with steps title sprintf('run "
            "%%d', i+1)\n"
            "unset logscale x\nset output 'stages.png'\n"
            "set title 'Mean time per request by stage'\nset style data histograms\n"
            "set style histogram rowstacked\nset style fill solid 0.8 border -1\n"
            "set boxwidth 0.6\nset xlabel 'workers'\nset ylabel 'ms per request'\n"
            "plot 'runs.dat' using 3:xtic(1) title 'parse', '' using 4 title 'keygen', "
            "'' using 5 title 'csr', '' using 6 title 'submit', '' using 7 title 'bundle', "
            "'' using 8 title 'write'\n",
            json_array_size(runs) ? json_array_size(runs) - 1 : 0);
    fclose(f);
    char cmd[4096 + 128];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot plots.gp", dir);
    return system(cmd) == 0 ? 0 : -1;
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
        {"template", required_argument, NULL, 'T'},
        {"no-journal", no_argument, NULL, 'J'},
        {"out", required_argument, NULL, 'o'},
        {"json", required_argument, NULL, 'j'},
        {"markdown", required_argument, NULL, 'm'},
        {"plot", required_argument, NULL, 'G'},
        {"probe", no_argument, NULL, 'B'},
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
    bool with_probe = false;
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
        case 'G':
            if (strchr(optarg, '\'') != NULL) {
                fprintf(stderr, "hsmenroll bench: --plot: no quote in the directory name\n");
                return EXIT_NOTHING_DONE;
            }
            plot_dir = optarg;
            break;
        }
        if (bad) {
            fprintf(stderr, "hsmenroll bench: bad value \"%s\"\n\n%s", optarg, bench_usage);
            return EXIT_NOTHING_DONE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "hsmenroll bench: unexpected operand %s\n\n%s", argv[optind], bench_usage);
        return EXIT_NOTHING_DONE;
    }
    cli_set_verbosity(common.quiet, common.verbose);

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
        fprintf(stderr, "hsmenroll bench: --workers wants numbers, e.g. 1,2,4\n");
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
    if (write_batch(batch, &p) != 0) {
        log_error("bench: cannot write %s", batch);
        return EXIT_NOTHING_DONE;
    }
    json_t *results = json_array();
    int rc = EXIT_ALL_DONE;
    for (size_t i = 0; i < runs; i++) {
        json_t *one = run_once(dir, batch, counts[i], &p, &common);
        if (one == NULL) {
            rc = EXIT_NOTHING_DONE;
            break;
        }
        if (num(one, "Failed", NULL) > 0)
            rc = EXIT_SOME_FAILED;
        if (with_probe) {
            engine_setup s;
            enroll_error err;
            double rate = setup_config(&s, common.config_path, common.home, &err) == 0
                              ? probe_rate(&s, &p, counts[i])
                              : -1;
            setup_free(&s);
            if (rate > 0)
                json_object_set_new(one, "Probe",
                                    json_pack("{s:f, s:f}", "PerSecond", rate, "EngineOverProbe",
                                              num(one, "CertificatesPerSecond", NULL) / rate));
            else
                rc = EXIT_NOTHING_DONE;
        }
        json_array_append_new(results, one);
    }
    json_t *record = json_pack(
        "{s:{s:I, s:s, s:s?, s:s, s:s, s:I, s:s, s:b, s:s?}, s:{s:I}, s:o}", "Params", "Count",
        (json_int_t)p.count, "KeyType", p.key_type, "KeyLength",
        p.key_length > 0 ? NULL : "default", "Storage", p.storage, "Format", p.format, "Sans",
        (json_int_t)p.sans, "Template", p.template_name, "Journal", !p.no_journal, "Ca", p.ca,
        "Machine", "Cpus", (json_int_t)sysconf(_SC_NPROCESSORS_ONLN), "Runs", results);
    if (p.key_length > 0)
        json_object_set_new(json_object_get(record, "Params"), "KeyLength",
                            json_integer(p.key_length));
    if (!common.quiet && json_array_size(results) > 0) {
        char length[32] = "";
        if (p.key_length > 0)
            snprintf(length, sizeof length, "-%ld", p.key_length);
        printf("%ld requests per run: %s%s, %s storage, %s, %ld SAN%s%s\n", p.count, p.key_type,
               length, p.storage, p.format, p.sans, p.sans == 1 ? "" : "s",
               p.no_journal ? ", no journal" : "");
        print_table(stdout, results, false);
    }
    if (json_path != NULL &&
        (strcmp(json_path, "-") == 0
             ? json_dumpf(record, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER)
             : json_dump_file(record, json_path, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) != 0) {
        log_error("bench: cannot write %s", json_path);
        rc = EXIT_NOTHING_DONE;
    }
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
    return rc;
}
