/*
 * Compaction: a library with many versions per record and many deletes, compacted with a
 * short retention, keeps about one change per live record plus the recent ones, its digests,
 * its backfill and its in-sync devices; bad requests change nothing; four devices pushing and
 * pulling while compaction runs lose and repeat nothing (push latency measured with and
 * without); two relays on one database compact one at a time.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

TestSuite(compact, .init = h_curl_init, .fini = h_curl_fini, .timeout = 300);

/* the advisory lock keys of server/db.c (pass lock, per-library lock) */
#define PASS_KEY "1397882897"
#define LIB_KEY "1397882896"

/* ---- helpers ---- */

static void tick(double s)
{
	struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};

	nanosleep(&t, NULL);
}

static PGconn *sql_open(const struct relay *r)
{
	PGconn *c = PQconnectdb(r->db);

	cr_assert(PQstatus(c) == CONNECTION_OK, "cannot connect to %s: %s", r->db, PQerrorMessage(c));
	return c;
}

/* One value of a query (library id as $1, may be NULL), as a long long. */
static long long sql_int(PGconn *c, const char *sql, const char *lib)
{
	const char *p[1] = {lib};
	PGresult *res = PQexecParams(c, sql, lib ? 1 : 0, NULL, p, NULL, NULL, 0);
	long long v;

	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s", sql,
		  PQresultErrorMessage(res));
	v = atoll(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

static void sql_ok(PGconn *c, const char *sql, const char *lib)
{
	const char *p[1] = {lib};
	PGresult *res = PQexecParams(c, sql, lib ? 1 : 0, NULL, p, NULL, NULL, 0);

	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s",
		  sql, PQresultErrorMessage(res));
	PQclear(res);
}

static long long log_size(PGconn *c, const struct lib *l)
{
	return sql_int(c, "SELECT count(*) FROM changes WHERE library_id = $1", l->id);
}

/* POST .../compact with body (NULL: none); expects 200 and returns the answer (caller decrefs). */
static json_t *compact(struct relay *r, const struct lib *l, const char *body)
{
	struct resp p;
	json_t *j;

	h_http(&p, r, "POST", h_lp(l, "/compact"), H_ADMIN, body);
	h_expect_json(&p, 200);
	cr_assert(json_is_integer(json_object_get(p.json, "changes_removed")) &&
		  json_is_integer(json_object_get(p.json, "tombstones_purged")) &&
		  json_is_integer(json_object_get(p.json, "horizon")), "compact answer lacks members: %s", p.body);
	j = json_incref(p.json);
	h_resp_free(&p);
	return j;
}

/* Waits until a dry run with this retention counts want changes (the relay's clock has aged
 * them past it), by a deadline; fails with the last count seen. */
static void await_aged(struct relay *r, const struct lib *l, int retention, long long want)
{
	char body[64];
	double t0 = h_mono();
	long long seen;

	snprintf(body, sizeof body, "{\"retention\":%d,\"dry_run\":true}", retention);
	for (;;) {
		json_t *j = compact(r, l, body);

		seen = h_jint(j, "changes_removed");
		json_decref(j);
		if (seen == want)
			return;
		cr_assert(seen < want, "a dry run counts %lld removable changes, more than the %lld expected", seen,
			  want);
		cr_assert(h_mono() - t0 < 20, "waited 20 s for %lld changes to age past %d s; a dry run still counts %lld",
			  want, retention, seen);
		tick(0.1);
	}
}

/* The digests of the library as one JSON text: every scope, and the buckets of each scope. */
static char *digests(struct relay *r, const struct lib *l, const struct dev *d)
{
	sr_buf b = {0};
	struct resp p;
	json_t *scopes, *s;
	size_t i;

	h_http(&p, r, "GET", h_lp(l, "/digest"), d->token, NULL);
	h_expect_json(&p, 200);
	scopes = json_object_get(p.json, "scopes");
	sr_buf_puts(&b, "scopes ");
	{
		char *t = json_dumps(scopes, JSON_COMPACT | JSON_SORT_KEYS);

		sr_buf_puts(&b, t);
		free(t);
	}
	json_array_foreach(scopes, i, s) {
		struct resp q;
		const char *owner = h_jstr(s, "owner");
		char *t;

		h_http(&q, r, "GET", h_lp(l, "/digest/buckets?model=%s&owner=%s", h_jstr(s, "model"), owner ? owner : ""),
		       d->token, NULL);
		h_expect_json(&q, 200);
		t = json_dumps(json_object_get(q.json, "buckets"), JSON_COMPACT | JSON_SORT_KEYS);
		sr_buf_printf(&b, "\n%s/%s %s", h_jstr(s, "model"), owner ? owner : "", t);
		free(t);
		h_resp_free(&q);
	}
	h_resp_free(&p);
	return sr_buf_steal(&b);
}

/* What a fresh device would backfill (records pages of every scope, tombstones included),
 * hashed as the protocol says; must equal the relay's digest of each scope. */
static void backfill_matches(struct relay *r, const struct lib *l, const struct dev *d, long long *live,
			     long long *tombs)
{
	struct resp p;
	json_t *scopes, *s;
	size_t i;

	*live = *tombs = 0;
	h_http(&p, r, "GET", h_lp(l, "/digest"), d->token, NULL);
	h_expect_json(&p, 200);
	scopes = json_object_get(p.json, "scopes");
	json_array_foreach(scopes, i, s) {
		const char *model = h_jstr(s, "model"), *owner = h_jstr(s, "owner");
		char after[SR_UUID_LEN + 1] = "", hex[17];
		uint64_t hash = 0;
		long long count = 0;

		for (;;) {
			struct resp q;
			json_t *rec;
			size_t k;

			h_http(&q, r, "GET",
			       h_lp(l, "/records?model=%s&owner=%s&include_deleted=1&limit=100&after=%s", model,
				    owner ? owner : "", after),
			       d->token, NULL);
			h_expect_json(&q, 200);
			json_array_foreach(json_object_get(q.json, "records"), k, rec) {
				char *data;

				if (json_is_true(json_object_get(rec, "deleted"))) {
					(*tombs)++;
					continue;
				}
				data = sr_canonical(json_object_get(rec, "data"));
				hash ^= sr_record_hash(model, h_jstr(rec, "record_id"), h_jstr(rec, "hlc"), data);
				free(data);
				count++;
			}
			if (!json_is_string(json_object_get(q.json, "next_after"))) {
				h_resp_free(&q);
				break;
			}
			snprintf(after, sizeof after, "%s", h_jstr(q.json, "next_after"));
			h_resp_free(&q);
		}
		sr_hash_hex(hex, hash);
		cr_assert(count == h_jint(s, "count") && !strcmp(hex, h_jstr(s, "hash")),
			  "scope %s/%s: records pages give %lld records hash %s, the digest says %lld hash %s", model,
			  owner ? owner : "", count, hex, h_jint(s, "count"), h_jstr(s, "hash"));
		*live += count;
	}
	h_resp_free(&p);
}

/* Appends changes to c for records k in [from, to) of device d: version v upserts, or deletes. */
static void chb_range(struct h_chb *c, const struct dev *d, uint64_t ms, uint64_t *ctr, int from, int to, int v,
		      int del)
{
	int k;

	for (k = from; k < to; k++) {
		char hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1], data[64];

		h_hlc(hlc, ms, (*ctr)++, d->id);
		snprintf(rid, sizeof rid, "%.8s-0000-4000-8000-%012d", d->id, k);
		snprintf(data, sizeof data, "{\"k\":%d,\"v\":%d}", k, v);
		h_chb_add(c, hlc, "entry", rid, del ? "delete" : "upsert", del ? NULL : data);
	}
}

/* Pulls since as d (own changes included); returns the page (caller decrefs), asserting 200. */
static json_t *pull(struct relay *r, const struct lib *l, const struct dev *d, long long since)
{
	struct resp p;
	json_t *j;

	h_http(&p, r, "GET", h_lp(l, "/changes?since=%lld&include_own=1&limit=10000", since), d->token, NULL);
	cr_assert(p.status == 200 && p.json, "pull since=%lld: expected 200, got %ld %s", since, p.status, p.body);
	j = json_incref(p.json);
	h_resp_free(&p);
	return j;
}

/* ---- a library compacted with a short retention ---- */

/*
 * Old phase (then aged past the retention): records 0..299 of d1 in four versions each
 * (seqs 1..1200), deletes of records 0..99 (1201..1300). Recent phase: records 100..149
 * updated (1301..1350), records 300..319 new (1351..1370), records 200..209 deleted
 * (1371..1380). Removable: versions 1..3 of every record (900), version 4 of the deleted
 * 0..99 (100) and their deletes (100, purging 100 tombstones), version 4 of 100..149 (50)
 * and of 200..209 (10): 1160 changes. Left: version 4 of 150..199 and 210..299 (140) and
 * the 80 recent changes; 210 live records; horizon 1300 (the delete of record 99).
 */
Test(compact, shrinks_log_keeps_digests_backfill_and_cursors)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct h_chb c = {0};
	uint64_t ms = h_now_ms() - 600000, ctr = 0;
	char last_delete[SR_HLC_LEN + 1];
	char *before, *after;
	long long head, live, tombs;
	json_t *j, *page;
	PGconn *db;
	int v;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);
	db = sql_open(&r);
	for (v = 1; v <= 4; v++) {
		chb_range(&c, &d1, ms, &ctr, 0, 300, v, 0);
		h_push_ok(&r, &l, &d1, h_chb_end(&c), 300, 0);
	}
	chb_range(&c, &d1, ms, &ctr, 0, 100, 0, 1);
	h_hlc(last_delete, ms, ctr - 1, d1.id);
	h_push_ok(&r, &l, &d1, h_chb_end(&c), 100, 0);
	await_aged(&r, &l, 1, 1100); /* what is removable before the recent phase supersedes more */

	ms = h_now_ms();
	ctr = 0;
	chb_range(&c, &d1, ms, &ctr, 100, 150, 5, 0);
	chb_range(&c, &d1, ms, &ctr, 300, 320, 1, 0);
	chb_range(&c, &d1, ms, &ctr, 200, 210, 0, 1);
	head = h_push_ok(&r, &l, &d1, h_chb_end(&c), 80, 0);
	cr_assert_eq(head, 1380);
	cr_assert_eq(log_size(db, &l), 1380);

	/* d2 is in sync: its cursor is head */
	page = pull(&r, &l, &d2, 0);
	cr_assert_eq(h_jint(page, "next"), 1380);
	json_decref(page);
	before = digests(&r, &l, &d1);

	/* a dry run counts and changes nothing */
	j = compact(&r, &l, "{\"retention\":1,\"dry_run\":true}");
	cr_assert(h_jint(j, "changes_removed") == 1160 && h_jint(j, "tombstones_purged") == 100 &&
		  h_jint(j, "horizon") == 0, "dry run: %s", json_dumps(j, JSON_COMPACT));
	json_decref(j);
	cr_assert_eq(log_size(db, &l), 1380, "a dry run removed changes");

	/* the real one; the recent changes (younger than 60 s) stay */
	j = compact(&r, &l, "{\"retention\":60}");
	cr_assert(h_jint(j, "changes_removed") == 0, "retention 60 s removed recent changes: %s",
		  json_dumps(j, JSON_COMPACT));
	json_decref(j);
	j = compact(&r, &l, "{\"retention\":1}");
	cr_assert(h_jint(j, "changes_removed") == 1160 && h_jint(j, "tombstones_purged") == 100 &&
		  h_jint(j, "horizon") == 1300, "compact: %s", json_dumps(j, JSON_COMPACT));
	json_decref(j);
	cr_assert_eq(log_size(db, &l), 220, "the log keeps one change per live record plus the recent ones");
	cr_assert_eq(sql_int(db, "SELECT count(*) FROM records WHERE library_id = $1", l.id), 220);
	cr_assert_eq(sql_int(db, "SELECT count(*) FROM records WHERE library_id = $1 AND deleted", l.id), 10,
		     "only the recent tombstones stay");
	cr_assert_eq(sql_int(db, "SELECT horizon FROM libraries WHERE library_id = $1", l.id), 1300);
	{
		const char *p[2] = {l.id, last_delete};
		PGresult *res = PQexecParams(db, "SELECT horizon_hlc = $2 AND purged_before > $2"
						 " AND purged_before < (SELECT min(hlc) FROM changes WHERE library_id = $1 AND seq > 1300)"
						 " FROM libraries WHERE library_id = $1",
					     2, NULL, p, NULL, NULL, 0);
		cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK && !strcmp(PQgetvalue(res, 0, 0), "t"),
			  "horizon_hlc must be the removed delete's HLC and purged_before just above it: %s %s",
			  PQresultErrorMessage(res), PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
		PQclear(res);
	}
	/* a second run finds nothing */
	j = compact(&r, &l, "{\"retention\":1}");
	cr_assert(h_jint(j, "changes_removed") == 0 && h_jint(j, "tombstones_purged") == 0 && h_jint(j, "horizon") == 1300,
		  "second compact: %s", json_dumps(j, JSON_COMPACT));
	json_decref(j);

	after = digests(&r, &l, &d1);
	cr_assert_str_eq(after, before, "digests moved through compaction");
	backfill_matches(&r, &l, &d2, &live, &tombs);
	cr_assert(live == 210 && tombs == 10, "a fresh device backfills %lld live records and %lld tombstones", live,
		  tombs);

	/* everything above the horizon is still served exactly */
	page = pull(&r, &l, &d2, 1300);
	cr_assert(json_array_size(json_object_get(page, "changes")) == 80 && h_jint(page, "next") == 1380,
		  "pull from the horizon: %s", json_dumps(page, JSON_COMPACT));
	json_decref(page);
	/* the device in sync keeps pulling without a 410 */
	page = pull(&r, &l, &d2, 1380);
	cr_assert(json_array_size(json_object_get(page, "changes")) == 0 && h_jint(page, "next") == 1380);
	json_decref(page);
	ctr = 1000;
	chb_range(&c, &d1, h_now_ms(), &ctr, 150, 155, 6, 0);
	h_push_ok(&r, &l, &d1, h_chb_end(&c), 5, 0);
	page = pull(&r, &l, &d2, 1380);
	cr_assert(json_array_size(json_object_get(page, "changes")) == 5 && h_jint(page, "next") == 1385,
		  "after compaction: %s", json_dumps(page, JSON_COMPACT));
	json_decref(page);
	/* a cursor below the horizon must resync */
	{
		struct resp p;

		h_http(&p, &r, "GET", h_lp(&l, "/changes?since=1000"), d2.token, NULL);
		h_expect_problem(&p, 410, "resync-required");
		cr_assert_eq(h_jint(p.json, "horizon"), 1300);
		if (json_object_get(p.json, "reason"))
			cr_assert_str_eq(h_jstr(p.json, "reason"), "beyond-horizon");
		h_resp_free(&p);
	}
	cr_assert_eq(h_metric(&r, "syncrelay_compaction_changes_removed_total"), 1160);
	cr_assert_eq(h_metric(&r, "syncrelay_compaction_tombstones_purged_total"), 100);
	free(before);
	free(after);
	PQfinish(db);
	h_relay_stop(&r);
}

/* ---- operator controls: what is refused changes nothing ---- */

Test(compact, bad_requests_change_nothing)
{
	struct relay r;
	struct lib l, other;
	struct dev d1;
	struct h_chb c = {0};
	uint64_t ctr = 0;
	char missing[SR_UUID_LEN + 1], path[128];
	json_t *j;
	PGconn *db;
	int v;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, NULL);
	db = sql_open(&r);
	for (v = 1; v <= 3; v++)
		chb_range(&c, &d1, h_now_ms() - 60000, &ctr, 0, 20, v, 0);
	h_push_ok(&r, &l, &d1, h_chb_end(&c), 60, 0);
	await_aged(&r, &l, 1, 40);

	h_http_problem(&r, "POST", h_lp(&l, "/compact"), NULL, "{\"retention\":1}", 401, "unauthorized");
	h_http_problem(&r, "POST", h_lp(&l, "/compact"), d1.token, "{\"retention\":1}", 403, "forbidden");
	h_http_problem(&r, "POST", h_lp(&l, "/compact"), l.join, "{\"retention\":1}", 403, "forbidden");
	h_http_problem(&r, "POST", h_lp(&l, "/compact"), H_ADMIN, "{\"retention\":-1}", 400, "bad-request");
	h_http_problem(&r, "POST", h_lp(&l, "/compact"), H_ADMIN, "{\"retention\":\"1\"}", 400, "bad-request");
	h_http_problem(&r, "POST", h_lp(&l, "/compact"), H_ADMIN, "{\"retention\":3153600001}", 400, "bad-request");
	h_http_problem(&r, "POST", h_lp(&l, "/compact"), H_ADMIN, "{\"retention\":1.5}", 400, "bad-request");
	h_http_problem(&r, "POST", h_lp(&l, "/compact"), H_ADMIN, "{\"retention\":1,\"dry_run\":1}", 400,
		       "bad-request");
	h_http_problem(&r, "POST", h_lp(&l, "/compact"), H_ADMIN, "{\"retention\":1,\"force\":true}", 400,
		       "bad-request");
	h_http_problem(&r, "POST", h_lp(&l, "/compact"), H_ADMIN, "{\"retention\":1", 400, "bad-request");
	h_http_problem(&r, "POST", h_lp(&l, "/compact"), H_ADMIN, "[1]", 400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&l, "/compact"), H_ADMIN, NULL, 405, "method-not-allowed");
	h_uuid(missing);
	snprintf(path, sizeof path, "/v1/libraries/%s/compact", missing);
	h_http_problem(&r, "POST", path, H_ADMIN, "{\"retention\":1}", 404, "library-not-found");
	h_http_problem(&r, "POST", "/v1/libraries/not-a-uuid/compact", H_ADMIN, "{\"retention\":1}", 400, "bad-request");
	cr_assert_eq(log_size(db, &l), 60, "a refused request removed changes");

	/* retention 0 keeps everything; without a body the relay's retention (30 days) applies */
	j = compact(&r, &l, "{\"retention\":0}");
	cr_assert(h_jint(j, "changes_removed") == 0 && h_jint(j, "horizon") == 0, "%s", json_dumps(j, JSON_COMPACT));
	json_decref(j);
	j = compact(&r, &l, NULL);
	cr_assert(h_jint(j, "changes_removed") == 0 && h_jint(j, "retention") == 2592000, "%s",
		  json_dumps(j, JSON_COMPACT));
	json_decref(j);
	j = compact(&r, &l, "{\"retention\":3153600000}");
	cr_assert_eq(h_jint(j, "changes_removed"), 0);
	json_decref(j);
	cr_assert_eq(log_size(db, &l), 60);

	/* another library is not touched by compacting this one */
	h_library(&r, &other);
	j = compact(&r, &l, "{\"retention\":1}");
	cr_assert_eq(h_jint(j, "changes_removed"), 40);
	json_decref(j);
	cr_assert_eq(log_size(db, &l), 20);
	PQfinish(db);
	h_relay_stop(&r);
}

/* ---- compaction while four devices push and pull ---- */

#define NDEV 4
#define NREC 30     /* records per device, rewritten round after round */
#define NCHURN 10   /* records per device and round, created then deleted in the next */
#define CHURN(round) (1000 + (round) * NCHURN)
#define PERPUSH (NREC + 2 * NCHURN)
#define PHASE_S 6.0 /* seconds of pushing without, then with compaction */
#define MAXPUSH 4000

struct writer {
	struct relay *r;
	const struct lib *l;
	struct dev dev;
	int index;
	uint64_t base_ms;
	int *phase; /* 0 without compaction, 1 with, 2 stop */
	int counter;              /* changes pushed (counter of the next HLC) */
	int rounds;               /* pushes answered */
	double lat[2][MAXPUSH];   /* push latency by phase */
	int nlat[2];
	long long cursor;
	unsigned char *seen[NDEV]; /* seen[j][k]: change k of writer j pulled (count) */
	int pulled_410;
	char err[1024];
};

static struct writer writers[NDEV];

/* Pulls to head; counts every other writer's change by its counter. */
static int writer_pull(struct writer *w, CURL *c)
{
	for (;;) {
		char url[512];
		struct resp p;
		json_t *ch;
		size_t i;
		int more;

		snprintf(url, sizeof url, "%s/v1/libraries/%s/changes?since=%lld&limit=1000", w->r->url, w->l->id,
			 w->cursor);
		if (h_xhttp(c, "GET", url, w->dev.token, NULL, 60L, &p)) {
			snprintf(w->err, sizeof w->err, "pull since=%lld: %s", w->cursor, p.err);
			return -1;
		}
		if (p.status != 200 || !p.json) {
			if (p.status == 410)
				w->pulled_410++;
			snprintf(w->err, sizeof w->err, "pull since=%lld: %ld %s", w->cursor, p.status, p.body);
			h_resp_free(&p);
			return -1;
		}
		json_array_foreach(json_object_get(p.json, "changes"), i, ch) {
			sr_hlc h;
			const char *hs = h_jstr(ch, "hlc");
			int j;

			if (!hs || sr_hlc_parse(&h, hs, strlen(hs))) {
				snprintf(w->err, sizeof w->err, "pulled a bad HLC: %s", hs ? hs : "(none)");
				break;
			}
			for (j = 0; j < NDEV && strcmp(writers[j].dev.id, h.device); j++)
				;
			if (j == NDEV || j == w->index || h.counter >= MAXPUSH * (uint64_t)PERPUSH) {
				snprintf(w->err, sizeof w->err, "pulled a change of no other writer: %s", hs);
				break;
			}
			if (w->seen[j][h.counter] < 255)
				w->seen[j][h.counter]++;
		}
		w->cursor = h_jint(p.json, "next");
		more = json_is_true(json_object_get(p.json, "more"));
		h_resp_free(&p);
		if (w->err[0])
			return -1;
		if (!more)
			return 0;
	}
}

static void *writer_run(void *arg)
{
	struct writer *w = arg;
	CURL *c = curl_easy_init();
	char url[512];
	int ph, n;

	snprintf(url, sizeof url, "%s/v1/libraries/%s/changes", w->r->url, w->l->id);
	while ((ph = __atomic_load_n(w->phase, __ATOMIC_SEQ_CST)) < 2 && !w->err[0]) {
		struct h_chb b = {0};
		uint64_t ctr = (uint64_t)w->counter;
		struct resp p;
		char *body;
		double t0;

		if (w->nlat[ph] >= MAXPUSH || w->counter + PERPUSH > MAXPUSH * PERPUSH) {
			snprintf(w->err, sizeof w->err, "more than %d pushes in a phase", MAXPUSH);
			break;
		}
		/* NREC records rewritten every round, NCHURN new ones each round, deleted in the next
		 * (their tombstones stay, to be purged) */
		chb_range(&b, &w->dev, w->base_ms, &ctr, 0, NREC, w->rounds, 0);
		chb_range(&b, &w->dev, w->base_ms, &ctr, CHURN(w->rounds), CHURN(w->rounds) + NCHURN, 0, 0);
		if (w->rounds)
			chb_range(&b, &w->dev, w->base_ms, &ctr, CHURN(w->rounds - 1), CHURN(w->rounds - 1) + NCHURN, 0, 1);
		n = b.n;
		body = h_chb_end(&b);
		t0 = h_mono();
		if (h_xhttp(c, "POST", url, w->dev.token, body, 60L, &p))
			snprintf(w->err, sizeof w->err, "push: %s", p.err);
		else if (p.status != 200 || h_jint(p.json, "accepted") != n)
			snprintf(w->err, sizeof w->err, "push: expected 200 with %d accepted, got %ld %s", n, p.status,
				 p.body);
		w->lat[ph][w->nlat[ph]++] = h_mono() - t0;
		h_resp_free(&p);
		free(body);
		if (w->err[0])
			break;
		w->counter += n;
		w->rounds++;
		writer_pull(w, c);
	}
	curl_easy_cleanup(c);
	return NULL;
}

struct compactor {
	struct relay *r;
	const struct lib *l;
	int *phase;
	long long removed, purged, runs;
	char err[1024];
};

static void *compactor_run(void *arg)
{
	struct compactor *k = arg;
	CURL *c = curl_easy_init();
	char url[512];

	snprintf(url, sizeof url, "%s/v1/libraries/%s/compact", k->r->url, k->l->id);
	while (__atomic_load_n(k->phase, __ATOMIC_SEQ_CST) == 1) {
		struct resp p;

		if (h_xhttp(c, "POST", url, H_ADMIN, "{\"retention\":2}", 60L, &p)) {
			snprintf(k->err, sizeof k->err, "compact: %s", p.err);
			break;
		}
		if (p.status != 200) {
			snprintf(k->err, sizeof k->err, "compact: %ld %s", p.status, p.body);
			h_resp_free(&p);
			break;
		}
		k->removed += h_jint(p.json, "changes_removed");
		k->purged += h_jint(p.json, "tombstones_purged");
		k->runs++;
		h_resp_free(&p);
		tick(0.1); /* a busy background pass, not a tight loop */
	}
	curl_easy_cleanup(c);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* p-quantile of the latencies of one phase over every writer. */
static double quantile(int ph, double q, int *n_out)
{
	double *all = NULL, v;
	int n = 0, i, k;

	for (i = 0; i < NDEV; i++)
		n += writers[i].nlat[ph];
	all = malloc(sizeof *all * (size_t)(n ? n : 1));
	cr_assert(all);
	for (n = 0, i = 0; i < NDEV; i++)
		for (k = 0; k < writers[i].nlat[ph]; k++)
			all[n++] = writers[i].lat[ph][k];
	qsort(all, (size_t)n, sizeof *all, cmp_double);
	v = n ? all[(int)(q * (n - 1))] : 0;
	free(all);
	*n_out = n;
	return v;
}

/*
 * Watches PostgreSQL while the writers run: a backend of the relay waiting on a lock that a
 * compaction statement holds (or queues ahead of it) is a push waiting on compaction. Each
 * sample lists those backends; a backend's run of consecutive samples is one wait, at least
 * as long as the time between its first and last sample.
 */
#define MAXPIDS 64
struct sampler {
	const char *db;
	int *phase;
	long samples, blocked_samples, waits;
	double longest_wait;
	char err[512];
};

static void *sampler_run(void *arg)
{
	struct sampler *s = arg;
	PGconn *c = PQconnectdb(s->db);
	int pids[MAXPIDS], npids = 0, i, j;
	double since[MAXPIDS], last[MAXPIDS];

	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(s->err, sizeof s->err, "sampler: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	/* both phases, so that its own cost weighs on the pushes of both alike */
	while (__atomic_load_n(s->phase, __ATOMIC_SEQ_CST) < 2) {
		PGresult *res = PQexec(c,
			"SELECT a.pid FROM pg_stat_activity a WHERE a.datname = current_database()"
			" AND a.wait_event_type = 'Lock' AND a.query NOT LIKE 'WITH lib AS%'"
			" AND a.query NOT LIKE 'UPDATE libraries SET horizon%'"
			" AND EXISTS (SELECT 1 FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(a.pid))"
			" AND (b.query LIKE 'WITH lib AS%' OR b.query LIKE 'UPDATE libraries SET horizon%'))");
		double now = h_mono();
		int seen[MAXPIDS] = {0};

		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			snprintf(s->err, sizeof s->err, "sampler: %s", PQresultErrorMessage(res));
			PQclear(res);
			break;
		}
		s->samples++;
		if (PQntuples(res))
			s->blocked_samples++;
		for (i = 0; i < PQntuples(res); i++) {
			int pid = atoi(PQgetvalue(res, i, 0));

			for (j = 0; j < npids && pids[j] != pid; j++)
				;
			if (j == npids && npids < MAXPIDS) {
				pids[npids] = pid;
				since[npids] = now;
				s->waits++;
				npids++;
			}
			if (j < MAXPIDS) {
				last[j] = now;
				seen[j] = 1;
			}
		}
		/* waits that ended: their length, and the slot freed */
		for (j = 0; j < npids; j++)
			if (!seen[j]) {
				if (last[j] - since[j] > s->longest_wait)
					s->longest_wait = last[j] - since[j];
				pids[j] = pids[npids - 1];
				since[j] = since[npids - 1];
				last[j] = last[npids - 1];
				seen[j] = seen[npids - 1];
				npids--;
				j--;
			}
		PQclear(res);
		tick(0.002);
	}
	for (j = 0; j < npids; j++)
		if (last[j] - since[j] > s->longest_wait)
			s->longest_wait = last[j] - since[j];
	PQfinish(c);
	return NULL;
}

Test(compact, four_devices_push_and_pull_while_compacting)
{
	struct relay r;
	struct lib l;
	struct dev first;
	struct compactor k = {0};
	struct sampler smp = {0};
	pthread_t th[NDEV], kth, sth;
	int phase = 0, i, j, n0, n1;
	long long missing = 0, dups = 0, expected = 0;
	double p50_0, p99_0, p50_1, p99_1, t_end;
	/* each writer pushes and pulls as fast as the relay answers: above the default rate limit */
	static const char *const env[] = {"SYNCRELAY_RATE_PER_S=100000", "SYNCRELAY_RATE_BURST=100000", NULL};

	h_relay_start(&r, NULL, env);
	h_fixture(&r, &l, &first, NULL);
	for (i = 0; i < NDEV; i++) {
		struct writer *w = &writers[i];

		memset(w, 0, sizeof *w);
		w->r = &r;
		w->l = &l;
		w->index = i;
		w->phase = &phase;
		w->base_ms = h_now_ms() - 60000;
		if (i == 0)
			w->dev = first;
		else
			h_device(&r, &l, &w->dev);
	}
	for (i = 0; i < NDEV; i++)
		for (j = 0; j < NDEV; j++)
			cr_assert((writers[i].seen[j] = calloc((size_t)MAXPUSH * PERPUSH, 1)) != NULL);
	k.r = &r;
	k.l = &l;
	k.phase = &phase;
	smp.db = r.db;
	smp.phase = &phase;
	pthread_create(&sth, NULL, sampler_run, &smp);
	for (i = 0; i < NDEV; i++)
		pthread_create(&th[i], NULL, writer_run, &writers[i]);
	tick(PHASE_S); /* the length of a phase, not a synchronisation */
	__atomic_store_n(&phase, 1, __ATOMIC_SEQ_CST);
	pthread_create(&kth, NULL, compactor_run, &k);
	tick(PHASE_S);
	__atomic_store_n(&phase, 2, __ATOMIC_SEQ_CST);
	t_end = h_mono() + 120;
	pthread_join(kth, NULL);
	pthread_join(sth, NULL);
	cr_assert(!smp.err[0], "%s", smp.err);
	for (i = 0; i < NDEV; i++)
		pthread_join(th[i], NULL);
	cr_assert(h_mono() < t_end, "the writers took over 120 s to finish");
	/* every push answered: each writer pulls to head once more */
	for (i = 0; i < NDEV; i++) {
		CURL *c = curl_easy_init();

		if (!writers[i].err[0])
			writer_pull(&writers[i], c);
		curl_easy_cleanup(c);
	}
	cr_assert(!k.err[0], "compactor: %s", k.err);
	for (i = 0; i < NDEV; i++)
		cr_assert(!writers[i].err[0], "writer %d: %s (410s: %d)", i, writers[i].err, writers[i].pulled_410);

	/* every writer pulled every other writer's change exactly once */
	for (i = 0; i < NDEV; i++)
		for (j = 0; j < NDEV; j++) {
			int c;

			if (i == j)
				continue;
			for (c = 0; c < writers[j].counter; c++) {
				expected++;
				missing += writers[i].seen[j][c] == 0;
				dups += writers[i].seen[j][c] > 1;
			}
			for (; c < MAXPUSH * PERPUSH; c++)
				cr_assert(!writers[i].seen[j][c], "writer %d pulled change %d of writer %d, never pushed", i,
					  c, j);
		}
	cr_assert(missing == 0 && dups == 0, "of %lld changes pulled by the writers, %lld missing, %lld duplicated",
		  expected, missing, dups);
	cr_assert(k.removed > 0 && k.purged > 0 && k.runs > 1,
		  "compaction removed %lld changes and purged %lld tombstones in %lld runs while the writers ran",
		  k.removed, k.purged, k.runs);
	/* the relay's state is each record's last version: live where the last round upserted */
	{
		long long live, tombs, want = 0;

		for (i = 0; i < NDEV; i++)
			want += NREC + (writers[i].rounds ? NCHURN : 0);
		backfill_matches(&r, &l, &first, &live, &tombs);
		cr_assert(live == want, "%lld live records after the run, expected %lld", live, want);
	}

	p50_0 = quantile(0, 0.5, &n0);
	p99_0 = quantile(0, 0.99, &n0);
	p50_1 = quantile(1, 0.5, &n1);
	p99_1 = quantile(1, 0.99, &n1);
	fprintf(stderr,
		"compact: push latency without compaction: %d pushes, p50 %.1f ms, p99 %.1f ms; with compaction"
		" (%lld runs, %lld changes removed): %d pushes, p50 %.1f ms, p99 %.1f ms; %lld changes pulled\n",
		n0, p50_0 * 1e3, p99_0 * 1e3, k.runs, k.removed, n1, p50_1 * 1e3, p99_1 * 1e3, expected);
	fprintf(stderr, "compact: %lld tombstones purged; longest horizon update %.2f ms, longest window removal %.2f ms\n",
		k.purged, h_metric(&r, "syncrelay_compaction_mark_seconds_max") * 1e3,
		h_metric(&r, "syncrelay_compaction_delete_seconds_max") * 1e3);
	fprintf(stderr, "compact: pg_stat_activity sampled %ld times (both phases): a relay backend waited on"
		" compaction in %ld samples (%ld waits), the longest wait seen spans %.1f ms\n",
		smp.samples, smp.blocked_samples, smp.waits, smp.longest_wait * 1e3);
	cr_assert(smp.samples > 100, "the sampler took only %ld samples", smp.samples);
	cr_assert(smp.longest_wait < 1.0, "a push waited %.0f ms on compaction", smp.longest_wait * 1e3);
	cr_assert(n0 > 20 && n1 > 20, "too few pushes to measure: %d and %d", n0, n1);
	/* a shared 2-core machine is noisy: the bound catches pushes stalled behind compaction
	 * (a lock held across windows, a wait per window), not scheduling jitter */
	cr_assert(p99_1 < p99_0 * 4 + 0.100, "push p99 %.1f ms with compaction against %.1f ms without", p99_1 * 1e3,
		  p99_0 * 1e3);
	for (i = 0; i < NDEV; i++)
		for (j = 0; j < NDEV; j++)
			free(writers[i].seen[j]);
	h_relay_stop(&r);
}

/* ---- two relays on one database ---- */

static void await_metric(struct relay *r, const char *name, double want, double timeout)
{
	double t0 = h_mono(), v;

	for (;;) {
		v = h_metric_or(r, name, 0);
		if (v >= want)
			return;
		cr_assert(h_mono() - t0 < timeout, "waited %.0f s for %s >= %.0f on %s; last %.0f (log %s)", timeout, name,
			  want, r->url, v, r->log);
		tick(0.05);
	}
}

Test(compact, two_relays_compact_one_at_a_time)
{
	const char *env[] = {"SYNCRELAY_RETENTION=1", "SYNCRELAY_COMPACT_INTERVAL=1", NULL};
	struct relay a, b;
	struct lib l;
	struct dev d1;
	struct h_chb c = {0};
	uint64_t ctr = 0;
	double t0;
	PGconn *db;
	int v;

	h_relay_start(&a, NULL, env);
	h_relay_start(&b, a.db, env);
	db = sql_open(&a);
	/* the test holds the pass lock: neither relay may compact */
	sql_ok(db, "SELECT pg_advisory_lock(" PASS_KEY ", 0)", NULL);
	h_fixture(&a, &l, &d1, NULL);
	for (v = 1; v <= 3; v++)
		chb_range(&c, &d1, h_now_ms() - 60000, &ctr, 0, 100, v, 0);
	h_push_ok(&b, &l, &d1, h_chb_end(&c), 300, 0);
	await_aged(&a, &l, 1, 200);
	await_metric(&a, "syncrelay_compaction_passes_skipped_total", 2, 20);
	await_metric(&b, "syncrelay_compaction_passes_skipped_total", 2, 20);
	cr_assert_eq(h_metric(&a, "syncrelay_compaction_changes_removed_total"), 0);
	cr_assert_eq(h_metric(&b, "syncrelay_compaction_changes_removed_total"), 0);
	cr_assert_eq(log_size(db, &l), 300, "a relay compacted while another session held the pass lock");

	/* a library being compacted elsewhere: the operator's request is told so */
	sql_ok(db, "SELECT pg_advisory_lock(" LIB_KEY ", hashtext($1))", l.id);
	h_http_problem(&b, "POST", h_lp(&l, "/compact"), H_ADMIN, "{\"retention\":1}", 409, "compaction-running");
	sql_ok(db, "SELECT pg_advisory_unlock(" LIB_KEY ", hashtext($1))", l.id);

	/* released: one of them compacts, and the work is done once */
	sql_ok(db, "SELECT pg_advisory_unlock(" PASS_KEY ", 0)", NULL);
	t0 = h_mono();
	while (log_size(db, &l) != 100) {
		cr_assert(h_mono() - t0 < 20, "waited 20 s for a background pass; the log holds %lld changes (logs %s %s)",
			  log_size(db, &l), a.log, b.log);
		tick(0.05);
	}
	cr_assert_eq(h_metric(&a, "syncrelay_compaction_changes_removed_total") +
			     h_metric(&b, "syncrelay_compaction_changes_removed_total"),
		     200);
	cr_assert(h_metric(&a, "syncrelay_compaction_passes_total") + h_metric(&b, "syncrelay_compaction_passes_total") >= 1);
	PQfinish(db);
	h_relay_stop(&b);
	h_relay_stop(&a);
}
