/* Secret handling, as a user sees it: a PIN given in the environment never reaches any process's
 * command line (the engine's, the raw probe's), nor a log, a result, the journal or an output
 * file; key-bearing outputs are 0600; with no PIN anywhere the engine asks on the terminal, echo
 * off. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support.h"

static char *tmp, *home, *pin;

static int setup(void)
{
    if (test_engine_home("hsmenroll-secrets", &tmp, &home) != 0)
        return 1;
    char path[600];
    snprintf(path, sizeof path, "%s/pin", home);
    pin = test_read_file(path, NULL);
    if (pin == NULL || strlen(pin) < 8)
        return 1;
    pin[strcspn(pin, "\r\n")] = '\0';
    return 0;
}

static int teardown(void)
{
    test_engine_home_free(tmp, home);
    free(pin);
    return 0;
}

/* Reads every process's command line once: how many hold needle, and whether one holds
 * marker (the process being watched). */
static int scan_cmdlines(const char *needle, const char *marker, int *seen_marker)
{
    int hits = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[8192];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        buf[n] = '\0';
        if (strstr(buf, needle) != NULL)
            hits++;
        if (marker != NULL && strstr(buf, marker) != NULL)
            (*seen_marker)++;
    }
    if (d != NULL)
        closedir(d);
    return hits;
}

/* Runs cmd in the background with the PIN in its environment (HSMENROLL_PIN), and reads every
 * command line on the machine until it ends: the number of times the PIN was seen, and of scans
 * that saw a process holding marker. */
static int watch(const char *cmd, const char *marker, int *seen_marker, int *status)
{
    pid_t pid = fork();
    if (pid == 0) {
        setenv("HSMENROLL_PIN", pin, 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int hits = 0;
    *seen_marker = 0;
    for (;;) {
        hits += scan_cmdlines(pin, marker, seen_marker);
        if (waitpid(pid, status, WNOHANG) == pid)
            break;
        usleep(20000);
    }
    return hits;
}

static void test_pin_from_environment_stays_secret(void)
{
    char batch[600], cmd[4096];
    snprintf(batch, sizeof batch, "%s/batch.ndjson", tmp);
    FILE *f = fopen(batch, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int i = 1; i <= 40; i++)
        fprintf(f,
                "{\"Id\":\"s-%d\",\"Template\":\"Default\",\"Subject\":\"CN=s-%d.example\","
                "\"KeyType\":\"ECC\",\"Format\":\"%s\"}\n",
                i, i, i % 2 ? "PFX" : "PEM");
    fclose(f);
    /* The PIN in the environment only (the home's PIN file moved away), a slow run (--rate),
     * every log level. */
    CU_ASSERT_EQUAL_FATAL(test_sh("mv '%s/pin' '%s/pin.away'", home, home), 0);
    snprintf(cmd, sizeof cmd,
             "HSMENROLL_HOME='%s' '%s' run '%s' -o '%s/out' --rate 25 -v -v 2>'%s/run.log'", home,
             HSMENROLL_BIN, batch, tmp, tmp);
    int seen = 0, status = -1;
    int hits = watch(cmd, "hsmenroll run", &seen, &status);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_TRUE(seen > 10); /* the engine's command line was read, many times */
    CU_ASSERT_EQUAL(hits, 0);
    /* Not in the log, the results, the journal, nor any output file. */
    CU_ASSERT_EQUAL(test_sh("grep -rqF -- '%s' '%s/out' '%s/run.log'", pin, tmp, tmp), 1);
    CU_ASSERT_EQUAL(test_sh("grep -q 'debug' '%s/run.log'", tmp), 0);
    /* The raw probe, started by bench on the home's CA and token (--ca: a throwaway one would
     * have PINs of its own), gets it through its environment too. */
    snprintf(cmd, sizeof cmd,
             "HSMENROLL_HOME='%s' '%s' bench -n 3000 --workers 1 --probe --ca embedded --issued "
             "'%s/bench-issued.ndjson' -q 2>'%s/bench.log' >/dev/null",
             home, HSMENROLL_BIN, tmp, tmp);
    hits = watch(cmd, "p11probe", &seen, &status);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_TRUE(seen > 0);
    CU_ASSERT_EQUAL(hits, 0);
    CU_ASSERT_EQUAL(test_sh("grep -qF -- '%s' '%s/bench.log'", pin, tmp), 1);
    CU_ASSERT_EQUAL(test_sh("mv '%s/pin.away' '%s/pin'", home, home), 0);
}

static int mode_of(const char *dir, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0 ? (int)(st.st_mode & 0777) : -1;
}

/* Key-bearing files (PFX, PEM with its key), the results (PFX passwords) and the journal are
 * 0600; a certificate-only DER is not writable by others. */
static void test_key_bearing_outputs_are_private(void)
{
    char batch[600], out[600];
    snprintf(batch, sizeof batch, "%s/modes.ndjson", tmp);
    snprintf(out, sizeof out, "%s/modes", tmp);
    CU_ASSERT_EQUAL_FATAL(
        test_write_file(batch, "{\"Id\":\"m-pfx\",\"Template\":\"Default\",\"Subject\":\"CN=m1\","
                               "\"Format\":\"PFX\"}\n"
                               "{\"Id\":\"m-pem\",\"Template\":\"Default\",\"Subject\":\"CN=m2\","
                               "\"Format\":\"PEM\",\"KeyType\":\"ECC\"}\n"
                               "{\"Id\":\"m-der\",\"Template\":\"Default\",\"Subject\":\"CN=m3\","
                               "\"Format\":\"DER\",\"KeyType\":\"ECC\"}\n"),
        0);
    CU_ASSERT_EQUAL_FATAL(
        test_sh("HSMENROLL_HOME='%s' '%s' run '%s' -o '%s' -q", home, HSMENROLL_BIN, batch, out),
        0);
    CU_ASSERT_EQUAL(mode_of(out, "m-pfx.pfx"), 0600);
    CU_ASSERT_EQUAL(mode_of(out, "m-pem.pem"), 0600);
    CU_ASSERT_EQUAL(mode_of(out, "results.ndjson"), 0600);
    CU_ASSERT_EQUAL(mode_of(out, "journal.ndjson"), 0600);
    int der = mode_of(out, "m-der.der");
    CU_ASSERT_TRUE(der > 0 && (der & 022) == 0);
    CU_ASSERT_EQUAL(test_sh("grep -q 'PRIVATE KEY' '%s/m-pem.pem'", out), 0);
}

/* No PIN in the environment nor in a file: on a terminal the engine asks, echo off; without a
 * terminal it says where it looked. `script` gives the command a pseudo-terminal. */
static void test_pin_prompt_on_terminal(void)
{
    char config[600], text[2048];
    snprintf(config, sizeof config, "%s/prompt.json", tmp);
    snprintf(text, sizeof text,
             "{\"Hsm\":{\"Tokens\":[\"hsmenroll-keys\"],\"PinEnv\":\"HSMENROLL_NO_SUCH_PIN\","
             "\"PinFile\":\"%s/no-such-pin\"},\"CertificateAuthorities\":[{\"Id\":1,\"Name\":"
             "\"embedded\",\"Type\":\"local\",\"Home\":\"%s/ca\",\"Token\":\"hsmenroll-ca\","
             "\"PinFile\":\"%s/ca-pin\"}],"
             "\"Templates\":[{\"Id\":1,\"Name\":\"Default\",\"CertificateAuthorities\":[1]}],"
             "\"EnrollmentPatterns\":[{\"Id\":1,\"Name\":\"Default\",\"Template\":1}]}",
             tmp, home, home);
    CU_ASSERT_EQUAL_FATAL(test_write_file(config, text), 0);
    char *typed = test_sh_output(
        NULL,
        "(sleep 1; printf '%%s\\n' '%s') | SOFTHSM2_CONF='%s/softhsm2.conf' script -qec \"'%s' "
        "token list --keys --config '%s'\" /dev/null",
        pin, home, HSMENROLL_BIN, config);
    CU_ASSERT_PTR_NOT_NULL_FATAL(typed);
    CU_ASSERT_PTR_NOT_NULL(strstr(typed, "hsmenroll: user PIN of token")); /* named */
    CU_ASSERT_PTR_NOT_NULL(strstr(typed, "pkcs11:")); /* logged in: the keys are listed */
    CU_ASSERT_PTR_NULL(strstr(typed, pin));           /* not echoed */
    free(typed);
    /* No terminal: the error names where it looked, not a value. */
    char *err = test_sh_output(NULL,
                               "SOFTHSM2_CONF='%s/softhsm2.conf' '%s' token list --keys --config "
                               "'%s' </dev/null 2>&1",
                               home, HSMENROLL_BIN, config);
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err, "HSMENROLL_NO_SUCH_PIN") : NULL);
    free(err);
}

int main(void)
{
    test_case cases[] = {
        TEST_CASE(test_pin_from_environment_stays_secret),
        TEST_CASE(test_key_bearing_outputs_are_private),
        TEST_CASE(test_pin_prompt_on_terminal),
        TEST_END,
    };
    return test_main("secrets", cases, setup, teardown);
}
