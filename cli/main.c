/* hsmenroll: bulk certificate enrollment with HSM-protected keys. The entry point and the one
 * command table: each subcommand's name, its operands, a line of help and its function (one file
 * each, cli/cmd_*.c), as git's builtin table and p11-kit's commands[] do it. */
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "batch/log.h"
#include "batch/secret.h"
#include "cli/cli.h"

#ifndef HSMENROLL_VERSION
#define HSMENROLL_VERSION "0"
#endif

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

typedef struct cli_command {
    const char *name;
    const char *operands; /* shown after the name in the overview */
    const char *summary;  /* one line (two at most) of help */
    int (*run)(int argc, char **argv);
} cli_command;

static const cli_command commands[] = {
    {"run", "BATCH.ndjson|-",
     "enroll every request line of a batch: key in the HSM, CSR, CA,\n"
     "PFX/PEM/DER bundles and results.ndjson in the output directory",
     cli_run},
    {"validate", "BATCH|-",
     "check every line against the configuration and its patterns'\n"
     "policy, with no HSM and no CA",
     cli_validate},
    {"serve", "",
     "the Keyfactor Command API subset (enrollment, patterns) over\n"
     "HTTP(S), signed by the embedded CA",
     cli_serve},
    {"ca", "init|show|crl", "the embedded CA (root + issuing CA, keys in the HSM)", cli_ca},
    {"token", "init|list|gc", "PKCS#11 tokens and the keys hsmenroll made in them", cli_token},
    {"bench", "",
     "a synthetic batch through the real pipeline: certificates/s,\n"
     "latency percentiles, time per stage, per worker count",
     cli_bench},
    {"merge", "BATCH SHARD...",
     "the results of the shards of a batch (run --shard I/N) as one\n"
     "file, checked: every line exactly once",
     cli_merge},
    {"revoke", "RESULTS...",
     "revoke the certificates of results files (all, or --id/--serial)\n"
     "at their CA; journaled, --resume after a stop",
     cli_revoke},
    {"renew", "RESULTS...",
     "enroll again, with new keys, the unrevoked certificates of\n"
     "results files that expire within --within DAYS days",
     cli_renew},
    {"version", "", "print the version", cmd_version},
    {"help", "[COMMAND]", "this text, or a command's options", cmd_help},
};
#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_usage(FILE *out)
{
    fputs("usage: hsmenroll <command> [options]\n"
          "\n"
          "Bulk certificate enrollment with keys generated inside an HSM (PKCS#11).\n"
          "\n"
          "commands:\n",
          out);
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        const cli_command *c = &commands[i];
        char head[64];
        snprintf(head, sizeof head, "%s%s%s", c->name, c->operands[0] ? " " : "", c->operands);
        fprintf(out, "  %-21s  ", head);
        for (const char *p = c->summary; *p; p++) {
            fputc(*p, out);
            if (*p == '\n')
                fprintf(out, "%25s", "");
        }
        fputc('\n', out);
    }
    fputs("\n"
          "With no --config, everything runs on the embedded default in its home, --home DIR,\n"
          "$HSMENROLL_HOME or ${XDG_DATA_HOME:-~/.local/share}/hsmenroll: SoftHSM2 tokens, an\n"
          "embedded two-level CA and a Default template, created on first use. PINs come from\n"
          "HSMENROLL_PIN or a 0600 file, never from arguments.\n"
          "\n"
          "Every command takes -q (errors only), -v (details: each failed line, stage times),\n"
          "-vv (debug: each request's stages, PKCS#11 calls, HTTP requests to a CA) and\n"
          "--log-format text|json (json: one object a line with time, level, message and the\n"
          "line's fields). Text log lines start with an ISO 8601 UTC time when stderr is not a\n"
          "terminal.\n"
          "Run `hsmenroll COMMAND --help` (or `hsmenroll help COMMAND`) for a command's options.\n",
          out);
}

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("hsmenroll %s\n", HSMENROLL_VERSION);
    return 0;
}

/* `help` alone: the overview; `help COMMAND`: that command's own --help; `help --commands`: the
 * command names, one a line (for the man page, made from these texts at build time). */
static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--commands") == 0) {
        for (size_t i = 0; i < COMMAND_COUNT; i++)
            printf("%s\n", commands[i].name);
        return 0;
    }
    const cli_command *c = find_command(argv[1]);
    if (c == NULL) {
        fprintf(stderr, "hsmenroll help: no command \"%s\"; `hsmenroll help` lists them\n",
                argv[1]);
        return EXIT_NOTHING_DONE;
    }
    if (c->run == cmd_help || c->run == cmd_version) {
        print_usage(stdout);
        return 0;
    }
    char *help_argv[] = {(char *)c->name, "--help", NULL};
    return c->run(2, help_argv);
}

/* --log-format FMT (or =FMT), anywhere after the command: taken out of argv for every command.
 * 0, or -1 after a one-line usage error. */
static int take_log_format(int *argc, char **argv)
{
    int out = 2;
    for (int i = 2; i < *argc; i++) {
        const char *value = NULL;
        if (strcmp(argv[i], "--") == 0) {
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        if (strcmp(argv[i], "--log-format") == 0) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "hsmenroll: --log-format wants text or json\n");
                return -1;
            }
            value = argv[++i];
        } else if (strncmp(argv[i], "--log-format=", 13) == 0) {
            value = argv[i] + 13;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        log_format format;
        if (log_parse_format(value, &format) != 0) {
            fprintf(stderr, "hsmenroll: --log-format wants text or json, not \"%s\"\n", value);
            return -1;
        }
        log_set_format(format);
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}

int main(int argc, char **argv)
{
    secret_protect_process();
    if (argc > 0 && argv[0] != NULL && strchr(argv[0], '/') != NULL)
        cli_program = argv[0]; /* as typed: ./build/hsmenroll, /usr/local/bin/hsmenroll */
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread starts */
    if (argc < 2) {
        print_usage(stderr);
        return EXIT_NOTHING_DONE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0)
        name = "version";
    else if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        name = "help";
    const cli_command *c = find_command(name);
    if (c == NULL) {
        fprintf(stderr, "hsmenroll: unknown command \"%s\"; `hsmenroll help` lists the commands\n",
                name);
        return EXIT_NOTHING_DONE;
    }
    if (take_log_format(&argc, argv) != 0)
        return EXIT_NOTHING_DONE;
    if (log_get_format() == LOG_FORMAT_JSON)
        opterr = 0; /* getopt's complaints become JSON lines (cli_common_option) */
    /* getopt names the command in its one-line complaint about an option: "hsmenroll run: ...". */
    static char command[64];
    snprintf(command, sizeof command, "hsmenroll %s", c->name);
    argv[1] = command;
    return c->run(argc - 1, argv + 1);
}
