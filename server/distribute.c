/*
 * syncrelayd --distribute: spreads a database over a Citus cluster. It applies pending
 * migrations, then distributes every table with a library_id column by library_id, all
 * co-located with libraries (so every request touches one shard group), and makes the small
 * global tables (tokens, schema_migrations) reference tables. Running it again changes
 * nothing; a table a later migration added is distributed by the next run.
 */
#include "distribute.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "migrate.h"

/* the small tables every node needs whole: looked up by token hash, or global */
static const char *const reference_tables[] = {"tokens", "schema_migrations"};

/* Runs sql with params; the result, or NULL after logging what failed. */
static PGresult *run(PGconn *c, const char *sql, int n, const char *const *params, const char *what)
{
	PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);

	if (!db_ok(res)) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		log_error("could not %s (SQLSTATE %s): %s", what, state ? state : "?",
			  res ? PQresultErrorMessage(res) : PQerrorMessage(c));
		PQclear(res);
		return NULL;
	}
	return res;
}

/* How Citus holds table t now: 'h' hash-distributed, 'n' reference, 0 a plain local table,
 * -1 on failure. A hash-distributed table's column and co-location group go to col, group. */
static int table_kind(PGconn *c, const char *t, char *col, size_t ncol, long *group)
{
	const char *p[1] = {t};
	PGresult *res = run(c,
			    "SELECT p.partmethod, coalesce(column_to_column_name(p.logicalrelid, p.partkey), ''),"
			    " p.colocationid FROM pg_dist_partition p WHERE p.logicalrelid = $1::regclass",
			    1, p, "read the Citus metadata");
	int kind = -1;

	if (!res)
		return -1;
	kind = 0;
	if (PQntuples(res) == 1) {
		kind = PQgetvalue(res, 0, 0)[0];
		snprintf(col, ncol, "%s", PQgetvalue(res, 0, 1));
		*group = atol(PQgetvalue(res, 0, 2));
	}
	PQclear(res);
	return kind;
}

/* Appends name to the comma-separated list in buf. */
static void list_add(char *buf, size_t n, const char *name)
{
	size_t len = strlen(buf);

	snprintf(buf + len, n - len, "%s%s", len ? ", " : "", name);
}

/* Citus explains each step in NOTICEs (copying data, hints); the summary says what was done. */
static void notice(void *arg, const char *message)
{
	(void)arg;
	log_debug("database notice: %s", message);
}

int distribute_run(const char *conninfo)
{
	char distributed[1024] = "", already[1024] = "", reference[256] = "", col[64];
	PGconn *c = NULL;
	PGresult *res = NULL, *tables = NULL;
	char *done = NULL;
	long group = 0, lib_group = -1;
	int rc = 1, i, kind, workers;

	c = db_connect(conninfo);
	if (!c)
		goto cleanup;
	if (!(res = run(c, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')", 0, NULL,
			"read the database's extensions")))
		goto cleanup;
	if (PQgetvalue(res, 0, 0)[0] != 't') {
		log_error("cannot distribute: the database has no citus extension (on the coordinator:"
			  " CREATE EXTENSION citus, then SELECT citus_add_node(host, port) for each worker)");
		goto cleanup;
	}
	PQclear(res);
	res = NULL;
	if (migrate_check_node(c))
		goto cleanup;
	PQfinish(c);
	c = NULL;
	if (migrate_apply(conninfo)) {
		log_error("could not apply migrations; nothing distributed");
		goto cleanup;
	}
	if (!(c = db_connect(conninfo)))
		goto cleanup;
	PQsetNoticeProcessor(c, notice, NULL);
	if (!(res = run(c, "SELECT count(*) FROM citus_get_active_worker_nodes()", 0, NULL,
			"list the Citus workers")))
		goto cleanup;
	workers = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	res = NULL;
	if (workers == 0)
		log_warn("the Citus cluster has no worker nodes yet: the shards stay on the coordinator");

	/* libraries first: devices references it, and the others co-locate with it */
	if (!(tables = run(c,
			   "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
			   " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'library_id'"
			   " AND NOT a.attisdropped WHERE n.nspname = current_schema() AND c.relkind = 'r'"
			   " AND c.relname <> 'tokens' ORDER BY c.relname <> 'libraries', c.relname",
			   0, NULL, "list the tables")))
		goto cleanup;
	if (!(done = calloc((size_t)PQntuples(tables) + 1, 1)))
		goto cleanup;
	for (i = 0; i < PQntuples(tables); i++) {
		const char *t = PQgetvalue(tables, i, 0);
		const char *p[2] = {t, i == 0 ? "default" : "libraries"};

		kind = table_kind(c, t, col, sizeof col, &group);
		if (kind < 0)
			goto cleanup;
		if (i == 0 && strcmp(t, "libraries")) {
			log_error("cannot distribute: table \"libraries\" not found");
			goto cleanup;
		}
		if (kind == 'h' && !strcmp(col, "library_id") && (i == 0 || group == lib_group)) {
			if (i == 0)
				lib_group = group;
			list_add(already, sizeof already, t);
			continue;
		}
		if (kind) {
			log_error("cannot distribute table \"%s\": Citus already holds it otherwise"
				  " (method %c, column \"%s\"); undistribute it first", t, kind, col);
			goto cleanup;
		}
		log_info("distributing table \"%s\" by library_id", t);
		if (!(res = run(c, "SELECT create_distributed_table($1::regclass, 'library_id',"
				" colocate_with => $2)", 2, p, "distribute a table")))
			goto cleanup;
		PQclear(res);
		res = NULL;
		if (i == 0 && table_kind(c, t, col, sizeof col, &lib_group) < 0)
			goto cleanup;
		list_add(distributed, sizeof distributed, t);
		done[i] = 1;
	}
	for (i = 0; i < (int)(sizeof reference_tables / sizeof reference_tables[0]); i++) {
		const char *p[1] = {reference_tables[i]};

		kind = table_kind(c, p[0], col, sizeof col, &group);
		if (kind < 0)
			goto cleanup;
		if (kind == 'n') {
			list_add(already, sizeof already, p[0]);
			continue;
		}
		if (kind) {
			log_error("cannot make \"%s\" a reference table: Citus already holds it otherwise"
				  " (method %c)", p[0], kind);
			goto cleanup;
		}
		log_info("making \"%s\" a reference table", p[0]);
		if (!(res = run(c, "SELECT create_reference_table($1::regclass)", 1, p,
				"create a reference table")))
			goto cleanup;
		PQclear(res);
		res = NULL;
		list_add(reference, sizeof reference, p[0]);
	}
	/* the rows were copied into the shards; the coordinator's local copies only take room */
	for (i = PQntuples(tables) - 1; i >= 0; i--) {
		const char *p[1] = {PQgetvalue(tables, i, 0)};

		if (done[i] &&
		    !(res = run(c, "SELECT truncate_local_data_after_distributing_table($1::regclass)", 1, p,
				"remove the local copy of a distributed table")))
			log_warn("the local copy of \"%s\" stays on the coordinator", p[0]);
		PQclear(res);
		res = NULL;
	}
	printf("syncrelayd: distributed over %d Citus worker%s: %s%s%s%s%s%s\n", workers,
	       workers == 1 ? "" : "s", *distributed ? "distributed by library_id: " : "", distributed,
	       *reference ? (*distributed ? "; reference tables: " : "reference tables: ") : "", reference,
	       *already ? (*distributed || *reference ? "; already distributed: " : "already distributed: ")
			: "",
	       already);
	fflush(stdout);
	rc = 0;
cleanup:
	PQclear(res);
	PQclear(tables);
	free(done);
	PQfinish(c);
	return rc;
}
