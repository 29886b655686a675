/* The reference points of `hsmenroll bench`: the raw PKCS#11 probe and the stock-tool pipeline
 * (run as child processes found next to this executable), and the `hsmenroll serve` the stock
 * pipeline enrolls against. Secrets reach the children in their environment, never in argv. */
#include "cli/bench_refs.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hsm/hsm.h"
#include "batch/log.h"
#include "batch/secret.h"
#include "serve/auth.h"

#ifndef HSMENROLL_LIBEXEC_REL
#define HSMENROLL_LIBEXEC_REL "../libexec/hsmenroll"
#endif

int bench_sibling_path(const char *name, char *out, size_t size)
{
    if (name == NULL || out == NULL || size < 2)
        return -1;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        return -1;
    *slash = '\0';
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    /* The build directory (helpers beside the binary), then an installed tree
     * (PREFIX/bin/hsmenroll, PREFIX/libexec/hsmenroll/NAME), then the sources of this build. */
    int len = snprintf(out, size, "%s/%s", self, name);
    if (len > 0 && (size_t)len < size && access(out, X_OK) == 0)
        return 0;
    len = snprintf(out, size, "%s/%s/%s", self, HSMENROLL_LIBEXEC_REL, base);
    if (len > 0 && (size_t)len < size && access(out, X_OK) == 0)
        return 0;
#ifdef HSMENROLL_SOURCE_BENCH
    len = snprintf(out, size, "%s/%s", HSMENROLL_SOURCE_BENCH, base);
    if (len > 0 && (size_t)len < size && access(out, X_OK) == 0)
        return 0;
#endif
    return -1;
}

/* The raw PKCS#11 probe's name for the key (bench/p11probe.c), or NULL. */
static const char *probe_key(const bench_ref_params *p)
{
    if (strcasecmp(p->key_type, "ECC") == 0)
        return p->key_length == 384 ? "p384" : p->key_length == 521 ? "p521" : "p256";
    if (strcasecmp(p->key_type, "RSA") == 0)
        return p->key_length == 3072 ? "rsa3072" : p->key_length == 4096 ? "rsa4096" : "rsa2048";
    if (strcasecmp(p->key_type, "Ed25519") == 0)
        return "ed25519";
    if (strcasecmp(p->key_type, "Ed448") == 0)
        return "ed448";
    return NULL;
}

/* The pkcs11-tool name of the key, or NULL. */
static const char *stock_key(const bench_ref_params *p, char *buf, size_t size)
{
    if (strcasecmp(p->key_type, "ECC") == 0)
        snprintf(buf, size, "EC:%s",
                 p->key_length == 384   ? "secp384r1"
                 : p->key_length == 521 ? "secp521r1"
                                        : "prime256v1");
    else if (strcasecmp(p->key_type, "RSA") == 0)
        snprintf(buf, size, "RSA:%ld", p->key_length > 0 ? p->key_length : 2048);
    else if (strcasecmp(p->key_type, "Ed25519") == 0)
        snprintf(buf, size, "EC:edwards25519");
    else
        return NULL;
    return buf;
}

/* Reads the last JSON line of a child's standard output that has member, into *value. The child
 * runs argv[0] with argv; 0 when it exited 0 and the member was there. */
static int run_child_json(char *const argv[], const char *member, double *value,
                          const char *member2, double *value2)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[4096];
    int found = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        json_t *doc = json_loads(line, 0, NULL);
        if (json_is_number(json_object_get(doc, member))) {
            *value = json_number_value(json_object_get(doc, member));
            found = 0;
            if (member2 != NULL && json_is_number(json_object_get(doc, member2)))
                *value2 = json_number_value(json_object_get(doc, member2));
        }
        json_decref(doc);
    }
    if (f != NULL)
        fclose(f);
    else
        close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return found == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Puts the user PIN in the environment variable name; 0 on success. */
static int pin_to_env(const engine_setup *s, const char *name)
{
    enroll_error err;
    char *pin = secret_read(s->cfg->hsm.pin_env, s->cfg->hsm.pin_file, "user PIN", &err);
    if (pin == NULL) {
        log_error("bench: %s", err.message);
        return -1;
    }
    setenv(name, pin, 1);
    secret_free(pin);
    return 0;
}

static void wipe_env(const char *name)
{
    char *left = getenv(name);
    if (left != NULL)
        OPENSSL_cleanse(left, strlen(left));
    unsetenv(name);
}

double bench_probe_rate(const engine_setup *s, bench_ref_params *p)
{
    if (s == NULL || s->cfg == NULL || p == NULL || p->threads < 1 || p->count < 1)
        return -1;
    char self[4096];
    const char *key = probe_key(p);
    if (bench_sibling_path("p11probe", self, sizeof self) != 0 || key == NULL) {
        log_error("bench: no p11probe next to this executable (or no probe for this key)");
        return -1;
    }
    const char *module = s->cfg->hsm.module ? s->cfg->hsm.module : hsm_default_module_path();
    char threads[32], count[32], iterations[32], tokens[32 * 34] = "";
    snprintf(iterations, sizeof iterations, "%ld", p->iterations > 0 ? p->iterations : 2048);
    snprintf(threads, sizeof threads, "%ld", p->threads);
    snprintf(count, sizeof count, "%ld", p->count);
    /* The token pool, as the workers use it: thread i in token i mod n. */
    for (size_t i = 0; i < s->cfg->hsm.token_count && i < 32; i++)
        snprintf(tokens + strlen(tokens), sizeof tokens - strlen(tokens), "%s%s", i ? "," : "",
                 s->cfg->hsm.tokens[i]);
    char *argv[] = {self,
                    "--module",
                    (char *)module,
                    "--token",
                    tokens,
                    "--pin-env",
                    "HSMENROLL_BENCH_PROBE_PIN",
                    "--threads",
                    threads,
                    "--count",
                    count,
                    "--key",
                    (char *)key,
                    p->floor           ? (char *)"--floor"
                    : p->token_storage ? (char *)"--token-objects"
                                       : NULL,
                    p->floor ? (char *)"--iterations" : NULL,
                    iterations,
                    NULL};
    if (pin_to_env(s, "HSMENROLL_BENCH_PROBE_PIN") != 0)
        return -1;
    double rate = -1;
    p->cpu_ms = 0;
    if (run_child_json(argv, "per_second", &rate, "cpu_ms_per_request", &p->cpu_ms) != 0)
        rate = -1;
    wipe_env("HSMENROLL_BENCH_PROBE_PIN");
    return rate;
}

int bench_server_start(bench_server *srv, const char *work_dir, const cli_common *common)
{
    if (srv == NULL || work_dir == NULL || common == NULL)
        return -1;
    memset(srv, 0, sizeof *srv);
    srv->pid = -1;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    snprintf(srv->dir, sizeof srv->dir, "%s/serve", work_dir);
    mkdir(srv->dir, 0700);
    srv->password = secret_random(24);
    char *hash = srv->password ? serve_password_hash(srv->password, 1000) : NULL;
    char users[4200], ready[4200];
    snprintf(users, sizeof users, "%s/users.json", srv->dir);
    snprintf(ready, sizeof ready, "%s/ready", srv->dir);
    FILE *f = hash ? fopen(users, "w") : NULL;
    if (f == NULL) {
        free(hash);
        bench_server_stop(srv);
        return -1;
    }
    fchmod(fileno(f), 0600);
    fprintf(f, "{\"Users\":[{\"Name\":\"bench\",\"Password\":\"%s\"}]}\n", hash);
    free(hash);
    fclose(f);
    unlink(ready);
    char *argv[16];
    int argc = 0;
    argv[argc++] = self;
    argv[argc++] = "serve";
    argv[argc++] = "--listen";
    argv[argc++] = "127.0.0.1:0";
    argv[argc++] = "--credentials";
    argv[argc++] = users;
    argv[argc++] = "--ready-file";
    argv[argc++] = ready;
    argv[argc++] = "-q";
    cli_common_to_argv(common, argv, &argc);
    argv[argc] = NULL;
    fflush(NULL);
    srv->pid = fork();
    if (srv->pid < 0) {
        bench_server_stop(srv);
        return -1;
    }
    if (srv->pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) { /* up to 30 s: the CA token is opened first */
        f = fopen(ready, "r");
        if (f != NULL) {
            bool got = fgets(srv->url, sizeof srv->url, f) != NULL;
            fclose(f);
            if (got) {
                srv->url[strcspn(srv->url, "\r\n")] = '\0';
                return 0;
            }
        }
        if (waitpid(srv->pid, NULL, WNOHANG) == srv->pid) {
            srv->pid = -1;
            break;
        }
        nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
    }
    log_error("bench: `hsmenroll serve` did not start");
    bench_server_stop(srv);
    return -1;
}

void bench_server_stop(bench_server *srv)
{
    if (srv == NULL)
        return;
    if (srv->pid > 0) {
        kill(srv->pid, SIGTERM);
        while (waitpid(srv->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    srv->pid = -1;
    secret_free(srv->password);
    srv->password = NULL;
}

double bench_stock_rate(const engine_setup *s, const bench_server *srv, const bench_ref_params *p)
{
    if (s == NULL || s->cfg == NULL || srv == NULL || srv->password == NULL || p == NULL ||
        p->threads < 1 || p->count < 1)
        return -1;
    char script[4096], key[64];
    if (bench_sibling_path("stock-pipeline.sh", script, sizeof script) != 0 ||
        stock_key(p, key, sizeof key) == NULL) {
        log_error("bench: no stock-pipeline.sh beside this executable or in its libexec/hsmenroll "
                  "(or no pkcs11-tool key type for %s)",
                  p->key_type);
        return -1;
    }
    log_verbose("bench: the stock pipeline is %s", script);
    const char *module = s->cfg->hsm.module ? s->cfg->hsm.module : hsm_default_module_path();
    char count[32], workers[32], sans[32], tmpdir[4200];
    snprintf(count, sizeof count, "%ld", p->count);
    snprintf(workers, sizeof workers, "%ld", p->threads);
    snprintf(sans, sizeof sans, "%ld", p->sans);
    snprintf(tmpdir, sizeof tmpdir, "%s", srv->dir);
    setenv("STOCK_MODULE", module, 1);
    setenv("STOCK_URL", srv->url, 1);
    setenv("STOCK_USER", "bench", 1);
    setenv("STOCK_PASSWORD", srv->password, 1);
    setenv("STOCK_COUNT", count, 1);
    setenv("STOCK_WORKERS", workers, 1);
    setenv("STOCK_KEY", key, 1);
    setenv("STOCK_SANS", sans, 1);
    setenv("STOCK_TEMPLATE", p->template_name ? p->template_name : "Default", 1);
    setenv("STOCK_WORK", tmpdir, 1);
    char *argv[] = {script, NULL};
    double rate = -1;
    if (run_child_json(argv, "per_second", &rate, NULL, NULL) != 0)
        rate = -1;
    wipe_env("STOCK_PASSWORD");
    static const char *const set[] = {"STOCK_MODULE", "STOCK_URL",      "STOCK_USER",
                                      "STOCK_COUNT",  "STOCK_WORKERS",  "STOCK_KEY",
                                      "STOCK_SANS",   "STOCK_TEMPLATE", "STOCK_WORK"};
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
        unsetenv(set[i]);
    return rate;
}
