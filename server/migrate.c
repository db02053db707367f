/*
 * Migrations: forward-only, numbered, applied under pg_advisory_lock. A relay that waits
 * for the lock finds the migrations already applied by the one that held it.
 */
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "log.h"

/* arbitrary constant: the advisory lock key of syncrelay migrations */
#define MIGRATE_LOCK_KEY "7236512893041"

static int exec_ok(PGconn *c, const char *sql, const char *what)
{
	PGresult *res = PQexec(c, sql);
	int ok = db_ok(res);

	if (!ok)
		log_error("migration step \"%s\" failed: %s", what, PQresultErrorMessage(res));
	PQclear(res);
	return ok ? 0 : -1;
}

int migrate_latest(void)
{
	return migrations_count ? migrations[migrations_count - 1].version : 0;
}

int migrate_apply(const char *conninfo)
{
	PGconn *c = db_connect(conninfo);
	PGresult *res = NULL;
	int current = 0, i, rc = -1;

	if (!c)
		return -1;
	/* no NOTICE that schema_migrations already exists at every start */
	if (exec_ok(c, "SET client_min_messages = warning", "quiet") ||
	    exec_ok(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "lock"))
		goto cleanup;
	if (exec_ok(c, "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
		       " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
		    "schema_migrations"))
		goto unlock;
	res = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_error("could not read applied migrations: %s", PQresultErrorMessage(res));
		goto unlock;
	}
	current = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	res = NULL;

	for (i = 0; i < migrations_count; i++) {
		char ver[16];
		const char *params[2] = {ver, migrations[i].name};

		if (migrations[i].version <= current)
			continue;
		snprintf(ver, sizeof ver, "%d", migrations[i].version);
		if (exec_ok(c, "BEGIN", "begin") || exec_ok(c, migrations[i].sql, migrations[i].name))
			goto rollback;
		res = PQexecParams(c, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
				   NULL, params, NULL, NULL, 0);
		if (!db_ok(res)) {
			log_error("could not record migration \"%s\": %s", migrations[i].name,
				  PQresultErrorMessage(res));
			goto rollback;
		}
		PQclear(res);
		res = NULL;
		if (exec_ok(c, "COMMIT", "commit"))
			goto unlock;
		log_info("applied migration %s", migrations[i].name);
	}
	rc = 0;
	goto unlock;
rollback:
	exec_ok(c, "ROLLBACK", "rollback");
unlock:
	exec_ok(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", "unlock");
cleanup:
	PQclear(res);
	PQfinish(c);
	return rc;
}
