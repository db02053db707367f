/* Logging: one line per event on stderr, with a UTC timestamp and level. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

int log_level = LOG_INFO;

void log_write(int level, const char *fmt, ...)
{
	static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
	char line[2048], ts[32];
	struct timeval tv;
	struct tm tm;
	va_list ap;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	/* one fprintf per line keeps lines whole across threads */
	fprintf(stderr, "%s.%03ldZ %s %s\n", ts, (long)(tv.tv_usec / 1000), names[level], line);
}
