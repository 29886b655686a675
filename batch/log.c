/* stderr logger: "[TIME ]hsmenroll: <level>: message" or one JSON object a line, one write per
 * line so threads do not interleave; the one-time notices remembered in the home's "notices". */
#include "batch/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static log_level current_level = LOG_INFO;
static log_format current_format = LOG_FORMAT_TEXT;
static int progress_active;
static int stderr_terminal = -1; /* unknown until the first line */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char *notice_file; /* <home>/notices, or NULL (guarded by log_lock) */
#define PROCESS_NOTICES 32
static char *process_notices[PROCESS_NOTICES]; /* keys shown without a home (log_lock) */

void log_set_level(log_level level)
{
    current_level = level;
}

log_level log_get_level(void)
{
    return current_level;
}

void log_set_format(log_format format)
{
    current_format = format;
}

log_format log_get_format(void)
{
    return current_format;
}

int log_parse_format(const char *name, log_format *format)
{
    if (strcmp(name, "text") == 0)
        *format = LOG_FORMAT_TEXT;
    else if (strcmp(name, "json") == 0)
        *format = LOG_FORMAT_JSON;
    else
        return -1;
    return 0;
}

void log_set_progress_active(int active)
{
    pthread_mutex_lock(&log_lock);
    progress_active = active;
    pthread_mutex_unlock(&log_lock);
}

/* 2026-12-01T15:04:05.123Z into buf (at least 32 bytes). */
static void iso_time(char *buf, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Bytes of the UTF-8 sequence at p (of at most n bytes), 0 when it is not valid UTF-8. */
static size_t utf8_length(const unsigned char *p, size_t n)
{
    size_t len = p[0] < 0x80             ? 1
                 : (p[0] & 0xE0) == 0xC0 ? 2
                 : (p[0] & 0xF0) == 0xE0 ? 3
                 : (p[0] & 0xF8) == 0xF0 ? 4
                                         : 0;
    if (len == 0 || len > n || (len == 2 && p[0] < 0xC2))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* Appends s as a JSON string (quoted, escaped; invalid UTF-8 as U+FFFD) to buf at *n. */
static void json_string(char *buf, size_t size, size_t *n, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    if (*n + 1 < size)
        buf[(*n)++] = '"';
    while (left > 0 && *n + 8 < size) {
        size_t len = utf8_length(p, left);
        if (len == 0) {
            *n += (size_t)snprintf(buf + *n, size - *n, "\\ufffd");
            p++, left--;
            continue;
        }
        if (len > 1) {
            memcpy(buf + *n, p, len);
            *n += len;
        } else if (*p == '"' || *p == '\\') {
            buf[(*n)++] = '\\';
            buf[(*n)++] = (char)*p;
        } else if (*p == '\n') {
            buf[(*n)++] = '\\';
            buf[(*n)++] = 'n';
        } else if (*p < 0x20 || *p == 0x7f) {
            *n += (size_t)snprintf(buf + *n, size - *n, "\\u%04x", *p);
        } else {
            buf[(*n)++] = (char)*p;
        }
        p += len, left -= len;
    }
    if (*n + 1 < size)
        buf[(*n)++] = '"';
}

static void write_line(log_level level, const char *const *fields, const char *message)
{
    static const char *names[] = {"error", "warning", "info", "info", "debug"};
    char line[8192], now[40];
    size_t n = 0;
    if (stderr_terminal < 0)
        stderr_terminal = isatty(STDERR_FILENO);
    if (current_format == LOG_FORMAT_JSON) {
        iso_time(now, sizeof now);
        n = (size_t)snprintf(line, sizeof line,
                             "{\"time\":\"%s\",\"level\":\"%s\",\"message\":", now, names[level]);
        json_string(line, sizeof line - 2, &n, message);
        for (size_t i = 0; fields != NULL && fields[i] != NULL && fields[i + 1] != NULL; i += 2) {
            if (fields[i + 1][0] == '\0')
                continue;
            if (n + 1 < sizeof line - 2)
                line[n++] = ',';
            json_string(line, sizeof line - 2, &n, fields[i]);
            if (n + 1 < sizeof line - 2)
                line[n++] = ':';
            json_string(line, sizeof line - 2, &n, fields[i + 1]);
        }
        line[n++] = '}';
    } else {
        if (!stderr_terminal) {
            iso_time(now, sizeof now);
            n = (size_t)snprintf(line, sizeof line, "%s ", now);
        }
        int m = snprintf(line + n, sizeof line - n - 1, "hsmenroll: %s: %s", names[level], message);
        n += m < 0 ? 0 : (size_t)m;
        if (n > sizeof line - 2)
            n = sizeof line - 2;
    }
    line[n++] = '\n';
    pthread_mutex_lock(&log_lock);
    if (progress_active)
        (void)!write(STDERR_FILENO, "\r\033[K", 4);
    (void)!write(STDERR_FILENO, line, n);
    pthread_mutex_unlock(&log_lock);
}

static void log_va(log_level level, const char *const *fields, const char *fmt, va_list ap)
{
    char message[2048];
    vsnprintf(message, sizeof message, fmt, ap);
    write_line(level, fields, message);
}

void log_msg(log_level level, const char *fmt, ...)
{
    if (level > current_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_va(level, NULL, fmt, ap);
    va_end(ap);
}

void log_fields(log_level level, const char *const *fields, const char *fmt, ...)
{
    if (level > current_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_va(level, fields, fmt, ap);
    va_end(ap);
}

void log_set_notice_home(const char *home)
{
    char *path = NULL;
    if (home != NULL && asprintf(&path, "%s/notices", home) < 0)
        path = NULL;
    pthread_mutex_lock(&log_lock);
    free(notice_file);
    notice_file = path;
    pthread_mutex_unlock(&log_lock);
}

/* Whether key was shown before (in the home's notices file, else in this process); records it
 * when not and record is set. Called under log_lock. */
static bool notice_seen(const char *key, bool record)
{
    if (notice_file == NULL) {
        for (int i = 0; i < PROCESS_NOTICES; i++) {
            if (process_notices[i] == NULL) {
                if (record)
                    process_notices[i] = strdup(key);
                return false;
            }
            if (strcmp(process_notices[i], key) == 0)
                return true;
        }
        return false;
    }
    FILE *f = fopen(notice_file, "re");
    char have[512];
    bool seen = false;
    while (f != NULL && !seen && fgets(have, sizeof have, f) != NULL) {
        have[strcspn(have, "\n")] = '\0';
        seen = strcmp(have, key) == 0;
    }
    if (f != NULL)
        fclose(f);
    if (!seen && record) {
        int fd = open(notice_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
            char line[512];
            int len = snprintf(line, sizeof line, "%s\n", key);
            (void)!write(fd, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
            close(fd);
        }
    }
    return seen;
}

void log_once(log_level level, const char *key, const char *fmt, ...)
{
    pthread_mutex_lock(&log_lock);
    bool seen = notice_seen(key, level <= current_level); /* a notice -q hid is still new */
    pthread_mutex_unlock(&log_lock);
    if (seen)
        level = LOG_DEBUG;
    if (level > current_level)
        return;
    const char *fields[] = {"notice", key, NULL};
    va_list ap;
    va_start(ap, fmt);
    log_va(level, fields, fmt, ap);
    va_end(ap);
}
