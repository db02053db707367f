/*
 * End-to-end: a replica damaged behind the library's back (rows deleted, a field altered, a
 * stray row added) is found by `verify`, which names the scope, and healed by
 * `verify --repair`; a gap injected while changes keep flowing is found and repaired too
 * (PROTOCOL.md sections 4 "Digests", 5 "Verify", LESSONS.md).
 */
#include <pthread.h>

#include "cli.h"
#include "syncrelay.h"

#define TAG_A 0xa0000002u
#define TAG_CONTENT 0xc1000002u

/* The scope (model, owner NULL = shared) of a verify report, or NULL. */
static const json_t *report_scope(const json_t *rep, const char *model, const char *owner)
{
	const json_t *s;
	size_t i;

	json_array_foreach(json_object_get(rep, "scopes"), i, s) {
		const char *o = json_string_value(json_object_get(s, "owner"));

		if (!strcmp(json_string_value(json_object_get(s, "model")), model) &&
		    ((!owner && !o) || (owner && o && !strcmp(owner, o))))
			return s;
	}
	return NULL;
}

static long long repaired(const json_t *rep, const char *what)
{
	return json_integer_value(json_object_get(json_object_get(rep, "repaired"), what));
}

/* A fresh world with two devices converged on 1,000 entries and 10 content identities. */
static void converge_two(struct e2e *e, char *a, char *b, size_t n)
{
	char file[512];
	FILE *f;
	long k;

	e2e_start_two(e, a, b, n);
	/* both start syncing at once (their backfill of the empty library is done), so what follows
	 * travels as changes; backfill has its own suite */
	e2e_sync(a, 30);
	e2e_sync(b, 30);
	e2e_import(e, a, TAG_A, 0, 1000, 120);
	e2e_path(e, file, sizeof file, "content.jsonl");
	f = fopen(file, "w");
	cr_assert(f);
	for (k = 0; k < 10; k++) {
		char id[SR_UUID_LEN + 1];

		e2e_id(id, TAG_CONTENT, k);
		fprintf(f, "{\"record_id\":\"%s\",\"data\":{\"hash\":\"h%ld\",\"size\":%ld}}\n", id, k, k);
	}
	fclose(f);
	cli_do(a, 60, "import", "content_identity", file);
	e2e_sync(a, 60);
	e2e_sync(b, 60);
	e2e_assert_verified(a, "A");
	e2e_assert_verified(b, "B");
}

Test(repair, damaged_replica_is_named_and_healed, .timeout = 300)
{
	struct e2e e;
	char a[512], b[512], text[4096], id[SR_UUID_LEN + 1], *dev_a, *orig[5], *got;
	const char *p[4];
	const json_t *s;
	json_t *rep;
	double t_verify, t_repair;
	int st, i;
	long k;

	converge_two(&e, a, b, sizeof a);
	dev_a = e2e_store_meta(a, "device_id");
	for (k = 5; k <= 8; k++) {
		e2e_id(id, TAG_A, k);
		orig[k - 5] = e2e_get(b, "entry", id);
	}
	e2e_id(id, TAG_CONTENT, 3);
	orig[4] = e2e_get(b, "content_identity", id);

	/* damage behind the library's back: three rows lost ... */
	for (k = 5; k <= 7; k++) {
		e2e_id(id, TAG_A, k);
		p[0] = id;
		cr_assert_eq(e2e_store_exec(b, "DELETE FROM records WHERE model = 'entry' AND record_id = ?1", p, 1), 1);
	}
	/* ... one field altered, the version kept (counts still match for that row) ... */
	e2e_id(id, TAG_A, 8);
	p[0] = id;
	cr_assert_eq(e2e_store_exec(b, "UPDATE records SET data = json_set(data, '$.name', 'tampered')"
				       " WHERE model = 'entry' AND record_id = ?1", p, 1), 1);
	e2e_id(id, TAG_CONTENT, 3);
	p[0] = id;
	cr_assert_eq(e2e_store_exec(b, "UPDATE records SET data = json_set(data, '$.size', 999)"
				       " WHERE model = 'content_identity' AND record_id = ?1", p, 1), 1);
	/* verify finds both damaged scopes and names them */
	st = e2e_verify(b, 0, &rep, &t_verify);
	e2e_scopes_text(rep, text, sizeof text);
	cr_assert_eq(st, 1, "verify of a damaged replica exited %d:%s", st, text);
	s = report_scope(rep, "entry", dev_a);
	cr_assert(s, "verify does not name scope entry/%s:%s", dev_a, text);
	cr_assert(json_is_false(json_object_get(s, "match")), "entry/%s should not match:%s", dev_a, text);
	cr_assert_eq(e2e_jint(s, "local", "count"), 997, "%s", text);
	cr_assert_eq(e2e_jint(s, "relay", "count"), 1000, "%s", text);
	s = report_scope(rep, "content_identity", NULL);
	cr_assert(s && json_is_false(json_object_get(s, "match")),
		  "an altered field with equal counts must not match (content_identity/shared):%s", text);
	cr_assert_eq(e2e_jint(s, "local", "count"), e2e_jint(s, "relay", "count"), "%s", text);
	cr_assert_eq(repaired(rep, "replaced") + repaired(rep, "fetched") + repaired(rep, "removed"), 0,
		     "verify without --repair repaired something: %s", json_dumps(rep, 0));
	json_decref(rep);
	/* a plain verify changes nothing */
	cr_assert_eq(e2e_records(b, "entry"), 997);

	/* --repair heals it and reports what it did */
	st = e2e_verify(b, 1, &rep, &t_repair);
	e2e_scopes_text(rep, text, sizeof text);
	cr_assert_eq(st, 0, "verify --repair exited %d:%s; report %s", st, text, json_dumps(rep, 0));
	json_array_foreach(json_object_get(rep, "scopes"), i, s)
		cr_assert(json_is_true(json_object_get(s, "match")), "after repair:%s", text);
	/* 3 lost rows fetched back, 2 altered rows replaced (equal HLC: the local row was damaged) */
	cr_assert_geq(repaired(rep, "replaced"), 5, "repaired %s", json_dumps(json_object_get(rep, "repaired"), 0));
	cr_assert_geq(repaired(rep, "fetched"), 5, "repaired %s", json_dumps(json_object_get(rep, "repaired"), 0));
	cr_assert_eq(repaired(rep, "removed"), 0, "repaired %s", json_dumps(json_object_get(rep, "repaired"), 0));
	json_decref(rep);

	for (k = 5; k <= 8; k++) {
		e2e_id(id, TAG_A, k);
		got = e2e_get(b, "entry", id);
		cr_assert(got && !strcmp(got, orig[k - 5]), "entry %s after repair: %s, want %s", id,
			  got ? got : "not found", orig[k - 5]);
		free(got);
	}
	e2e_id(id, TAG_CONTENT, 3);
	got = e2e_get(b, "content_identity", id);
	cr_assert(got && !strcmp(got, orig[4]), "content_identity %s after repair: %s, want %s", id, got, orig[4]);
	free(got);

	/* a second verify matches and repairs nothing */
	st = e2e_verify(b, 0, &rep, NULL);
	e2e_scopes_text(rep, text, sizeof text);
	cr_assert_eq(st, 0, "second verify exited %d:%s", st, text);
	json_decref(rep);
	e2e_assert_verified(a, "A");
	cr_assert_eq(e2e_records(b, "entry"), 1000);
	cr_log_info("repair: verify of 1010 records %.2f s, verify --repair %.2f s", t_verify, t_repair);
	for (i = 0; i < 5; i++)
		free(orig[i]);
	free(dev_a);
	e2e_finish(&e);
}

/* Waits until the device at store has pulled to the relay's head; fails saying how far behind. */
static void wait_at_head(struct e2e *e, const char *store, const char *token, double timeout, const char *who)
{
	double deadline = h_mono() + timeout;
	char state[1024];
	long long head = -1, cursor = -1;

	while (h_mono() < deadline) {
		json_t *s;

		head = e2e_relay_head(e, token);
		s = e2e_status(store);
		cursor = e2e_jint(s, "cursor", NULL);
		json_decref(s);
		if (cursor >= head)
			return;
		cli_sleep(0.2);
	}
	e2e_store_state(store, state);
	cr_assert_fail("%s did not reach the relay's head within %.0f s: cursor %lld, head %lld (%lld behind); store %s:%s",
		       who, timeout, cursor, head, head - cursor, store, state);
}

Test(repair, gap_injected_while_changes_flow_is_healed, .timeout = 300)
{
	struct e2e e;
	char a[512], b[512], log[512], text[4096], id[SR_UUID_LEN + 1], *dev_a, *tok_b, *orig17, *orig18, *got;
	const char *p[1];
	const json_t *s;
	json_t *rep, *sa, *sb;
	pid_t watch;
	int st, round;

	converge_two(&e, a, b, sizeof a);
	dev_a = e2e_store_meta(a, "device_id");
	tok_b = e2e_store_meta(b, "token");
	e2e_id(id, TAG_A, 17);
	orig17 = e2e_get(b, "entry", id);
	e2e_id(id, TAG_A, 18);
	orig18 = e2e_get(b, "entry", id);

	e2e_path(&e, log, sizeof log, "watch-B.log");
	watch = cli_spawn(b, log, "sync", "--watch", "--timeout", "20");

	/* A keeps writing and syncing; meanwhile B's replica loses a row and another is altered */
	for (round = 0; round < 8; round++) {
		e2e_import(&e, a, TAG_A, 1000 + round * 25, 25, 60);
		e2e_sync(a, 60);
		if (round == 2) {
			e2e_id(id, TAG_A, 17);
			p[0] = id;
			cr_assert_eq(e2e_store_exec(b, "DELETE FROM records WHERE model = 'entry' AND record_id = ?1", p, 1), 1);
		}
		if (round == 5) {
			e2e_id(id, TAG_A, 18);
			p[0] = id;
			cr_assert_eq(e2e_store_exec(b, "UPDATE records SET data = '{\"name\":\"tampered\"}'"
						       " WHERE model = 'entry' AND record_id = ?1", p, 1), 1);
		}
		cli_sleep(0.1);
	}
	cr_assert_eq(waitpid(watch, &st, WNOHANG), 0, "the watching sync on B exited early; see %s", log);
	wait_at_head(&e, b, tok_b, 30, "B (sync --watch)");
	cr_assert_eq(e2e_records(b, "entry"), 1199, "B's watch pulled the new entries, the lost one is still lost");

	/* the gap is found while the watch is still running ... */
	st = e2e_verify(b, 0, &rep, NULL);
	e2e_scopes_text(rep, text, sizeof text);
	s = report_scope(rep, "entry", dev_a);
	cr_assert(st == 1 && s && json_is_false(json_object_get(s, "match")),
		  "verify should name entry/%s (exit %d):%s", dev_a, st, text);
	json_decref(rep);
	/* ... and repaired beside it */
	st = e2e_verify(b, 1, &rep, NULL);
	e2e_scopes_text(rep, text, sizeof text);
	cr_assert_eq(st, 0, "verify --repair exited %d:%s", st, text);
	cr_assert_geq(repaired(rep, "replaced"), 2, "repaired %s", json_dumps(json_object_get(rep, "repaired"), 0));
	json_decref(rep);

	kill(watch, SIGTERM);
	st = cli_wait(watch, 30, "sync --watch on B after SIGTERM", log);
	cr_assert_eq(st, 0, "sync --watch exited %d after SIGTERM; see %s", st, log);

	e2e_sync(a, 60);
	e2e_sync(b, 60);
	e2e_id(id, TAG_A, 17);
	got = e2e_get(b, "entry", id);
	cr_assert(got && !strcmp(got, orig17), "lost entry %s after repair: %s, want %s", id, got, orig17);
	free(got);
	e2e_id(id, TAG_A, 18);
	got = e2e_get(b, "entry", id);
	cr_assert(got && !strcmp(got, orig18), "altered entry %s after repair: %s, want %s", id, got, orig18);
	free(got);
	sa = e2e_status(a);
	sb = e2e_status(b);
	cr_assert_eq(e2e_jint(sa, "records", "entry"), 1200);
	cr_assert(json_equal(json_object_get(sa, "records"), json_object_get(sb, "records")), "A %s, B %s",
		  json_dumps(json_object_get(sa, "records"), 0), json_dumps(json_object_get(sb, "records"), 0));
	json_decref(sa);
	json_decref(sb);
	e2e_assert_verified(a, "A");
	e2e_assert_verified(b, "B");
	free(orig17);
	free(orig18);
	free(dev_a);
	free(tok_b);
	e2e_finish(&e);
}

/* A watching sync run through the public API, with verification every second. */
struct watch {
	char store[512];
	double timeout_s;
	int rc;
	char err[1024];
};

static void *watch_run(void *arg)
{
	struct watch *w = arg;
	sr_sync_opts o = SR_SYNC_OPTS_INIT;
	sr_client *c = NULL;

	o.watch = 1;
	o.timeout_s = w->timeout_s;
	o.verify_every_s = 1;
	w->rc = sr_client_open(&c, w->store);
	if (!w->rc)
		w->rc = sr_client_sync(c, &o);
	snprintf(w->err, sizeof w->err, "%s", c ? sr_client_errmsg(c) : "could not open the store");
	sr_client_free(c);
	return NULL;
}

Test(repair, a_watching_sync_verifies_and_repairs_by_itself, .timeout = 300)
{
	struct e2e e;
	struct watch w = {.timeout_s = 8};
	char a[512], b[512], id17[SR_UUID_LEN + 1], id18[SR_UUID_LEN + 1], state[1024];
	char *orig17, *orig18, *got17 = NULL, *got18 = NULL;
	const char *p[1];
	pthread_t th;
	double deadline;

	converge_two(&e, a, b, sizeof a);
	e2e_id(id17, TAG_A, 17);
	e2e_id(id18, TAG_A, 18);
	orig17 = e2e_get(b, "entry", id17);
	orig18 = e2e_get(b, "entry", id18);
	snprintf(w.store, sizeof w.store, "%s", b);
	cr_assert_eq(pthread_create(&th, NULL, watch_run, &w), 0);
	cli_sleep(0.3);

	p[0] = id17;
	cr_assert_eq(e2e_store_exec(b, "DELETE FROM records WHERE model = 'entry' AND record_id = ?1", p, 1), 1);
	p[0] = id18;
	cr_assert_eq(e2e_store_exec(b, "UPDATE records SET data = '{\"name\":\"tampered\"}'"
				       " WHERE model = 'entry' AND record_id = ?1", p, 1), 1);
	/* changes keep flowing meanwhile */
	e2e_import(&e, a, TAG_A, 2000, 50, 60);
	e2e_sync(a, 60);

	/* nobody runs verify: the watch itself must notice and heal within a few seconds */
	deadline = h_mono() + 7;
	for (;;) {
		free(got17);
		free(got18);
		got17 = e2e_get(b, "entry", id17);
		got18 = e2e_get(b, "entry", id18);
		if (got17 && !strcmp(got17, orig17) && got18 && !strcmp(got18, orig18))
			break;
		if (h_mono() > deadline) {
			e2e_store_state(b, state);
			cr_assert_fail("sync --watch (verify every 1 s) did not repair B within 7 s: entry %s is %s,"
				       " entry %s is %s; store %s:%s",
				       id17, got17 ? got17 : "missing", id18, got18 ? got18 : "missing", b, state);
		}
		cli_sleep(0.2);
	}
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(w.rc, 0, "the watching sync failed: %d %s", w.rc, w.err);
	cr_assert_eq(e2e_records(b, "entry"), 1050);
	e2e_assert_verified(b, "B");
	free(got17);
	free(got18);
	free(orig17);
	free(orig18);
	e2e_finish(&e);
}
