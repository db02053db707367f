/*
 * HTTP daemon. libmicrohttpd runs a pool of poll() threads (not epoll: in 0.9.75 quiescing
 * an epoll pool races with its workers and can abort the process); each request is collected
 * into a struct req (its *req_cls), dispatched once its body is complete, and freed in
 * one completion callback. Everything that reads the database (authentication, handlers)
 * runs on a request worker (workq.c) while the connection is suspended, so these threads
 * never wait on the database. Held long-polls are suspended connections owned by
 * longpoll.c, so they take no thread while they wait; so are event streams (sse.h) between
 * their events.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "auth.h"
#include "config.h"
#include "handlers.h"
#include "jsoncost.h"
#include "log.h"
#include "metrics.h"
#include "longpoll.h"
#include "routes.h"
#include "sse.h"
#include "tls.h"
#include "workq.h"

static struct MHD_Daemon *daemon_;
static int active; /* requests between first call and completion */
static int open_conns; /* TCP connections, counted by on_connection */

/* Per TCP connection (libmicrohttpd's socket context), for what must be known before the
 * first call of a request: the unescape callback marks a decoded NUL here. */
struct conn_ctx {
	int nul; /* the current request's path or query decoded a NUL byte (%00) */
};

static struct conn_ctx *conn_ctx_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t now_unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int http_active_requests(void)
{
	return __atomic_load_n(&active, __ATOMIC_SEQ_CST);
}

const char *req_arg(struct req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *req_header(struct req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

int req_arg_flag(struct req *r, const char *name)
{
	const char *s = req_arg(r, name);

	return s && (!strcmp(s, "1") || !strcmp(s, "true"));
}

int http_parse_int(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	/* strict: an optional '-' and digits only (strtoll alone takes "+1", " 1") */
	if (!(s[0] >= '0' && s[0] <= '9') && !(s[0] == '-' && s[1] >= '0' && s[1] <= '9'))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end || errno || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int req_arg_int(struct req *r, const char *name, long long def, long long min, long long max,
		long long *val, struct reply *out)
{
	const char *s = req_arg(r, name);

	if (!s) {
		*val = def;
		return 0;
	}
	if (http_parse_int(s, min, max, val)) {
		reply_problem(out, 400, "bad-request", "query parameter \"%s\" must be an integer from %lld to %lld",
			      name, min, max);
		return -1;
	}
	return 0;
}

json_t *req_json(struct req *r, struct reply *out)
{
	struct json_cost cost;
	json_error_t err;
	json_t *j;

	if (!r->body_len) {
		reply_problem(out, 400, "bad-request", "the request needs a JSON body");
		return NULL;
	}
	/* refuse before building the tree: a body of tiny values ("{},{},...") would cost some
	 * hundred bytes of jansson per three bytes of text. Bounds: at most max_batch elements in
	 * a top-level array, one value per 8 bytes and one container per 16 (plus a little), which
	 * keeps the tree within a small multiple of the body; real batches use far fewer. */
	json_cost_scan(r->body, r->body_len, &cost);
	/* the batch limit is the push's; other bodies have their own caps (models, refs) */
	if (!strcmp(r->route->name, "push") && (int64_t)cost.top_array > cfg.max_batch) {
		reply_problem(out, 413, "too-large", "an array in the body holds more than %lld elements (the most"
			      " changes in one batch)", (long long)cfg.max_batch);
		return NULL;
	}
	if (cost.max_depth > JSON_PARSER_MAX_DEPTH) {
		reply_problem(out, 400, "bad-request", "the body is not valid JSON: nested deeper than %d levels",
			      JSON_PARSER_MAX_DEPTH);
		return NULL;
	}
	if (cost.values > r->body_len / 8 + 1024 || cost.containers > r->body_len / 16 + 1024) {
		reply_problem(out, 413, "too-large", "the body holds %zu JSON values in %zu bytes; at most one"
			      " per 8 bytes (and one object or array per 16) are taken", cost.values, r->body_len);
		return NULL;
	}
	j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &err);
	if (!j) {
		reply_problem(out, 400, "bad-request", "the body is not valid JSON: %s (at byte %d)",
			      err.text, err.position);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		reply_problem(out, 400, "bad-request", "the body must be a JSON object");
		return NULL;
	}
	return j;
}

void http_suspend(struct req *r)
{
	/* handlers run on request workers, their connection already suspended by the dispatch */
	(void)r;
}

void http_resume(struct req *r)
{
	MHD_resume_connection(r->conn);
}

/* An event stream's 200 (sse.h): headers now, the body from its content reader as events come.
 * Unknown size: chunked on HTTP/1.1, so its end is a clean end of the response. */
static enum MHD_Result send_stream(struct req *r, struct reply *rep)
{
	struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, r, NULL);
	enum MHD_Result ret;

	free(rep->body);
	rep->body = NULL;
	if (!resp)
		return MHD_NO;
	access_headers(r, resp, 200, NULL, NULL);
	MHD_add_response_header(resp, "Content-Type", "text/event-stream");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	/* a buffering proxy (nginx) would hold the events back */
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	ret = MHD_queue_response(r->conn, 200, resp);
	MHD_destroy_response(resp);
	r->responded = 200;
	return ret;
}

static enum MHD_Result send_reply(struct req *r, struct reply *rep)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (r->sse && rep->status == 200)
		return send_stream(r, rep);
	if (!rep->body)
		reply_problem(rep, 500, "internal", "the handler produced no reply");
	resp = MHD_create_response_from_buffer(rep->len, rep->body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(rep->body);
		return MHD_NO;
	}
	rep->body = NULL;
	r->resp_bytes = (long long)rep->len;
	access_headers(r, resp, rep->status, rep->allow, rep->code);
	MHD_add_response_header(resp, "Content-Type", rep->content_type);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	if (rep->allow)
		MHD_add_response_header(resp, "Allow", rep->allow);
	if (rep->status == 503 && __atomic_load_n(&open_conns, __ATOMIC_SEQ_CST) > cfg.max_connections)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	if (rep->retry_after > 0) {
		char secs[16];

		snprintf(secs, sizeof secs, "%d", rep->retry_after);
		MHD_add_response_header(resp, "Retry-After", secs);
	}
	ret = MHD_queue_response(r->conn, (unsigned)rep->status, resp);
	MHD_destroy_response(resp);
	r->responded = rep->status;
	return ret;
}

#define MAX_TARGET_BYTES (16 * 1024)
#define MAX_HEADER_BYTES (32 * 1024)
/* libmicrohttpd reads a request head into this per-connection pool and answers one that does
 * not fit with its own HTML page (PROTOCOL.md: never HTML): 128 KiB leaves room for heads far
 * past the 414/431 limits above. It also zeroes the whole pool after every response on a
 * kept-alive connection (0.9.75 MHD_pool_reset), so each such connection keeps it resident:
 * at 256 KiB, 10,000 answered polls held 1.4 GiB. */
#define CONNECTION_MEMORY (128 * 1024)

static enum MHD_Result add_len(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	*(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4;
	return MHD_YES;
}

static size_t query_len(struct MHD_Connection *conn)
{
	size_t n = 0;

	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_len, &n);
	return n;
}

static size_t header_bytes(struct MHD_Connection *conn)
{
	size_t n = 0;

	MHD_get_connection_values(conn, MHD_HEADER_KIND, add_len, &n);
	return n;
}

/* The most body bytes route takes: 0 for routes without a body. */
static long long route_body_limit(const struct route *rt)
{
	return rt->max_body < 0 || rt->max_body > cfg.max_body_bytes ? (long long)cfg.max_body_bytes : rt->max_body;
}

static void too_large(struct req *r, struct reply *rep)
{
	long long lim = route_body_limit(r->route);

	if (lim == 0)
		reply_problem(rep, 413, "too-large", "%s %s takes no body", r->route->method, r->route->pattern);
	else
		reply_problem(rep, 413, "too-large", "the body exceeds %lld bytes", lim);
}

static enum MHD_Result nul_in_value(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
				    const char *value, size_t value_size)
{
	if (strlen(key) != key_size || (value && strlen(value) != value_size)) {
		*(int *)cls = 1;
		return MHD_NO;
	}
	return MHD_YES;
}

/* What can be refused before the body is read: NUL bytes, transfer codings, a body where the
 * route takes none or more than it takes, too many connections, and (when the route needs it)
 * the token, so that no unauthenticated body is ever buffered. 1 with rep filled to refuse. */
static int early_checks(struct req *r, struct MHD_Connection *conn, struct reply *rep)
{
	struct conn_ctx *cc = conn_ctx_of(conn);
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
	const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
	int nul = cc && cc->nul;

	if (cc)
		cc->nul = 0;
	MHD_get_connection_values_n(conn, MHD_HEADER_KIND, nul_in_value, &nul);
	if (nul) {
		reply_problem(rep, 400, "bad-request", "a NUL byte (%%00) in the path, query or a header");
		return 1;
	}
	if (te && strcasecmp(te, "chunked")) {
		reply_problem(rep, 400, "bad-request", "transfer coding \"%.64s\" is not supported; send the body"
			      " plain or chunked", te);
		return 1;
	}
	if ((cl && strtoll(cl, NULL, 10) > route_body_limit(r->route)) || (te && !route_body_limit(r->route))) {
		too_large(r, rep);
		return 1;
	}
	if (__atomic_load_n(&open_conns, __ATOMIC_SEQ_CST) > cfg.max_connections) {
		reply_problem(rep, 503, "unavailable", "the relay holds its most connections (%lld); retry later",
			      (long long)cfg.max_connections);
		return 1;
	}
	return 0;
}

static int dispatch(struct req *r, struct reply *rep)
{
	if (r->body_too_large) {
		too_large(r, rep);
		return HANDLER_DONE;
	}
	/* a resumed long-poll is authenticated again: a revocation while it was held counts */
	if (r->route->auth != AUTH_NONE && (!r->authed || r->poll_state != POLL_NONE)) {
		int rc = auth_check(r, rep);
		if (rc == -2)
			return HANDLER_NEED_DB;
		if (rc)
			return HANDLER_DONE;
	}
	return r->route->handler(r, rep);
}

/* ---- the work of a request, on a request worker (workq.c) ---- */

static void job_done(struct req *r)
{
	__atomic_store_n(&r->job_done, 1, __ATOMIC_SEQ_CST);
	MHD_resume_connection(r->conn);
}

static void job_handler(struct req *r)
{
	int held;

	/* problem bodies name the request on this thread too */
	access_set_current(r->request_id);
	held = dispatch(r, &r->job_reply) == HANDLER_SUSPEND;
	access_set_current(NULL);
	/* parked as a long-poll: the connection stays suspended until longpoll.c resumes it,
	 * and r may already be running again on another worker: touch nothing */
	if (held)
		return;
	job_done(r);
}

/* Suspends the connection and queues fn on r's lane; 0, or -1 with rep filled. */
static int submit(struct req *r, const char *lane, workq_fn fn, struct reply *rep)
{
	MHD_suspend_connection(r->conn);
	if (workq_submit(lane, r, fn) == 0)
		return 0;
	MHD_resume_connection(r->conn);
	reply_problem(rep, 503, "unavailable", "the relay is stopping or out of memory; retry later");
	return -1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size, void **req_cls)
{
	struct req *r = *req_cls;
	struct reply rep = {0};
	const char *allow = NULL;

	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r)
			return MHD_NO;
		__atomic_add_fetch(&active, 1, __ATOMIC_SEQ_CST);
		r->conn = conn;
		r->t_start = now_mono();
		r->route_index = -1;
		snprintf(r->method, sizeof r->method, "%s", method);
		access_request_id(conn, r->request_id);
		access_set_current(r->request_id);
		*req_cls = r;
		/* HEAD is GET without the body (libmicrohttpd drops it); OPTIONS names the methods */
		switch (routes_match(r, !strcmp(method, "HEAD") ? "GET" : method, url, &allow)) {
		case ROUTE_FOUND:
			break;
		case ROUTE_NOT_FOUND:
			reply_problem(&rep, 404, "not-found", "no resource at this path");
			return send_reply(r, &rep);
		case ROUTE_BAD_METHOD:
			if (!strcmp(method, "OPTIONS")) {
				access_options(r, allow, &rep);
				return send_reply(r, &rep);
			}
			reply_problem(&rep, 405, "method-not-allowed", "%s is not allowed here", method);
			rep.allow = allow;
			return send_reply(r, &rep);
		case ROUTE_BAD_ID:
			reply_problem(&rep, 400, "bad-request",
				      "a library or device id in the path is not a canonical lowercase UUID");
			return send_reply(r, &rep);
		}
		/* beyond these the request would outgrow libmicrohttpd's connection memory, whose
		 * own replies are HTML pages: refuse well below that, as problem+json */
		if (strlen(url) + query_len(conn) > MAX_TARGET_BYTES) {
			reply_problem(&rep, 414, "too-large", "the request target exceeds %d bytes", MAX_TARGET_BYTES);
			return send_reply(r, &rep);
		}
		if (header_bytes(conn) > MAX_HEADER_BYTES) {
			reply_problem(&rep, 431, "too-large", "the request headers exceed %d bytes", MAX_HEADER_BYTES);
			return send_reply(r, &rep);
		}
		if (early_checks(r, conn, &rep))
			return send_reply(r, &rep);
		/* the token is checked before the body is read. This one short read runs here: a
		 * connection suspended before its body is in is resumed by libmicrohttpd 0.9.75 with
		 * a call that looks like the end of the body. The pool keeps connections beyond the
		 * workers' for it (SYNCRELAY_DB_POOL > SYNCRELAY_WORKERS). */
		if (r->route->auth != AUTH_NONE) {
			if (auth_check(r, &rep))
				return send_reply(r, &rep);
			r->authed = 1;
		}
		return MHD_YES;
	}
	access_set_current(r->request_id);
	if (__atomic_exchange_n(&r->job_done, 0, __ATOMIC_SEQ_CST))
		return send_reply(r, &r->job_reply); /* a worker's answer */
	if (r->responded)
		return MHD_YES; /* an early reply was queued; the rest of the body is dropped */

	if (*upload_data_size) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (r->body_too_large || r->body_len + n > (size_t)route_body_limit(r->route)) {
			r->body_too_large = 1;
			return MHD_YES;
		}
		if (r->body_len + n + 1 > r->body_cap) {
			size_t cap = r->body_cap ? r->body_cap : 4096;
			char *p;

			while (cap < r->body_len + n + 1)
				cap *= 2;
			p = realloc(r->body, cap);
			if (!p)
				return MHD_NO;
			r->body = p;
			r->body_cap = cap;
		}
		memcpy(r->body + r->body_len, upload_data, n);
		r->body_len += n;
		r->body[r->body_len] = '\0';
		return MHD_YES;
	}

	/* A woken long-poll is answered here when its token and its page are cached (one push
	 * wakes every poll of a library, and they share both): the trip to a worker and back
	 * was most of the time to answer 10,000 of them. Otherwise it goes to a worker. */
	if (r->poll_state == POLL_WOKEN && !r->sse && r->route->handler == h_changes_pull) {
		int hr;

		r->no_db = 1;
		hr = dispatch(r, &rep);
		r->no_db = 0;
		if (hr == HANDLER_SUSPEND)
			return MHD_YES;
		if (hr == HANDLER_DONE)
			return send_reply(r, &rep);
	}
	/* complete (or a held poll resumed): what needs no database runs here, the rest on a worker */
	if (!routes_inline(r->route)) {
		if (submit(r, r->lib[0] ? r->lib : "", job_handler, &rep))
			return send_reply(r, &rep);
		return MHD_YES;
	}
	if (dispatch(r, &rep) == HANDLER_SUSPEND)
		return MHD_YES;
	return send_reply(r, &rep);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req *r = *req_cls;

	if (!r)
		return;
	poll_cancel(r);
	sse_free(r);
	metrics_request(r->route_index, r->responded, now_mono() - r->t_start);
	access_log(r);
	free(r->body);
	free(r);
	*req_cls = NULL;
	__atomic_sub_fetch(&active, 1, __ATOMIC_SEQ_CST);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		*socket_context = calloc(1, sizeof(struct conn_ctx));
		__atomic_add_fetch(&open_conns, 1, __ATOMIC_SEQ_CST);
	} else {
		free(*socket_context);
		*socket_context = NULL;
		__atomic_sub_fetch(&open_conns, 1, __ATOMIC_SEQ_CST);
	}
}

/* libmicrohttpd's own unescaping, noting a decoded NUL: a C string would silently end there
 * (a path or a value cut short), so early_checks refuses the request instead. */
static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	size_t n = MHD_http_unescape(s);
	struct conn_ctx *cc;

	if (memchr(s, '\0', n) && (cc = conn_ctx_of(conn)))
		cc->nul = 1;
	return n;
}

int http_open_connections(void)
{
	return __atomic_load_n(&open_conns, __ATOMIC_SEQ_CST);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];

	vsnprintf(line, sizeof line, fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_debug("http: %s", line);
}

#define CONN_HEADROOM 64

/* libmicrohttpd's own cap: max_connections plus the headroom that gets a 503, within the
 * descriptors the process may open (raised to its hard limit), keeping some for the pool. */
static unsigned conn_limit(void)
{
	struct rlimit rl;
	long long want = cfg.max_connections + CONN_HEADROOM, fds;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		fds = (long long)rl.rlim_cur - cfg.db_pool - 64;
		if (want > fds) {
			log_warn("only %lld connections fit in the descriptor limit (%lld); lower than"
				 " SYNCRELAY_MAX_CONNECTIONS + %d", fds, (long long)rl.rlim_cur, CONN_HEADROOM);
			want = fds > 16 ? fds : 16;
		}
	}
	return (unsigned)want;
}

int http_start(const char *listen, int *bound_port)
{
	struct addrinfo hints = {0}, *ai = NULL;
	char host[256];
	const char *colon, *port;
	/* epoll where libmicrohttpd has it: with poll() every turn of a thread's loop walked all
	 * its connections, so waking 10,000 held polls (each resumed twice: to a worker and
	 * back) cost the kernel seconds of poll() over idle sockets */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD |
			 (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL) |
			 MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	const union MHD_DaemonInfo *info;
	/* with TLS on, GnuTLS asks tls.c for the certificate at each handshake, so SIGHUP can
	 * swap it under the running daemon */
	struct MHD_OptionItem tls_opts[] = {
		{MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)tls_cert_callback()},
		{MHD_OPTION_END, 0, NULL},
	};
	int rc;

	colon = strrchr(listen, ':');
	if (!colon || colon == listen) {
		log_error("listen address \"%s\" is not host:port", listen);
		return -1;
	}
	port = colon + 1;
	if (listen[0] == '[' && colon[-1] == ']')
		snprintf(host, sizeof host, "%.*s", (int)(colon - listen - 2), listen + 1);
	else
		snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		log_error("could not resolve listen address \"%s\": %s", listen, gai_strerror(rc));
		return -1;
	}
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (tls_enabled())
		flags |= MHD_USE_TLS;
	else
		tls_opts[0].option = MHD_OPTION_END;
	daemon_ = MHD_start_daemon(
		flags, (uint16_t)atoi(port), NULL, NULL, on_request, NULL,
		/* first, or libmicrohttpd warns that earlier options may log elsewhere */
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
		MHD_OPTION_SOCK_ADDR, ai->ai_addr,
		MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg.threads,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
		MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, NULL,
		/* idle and slow clients; held polls are suspended and never time out on their own */
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg.idle_timeout_s,
		/* past max_connections a client still gets a quick 503, up to this headroom */
		MHD_OPTION_CONNECTION_LIMIT, conn_limit(),
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg.max_connections_per_ip,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
		MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
		MHD_OPTION_ARRAY, tls_opts,
		MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!daemon_) {
		log_error("could not listen on \"%s\" (address in use or not permitted)", listen);
		return -1;
	}
	info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
	*bound_port = info ? info->port : atoi(port);
	return 0;
}

void http_quiesce(void)
{
	if (daemon_) {
		MHD_socket s = MHD_quiesce_daemon(daemon_);
		if (s != MHD_INVALID_SOCKET)
			close(s);
	}
}

void http_stop(int grace_s)
{
	double until = now_mono() + grace_s;
	struct timespec tick = {0, 20 * 1000 * 1000};

	/* in-flight requests finish; held polls were answered by poll_shutdown() */
	while (http_active_requests() > 0 && now_mono() < until)
		nanosleep(&tick, NULL);
	if (http_active_requests() > 0)
		log_warn("stopping with %d requests still in flight", http_active_requests());
	if (daemon_)
		MHD_stop_daemon(daemon_);
	daemon_ = NULL;
}
