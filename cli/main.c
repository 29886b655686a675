/* hsmenroll: bulk certificate enrollment with HSM-protected keys. Entry point and dispatch to
 * the subcommands. */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "batch/secret.h"

#ifndef HSMENROLL_VERSION
#define HSMENROLL_VERSION "0"
#endif

static const char usage[] =
    "usage: hsmenroll <command> [options]\n"
    "\n"
    "Bulk certificate enrollment with keys generated inside an HSM (PKCS#11).\n"
    "\n"
    "commands:\n"
    "  run BATCH.ndjson|-     enroll every request line of a batch: key in the HSM, CSR, CA,\n"
    "                         PFX/PEM/DER bundles and results.ndjson in the output directory\n"
    "  validate BATCH|-       check every line against the configuration and its patterns'\n"
    "                         policy, with no HSM and no CA\n"
    "  serve                  the Keyfactor Command API subset (enrollment, patterns) over\n"
    "                         HTTP(S), signed by the embedded CA\n"
    "  ca init|show           the embedded CA (root + issuing CA, keys in the HSM)\n"
    "  token init|list        PKCS#11 tokens and the keys hsmenroll made in them\n"
    "  bench                  a synthetic batch through the real pipeline: certificates/s,\n"
    "                         latency percentiles, time per stage, per worker count\n"
    "  merge BATCH SHARD...   the results of the shards of a batch (run --shard I/N) as one\n"
    "                         file, checked: every line exactly once\n"
    "  version                print the version\n"
    "  help [COMMAND]         this text, or a command's options\n"
    "\n"
    "With no --config, everything runs on the embedded default under ./.hsmenroll (or\n"
    "$HSMENROLL_HOME): a SoftHSM2 token, an embedded two-level CA and a Default template,\n"
    "created on first use. PINs come from HSMENROLL_PIN or a 0600 file, never from arguments.\n"
    "Run `hsmenroll COMMAND --help` for a command's options.\n";

int main(int argc, char **argv)
{
    secret_protect_process();
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread starts */
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_NOTHING_DONE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return cli_run(argc - 1, argv + 1);
    if (strcmp(cmd, "validate") == 0)
        return cli_validate(argc - 1, argv + 1);
    if (strcmp(cmd, "ca") == 0)
        return cli_ca(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return cli_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0)
        return cli_token(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cli_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "merge") == 0)
        return cli_merge(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("hsmenroll %s\n", HSMENROLL_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        if (argc > 2) {
            char *help_argv[] = {argv[2], "--help", NULL};
            if (strcmp(argv[2], "run") == 0)
                return cli_run(2, help_argv);
            if (strcmp(argv[2], "ca") == 0)
                return cli_ca(2, help_argv);
            if (strcmp(argv[2], "validate") == 0)
                return cli_validate(2, help_argv);
            if (strcmp(argv[2], "token") == 0)
                return cli_token(2, help_argv);
            if (strcmp(argv[2], "bench") == 0)
                return cli_bench(2, help_argv);
            if (strcmp(argv[2], "merge") == 0)
                return cli_merge(2, help_argv);
        }
        fputs(usage, stdout);
        return 0;
    }
    fprintf(stderr, "hsmenroll: unknown command \"%s\"\n\n%s", cmd, usage);
    return EXIT_NOTHING_DONE;
}
