/* Logging: one line per event on stderr, with a UTC timestamp and level, as text or as one
 * JSON object per line (SYNCRELAY_LOG_FORMAT=json). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <jansson.h>

int log_level = LOG_INFO;
int log_json;

static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const jnames[] = {"error", "warn", "info", "debug"};

static void stamp(char ts[64])
{
	struct timeval tv;
	struct tm tm;
	char base[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts, 64, "%.24s.%03dZ", base, (int)(tv.tv_usec / 1000));
}

/* Newlines (libpq's "ERROR: ...\nDETAIL: ...") become one space; trailing ones go. */
static void one_line(char *s)
{
	char *w = s, *r = s;

	for (; *r; r++) {
		if (*r == '\n' || *r == '\r') {
			while (r[1] == ' ' || r[1] == '\t' || r[1] == '\n' || r[1] == '\r')
				r++;
			if (r[1])
				*w++ = ' ';
			continue;
		}
		*w++ = *r;
	}
	*w = '\0';
}

/* one fprintf per line keeps lines whole across threads */
static void emit(int level, json_t *fields, const char *text)
{
	char ts[64];

	stamp(ts);
	if (log_json) {
		json_t *o = json_object();
		char *s;

		json_object_set_new(o, "ts", json_string(ts));
		json_object_set_new(o, "level", json_string(jnames[level]));
		if (text)
			json_object_set_new(o, "msg", json_string(text));
		if (fields)
			json_object_update(o, fields);
		s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
		if (s)
			fprintf(stderr, "%s\n", s);
		free(s);
		json_decref(o);
		return;
	}
	fprintf(stderr, "%s %s %s\n", ts, names[level], text);
}

void log_write(int level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	one_line(line);
	emit(level, NULL, line);
}

static const char *dash(const char *s)
{
	return s && *s ? s : "-";
}

void log_access(const struct log_access *a)
{
	char line[1024];

	if (LOG_INFO > log_level)
		return;
	if (log_json) {
		json_t *f = json_pack("{s:s, s:s, s:s, s:i, s:I, s:f, s:s, s:s, s:s}", "msg", "access", "method",
				      dash(a->method), "route", dash(a->route), "status", a->status, "bytes",
				      (json_int_t)a->bytes, "ms", a->ms, "request_id", dash(a->request_id), "library",
				      dash(a->library), "device", dash(a->device));
		emit(LOG_INFO, f, NULL);
		json_decref(f);
		return;
	}
	snprintf(line, sizeof line, "access method=%s route=%s status=%d bytes=%lld ms=%.1f request_id=%s library=%s device=%s",
		 dash(a->method), dash(a->route), a->status, a->bytes, a->ms, dash(a->request_id), dash(a->library),
		 dash(a->device));
	emit(LOG_INFO, NULL, line);
}
