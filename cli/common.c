/* Command-line pieces every subcommand shares: the common options, the operand word, the log
 * level. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

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
        fputs(usage, stderr);
        *exit_code = EXIT_NOTHING_DONE;
        return -1;
    default:
        return 0;
    }
}

int cli_operand(int argc, char **argv, const char *usage, const char *const *words)
{
    if (optind == argc - 1)
        for (int i = 0; words[i] != NULL; i++)
            if (strcmp(argv[optind], words[i]) == 0)
                return i;
    fputs(usage, stderr);
    return -1;
}

void cli_set_verbosity(int quiet, int verbose)
{
    log_set_level(quiet ? LOG_ERROR : verbose ? LOG_DEBUG : LOG_INFO);
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
