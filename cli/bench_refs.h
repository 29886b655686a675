/* The reference points `hsmenroll bench` measures next to each run, so that every figure is a
 * ratio on the same machine: the raw PKCS#11 probe (bench/p11probe.c) and the stock-tool pipeline
 * (bench/stock-pipeline.sh against `hsmenroll serve`). Both are found next to this executable. */
#ifndef HSMENROLL_CLI_BENCH_REFS_H
#define HSMENROLL_CLI_BENCH_REFS_H

#include <stdbool.h>
#include <sys/types.h>

#include "cli/cli.h"
#include "engine/setup.h"

/* What a reference run is asked to do: the batch's key and storage, thread count, requests. */
typedef struct bench_ref_params {
    const char *key_type; /* RSA, ECC, Ed25519, Ed448 */
    long key_length;      /* 0: the type's default */
    bool token_storage;
    long sans;
    const char *template_name;
    long threads, count;
    bool floor;      /* the probe's --floor: the mandatory cryptography of an export request */
    long iterations; /* with floor: PBKDF2 iterations (Settings.Pkcs12Iterations) */
    double cpu_ms;   /* out (probe): the probe's CPU time per request while timed, 0: unknown */
} bench_ref_params;

/* The path of a helper program (name: "p11probe", "stock-pipeline.sh") in out: next to this
 * executable (a build directory), in PREFIX/libexec/hsmenroll of an installed tree (found from
 * /proc/self/exe, whatever the working directory), or in bench/ of this build's sources; -1 when
 * there is none. */
int bench_sibling_path(const char *name, char *out, size_t size);

/* bench/p11probe on the configuration's module and key tokens (thread i in token i mod n, as the
 * workers): keygen+sign per second, or a
 * negative value. The PIN reaches it in its environment, never in its arguments. */
double bench_probe_rate(const engine_setup *s, bench_ref_params *p);

/* `hsmenroll serve` on 127.0.0.1 (a free port), with the bench's configuration and home, and a
 * throwaway user for the stock pipeline. */
typedef struct bench_server {
    pid_t pid;
    char url[256];
    char dir[4096]; /* its credentials and ready files */
    char *password; /* the throwaway user's, wiped on stop */
} bench_server;

int bench_server_start(bench_server *srv, const char *work_dir, const cli_common *common);
void bench_server_stop(bench_server *srv);

/* bench/stock-pipeline.sh against srv (pkcs11-tool keygen, openssl req through libp11's engine,
 * curl, PEM written) with p->threads loops: certificates per second, or a negative value. */
double bench_stock_rate(const engine_setup *s, const bench_server *srv, const bench_ref_params *p);

#endif
