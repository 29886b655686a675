/* `hsmenroll validate`: every check `run` makes before any HSM or CA work (the same code, see
 * batch/linecheck.h), with no HSM and no CA; every problem of a line reported. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batch/linecheck.h"
#include "batch/ndjson.h"
#include "batch/results.h"
#include "cli/cli.h"
#include "batch/log.h"
#include "engine/setup.h"
#include "engine/validate.h"

static const char validate_usage[] =
    "usage: hsmenroll validate BATCH.ndjson|- [options]\n"
    "\n"
    "Checks every line of BATCH as `run` would before making any key: the request fields, the\n"
    "template, enrollment pattern and CA, and the pattern's policy (subject defaults and\n"
    "regexes, key policy, wildcards, RFC 2818, key reuse, owner, metadata, enrollment fields,\n"
    "settings). No HSM and no CA are used and nothing is created. One result line per request\n"
    "(Status valid or invalid, with Error and, when there are several, Errors) goes to standard\n"
    "output or --output FILE.\n"
    "\n"
    "options:\n"
    "  -c, --config FILE   configuration (default: the embedded default)\n"
    "      --home DIR      engine home of the embedded default\n"
    "      --output FILE   write the result lines to FILE (mode 0600) instead of stdout\n"
    "      --template NAME / --pattern ID / --ca NAME   defaults, as for `run`\n"
    "  -q, --quiet / -v, --verbose\n"
    "  -h, --help\n"
    "\n"
    "Exit status: 0 every line valid, 1 some lines invalid, 2 nothing checked (usage,\n"
    "configuration, unreadable batch).\n";

int cli_validate(int argc, char **argv)
{
    static const struct option options[] = {
        CLI_COMMON_LONG,
        {"output", required_argument, NULL, 'o'},
        {"template", required_argument, NULL, 'T'},
        {"pattern", required_argument, NULL, 'P'},
        {"ca", required_argument, NULL, 'A'},
        {NULL, 0, NULL, 0},
    };
    cli_common common = {0};
    const char *output = NULL, *default_ca = NULL;
    request_defaults defaults = {.pattern_id = -1};
    int c, exit_code;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT "o:", options, NULL)) != -1) {
        int handled = cli_common_option(c, optarg, validate_usage, &common, &exit_code);
        if (handled < 0)
            return exit_code;
        if (handled)
            continue;
        switch (c) {
        case 'o':
            output = optarg;
            break;
        case 'T':
            defaults.template_name = optarg;
            break;
        case 'P':
            defaults.pattern_id = strtoll(optarg, NULL, 10);
            break;
        case 'A':
            default_ca = optarg;
            break;
        }
    }
    if (optind != argc - 1) {
        return cli_usage_error(validate_usage, "give exactly one batch file (or - for standard "
                                               "input)");
    }
    cli_set_verbosity(common.quiet, common.verbose);
    const char *batch = argv[optind];
    if (cli_refuse_overlap("validate", batch, "the batch", output, "--output") != 0 ||
        cli_refuse_overlap("validate", common.config_path, "the configuration", output,
                           "--output") != 0)
        return EXIT_NOTHING_DONE;

    engine_setup s;
    enroll_error err;
    enroll_error_clear(&err);
    ndjson_reader reader = {0};
    FILE *out = stdout;
    int rc = EXIT_NOTHING_DONE;
    if (setup_config_readonly(&s, common.config_path, common.home, &err) != 0 ||
        setup_check_defaults(s.cfg, defaults.template_name, defaults.pattern_id, &err) != 0 ||
        ndjson_open(&reader, batch, 0, &err) != 0 || ndjson_check_shape(&reader, batch, &err) != 0)
        goto done;
    if (output != NULL) {
        int fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        out = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (out == NULL) {
            enroll_error_set(&err, HSE_WRITE_FAILED, NULL, "cannot create %s: %s", output,
                             strerror(errno));
            out = stdout;
            goto done;
        }
    }
    defaults.password_length = s.cfg->settings.password_length;
    line_checker checker;
    line_checker_init(&checker, s.cfg, &defaults, default_ca, NULL);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    validate_counts counts = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int read_rc = validate_batch(&checker, &reader, out, n > 0 ? (int)n : 1, &counts);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    line_checker_free(&checker);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (read_rc != 0)
        enroll_error_set(&err, HSE_BATCH_UNREADABLE, NULL, "cannot read %s after line %ld", batch,
                         reader.line);
    else if (fflush(out) != 0 || ferror(out))
        enroll_error_set(&err, HSE_WRITE_FAILED, NULL, "cannot write the results");
    if (err.code[0] == '\0') {
        long total = counts.valid + counts.invalid;
        log_info("%ld line%s: %ld valid, %ld invalid in %.2f s (%.0f lines/s)", total,
                 total == 1 ? "" : "s", counts.valid, counts.invalid, seconds,
                 seconds > 0 ? total / seconds : 0.0);
        rc = counts.invalid ? EXIT_SOME_FAILED : EXIT_ALL_DONE;
    }
done:
    if (err.code[0] != '\0')
        log_error("%s", err.message);
    if (out != stdout && out != NULL)
        fclose(out);
    ndjson_close(&reader);
    setup_free(&s);
    return rc;
}
