/* Library rows: one read (optionally locking) shared by every handler. */
#include "library.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

int library_load(PGconn *c, const char *lib, int flags, struct library *l, struct reply *out)
{
	const char *p[1] = {lib};
	PGresult *res;
	json_t *models;
	char err[256];
	int rc = -1;

	memset(l, 0, sizeof *l);
	res = db_step(c, flags & LIBRARY_LOCK ? ST_LIB_LOCK : ST_LIB_GET, p, out);
	if (!res)
		return -1;
	if (PQntuples(res) != 1) {
		reply_problem(out, 404, "library-not-found", "library %s does not exist", lib);
		goto cleanup;
	}
	l->head = atoll(PQgetvalue(res, 0, 1));
	l->horizon = atoll(PQgetvalue(res, 0, 2));
	snprintf(l->horizon_hlc, sizeof l->horizon_hlc, "%s", PQgetvalue(res, 0, 5));
	l->schema_version = atoi(PQgetvalue(res, 0, 3));
	if (!(flags & LIBRARY_SCHEMA)) {
		rc = 0;
		goto cleanup;
	}
	models = json_loads(PQgetvalue(res, 0, 4), 0, NULL);
	if (sm_parse(&l->schema, models, err, sizeof err))
		reply_problem(out, 500, "internal", "the stored schema is unreadable: %s", err);
	else
		rc = 0;
	json_decref(models);
cleanup:
	PQclear(res);
	return rc;
}

void library_free(struct library *l)
{
	if (l)
		sm_free(&l->schema);
}

const struct sm_model *library_model(const struct library *l, const char *name, struct reply *out)
{
	const struct sm_model *m;

	if (!name || !sr_model_name_valid(name)) {
		reply_problem(out, 400, "bad-request", "query parameter \"model\" must be a model name");
		return NULL;
	}
	m = sm_find(&l->schema, name);
	if (!m)
		reply_problem(out, 422, "unknown-model", "model \"%s\" is not in the library schema", name);
	return m;
}

int library_owner(const struct sm_model *m, const char *arg, const char **owner, struct reply *out)
{
	*owner = arg && *arg ? arg : "";
	if (!**owner)
		return 0;
	if (!m->device_owned) {
		reply_problem(out, 400, "bad-request", "model \"%s\" is shared: its records have no owner",
			      m->name);
		return -1;
	}
	if (!sr_uuid_valid(*owner, strlen(*owner))) {
		reply_problem(out, 400, "bad-request", "query parameter \"owner\" must be a canonical UUID");
		return -1;
	}
	return 0;
}
