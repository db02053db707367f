/*
 * Pull cursors that name their change: since_hlc is checked against the row at since, and
 * check_seq/check_hlc against one more seq; a rewritten history (the relay's database restored
 * from an older copy, simulated here by rewriting the log in SQL) is 410 history-diverged on
 * the first pull after it, a compacted cursor beyond-horizon.
 */
#include <criterion/criterion.h>
#include <stdarg.h>

#include "harness.h"

/* A pull as d; expects status; returns the parsed body (caller decrefs). */
static json_t *pull(struct relay *r, const struct lib *l, const struct dev *d, long want, const char *fmt, ...)
{
	char q[512];
	struct resp p;
	va_list ap;
	json_t *j;

	va_start(ap, fmt);
	vsnprintf(q, sizeof q, fmt, ap);
	va_end(ap);
	h_http(&p, r, "GET", h_lp(l, "/changes?%s", q), d->token, NULL);
	cr_assert_eq(p.status, want, "GET changes?%s: %ld %s", q, p.status, p.body);
	j = json_incref(p.json);
	h_resp_free(&p);
	return j;
}

static void expect_410(json_t *j, const char *reason, const char *what)
{
	cr_assert_str_eq(h_jstr(j, "code"), "resync-required", "%s: %s", what, json_dumps(j, 0));
	cr_assert_str_eq(h_jstr(j, "reason"), reason, "%s: %s", what, json_dumps(j, 0));
	cr_assert(json_is_integer(json_object_get(j, "horizon")), "%s: no horizon", what);
	json_decref(j);
}

Test(cursor, next_hlc_names_the_change_and_the_check_passes, .timeout = 60)
{
	struct relay r;
	struct lib l;
	struct dev a, b;
	char hlc5[SR_HLC_LEN + 1], hlc10[SR_HLC_LEN + 1];
	json_t *j, *k;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &a, &b);
	h_push_ok(&r, &l, &a, h_batch(&a, h_now_ms() - 10000, 0, 10), 10, 0);
	j = pull(&r, &l, &b, 200, "since=0&limit=5");
	cr_assert_eq(h_jint(j, "next"), 5);
	cr_assert_eq(json_array_size(json_object_get(j, "changes")), 5, "a page of 5 holds %zu", json_array_size(json_object_get(j, "changes")));
	snprintf(hlc5, sizeof hlc5, "%s", h_jstr(j, "next_hlc"));
	cr_assert_str_eq(hlc5, h_jstr(json_array_get(json_object_get(j, "changes"), 4), "hlc"));
	cr_assert(json_is_integer(json_object_get(j, "relay_time")));
	json_decref(j);
	/* the next page from the named cursor: exactly 6..10, the cursor's own row not repeated */
	j = pull(&r, &l, &b, 200, "since=5&since_hlc=%s&limit=5", hlc5);
	k = json_object_get(j, "changes");
	cr_assert_eq(json_array_size(k), 5);
	cr_assert_eq(h_jint(json_array_get(k, 0), "seq"), 6);
	cr_assert_eq(h_jint(j, "next"), 10);
	cr_assert(!json_is_true(json_object_get(j, "more")));
	snprintf(hlc10, sizeof hlc10, "%s", h_jstr(j, "next_hlc"));
	json_decref(j);
	/* an empty page keeps the cursor and its name */
	j = pull(&r, &l, &b, 200, "since=10&since_hlc=%s", hlc10);
	cr_assert_eq(json_array_size(json_object_get(j, "changes")), 0);
	cr_assert_eq(h_jint(j, "next"), 10);
	cr_assert_str_eq(h_jstr(j, "next_hlc"), hlc10);
	json_decref(j);
	h_relay_stop(&r);
}

Test(cursor, a_rewritten_history_is_found_whatever_the_heads, .timeout = 60)
{
	struct relay r;
	struct lib l;
	struct dev a, b;
	char hlc8[SR_HLC_LEN + 1], mine[SR_HLC_LEN + 1];
	json_t *j;
	struct resp p;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &a, &b);
	h_push_ok(&r, &l, &a, h_batch(&a, h_now_ms() - 10000, 0, 10), 10, 0);
	j = pull(&r, &l, &b, 200, "since=0&limit=8");
	snprintf(hlc8, sizeof hlc8, "%s", h_jstr(j, "next_hlc"));
	json_decref(j);
	/* B pushes one of its own: the answer names the change at head */
	{
		struct h_chb c = {0};
		char rid[SR_UUID_LEN + 1], *body;

		h_uuid(rid);
		h_hlc(mine, h_now_ms() - 5000, 0, b.id);
		h_chb_add(&c, mine, "content_identity", rid, "upsert", "{\"x\":1}");
		body = h_chb_end(&c);

		h_http(&p, &r, "POST", h_lp(&l, "/changes"), b.token, body);
		free(body);
		cr_assert_eq(p.status, 200, "%s", p.body);
		cr_assert_eq(h_jint(p.json, "head"), 11);
		cr_assert_str_eq(h_jstr(p.json, "head_hlc"), mine);
		h_resp_free(&p);
	}
	j = pull(&r, &l, &b, 200, "since=8&since_hlc=%s&check_seq=11&check_hlc=%s", hlc8, mine);
	json_decref(j);

	/* the log is rewritten from seq 6 on (a restore, then other pushes): same head, other changes */
	h_sql(&r, "UPDATE changes SET hlc = overlay(hlc placing 'f' from 1 for 1) WHERE library_id = $1 AND seq >= 6", l.id);
	expect_410(pull(&r, &l, &b, 410, "since=8&since_hlc=%s", hlc8), "history-diverged", "cursor row rewritten");
	expect_410(pull(&r, &l, &b, 410, "since=3&check_seq=11&check_hlc=%s", mine), "history-diverged",
		   "pushed change rewritten, cursor below it");
	/* a cursor below the rewrite still stands */
	json_decref(pull(&r, &l, &b, 200, "since=0&limit=1"));
	/* beyond head */
	expect_410(pull(&r, &l, &b, 410, "since=99"), "history-diverged", "cursor beyond head");
	expect_410(pull(&r, &l, &b, 410, "since=3&check_seq=99&check_hlc=%s", mine), "history-diverged",
		   "pushed change beyond head");
	/* a cursor whose row is gone without compaction */
	h_sql(&r, "DELETE FROM changes WHERE library_id = $1 AND seq = 4", l.id);
	expect_410(pull(&r, &l, &b, 410, "since=4"), "history-diverged", "cursor row missing");
	/* below the horizon */
	h_sql(&r, "UPDATE libraries SET horizon = 6 WHERE library_id = $1", l.id);
	expect_410(pull(&r, &l, &b, 410, "since=5"), "beyond-horizon", "cursor under the horizon");
	/* malformed names are 400 and change nothing */
	json_decref(pull(&r, &l, &b, 400, "since=8&since_hlc=nothlc"));
	json_decref(pull(&r, &l, &b, 400, "since=8&check_seq=9"));
	h_relay_stop(&r);
}

Test(cursor, a_cursor_at_the_horizon_is_checked_against_horizon_hlc, .timeout = 60)
{
	struct relay r;
	struct lib l;
	struct dev a, b;
	char hlc6[SR_HLC_LEN + 1];
	json_t *j;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &a, &b);
	h_push_ok(&r, &l, &a, h_batch(&a, h_now_ms() - 10000, 0, 10), 10, 0);
	j = pull(&r, &l, &b, 200, "since=0&limit=6");
	snprintf(hlc6, sizeof hlc6, "%s", h_jstr(j, "next_hlc"));
	json_decref(j);
	/* compaction removed seqs up to 6 and kept the name of the change at its horizon */
	h_sql(&r, "UPDATE libraries SET horizon = 6, horizon_hlc = (SELECT hlc FROM changes WHERE library_id = $1 AND seq = 6)"
		" WHERE library_id = $1", l.id);
	h_sql(&r, "DELETE FROM changes WHERE library_id = $1 AND seq <= 6", l.id);
	j = pull(&r, &l, &b, 200, "since=6&since_hlc=%s", hlc6);
	cr_assert_eq(json_array_size(json_object_get(j, "changes")), 4);
	cr_assert_eq(h_jint(json_array_get(json_object_get(j, "changes"), 0), "seq"), 7);
	json_decref(j);
	expect_410(pull(&r, &l, &b, 410, "since=6&since_hlc=%s", "0000000000000001-0000000000000000-00000000-0000-4000-8000-000000000000"),
		   "history-diverged", "another name at the horizon");
	h_relay_stop(&r);
}
