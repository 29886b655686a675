/* PIN and password handling: environment or owner-only file, CSPRNG generation, wiping. */
#include "batch/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

void secret_free(char *secret)
{
    if (secret == NULL)
        return;
    OPENSSL_cleanse(secret, strlen(secret));
    free(secret);
}

void secret_protect_process(void)
{
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* The secret typed on the controlling terminal, echo off; NULL when there is no terminal or
 * nothing was typed. */
static char *prompt_tty(const char *what)
{
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct termios saved, quiet;
    bool echo_off = tcgetattr(fd, &saved) == 0;
    if (echo_off) {
        quiet = saved;
        quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        echo_off = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
    }
    char question[128];
    int qlen = snprintf(question, sizeof question, "hsmenroll: %s: ", what);
    char buf[256];
    ssize_t n = -1;
    if (echo_off && write(fd, question, (size_t)qlen) == qlen)
        n = read(fd, buf, sizeof buf - 1);
    if (echo_off) {
        tcsetattr(fd, TCSAFLUSH, &saved);
        (void)!write(fd, "\n", 1);
    }
    close(fd);
    char *secret = NULL;
    if (n > 0) {
        buf[n] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        if (buf[0] != '\0')
            secret = strdup(buf);
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return secret;
}

const char *secret_source(const char *env_name, const char *file, char *buf, size_t size)
{
    const char *env = env_name ? getenv(env_name) : NULL;
    if (env != NULL && *env != '\0')
        snprintf(buf, size, "$%s", env_name);
    else if ((file == NULL || access(file, F_OK) != 0) && isatty(STDIN_FILENO))
        snprintf(buf, size, "the terminal prompt");
    else
        snprintf(buf, size, "the file %s", file ? file : "(none)");
    return buf;
}

char *secret_read(const char *env_name, const char *file, const char *what, enroll_error *err)
{
    const char *env = env_name ? getenv(env_name) : NULL;
    if (env != NULL && *env != '\0')
        return strdup(env);
    /* Neither set nor a file: ask on the terminal, if there is one. */
    char *typed = NULL;
    if ((file == NULL || access(file, F_OK) != 0) && isatty(STDIN_FILENO) &&
        (typed = prompt_tty(what)) != NULL)
        return typed;
    if (file == NULL) {
        enroll_error_set(err, HSE_PIN_UNAVAILABLE, NULL, "no %s: set %s", what,
                         env_name ? env_name : "the PIN variable");
        return NULL;
    }
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        enroll_error_set(err, HSE_PIN_UNAVAILABLE, NULL,
                         "no %s: %s is not set and %s cannot be "
                         "read (%s)",
                         what, env_name ? env_name : "no variable", file, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if ((st.st_mode & 077) != 0) {
        enroll_error_set(err, HSE_PIN_UNAVAILABLE, NULL,
                         "%s holds a %s but is readable by others (mode %03o): chmod 600 it", file,
                         what, (unsigned)(st.st_mode & 0777));
        close(fd);
        return NULL;
    }
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        enroll_error_set(err, HSE_PIN_UNAVAILABLE, NULL, "%s holds no %s", file, what);
        return NULL;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    char *secret = strdup(buf);
    OPENSSL_cleanse(buf, sizeof buf);
    return secret;
}

char *secret_random(size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    size_t filled = 0;
    unsigned char rnd[64];
    while (filled < len) {
        if (RAND_priv_bytes(rnd, sizeof rnd) != 1) {
            free(out);
            return NULL;
        }
        for (size_t i = 0; i < sizeof rnd && filled < len; i++)
            if (rnd[i] < 248) /* 248 = 4 * 62: keeps the choice uniform */
                out[filled++] = alphabet[rnd[i] % 62];
    }
    OPENSSL_cleanse(rnd, sizeof rnd);
    out[len] = '\0';
    return out;
}

int secret_write_file(const char *file, const char *value, enroll_error *err)
{
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        enroll_error_set(err, HSE_WRITE_FAILED, NULL, "cannot create %s: %s", file,
                         strerror(errno));
        return -1;
    }
    /* No newline after it: libp11's pin-source=file: takes the file's bytes as they are. */
    size_t n = strlen(value);
    int ok = write(fd, value, n) == (ssize_t)n && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        unlink(file);
        enroll_error_set(err, HSE_WRITE_FAILED, NULL, "cannot write %s", file);
        return -1;
    }
    return 0;
}
