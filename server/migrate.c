/*
 * Migrations: forward-only, numbered, applied under pg_advisory_lock. A relay that waits
 * for the lock finds the migrations already applied by the one that held it. Each file is
 * sent one statement at a time (Citus refuses DDL on distributed tables in a query string
 * of several statements), all of a file in one transaction.
 */
#include "migrate.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"

/* arbitrary constant: the advisory lock key of syncrelay migrations */
#define MIGRATE_LOCK_KEY "7236512893041"

/* Length of the SQL text from p that is one quoted string, quoted identifier, dollar-quoted
 * string or comment, or 0 when p starts none of them. Unterminated ones run to the end. */
static size_t quoted_len(const char *p)
{
	const char *q = p;

	if (p[0] == '-' && p[1] == '-')
		return strcspn(p, "\n");
	if (p[0] == '/' && p[1] == '*') {
		int depth = 0;

		do { /* block comments nest in PostgreSQL */
			if (q[0] == '/' && q[1] == '*') {
				depth++;
				q += 2;
			} else if (q[0] == '*' && q[1] == '/') {
				depth--;
				q += 2;
			} else {
				q++;
			}
		} while (depth > 0 && *q);
		return (size_t)(q - p);
	}
	if (*p == '\'' || *p == '"') {
		for (q = p + 1; *q; q++)
			if (*q == *p) {
				if (q[1] != *p)
					return (size_t)(q + 1 - p);
				q++; /* doubled quote */
			}
		return (size_t)(q - p);
	}
	if (*p == '$') {
		const char *end;
		size_t tag;

		for (q = p + 1; *q == '_' || isalnum((unsigned char)*q); q++)
			;
		if (*q != '$' || isdigit((unsigned char)p[1]))
			return 0; /* a parameter such as $1, or a lone $ */
		tag = (size_t)(q + 1 - p);
		for (end = q + 1; *end; end++)
			if (!strncmp(end, p, tag))
				return (size_t)(end + tag - p);
		return (size_t)(end - p);
	}
	return 0;
}

const char *migrate_next_statement(const char **pos, size_t *len)
{
	const char *p = *pos, *start;
	size_t n;

	for (;;) { /* whitespace and comments between statements */
		while (isspace((unsigned char)*p) || *p == ';')
			p++;
		if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*'))
			p += quoted_len(p);
		else
			break;
	}
	if (!*p) {
		*pos = p;
		return NULL;
	}
	start = p;
	while (*p && *p != ';') {
		/* E'...' strings take backslash escapes: \' does not end them */
		if ((*p == 'E' || *p == 'e') && p[1] == '\'' &&
		    (p == start || !(isalnum((unsigned char)p[-1]) || p[-1] == '_'))) {
			for (p += 2; *p; p++) {
				if (*p == '\\' && p[1]) {
					p++;
				} else if (*p == '\'') {
					if (p[1] != '\'')
						break;
					p++;
				}
			}
			if (*p)
				p++;
			continue;
		}
		/* '$' inside an identifier (a$b) starts no dollar quote */
		n = *p == '$' && p > start && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '$')
			    ? 0 : quoted_len(p);
		p += n ? n : 1;
	}
	*len = (size_t)(p - start);
	while (*len && isspace((unsigned char)start[*len - 1]))
		(*len)--;
	*pos = *p ? p + 1 : p;
	return start;
}

static int exec_ok(PGconn *c, const char *sql, const char *what)
{
	PGresult *res = PQexec(c, sql);
	int ok = db_ok(res);

	if (!ok) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		log_error("migration step \"%s\" failed (SQLSTATE %s): %s", what, state ? state : "?",
			  res ? PQresultErrorMessage(res) : PQerrorMessage(c));
	}
	PQclear(res);
	return ok ? 0 : -1;
}

/* Sends the statements of m one by one, in the caller's transaction. */
static int apply_one(PGconn *c, const struct migration *m)
{
	const char *pos = m->sql, *stmt;
	size_t len;
	int n = 0, rc = 0;

	while (!rc && (stmt = migrate_next_statement(&pos, &len))) {
		char *sql = strndup(stmt, len);

		n++;
		if (!sql) {
			log_error("migration \"%s\": out of memory", m->name);
			return -1;
		}
		if (exec_ok(c, sql, m->name)) {
			log_error("migration \"%s\" failed at statement %d: %.200s", m->name, n, sql);
			rc = -1;
		}
		free(sql);
	}
	return rc;
}

int migrate_check_node(PGconn *c)
{
	PGresult *res = PQexec(c, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')");
	int rc = -1;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_error("could not read the database's extensions: %s", PQresultErrorMessage(res));
		goto cleanup;
	}
	rc = 0;
	if (PQgetvalue(res, 0, 0)[0] != 't')
		goto cleanup; /* plain PostgreSQL */
	PQclear(res);
	/* group 0 is the coordinator; a worker has its own group once it is added */
	res = PQexec(c, "SELECT groupid FROM pg_catalog.pg_dist_local_group");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_error("could not tell which Citus node this is: %s", PQresultErrorMessage(res));
		rc = -1;
	} else if (strcmp(PQgetvalue(res, 0, 0), "0")) {
		log_error("the database is on a Citus worker node (group %s): relays connect to the"
			  " coordinator, where migrations are recorded and notifications are sent",
			  PQgetvalue(res, 0, 0));
		rc = -1;
	}
cleanup:
	PQclear(res);
	return rc;
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
	if (migrate_check_node(c))
		goto cleanup;
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
		if (exec_ok(c, "BEGIN", "begin") || apply_one(c, &migrations[i]))
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
