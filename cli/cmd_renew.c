/* `hsmenroll renew`: a new run of the certificates of results files that expire soon. */
#include <stdio.h>

#include "cli/cli.h"

int cli_renew(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fputs("hsmenroll renew: not yet\n", stderr);
    return EXIT_NOTHING_DONE;
}
