/*
 * Around every request: the request id (the client's X-Request-Id or a random one, echoed
 * in the reply's header, in problem bodies and in the access line), CORS for the origins in
 * SYNCRELAY_CORS_ORIGINS (off when unset), WWW-Authenticate on 401, OPTIONS, and the one
 * access line per request.
 */
#include "access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "routes.h"

static __thread const char *current_id;

const char *http_request_id(void)
{
	return current_id ? current_id : "";
}

void access_set_current(const char *id)
{
	current_id = id;
}

void access_request_id(struct MHD_Connection *conn, char out[65])
{
	const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
	unsigned char raw[8];
	size_t i, n;

	if (given && (n = strlen(given)) >= 1 && n <= 64 && strspn(given, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n) {
		memcpy(out, given, n + 1);
		return;
	}
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		memset(raw, 0, sizeof raw);
	for (i = 0; i < sizeof raw; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

/* 1 when origin is in the comma-separated cfg.cors_origins (or that is "*"). */
static int origin_allowed(const char *origin)
{
	const char *list = __atomic_load_n(&cfg.cors_origins, __ATOMIC_ACQUIRE), *p;
	size_t n;

	if (!origin || !*origin || !list || !*list)
		return 0;
	n = strlen(origin);
	for (p = list; *p;) {
		const char *end = strchr(p, ','), *a = p, *b;

		if (!end)
			end = p + strlen(p);
		while (a < end && *a == ' ')
			a++;
		for (b = end; b > a && b[-1] == ' '; b--)
			;
		if ((b - a == 1 && *a == '*') || ((size_t)(b - a) == n && !strncmp(a, origin, n)))
			return 1;
		p = *end ? end + 1 : end;
	}
	return 0;
}

void access_headers(struct req *r, struct MHD_Response *resp, int status, const char *allow, const char *code)
{
	const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");

	MHD_add_response_header(resp, "X-Request-Id", r->request_id);
	if (status >= 400 && r->route && !strcmp(r->route->name, "push"))
		metrics_push_refused(code);
	if (status == 401) {
		MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"syncrelay\"");
	}
	if (origin_allowed(origin)) {
		MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
		MHD_add_response_header(resp, "Vary", "Origin");
		MHD_add_response_header(resp, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
		if (r->cors_preflight && allow) {
			MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow);
			MHD_add_response_header(resp, "Access-Control-Allow-Headers",
						"Authorization, Content-Type, X-Request-Id, Last-Event-ID");
			MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
		}
	}
}

void access_options(struct req *r, const char *allow, struct reply *out)
{
	char methods[128];

	snprintf(methods, sizeof methods, "%s%s, OPTIONS", allow, strstr(allow, "GET") ? ", HEAD" : "");
	static __thread char kept[128]; /* the reply is sent before this thread serves another */

	reply_text(out, 204, "text/plain", strdup(""));
	snprintf(kept, sizeof kept, "%s", methods);
	out->allow = kept;
	if (origin_allowed(MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin")))
		r->cors_preflight = 1;
}

void access_log(struct req *r)
{
	struct log_access a = {0};

	a.method = r->method;
	a.route = r->route ? r->route->name : r->route_index < 0 && r->responded == 404 ? "unmatched" : NULL;
	a.status = r->responded;
	a.bytes = r->resp_bytes;
	a.ms = (now_mono() - r->t_start) * 1000;
	a.request_id = r->request_id;
	a.library = r->lib[0] ? r->lib : r->auth.library_id;
	a.device = r->dev[0] ? r->dev : r->auth.device_id;
	log_access(&a);
}
