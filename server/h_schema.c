/* Library schema: PUT (extend-only, idempotent) and GET. */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "db.h"
#include "handlers.h"
#include "library.h"

static int problem_for(struct reply *out, int rc, const char *err)
{
	switch (rc) {
	case SM_UNKNOWN_MODEL:
		reply_problem(out, 422, "unknown-model", "%s", err);
		break;
	case SM_CYCLE:
		reply_problem(out, 422, "schema-cycle", "%s", err);
		break;
	case SM_CONFLICT:
		reply_problem(out, 409, "schema-conflict", "%s", err);
		break;
	default:
		reply_problem(out, 400, "bad-request", "%s", err);
	}
	return HANDLER_DONE;
}

/* 1 with a 413 in out when models or one model's refs exceed their caps. */
static int schema_too_large(const json_t *models, struct reply *out)
{
	size_t i;

	if ((int64_t)json_array_size(models) > cfg.max_models) {
		reply_problem(out, 413, "too-large", "a schema holds at most %lld models, this one %zu",
			      (long long)cfg.max_models, json_array_size(models));
		return 1;
	}
	for (i = 0; i < json_array_size(models); i++) {
		const json_t *refs = json_object_get(json_array_get(models, i), "refs");

		if ((int64_t)json_array_size(refs) > cfg.max_refs) {
			reply_problem(out, 413, "too-large", "a model holds at most %lld refs, model %zu holds %zu",
				      (long long)cfg.max_refs, i, json_array_size(refs));
			return 1;
		}
	}
	return 0;
}

int h_schema_put(struct req *r, struct reply *out)
{
	json_t *body = req_json(r, out), *order = NULL;
	struct sm_schema next = {0};
	struct library l = {0};
	char err[512] = "";
	PGconn *c = NULL;
	PGresult *res = NULL;
	int rc, same, version;

	if (!body)
		return HANDLER_DONE;
	/* ordering is quadratic in models and refs and runs again on every push: bound both */
	if (schema_too_large(json_object_get(body, "models"), out))
		goto cleanup;
	rc = sm_parse(&next, json_object_get(body, "models"), err, sizeof err);
	if (rc) {
		problem_for(out, rc, err);
		goto cleanup;
	}
	order = sm_order_json(&next);
	if (!order) {
		int *ord = calloc((size_t)next.n + 1, sizeof *ord);
		if (ord)
			sm_order(&next, ord, err, sizeof err);
		free(ord);
		problem_for(out, SM_CYCLE, err);
		goto cleanup;
	}
	c = db_acquire();
	if (!c || db_begin(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	if (library_load(c, r->lib, LIBRARY_LOCK | LIBRARY_SCHEMA, &l, out))
		goto cleanup;
	version = l.schema_version;
	rc = sm_check_extends(&l.schema, &next, &same, err, sizeof err);
	if (rc) {
		problem_for(out, rc, err);
		goto cleanup;
	}
	if (!same) {
		char ver[16];
		json_t *models = sm_models_json(&next);
		char *text = json_dumps(models, JSON_COMPACT);
		const char *p3[3] = {r->lib, ver, text};

		json_decref(models);
		version++;
		snprintf(ver, sizeof ver, "%d", version);
		res = text ? db_step(c, ST_SCHEMA_SET, p3, out) : NULL;
		free(text);
		if (!res) {
			if (!out->body)
				reply_problem(out, 500, "internal", "out of memory");
			goto cleanup;
		}
	}
	if (db_commit(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	reply_json(out, 200, json_pack("{s:i, s:O}", "version", version, "order", order));
cleanup:
	PQclear(res);
	db_release(c);
	sm_free(&next);
	library_free(&l);
	json_decref(order);
	json_decref(body);
	return HANDLER_DONE;
}

int h_schema_get(struct req *r, struct reply *out)
{
	PGconn *c = db_acquire();
	struct library l;

	if (!c) {
		db_problem(out, NULL, NULL);
		return HANDLER_DONE;
	}
	if (!library_load(c, r->lib, LIBRARY_SCHEMA, &l, out))
		reply_json(out, 200, json_pack("{s:i, s:o, s:o}", "version", l.schema_version, "models",
					       sm_models_json(&l.schema), "order", sm_order_json(&l.schema)));
	library_free(&l);
	db_release(c);
	return HANDLER_DONE;
}
