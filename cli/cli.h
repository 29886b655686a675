/* Subcommands of the hsmenroll command line, each parsing its own options (getopt_long) and
 * returning the process exit code: 0 all done, 1 some requests failed, 2 nothing done. */
#ifndef HSMENROLL_CLI_CLI_H
#define HSMENROLL_CLI_CLI_H

#include <stdbool.h>

#include "engine/run.h" /* the exit statuses */

int cli_run(int argc, char **argv);
int cli_ca(int argc, char **argv);
int cli_token(int argc, char **argv);
int cli_validate(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_merge(int argc, char **argv);
int cli_revoke(int argc, char **argv);
int cli_renew(int argc, char **argv);

/* The options every subcommand takes: -c/--config, --home, -q, -v, -h. */
typedef struct cli_common {
    const char *config_path;
    const char *home;
    int quiet, verbose;
} cli_common;

#define CLI_COMMON_SHORT "c:qvh"
#define CLI_COMMON_LONG                                                                            \
    {"config", required_argument, NULL, 'c'}, {"home", required_argument, NULL, 'H'},              \
        {"quiet", no_argument, NULL, 'q'}, {"verbose", no_argument, NULL, 'v'},                    \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

/* Handles getopt_long's answer c when it is a common option (or an unknown one): returns 1 when
 * handled, 0 when c is the command's own, -1 when the command must end now with *exit_code
 * (after --help, or a bad option: usage printed). */
int cli_common_option(int c, const char *arg, const char *usage, cli_common *common,
                      int *exit_code);

/* The one operand after the options, which must be one of words (NULL-terminated): its index,
 * or -1 with usage printed to stderr. */
int cli_operand(int argc, char **argv, const char *usage, const char *const *words);

/* A usage error: "hsmenroll CMD: message" and the pointer to `hsmenroll CMD --help` (CMD taken
 * from usage's first line), never the whole help; returns EXIT_NOTHING_DONE. */
int cli_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A command's own message on stderr ("hsmenroll CMD: ...\n"): as given in text, one JSON line
 * (level error) with --log-format json. */
void cli_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The pointer alone, after a message already printed. */
void cli_usage_pointer(const char *usage);

/* Appends "--config FILE" and "--home DIR" (those given) to argv at *argc, for a command run with
 * the same configuration; argv must have room for four more entries. */
void cli_common_to_argv(const cli_common *common, char **argv, int *argc);

/* A command never writes over its own input: -1 (with a message on stderr) when output names
 * the same file as input ("-" is standard input), existing or not; 0 otherwise or when either is
 * NULL. */
int cli_refuse_overlap(const char *command, const char *input, const char *input_what,
                       const char *output, const char *output_what);

/* The program as it was started (argv[0] of main), for commands the user is told to run. */
extern const char *cli_program;

/* Appends word to buf (of size size, NUL-terminated), after a space when buf is not empty,
 * in single quotes when the shell would split or expand it. */
void cli_append_word(char *buf, size_t size, const char *word);

/* Sets the log level from -q/-v counts. */
void cli_set_verbosity(int quiet, int verbose);

#endif
