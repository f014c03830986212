/* log.h - leveled logging to stderr, as text or (with --json) one JSON object
 * per line.  Logging never fails the caller. */
#ifndef SHOAL_LOG_H
#define SHOAL_LOG_H

enum shoal_log_level {
	SHOAL_LOG_DEBUG = 0,
	SHOAL_LOG_INFO = 1,
	SHOAL_LOG_WARN = 2,
	SHOAL_LOG_ERROR = 3,
};

/* Process-wide settings; set once at start-up before threads exist. */
void shoal_log_setup(enum shoal_log_level min, int json, const char *component);
int shoal_log_is_json(void);

void shoal_log(enum shoal_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define shoal_debug(...) shoal_log(SHOAL_LOG_DEBUG, __VA_ARGS__)
#define shoal_info(...) shoal_log(SHOAL_LOG_INFO, __VA_ARGS__)
#define shoal_warn(...) shoal_log(SHOAL_LOG_WARN, __VA_ARGS__)
#define shoal_errorf(...) shoal_log(SHOAL_LOG_ERROR, __VA_ARGS__)

#endif
