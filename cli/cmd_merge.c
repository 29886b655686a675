/* `hsmenroll merge`: the results of the N shards of a batch (`run --shard I/N`) as one results
 * file in batch order, with the check that every request line has exactly one result: what is
 * missing, doubled or foreign is listed, and the exit code says whether the union is exact. */
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/merge.h"
#include "batch/output.h"
#include "cli/cli.h"
#include "batch/log.h"

static const char merge_usage[] =
    "usage: hsmenroll merge BATCH.ndjson SHARD... [-o MERGED.ndjson] [--json]\n"
    "\n"
    "Puts together the results of the shards of one batch (`run --shard I/N`, one OUTDIR each):\n"
    "SHARD is a shard's OUTDIR (its results.ndjson is read) or a results file. Checks that\n"
    "every request line of BATCH has exactly one result among them, with the line's Id, and\n"
    "lists the lines that are missing (a shard not run, or not finished: `run --resume` it),\n"
    "doubled (a line run by two shards) and strays (results of no line of this batch).\n"
    "\n"
    "options:\n"
    "  -o, --output FILE   write the merged results there, in batch order (one result per line)\n"
    "      --json          print the report as JSON on standard output\n"
    "  -q / -v / -h        quieter, more verbose, this text\n"
    "\n"
    "Exit: 0 every line has exactly one result; 1 something is missing, doubled or stray;\n"
    "2 a file could not be read or written.\n";

static void print_list(json_t *report, const char *name, const char *what)
{
    char count_name[64];
    snprintf(count_name, sizeof count_name, "%sCount", name);
    json_int_t total = json_integer_value(json_object_get(report, count_name));
    if (total == 0)
        return;
    printf("%s: %lld\n", what, (long long)total);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(report, name), i, e)
    {
        const char *id = json_string_value(json_object_get(e, "Id"));
        if (strcmp(name, "Strays") == 0)
            printf("  %s line %lld (Id %s): %s\n", json_string_value(json_object_get(e, "File")),
                   (long long)json_integer_value(json_object_get(e, "Line")), id ? id : "none",
                   json_string_value(json_object_get(e, "Why")));
        else if (strcmp(name, "Doubled") == 0)
            printf("  line %lld (Id %s): %lld results\n",
                   (long long)json_integer_value(json_object_get(e, "Line")), id ? id : "none",
                   (long long)json_integer_value(json_object_get(e, "Results")));
        else
            printf("  line %lld (Id %s)\n",
                   (long long)json_integer_value(json_object_get(e, "Line")), id ? id : "none");
    }
    if ((json_int_t)json_array_size(json_object_get(report, name)) < total)
        printf("  ... and %lld more\n",
               (long long)(total - (json_int_t)json_array_size(json_object_get(report, name))));
}

int cli_merge(int argc, char **argv)
{
    static const struct option options[] = {
        {"output", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'j'},
        CLI_COMMON_LONG,
        {NULL, 0, NULL, 0},
    };
    const char *output = NULL;
    bool as_json = false;
    cli_common common = {0};
    int c, exit_code;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:" CLI_COMMON_SHORT, options, NULL)) != -1) {
        int handled = cli_common_option(c, optarg, merge_usage, &common, &exit_code);
        if (handled < 0)
            return exit_code;
        if (handled)
            continue;
        if (c == 'o')
            output = optarg;
        else if (c == 'j')
            as_json = true;
    }
    cli_set_verbosity(common.quiet, common.verbose);
    if (argc - optind < 2) {
        return cli_usage_error(merge_usage, "give the batch and at least one shard");
    }
    const char *batch = argv[optind];
    size_t count = (size_t)(argc - optind - 1);
    char **paths = calloc(count, sizeof *paths);
    if (paths == NULL)
        return EXIT_NOTHING_DONE;
    for (size_t i = 0; i < count; i++) {
        const char *arg = argv[optind + 1 + (int)i];
        struct stat st;
        if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (asprintf(&paths[i], "%s/results.ndjson", arg) < 0)
                paths[i] = NULL;
        } else {
            paths[i] = strdup(arg);
        }
    }
    bool overlap = cli_refuse_overlap("merge", batch, "the batch", output, "--output") != 0;
    for (size_t i = 0; i < count && !overlap; i++)
        overlap = paths[i] == NULL || cli_refuse_overlap("merge", paths[i], "the shard results",
                                                         output, "--output") != 0;
    if (overlap) {
        for (size_t i = 0; i < count; i++)
            free(paths[i]);
        free(paths);
        return EXIT_NOTHING_DONE;
    }
    FILE *merged = NULL;
    char tmp[4096 + 16] = "";
    if (output != NULL) {
        snprintf(tmp, sizeof tmp, "%s.tmp", output);
        /* The merged results hold the generated passwords: mode 0600, never written through a
         * symbolic link (the output itself is refused when it is one; its temporary file is
         * made afresh with O_EXCL and renamed over it). */
        struct stat lst;
        enroll_error open_err;
        enroll_error_clear(&open_err);
        int fd = -1;
        if (lstat(output, &lst) == 0 && !S_ISREG(lst.st_mode)) {
            log_error("merge: UNSAFE_OUTPUT: %s is %s", output,
                      S_ISLNK(lst.st_mode) ? "a symbolic link: refusing to write through it"
                                           : "not a regular file");
        } else {
            unlink(tmp); /* a leftover of an interrupted merge (or a planted link) */
            fd = output_open_private(AT_FDCWD, NULL, tmp, O_EXCL, false, HSE_WRITE_FAILED,
                                     &open_err);
            if (fd < 0)
                log_error("merge: %s: %s", open_err.code, open_err.message);
        }
        if (fd < 0 || (merged = fdopen(fd, "w")) == NULL) {
            if (fd >= 0) {
                close(fd);
                unlink(tmp);
            }
            exit_code = EXIT_NOTHING_DONE;
            goto done;
        }
    }
    enroll_error err;
    json_t *report = merge_results(batch, (const char *const *)paths, count, merged, &err);
    if (merged != NULL) {
        bool written = fclose(merged) == 0 && report != NULL && rename(tmp, output) == 0;
        if (!written)
            unlink(tmp);
        if (!written && report != NULL) {
            log_error("merge: cannot write %s", output);
            json_decref(report);
            report = NULL;
            err.code[0] = '\0';
        }
    }
    if (report == NULL) {
        if (err.code[0] != '\0')
            log_error("merge: %s", err.message);
        exit_code = EXIT_NOTHING_DONE;
        goto done;
    }
    bool exact = json_is_true(json_object_get(report, "Exact"));
    if (as_json) {
        json_dumpf(report, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
    } else if (!common.quiet || !exact) {
        printf("%lld request lines, %lld with a result from %zu shard%s: %lld issued, %lld "
               "failed, %lld pending\n",
               (long long)json_integer_value(json_object_get(report, "Lines")),
               (long long)json_integer_value(json_object_get(report, "Results")), count,
               count == 1 ? "" : "s",
               (long long)json_integer_value(json_object_get(report, "Issued")),
               (long long)json_integer_value(json_object_get(report, "Failed")),
               (long long)json_integer_value(json_object_get(report, "Pending")));
        print_list(report, "Missing", "missing (no result)");
        print_list(report, "Doubled", "doubled (more than one result)");
        print_list(report, "Strays", "strays (results of no line of this batch)");
        if (exact)
            printf("every line has exactly one result%s%s\n", output ? "; merged into " : "",
                   output ? output : "");
    }
    exit_code = exact ? EXIT_ALL_DONE : EXIT_SOME_FAILED;
    json_decref(report);
done:
    for (size_t i = 0; i < count; i++)
        free(paths[i]);
    free(paths);
    return exit_code;
}
