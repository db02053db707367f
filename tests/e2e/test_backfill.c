/*
 * End-to-end: a device enrolled after 10,000 writes converges by backfill (tombstones
 * included), a push of 20,000 changes, and a sync killed while pushing that, run again,
 * leaves each change on the relay exactly once (PROTOCOL.md section 5, invariants 2 and 5).
 */

#include "cli.h"

#define TAG_A 0xa0000003u
#define TAG_CONTENT 0xc1000003u
#define RECORDS_2XX "syncrelay_http_requests_total{route=\"records\",status=\"2xx\"}"

/* One number from a store's SQLite file, as any SQLite tool reads it. */
static long long store_count(const char *store, const char *sql)
{
	sqlite3_stmt *q = e2e_store_query(store, 0, sql, NULL, 0);
	long long n = -1;

	if (sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int64(q, 0);
	e2e_store_done(q);
	return n;
}

Test(backfill, device_enrolled_after_10000_writes_converges, .timeout = 600)
{
	struct e2e e;
	char a[512], cs[512], ds[512], log[512], state[1024], id[SR_UUID_LEN + 1], *tok_c, *got;
	double t_import, t_push, t_backfill, t_verify, deadline;
	long long pages0, pages1, pages_full, tomb;
	pid_t pid;
	int st;
	json_t *s, *rep;
	long k;

	e2e_start(&e);
	e2e_enroll(&e, "A", a, sizeof a);
	e2e_schema(&e, a);
	/* A's own first sync (a backfill of an empty library) is not part of the figures */
	e2e_sync(a, 60);
	t_import = e2e_import(&e, a, TAG_A, 0, 10000, 300);
	/* five content identities, two of them deleted: the tombstones travel too */
	for (k = 0; k < 5; k++) {
		char data[64];

		e2e_id(id, TAG_CONTENT, k);
		snprintf(data, sizeof data, "{\"hash\":\"h%ld\"}", k);
		cli_do(a, 60, "put", "content_identity", id, data);
	}
	for (k = 0; k < 2; k++) {
		e2e_id(id, TAG_CONTENT, k);
		cli_do(a, 60, "delete", "content_identity", id);
	}
	t_push = e2e_sync(a, 60);

	e2e_enroll(&e, "C", cs, sizeof cs);
	s = e2e_status(cs);
	cr_assert_str_eq(json_string_value(json_object_get(s, "state")), "fresh", "a new device: %s", json_dumps(s, 0));
	json_decref(s);
	pages0 = h_metric_or(&e.r, RECORDS_2XX, 0);
	t_backfill = e2e_sync(cs, 60);
	pages_full = h_metric_or(&e.r, RECORDS_2XX, 0) - pages0;

	s = e2e_status(cs);
	cr_assert_str_eq(json_string_value(json_object_get(s, "state")), "syncing", "after the backfill: %s",
			 json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "records", "entry"), 10000, "C has %lld of 10000 entries (store %s): %s",
		     e2e_jint(s, "records", "entry"), cs, json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "records", "content_identity"), 3, "%s", json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "cursor", NULL), 10007, "C's cursor: %s", json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "outbox", NULL), 0, "%s", json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "unresolved", NULL), 0, "%s", json_dumps(s, 0));
	json_decref(s);
	tok_c = e2e_store_meta(cs, "token");
	cr_assert_eq(e2e_relay_head(&e, tok_c), 10007);
	tomb = store_count(cs, "SELECT count(*) FROM records WHERE model = 'content_identity' AND deleted = 1");
	e2e_store_state(cs, state);
	cr_assert_eq(tomb, 2, "C holds %lld tombstones of 2 (store %s:%s)", tomb, cs, state);
	e2e_id(id, TAG_A, 9999);
	got = e2e_get(cs, "entry", id);
	cr_assert(got && strstr(got, "\"name\":\"file 9999\""), "C's last entry: %s", got);
	free(got);
	e2e_id(id, TAG_CONTENT, 0);
	got = e2e_get(cs, "content_identity", id);
	cr_assert_null(got, "a deleted content identity came back on C: %s", got);

	cr_assert_eq(e2e_verify(cs, 0, &rep, &t_verify), 0, "verify on C after backfill");
	json_decref(rep);
	e2e_assert_verified(cs, "C");
	e2e_assert_verified(a, "A");

	/* a backfill killed half-way resumes where it stopped instead of starting over */
	e2e_enroll(&e, "D", ds, sizeof ds);
	e2e_path(&e, log, sizeof log, "sync-D.log");
	pages0 = h_metric_or(&e.r, RECORDS_2XX, 0);
	pid = cli_spawn(ds, log, "sync");
	deadline = h_mono() + 60;
	for (;;) {
		e2e_store_state(ds, state);
		if (strstr(state, "state=backfilling") && strstr(state, "entry:"))
			break;
		cr_assert(waitpid(pid, &st, WNOHANG) == 0, "D's sync ended (exit %d) before it could be interrupted:%s",
			  cli_exit_status(st), state);
		cr_assert(h_mono() < deadline, "D's backfill showed no entries within 60 s:%s", state);
		cli_sleep(0.003);
	}
	kill(pid, SIGKILL);
	cli_wait(pid, 30, "D's killed sync", log);
	e2e_store_state(ds, state);
	cr_assert(strstr(state, "state=backfilling") && strstr(state, "backfill_head=10007"),
		  "D's backfill position is not kept after the kill:%s", state);
	cr_log_info("backfill: D killed at%s", state);
	e2e_sync(ds, 60);
	pages1 = h_metric_or(&e.r, RECORDS_2XX, 0);
	s = e2e_status(ds);
	cr_assert_str_eq(json_string_value(json_object_get(s, "state")), "syncing", "%s", json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "records", "entry"), 10000, "D after a resumed backfill: %s", json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "records", "content_identity"), 3, "%s", json_dumps(s, 0));
	json_decref(s);
	e2e_assert_verified(ds, "D");
	/* at most the page in flight is fetched twice */
	cr_assert_leq(pages1 - pages0, pages_full + 1,
		      "the interrupted and resumed backfill read %lld record pages, a whole one reads %lld",
		      pages1 - pages0, pages_full);
	cr_log_info("backfill: import 10000 %.2f s, push 10007 %.2f s, backfill of 10007 on a new device %.2f s"
		    " (%lld pages), verify %.2f s",
		    t_import, t_push, t_backfill, pages_full, t_verify);
	free(tok_c);
	e2e_finish(&e);
}

Test(backfill, push_of_20000_changes, .timeout = 600)
{
	struct e2e e;
	char a[512], *tok;
	double t_import, t_push;
	json_t *s;

	e2e_start(&e);
	e2e_enroll(&e, "A", a, sizeof a);
	e2e_schema(&e, a);
	/* the first sync of a fresh device also backfills; get that out of the way */
	e2e_sync(a, 60);
	t_import = e2e_import(&e, a, TAG_A, 0, 20000, 300);
	t_push = e2e_sync(a, 120);
	tok = e2e_store_meta(a, "token");
	cr_assert_eq(e2e_relay_head(&e, tok), 20000);
	s = e2e_status(a);
	cr_assert_eq(e2e_jint(s, "outbox", NULL), 0, "%s", json_dumps(s, 0));
	json_decref(s);
	cr_assert_eq(h_metric_or(&e.r, "syncrelay_changes_accepted_total", 0), 20000);
	cr_log_info("push: import 20000 %.2f s, sync pushing 20000 changes %.2f s (%.0f changes/s)", t_import, t_push,
		    20000 / t_push);
	free(tok);
	e2e_finish(&e);
}

Test(backfill, sync_killed_while_pushing_leaves_each_change_once, .timeout = 600)
{
	struct e2e e;
	char a[512], log[512], path[256], state[1024], *tok, *dev, *seen;
	long long accepted = 0, head, since = 0, total = 0, last_seq = 0, at_kill;
	double deadline;
	pid_t pid;
	int st, more = 1;
	json_t *s;
	char dig[17];

	e2e_start(&e);
	e2e_enroll(&e, "A", a, sizeof a);
	e2e_schema(&e, a);
	e2e_sync(a, 60);
	tok = e2e_store_meta(a, "token");
	dev = e2e_store_meta(a, "device_id");
	e2e_import(&e, a, TAG_A, 0, 20000, 300);

	/* kill the sync once the relay has accepted part of the outbox */
	e2e_path(&e, log, sizeof log, "sync-killed.log");
	pid = cli_spawn(a, log, "sync");
	deadline = h_mono() + 120;
	while ((accepted = h_metric_or(&e.r, "syncrelay_changes_accepted_total", 0)) <= 0) {
		cr_assert(waitpid(pid, &st, WNOHANG) == 0, "sync exited (%d) before the relay accepted anything; see %s",
			  cli_exit_status(st), log);
		cr_assert(h_mono() < deadline, "the relay accepted nothing within 120 s of starting sync; see %s", log);
		cli_sleep(0.005);
	}
	kill(pid, SIGKILL);
	st = cli_wait(pid, 30, "the killed sync", log);
	cr_assert_eq(st, 128 + SIGKILL, "sync finished (exit %d) before it could be killed mid-push", st);
	at_kill = h_metric_or(&e.r, "syncrelay_changes_accepted_total", 0);
	e2e_store_state(a, state);
	cr_assert_lt(at_kill, 20000, "the relay had accepted all 20000 changes before the kill; store:%s", state);
	s = e2e_status(a);
	cr_assert_gt(e2e_jint(s, "outbox", NULL), 0, "killed mid-push but the outbox is empty: %s", json_dumps(s, 0));
	json_decref(s);

	/* run it again: what was accepted comes back as duplicates, the rest is stored once */
	e2e_sync(a, 120);
	s = e2e_status(a);
	cr_assert_eq(e2e_jint(s, "outbox", NULL), 0, "outbox after the second sync: %s", json_dumps(s, 0));
	json_decref(s);
	head = e2e_relay_head(&e, tok);
	cr_assert_eq(head, 20000, "the relay's head is %lld after pushing 20000 changes (killed at %lld accepted)", head,
		     at_kill);
	cr_assert_eq(h_metric_or(&e.r, "syncrelay_changes_accepted_total", 0), 20000);
	e2e_relay_scope(&e, tok, "entry", dev, &total, dig);
	cr_assert_eq(total, 20000, "digest count of A's entries: %lld", total);

	/* every change pulled back exactly once, in seq order */
	seen = calloc(20000, 1);
	cr_assert(seen);
	total = 0;
	while (more) {
		struct resp p;
		const json_t *ch;
		size_t i;

		snprintf(path, sizeof path, "/v1/libraries/%s/changes?since=%lld&limit=10000&include_own=1", e.l.id, since);
		h_http(&p, &e.r, "GET", path, tok, NULL);
		cr_assert_eq(p.status, 200, "GET %s: %ld %.300s", path, p.status, p.body);
		json_array_foreach(json_object_get(p.json, "changes"), i, ch) {
			const char *rid = json_string_value(json_object_get(ch, "record_id"));
			long long seq = json_integer_value(json_object_get(ch, "seq"));
			long k = rid ? strtol(rid + 24, NULL, 10) : -1;

			cr_assert(seq > last_seq, "seq %lld after %lld", seq, last_seq);
			last_seq = seq;
			cr_assert(k >= 0 && k < 20000 && !strncmp(rid, "a0000003-", 9), "unexpected record %s", rid);
			cr_assert_eq(seen[k], 0, "record %s pulled twice (seq %lld)", rid, seq);
			seen[k] = 1;
			total++;
		}
		more = json_is_true(json_object_get(p.json, "more"));
		since = e2e_jint(p.json, "next", NULL);
		h_resp_free(&p);
	}
	cr_assert_eq(total, 20000, "the relay serves %lld changes, want 20000", total);
	free(seen);
	e2e_assert_verified(a, "A");
	cr_log_info("crash: sync killed after the relay accepted %lld of 20000 (%lld at exit); the re-sync sent %lld"
		    " duplicates and stored each change once",
		    accepted, at_kill, (long long)h_metric_or(&e.r, "syncrelay_changes_duplicate_total", 0));
	free(tok);
	free(dev);
	e2e_finish(&e);
}

/* Runs one statement on the relay's database with text parameters. */
Test(backfill, cursor_below_the_horizon_backfills_again_and_reconciles, .timeout = 300)
{
	struct e2e e;
	char a[512], b[512], id[SR_UUID_LEN + 1], *tok, *got;
	long long head;
	json_t *s;
	long k;

	e2e_start(&e);
	e2e_enroll(&e, "A", a, sizeof a);
	e2e_schema(&e, a);
	e2e_import(&e, a, TAG_A, 0, 300, 60);
	e2e_sync(a, 60);
	e2e_enroll(&e, "B", b, sizeof b);
	e2e_sync(b, 60);
	cr_assert_eq(e2e_records(b, "entry"), 300);

	/* while B is away: more entries, an update, five deletes */
	e2e_import(&e, a, TAG_A, 300, 200, 60);
	e2e_id(id, TAG_A, 10);
	cli_do(a, 60, "put", "entry", id, "{\"name\":\"updated while B was away\"}");
	for (k = 0; k < 5; k++) {
		e2e_id(id, TAG_A, k);
		cli_do(a, 60, "delete", "entry", id);
	}
	e2e_sync(a, 60);
	tok = e2e_store_meta(a, "token");
	head = e2e_relay_head(&e, tok);
	cr_assert_eq(head, 506);

	/* the relay compacts: its log starts at head, and the old tombstones are purged */
	h_sql(&e.r, "UPDATE libraries SET horizon = head, horizon_hlc = (SELECT hlc FROM changes c"
		      " WHERE c.library_id = libraries.library_id AND c.seq = libraries.head),"
		      " purged_before = (SELECT max(hlc) || '~' FROM records r WHERE r.library_id = libraries.library_id"
		      " AND r.deleted) WHERE library_id = $1", e.l.id);
	h_sql(&e.r, "DELETE FROM records WHERE library_id = $1 AND deleted", e.l.id);

	/* B's cursor (300) is below the horizon: 410, a fresh backfill, and B drops what the relay
	 * proves deleted: records it no longer lists, under its purge point */
	e2e_sync(b, 60);
	s = e2e_status(b);
	cr_assert_str_eq(json_string_value(json_object_get(s, "state")), "syncing", "%s", json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "cursor", NULL), head, "B's cursor after the resync: %s", json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "records", "entry"), 495,
		     "B holds %lld live entries, the relay 495: records deleted while B was away survive the"
		     " resync (store %s)", e2e_jint(s, "records", "entry"), b);
	json_decref(s);
	e2e_id(id, TAG_A, 10);
	got = e2e_get(b, "entry", id);
	cr_assert(got && strstr(got, "updated while B was away"), "B's entry %s: %s", id, got);
	free(got);
	e2e_id(id, TAG_A, 499);
	got = e2e_get(b, "entry", id);
	cr_assert_not_null(got, "B lacks entry %s written while it was away", id);
	free(got);
	for (k = 0; k < 5; k++) {
		e2e_id(id, TAG_A, k);
		got = e2e_get(b, "entry", id);
		cr_assert_null(got, "entry %s, deleted while B was away, is still live on B after the resync: %s", id, got);
	}
	e2e_assert_verified(b, "B");
	free(tok);
	e2e_finish(&e);
}
