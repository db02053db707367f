/*
 * Replies: JSON bodies and RFC 9457 problem+json. Every failure a client sees leaves
 * through reply_problem_x, so each error carries type, title, status, detail and code.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

static const struct {
	const char *code;
	const char *title;
} titles[] = {
	{"bad-request", "Malformed request"},
	{"unauthorized", "Missing, unknown or revoked token"},
	{"wrong-library", "Token belongs to another library"},
	{"forbidden", "Token may not do this"},
	{"not-found", "No such resource"},
	{"library-not-found", "No such library"},
	{"device-not-found", "No such device"},
	{"method-not-allowed", "Method not allowed on this resource"},
	{"device-exists", "Device already enrolled"},
	{"schema-cycle", "Schema references form a cycle"},
	{"schema-conflict", "Schema change removes or alters a model"},
	{"unknown-model", "Model not in the library schema"},
	{"hlc-conflict", "Same HLC with different content"},
	{"foreign-hlc", "HLC names another device"},
	{"not-owner", "Record owned by another device"},
	{"clock-skew", "HLC too far ahead of the relay clock"},
	{"seq-ahead", "Acknowledged seq beyond head"},
	{"too-large", "Request exceeds a limit"},
	{"rate-limited", "Too many requests from this device"},
	{"resync-required", "Cursor below the horizon"},
	{"unavailable", "Relay temporarily unavailable"},
	{"internal", "Internal error"},
	{"compaction-running", "Library is being compacted already"},
};

static const char *title_of(const char *code)
{
	size_t i;

	for (i = 0; i < sizeof titles / sizeof titles[0]; i++)
		if (!strcmp(titles[i].code, code))
			return titles[i].title;
	return "Error";
}

void reply_text(struct reply *out, int status, const char *ctype, char *text)
{
	free(out->body);
	out->retry_after = 0;
	out->status = status;
	out->content_type = ctype;
	out->body = text;
	out->len = text ? strlen(text) : 0;
}

void reply_json(struct reply *out, int status, json_t *obj)
{
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

	json_decref(obj);
	if (!text) {
		reply_text(out, 500, "application/problem+json",
			   strdup("{\"type\":\"urn:syncrelay:problem:internal\",\"title\":\"Internal error\","
				  "\"status\":500,\"detail\":\"could not encode the response\",\"code\":\"internal\"}"));
		return;
	}
	reply_text(out, status, "application/json", text);
}

void reply_buf(struct reply *out, int status, sr_buf *b)
{
	char *text = sr_buf_steal(b);

	if (!text) {
		reply_problem(out, 500, "internal", "out of memory building the response");
		return;
	}
	reply_text(out, status, "application/json", text);
}

static void problem_v(struct reply *out, int status, const char *code, json_t *extra,
		      const char *fmt, va_list ap)
{
	char detail[1024], type[128];
	json_t *p = extra ? extra : json_object();

	out->code = code; /* the reply may be sent from another thread than the one building it */
	vsnprintf(detail, sizeof detail, fmt, ap);
	snprintf(type, sizeof type, "urn:syncrelay:problem:%s", code);
	json_object_set_new(p, "type", json_string(type));
	json_object_set_new(p, "title", json_string(title_of(code)));
	json_object_set_new(p, "status", json_integer(status));
	/* detail may quote client bytes that are not UTF-8: fall back to a safe text */
	json_t *d = json_string(detail);
	json_object_set_new(p, "detail", d ? d : json_string("request refused (detail not printable)"));
	json_object_set_new(p, "code", json_string(code));
	int chosen = out->retry_after;

	if (*http_request_id())
		json_object_set_new(p, "request_id", json_string(http_request_id()));
	reply_json(out, status, p);
	out->content_type = "application/problem+json";
	/* a caller may have chosen the delay (a rate limit); otherwise a second */
	if (status == 503 || status == 429)
		out->retry_after = chosen > 0 ? chosen : 1;
}

void reply_problem(struct reply *out, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	problem_v(out, status, code, NULL, fmt, ap);
	va_end(ap);
}

void reply_problem_x(struct reply *out, int status, const char *code, json_t *extra,
		     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	problem_v(out, status, code, extra, fmt, ap);
	va_end(ap);
}
