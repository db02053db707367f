/* Changes: push, pull (with long-poll) and ack. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "handlers.h"
#include "library.h"
#include "longpoll.h"
#include "notify.h"
#include "pagememo.h"
#include "push.h"
#include "sse.h"

int h_changes_push(struct req *r, struct reply *out)
{
	json_t *body = req_json(r, out);

	if (body)
		push_run(r->lib, r->auth.device_id, body, out);
	json_decref(body);
	return HANDLER_DONE;
}

/* The 410 answer: the device must backfill; reason says why (PROTOCOL.md, Pull). */
static void resync(struct reply *out, const struct library *l, const char *reason, const char *why)
{
	reply_problem_x(out, 410, "resync-required",
			json_pack("{s:I, s:s}", "horizon", (json_int_t)l->horizon, "reason", reason),
			"%s; backfill from records (horizon %lld)", why, l->horizon);
}

/* A device that pushed asks whether seq still holds its change (check_seq, check_hlc): a
 * relay that lost it (restored from a backup) is found even when the device's cursor lies
 * below it. 0 when it does, -1 with a 410 (or a database problem) in out. */
static int check_change(PGconn *c, const char *lib, const struct library *l, long long seq,
			const char *hlc, struct reply *out)
{
	char s_seq[24];
	const char *p[2] = {NULL, s_seq};
	PGresult *res;
	int rc = 0;

	if (seq > l->head) {
		resync(out, l, "history-diverged", "this device's last accepted change is beyond the library's head");
		return -1;
	}
	snprintf(s_seq, sizeof s_seq, "%lld", seq);
	p[0] = lib;
	if (!(res = db_step(c, ST_CHANGE_AT, p, out)))
		return -1;
	if (PQntuples(res) ? strcmp(PQgetvalue(res, 0, 0), hlc) != 0
			   : seq > l->horizon || (seq == l->horizon && strcmp(l->horizon_hlc, hlc))) {
		resync(out, l, "history-diverged", "the relay no longer holds this device's last accepted change");
		rc = -1;
	}
	PQclear(res);
	return rc;
}

/* Copies a column of row i into dst[cap], cut to fit: the columns were validated at push
 * and fit their buffers (a page copies three per change; no printf). */
static void field_copy(char *dst, size_t cap, const PGresult *res, int i, int col)
{
	size_t n = (size_t)PQgetlength(res, i, col);

	if (n >= cap)
		n = cap - 1;
	memcpy(dst, PQgetvalue(res, i, col), n);
	dst[n] = '\0';
}

/* One page from since. A cursor names its change too (since_hlc, "" when the device has
 * none): the row at seq = since must still hold it, or the relay's history was rewritten
 * (a database restored from a backup) and what follows is not what the device missed.
 * Returns 1 when the page holds changes for the caller or more to read, 0 when empty
 * (next and next_hlc still filled), -1 on error (out filled), -2 when r->no_db and the page
 * is not kept (pagememo.h; nothing filled). With ev (an event stream),
 * each change is also appended to ev as an event and *head_out gets the head. */
static int pull_page(struct req *r, long long since, const char *since_hlc, long long check_seq,
		     const char *check_hlc, long long limit, int include_own, long long *next, char *next_hlc,
		     sr_buf *b, struct reply *out, sr_buf *ev, long long *head_out)
{
	char s_since[24], s_head[24], s_limit[24];
	PGconn *c = NULL;
	PGresult *res = NULL;
	struct page_snap *snap = NULL;
	struct library l = {0};
	long long head;
	uint64_t gen = 0;
	/* a page another request just read serves this one too (pagememo.h); a check of the
	 * pusher's change needs the database */
	int memo = check_seq == 0 && notify_connected();
	int i = 0, end, n = 0, rc = -1, last = -1;

	if (memo) {
		gen = poll_gen(r->lib); /* before the snapshot: see pagememo.h */
		snap = pagememo_get(r->lib, gen, since, limit);
	}
	if (!snap) {
		if (r->no_db)
			return -2; /* out untouched: a worker reads it */
		if (!(c = db_acquire())) {
			db_problem(out, NULL, NULL);
			return -1;
		}
		/* the horizon and the changes from one snapshot: compaction commits a higher
		 * horizon before it removes what lies under it (compact.h) */
		if (db_begin_snapshot(c)) {
			db_problem(out, c, NULL);
			goto cleanup;
		}
		if (library_load(c, r->lib, 0, &l, out))
			goto cleanup;
		if (since < l.horizon) {
			resync(out, &l, "beyond-horizon", "changes at or below this cursor were compacted");
			goto cleanup;
		}
		if (since > l.head) {
			resync(out, &l, "history-diverged", "the cursor is beyond this library's head");
			goto cleanup;
		}
		if (check_seq > 0 && check_change(c, r->lib, &l, check_seq, check_hlc, out))
			goto cleanup;
		snprintf(s_since, sizeof s_since, "%lld", since);
		snprintf(s_head, sizeof s_head, "%lld", l.head);
		/* one more row than asked: the cursor's own */
		snprintf(s_limit, sizeof s_limit, "%lld", limit + 1);
		{
			const char *p[4] = {r->lib, s_since, s_head, s_limit};
			if (!(res = db_step(c, ST_PULL, p, out)))
				goto cleanup;
		}
		db_release(c); /* the snapshot's reads are done */
		c = NULL;
		snap = pagememo_new(res, &l);
		res = NULL;
		if (!snap) {
			reply_problem(out, 503, "unavailable", "out of memory; retry");
			goto cleanup;
		}
		if (memo)
			pagememo_put(r->lib, gen, since, limit, snap);
	}
	res = snap->res;
	head = snap->l.head;
	if (since > 0 && PQntuples(res) > 0 && atoll(PQgetvalue(res, 0, 0)) == since) {
		if (*since_hlc && strcmp(PQgetvalue(res, 0, 1), since_hlc)) {
			resync(out, &snap->l, "history-diverged", "the change at this cursor is not the one the device saw");
			goto cleanup;
		}
		i = 1;
	} else if (since > 0 && *since_hlc) {
		/* only a compacted cursor row may be missing, and then the horizon names it */
		if (since != snap->l.horizon || strcmp(snap->l.horizon_hlc, since_hlc)) {
			resync(out, &snap->l, "history-diverged", "the change at this cursor is no longer in the log");
			goto cleanup;
		}
	} else if (since > 0 && since > snap->l.horizon) {
		resync(out, &snap->l, "history-diverged", "the change at this cursor is no longer in the log");
		goto cleanup;
	}
	*next = since;
	snprintf(next_hlc, SR_HLC_LEN + 1, "%s", i ? PQgetvalue(res, 0, 1) : since_hlc);
	sr_buf_puts(b, "{\"changes\":[");
	for (end = i + (int)limit; i < PQntuples(res) && i < end; i++) {
		sr_change ch;

		*next = atoll(PQgetvalue(res, i, 0));
		last = i;
		if (!include_own && !strcmp(PQgetvalue(res, i, 2), r->auth.device_id))
			continue;
		ch.seq = *next;
		field_copy(ch.hlc, sizeof ch.hlc, res, i, 1);
		field_copy(ch.model, sizeof ch.model, res, i, 3);
		field_copy(ch.record_id, sizeof ch.record_id, res, i, 4);
		ch.op = PQgetvalue(res, i, 5)[0] != '0' ? SR_OP_DELETE : SR_OP_UPSERT;
		/* served as stored: the canonical text accepted at push, byte for byte */
		ch.data = PQgetisnull(res, i, 6) ? NULL : PQgetvalue(res, i, 6);
		if (ev) {
			sse_put_change(ev, &ch);
			n++;
			continue;
		}
		if (n++)
			sr_buf_putc(b, ',');
		sr_change_write(b, &ch);
	}
	if (last >= 0)
		field_copy(next_hlc, SR_HLC_LEN + 1, res, last, 1);
	if (head_out)
		*head_out = head;
	sr_buf_printf(b, "],\"next\":%lld,\"next_hlc\":", *next);
	if (*next_hlc)
		sr_buf_printf(b, "\"%s\"", next_hlc);
	else
		sr_buf_puts(b, "null");
	sr_buf_printf(b, ",\"head\":%lld,\"more\":%s,\"schema_version\":%d,\"relay_time\":%lld}", head,
		      *next < head ? "true" : "false", snap->l.schema_version, (long long)now_unix_ms());
	rc = n > 0 || *next < head;
cleanup:
	if (snap)
		pagememo_release(snap); /* res is the page's */
	else
		PQclear(res);
	library_free(&l);
	db_release(c);
	return rc;
}

/* The next page of stream s from its cursor, as events appended to s->out; the cursor moves
 * past the page and fetch says whether more follow. 0, or -1 with a problem in out. */
static int stream_page(struct req *r, struct sse *s, long long check_seq, const char *check_hlc,
		       struct reply *out)
{
	char next_hlc[SR_HLC_LEN + 1] = "";
	long long next = 0, head = 0;
	sr_buf b = {0};
	int rc = pull_page(r, s->since, s->since_hlc, check_seq, check_hlc, s->limit, s->include_own, &next,
			   next_hlc, &b, out, &s->out, &head);

	sr_buf_free(&b);
	if (rc < 0)
		return -1;
	if (s->out.oom) {
		reply_problem(out, 503, "unavailable", "out of memory; retry");
		return -1;
	}
	s->since = next;
	memcpy(s->since_hlc, next_hlc, sizeof s->since_hlc);
	s->fetch = next < head;
	return 0;
}

int changes_stream_page(struct req *r, struct reply *out)
{
	return stream_page(r, r->sse, 0, "", out);
}

/* A pull as an event stream (sse.h): the same checks and first page as a pull, answered as
 * problems before the stream starts. Last-Event-ID (the seq of the last event a client
 * saw; EventSource sends it when it reconnects) wins over since, and then since_hlc (which
 * named since's change) is not used. wait, when given, is the keepalive period. */
static int pull_stream(struct req *r, struct reply *out, long long since, const char *since_hlc,
		       long long check_seq, const char *check_hlc, long long limit, int include_own,
		       long long wait)
{
	const char *last = req_header(r, "Last-Event-ID");
	struct sse *s;

	if (last && *last) {
		if (http_parse_int(last, 0, INT64_MAX, &since)) {
			reply_problem(out, 400, "bad-request", "\"Last-Event-ID\" must be the seq of a change event");
			return HANDLER_DONE;
		}
		since_hlc = NULL;
	}
	s = calloc(1, sizeof *s);
	if (!s) {
		reply_problem(out, 503, "unavailable", "out of memory; retry");
		return HANDLER_DONE;
	}
	s->since = since;
	snprintf(s->since_hlc, sizeof s->since_hlc, "%s", since_hlc ? since_hlc : "");
	s->limit = limit;
	s->include_own = include_own;
	s->keepalive_s = wait > 0 ? (double)wait : SSE_KEEPALIVE_S;
	/* a comment first: the client sees the stream open before any change */
	sr_buf_puts(&s->out, ": open\n\n");
	s->gen = poll_gen(r->lib);
	if (stream_page(r, s, check_seq, check_hlc, out)) {
		sr_buf_free(&s->out);
		free(s);
		return HANDLER_DONE;
	}
	return sse_begin(r, s, out);
}

int h_changes_pull(struct req *r, struct reply *out)
{
	long long since, limit, wait, next = 0, check_seq = 0;
	int include_own = req_arg_flag(r, "include_own");
	const char *since_hlc = req_arg(r, "since_hlc"), *check_hlc = req_arg(r, "check_hlc");
	char next_hlc[SR_HLC_LEN + 1] = "";
	int attempt;

	if (req_arg_int(r, "since", 0, 0, INT64_MAX, &since, out) ||
	    req_arg_int(r, "limit", 1000, 1, 10000, &limit, out) ||
	    req_arg_int(r, "wait", 0, 0, cfg.max_wait_s, &wait, out))
		return HANDLER_DONE;
	if (since_hlc && *since_hlc && sr_hlc_parse(NULL, since_hlc, strlen(since_hlc))) {
		reply_problem(out, 400, "bad-request", "\"since_hlc\" is not an HLC");
		return HANDLER_DONE;
	}
	if (req_arg_int(r, "check_seq", 0, 0, INT64_MAX, &check_seq, out))
		return HANDLER_DONE;
	if (check_seq > 0 && (!check_hlc || sr_hlc_parse(NULL, check_hlc, strlen(check_hlc)))) {
		reply_problem(out, 400, "bad-request", "\"check_seq\" needs \"check_hlc\", an HLC");
		return HANDLER_DONE;
	}
	if (sse_wanted(r))
		return pull_stream(r, out, since, since_hlc, check_seq, check_hlc, limit, include_own, wait);
	if (r->poll_state == POLL_NONE) {
		r->poll_deadline = now_mono() + (double)wait;
		snprintf(r->poll_since_hlc, sizeof r->poll_since_hlc, "%s", since_hlc ? since_hlc : "");
	} else {
		since = r->poll_since; /* resumed: own changes already passed are skipped */
	}

	for (attempt = 0; attempt < 8; attempt++) {
		int can_wait = wait > 0 && r->poll_state != POLL_EXPIRED && now_mono() < r->poll_deadline;
		uint64_t gen = can_wait ? poll_gen(r->lib) : 0;
		sr_buf b = {0};
		int rc = pull_page(r, since, r->poll_since_hlc, check_seq, check_hlc, limit, include_own, &next,
				   next_hlc, &b, out, NULL, NULL);

		if (rc < 0) {
			sr_buf_free(&b);
			return rc == -2 ? HANDLER_NEED_DB : HANDLER_DONE;
		}
		if (rc == 0 && can_wait) {
			int held;

			/* held from where this page ended, still naming its change */
			r->poll_since = since = next;
			memcpy(r->poll_since_hlc, next_hlc, sizeof r->poll_since_hlc);
			held = poll_hold(r, r->lib, gen, r->poll_deadline);
			if (held > 0) {
				sr_buf_free(&b);
				return HANDLER_SUSPEND;
			}
			if (held == 0) {
				sr_buf_free(&b);
				continue; /* a change committed meanwhile: read again */
			}
		}
		reply_buf(out, 200, &b);
		return HANDLER_DONE;
	}
	reply_problem(out, 503, "unavailable", "the library is changing too fast to hold this poll; retry");
	return HANDLER_DONE;
}

int h_ack(struct req *r, struct reply *out)
{
	json_t *body = req_json(r, out), *seq;
	char s_seq[24];
	PGconn *c = NULL;
	PGresult *res = NULL;
	struct library l = {0};

	if (!body)
		return HANDLER_DONE;
	seq = json_object_get(body, "seq");
	if (!json_is_integer(seq) || json_integer_value(seq) < 0) {
		reply_problem(out, 400, "bad-request", "\"seq\" must be a non-negative integer");
		goto cleanup;
	}
	c = db_acquire();
	if (!c) {
		db_problem(out, NULL, NULL);
		goto cleanup;
	}
	if (library_load(c, r->lib, 0, &l, out))
		goto cleanup;
	if (json_integer_value(seq) > l.head) {
		reply_problem(out, 422, "seq-ahead", "seq %lld is beyond the library head %lld",
			      (long long)json_integer_value(seq), l.head);
		goto cleanup;
	}
	snprintf(s_seq, sizeof s_seq, "%lld", (long long)json_integer_value(seq));
	{
		const char *p[3] = {r->lib, r->auth.device_id, s_seq};
		if (!(res = db_step(c, ST_ACK, p, out)))
			goto cleanup;
	}
	reply_json(out, 200, json_pack("{s:I}", "acked_seq", (json_int_t)atoll(PQgetvalue(res, 0, 0))));
cleanup:
	PQclear(res);
	library_free(&l);
	db_release(c);
	json_decref(body);
	return HANDLER_DONE;
}
