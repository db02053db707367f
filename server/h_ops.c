/* Operations: liveness, readiness, metrics. */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "handlers.h"
#include "metrics.h"
#include "migrate.h"
#include "notify.h"

int h_healthz(struct req *r, struct reply *out)
{
	reply_json(out, 200, json_pack("{s:s}", "status", "ok"));
	return HANDLER_DONE;
}

int h_readyz(struct req *r, struct reply *out)
{
	PGresult *res = db_run(out, ST_READY, NULL);

	if (!res) {
		free(out->body);
		out->body = NULL;
		reply_problem(out, 503, "unavailable", "the database is unreachable");
		return HANDLER_DONE;
	}
	if (!notify_connected())
		reply_problem(out, 503, "unavailable", "the notification listener is reconnecting to the database");
	else if (atoi(PQgetvalue(res, 0, 0)) < migrate_latest())
		reply_problem(out, 503, "unavailable", "database schema is at version %s, the relay needs %d",
			      PQgetvalue(res, 0, 0), migrate_latest());
	else
		reply_json(out, 200, json_pack("{s:s, s:i}", "status", "ready", "schema", migrate_latest()));
	PQclear(res);
	return HANDLER_DONE;
}

int h_metrics(struct req *r, struct reply *out)
{
	reply_text(out, 200, "text/plain; version=0.0.4", metrics_render());
	return HANDLER_DONE;
}
