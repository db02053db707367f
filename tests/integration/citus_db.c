/*
 * The harness on Citus (tests/citus.sh sets SYNCRELAY_TEST_CITUS to the workers' ports):
 * every fresh test database becomes a distributed database, as an operator would make it.
 * The same database is created on each worker, the citus extension in all three, the
 * workers are added on the coordinator, and `syncrelayd --distribute` spreads the tables
 * (unless the test distributes them itself).
 * Request paths must then touch one shard group: the database is set to fail any statement
 * that Citus runs as several tasks (citus.multi_task_query_log_level = error).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <libpq-fe.h>

#include "harness.h"

static void run_sql(const char *conninfo, const char *sql)
{
	PGconn *c = PQconnectdb(conninfo);
	PGresult *res;

	H_ASSERT(PQstatus(c) == CONNECTION_OK, "cannot reach the Citus node (%s): %s", conninfo,
		 PQerrorMessage(c));
	res = PQexec(c, sql);
	H_ASSERT(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK,
		 "on %s, \"%s\" failed: %s", conninfo, sql, PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
}

void h_citus_prepare(const char *conninfo, const char *name, int distribute)
{
	const char *ports = getenv("SYNCRELAY_TEST_CITUS");
	char ci[512], sql[256], cmd[1024], list[128], *save = NULL, *port;
	int st;

	snprintf(list, sizeof list, "%s", ports);
	for (port = strtok_r(list, ", ", &save); port; port = strtok_r(NULL, ", ", &save)) {
		snprintf(ci, sizeof ci, "host=127.0.0.1 port=%s user=postgres dbname=postgres", port);
		snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
		run_sql(ci, sql);
		snprintf(ci, sizeof ci, "host=127.0.0.1 port=%s user=postgres dbname=%s", port, name);
		run_sql(ci, "CREATE EXTENSION citus");
	}
	run_sql(conninfo, "CREATE EXTENSION citus");
	snprintf(list, sizeof list, "%s", ports);
	for (port = strtok_r(list, ", ", &save); port; port = strtok_r(NULL, ", ", &save)) {
		snprintf(sql, sizeof sql, "SELECT citus_add_node('127.0.0.1', %d)", atoi(port));
		run_sql(conninfo, sql);
	}
	/* few shards: the tests create hundreds of databases; two workers still get several each */
	snprintf(sql, sizeof sql, "ALTER DATABASE %s SET citus.shard_count = 4", name);
	run_sql(conninfo, sql);
	if (!distribute)
		return;
	snprintf(cmd, sizeof cmd, "'%s' --distribute --log-level 1 --database-url '%s' >/dev/null", SYNCRELAYD_PATH,
		 conninfo);
	st = system(cmd);
	H_ASSERT(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "syncrelayd --distribute failed on %s (status %d)",
		 conninfo, st);
	snprintf(sql, sizeof sql, "ALTER DATABASE %s SET citus.multi_task_query_log_level = 'error'", name);
	run_sql(conninfo, sql);
}
