/* Devices: enroll (join or admin token), list with lag, revoke. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "db.h"
#include "handlers.h"

int h_device_enroll(struct req *r, struct reply *out)
{
	json_t *body = req_json(r, out);
	const char *dev, *name;
	char token[TOKEN_HEX + 4], hash[65];
	PGconn *c = NULL;
	PGresult *res = NULL;

	if (!body)
		return HANDLER_DONE;
	dev = json_string_value(json_object_get(body, "device_id"));
	name = json_object_get(body, "name") ? json_string_value(json_object_get(body, "name")) : "";
	if (!dev || !sr_uuid_valid(dev, strlen(dev))) {
		reply_problem(out, 400, "bad-request", "\"device_id\" must be a canonical lowercase UUID");
		goto cleanup;
	}
	if (!name || strlen(name) > 200) {
		reply_problem(out, 400, "bad-request", "\"name\" must be a string of at most 200 bytes");
		goto cleanup;
	}
	if (auth_token_new(token)) {
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
		const char *p[1] = {r->lib};
		if (!(res = db_step(c, ST_LIB_GET, p, out)))
			goto cleanup;
	}
	if (PQntuples(res) != 1) {
		reply_problem(out, 404, "library-not-found", "library %s does not exist", r->lib);
		goto cleanup;
	}
	PQclear(res);
	{
		const char *p[3] = {r->lib, dev, name};
		if (!(res = db_step(c, ST_DEVICE_INSERT, p, out)))
			goto cleanup;
	}
	if (PQntuples(res) != 1) {
		reply_problem(out, 409, "device-exists", "device %s is already enrolled in this library", dev);
		goto cleanup;
	}
	PQclear(res);
	{
		const char *p[4] = {hash, "device", r->lib, dev};
		if (!(res = db_step(c, ST_TOKEN_INSERT, p, out)))
			goto cleanup;
	}
	if (db_commit(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	reply_json(out, 201, json_pack("{s:s, s:s}", "device_id", dev, "token", token));
cleanup:
	PQclear(res);
	db_release(c);
	json_decref(body);
	return HANDLER_DONE;
}

int h_device_list(struct req *r, struct reply *out)
{
	const char *p[1] = {r->lib};
	PGconn *c = db_acquire();
	PGresult *res = NULL;
	json_t *arr;
	int i;

	if (!c) {
		db_problem(out, NULL, NULL);
		return HANDLER_DONE;
	}
	if (!(res = db_step(c, ST_LIB_GET, p, out)))
		goto cleanup;
	if (PQntuples(res) != 1) {
		reply_problem(out, 404, "library-not-found", "library %s does not exist", r->lib);
		goto cleanup;
	}
	PQclear(res);
	if (!(res = db_step(c, ST_DEVICE_LIST, p, out)))
		goto cleanup;
	arr = json_array();
	for (i = 0; i < PQntuples(res); i++)
		json_array_append_new(
			arr, json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:b}", "device_id",
				       PQgetvalue(res, i, 0), "name", PQgetvalue(res, i, 1), "enrolled_at",
				       PQgetvalue(res, i, 2), "last_seen",
				       PQgetisnull(res, i, 3) ? json_null() : json_string(PQgetvalue(res, i, 3)),
				       "acked_seq", (json_int_t)atoll(PQgetvalue(res, i, 4)), "lag",
				       (json_int_t)atoll(PQgetvalue(res, i, 5)), "revoked",
				       PQgetvalue(res, i, 6)[0] == 't'));
	reply_json(out, 200, json_pack("{s:o}", "devices", arr));
cleanup:
	PQclear(res);
	db_release(c);
	return HANDLER_DONE;
}

int h_device_revoke(struct req *r, struct reply *out)
{
	const char *p[2] = {r->lib, r->dev};
	PGconn *c;
	PGresult *res = NULL;

	if (r->auth.kind == AUTH_DEVICE && strcmp(r->auth.device_id, r->dev)) {
		reply_problem(out, 403, "forbidden", "a device may revoke only itself");
		return HANDLER_DONE;
	}
	c = db_acquire();
	if (!c || db_begin(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	if (!(res = db_step(c, ST_DEVICE_REVOKE, p, out)))
		goto cleanup;
	if (PQntuples(res) != 1) {
		/* already revoked (its time stays), or not enrolled */
		PQclear(res);
		if (!(res = db_step(c, ST_DEVICE_GET, p, out)))
			goto cleanup;
	}
	if (PQntuples(res) != 1) {
		reply_problem(out, 404, "device-not-found", "device %s is not enrolled in library %s",
			      r->dev, r->lib);
		goto cleanup;
	}
	PQclear(res);
	if (!(res = db_step(c, ST_TOKEN_REVOKE_DEVICE, p, out)))
		goto cleanup;
	PQclear(res);
	/* the notification wakes the library's held polls on every relay: each is authenticated
	 * again when it resumes, so the revoked device's end at once with 401. A statement of its
	 * own, touching no table: on Citus a NOTIFY beside a distributed write would run on a
	 * worker (where no relay listens) and block its commit */
	if (!(res = db_step(c, ST_PUSH_NOTIFY, p, out)))
		goto cleanup;
	if (db_commit(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	auth_cache_clear();
	reply_json(out, 200, json_pack("{s:s, s:b}", "device_id", r->dev, "revoked", 1));
cleanup:
	PQclear(res);
	db_release(c);
	return HANDLER_DONE;
}
