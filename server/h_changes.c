/* Changes: push, pull (with long-poll) and ack. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "handlers.h"
#include "library.h"
#include "longpoll.h"
#include "push.h"

int h_changes_push(struct req *r, struct reply *out)
{
	json_t *body = req_json(r, out);

	if (body)
		push_run(r->lib, r->auth.device_id, body, out);
	json_decref(body);
	return HANDLER_DONE;
}

/* One page from since. Returns 1 when it holds changes for the caller or more to read,
 * 0 when empty (next still filled), -1 on error (out filled). */
static int pull_page(struct req *r, long long since, long long limit, int include_own,
		     long long *next, sr_buf *b, struct reply *out)
{
	char s_since[24], s_head[24], s_limit[24];
	PGconn *c = db_acquire();
	PGresult *res = NULL;
	struct library l = {0};
	long long head, horizon;
	int i, n = 0, rc = -1;

	if (!c) {
		db_problem(out, NULL, NULL);
		return -1;
	}
	/* the horizon and the changes from one snapshot: compaction commits a higher horizon
	 * before it removes what lies under it (compact.h) */
	if (db_begin_snapshot(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	if (library_load(c, r->lib, 0, &l, out))
		goto cleanup;
	head = l.head;
	horizon = l.horizon;
	/* a cursor beyond head means the relay lost history (a restored database): resync */
	if (since < horizon || since > head) {
		reply_problem_x(out, 410, "resync-required", json_pack("{s:I}", "horizon", (json_int_t)horizon),
				since < horizon ? "changes below seq %lld were compacted; backfill from records"
						: "the cursor is beyond this library's head; backfill from records (horizon %lld)",
				horizon);
		goto cleanup;
	}
	snprintf(s_since, sizeof s_since, "%lld", since);
	snprintf(s_head, sizeof s_head, "%lld", head);
	snprintf(s_limit, sizeof s_limit, "%lld", limit);
	{
		const char *p[4] = {r->lib, s_since, s_head, s_limit};
		if (!(res = db_step(c, ST_PULL, p, out)))
			goto cleanup;
	}
	*next = since;
	sr_buf_puts(b, "{\"changes\":[");
	for (i = 0; i < PQntuples(res); i++) {
		sr_change ch = {0};

		*next = atoll(PQgetvalue(res, i, 0));
		if (!include_own && !strcmp(PQgetvalue(res, i, 2), r->auth.device_id))
			continue;
		ch.seq = *next;
		snprintf(ch.hlc, sizeof ch.hlc, "%s", PQgetvalue(res, i, 1));
		snprintf(ch.model, sizeof ch.model, "%s", PQgetvalue(res, i, 3));
		snprintf(ch.record_id, sizeof ch.record_id, "%s", PQgetvalue(res, i, 4));
		ch.op = atoi(PQgetvalue(res, i, 5)) ? SR_OP_DELETE : SR_OP_UPSERT;
		/* served as stored: the canonical text accepted at push, byte for byte */
		ch.data = PQgetisnull(res, i, 6) ? NULL : PQgetvalue(res, i, 6);
		if (n++)
			sr_buf_putc(b, ',');
		sr_change_write(b, &ch);
	}
	sr_buf_printf(b, "],\"next\":%lld,\"head\":%lld,\"more\":%s,\"schema_version\":%d}", *next, head,
		      *next < head ? "true" : "false", l.schema_version);
	rc = n > 0 || *next < head;
cleanup:
	PQclear(res);
	library_free(&l);
	db_release(c);
	return rc;
}

int h_changes_pull(struct req *r, struct reply *out)
{
	long long since, limit, wait, next = 0;
	int include_own = req_arg_flag(r, "include_own");
	int attempt;

	if (req_arg_int(r, "since", 0, 0, INT64_MAX, &since, out) ||
	    req_arg_int(r, "limit", 1000, 1, 10000, &limit, out) ||
	    req_arg_int(r, "wait", 0, 0, cfg.max_wait_s, &wait, out))
		return HANDLER_DONE;
	if (r->poll_state == POLL_NONE)
		r->poll_deadline = now_mono() + (double)wait;
	else
		since = r->poll_since; /* resumed: own changes already passed are skipped */

	for (attempt = 0; attempt < 8; attempt++) {
		int can_wait = wait > 0 && r->poll_state != POLL_EXPIRED && now_mono() < r->poll_deadline;
		uint64_t gen = can_wait ? poll_gen(r->lib) : 0;
		sr_buf b = {0};
		int rc = pull_page(r, since, limit, include_own, &next, &b, out);

		if (rc < 0) {
			sr_buf_free(&b);
			return HANDLER_DONE;
		}
		if (rc == 0 && can_wait) {
			int held;

			r->poll_since = since = next;
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
