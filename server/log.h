/* Logging to stderr with a level; formatting is skipped below the level. One line per
 * message (embedded newlines, as in libpq's errors, are joined), as text or JSON. */
#ifndef SR_LOG_H
#define SR_LOG_H

enum { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
extern int log_level;
extern int log_json; /* 1: one JSON object per line */
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_at(lvl, ...) do { if ((lvl) <= log_level) log_write((lvl), __VA_ARGS__); } while (0)
#define log_error(...) log_at(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_at(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)

/* The access line of one request (at info): fields NULL or "" are written as "-". */
struct log_access {
	const char *method, *route, *request_id, *library, *device;
	int status;
	long long bytes;
	double ms;
};
void log_access(const struct log_access *a);

#endif
