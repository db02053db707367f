/*
 * End-to-end: several devices driven through the syncrelay CLI against a real relay and
 * PostgreSQL converge: bulk import, updates and deletes, concurrent writes to a shared record,
 * a device that was offline for a day, and references whose targets arrive later
 * (PROTOCOL.md sections 5-7, invariants 2-4).
 */
#include "cli.h"

#define TAG_A 0xa0000001u
#define TAG_SHARED 0x5ea00001u
#define TAG_C 0xc0000001u
#define TAG_PARENT 0xe1000001u
#define TAG_CHILD 0xe2000001u
#define TAG_CONTENT 0xc1000001u

/* XOR of record hashes of the live rows of (model, owner) read straight from a store's SQLite
 * file, computed independently of the library's verify. */
static void store_digest(const char *store, const char *model, const char *owner, long long *count,
			 char hex[17])
{
	const char *params[] = {model, owner ? owner : ""};
	sqlite3_stmt *st = e2e_store_query(store, 0,
					   "SELECT record_id, hlc, data FROM records WHERE model = ?1 AND owner = ?2"
					   " AND deleted = 0", params, 2);
	uint64_t x = 0;

	*count = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		x ^= sr_record_hash(model, (const char *)sqlite3_column_text(st, 0),
				    (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2));
		(*count)++;
	}
	e2e_store_done(st);
	sr_hash_hex(hex, x);
}

Test(devices, import_5000_then_sync_converges, .timeout = 600)
{
	struct e2e e;
	struct cli c;
	char a[512], b[512], file[512], hex_b[17], hex_relay[17], *dev_a, *tok_b;
	double t_import, t_sync_a, t_sync_b, t_verify;
	long long n_b, n_relay;
	json_t *s, *rep;

	e2e_start_two(&e, a, b, sizeof a);
	e2e_path(&e, file, sizeof file, "entries.jsonl");
	e2e_entries_file(file, TAG_A, 0, 5000, NULL);

	cli_ok(&c, a, 300, "import", "entry", file, "--json");
	cr_assert_eq(e2e_jint(c.json, "imported", NULL), 5000, "import printed %s", c.out);
	t_import = c.seconds;
	cli_free(&c);
	s = e2e_status(a);
	cr_assert_eq(e2e_jint(s, "outbox", NULL), 5000, "A's outbox before sync: %s", json_dumps(s, 0));
	json_decref(s);

	t_sync_a = e2e_sync(a, 45);
	t_sync_b = e2e_sync(b, 45);

	s = e2e_status(a);
	cr_assert_eq(e2e_jint(s, "outbox", NULL), 0, "A's outbox after sync (store %s): %s", a, json_dumps(s, 0));
	json_decref(s);
	s = e2e_status(b);
	cr_assert_eq(e2e_jint(s, "records", "entry"), 5000, "B has %lld of 5000 entries (store %s): %s",
		     e2e_jint(s, "records", "entry"), b, json_dumps(s, 0));
	cr_assert_str_eq(json_string_value(json_object_get(s, "state")), "syncing", "B: %s", json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "cursor", NULL), e2e_jint(s, "head", NULL), "B not at head: %s", json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "head", NULL), 5000, "head: %s", json_dumps(s, 0));
	json_decref(s);

	e2e_assert_verified(a, "A");
	cr_assert_eq(e2e_verify(b, 0, &rep, &t_verify), 0, "verify on B failed");
	json_decref(rep);
	e2e_assert_verified(b, "B");

	/* the same digest, computed independently from B's rows, as the relay keeps for A's scope */
	dev_a = e2e_store_meta(a, "device_id");
	tok_b = e2e_store_meta(b, "token");
	store_digest(b, "entry", dev_a, &n_b, hex_b);
	e2e_relay_scope(&e, tok_b, "entry", dev_a, &n_relay, hex_relay);
	cr_assert_eq(n_b, 5000);
	cr_assert_eq(n_relay, 5000, "relay digest count for A's entries: %lld", n_relay);
	cr_assert_str_eq(hex_b, hex_relay, "B's rows hash to %s, the relay's scope is %s (store %s)", hex_b, hex_relay, b);

	cr_log_info("devices: import 5000 entries %.2f s, push+sync A %.2f s, pull B %.2f s, verify B %.2f s",
		    t_import, t_sync_a, t_sync_b, t_verify);
	free(dev_a);
	free(tok_b);
	e2e_finish(&e);
}

Test(devices, updates_and_deletes_converge, .timeout = 300)
{
	struct e2e e;
	struct cli c;
	char a[512], b[512], id[SR_UUID_LEN + 1];
	long k;

	e2e_start_two(&e, a, b, sizeof a);
	e2e_import(&e, a, TAG_A, 0, 100, 60);
	e2e_sync(a, 60);
	e2e_sync(b, 60);
	cr_assert_eq(e2e_records(b, "entry"), 100);

	/* updates (written with whitespace and unsorted keys: stored as canonical text) */
	for (k = 0; k < 10; k++) {
		char data[128];

		e2e_id(id, TAG_A, k);
		snprintf(data, sizeof data, "{ \"size\": %ld, \"name\": \"renamed %ld\", \"tags\": [\"x\"] }", k + 1000, k);
		cli_do(a, 60, "put", "entry", id, data);
	}
	for (k = 10; k < 15; k++) {
		e2e_id(id, TAG_A, k);
		cli_do(a, 60, "delete", "entry", id);
	}
	e2e_sync(a, 60);
	e2e_sync(b, 60);

	for (k = 0; k < 15; k++) {
		char want[128], *got_a, *got_b;

		e2e_id(id, TAG_A, k);
		got_a = e2e_get(a, "entry", id);
		got_b = e2e_get(b, "entry", id);
		if (k < 10) {
			snprintf(want, sizeof want, "{\"name\":\"renamed %ld\",\"size\":%ld,\"tags\":[\"x\"]}", k, k + 1000);
			cr_assert(got_a && !strcmp(got_a, want), "A's get %s: %s, want %s", id, got_a, want);
			cr_assert(got_b && !strcmp(got_b, want), "B's get %s: %s, want %s (store %s)", id, got_b, want, b);
		} else {
			cr_assert_null(got_a, "A still has deleted %s: %s", id, got_a);
			cr_assert_null(got_b, "B still has deleted %s: %s (store %s)", id, got_b, b);
		}
		free(got_a);
		free(got_b);
	}
	/* a deleted record: exit 1 and "not found" on stderr */
	e2e_id(id, TAG_A, 12);
	cli_run(&c, b, 60, "get", "entry", id);
	cr_assert_eq(c.status, 1, "get of a deleted record exited %d: %s", c.status, c.err);
	cr_assert(strstr(c.err, "not found") && !strncmp(c.err, "syncrelay: ", 11), "stderr: %s", c.err);
	cli_free(&c);
	/* an absent one too */
	e2e_id(id, TAG_A, 99999);
	cli_run(&c, b, 60, "get", "entry", id);
	cr_assert_eq(c.status, 1, "get of an absent record exited %d: %s", c.status, c.err);
	cli_free(&c);

	cr_assert_eq(e2e_records(a, "entry"), 95);
	cr_assert_eq(e2e_records(b, "entry"), 95);
	e2e_assert_verified(a, "A");
	e2e_assert_verified(b, "B");
	e2e_finish(&e);
}

static void store_hlc(const char *store, const char *model, const char *id, char out[SR_HLC_LEN + 1])
{
	const char *params[] = {model, id};
	sqlite3_stmt *st = e2e_store_query(store, 0, "SELECT hlc FROM records WHERE model = ?1 AND record_id = ?2",
					   params, 2);

	out[0] = '\0';
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(out, SR_HLC_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 0));
	e2e_store_done(st);
	cr_assert(out[0], "store %s has no %s %s", store, model, id);
}

Test(devices, concurrent_shared_write_later_hlc_wins, .timeout = 300)
{
	struct e2e e;
	char a[512], b[512], id[SR_UUID_LEN + 1], id2[SR_UUID_LEN + 1], ha[SR_HLC_LEN + 1], hb[SR_HLC_LEN + 1];
	char *got_a, *got_b;
	const char *data_a = "{\"hash\":\"aaaa\",\"size\":1,\"writer\":\"A\"}";
	const char *data_b = "{\"hash\":\"bbbb\",\"size\":2,\"writer\":\"B\"}";

	e2e_start_two(&e, a, b, sizeof a);
	e2e_id(id, TAG_SHARED, 1);

	/* both write before either syncs; B's write comes later */
	cli_do(a, 60, "put", "content_identity", id, data_a);
	cli_sleep(0.05);
	cli_do(b, 60, "put", "content_identity", id, data_b);
	store_hlc(a, "content_identity", id, ha);
	store_hlc(b, "content_identity", id, hb);
	cr_assert(sr_hlc_cmp(hb, ha) > 0, "B wrote 50 ms after A but its HLC %s is not after A's %s", hb, ha);

	/* the later writer syncs first, then the earlier one (its older write reaches the relay last) */
	e2e_sync(b, 60);
	e2e_sync(a, 60);
	e2e_sync(b, 60);

	got_a = e2e_get(a, "content_identity", id);
	got_b = e2e_get(b, "content_identity", id);
	cr_assert(got_a && got_b, "record missing: A %s, B %s", got_a, got_b);
	cr_assert_str_eq(got_a, got_b, "A and B disagree on shared %s: A %s, B %s", id, got_a, got_b);
	cr_assert_str_eq(got_a, data_b, "the later write (B, %s) should win over A's (%s): got %s", hb, ha, got_a);
	store_hlc(a, "content_identity", id, ha);
	cr_assert_str_eq(ha, hb, "A keeps HLC %s, want B's %s byte for byte", ha, hb);
	free(got_a);
	free(got_b);

	/* a delete against a concurrent update: the later one wins, whichever it is */
	e2e_id(id, TAG_SHARED, 2);
	e2e_id(id2, TAG_SHARED, 3);
	cli_do(a, 60, "put", "content_identity", id, "{\"v\":1}");
	cli_do(a, 60, "put", "content_identity", id2, "{\"v\":1}");
	e2e_sync(a, 60);
	e2e_sync(b, 60);
	cli_do(b, 60, "delete", "content_identity", id); /* id: deleted, then updated later */
	cli_do(a, 60, "put", "content_identity", id2, "{\"v\":2}"); /* id2: updated, then deleted later */
	cli_sleep(0.05);
	cli_do(a, 60, "put", "content_identity", id, "{\"v\":\"after the delete\"}");
	cli_do(b, 60, "delete", "content_identity", id2);
	e2e_sync(b, 60);
	e2e_sync(a, 60);
	e2e_sync(b, 60);
	got_a = e2e_get(a, "content_identity", id);
	got_b = e2e_get(b, "content_identity", id);
	cr_assert(got_a && got_b && !strcmp(got_a, "{\"v\":\"after the delete\"}") && !strcmp(got_a, got_b),
		  "an update after a concurrent delete wins: A %s, B %s", got_a ? got_a : "not found",
		  got_b ? got_b : "not found");
	free(got_a);
	free(got_b);
	got_a = e2e_get(a, "content_identity", id2);
	got_b = e2e_get(b, "content_identity", id2);
	cr_assert(!got_a && !got_b, "a delete after a concurrent update wins: A %s, B %s", got_a ? got_a : "not found",
		  got_b ? got_b : "not found");
	e2e_assert_verified(a, "A");
	e2e_assert_verified(b, "B");
	e2e_finish(&e);
}

Test(devices, offline_device_old_hlcs_reach_everyone, .timeout = 300)
{
	struct e2e e;
	char a[512], b[512], cs[512], path[256], id[SR_UUID_LEN + 1], hlc[SR_HLC_LEN + 1];
	char *tok_c, *dev_c, *got;
	const char *stores[3];
	uint64_t old_ms;
	struct resp p;
	sr_buf body = {0};
	long k;
	int i;

	e2e_start_two(&e, a, b, sizeof a);
	e2e_enroll(&e, "C", cs, sizeof cs);
	tok_c = e2e_store_meta(cs, "token");
	dev_c = e2e_store_meta(cs, "device_id");

	/* A and B are well past the day-old clock: they write and sync now */
	e2e_import(&e, a, TAG_A, 0, 200, 60);
	e2e_id(id, TAG_SHARED, 7);
	cli_do(a, 60, "put", "content_identity", id, "{\"writer\":\"A now\"}");
	e2e_sync(a, 60);
	e2e_sync(b, 60);
	e2e_sync(a, 60);

	/* C was offline for a day: its changes carry HLCs 24 h old */
	old_ms = h_now_ms() - 86400000ULL;
	sr_buf_puts(&body, "{\"changes\":[");
	for (k = 0; k < 20; k++) {
		e2e_id(id, TAG_C, k);
		h_hlc(hlc, old_ms + (uint64_t)k, 0, dev_c);
		sr_buf_printf(&body, "%s{\"hlc\":\"%s\",\"model\":\"entry\",\"record_id\":\"%s\",\"op\":\"upsert\","
			      "\"data\":{\"name\":\"offline %ld\"}}", k ? "," : "", hlc, id, k);
	}
	e2e_id(id, TAG_SHARED, 8);
	h_hlc(hlc, old_ms + 100, 0, dev_c);
	sr_buf_printf(&body, ",{\"hlc\":\"%s\",\"model\":\"content_identity\",\"record_id\":\"%s\",\"op\":\"upsert\","
		      "\"data\":{\"writer\":\"C offline\"}}", hlc, id);
	/* an old write to a record A wrote since: kept in the log, loses last-writer-wins */
	e2e_id(id, TAG_SHARED, 7);
	h_hlc(hlc, old_ms + 101, 0, dev_c);
	sr_buf_printf(&body, ",{\"hlc\":\"%s\",\"model\":\"content_identity\",\"record_id\":\"%s\",\"op\":\"upsert\","
		      "\"data\":{\"writer\":\"C offline\"}}]}", hlc, id);
	cr_assert(!body.oom);
	snprintf(path, sizeof path, "/v1/libraries/%s/changes", e.l.id);
	h_http(&p, &e.r, "POST", path, tok_c, body.p);
	cr_assert_eq(p.status, 200, "push of C's day-old changes: %ld %s", p.status, p.body);
	cr_assert_eq(e2e_jint(p.json, "accepted", NULL), 22, "%s", p.body);
	h_resp_free(&p);
	sr_buf_free(&body);

	e2e_sync(a, 60);
	e2e_sync(b, 60);
	e2e_sync(cs, 60); /* C's first sync: a backfill, which brings back what it pushed */
	stores[0] = a;
	stores[1] = b;
	stores[2] = cs;
	for (i = 0; i < 3; i++) {
		const char *who = i == 0 ? "A" : i == 1 ? "B" : "C";

		long long n, rn;
		char hex[17], rhex[17];

		/* all 20, as the relay holds them: same count, same hash of ids, HLCs and data */
		store_digest(stores[i], "entry", dev_c, &n, hex);
		e2e_relay_scope(&e, tok_c, "entry", dev_c, &rn, rhex);
		cr_assert(n == 20 && rn == 20 && !strcmp(hex, rhex),
			  "%s holds %lld of C's 20 day-old entries (hash %s), the relay %lld (hash %s); store %s", who, n,
			  hex, rn, rhex, stores[i]);
		for (k = 0; k < 20; k += 9) {
			char want[64];

			e2e_id(id, TAG_C, k);
			got = e2e_get(stores[i], "entry", id);
			snprintf(want, sizeof want, "{\"name\":\"offline %ld\"}", k);
			cr_assert(got && !strcmp(got, want), "%s lacks C's day-old entry %s: %s (store %s)", who, id,
				  got ? got : "not found", stores[i]);
			free(got);
		}
		e2e_id(id, TAG_SHARED, 8);
		got = e2e_get(stores[i], "content_identity", id);
		cr_assert(got && !strcmp(got, "{\"writer\":\"C offline\"}"), "%s: C's shared record %s: %s", who, id,
			  got ? got : "not found");
		free(got);
		e2e_id(id, TAG_SHARED, 7);
		got = e2e_get(stores[i], "content_identity", id);
		cr_assert(got && !strcmp(got, "{\"writer\":\"A now\"}"),
			  "%s: the day-old write must not replace A's newer one on %s: %s", who, id, got ? got : "not found");
		free(got);
		cr_assert_eq(e2e_records(stores[i], "entry"), 220, "%s entries (store %s)", who, stores[i]);
		e2e_assert_verified(stores[i], who);
	}
	free(tok_c);
	free(dev_c);
	e2e_finish(&e);
}

/* refs."model.field".{set,unresolved} of a status */
static long long ref_fig(const json_t *status, const char *key, const char *what)
{
	return json_integer_value(json_object_get(json_object_get(json_object_get(status, "refs"), key), what));
}

Test(devices, references_resolve_when_targets_arrive_later, .timeout = 300)
{
	struct e2e e;
	char a[512], b[512], d[512], file[512], id[SR_UUID_LEN + 1], pid[SR_UUID_LEN + 1], cid[SR_UUID_LEN + 1];
	json_t *sa, *sb, *sd;
	FILE *f;
	long k;
	char *ga, *gb;

	e2e_start_two(&e, a, b, sizeof a);

	/* 1: 40 children, each naming a parent entry and a content identity, none of which exist yet */
	e2e_path(&e, file, sizeof file, "children.jsonl");
	f = fopen(file, "w");
	cr_assert(f);
	for (k = 0; k < 40; k++) {
		e2e_id(id, TAG_CHILD, k);
		e2e_id(pid, TAG_PARENT, k % 10);
		e2e_id(cid, TAG_CONTENT, k % 20);
		fprintf(f, "{\"record_id\":\"%s\",\"data\":{\"name\":\"child %ld\",\"parent_id\":\"%s\",\"content_id\":\"%s\"}}\n",
			id, k, pid, cid);
	}
	fclose(f);
	cli_do(a, 60, "import", "entry", file);
	e2e_sync(a, 60);
	e2e_sync(b, 60);
	sb = e2e_status(b);
	cr_assert_eq(e2e_jint(sb, "records", "entry"), 40, "B applies children at once: %s", json_dumps(sb, 0));
	cr_assert_eq(ref_fig(sb, "entry.content_id", "set"), 40, "%s", json_dumps(sb, 0));
	cr_assert_eq(ref_fig(sb, "entry.content_id", "unresolved"), 40, "%s", json_dumps(sb, 0));
	cr_assert_eq(ref_fig(sb, "entry.parent_id", "unresolved"), 40, "%s", json_dumps(sb, 0));
	cr_assert_eq(e2e_jint(sb, "unresolved", NULL), 80, "%s", json_dumps(sb, 0));
	json_decref(sb);

	/* 2: the parents arrive in a later pull */
	e2e_import(&e, a, TAG_PARENT, 0, 10, 60);
	e2e_sync(a, 60);
	e2e_sync(b, 60);
	sb = e2e_status(b);
	cr_assert_eq(ref_fig(sb, "entry.parent_id", "unresolved"), 0, "parents arrived: %s", json_dumps(sb, 0));
	cr_assert_eq(ref_fig(sb, "entry.content_id", "unresolved"), 40, "%s", json_dumps(sb, 0));
	cr_assert(e2e_jint(sb, "unresolved", NULL) > 0, "%s", json_dumps(sb, 0));
	json_decref(sb);

	/* 3: the content identities arrive last */
	e2e_path(&e, file, sizeof file, "content.jsonl");
	f = fopen(file, "w");
	cr_assert(f);
	for (k = 0; k < 20; k++) {
		e2e_id(cid, TAG_CONTENT, k);
		fprintf(f, "{\"record_id\":\"%s\",\"data\":{\"hash\":\"blake3:%04ld\",\"size\":%ld}}\n", cid, k, k * 10);
	}
	fclose(f);
	cli_do(a, 60, "import", "content_identity", file);
	e2e_sync(a, 60);
	e2e_sync(b, 60);

	sa = e2e_status(a);
	sb = e2e_status(b);
	cr_assert_eq(e2e_jint(sb, "unresolved", NULL), 0, "B after every target arrived (store %s): %s", b,
		     json_dumps(sb, 0));
	cr_assert_eq(ref_fig(sb, "entry.content_id", "set"), 40, "%s", json_dumps(sb, 0));
	cr_assert(json_equal(json_object_get(sa, "refs"), json_object_get(sb, "refs")),
		  "links differ: A %s, B %s", json_dumps(json_object_get(sa, "refs"), 0),
		  json_dumps(json_object_get(sb, "refs"), 0));
	cr_assert(json_equal(json_object_get(sa, "records"), json_object_get(sb, "records")),
		  "records differ: A %s, B %s", json_dumps(json_object_get(sa, "records"), 0),
		  json_dumps(json_object_get(sb, "records"), 0));
	/* nothing was linked to NULL: every child keeps its content_id */
	for (k = 0; k < 40; k += 7) {
		e2e_id(id, TAG_CHILD, k);
		ga = e2e_get(a, "entry", id);
		gb = e2e_get(b, "entry", id);
		cr_assert(ga && gb && !strcmp(ga, gb), "child %s: A %s, B %s", id, ga, gb);
		cr_assert(strstr(gb, "\"content_id\":\"c1000001-"), "child %s lost its link: %s", id, gb);
		free(ga);
		free(gb);
	}
	e2e_assert_verified(a, "A");
	e2e_assert_verified(b, "B");

	/* a device enrolled afterwards backfills in schema order: nothing left pending */
	e2e_enroll(&e, "D", d, sizeof d);
	e2e_sync(d, 60);
	sd = e2e_status(d);
	cr_assert_eq(e2e_jint(sd, "unresolved", NULL), 0, "D: %s", json_dumps(sd, 0));
	cr_assert(json_equal(json_object_get(sa, "refs"), json_object_get(sd, "refs")), "links differ: A %s, D %s",
		  json_dumps(json_object_get(sa, "refs"), 0), json_dumps(json_object_get(sd, "refs"), 0));
	json_decref(sa);
	json_decref(sb);
	json_decref(sd);
	e2e_finish(&e);
}

/* A failed command: non-zero exit and one line on stderr, "syncrelay: " and the reason. */
static void expect_failure(const struct cli *c, const char *reason)
{
	const char *p;
	int lines = 0;

	for (p = c->err; *p; p++)
		lines += *p == '\n';
	cr_assert_neq(c->status, 0, "`%s` should fail: %s", c->cmd, c->out);
	cr_assert(!strncmp(c->err, "syncrelay: ", 11) && lines == 1, "`%s`: want one line on stderr, got: %s", c->cmd,
		  c->err);
	cr_assert(strstr(c->err, reason), "`%s`: the reason should say \"%s\": %s", c->cmd, reason, c->err);
}

/* Runs the command and expects it to fail for reason. */
#define cli_fails(reason, store, ...)                                                                    \
	do {                                                                                             \
		struct cli cli_fails_;                                                                   \
		cli_run(&cli_fails_, (store), 60, __VA_ARGS__);                                          \
		expect_failure(&cli_fails_, (reason));                                                   \
		cli_free(&cli_fails_);                                                                   \
	} while (0)

Test(devices, cli_failures_exit_non_zero_with_one_line, .timeout = 300)
{
	struct e2e e;
	struct cli c;
	char a[512], b[512], x[512], file[512], id[SR_UUID_LEN + 1];
	const json_t *order;
	json_t *s;
	FILE *f;

	e2e_start(&e);
	e2e_enroll(&e, "A", a, sizeof a);
	e2e_schema(&e, a);

	/* a wrong join token: refused, and no store is left behind */
	e2e_path(&e, x, sizeof x, "X.db");
	cli_fails("unauthorized", x, "enroll", "--relay", e.r.url, "--library", e.l.id, "--join-token", "not-the-token");
	cr_assert_eq(access(x, F_OK), -1, "a refused enrollment left the store %s", x);
	cli_fails("no store at", x, "sync");
	/* enrolling twice */
	cli_fails("already enrolled", a, "enroll", "--relay", e.r.url, "--library", e.l.id, "--join-token", e.l.join);

	/* local writes refused: bad JSON, unknown model, bad id */
	e2e_id(id, TAG_A, 1);
	cli_fails("JSON object", a, "put", "entry", id, "{not json");
	cli_fails("JSON object", a, "put", "entry", id, "[1,2]");
	cli_fails("\"tag\"", a, "put", "tag", id, "{}");
	cli_fails("NOT-A-UUID", a, "put", "entry", "NOT-A-UUID", "{}");
	cli_run(&c, a, 60, "frobnicate");
	cr_assert_neq(c.status, 0, "an unknown command exits non-zero");
	cli_free(&c);

	/* an import with a bad line is all or nothing and names the line */
	e2e_path(&e, file, sizeof file, "bad.jsonl");
	f = fopen(file, "w");
	cr_assert(f);
	e2e_id(id, TAG_A, 1);
	fprintf(f, "{\"record_id\":\"%s\",\"data\":{\"n\":1}}\n", id);
	e2e_id(id, TAG_A, 2);
	fprintf(f, "{\"record_id\":\"%s\",\"data\":{\"n\":2}}\n{\"record_id\":\"oops\"}\n", id);
	fclose(f);
	cli_fails("bad.jsonl:3", a, "import", "entry", file);
	s = e2e_status(a);
	cr_assert_eq(e2e_jint(s, "outbox", NULL), 0, "a failed import left changes behind: %s", json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "records", "entry"), 0, "%s", json_dumps(s, 0));
	json_decref(s);

	/* schema show */
	cli_ok(&c, a, 60, "schema", "show");
	cr_assert(c.json, "schema show printed %s", c.out);
	cr_assert_eq(e2e_jint(c.json, "version", NULL), 1, "%s", c.out);
	order = json_object_get(c.json, "order");
	cr_assert(json_array_size(order) == 3 &&
		  !strcmp(json_string_value(json_array_get(order, 0)), "content_identity") &&
		  !strcmp(json_string_value(json_array_get(order, 1)), "entry") &&
		  !strcmp(json_string_value(json_array_get(order, 2)), "location"),
		  "order: %s", c.out);
	cli_free(&c);

	/* a device_owned record belongs to its author */
	e2e_id(id, TAG_A, 5);
	cli_do(a, 60, "put", "entry", id, "{\"n\":5}");
	e2e_sync(a, 60);
	e2e_enroll(&e, "B", b, sizeof b);
	e2e_sync(b, 60);
	cli_fails("belongs to device", b, "put", "entry", id, "{\"n\":6}");
	cli_fails("belongs to device", b, "delete", "entry", id);

	/* the relay is gone: sync says so, and the write waits in the outbox */
	cr_assert_eq(h_relay_stop(&e.r), 0);
	e2e_id(id, TAG_A, 6);
	cli_do(a, 60, "put", "entry", id, "{\"n\":6}");
	cli_fails("could not reach relay", a, "sync");
	s = e2e_status(a);
	cr_assert_eq(e2e_jint(s, "outbox", NULL), 1, "%s", json_dumps(s, 0));
	json_decref(s);
	e2e_finish(&e);
}

Test(devices, schema_changes_reach_every_device, .timeout = 300)
{
	struct e2e e;
	struct cli c;
	char a[512], b[512], file[512], id[SR_UUID_LEN + 1], tag1[SR_UUID_LEN + 1], tag2[SR_UUID_LEN + 1], *got;
	json_t *s;

	e2e_start(&e);
	e2e_enroll(&e, "A", a, sizeof a);
	e2e_enroll(&e, "B", b, sizeof b); /* before any schema exists */
	cli_ok(&c, b, 60, "schema", "show");
	cr_assert_eq(e2e_jint(c.json, "version", NULL), 0, "%s", c.out);
	cli_free(&c);
	e2e_sync(b, 60);

	e2e_schema(&e, a);
	e2e_id(id, TAG_A, 1);
	cli_do(a, 60, "put", "entry", id, "{\"name\":\"first\"}");
	e2e_sync(a, 60);
	e2e_sync(b, 60);
	got = e2e_get(b, "entry", id);
	cr_assert(got && !strcmp(got, "{\"name\":\"first\"}"), "B after the schema appeared: %s", got);
	free(got);

	/* a later schema adds a model; B learns it from the pull */
	e2e_path(&e, file, sizeof file, "schema2.json");
	e2e_write_file(file, "{\"models\":[{\"name\":\"location\",\"kind\":\"device_owned\"},"
			     "{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":["
			     "{\"field\":\"content_id\",\"model\":\"content_identity\"},"
			     "{\"field\":\"parent_id\",\"model\":\"entry\"}]},"
			     "{\"name\":\"content_identity\",\"kind\":\"shared\"},"
			     "{\"name\":\"tag\",\"kind\":\"shared\"}]}");
	cli_do(a, 60, "schema", "set", file);
	e2e_id(tag1, TAG_SHARED, 100);
	cli_do(a, 60, "put", "tag", tag1, "{\"label\":\"holidays\"}");
	e2e_sync(a, 60);
	e2e_sync(b, 60);
	got = e2e_get(b, "tag", tag1);
	cr_assert(got && !strcmp(got, "{\"label\":\"holidays\"}"), "B's tag after the schema grew: %s", got);
	free(got);
	cli_ok(&c, b, 60, "schema", "show");
	cr_assert_eq(e2e_jint(c.json, "version", NULL), 2, "%s", c.out);
	cli_free(&c);
	s = e2e_status(b);
	cr_assert_eq(e2e_jint(s, "records", "tag"), 1, "%s", json_dumps(s, 0));
	json_decref(s);
	/* and B may now write the new model itself */
	e2e_id(tag2, TAG_SHARED, 101);
	cli_do(b, 60, "put", "tag", tag2, "{\"label\":\"work\"}");
	e2e_sync(b, 60);
	e2e_sync(a, 60);
	got = e2e_get(a, "tag", tag2);
	cr_assert(got && !strcmp(got, "{\"label\":\"work\"}"), "A's copy of B's tag: %s", got);
	free(got);
	e2e_assert_verified(a, "A");
	e2e_assert_verified(b, "B");
	e2e_finish(&e);
}
