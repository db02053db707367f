/* Compaction on demand: POST /v1/libraries/{lib}/compact (admin). */
#include <stdlib.h>
#include <string.h>

#include "compact.h"
#include "config.h"
#include "db.h"
#include "handlers.h"

/* Optional body {"retention": seconds, "dry_run": bool}; nothing else is accepted. */
static int compact_args(struct req *r, long long *retention, int *dry_run, struct reply *out)
{
	json_t *body, *v;
	const char *k;
	int rc = -1;

	*retention = cfg.retention_s;
	*dry_run = 0;
	if (!r->body_len)
		return 0;
	if (!(body = req_json(r, out)))
		return -1;
	json_object_foreach(body, k, v) {
		if (!strcmp(k, "retention")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > CONFIG_RETENTION_MAX) {
				reply_problem(out, 400, "bad-request",
					      "\"retention\" must be an integer number of seconds from 0 to %lld (100 years)",
					      (long long)CONFIG_RETENTION_MAX);
				goto cleanup;
			}
			*retention = json_integer_value(v);
		} else if (!strcmp(k, "dry_run")) {
			if (!json_is_boolean(v)) {
				reply_problem(out, 400, "bad-request", "\"dry_run\" must be true or false");
				goto cleanup;
			}
			*dry_run = json_is_true(v);
		} else {
			reply_problem(out, 400, "bad-request",
				      "unknown member \"%s\" (expected \"retention\" and \"dry_run\")", k);
			goto cleanup;
		}
	}
	rc = 0;
cleanup:
	json_decref(body);
	return rc;
}

int h_compact(struct req *r, struct reply *out)
{
	struct compact_result res;
	long long retention;
	int dry_run;
	PGconn *c;

	if (compact_args(r, &retention, &dry_run, out))
		return HANDLER_DONE;
	c = db_acquire();
	if (!c) {
		db_problem(out, NULL, NULL);
		return HANDLER_DONE;
	}
	if (compact_library(c, r->lib, retention, dry_run, &res, out) == 0)
		reply_json(out, 200,
			   json_pack("{s:I, s:I, s:I, s:I, s:I, s:b}", "changes_removed",
				     (json_int_t)res.changes_removed, "tombstones_purged",
				     (json_int_t)res.tombstones_purged, "horizon", (json_int_t)res.horizon, "head",
				     (json_int_t)res.head, "retention", (json_int_t)retention, "dry_run", dry_run));
	db_release(c);
	return HANDLER_DONE;
}
