/*
 * HTTP layer: the libmicrohttpd daemon, request bodies, dispatch through the route table,
 * and the reply and problem+json helpers every handler uses. Handlers fill a struct reply
 * and never call libmicrohttpd themselves.
 */
#ifndef SR_HTTP_H
#define SR_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "syncrelay_codec.h"

enum auth_kind { AUTH_NONE = 0, AUTH_ADMIN = 1, AUTH_JOIN = 2, AUTH_DEVICE = 4 };

struct auth {
	enum auth_kind kind;
	char library_id[SR_UUID_LEN + 1]; /* join and device tokens */
	char device_id[SR_UUID_LEN + 1];  /* device tokens */
};

struct reply {
	int status;
	const char *content_type;
	char *body; /* malloc'd, handed to libmicrohttpd */
	size_t len;
	const char *allow; /* Allow header for 405 */
	int retry_after;   /* seconds, sent as Retry-After when > 0; every 503 and 429 has one */
	const char *code;  /* the problem's code (a static string), NULL for a success */
};

struct route;
struct poll_waiter;
struct sse;

struct req {
	struct MHD_Connection *conn;
	const struct route *route;
	int route_index;
	char method[8];
	char lib[SR_UUID_LEN + 1]; /* {lib} path parameter, validated */
	char dev[SR_UUID_LEN + 1]; /* {dev} path parameter, validated */
	char *body;
	size_t body_len, body_cap;
	int body_too_large;
	struct auth auth;
	int authed; /* auth checked at the first call, before the body */
	int job_done; /* a worker filled job_reply: the next call sends it */
	struct reply job_reply;
	double t_start;
	int responded;
	char request_id[65];   /* X-Request-Id: the client's, or made here */
	long long resp_bytes;  /* body bytes of the reply, for the access line */
	int cors_preflight;    /* an OPTIONS from an allowed origin */

	/* long-poll state, owned by longpoll.c while the connection is suspended */
	struct req *poll_prev, *poll_next;
	void *poll_slot;
	int poll_state;       /* POLL_* in longpoll.h */
	int64_t poll_since;   /* effective since while holding */
	char poll_since_hlc[SR_HLC_LEN + 1]; /* the change at poll_since, "" when unnamed */
	double poll_deadline; /* monotonic seconds */

	/* an event stream (sse.h), NULL for every other request; a stream is also on its
	 * library's list of open streams (longpoll.c) for its whole life */
	struct sse *sse;
	struct req *stream_prev, *stream_next;
	void *stream_slot;

	int no_db; /* answer only from what is cached (auth.c, pagememo.h), else HANDLER_NEED_DB */
};

/* Handlers return HANDLER_DONE with the reply filled, or HANDLER_SUSPEND after longpoll.c took
 * the request (a held long-poll); the handler runs again when the request is resumed. With
 * req.no_db set (a woken poll tried on libmicrohttpd's thread), HANDLER_NEED_DB says the
 * answer needs the database: the reply is untouched and the request goes to a worker. */
enum { HANDLER_DONE = 0, HANDLER_SUSPEND = 1, HANDLER_NEED_DB = 2 };
typedef int (*handler_fn)(struct req *r, struct reply *out);

/* Query-string argument, or NULL. Borrowed for the request's lifetime. */
const char *req_arg(struct req *r, const char *name);
/* Request header (case-insensitive name), or NULL. Borrowed for the request's lifetime. */
const char *req_header(struct req *r, const char *name);
/* 1 when a flag query argument is "1" or "true", else 0. */
int req_arg_flag(struct req *r, const char *name);
/* Integer query argument in [min, max], def when absent. 0, or -1 with a 400 in out. */
int req_arg_int(struct req *r, const char *name, long long def, long long min, long long max,
		long long *val, struct reply *out);
/* Strict integer text (an optional '-' and digits, nothing else) in [min, max]: 0 with *out
 * set, or -1. */
int http_parse_int(const char *s, long long min, long long max, long long *out);
/* Parses the JSON body; on failure fills a 400 problem and returns NULL. */
json_t *req_json(struct req *r, struct reply *out);

/* Replies. Each takes ownership of what it is given. */
void reply_json(struct reply *out, int status, json_t *obj); /* steals obj */
void reply_buf(struct reply *out, int status, sr_buf *b);      /* steals b's bytes */
void reply_text(struct reply *out, int status, const char *ctype, char *text);
void reply_problem(struct reply *out, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Problem with extra members (e.g. index, relay_time): extra is stolen, may be NULL. */
void reply_problem_x(struct reply *out, int status, const char *code, json_t *extra,
		     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Suspend / resume for longpoll.c. Handlers run with their connection already suspended,
 * so http_suspend only documents the hold; http_resume runs the handler again. */
void http_suspend(struct req *r);
void http_resume(struct req *r);

int http_start(const char *listen, int *bound_port);
/* Stops accepting new connections. */
void http_quiesce(void);
/* Waits up to grace_s for in-flight requests, then stops the daemon. */
void http_stop(int grace_s);
int http_active_requests(void);
int http_open_connections(void);

double now_mono(void);
/* The request id of the request this thread is serving ("" outside one): problem bodies
 * carry it as request_id. */
const char *http_request_id(void);
/* The code of the last problem this thread built (a string literal), or NULL. */
int64_t now_unix_ms(void);

#endif
