/* Command-line pieces every subcommand shares: the common options, the operand word, the log
 * level. */
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "batch/log.h"

int cli_common_option(int c, const char *arg, const char *usage, cli_common *common, int *exit_code)
{
    switch (c) {
    case 'c':
        common->config_path = arg;
        return 1;
    case 'H':
        common->home = arg;
        return 1;
    case 'q':
        common->quiet = 1;
        return 1;
    case 'v':
        common->verbose++;
        return 1;
    case 'h':
        fputs(usage, stdout);
        *exit_code = 0;
        return -1;
    case '?':
    case ':':
        /* getopt said what is wrong in one line (with --log-format json it is silent: main
         * clears opterr); then where the options are, not all of them. */
        if (log_get_format() == LOG_FORMAT_JSON) {
            char what[64] = "a bad option or a missing value";
            if (optopt > ' ' && optopt < 127)
                snprintf(what, sizeof what, "-%c: a bad option or a missing value", optopt);
            cli_usage_error(usage, "%s", what);
        } else {
            cli_usage_pointer(usage);
        }
        *exit_code = EXIT_NOTHING_DONE;
        return -1;
    default:
        return 0;
    }
}

/* The command a usage text is of: "run" of "usage: hsmenroll run ...", with its length. */
static const char *usage_command(const char *usage, int *len)
{
    const char *name = strncmp(usage, "usage: hsmenroll ", 17) == 0 ? usage + 17 : "";
    *len = (int)strcspn(name, " \n");
    return name;
}

void cli_usage_pointer(const char *usage)
{
    int len;
    const char *name = usage_command(usage, &len);
    fprintf(stderr, "hsmenroll: `hsmenroll %.*s --help` lists the options\n", len, name);
}

void cli_say(const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (log_get_format() != LOG_FORMAT_JSON) {
        fputs(message, stderr);
        return;
    }
    message[strcspn(message, "\n")] = '\0';
    log_error("%s", message);
}

int cli_usage_error(const char *usage, const char *fmt, ...)
{
    int len;
    const char *name = usage_command(usage, &len);
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (log_get_format() == LOG_FORMAT_JSON) { /* one JSON line, as every other */
        log_error("hsmenroll %.*s: %s; `hsmenroll %.*s --help` lists the options", len, name,
                  message, len, name);
        return EXIT_NOTHING_DONE;
    }
    fprintf(stderr, "hsmenroll %.*s: %s\n", len, name, message);
    cli_usage_pointer(usage);
    return EXIT_NOTHING_DONE;
}

int cli_operand(int argc, char **argv, const char *usage, const char *const *words)
{
    if (optind == argc - 1)
        for (int i = 0; words[i] != NULL; i++)
            if (strcmp(argv[optind], words[i]) == 0)
                return i;
    char list[256] = "";
    for (int i = 0; words[i] != NULL; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", words[i]);
    if (optind >= argc)
        cli_usage_error(usage, "give one of: %s", list);
    else if (optind < argc - 1)
        cli_usage_error(usage, "one operand (%s), not %d", list, argc - optind);
    else
        cli_usage_error(usage, "no operand \"%s\" (one of: %s)", argv[optind], list);
    return -1;
}

void cli_set_verbosity(int quiet, int verbose)
{
    log_set_level(quiet ? LOG_ERROR : verbose >= 2 ? LOG_DEBUG : verbose ? LOG_VERBOSE : LOG_INFO);
}

void cli_common_to_argv(const cli_common *common, char **argv, int *argc)
{
    if (common->config_path != NULL) {
        argv[(*argc)++] = "--config";
        argv[(*argc)++] = (char *)common->config_path;
    }
    if (common->home != NULL) {
        argv[(*argc)++] = "--home";
        argv[(*argc)++] = (char *)common->home;
    }
}

/* The file a path names: stat of it ("-": standard input), or of its directory when it does not
 * exist yet (then the name is compared too). */
static bool same_path(const char *a, const char *b)
{
    struct stat sa, sb;
    int ra = strcmp(a, "-") == 0 ? fstat(STDIN_FILENO, &sa) : stat(a, &sa);
    int rb = strcmp(b, "-") == 0 ? fstat(STDIN_FILENO, &sb) : stat(b, &sb);
    if (ra == 0 && rb == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (ra == 0 || rb == 0 || strcmp(a, "-") == 0 || strcmp(b, "-") == 0)
        return false; /* one exists, the other not yet */
    char *ca = realpath(a, NULL), *cb = realpath(b, NULL);
    bool same = ca == NULL && cb == NULL && strcmp(a, b) == 0;
    free(ca);
    free(cb);
    return same;
}

int cli_refuse_overlap(const char *command, const char *input, const char *input_what,
                       const char *output, const char *output_what)
{
    if (input == NULL || output == NULL || !same_path(input, output))
        return 0;
    cli_say("hsmenroll %s: %s %s is also the %s: it would be written over before it is read; "
            "give another path\n",
            command, input_what, input, output_what);
    return -1;
}

const char *cli_program = "hsmenroll";

void cli_append_word(char *buf, size_t size, const char *word)
{
    size_t n = strlen(buf);
    bool plain = *word != '\0';
    for (const char *p = word; *p && plain; p++)
        plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:,@%+-",
                       *p) != NULL;
    if (n > 0 && n + 1 < size)
        buf[n++] = ' ', buf[n] = '\0';
    if (plain) {
        snprintf(buf + n, size - n, "%s", word);
        return;
    }
    if (n + 1 < size)
        buf[n++] = '\'', buf[n] = '\0';
    for (const char *p = word; *p && n + 5 < size; p++) {
        if (*p == '\'') {
            memcpy(buf + n, "'\\''", 4);
            n += 4;
        } else {
            buf[n++] = *p;
        }
    }
    if (n + 1 < size)
        buf[n++] = '\'';
    buf[n] = '\0';
}
