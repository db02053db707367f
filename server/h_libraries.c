/* Libraries: create (admin) and read. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "db.h"
#include "handlers.h"

int h_library_create(struct req *r, struct reply *out)
{
	json_t *body = req_json(r, out), *name;
	char id[SR_UUID_LEN + 1], token[TOKEN_HEX + 4], hash[65];
	PGconn *c = NULL;
	PGresult *res = NULL;

	if (!body)
		return HANDLER_DONE;
	name = json_object_get(body, "name");
	if (!json_is_string(name) || !json_string_length(name) || json_string_length(name) > 200) {
		reply_problem(out, 400, "bad-request", "\"name\" must be a string of 1 to 200 bytes");
		goto cleanup;
	}
	if (sr_uuid_random(id) || auth_token_new(token)) {
		reply_problem(out, 500, "internal", "could not read random bytes");
		goto cleanup;
	}
	auth_token_hash(hash, token);
	c = db_acquire();
	if (!c || db_begin(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	{
		const char *p[2] = {id, json_string_value(name)};
		res = db_exec(c, ST_LIB_INSERT, p);
	}
	if (!db_ok(res))
		goto dbfail;
	PQclear(res);
	{
		const char *p[4] = {hash, "join", id, NULL};
		res = db_exec(c, ST_TOKEN_INSERT, p);
	}
	if (!db_ok(res))
		goto dbfail;
	if (db_commit(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	reply_json(out, 201, json_pack("{s:s, s:O, s:s}", "library_id", id, "name", name,
				       "join_token", token));
	goto cleanup;
dbfail:
	db_problem(out, c, res);
cleanup:
	PQclear(res);
	db_release(c);
	json_decref(body);
	return HANDLER_DONE;
}

int h_library_get(struct req *r, struct reply *out)
{
	const char *p[1] = {r->lib};
	PGresult *res = db_run(out, ST_LIB_INFO, p);
	json_t *j;

	if (!res)
		return HANDLER_DONE;
	if (PQntuples(res) != 1) {
		reply_problem(out, 404, "library-not-found", "library %s does not exist", r->lib);
		PQclear(res);
		return HANDLER_DONE;
	}
	/* head_hlc names the change at head: a backfill that starts its cursor at head names it too */
	j = json_pack("{s:s, s:s, s:I, s:o, s:I, s:o, s:i, s:I, s:I}", "library_id", r->lib, "name",
		      PQgetvalue(res, 0, 0), "head", (json_int_t)atoll(PQgetvalue(res, 0, 1)), "head_hlc",
		      PQgetisnull(res, 0, 5) ? json_null() : json_string(PQgetvalue(res, 0, 5)), "horizon",
		      (json_int_t)atoll(PQgetvalue(res, 0, 2)), "purged_before",
		      PQgetisnull(res, 0, 4) ? json_null() : json_string(PQgetvalue(res, 0, 4)),
		      "schema_version", atoi(PQgetvalue(res, 0, 3)), "relay_time", (json_int_t)now_unix_ms(),
		      "max_skew_ms", (json_int_t)cfg.max_skew_ms);
	reply_json(out, 200, j);
	PQclear(res);
	return HANDLER_DONE;
}
