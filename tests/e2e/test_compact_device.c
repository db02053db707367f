/*
 * End-to-end compaction, with the real CLI: after a library with many versions and deletes is
 * compacted, a device that was in sync keeps syncing without a 410 and verifies, and a fresh
 * device backfills to the same digests. A device offline past the retention, holding records
 * deleted meanwhile and writes of its own, recovers with one `sync`.
 */
#include <libpq-fe.h>

#include "cli.h"

#define TAG_A 0xa0000010u
#define TAG_D 0xd0000010u
#define PULL_4XX "syncrelay_http_requests_total{route=\"pull\",status=\"4xx\"}"

static void e2e_tick(double s)
{
	cli_sleep(s);
}

static long long log_size(const struct e2e *e)
{
	PGconn *c = PQconnectdb(e->r.db);
	const char *p[1] = {e->l.id};
	PGresult *res;
	long long n;

	cr_assert(PQstatus(c) == CONNECTION_OK, "cannot connect to %s: %s", e->r.db, PQerrorMessage(c));
	res = PQexecParams(c, "SELECT count(*) FROM changes WHERE library_id = $1", 1, NULL, p, NULL, NULL, 0);
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	n = atoll(PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(c);
	return n;
}

/* POST .../compact as the operator; the answer (caller decrefs). */
static json_t *compact(struct e2e *e, const char *body)
{
	struct resp p;
	json_t *j;

	h_http(&p, &e->r, "POST", h_lp(&e->l, "/compact"), H_ADMIN, body);
	h_expect_json(&p, 200);
	j = json_incref(p.json);
	h_resp_free(&p);
	return j;
}

/* Waits, by a deadline, until a dry run with retention 1 s counts want removable changes. */
static void await_aged(struct e2e *e, long long want)
{
	double t0 = h_mono();

	for (;;) {
		json_t *j = compact(e, "{\"retention\":1,\"dry_run\":true}");
		long long seen = h_jint(j, "changes_removed");

		json_decref(j);
		if (seen >= want)
			return;
		cr_assert(h_mono() - t0 < 30, "waited 30 s for %lld changes to age past 1 s; a dry run counts %lld", want,
			  seen);
		e2e_tick(0.1);
	}
}

/* A (store a) writes 200 entries in three versions, deletes 50 of them, and pushes. */
static void history(struct e2e *e, const char *a)
{
	char file[512], id[SR_UUID_LEN + 1];
	struct cli c;
	long k;

	e2e_sync(a, 60);
	e2e_import(e, a, TAG_A, 0, 200, 120);
	e2e_path(e, file, sizeof file, "v2.jsonl");
	e2e_entries_file(file, TAG_A, 0, 200, "\"v\":2");
	cli_ok(&c, a, 120, "import", "entry", file);
	cli_free(&c);
	e2e_entries_file(file, TAG_A, 0, 200, "\"v\":3");
	cli_ok(&c, a, 120, "import", "entry", file);
	cli_free(&c);
	for (k = 0; k < 50; k++) {
		e2e_id(id, TAG_A, k);
		cli_do(a, 60, "delete", "entry", id);
	}
	e2e_sync(a, 60);
}

Test(compact_device, in_sync_and_fresh_devices_after_compaction, .timeout = 600)
{
	struct e2e e;
	char a[512], b[512], cs[512], id[SR_UUID_LEN + 1], *got;
	long long before, after;
	double fourxx;
	json_t *j;

	e2e_start_two(&e, a, b, sizeof a);
	history(&e, a);
	e2e_sync(b, 60);
	e2e_assert_verified(b, "B before compaction");
	before = log_size(&e);
	cr_assert_eq(before, 650, "600 versions and 50 deletes in the log");
	/* versions 1 and 2 of every entry, version 3 and the delete of the 50 deleted ones */
	await_aged(&e, 500);
	j = compact(&e, "{\"retention\":1}");
	cr_assert(h_jint(j, "changes_removed") == 500 && h_jint(j, "tombstones_purged") == 50, "compact: %s",
		  json_dumps(j, JSON_COMPACT));
	json_decref(j);
	after = log_size(&e);
	cr_assert_eq(after, 150, "one change per live entry");

	/* B was in sync: it syncs on without a 410 and still matches */
	fourxx = h_metric_or(&e.r, PULL_4XX, 0);
	e2e_sync(b, 60);
	e2e_assert_verified(b, "B after compaction");
	e2e_id(id, TAG_A, 100);
	cli_do(a, 60, "put", "entry", id, "{\"name\":\"after\"}");
	e2e_sync(a, 60);
	e2e_sync(b, 60);
	got = e2e_get(b, "entry", id);
	cr_assert(got && !strcmp(got, "{\"name\":\"after\"}"), "B has %s for a write made after compaction",
		  got ? got : "nothing");
	free(got);
	cr_assert_eq(h_metric_or(&e.r, PULL_4XX, 0), fourxx, "a device in sync was refused a pull after compaction");
	e2e_assert_verified(b, "B");

	/* a fresh device backfills the compacted library to the same digests */
	e2e_enroll(&e, "C", cs, sizeof cs);
	e2e_sync(cs, 120);
	e2e_assert_verified(cs, "C, enrolled after compaction");
	cr_assert_eq(e2e_records(cs, "entry"), 150);
	e2e_id(id, TAG_A, 0);
	cr_assert_null(e2e_get(cs, "entry", id), "C has a deleted entry");
	e2e_finish(&e);
}

/* The device's 410 path (backfill, reconcile, re-push) is the client's (issue 8); with main's
 * client of today it passes too, as the deleted entries belong to another device. */
Test(compact_device, offline_past_retention_recovers_in_one_sync, .timeout = 600)
{
	struct e2e e;
	char a[512], d[512], id[SR_UUID_LEN + 1], data[64], *got;
	json_t *j;
	long k;

	e2e_start_two(&e, a, d, sizeof a);
	history(&e, a);
	e2e_sync(d, 60);
	e2e_assert_verified(d, "D before going offline");
	/* D offline: it writes five entries of its own; meanwhile A deletes 30 more entries */
	for (k = 0; k < 5; k++) {
		e2e_id(id, TAG_D, k);
		snprintf(data, sizeof data, "{\"name\":\"offline %ld\"}", k);
		cli_do(d, 60, "put", "entry", id, data);
	}
	for (k = 50; k < 80; k++) {
		e2e_id(id, TAG_A, k);
		cli_do(a, 60, "delete", "entry", id);
	}
	e2e_sync(a, 60);
	await_aged(&e, 560);
	j = compact(&e, "{\"retention\":1}");
	cr_assert(h_jint(j, "tombstones_purged") == 80, "compact: %s", json_dumps(j, JSON_COMPACT));
	json_decref(j);

	/* one sync: D's cursor is below the horizon (410), it backfills and reconciles */
	e2e_sync(d, 120);
	for (k = 0; k < 80; k++) {
		e2e_id(id, TAG_A, k);
		got = e2e_get(d, "entry", id);
		cr_assert_null(got, "D still holds entry %ld, deleted and purged on the relay: %s", k, got);
	}
	e2e_assert_verified(d, "D after one sync");
	e2e_sync(a, 60);
	for (k = 0; k < 5; k++) {
		e2e_id(id, TAG_D, k);
		got = e2e_get(a, "entry", id);
		cr_assert(got, "D's offline write %ld did not reach A", k);
		free(got);
	}
	e2e_assert_verified(a, "A");
	e2e_finish(&e);
}
