/* Join tokens: the admin rotates a library's join token (the old one stops at once) or
 * revokes it (enrolment closed until the next rotation). */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "db.h"
#include "handlers.h"

/* Revokes the library's join tokens and, when issue, stores a fresh one in token; one
 * transaction, the library row locked so that two rotations never both leave a token. */
static void join_token_change(struct req *r, struct reply *out, int issue)
{
	char token[TOKEN_HEX + 4] = "", hash[65];
	const char *lib[1] = {r->lib};
	PGconn *c = NULL;
	PGresult *res = NULL;
	long revoked;

	if (issue && auth_token_new(token)) {
		reply_problem(out, 500, "internal", "could not read random bytes");
		return;
	}
	c = db_acquire();
	if (!c || db_begin(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	if (!(res = db_step(c, ST_LIB_LOCK, lib, out)))
		goto cleanup;
	if (PQntuples(res) != 1) {
		reply_problem(out, 404, "library-not-found", "library %s does not exist", r->lib);
		goto cleanup;
	}
	PQclear(res);
	if (!(res = db_step(c, ST_TOKEN_REVOKE_JOIN, lib, out)))
		goto cleanup;
	revoked = atol(PQcmdTuples(res));
	PQclear(res);
	res = NULL;
	if (issue) {
		const char *p[4] = {hash, "join", r->lib, NULL};

		auth_token_hash(hash, token);
		if (!(res = db_step(c, ST_TOKEN_INSERT, p, out)))
			goto cleanup;
	}
	if (db_commit(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	if (issue)
		reply_json(out, 201, json_pack("{s:s, s:s, s:i}", "library_id", r->lib, "join_token", token,
					       "revoked", (int)revoked));
	else
		reply_json(out, 200, json_pack("{s:s, s:i}", "library_id", r->lib, "revoked", (int)revoked));
cleanup:
	PQclear(res);
	db_release(c);
}

int h_join_token_rotate(struct req *r, struct reply *out)
{
	join_token_change(r, out, 1);
	return HANDLER_DONE;
}

int h_join_token_revoke(struct req *r, struct reply *out)
{
	join_token_change(r, out, 0);
	return HANDLER_DONE;
}
