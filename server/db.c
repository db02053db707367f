/*
 * Database pool and the statement table. Every connection prepares every statement
 * when it is opened; handlers refer to statements by name (enum stmt) and bind every
 * value as a parameter.
 */
#include "db.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

static const struct {
	const char *name;
	int nparams;
	const char *sql;
} stmts[ST_COUNT] = {
	[ST_TOKEN_LOOKUP] = {"token_lookup", 1,
		"SELECT kind, library_id::text, coalesce(device_id::text, '') FROM tokens"
		" WHERE token_hash = $1 AND NOT revoked"},
	[ST_DEVICE_SEEN] = {"device_seen", 2,
		"UPDATE devices SET last_seen = now() WHERE library_id = $1 AND device_id = $2"
		" AND (last_seen IS NULL OR last_seen < now() - interval '2 seconds')"},
	[ST_LIB_INSERT] = {"lib_insert", 2,
		"INSERT INTO libraries (library_id, name) VALUES ($1, $2)"},
	[ST_TOKEN_INSERT] = {"token_insert", 4,
		"INSERT INTO tokens (token_hash, kind, library_id, device_id) VALUES ($1, $2, $3, $4)"},
	[ST_LIB_GET] = {"lib_get", 1,
		"SELECT name, head, horizon, schema_version, schema_models, horizon_hlc, purged_before"
		" FROM libraries WHERE library_id = $1"},
	[ST_LIB_LOCK] = {"lib_lock", 1,
		"SELECT name, head, horizon, schema_version, schema_models, horizon_hlc, purged_before"
		" FROM libraries WHERE library_id = $1 FOR UPDATE"},
	[ST_DEVICE_INSERT] = {"device_insert", 3,
		"INSERT INTO devices (library_id, device_id, name) VALUES ($1, $2, $3)"
		" ON CONFLICT DO NOTHING RETURNING device_id"},
	[ST_DEVICE_LIST] = {"device_list", 1,
		"SELECT d.device_id::text, d.name,"
		" to_char(d.enrolled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
		" to_char(d.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
		" d.acked_seq, greatest(l.head - d.acked_seq, 0), d.revoked_at IS NOT NULL"
		" FROM devices d JOIN libraries l ON l.library_id = d.library_id"
		" WHERE d.library_id = $1 ORDER BY d.enrolled_at, d.device_id"},
	/* no coalesce(revoked_at, now()): Citus refuses non-immutable functions in COALESCE; a
	 * second revoke keeps the first time, and ST_DEVICE_GET tells it from an unknown device */
	[ST_DEVICE_REVOKE] = {"device_revoke", 2,
		"UPDATE devices SET revoked_at = now()"
		" WHERE library_id = $1 AND device_id = $2 AND revoked_at IS NULL RETURNING device_id"},
	[ST_DEVICE_GET] = {"device_get", 2,
		"SELECT revoked_at IS NOT NULL FROM devices WHERE library_id = $1 AND device_id = $2"},
	[ST_TOKEN_REVOKE_DEVICE] = {"token_revoke_device", 2,
		"UPDATE tokens SET revoked = true WHERE library_id = $1 AND device_id = $2 AND kind = 'device'"},
	[ST_TOKEN_REVOKE_JOIN] = {"token_revoke_join", 1,
		"UPDATE tokens SET revoked = true WHERE library_id = $1 AND kind = 'join' AND NOT revoked"},
	[ST_SCHEMA_SET] = {"schema_set", 3,
		"UPDATE libraries SET schema_version = $2, schema_models = $3 WHERE library_id = $1"},
	/* One unique-index probe per key, whatever the statistics: as plain joins with unnest,
	 * the generic plan (10 keys guessed) and a fresh library without statistics both chose a
	 * hash join over every row of the library (118 ms a batch at 200k records). A LATERAL
	 * subquery with OFFSET 0 is not pulled up into the join, so each key is its own probe of
	 * the primary key or changes_hlc; on Citus the worker plans the same shape. */
	[ST_PUSH_DUPS] = {"push_dups", 2,
		"SELECT c.hlc, c.model, c.record_id, c.op, c.data FROM unnest($2::text[]) AS k(hlc),"
		" LATERAL (SELECT x.hlc, x.model, x.record_id, x.op, x.data FROM changes x"
		" WHERE x.library_id = $1 AND x.hlc = k.hlc OFFSET 0) c"},
	[ST_PUSH_CURRENT] = {"push_current", 3,
		"SELECT r.model, r.record_id, r.owner, r.hlc, r.deleted, r.data"
		" FROM unnest($3::text[]) AS k(record_id),"
		" LATERAL (SELECT x.model, x.record_id, x.owner, x.hlc, x.deleted, x.data FROM records x"
		" WHERE x.library_id = $1 AND x.model = $2 AND x.record_id = k.record_id OFFSET 0) r"},
	[ST_PUSH_CHANGES] = {"push_changes", 8,
		"INSERT INTO changes (library_id, seq, hlc, device_id, model, record_id, op, data)"
		" SELECT $1, $2::bigint + t.o, t.h, $3, t.m, t.r, t.op, t.d"
		" FROM unnest($4::text[], $5::text[], $6::text[], $7::smallint[], $8::text[])"
		" WITH ORDINALITY AS t(h, m, r, op, d, o)"},
	/* records the batch creates: a plain insert (the library lock keeps other pushes out, and
	 * nothing else creates records), a quarter cheaper than the upsert's speculative insert */
	[ST_PUSH_RECORDS_NEW] = {"push_records_new", 8,
		"INSERT INTO records (library_id, model, record_id, owner, bucket, hlc, deleted, data)"
		" SELECT $1, t.m, t.r, t.ow, t.b, t.h, t.del, t.d"
		" FROM unnest($2::text[], $3::text[], $4::text[], $5::smallint[], $6::text[],"
		" $7::boolean[], $8::text[]) AS t(m, r, ow, b, h, del, d)"},
	[ST_PUSH_RECORDS] = {"push_records", 8,
		"INSERT INTO records (library_id, model, record_id, owner, bucket, hlc, deleted, data)"
		" SELECT $1, t.m, t.r, t.ow, t.b, t.h, t.del, t.d"
		" FROM unnest($2::text[], $3::text[], $4::text[], $5::smallint[], $6::text[],"
		" $7::boolean[], $8::text[]) AS t(m, r, ow, b, h, del, d)"
		" ON CONFLICT (library_id, model, record_id) DO UPDATE"
		" SET hlc = EXCLUDED.hlc, deleted = EXCLUDED.deleted, data = EXCLUDED.data"},
	[ST_PUSH_SCOPES] = {"push_scopes", 6,
		"INSERT INTO scope_digests AS s (library_id, model, owner, count, hash, watermark)"
		" SELECT $1, t.m, t.o, t.c, t.h, t.w"
		" FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[])"
		" AS t(m, o, c, h, w)"
		" ON CONFLICT (library_id, model, owner) DO UPDATE SET count = s.count + EXCLUDED.count,"
		" hash = s.hash # EXCLUDED.hash, watermark = greatest(s.watermark, EXCLUDED.watermark)"},
	[ST_PUSH_BUCKETS] = {"push_buckets", 6,
		"INSERT INTO bucket_digests AS s (library_id, model, owner, bucket, count, hash)"
		" SELECT $1, t.m, t.o, t.b, t.c, t.h"
		" FROM unnest($2::text[], $3::text[], $4::smallint[], $5::bigint[], $6::bigint[])"
		" AS t(m, o, b, c, h)"
		" ON CONFLICT (library_id, model, owner, bucket) DO UPDATE"
		" SET count = s.count + EXCLUDED.count, hash = s.hash # EXCLUDED.hash"},
	/* head, then the notification in a statement that touches no table: on Citus a statement
	 * on a distributed table runs on the worker holding its shard, where NOTIFY would reach no
	 * relay and would make the worker's PREPARE TRANSACTION fail */
	[ST_PUSH_HEAD] = {"push_head", 2,
		"UPDATE libraries SET head = $2 WHERE library_id = $1"},
	[ST_PUSH_NOTIFY] = {"push_notify", 1, "SELECT pg_notify('syncrelay', $1)"},
	[ST_PULL] = {"pull", 4,
		/* from the cursor's own seq: its row proves the history the device saw is still here */
		"SELECT seq, hlc, device_id::text, model, record_id, op, data FROM changes"
		" WHERE library_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4"},
	[ST_CHANGE_AT] = {"change_at", 2,
		"SELECT hlc FROM changes WHERE library_id = $1 AND seq = $2"},
	[ST_LIB_INFO] = {"lib_info", 1,
		"SELECT l.name, l.head, l.horizon, l.schema_version, l.purged_before,"
		" coalesce(c.hlc, CASE WHEN l.head = l.horizon THEN l.horizon_hlc END)"
		" FROM libraries l LEFT JOIN changes c ON c.library_id = l.library_id AND c.seq = l.head"
		" WHERE l.library_id = $1"},
	[ST_ACK] = {"ack", 3,
		"UPDATE devices SET acked_seq = greatest(acked_seq, $3), last_seen = now()"
		" WHERE library_id = $1 AND device_id = $2 RETURNING acked_seq"},
	[ST_RECORDS_PAGE] = {"records_page", 6,
		"SELECT model, record_id, owner, hlc, deleted, data FROM records"
		" WHERE library_id = $1 AND model = $2 AND ($3 = '' OR owner = $3) AND record_id > $4"
		" AND ($5::boolean OR NOT deleted) ORDER BY record_id LIMIT $6"},
	[ST_RECORDS_BUCKET] = {"records_bucket", 7,
		"SELECT model, record_id, owner, hlc, deleted, data FROM records"
		" WHERE library_id = $1 AND model = $2 AND owner = $3 AND bucket = $4 AND record_id > $5"
		" AND ($6::boolean OR NOT deleted) ORDER BY record_id LIMIT $7"},
	[ST_DIGEST] = {"digest", 3,
		"SELECT model, owner, count, hash, watermark FROM scope_digests"
		" WHERE library_id = $1 AND ($2::text IS NULL OR model = $2)"
		" AND ($3::text IS NULL OR owner = $3) ORDER BY model, owner"},
	[ST_DIGEST_BUCKETS] = {"digest_buckets", 3,
		"SELECT bucket, count, hash FROM bucket_digests"
		" WHERE library_id = $1 AND model = $2 AND owner = $3 AND count > 0 ORDER BY bucket"},
	[ST_READY] = {"ready", 0, "SELECT coalesce(max(version), 0) FROM schema_migrations"},
	/* compaction: one relay per pass, one compaction per library (advisory locks, session-level) */
	[ST_COMPACT_LIBS] = {"compact_libs", 0, "SELECT library_id::text FROM libraries ORDER BY library_id"},
	[ST_COMPACT_PASS_LOCK] = {"compact_pass_lock", 0, "SELECT pg_try_advisory_lock(1397882897, 0)"},
	[ST_COMPACT_PASS_UNLOCK] = {"compact_pass_unlock", 0, "SELECT pg_advisory_unlock(1397882897, 0)"},
	[ST_COMPACT_LOCK] = {"compact_lock", 1, "SELECT pg_try_advisory_lock(1397882896, hashtext($1))"},
	[ST_COMPACT_UNLOCK] = {"compact_unlock", 1, "SELECT pg_advisory_unlock(1397882896, hashtext($1))"},
	[ST_COMPACT_CUTOFF] = {"compact_cutoff", 1,
		"SELECT (now() - make_interval(secs => $1::double precision))::text"},
	/* one window of the log by seq, each change with: old, superseded, the tombstone's own */
	[ST_COMPACT_SCAN] = {"compact_scan", 4,
		"SELECT w.seq, w.hlc, w.accepted_at < $3::timestamptz, r.hlc IS DISTINCT FROM w.hlc,"
		" coalesce(r.deleted AND r.hlc = w.hlc, false)"
		" FROM (SELECT seq, hlc, model, record_id, accepted_at FROM changes"
		" WHERE library_id = $1 AND seq > $2 ORDER BY seq LIMIT $4) w"
		" LEFT JOIN records r ON r.library_id = $1 AND r.model = w.model AND r.record_id = w.record_id"
		" ORDER BY w.seq"},
	/* before anything is removed: the horizon covers it, the purge point lies above it */
	[ST_COMPACT_MARK] = {"compact_mark", 4,
		"WITH free AS (SELECT library_id FROM libraries WHERE library_id = $1 FOR UPDATE SKIP LOCKED)"
		" UPDATE libraries l SET horizon = greatest(l.horizon, $2::bigint),"
		" horizon_hlc = CASE WHEN $2::bigint > l.horizon THEN $3 ELSE l.horizon_hlc END,"
		" purged_before = greatest(l.purged_before, $4::text COLLATE \"C\")"
		" FROM free WHERE l.library_id = free.library_id RETURNING l.horizon"},
	[ST_COMPACT_MARK_WAIT] = {"compact_mark_wait", 4,
		"UPDATE libraries SET horizon = greatest(horizon, $2::bigint),"
		" horizon_hlc = CASE WHEN $2::bigint > horizon THEN $3 ELSE horizon_hlc END,"
		" purged_before = greatest(purged_before, $4::text COLLATE \"C\")"
		" WHERE library_id = $1 RETURNING horizon"},
	/* old changes in (after, upto] under the horizon: superseded ones, and tombstones under the
	 * purge point with their own change; a record row a push holds is skipped, never waited on */
	[ST_COMPACT_DELETE] = {"compact_delete", 4,
		"WITH lib AS (SELECT horizon, purged_before FROM libraries WHERE library_id = $1),"
		" w AS (SELECT c.seq, c.hlc, c.model, c.record_id FROM changes c, lib"
		" WHERE c.library_id = $1 AND c.seq > $2::bigint AND c.seq <= least($3::bigint, lib.horizon)"
		" AND c.accepted_at < $4::timestamptz),"
		" p AS (DELETE FROM records r USING (SELECT r2.model, r2.record_id FROM w, lib, records r2"
		" WHERE r2.library_id = $1 AND r2.model = w.model AND r2.record_id = w.record_id"
		" AND r2.hlc = w.hlc AND r2.deleted AND r2.hlc < lib.purged_before"
		" FOR UPDATE OF r2 SKIP LOCKED) t"
		" WHERE r.library_id = $1 AND r.model = t.model AND r.record_id = t.record_id RETURNING r.hlc),"
		" d AS (DELETE FROM changes c USING w LEFT JOIN records r ON r.library_id = $1"
		" AND r.model = w.model AND r.record_id = w.record_id"
		" WHERE c.library_id = $1 AND c.seq = w.seq"
		" AND (r.hlc IS DISTINCT FROM w.hlc OR w.hlc IN (SELECT hlc FROM p)) RETURNING c.seq)"
		" SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM p)"},
	/* the $1 libraries whose slowest live device is furthest behind head */
	[ST_METRICS_LAG] = {"metrics_lag", 1,
		"SELECT l.library_id, l.head, l.head - coalesce(min(d.acked_seq), l.head) AS lag"
		" FROM libraries l LEFT JOIN devices d ON d.library_id = l.library_id AND d.revoked_at IS NULL"
		" GROUP BY l.library_id, l.head ORDER BY lag DESC, l.library_id LIMIT $1::int"},
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char *conninfo;
	PGconn **conns;
	char *ready; /* 1 when conns[i] is connected, set up and has every statement prepared */
	int *free_stack;
	int nfree;
	int size;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* Our connection settings come first and the operator's conninfo (expanded from dbname)
 * after, so that anything the operator wrote wins. Keepalives notice a peer that vanished
 * without closing (a half-open connection); connect_timeout bounds every (re)connect. */
static const char *const conn_keys[] = {"connect_timeout", "keepalives", "keepalives_idle",
					 "keepalives_interval", "keepalives_count", "dbname", NULL};

PGconn *db_connect_start(const char *conninfo, int async)
{
	char timeout[24];
	const char *vals[] = {timeout, "1", "10", "5", "3", conninfo, NULL};

	snprintf(timeout, sizeof timeout, "%lld", (long long)cfg.db_connect_timeout_s);
	return async ? PQconnectStartParams(conn_keys, vals, 1) : PQconnectdbParams(conn_keys, vals, 1);
}

PGconn *db_connect(const char *conninfo)
{
	PGconn *c = db_connect_start(conninfo, 0);

	if (PQstatus(c) != CONNECTION_OK) {
		log_error("could not connect to the database: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

/* Deadlines for every pooled session: a wait on a row lock or a runaway statement ends
 * as an error the request maps to 503 unavailable, never as a hang. Run before the
 * statement table is prepared, so it is not part of it. */
static int session_setup(PGconn *c)
{
	char lock_ms[24], stmt_ms[24];
	const char *params[2] = {lock_ms, stmt_ms};
	PGresult *res;
	int ok;

	snprintf(lock_ms, sizeof lock_ms, "%lld", (long long)cfg.lock_timeout_ms);
	snprintf(stmt_ms, sizeof stmt_ms, "%lld", (long long)cfg.statement_timeout_ms);
	res = PQexecParams(c, "SELECT set_config('lock_timeout', $1, false),"
			   " set_config('statement_timeout', $2, false)", 2, NULL, params, NULL, NULL, 0);
	ok = db_ok(res);
	if (!ok)
		log_error("could not set the session deadlines: %s", PQresultErrorMessage(res));
	PQclear(res);
	return ok ? 0 : -1;
}

static int prepare_all(PGconn *c)
{
	int i;

	if (session_setup(c))
		return -1;
	for (i = 0; i < ST_COUNT; i++) {
		PGresult *res = PQprepare(c, stmts[i].name, stmts[i].sql, stmts[i].nparams, NULL);
		int ok = PQresultStatus(res) == PGRES_COMMAND_OK;

		if (!ok)
			log_error("could not prepare statement \"%s\": %s", stmts[i].name,
				  PQresultErrorMessage(res));
		PQclear(res);
		if (!ok)
			return -1;
	}
	return 0;
}

PGconn *db_connect_prepared(const char *conninfo)
{
	PGconn *c = db_connect(conninfo);

	if (c && prepare_all(c)) {
		PQfinish(c);
		return NULL;
	}
	return c;
}

static int conn_index(const PGconn *c)
{
	int i;

	for (i = 0; i < pool.size; i++)
		if (pool.conns[i] == c)
			return i;
	return -1;
}

/* 1 when an idle session shows signs of a lost server: libpq already knows it is bad, or its
 * socket is readable although no query is outstanding (an idle backend sends nothing unless
 * it is terminating: the FATAL of a shutdown, or end of file). */
static int conn_suspect(PGconn *c)
{
	struct pollfd pfd = {.events = POLLIN};

	if (PQstatus(c) != CONNECTION_OK)
		return 1;
	pfd.fd = PQsocket(c);
	if (pfd.fd < 0)
		return 1;
	return poll(&pfd, 1, 0) != 0;
}

/* Reconnects conns[i] (bounded by connect_timeout) and prepares again; the slot is marked
 * ready only when all of that worked, so an unprepared session is never handed out. */
static int db_down; /* 1 from a failed renewal to the next good one: one log line per outage */

static int conn_renew(int i)
{
	PGconn *c = pool.conns[i];

	pool.ready[i] = 0;
	PQreset(c);
	if (PQstatus(c) != CONNECTION_OK || prepare_all(c)) {
		if (!__atomic_exchange_n(&db_down, 1, __ATOMIC_SEQ_CST))
			log_warn("database connection lost and could not be re-established: %s", PQerrorMessage(c));
		return -1;
	}
	pool.ready[i] = 1;
	if (__atomic_exchange_n(&db_down, 0, __ATOMIC_SEQ_CST))
		log_info("database connections are being re-established");
	return 0;
}

int db_pool_open(const char *conninfo, int size)
{
	int i;

	pool.conninfo = strdup(conninfo);
	pool.conns = calloc((size_t)size, sizeof *pool.conns);
	pool.ready = calloc((size_t)size, 1);
	pool.free_stack = calloc((size_t)size, sizeof *pool.free_stack);
	if (!pool.conninfo || !pool.conns || !pool.ready || !pool.free_stack)
		return -1;
	pool.size = size;
	for (i = 0; i < size; i++) {
		pool.conns[i] = db_connect(pool.conninfo);
		if (!pool.conns[i] || prepare_all(pool.conns[i]))
			return -1;
		pool.ready[i] = 1;
		pool.free_stack[pool.nfree++] = i;
	}
	return 0;
}

void db_pool_close(void)
{
	int i;

	for (i = 0; i < pool.size; i++)
		PQfinish(pool.conns[i]);
	free(pool.conns);
	free(pool.ready);
	free(pool.free_stack);
	free(pool.conninfo);
	pool.conns = NULL;
	pool.ready = NULL;
	pool.free_stack = NULL;
	pool.conninfo = NULL;
	pool.size = pool.nfree = 0;
}

int db_pool_size(void)
{
	return pool.size;
}

int db_pool_in_use(void)
{
	int n;

	pthread_mutex_lock(&pool.lock);
	n = pool.size - pool.nfree;
	pthread_mutex_unlock(&pool.lock);
	return n;
}

static void put_back(int idx)
{
	pthread_mutex_lock(&pool.lock);
	pool.free_stack[pool.nfree++] = idx;
	pthread_cond_signal(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
}

/* How long db_acquire waited for a free connection: every acquire is counted (a pool that is
 * big enough shows them all in the first bucket), guarded by pool.lock. */
static const double wait_bounds[DB_WAIT_BUCKETS] = {0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};
static struct db_wait_stats waits;

void db_pool_wait_stats(struct db_wait_stats *out)
{
	pthread_mutex_lock(&pool.lock);
	*out = waits;
	pthread_mutex_unlock(&pool.lock);
}

const double *db_pool_wait_bounds(void)
{
	return wait_bounds;
}

PGconn *db_acquire(void)
{
	struct timespec deadline;
	double t0 = now_mono(), waited;
	int idx = -1, b = 0;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	pthread_mutex_lock(&pool.lock);
	while (pool.nfree == 0) {
		if (pthread_cond_timedwait(&pool.cond, &pool.lock, &deadline) == ETIMEDOUT)
			break;
	}
	if (pool.nfree > 0)
		idx = pool.free_stack[--pool.nfree];
	waited = now_mono() - t0;
	while (b < DB_WAIT_BUCKETS && waited > wait_bounds[b])
		b++;
	waits.bucket[b]++;
	waits.count++;
	waits.sum_s += waited;
	if (idx < 0)
		waits.timeouts++;
	pthread_mutex_unlock(&pool.lock);
	if (idx < 0)
		return NULL;
	if ((!pool.ready[idx] || conn_suspect(pool.conns[idx])) && conn_renew(idx)) {
		put_back(idx);
		return NULL;
	}
	return pool.conns[idx];
}

void db_release(PGconn *c)
{
	int idx;

	if (!c)
		return;
	idx = conn_index(c);
	if (idx < 0)
		return;
	if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
		db_rollback(c);
	if (PQstatus(c) != CONNECTION_OK)
		pool.ready[idx] = 0; /* renewed by the next db_acquire */
	put_back(idx);
}

int db_lost(PGconn *c, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (PQstatus(c) != CONNECTION_OK)
		return 1;
	/* class 08 connection exception; 57P01-57P03 the server is shutting down or starting */
	return state && (!strncmp(state, "08", 2) || !strcmp(state, "57P01") || !strcmp(state, "57P02") ||
			 !strcmp(state, "57P03"));
}

/* After a statement outside a transaction lost its session: renews it and says whether the
 * statement may simply run again (1). Only a read, or a BEGIN, is run again: a write whose
 * commit was lost with the connection might have happened. */
static int retry_after_loss(PGconn *c, int rerunnable)
{
	int idx = conn_index(c);

	if (idx < 0 || !rerunnable)
		return 0;
	log_debug("database connection lost under a statement; renewing it and running the statement again");
	return conn_renew(idx) == 0;
}

PGresult *db_exec_f(PGconn *c, enum stmt s, const char *const *params, const int *lengths, const int *formats)
{
	int idle = PQtransactionStatus(c) == PQTRANS_IDLE;
	PGresult *res = PQexecPrepared(c, stmts[s].name, stmts[s].nparams, params, lengths, formats, 0);

	/* a read on its own, outside a transaction, is retried once on a fresh session */
	if (!db_ok(res) && idle && db_lost(c, res) && retry_after_loss(c, !strncmp(stmts[s].sql, "SELECT ", 7))) {
		PQclear(res);
		res = PQexecPrepared(c, stmts[s].name, stmts[s].nparams, params, lengths, formats, 0);
	}
	if (!db_ok(res))
		log_debug("statement \"%s\" failed: %s", stmts[s].name, PQresultErrorMessage(res));
	return res;
}

PGresult *db_exec(PGconn *c, enum stmt s, const char *const *params)
{
	return db_exec_f(c, s, params, NULL, NULL);
}

int db_ok(const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* SQLSTATE of the last BEGIN or COMMIT that failed on this thread ("" after one that worked),
 * so that db_problem can name a failed commit without its result */
static __thread char last_state[6];

static int simple(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	int ok = db_ok(res);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (ok) {
		last_state[0] = '\0';
	} else {
		snprintf(last_state, sizeof last_state, "%s", state ? state : "");
		log_error("database error in %s (SQLSTATE %s): %s", sql, state ? state : "?",
			  res ? PQresultErrorMessage(res) : PQerrorMessage(c));
	}
	PQclear(res);
	return ok ? 0 : -1;
}

/* A BEGIN that lost its session did nothing: it is safe to renew the session and begin again. */
static int begin(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	int ok = db_ok(res);

	if (!ok && db_lost(c, res) && retry_after_loss(c, 1)) {
		PQclear(res);
		res = PQexec(c, sql);
		ok = db_ok(res);
	}
	PQclear(res);
	return ok ? 0 : -1;
}

int db_begin(PGconn *c)
{
	return begin(c, "BEGIN");
}

int db_begin_snapshot(PGconn *c)
{
	return begin(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
}

int db_begin_ordered(PGconn *c)
{
	/* one round trip: BEGIN and both settings, undone by the transaction's end */
	return begin(c, "BEGIN READ ONLY; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off");
}

int db_commit(PGconn *c)
{
	return simple(c, "COMMIT");
}

void db_rollback(PGconn *c)
{
	simple(c, "ROLLBACK");
}

void db_problem(struct reply *out, PGconn *c, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	metrics_db_error();
	if (!res && c && PQstatus(c) == CONNECTION_OK && last_state[0])
		state = last_state; /* a BEGIN or COMMIT that failed, already logged by simple() */
	if (!c) {
		reply_problem(out, 503, "unavailable",
			      "no database connection could be had (all busy, or the database unreachable); retry later");
		return;
	}
	if (PQstatus(c) != CONNECTION_OK || (!res && !state)) {
		log_warn("database connection lost: %s", PQerrorMessage(c));
		reply_problem(out, 503, "unavailable",
			      "the database connection was lost during the request; retry later");
		return;
	}
	/* serialization, deadlock, lock_timeout (55P03), statement_timeout and shutdown (57),
	 * lost connection (08), too many connections (53300): all pass; the client retries */
	if (state && (!strcmp(state, "40001") || !strcmp(state, "40P01") || !strcmp(state, "55P03") ||
		      !strncmp(state, "57", 2) || !strncmp(state, "08", 2) || !strcmp(state, "53300"))) {
		if (res)
			log_warn("database error (SQLSTATE %s): %s", state, PQresultErrorMessage(res));
		reply_problem(out, 503, "unavailable",
			      "the database could not complete the request (SQLSTATE %s); retry later",
			      state);
		return;
	}
	if (!res) {
		reply_problem(out, 500, "internal",
			      "the database could not commit the transaction (SQLSTATE %s)", state);
		return;
	}
	log_error("database error (SQLSTATE %s): %s", state ? state : "?",
		  PQresultErrorMessage(res));
	reply_problem(out, 500, "internal", "the database refused the request (SQLSTATE %s)",
		      state ? state : "unknown");
}

PGresult *db_run(struct reply *out, enum stmt s, const char *const *params)
{
	PGconn *c = db_acquire();
	PGresult *res;

	if (!c) {
		db_problem(out, NULL, NULL);
		return NULL;
	}
	res = db_exec(c, s, params);
	if (!db_ok(res)) {
		db_problem(out, c, res);
		PQclear(res);
		res = NULL;
	}
	db_release(c);
	return res;
}

PGresult *db_step(PGconn *c, enum stmt s, const char *const *params, struct reply *out)
{
	PGresult *res = db_exec(c, s, params);

	if (!db_ok(res)) {
		db_problem(out, c, res);
		PQclear(res);
		return NULL;
	}
	return res;
}
