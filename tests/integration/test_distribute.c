/*
 * syncrelayd --distribute on plain PostgreSQL: it says there is no citus extension, exits
 * non-zero and changes nothing. (On Citus it is tested by tests/citus/test_citus.c.)
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <libpq-fe.h>

#include "harness.h"

Test(distribute, refused_without_citus, .timeout = 60)
{
	char db[512], cmd[1024], out[4096];
	const char *citus = getenv("SYNCRELAY_TEST_CITUS");
	FILE *f;
	size_t got;
	int st;
	PGconn *c;
	PGresult *res;

	if (citus && *citus)
		cr_skip_test("the database has the citus extension here");
	h_db_create(db, sizeof db);
	snprintf(cmd, sizeof cmd, "timeout 30 '%s' --distribute --database-url '%s' 2>&1", SYNCRELAYD_PATH, db);
	f = popen(cmd, "r");
	cr_assert(f, "could not run %s", cmd);
	got = fread(out, 1, sizeof out - 1, f);
	out[got] = '\0';
	st = pclose(f);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "exit status %d, output: %s", st, out);
	cr_assert(strstr(out, "no citus extension"), "no reason given: %s", out);
	/* nothing changed: not even the migrations were applied */
	c = PQconnectdb(db);
	cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	res = PQexec(c, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'");
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "0", "--distribute created tables on plain PostgreSQL");
	PQclear(res);
	PQfinish(c);
}
