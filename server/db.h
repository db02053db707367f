/*
 * Database access: a fixed pool of libpq connections, every statement named and prepared
 * on each connection from one table, and SQLSTATE to problem mapping in one place.
 */
#ifndef SR_DB_H
#define SR_DB_H

#include <libpq-fe.h>

#include "http.h"

enum stmt {
	ST_TOKEN_LOOKUP,
	ST_DEVICE_SEEN,
	ST_LIB_INSERT,
	ST_TOKEN_INSERT,
	ST_LIB_GET,
	ST_LIB_LOCK,
	ST_DEVICE_INSERT,
	ST_DEVICE_LIST,
	ST_DEVICE_REVOKE,
	ST_DEVICE_GET,
	ST_TOKEN_REVOKE_DEVICE,
	ST_TOKEN_REVOKE_JOIN,
	ST_SCHEMA_SET,
	ST_PUSH_DUPS,
	ST_PUSH_CURRENT,
	ST_PUSH_CHANGES,
	ST_PUSH_RECORDS,
	ST_PUSH_RECORDS_NEW,
	ST_PUSH_SCOPES,
	ST_PUSH_BUCKETS,
	ST_PUSH_HEAD,
	ST_PUSH_NOTIFY,
	ST_PULL,
	ST_LIB_INFO,
	ST_CHANGE_AT,
	ST_ACK,
	ST_RECORDS_PAGE,
	ST_RECORDS_BUCKET,
	ST_DIGEST,
	ST_DIGEST_BUCKETS,
	ST_READY,
	/* compaction (compact.c) */
	ST_COMPACT_LIBS,
	ST_COMPACT_PASS_LOCK,
	ST_COMPACT_PASS_UNLOCK,
	ST_COMPACT_LOCK,
	ST_COMPACT_UNLOCK,
	ST_COMPACT_CUTOFF,
	ST_COMPACT_SCAN,
	ST_COMPACT_MARK,
	ST_COMPACT_MARK_WAIT,
	ST_COMPACT_DELETE,
	ST_METRICS_LAG,
	ST_COUNT
};

int db_pool_open(const char *conninfo, int size);
void db_pool_close(void);
int db_pool_size(void);
int db_pool_in_use(void);
/* Time spent waiting for a pool connection, for /metrics: a histogram over
 * db_pool_wait_bounds() (bucket[DB_WAIT_BUCKETS] is above the last bound), and the acquires
 * that gave up after the 5 s deadline (answered 503). */
#define DB_WAIT_BUCKETS 9
struct db_wait_stats {
	unsigned long long bucket[DB_WAIT_BUCKETS + 1];
	unsigned long long count, timeouts;
	double sum_s;
};
void db_pool_wait_stats(struct db_wait_stats *out);
const double *db_pool_wait_bounds(void);

/* Borrows a connection, waiting up to a few seconds; NULL when none could be had. A session
 * that shows signs of a lost server is renewed (reconnected, set up, prepared) first; one that
 * cannot be renewed is not handed out. A read run outside a transaction (db_exec) and a BEGIN
 * are retried once on a renewed session when the session is lost under them. */
PGconn *db_acquire(void);
void db_release(PGconn *c);

/* Runs a prepared statement with text parameters (NULL = SQL NULL). The caller PQclear()s. */
PGresult *db_exec(PGconn *c, enum stmt s, const char *const *params);
/* db_exec with lengths and formats per parameter (libpq's: format 1 = binary, then its length
 * counts); NULL lengths and formats = all text. */
PGresult *db_exec_f(PGconn *c, enum stmt s, const char *const *params, const int *lengths, const int *formats);
/* 1 when res is COMMAND_OK or TUPLES_OK. */
int db_ok(const PGresult *res);
int db_begin(PGconn *c);
/* A read-only snapshot: several statements see one state (head and digests agree). */
int db_begin_snapshot(PGconn *c);
/* A read-only transaction whose statements read in index order: with the planner's
 * bitmap scans and sorts off, a keyset page (WHERE key > $after ORDER BY key LIMIT n) is an
 * ordered index scan that stops after n rows, whatever the statistics. Without statistics
 * (a bulk load, a restore from pg_dump, before autovacuum's ANALYZE) each records page was a
 * bitmap scan and a sort of every remaining record: backfill grew quadratic. */
int db_begin_ordered(PGconn *c);
int db_commit(PGconn *c);
void db_rollback(PGconn *c);

/* Fills out with the problem for a failed statement (res may be NULL: no connection). */
void db_problem(struct reply *out, PGconn *c, const PGresult *res);

/* Opens a standalone connection (migrations, LISTEN) with keepalives and the connect timeout.
 * NULL after logging why. */
PGconn *db_connect(const char *conninfo);
/* db_connect with every statement prepared, for a thread that keeps a session of its own
 * (compaction holds an advisory lock across transactions). NULL after logging why. */
PGconn *db_connect_prepared(const char *conninfo);
/* The same settings, blocking (async 0, as PQconnectdbParams) or to be driven with
 * PQconnectPoll (async 1). Never NULL except out of memory; the caller PQfinish()es. */
PGconn *db_connect_start(const char *conninfo, int async);
/* 1 when a failed statement on c failed because the session was lost (the server went away,
 * shut down or restarted), rather than for what the statement did. */
int db_lost(PGconn *c, const PGresult *res);



/* One statement inside the caller's transaction: the result, or NULL with out filled. */
PGresult *db_step(PGconn *c, enum stmt s, const char *const *params, struct reply *out);
/* One statement on a borrowed connection: the result, or NULL with out filled. */
PGresult *db_run(struct reply *out, enum stmt s, const char *const *params);
#endif
