/* Subcommands of the hsmenroll command line, each parsing its own options (getopt_long) and
 * returning the process exit code: 0 all done, 1 some requests failed, 2 nothing done. */
#ifndef HSMENROLL_ENGINE_CLI_H
#define HSMENROLL_ENGINE_CLI_H

enum { EXIT_ALL_DONE = 0, EXIT_SOME_FAILED = 1, EXIT_NOTHING_DONE = 2 };

int cli_run(int argc, char **argv);
int cli_ca(int argc, char **argv);
int cli_token(int argc, char **argv);

/* Sets the log level from -q/-v counts. */
void cli_set_verbosity(int quiet, int verbose);

#endif
