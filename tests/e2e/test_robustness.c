/*
 * Failures found in review, kept out: two processes writing through one store, a change the
 * relay refuses for good, and a cursor the relay no longer knows.
 */
#include <signal.h>

#include "cli.h"

static long long distinct_hlcs(const char *store, long long *rows)
{
	sqlite3_stmt *st = e2e_store_query(store, 0, "SELECT count(*), count(DISTINCT hlc) FROM records", NULL, 0);
	long long d;

	cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
	*rows = sqlite3_column_int64(st, 0);
	d = sqlite3_column_int64(st, 1);
	e2e_store_done(st);
	return d;
}

Test(robustness, writes_beside_a_watching_sync_never_share_an_hlc, .timeout = 240)
{
	struct e2e e;
	char a[512], b[512], log[600], path[128], id[SR_UUID_LEN + 1];
	char *btoken, *bdev, *adev;
	struct dev bd;
	struct resp p;
	long long rows, count;
	char hash[17];
	pid_t watch;
	int i;

	e2e_start_two(&e, a, b, sizeof a);
	/* B's clock runs 100 s ahead: A's watcher, applying it, moves the store's clock forward */
	btoken = e2e_store_meta(b, "token");
	bdev = e2e_store_meta(b, "device_id");
	snprintf(bd.id, sizeof bd.id, "%s", bdev);
	free(bdev);
	snprintf(bd.token, sizeof bd.token, "%s", btoken);
	{
		char *batch = h_batch(&bd, h_now_ms() + 100000, 0, 5);
		snprintf(path, sizeof path, "/v1/libraries/%s/changes", e.l.id);
		h_http(&p, &e.r, "POST", path, bd.token, batch);
		cr_assert_eq(p.status, 200, "push from B: %ld %s", p.status, p.body);
		h_resp_free(&p);
		free(batch);
	}
	e2e_path(&e, log, sizeof log, "watch.log");
	watch = cli_spawn(a, log, "sync", "--watch", "--timeout", "60");
	for (i = 0; i < 30; i++) {
		char data[64];

		e2e_id(id, 0xaa, i);
		snprintf(data, sizeof data, "{\"n\":%d}", i);
		cli_do(a, 60, "put", "entry", id, data);
	}
	kill(watch, SIGTERM);
	cr_assert_eq(cli_wait(watch, 30, "sync --watch", log), 0, "the watch did not stop cleanly; see %s", log);
	{
		struct cli c;

		cli_ok(&c, a, 120, "sync");
		cr_assert(!strstr(c.err, "refused"), "the relay refused changes: %s", c.err);
		cli_free(&c);
	}
	cr_assert_eq(distinct_hlcs(a, &rows), rows, "two records of A share an HLC");
	{
		json_t *st = e2e_status(a);
		cr_assert_eq(e2e_jint(st, "outbox", NULL), 0, "A's outbox is not empty");
		json_decref(st);
	}
	adev = e2e_store_meta(a, "device_id");
	e2e_relay_scope(&e, btoken, "entry", adev, &count, hash);
	free(adev);
	cr_assert_eq(count, 30, "the relay holds %lld of A's 30 entries", count);
	e2e_assert_verified(a, "A");
	free(btoken);
	e2e_finish(&e);
}

Test(robustness, a_refused_change_is_set_aside_and_the_rest_syncs, .timeout = 240)
{
	struct e2e e;
	char a[512], b[512], x[SR_UUID_LEN + 1], y[SR_UUID_LEN + 1];
	struct cli c;
	char *want, *got;

	e2e_start_two(&e, a, b, sizeof a);
	e2e_id(x, 0xbb, 1);
	e2e_id(y, 0xbb, 2);
	cli_do(a, 60, "put", "entry", x, "{\"by\":\"A\"}");
	e2e_sync(a, 120);
	/* B writes the same device_owned id before it has heard of A's, and one of its own */
	cli_do(b, 60, "put", "entry", x, "{\"by\":\"B\"}");
	cli_do(b, 60, "put", "entry", y, "{\"by\":\"B\"}");
	cli_ok(&c, b, 120, "sync");
	cr_assert(strstr(c.err, "1 local change(s) refused by the relay for good"), "no warning about the refused change: %s",
		  c.err);
	cli_free(&c);
	{
		json_t *st = e2e_status(b);
		cr_assert_eq(e2e_jint(st, "outbox", NULL), 0, "B's outbox still holds the refused change");
		json_decref(st);
	}
	/* the rest went through: A receives B's own record */
	e2e_sync(a, 120);
	got = e2e_get(a, "entry", y);
	cr_assert(got && !strcmp(got, "{\"by\":\"B\"}"), "A did not receive B's record: %s", got ? got : "(absent)");
	free(got);
	/* a repair puts the relay's version of the refused record back on B */
	{
		json_t *rep = NULL;
		cr_assert_eq(e2e_verify(b, 1, &rep, NULL), 0, "verify --repair on B did not match");
		json_decref(rep);
	}
	want = e2e_get(a, "entry", x);
	got = e2e_get(b, "entry", x);
	cr_assert(want && got && !strcmp(want, got), "B holds %s for A's record, A holds %s", got ? got : "(absent)",
		  want ? want : "(absent)");
	free(want);
	free(got);
	e2e_assert_verified(b, "B");
	e2e_finish(&e);
}

Test(robustness, a_cursor_beyond_head_is_resync_required, .timeout = 120)
{
	struct e2e e;
	char a[512], b[512], path[256];
	struct resp p;
	char *token;

	e2e_start_two(&e, a, b, sizeof a);
	token = e2e_store_meta(a, "token");
	snprintf(path, sizeof path, "/v1/libraries/%s/changes?since=1000", e.l.id);
	h_http(&p, &e.r, "GET", path, token, NULL);
	h_expect_problem(&p, 410, "resync-required");
	cr_assert(json_is_integer(json_object_get(p.json, "horizon")), "no horizon in %s", p.body);
	h_resp_free(&p);
	free(token);
	e2e_finish(&e);
}
