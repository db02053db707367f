/*
 * A transaction the database refuses at COMMIT (on Citus: a worker's failed PREPARE) is
 * answered as what it is, with its SQLSTATE, and logged with its message; it is never
 * reported as "no database connection", and it changes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "harness.h"

static void sql_ok(const char *db, const char *sql)
{
	PGconn *c = PQconnectdb(db);
	PGresult *res;

	cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	res = PQexec(c, sql);
	cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK, "\"%s\": %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
}

Test(commit, a_refused_commit_is_named_and_logged, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct resp p;
	char *log = NULL, *body, line[1024];
	FILE *f;
	const char *citus = getenv("SYNCRELAY_TEST_CITUS");

	if (citus && *citus)
		cr_skip_test("a local table referenced by a distributed one is not what this tests");
	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d, NULL);
	/* a deferred foreign key that every later head fails, checked at COMMIT only (built in:
	 * no procedural language needed) */
	sql_ok(r.db, "CREATE TABLE t_heads (head bigint PRIMARY KEY)");
	sql_ok(r.db, "INSERT INTO t_heads VALUES (0)");
	sql_ok(r.db, "ALTER TABLE libraries ADD CONSTRAINT t_refuse FOREIGN KEY (head) REFERENCES t_heads (head)"
		     " DEFERRABLE INITIALLY DEFERRED");
	body = h_batch(&d, h_now_ms() - 1000, 0, 3);
	h_http(&p, &r, "POST", h_lp(&l, "/changes"), d.token, body);
	free(body);
	h_expect_problem(&p, 500, "internal");
	cr_assert(strstr(h_jstr(p.json, "detail"), "could not commit") &&
			  strstr(h_jstr(p.json, "detail"), "SQLSTATE 23503"),
		  "detail: %s", h_jstr(p.json, "detail"));
	cr_assert_null(strstr(p.body, "no database connection"), "reported as a missing connection: %s", p.body);
	h_resp_free(&p);
	cr_assert_eq(h_lib_head(&r, &l), 0, "the refused push moved head");
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=0&include_own=1"), d.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 0, "the refused push left changes");
	h_resp_free(&p);
	cr_assert_eq(h_relay_stop(&r), 0);
	f = fopen(r.log, "r");
	cr_assert(f, "no relay log at %s", r.log);
	while (fgets(line, sizeof line, f))
		if (strstr(line, "COMMIT") && strstr(line, "SQLSTATE 23503") && strstr(line, "t_refuse"))
			log = line;
	fclose(f);
	cr_assert(log, "the failed COMMIT is not in the relay log %s with its SQLSTATE and message", r.log);
}
