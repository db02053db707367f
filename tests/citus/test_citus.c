/*
 * syncrelay on Citus (run by tests/citus.sh: a coordinator and two workers on this machine,
 * every test database distributed by the harness with `syncrelayd --distribute`). Where each
 * library's rows live, that request paths stay on one shard group, that distributing again
 * changes nothing, that a migration applied after distribution works, and that a relay
 * pointed at a worker refuses to start.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "harness.h"

static void require_citus(void)
{
	const char *ports = getenv("SYNCRELAY_TEST_CITUS");

	if (!ports || !*ports)
		cr_skip_test("not on Citus: run through tests/citus.sh");
}

static PGconn *pg(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);

	cr_assert(PQstatus(c) == CONNECTION_OK, "cannot connect to %s: %s", conninfo, PQerrorMessage(c));
	return c;
}

/* One value of a query that must succeed (caller frees). */
static char *pg_value(PGconn *c, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	char *v;

	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "\"%s\" failed: %s", sql,
		  PQresultErrorMessage(res));
	v = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

static const char *const lib_tables[] = {"libraries", "devices", "changes", "records", "scope_digests",
					  "bucket_digests"};
#define NTABLES (sizeof lib_tables / sizeof lib_tables[0])

/* "port:shardid" of the shard of table t that holds library lib. */
static char *placement(PGconn *c, const char *t, const char *lib)
{
	const char *p[2] = {t, lib};

	return pg_value(c,
			"SELECT s.nodeport || ':' || s.shardid FROM citus_shards s"
			" WHERE s.table_name = $1::regclass"
			" AND s.shardid = get_shard_id_for_distribution_column($1::regclass, $2::uuid)",
			2, p);
}

Test(citus, every_library_lives_on_one_worker_and_both_are_used, .timeout = 300)
{
	struct relay r;
	struct lib libs[64];
	struct dev devs[64];
	char ports[2][16] = {"", ""};
	PGconn *c;
	int n, t, i;

	require_citus();
	h_relay_start(&r, NULL, NULL);
	c = pg(r.db);
	/* libraries until both workers hold some (each new library: a 1 in 2 chance, 64 at most) */
	for (n = 0; n < 64 && !(ports[0][0] && ports[1][0]); n++) {
		char *where, *colon;

		h_library(&r, &libs[n]);
		h_device(&r, &libs[n], &devs[n]);
		h_schema_ref(&r, &libs[n], &devs[n]);
		h_push_ok(&r, &libs[n], &devs[n], h_batch(&devs[n], h_now_ms() - 1000, 0, 5 + n), 5 + n, 0);
		where = placement(c, "libraries", libs[n].id);
		colon = strchr(where, ':');
		*colon = '\0';
		if (!ports[0][0])
			snprintf(ports[0], sizeof ports[0], "%s", where);
		else if (strcmp(ports[0], where))
			snprintf(ports[1], sizeof ports[1], "%s", where);
		free(where);
	}
	cr_assert(ports[1][0], "64 libraries all landed on the worker at port %s", ports[0]);
	for (i = 0; i < n; i++) {
		char *lib_at = placement(c, "libraries", libs[i].id), ci[256], sql[256], *count;
		const char *p[1] = {libs[i].id};
		PGconn *w;

		for (t = 1; t < (int)NTABLES; t++) {
			char *at = placement(c, lib_tables[t], libs[i].id);

			cr_assert_eq(strchr(at, ':') - at, strchr(lib_at, ':') - lib_at,
				     "library %s: %s at %s, libraries at %s", libs[i].id, lib_tables[t], at, lib_at);
			cr_assert(!strncmp(at, lib_at, (size_t)(strchr(at, ':') - at)),
				  "library %s: %s at %s, libraries at %s (not co-located)", libs[i].id, lib_tables[t],
				  at, lib_at);
			if (t == 2) { /* its changes are in that worker's shard table, all of them */
				*strchr(at, ':') = '\0';
				snprintf(ci, sizeof ci, "host=127.0.0.1 port=%s user=postgres dbname=%s", at,
					 strstr(r.db, "dbname=") + 7);
				snprintf(sql, sizeof sql, "SELECT count(*) FROM changes_%s WHERE library_id = $1",
					 at + strlen(at) + 1);
				w = pg(ci);
				count = pg_value(w, sql, 1, p);
				cr_assert_eq(atoi(count), 5 + i, "library %s: %s changes in %s on port %s, pushed %d",
					     libs[i].id, count, sql, at, 5 + i);
				free(count);
				PQfinish(w);
			}
			free(at);
		}
		free(lib_at);
	}
	{
		char *kind = pg_value(c, "SELECT string_agg(logicalrelid::text || '=' || partmethod::text, ',' ORDER BY"
					 " logicalrelid::text) FROM pg_dist_partition", 0, NULL);

		cr_assert_str_eq(kind, "bucket_digests=h,changes=h,devices=h,libraries=h,records=h,"
				       "schema_migrations=n,scope_digests=h,tokens=n");
		free(kind);
	}
	PQfinish(c);
	cr_assert_eq(h_relay_stop(&r), 0);
}

Test(citus, multi_shard_statements_fail_in_test_databases, .timeout = 120)
{
	char db[512];
	PGconn *c;
	PGresult *res;

	/* the guard the other suites run under on Citus: it must really refuse a multi-shard query */
	require_citus();
	h_db_create(db, sizeof db);
	c = pg(db);
	res = PQexec(c, "SELECT count(*) FROM changes");
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "a query over every shard was allowed");
	cr_assert(strstr(PQresultErrorMessage(res), "multi-task"), "unexpected error: %s",
		  PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
}

/* Runs syncrelayd with args on db; its exit status, its stdout and stderr in out. */
static int syncrelayd(const char *db, const char *args, char *out, size_t n)
{
	char cmd[2048];
	FILE *f;
	size_t got;
	int st;

	snprintf(cmd, sizeof cmd, "timeout 120 '%s' %s --listen 127.0.0.1:0 --database-url '%s' 2>&1",
		 SYNCRELAYD_PATH, args, db);
	f = popen(cmd, "r");
	cr_assert(f, "could not run %s", cmd);
	got = fread(out, 1, n - 1, f);
	out[got] = '\0';
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

Test(citus, distribute_twice_changes_nothing, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d;
	char out[4096];

	require_citus();
	h_relay_start(&r, NULL, NULL);
	h_library(&r, &l);
	h_device(&r, &l, &d);
	h_schema_ref(&r, &l, &d);
	h_push_ok(&r, &l, &d, h_batch(&d, h_now_ms() - 1000, 0, 20), 20, 0);
	cr_assert_eq(syncrelayd(r.db, "--distribute", out, sizeof out), 0, "second --distribute: %s", out);
	cr_assert(strstr(out, "already distributed: libraries, bucket_digests, changes, devices, records,"
			      " scope_digests, tokens, schema_migrations"),
		  "summary: %s", out);
	cr_assert_null(strstr(out, "distributed by library_id:"), "something was distributed again: %s", out);
	/* the relay goes on where it was */
	h_push_ok(&r, &l, &d, h_batch(&d, h_now_ms() - 500, 20, 5), 5, 0);
	cr_assert_eq(h_lib_head(&r, &l), 25);
	cr_assert_eq(h_relay_stop(&r), 0);
}

Test(citus, a_migration_after_distribution_applies, .timeout = 180)
{
	struct relay r;
	struct lib l;
	struct dev d;
	char db[512];
	PGconn *c;
	PGresult *res;
	char *v;

	require_citus();
	h_db_create(db, sizeof db);
	c = pg(db);
	/* take the newest migration (004) back out of the distributed database, as if it were
	 * new: the relay applies those above the highest it finds recorded */
	res = PQexec(c, "SET citus.multi_task_query_log_level = notice;"
			"ALTER TABLE changes DROP COLUMN accepted_at;"
			"ALTER TABLE changes ADD COLUMN accepted_at timestamptz");
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR,
		     "Citus took DDL on a distributed table in a multi-statement string; the test shows nothing");
	PQclear(res);
	res = PQexec(c, "SET citus.multi_task_query_log_level = notice");
	PQclear(res);
	res = PQexec(c, "ALTER TABLE changes DROP COLUMN accepted_at");
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	res = PQexec(c, "DELETE FROM schema_migrations WHERE version = 4");
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);

	/* the relay applies it again, statement by statement, and starts */
	h_relay_start(&r, db, NULL);
	v = pg_value(c, "SELECT count(*) FROM schema_migrations WHERE version = 4", 0, NULL);
	cr_assert_str_eq(v, "1", "migration 004 not recorded");
	free(v);
	v = pg_value(c, "SELECT count(*) FROM run_command_on_shards('changes',"
			" $$SELECT count(*) FROM information_schema.columns WHERE table_name = '%s'"
			" AND column_name = 'accepted_at'$$) WHERE success AND result = '1'",
		     0, NULL);
	cr_assert_str_eq(v, "4", "not every changes shard has the column of 004");
	free(v);
	h_library(&r, &l);
	h_device(&r, &l, &d);
	h_schema_ref(&r, &l, &d);
	h_push_ok(&r, &l, &d, h_batch(&d, h_now_ms() - 1000, 0, 10), 10, 0);
	PQfinish(c);
	cr_assert_eq(h_relay_stop(&r), 0);
}

Test(citus, a_relay_on_a_worker_refuses_to_start, .timeout = 120)
{
	char db[512], worker[512], out[4096], ports[64];
	const char *name;

	require_citus();
	h_db_create(db, sizeof db);
	name = strstr(db, "dbname=") + 7;
	snprintf(ports, sizeof ports, "%s", getenv("SYNCRELAY_TEST_CITUS"));
	ports[strcspn(ports, ", ")] = '\0';
	snprintf(worker, sizeof worker, "host=127.0.0.1 port=%s user=postgres dbname=%s", ports, name);
	cr_assert_neq(syncrelayd(worker, "", out, sizeof out), 0, "a relay started on a worker: %s", out);
	cr_assert(strstr(out, "Citus worker node"), "no word of the worker node: %s", out);
	cr_assert_neq(syncrelayd(worker, "--distribute", out, sizeof out), 0, "--distribute ran on a worker: %s",
		      out);
	cr_assert(strstr(out, "Citus worker node"), "no word of the worker node: %s", out);
}

Test(citus, a_library_with_data_is_distributed_and_served_as_before, .timeout = 180)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct resp p;
	char db[512], name[64], out[4096], *digest, *where, ci[256], sql[256], *count;
	const char *base = getenv("SYNCRELAY_TEST_PG"), *pp[1];
	PGconn *c;
	PGresult *res;

	require_citus();
	/* a Citus database whose tables are still local: the relay ran on it before distribution */
	snprintf(name, sizeof name, "t_pre_%d_%u", (int)getpid(), (unsigned)(h_now_ms() % 100000));
	c = pg(base);
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
	res = PQexec(c, sql);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
	snprintf(db, sizeof db, "%s dbname=%s", base, name);
	h_citus_prepare(db, name, 0);
	h_relay_start(&r, db, NULL);
	h_fixture(&r, &l, &d, NULL);
	h_push_ok(&r, &l, &d, h_batch(&d, h_now_ms() - 2000, 0, 50), 50, 0);
	h_http(&p, &r, "GET", h_lp(&l, "/digest"), d.token, NULL);
	h_expect_json(&p, 200);
	digest = json_dumps(json_object_get(p.json, "scopes"), JSON_COMPACT | JSON_SORT_KEYS);
	h_resp_free(&p);
	cr_assert_eq(h_relay_stop(&r), 0);

	cr_assert_eq(syncrelayd(db, "--distribute", out, sizeof out), 0, "--distribute: %s", out);
	cr_assert(strstr(out, "distributed by library_id: libraries, bucket_digests, changes, devices, records,"
			      " scope_digests; reference tables: tokens, schema_migrations"),
		  "summary: %s", out);

	/* the rows moved to the library's worker, and the relay serves them as before */
	c = pg(db);
	where = placement(c, "changes", l.id);
	*strchr(where, ':') = '\0';
	snprintf(ci, sizeof ci, "host=127.0.0.1 port=%s user=postgres dbname=%s", where, name);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM changes_%s WHERE library_id = $1", where + strlen(where) + 1);
	PQfinish(c);
	c = pg(ci);
	pp[0] = l.id;
	count = pg_value(c, sql, 1, pp);
	cr_assert_str_eq(count, "50", "changes in the shard on port %s", where);
	free(count);
	free(where);
	PQfinish(c);
	h_relay_start(&r, db, NULL);
	h_http(&p, &r, "GET", h_lp(&l, "/digest"), d.token, NULL);
	h_expect_json(&p, 200);
	{
		char *after = json_dumps(json_object_get(p.json, "scopes"), JSON_COMPACT | JSON_SORT_KEYS);

		cr_assert_str_eq(after, digest, "the digest changed with distribution");
		free(after);
	}
	h_resp_free(&p);
	free(digest);
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=0&limit=1000&include_own=1"), d.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 50);
	h_resp_free(&p);
	h_push_ok(&r, &l, &d, h_batch(&d, h_now_ms() - 1000, 50, 5), 5, 0);
	cr_assert_eq(h_lib_head(&r, &l), 55);
	cr_assert_eq(h_relay_stop(&r), 0);
}
