/* The SQLite replica store: schema, cached prepared statements, WAL and busy timeout. */
#include "store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	Q_META_GET, Q_META_SET, Q_REC_GET, Q_REC_HEAD, Q_REC_PUT, Q_REC_DEL, Q_OUT_ADD, Q_OUT_PEEK, Q_OUT_DEL,
	Q_OUT_COUNT, Q_OUT_REJECT, Q_OUT_REJECT_DEL, Q_REJ_COUNT, Q_REJ_RETRY, Q_REJ_DROP, Q_REJ_FORGET_PEND, Q_REJ_FORGET, Q_REJ_HAS, Q_OUT_HAS, Q_PEND_CLEAR, Q_PEND_ADD, Q_PEND_FIND, Q_PEND_DEL, Q_LIVE, Q_PEND_ANY, Q_COUNT
};

static const char *const sqls[Q_COUNT] = {
	[Q_META_GET] = "SELECT value FROM meta WHERE key = ?1",
	[Q_META_SET] = "INSERT INTO meta (key, value) VALUES (?1, ?2)"
		       " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[Q_REC_GET] = "SELECT owner, hlc, deleted, data FROM records WHERE model = ?1 AND record_id = ?2",
	[Q_REC_HEAD] = "SELECT owner, hlc FROM records WHERE model = ?1 AND record_id = ?2",
	[Q_REC_PUT] = "INSERT INTO records (model, record_id, owner, hlc, deleted, data)"
		      " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (model, record_id) DO UPDATE"
		      " SET owner = excluded.owner, hlc = excluded.hlc, deleted = excluded.deleted,"
		      " data = excluded.data",
	[Q_REC_DEL] = "DELETE FROM records WHERE model = ?1 AND record_id = ?2",
	[Q_OUT_ADD] = "INSERT INTO outbox (hlc, model, record_id, op, data) VALUES (?1, ?2, ?3, ?4, ?5)",
	[Q_OUT_PEEK] = "SELECT id, hlc, model, record_id, op, data FROM outbox ORDER BY id LIMIT ?1",
	[Q_OUT_DEL] = "DELETE FROM outbox WHERE id <= ?1",
	[Q_OUT_COUNT] = "SELECT count(*) FROM outbox",
	[Q_OUT_REJECT] = "INSERT INTO rejected (hlc, model, record_id, op, data, status, code, detail)"
			 " SELECT hlc, model, record_id, op, data, ?2, ?3, ?4 FROM outbox WHERE id = ?1",
	[Q_OUT_REJECT_DEL] = "DELETE FROM outbox WHERE id = ?1",
	[Q_REJ_COUNT] = "SELECT count(*) FROM rejected",
	/* ?1 = 0: all of them */
	[Q_REJ_RETRY] = "INSERT INTO outbox (hlc, model, record_id, op, data)"
			" SELECT hlc, model, record_id, op, data FROM rejected WHERE ?1 = 0 OR id = ?1 ORDER BY id",
	[Q_REJ_DROP] = "DELETE FROM rejected WHERE ?1 = 0 OR id = ?1",
	/* a replica row still showing a dropped change gives way: repair brings the relay's back */
	[Q_REJ_FORGET_PEND] = "DELETE FROM pending_refs WHERE (model, record_id) IN"
			      " (SELECT r.model, r.record_id FROM rejected j JOIN records r ON r.model = j.model"
			      " AND r.record_id = j.record_id AND r.hlc = j.hlc WHERE ?1 = 0 OR j.id = ?1)",
	[Q_REJ_FORGET] = "DELETE FROM records WHERE (model, record_id, hlc) IN"
			 " (SELECT model, record_id, hlc FROM rejected WHERE ?1 = 0 OR id = ?1)",
	[Q_REJ_HAS] = "SELECT 1 FROM rejected WHERE model = ?1 AND hlc = ?2 LIMIT 1",
	[Q_OUT_HAS] = "SELECT 1 FROM outbox WHERE model = ?1 AND record_id = ?2 LIMIT 1",
	[Q_PEND_CLEAR] = "DELETE FROM pending_refs WHERE model = ?1 AND record_id = ?2",
	[Q_PEND_ADD] = "INSERT OR REPLACE INTO pending_refs (model, record_id, field, target_model, target_id)"
		       " VALUES (?1, ?2, ?3, ?4, ?5)",
	[Q_PEND_FIND] = "SELECT model, record_id, field FROM pending_refs"
			" WHERE target_model = ?1 AND target_id = ?2",
	[Q_PEND_DEL] = "DELETE FROM pending_refs WHERE target_model = ?1 AND target_id = ?2",
	[Q_LIVE] = "SELECT 1 FROM records WHERE model = ?1 AND record_id = ?2 AND deleted = 0",
	[Q_PEND_ANY] = "SELECT 1 FROM pending_refs LIMIT 1",
};

static const char *const schema_sql =
	"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);"
	"CREATE TABLE IF NOT EXISTS records (model TEXT NOT NULL, record_id TEXT NOT NULL,"
	" owner TEXT NOT NULL, hlc TEXT NOT NULL, deleted INTEGER NOT NULL, data TEXT,"
	" PRIMARY KEY (model, record_id));"
	"CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, hlc TEXT NOT NULL,"
	" model TEXT NOT NULL, record_id TEXT NOT NULL, op INTEGER NOT NULL, data TEXT);"
	"CREATE INDEX IF NOT EXISTS outbox_record ON outbox (model, record_id);"
	"CREATE TABLE IF NOT EXISTS rejected (id INTEGER PRIMARY KEY AUTOINCREMENT, hlc TEXT NOT NULL,"
	" model TEXT NOT NULL, record_id TEXT NOT NULL, op INTEGER NOT NULL, data TEXT, status INTEGER,"
	" code TEXT, detail TEXT);"
	"CREATE TABLE IF NOT EXISTS pending_refs (model TEXT NOT NULL, record_id TEXT NOT NULL,"
	" field TEXT NOT NULL, target_model TEXT NOT NULL, target_id TEXT NOT NULL,"
	" PRIMARY KEY (model, record_id, field));"
	"CREATE INDEX IF NOT EXISTS pending_target ON pending_refs (target_model, target_id);";

struct store {
	sqlite3 *db;
	sqlite3_stmt *st[Q_COUNT];
	/* inside a write transaction: -1 not known, 0 no pending reference exists (none can
	 * appear but ours while we hold the write lock), 1 some may */
	int pending;
};

const char *store_errmsg(struct store *s)
{
	return sqlite3_errmsg(s->db);
}

int store_open(struct store **out, const char *path, char *err, size_t errlen)
{
	struct store *s = calloc(1, sizeof *s);
	char *msg = NULL;
	int i;

	*out = NULL;
	if (!s)
		return -1;
	s->pending = -1;
	/* the store holds the device token: create it readable by its owner only (SQLite gives
	 * its -wal and -shm files the same mode) */
	if (strcmp(path, ":memory:") && (i = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0)
		close(i);
	/* one connection per handle, used by one thread at a time (a handle is not shared between
	 * threads, and the prefetch thread never touches the store): no per-call mutex */
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "could not open store \"%s\": %s", path,
			 s->db ? sqlite3_errmsg(s->db) : "out of memory");
		store_close(s);
		return -1;
	}
	/* several processes may share a store: readers never refused, writers wait their turn */
	sqlite3_busy_timeout(s->db, 30000);
	if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
				  " PRAGMA cache_size=-65536; PRAGMA mmap_size=268435456;", NULL, NULL, &msg) ||
	    sqlite3_exec(s->db, schema_sql, NULL, NULL, &msg)) {
		snprintf(err, errlen, "could not prepare store \"%s\": %s", path, msg ? msg : "?");
		sqlite3_free(msg);
		store_close(s);
		return -1;
	}
	for (i = 0; i < Q_COUNT; i++)
		if (sqlite3_prepare_v3(s->db, sqls[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL)) {
			snprintf(err, errlen, "could not prepare store statement: %s", sqlite3_errmsg(s->db));
			store_close(s);
			return -1;
		}
	*out = s;
	return 0;
}

void store_close(struct store *s)
{
	int i;

	if (!s)
		return;
	for (i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	free(s);
}

static int exec(struct store *s, const char *sql)
{
	return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int store_begin(struct store *s)
{
	s->pending = -1;
	return exec(s, "BEGIN IMMEDIATE");
}

int store_commit(struct store *s)
{
	s->pending = -1;
	return exec(s, "COMMIT");
}

void store_rollback(struct store *s)
{
	s->pending = -1;
	if (!sqlite3_get_autocommit(s->db))
		exec(s, "ROLLBACK");
}

/* Binds text parameters (NULL binds SQL NULL) to a cached statement after resetting it. */
static sqlite3_stmt *bind(struct store *s, int q, int n, const char *const *p)
{
	sqlite3_stmt *st = s->st[q];
	int i;

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	for (i = 0; i < n; i++)
		if (p[i])
			sqlite3_bind_text(st, i + 1, p[i], -1, SQLITE_STATIC);
	return st;
}

static int run(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static char *dup_col(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return t ? strdup((const char *)t) : NULL;
}

int store_meta_get(struct store *s, const char *key, char **out)
{
	const char *p[1] = {key};
	sqlite3_stmt *st = bind(s, Q_META_GET, 1, p);
	int rc = sqlite3_step(st);

	*out = rc == SQLITE_ROW ? dup_col(st, 0) : NULL;
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int store_meta_set(struct store *s, const char *key, const char *value)
{
	const char *p[2] = {key, value};

	return run(bind(s, Q_META_SET, 2, p));
}

int64_t store_meta_int(struct store *s, const char *key, int64_t def)
{
	char *v = NULL;
	int64_t r = def;

	if (store_meta_get(s, key, &v) == 0 && v)
		r = strtoll(v, NULL, 10);
	free(v);
	return r;
}

int store_meta_set_int(struct store *s, const char *key, int64_t v)
{
	char num[24];

	snprintf(num, sizeof num, "%lld", (long long)v);
	return store_meta_set(s, key, num);
}

void srec_clear(struct srec *r)
{
	if (r) {
		free(r->data);
		r->data = NULL;
	}
}

static void fill_rec(struct srec *r, sqlite3_stmt *st, int off)
{
	const unsigned char *t;

	snprintf(r->owner, sizeof r->owner, "%s", (t = sqlite3_column_text(st, off)) ? (const char *)t : "");
	snprintf(r->hlc, sizeof r->hlc, "%s", (t = sqlite3_column_text(st, off + 1)) ? (const char *)t : "");
	r->deleted = sqlite3_column_int(st, off + 2);
	r->data = dup_col(st, off + 3);
}

int store_record_get(struct store *s, const char *model, const char *record_id, struct srec *out)
{
	const char *p[2] = {model, record_id};
	sqlite3_stmt *st = bind(s, Q_REC_GET, 2, p);
	int rc = sqlite3_step(st), found = 0;

	memset(out, 0, sizeof *out);
	if (rc == SQLITE_ROW) {
		snprintf(out->model, sizeof out->model, "%s", model);
		snprintf(out->record_id, sizeof out->record_id, "%s", record_id);
		fill_rec(out, st, 0);
		found = 1;
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? found : -1;
}

int store_record_head(struct store *s, const char *model, const char *record_id, char owner[SR_UUID_LEN + 1],
		      char hlc[SR_HLC_LEN + 1])
{
	const char *p[2] = {model, record_id};
	sqlite3_stmt *st = bind(s, Q_REC_HEAD, 2, p);
	int rc = sqlite3_step(st), found = rc == SQLITE_ROW;
	const unsigned char *t;

	if (found) {
		snprintf(owner, SR_UUID_LEN + 1, "%s", (t = sqlite3_column_text(st, 0)) ? (const char *)t : "");
		snprintf(hlc, SR_HLC_LEN + 1, "%s", (t = sqlite3_column_text(st, 1)) ? (const char *)t : "");
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? found : -1;
}

int store_record_put(struct store *s, const struct srec *r)
{
	const char *p[6] = {r->model, r->record_id, r->owner, r->hlc, r->deleted ? "1" : "0", r->data};

	return run(bind(s, Q_REC_PUT, 6, p));
}

int store_record_remove(struct store *s, const char *model, const char *record_id)
{
	const char *p[2] = {model, record_id};

	return run(bind(s, Q_REC_DEL, 2, p));
}

int store_records_each(struct store *s, const char *model, const char *owner, int bucket,
		       int (*fn)(void *arg, const struct srec *r), void *arg)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(s->db,
				"SELECT model, record_id, owner, hlc, deleted, data FROM records"
				" WHERE (?1 IS NULL OR model = ?1) AND (?2 IS NULL OR owner = ?2)"
				" ORDER BY model, record_id",
				-1, &st, NULL);
	if (rc)
		return -1;
	if (model)
		sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
	if (owner)
		sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct srec r = {0};
		const unsigned char *m = sqlite3_column_text(st, 0), *id = sqlite3_column_text(st, 1);

		snprintf(r.model, sizeof r.model, "%s", m ? (const char *)m : "");
		snprintf(r.record_id, sizeof r.record_id, "%s", id ? (const char *)id : "");
		if (bucket >= 0 && (int)sr_bucket(r.record_id) != bucket)
			continue;
		fill_rec(&r, st, 2);
		rc = fn(arg, &r);
		srec_clear(&r);
		if (rc) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_outbox_add(struct store *s, const char *hlc, const char *model, const char *record_id,
		     int op, const char *data)
{
	const char *p[5] = {hlc, model, record_id, op ? "1" : "0", data};

	return run(bind(s, Q_OUT_ADD, 5, p));
}

int store_outbox_peek(struct store *s, int limit, sr_change *ch, int64_t *ids, int *n)
{
	sqlite3_stmt *st = s->st[Q_OUT_PEEK];
	int rc;

	sqlite3_reset(st);
	sqlite3_bind_int(st, 1, limit);
	*n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		sr_change *c = &ch[*n];
		const unsigned char *t;

		memset(c, 0, sizeof *c);
		ids[*n] = sqlite3_column_int64(st, 0);
		snprintf(c->hlc, sizeof c->hlc, "%s", (t = sqlite3_column_text(st, 1)) ? (const char *)t : "");
		snprintf(c->model, sizeof c->model, "%s", (t = sqlite3_column_text(st, 2)) ? (const char *)t : "");
		snprintf(c->record_id, sizeof c->record_id, "%s",
			 (t = sqlite3_column_text(st, 3)) ? (const char *)t : "");
		c->op = sqlite3_column_int(st, 4) ? SR_OP_DELETE : SR_OP_UPSERT;
		c->data = dup_col(st, 5);
		(*n)++;
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_outbox_reject(struct store *s, int64_t id, long status, const char *code, const char *detail)
{
	sqlite3_stmt *st = s->st[Q_OUT_REJECT];

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, status);
	sqlite3_bind_text(st, 3, code ? code : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, detail ? detail : "", -1, SQLITE_TRANSIENT);
	if (run(st))
		return -1;
	st = s->st[Q_OUT_REJECT_DEL];
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, id);
	return run(st);
}

/* A one-row count statement's value, or -1. */
static int64_t count_of(struct store *s, int q)
{
	sqlite3_stmt *st = s->st[q];
	int64_t n = -1;

	sqlite3_reset(st);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return n;
}

/* 1 when the (model, record_id) query q finds a row, 0 when not, -1 on error. */
static int exists(struct store *s, int q, const char *model, const char *record_id)
{
	const char *p[2] = {model, record_id};
	sqlite3_stmt *st = bind(s, q, 2, p);
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int64_t store_rejected_count(struct store *s)
{
	return count_of(s, Q_REJ_COUNT);
}

/* Runs the rejected-id statement q with id (0: all); *n set to the rows it changed. */
static int rejected_run(struct store *s, int q, int64_t id, int *n)
{
	sqlite3_stmt *st = s->st[q];

	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, id);
	if (run(st))
		return -1;
	*n = sqlite3_changes(s->db);
	return 0;
}

int store_rejected_retry(struct store *s, int64_t id, int *n)
{
	int dropped;

	return rejected_run(s, Q_REJ_RETRY, id, n) || rejected_run(s, Q_REJ_DROP, id, &dropped) ? -1 : 0;
}

int store_rejected_has(struct store *s, const char *model, const char *hlc)
{
	return exists(s, Q_REJ_HAS, model, hlc);
}

int store_rejected_drop(struct store *s, int64_t id, int *n)
{
	int forgot;

	return rejected_run(s, Q_REJ_FORGET_PEND, id, &forgot) || rejected_run(s, Q_REJ_FORGET, id, &forgot) ||
			       rejected_run(s, Q_REJ_DROP, id, n)
		       ? -1
		       : 0;
}

int store_outbox_has(struct store *s, const char *model, const char *record_id)
{
	return exists(s, Q_OUT_HAS, model, record_id);
}

int store_outbox_remove_upto(struct store *s, int64_t max_id)
{
	sqlite3_stmt *st = s->st[Q_OUT_DEL];

	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, max_id);
	return run(st);
}

int64_t store_outbox_count(struct store *s)
{
	return count_of(s, Q_OUT_COUNT);
}

int store_pending_clear(struct store *s, const char *model, const char *record_id)
{
	const char *p[2] = {model, record_id};

	return run(bind(s, Q_PEND_CLEAR, 2, p));
}

int store_pending_add(struct store *s, const char *model, const char *record_id, const char *field,
		      const char *target_model, const char *target_id)
{
	const char *p[5] = {model, record_id, field, target_model, target_id};

	s->pending = 1;
	return run(bind(s, Q_PEND_ADD, 5, p));
}

/* 1 when pending_refs has a row, 0 when not, -1 on error. */
static int exists_any(struct store *s)
{
	sqlite3_stmt *st = s->st[Q_PEND_ANY];
	int rc;

	sqlite3_reset(st);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int store_pending_resolve(struct store *s, const char *target_model, const char *target_id,
			  void (*fn)(void *arg, const char *model, const char *record_id,
				     const char *field, const char *target_id),
			  void *arg)
{
	const char *p[2] = {target_model, target_id};
	sqlite3_stmt *st;
	int rc, n = 0;

	/* a backfill or a page of changes mostly finds no pending reference at all: asked once
	 * per write transaction, not once per record */
	if (sqlite3_get_autocommit(s->db))
		s->pending = -1;
	else if (s->pending < 0 && (s->pending = exists_any(s)) < 0)
		return -1;
	if (s->pending == 0)
		return 0;
	st = bind(s, Q_PEND_FIND, 2, p);

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		n++;
		if (fn)
			fn(arg, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
			   (const char *)sqlite3_column_text(st, 2), target_id);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return -1;
	/* most arrivals resolve nothing: no delete for them */
	return n ? run(bind(s, Q_PEND_DEL, 2, p)) : 0;
}

int store_live(struct store *s, const char *model, const char *record_id)
{
	return exists(s, Q_LIVE, model, record_id);
}

int store_query(struct store *s, const char *sql, const char *const *params, int nparams,
		int (*fn)(void *arg, int ncol, const char *const *vals), void *arg)
{
	sqlite3_stmt *st = NULL;
	const char *vals[16];
	int rc, i, ncol;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL))
		return -1;
	for (i = 0; i < nparams; i++)
		if (params[i])
			sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC);
	ncol = sqlite3_column_count(st);
	if (ncol > 16)
		ncol = 16;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (i = 0; i < ncol; i++)
			vals[i] = (const char *)sqlite3_column_text(st, i);
		if (fn(arg, ncol, vals)) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}
