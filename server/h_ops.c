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

/* Libraries listed by lag on /metrics: a bounded number of label values */
#define METRICS_LIBRARIES "20"

int h_metrics(struct req *r, struct reply *out)
{
	const char *params[1] = {METRICS_LIBRARIES};
	char *text = metrics_render();
	struct reply scratch = {0};
	PGresult *res;
	sr_buf b = {0};
	int i;

	sr_buf_puts(&b, text);
	free(text);
	/* a database that does not answer leaves the process metrics readable */
	res = db_run(&scratch, ST_METRICS_LAG, params);
	free(scratch.body);
	sr_buf_printf(&b,
		      "# HELP syncrelay_library_head Highest committed seq of the " METRICS_LIBRARIES
		      " libraries furthest behind.\n# TYPE syncrelay_library_head gauge\n");
	for (i = 0; res && i < PQntuples(res); i++)
		sr_buf_printf(&b, "syncrelay_library_head{library=\"%s\"} %s\n", PQgetvalue(res, i, 0),
			      PQgetvalue(res, i, 1));
	sr_buf_printf(&b, "# HELP syncrelay_library_lag_changes Changes the slowest live device of the library has "
			  "not acknowledged.\n# TYPE syncrelay_library_lag_changes gauge\n");
	for (i = 0; res && i < PQntuples(res); i++)
		sr_buf_printf(&b, "syncrelay_library_lag_changes{library=\"%s\"} %s\n", PQgetvalue(res, i, 0),
			      PQgetvalue(res, i, 2));
	sr_buf_printf(&b, "# HELP syncrelay_metrics_db_up 1 when /metrics could read the libraries.\n"
			  "# TYPE syncrelay_metrics_db_up gauge\nsyncrelay_metrics_db_up %d\n", res ? 1 : 0);
	PQclear(res);
	reply_text(out, 200, "text/plain; version=0.0.4", sr_buf_steal(&b));
	return HANDLER_DONE;
}
