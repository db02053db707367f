/* Records: current-state pages of one model or scope, for backfill and repair. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "handlers.h"
#include "library.h"

int h_records(struct req *r, struct reply *out)
{
	const char *after = req_arg(r, "after"), *owner;
	int include_deleted = req_arg_flag(r, "include_deleted");
	long long bucket, limit;
	char s_bucket[8], s_limit[16];
	const struct sm_model *m;
	struct library l = {0};
	PGconn *c = NULL;
	PGresult *res = NULL;
	sr_buf b = {0};
	int i, n;

	if (req_arg_int(r, "bucket", -1, 0, SR_BUCKETS - 1, &bucket, out) ||
	    req_arg_int(r, "limit", 1000, 1, 10000, &limit, out))
		return HANDLER_DONE;
	if (after && *after && !sr_uuid_valid(after, strlen(after))) {
		reply_problem(out, 400, "bad-request", "query parameter \"after\" must be a record_id");
		return HANDLER_DONE;
	}
	c = db_acquire();
	if (!c) {
		db_problem(out, NULL, NULL);
		return HANDLER_DONE;
	}
	if (db_begin_ordered(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	if (library_load(c, r->lib, LIBRARY_SCHEMA, &l, out) || !(m = library_model(&l, req_arg(r, "model"), out)) ||
	    library_owner(m, req_arg(r, "owner"), &owner, out))
		goto cleanup;
	if (bucket >= 0 && m->device_owned && !*owner) {
		reply_problem(out, 400, "bad-request", "a bucket of device_owned model \"%s\" needs \"owner\"",
			      m->name);
		goto cleanup;
	}
	snprintf(s_bucket, sizeof s_bucket, "%lld", bucket);
	snprintf(s_limit, sizeof s_limit, "%lld", limit);
	if (bucket >= 0) {
		const char *p[7] = {r->lib, m->name, owner, s_bucket, after ? after : "",
				    include_deleted ? "t" : "f", s_limit};
		res = db_step(c, ST_RECORDS_BUCKET, p, out);
	} else {
		const char *p[6] = {r->lib, m->name, owner, after ? after : "", include_deleted ? "t" : "f",
				    s_limit};
		res = db_step(c, ST_RECORDS_PAGE, p, out);
	}
	if (!res)
		goto cleanup;
	n = PQntuples(res);
	sr_buf_puts(&b, "{\"records\":[");
	for (i = 0; i < n; i++) {
		if (i)
			sr_buf_putc(&b, ',');
		sr_record_write(&b, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
				PQgetvalue(res, i, 3), PQgetvalue(res, i, 4)[0] == 't',
				PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5));
	}
	sr_buf_puts(&b, "],\"next_after\":");
	if (n == limit)
		sr_buf_printf(&b, "\"%s\"", PQgetvalue(res, n - 1, 1));
	else
		sr_buf_puts(&b, "null");
	sr_buf_printf(&b, ",\"head\":%lld}", l.head);
	reply_buf(out, 200, &b);
cleanup:
	sr_buf_free(&b);
	PQclear(res);
	library_free(&l);
	db_release(c);
	return HANDLER_DONE;
}
