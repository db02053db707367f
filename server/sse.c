/* Event streams on the pull route: the reader, its waits and its page jobs. See sse.h. */
#include "sse.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "auth.h"
#include "config.h"
#include "handlers.h"
#include "longpoll.h"
#include "workq.h"

int sse_wanted(struct req *r)
{
	const char *accept = req_header(r, "Accept");

	/* HEAD is served as a plain pull: it has no body to stream */
	return accept && !strcmp(r->method, "GET") && strstr(accept, "text/event-stream") != NULL;
}

/* The data field of an event: one "data:" line per line of text (an SSE reader joins them with
 * "\n" again). Change JSON is one line; the split only keeps a stray newline from ending the event. */
static void put_data(sr_buf *ev, const char *s, size_t n)
{
	for (;;) {
		const char *nl = memchr(s, '\n', n);
		size_t k = nl ? (size_t)(nl - s) : n;

		sr_buf_puts(ev, "data: ");
		sr_buf_put(ev, s, k);
		sr_buf_putc(ev, '\n');
		if (!nl)
			break;
		s += k + 1;
		n -= k + 1;
	}
}

void sse_put_change(sr_buf *ev, const sr_change *ch)
{
	size_t at;

	sr_buf_printf(ev, "id: %lld\nevent: change\n", (long long)ch->seq);
	at = ev->len;
	sr_buf_puts(ev, "data: ");
	sr_change_write(ev, ch);
	if (!ev->oom && memchr(ev->p + at + 6, '\n', ev->len - at - 6)) {
		/* never for change JSON as written today; kept exact should that change */
		char *json = strndup(ev->p + at + 6, ev->len - at - 6);

		ev->len = at;
		if (!json) {
			ev->oom = 1;
			return;
		}
		put_data(ev, json, strlen(json));
		free(json);
	} else {
		sr_buf_putc(ev, '\n');
	}
	sr_buf_putc(ev, '\n');
}

/* The event that ends a stream whose page or token check failed: the problem the same pull
 * would have answered, then the end; a client that reconnects gets it as a plain answer. */
static void put_problem(struct sse *s, const struct reply *rep)
{
	sr_buf_puts(&s->out, "event: problem\n");
	if (rep->body)
		put_data(&s->out, rep->body, rep->len);
	sr_buf_putc(&s->out, '\n');
	s->ending = 1;
}

/* ---- the next page, on a request worker; the connection is suspended ---- */

static void fetch_job(struct req *r)
{
	struct sse *s = r->sse;
	struct reply rep = {0};
	int attempt, held;

	access_set_current(r->request_id);
	s->fetch = 0;
	/* the token is checked again at each page, as a resumed long-poll's: a revoked device's
	 * stream ends. Not a new request for the rate limit. */
	r->poll_state = POLL_WOKEN;
	if (auth_check(r, &rep)) {
		put_problem(s, &rep);
		goto resume;
	}
	for (attempt = 0; attempt < 8; attempt++) {
		uint64_t gen = poll_gen(r->lib);

		if (changes_stream_page(r, &rep)) {
			put_problem(s, &rep);
			goto resume;
		}
		s->gen = gen;
		if (s->out.len > s->off)
			goto resume; /* events to send */
		if (s->fetch)
			continue; /* the page held only the device's own changes; more follow */
		r->poll_state = POLL_NONE;
		held = poll_hold(r, r->lib, gen, s->next_keepalive);
		if (held > 0) {
			/* parked: longpoll.c resumes it, and the reader may already be running: touch nothing */
			access_set_current(NULL);
			return;
		}
		if (held < 0) {
			s->ending = 1; /* stopping */
			goto resume;
		}
		/* a change committed meanwhile: read again */
	}
	s->fetch = 1; /* the library is changing fast: the reader queues the next page */
resume:
	r->poll_state = POLL_NONE;
	free(rep.body);
	access_set_current(NULL);
	MHD_resume_connection(r->conn);
}

/* ---- the content reader, on the connection's libmicrohttpd thread ---- */

static ssize_t hand_out(struct req *r, struct sse *s, const char *p, size_t n, char *buf, size_t max)
{
	if (n > max)
		n = max;
	memcpy(buf, p, n);
	r->resp_bytes += (long long)n;
	s->next_keepalive = now_mono() + s->keepalive_s;
	return (ssize_t)n;
}

ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	static const char keepalive[] = ": keepalive\n\n";
	struct req *r = cls;
	struct sse *s = r->sse;
	int woken = r->poll_state == POLL_WOKEN, expired = r->poll_state == POLL_EXPIRED;
	ssize_t n;

	(void)pos;
	r->poll_state = POLL_NONE;
	if (s->off < s->out.len) {
		n = hand_out(r, s, s->out.p + s->off, s->out.len - s->off, buf, max);
		s->off += (size_t)n;
		return n;
	}
	s->off = s->out.len = 0;
	if (s->out.oom || s->ending || poll_stopping())
		return s->out.oom ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
	if (woken)
		s->fetch = 1;
	if (expired || now_mono() >= s->next_keepalive) {
		/* the rest of a wake (a page to read) follows on the next call */
		return hand_out(r, s, keepalive, sizeof keepalive - 1, buf, max);
	}
	/* nothing to send: suspended (this is one of the two places libmicrohttpd allows it),
	 * then parked until a change or the next keepalive, or handed to a worker for a page.
	 * Returning 0 from a reader is only allowed so: libmicrohttpd would call it again at once. */
	MHD_suspend_connection(r->conn);
	if (!s->fetch) {
		int held = poll_hold(r, r->lib, s->gen, s->next_keepalive);

		if (held > 0)
			return 0; /* parked: touch nothing */
		if (held < 0) {
			s->ending = 1; /* stopping */
			MHD_resume_connection(r->conn);
			return 0;
		}
		/* the generation moved since the last page: read again */
	}
	if (workq_submit(r->lib, r, fetch_job)) {
		s->ending = 1; /* stopping */
		MHD_resume_connection(r->conn);
	}
	return 0;
}

int sse_begin(struct req *r, struct sse *s, struct reply *out)
{
	int rc = poll_stream_open(r, r->lib);

	if (rc == -2) {
		out->retry_after = 5;
		reply_problem(out, 429, "rate-limited", "this device holds its most polls and streams in this"
			      " library (%lld, SYNCRELAY_MAX_POLLS_PER_DEVICE); close one first",
			      (long long)cfg.max_polls_per_device);
	} else if (rc) {
		reply_problem(out, 503, "unavailable", "the relay is stopping; stream from another relay");
	}
	if (rc) {
		sr_buf_free(&s->out);
		free(s);
		return HANDLER_DONE;
	}
	s->next_keepalive = now_mono() + s->keepalive_s;
	r->sse = s;
	reply_text(out, 200, "text/event-stream", NULL);
	return HANDLER_DONE;
}

void sse_free(struct req *r)
{
	if (!r->sse)
		return;
	sr_buf_free(&r->sse->out);
	free(r->sse);
	r->sse = NULL;
}
