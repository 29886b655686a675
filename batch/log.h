/* Log lines on stderr with levels (error, warning, info, verbose, debug), chosen by -q / -v / -vv,
 * as text (an ISO 8601 UTC time first when stderr is not a terminal) or one JSON object a line.
 * Callers never pass a secret; the progress line is kept intact by clearing it before a log line.
 */
#ifndef HSMENROLL_BATCH_LOG_H
#define HSMENROLL_BATCH_LOG_H

/* LOG_VERBOSE: the details -v adds (shown as "info"); LOG_DEBUG: -vv's trace (stages, PKCS#11
 * calls, HTTP requests). */
typedef enum log_level { LOG_ERROR = 0, LOG_WARNING, LOG_INFO, LOG_VERBOSE, LOG_DEBUG } log_level;
typedef enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON } log_format;

void log_set_level(log_level level);
log_level log_get_level(void);
void log_set_format(log_format format);
log_format log_get_format(void);
/* "text" or "json": 0, else -1. */
int log_parse_format(const char *name, log_format *format);
/* Set by the progress display while it owns the last terminal line. */
void log_set_progress_active(int active);
void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A line with fields: fields is NULL or a NULL-terminated list of name, value pairs (strings;
 * a NULL or empty value leaves its pair out). In JSON they are members of the line's object; in
 * text the message alone is written. */
void log_fields(log_level level, const char *const *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The home whose file "notices" remembers the one-time notices already shown (NULL: none, then
 * once per process). The path is copied. */
void log_set_notice_home(const char *home);
/* A notice shown once per home: the first call with this key logs it and records the key; later
 * calls (in this process or a later one on the same home) log it at LOG_DEBUG only. */
void log_once(log_level level, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(...)   log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, __VA_ARGS__)
#define log_verbose(...) log_msg(LOG_VERBOSE, __VA_ARGS__)
#define log_debug(...)   log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
