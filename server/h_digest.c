/* Digests: per-scope and per-bucket counts, hashes and watermarks, kept by the push. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "handlers.h"
#include "library.h"

static void put_owner(sr_buf *b, const char *owner)
{
	if (*owner)
		sr_buf_printf(b, "\"%s\"", owner);
	else
		sr_buf_puts(b, "null");
}

static void put_hash(sr_buf *b, const char *signed_text)
{
	char hex[17];

	sr_hash_hex(hex, (uint64_t)strtoll(signed_text, NULL, 10));
	sr_buf_printf(b, "\"%s\"", hex);
}

int h_digest(struct req *r, struct reply *out)
{
	const char *model = req_arg(r, "model"), *owner = req_arg(r, "owner");
	const struct sm_model *m = NULL;
	struct library l = {0};
	PGconn *c = db_acquire();
	PGresult *res = NULL;
	sr_buf b = {0};
	int i;

	if (!c) {
		db_problem(out, NULL, NULL);
		return HANDLER_DONE;
	}
	if (db_begin_snapshot(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	if (library_load(c, r->lib, LIBRARY_SCHEMA, &l, out))
		goto cleanup;
	if (model && !(m = library_model(&l, model, out)))
		goto cleanup;
	if (owner && *owner && !sr_uuid_valid(owner, strlen(owner))) {
		reply_problem(out, 400, "bad-request", "query parameter \"owner\" must be a canonical UUID");
		goto cleanup;
	}
	if (m && library_owner(m, owner, &owner, out))
		goto cleanup;
	{
		const char *p[3] = {r->lib, m ? m->name : NULL, owner && *owner ? owner : NULL};
		if (!(res = db_step(c, ST_DIGEST, p, out)))
			goto cleanup;
	}
	sr_buf_puts(&b, "{\"scopes\":[");
	for (i = 0; i < PQntuples(res); i++) {
		sr_buf_printf(&b, "%s{\"model\":\"%s\",\"owner\":", i ? "," : "", PQgetvalue(res, i, 0));
		put_owner(&b, PQgetvalue(res, i, 1));
		sr_buf_printf(&b, ",\"count\":%s,\"hash\":", PQgetvalue(res, i, 2));
		put_hash(&b, PQgetvalue(res, i, 3));
		sr_buf_puts(&b, ",\"watermark\":");
		if (PQgetisnull(res, i, 4))
			sr_buf_puts(&b, "null");
		else
			sr_buf_printf(&b, "\"%s\"", PQgetvalue(res, i, 4));
		sr_buf_putc(&b, '}');
	}
	sr_buf_printf(&b, "],\"head\":%lld}", l.head);
	reply_buf(out, 200, &b);
cleanup:
	sr_buf_free(&b);
	PQclear(res);
	library_free(&l);
	db_release(c);
	return HANDLER_DONE;
}

int h_digest_buckets(struct req *r, struct reply *out)
{
	const char *owner;
	const struct sm_model *m;
	struct library l = {0};
	PGconn *c = db_acquire();
	PGresult *res = NULL;
	sr_buf b = {0};
	int i;

	if (!c) {
		db_problem(out, NULL, NULL);
		return HANDLER_DONE;
	}
	if (library_load(c, r->lib, LIBRARY_SCHEMA, &l, out) || !(m = library_model(&l, req_arg(r, "model"), out)) ||
	    library_owner(m, req_arg(r, "owner"), &owner, out))
		goto cleanup;
	if (m->device_owned && !*owner) {
		reply_problem(out, 400, "bad-request", "device_owned model \"%s\" needs \"owner\"", m->name);
		goto cleanup;
	}
	{
		const char *p[3] = {r->lib, m->name, owner};
		if (!(res = db_step(c, ST_DIGEST_BUCKETS, p, out)))
			goto cleanup;
	}
	sr_buf_printf(&b, "{\"model\":\"%s\",\"owner\":", m->name);
	put_owner(&b, owner);
	sr_buf_puts(&b, ",\"buckets\":[");
	for (i = 0; i < PQntuples(res); i++) {
		sr_buf_printf(&b, "%s{\"bucket\":%s,\"count\":%s,\"hash\":", i ? "," : "",
			      PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
		put_hash(&b, PQgetvalue(res, i, 2));
		sr_buf_putc(&b, '}');
	}
	sr_buf_puts(&b, "]}");
	reply_buf(out, 200, &b);
cleanup:
	sr_buf_free(&b);
	PQclear(res);
	library_free(&l);
	db_release(c);
	return HANDLER_DONE;
}
