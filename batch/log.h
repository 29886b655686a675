/* Log lines on stderr with levels (error, warning, info, debug), chosen by -q / -v. Callers never
 * pass a secret; the progress line is kept intact by clearing it before a log line. */
#ifndef HSMENROLL_BATCH_LOG_H
#define HSMENROLL_BATCH_LOG_H

typedef enum log_level { LOG_ERROR = 0, LOG_WARNING, LOG_INFO, LOG_DEBUG } log_level;

void log_set_level(log_level level);
log_level log_get_level(void);
/* Set by the progress display while it owns the last terminal line. */
void log_set_progress_active(int active);
void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...)   log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
