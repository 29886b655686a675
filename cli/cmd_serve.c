/* `hsmenroll serve`: options, set-up (the same configuration, HSM and embedded CA as `run`), and
 * serving until SIGINT or SIGTERM; `serve hash-password` makes a credentials file entry. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "batch/log.h"
#include "batch/secret.h"
#include "serve/serve.h"
#include "serve/auth.h"
#include "engine/setup.h"

static const char serve_usage[] =
    "usage: hsmenroll serve --credentials FILE [options]\n"
    "       hsmenroll serve hash-password [--iterations N] < password\n"
    "\n"
    "Serves the Keyfactor Command API subset under /KeyfactorAPI: POST /Enrollment/CSR (signed by\n"
    "the embedded CA of the configuration), GET and POST /EnrollmentPatterns. Every request is\n"
    "authenticated: HTTP Basic against the credentials file, or a client certificate whose CN\n"
    "names a user (with --client-ca). A pattern with UseADPermissions false serves only users\n"
    "holding one of its AssociatedRoles; adding a pattern needs the permission\n"
    "enrollment_pattern/modify.\n"
    "\n"
    "options:\n"
    "  -c, --config FILE         configuration (default: the embedded default)\n"
    "      --home DIR            engine home of the embedded default\n"
    "      --listen ADDR:PORT    where to listen (default 127.0.0.1:8080; port 0: a free one)\n"
    "      --credentials FILE    users: {\"Users\":[{\"Name\",\"Password\" (a hash from\n"
    "                            `serve hash-password`),\"Roles\",\"Permissions\"}]}, mode 0600\n"
    "      --tls-cert FILE --tls-key FILE   serve HTTPS (PEM)\n"
    "      --tls-key-password-env VAR       the password of an encrypted --tls-key, from $VAR\n"
    "      --tls-key-password-file FILE     ... or from the first line of FILE (mode 0600)\n"
    "      --client-ca FILE      mutual TLS: accept client certificates issued by these CAs\n"
    "      --max-body BYTES      largest request body (default 1048576; 413 beyond)\n"
    "      --timeout SECONDS     idle connection timeout (default 30)\n"
    "      --max-connections N   concurrent connections (default 512)\n"
    "      --request-timeout S   seconds a client has to send a whole request, headers and\n"
    "                            body (default 30; slower ones get 408 and are cut off)\n"
    "      --max-login-failures N  wrong passwords in a row from one address before it gets\n"
    "                            429 for 1 s, doubling up to 60 s (default 10; 0: never)\n"
    "      --latency-ms MS       wait MS before each answer (tests, benchmarks)\n"
    "      --fail-rate F         answer a share F of requests with 503 or a reset (0..1)\n"
    "      --metrics-listen A:P  serve Prometheus metrics at http://A:P/metrics\n"
    "      --rate-limit R        answer 429 with Retry-After above R API requests per second\n"
    "                            (a CA's quota, for tests and benchmarks)\n"
    "      --pending-rate F      answer a share F of enrollments as pending (0..1)\n"
    "      --ready-file FILE     write the base URL to FILE once listening\n"
    "  -q, --quiet / -v, --verbose\n"
    "  -h, --help\n"
    "\n"
    "It runs until SIGINT or SIGTERM, then finishes the requests in progress. Exit status: 0\n"
    "after a clean stop, 2 when it could not start.\n";

static int hash_password(int argc, char **argv)
{
    unsigned long iterations = 600000;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
            iterations = strtoul(argv[++i], NULL, 10);
        } else {
            return cli_usage_error(serve_usage, "unexpected argument %s", argv[i]);
        }
    }
    if (iterations < 1000 || iterations > 10000000) {
        cli_say("hsmenroll serve hash-password: --iterations takes 1000 to 10000000\n");
        return EXIT_NOTHING_DONE;
    }
    char line[1024];
    if (isatty(STDIN_FILENO))
        fprintf(stderr, "password (then Enter): ");
    if (fgets(line, sizeof line, stdin) == NULL) {
        cli_say("hsmenroll serve hash-password: no password on standard input\n");
        return EXIT_NOTHING_DONE;
    }
    line[strcspn(line, "\r\n")] = '\0';
    char *hash = line[0] ? serve_password_hash(line, (unsigned)iterations) : NULL;
    OPENSSL_cleanse(line, sizeof line);
    if (hash == NULL) {
        cli_say("hsmenroll serve hash-password: empty password, or hashing failed\n");
        return EXIT_NOTHING_DONE;
    }
    printf("%s\n", hash);
    free(hash);
    return EXIT_ALL_DONE;
}

static int parse_rate(const char *arg, const char *name, double *out)
{
    char *end;
    double v = strtod(arg, &end);
    if (*end != '\0' || v < 0 || v > 1) {
        cli_say("hsmenroll serve: %s takes a number from 0 to 1\n", name);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_count(const char *arg, const char *name, long min, long max, long *out)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (*end != '\0' || v < min || v > max) {
        cli_say("hsmenroll serve: %s takes a number from %ld to %ld\n", name, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_serve(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "hash-password") == 0)
        return hash_password(argc, argv);
    static const struct option options[] = {
        CLI_COMMON_LONG,
        {"listen", required_argument, NULL, 'l'},
        {"credentials", required_argument, NULL, 'C'},
        {"tls-cert", required_argument, NULL, 'T'},
        {"tls-key", required_argument, NULL, 'K'},
        {"tls-key-password-env", required_argument, NULL, 'E'},
        {"tls-key-password-file", required_argument, NULL, 'w'},
        {"client-ca", required_argument, NULL, 'M'},
        {"max-body", required_argument, NULL, 'B'},
        {"timeout", required_argument, NULL, 't'},
        {"max-connections", required_argument, NULL, 'N'},
        {"request-timeout", required_argument, NULL, 'Q'},
        {"max-login-failures", required_argument, NULL, 'X'},
        {"latency-ms", required_argument, NULL, 'L'},
        {"fail-rate", required_argument, NULL, 'F'},
        {"rate-limit", required_argument, NULL, 'Z'},
        {"metrics-listen", required_argument, NULL, 'W'},
        {"pending-rate", required_argument, NULL, 'P'},
        {"ready-file", required_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    cli_common common = {0};
    serve_options opt = {.request_timeout = 30, .max_login_failures = 10};
    const char *ready_file = NULL;
    int c, exit_code;
    long value;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, options, NULL)) != -1) {
        int handled = cli_common_option(c, optarg, serve_usage, &common, &exit_code);
        if (handled < 0)
            return exit_code;
        if (handled)
            continue;
        int bad = 0;
        switch (c) {
        case 'l':
            opt.listen = optarg;
            break;
        case 'C':
            opt.credentials = optarg;
            break;
        case 'T':
            opt.tls_cert = optarg;
            break;
        case 'K':
            opt.tls_key = optarg;
            break;
        case 'E':
            opt.tls_key_password_env = optarg;
            break;
        case 'w':
            opt.tls_key_password_file = optarg;
            break;
        case 'M':
            opt.client_ca = optarg;
            break;
        case 'B':
            bad = parse_count(optarg, "--max-body", 1024, 64L << 20, &value);
            opt.max_body = (size_t)value;
            break;
        case 't':
            bad = parse_count(optarg, "--timeout", 1, 3600, &value);
            opt.connection_timeout = (unsigned)value;
            break;
        case 'N':
            bad = parse_count(optarg, "--max-connections", 1, 100000, &value);
            opt.max_connections = (unsigned)value;
            break;
        case 'Q':
            bad = parse_count(optarg, "--request-timeout", 1, 3600, &value);
            opt.request_timeout = (unsigned)value;
            break;
        case 'X':
            bad = parse_count(optarg, "--max-login-failures", 0, 1000000, &value);
            opt.max_login_failures = (unsigned)value;
            break;
        case 'L':
            bad = parse_count(optarg, "--latency-ms", 0, 600000, &opt.latency_ms);
            break;
        case 'F':
            bad = parse_rate(optarg, "--fail-rate", &opt.fail_rate);
            break;
        case 'W':
            opt.metrics_listen = optarg;
            break;
        case 'Z': {
            char *end;
            opt.rate_limit = strtod(optarg, &end);
            bad = *end != '\0' || !(opt.rate_limit > 0 && opt.rate_limit <= 1e6);
            if (bad)
                cli_say("hsmenroll serve: --rate-limit takes requests per second\n");
            break;
        }
        case 'P':
            bad = parse_rate(optarg, "--pending-rate", &opt.pending_rate);
            break;
        case 'R':
            ready_file = optarg;
            break;
        }
        if (bad)
            return EXIT_NOTHING_DONE;
    }
    if (optind != argc || opt.credentials == NULL) {
        return cli_usage_error(serve_usage,
                               optind != argc ? "unexpected operand %s"
                                              : "--credentials FILE is required",
                               argv[optind]);
    }
    if ((opt.tls_cert == NULL) != (opt.tls_key == NULL)) {
        /* Half a TLS configuration would serve plain HTTP and take Basic passwords in clear. */
        cli_say("hsmenroll serve: %s without %s: refusing to serve plain HTTP\n",
                opt.tls_cert ? "--tls-cert" : "--tls-key",
                opt.tls_cert ? "--tls-key" : "--tls-cert");
        return EXIT_NOTHING_DONE;
    }
    cli_set_verbosity(common.quiet, common.verbose);

    /* Signals are taken by sigwait below; every thread started from here inherits the mask. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    engine_setup s;
    enroll_error err;
    enroll_error_clear(&err);
    server *srv = NULL;
    exit_code = EXIT_NOTHING_DONE;
    if (setup_config(&s, common.config_path, common.home, &err) != 0 ||
        setup_module(&s, s.embedded, &err) != 0 || setup_login(&s, &err) != 0 ||
        setup_local_cas(&s, s.embedded, &err) != 0)
        goto done;
    if ((srv = server_start(&opt, &s, &err)) == NULL)
        goto done;
    log_info("serving %s (%s%s%s)", server_url(srv), opt.latency_ms ? "added latency, " : "",
             opt.fail_rate > 0 ? "injected failures, " : "", "Ctrl-C stops");
    if (ready_file != NULL) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", ready_file);
        FILE *f = fopen(tmp, "w");
        if (f == NULL || fprintf(f, "%s\n", server_url(srv)) < 0 || fclose(f) != 0 ||
            rename(tmp, ready_file) != 0) {
            enroll_error_set(&err, HSE_SERVE_READY_FILE, NULL, "cannot write %s: %s", ready_file,
                             strerror(errno));
            goto done;
        }
    }
    int sig = 0;
    sigwait(&stop_signals, &sig);
    log_info("stopping (signal %d): finishing the requests in progress", sig);
    exit_code = EXIT_ALL_DONE;
done:
    if (err.code[0] != '\0')
        log_error("%s", err.message);
    server_stop(srv);
    setup_free(&s);
    return exit_code;
}
