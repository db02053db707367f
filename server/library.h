/* A library's row as handlers need it: head, horizon, schema. */
#ifndef SR_LIBRARY_H
#define SR_LIBRARY_H

#include <libpq-fe.h>

#include "http.h"
#include "schema_model.h"

struct library {
	long long head, horizon;
	char horizon_hlc[SR_HLC_LEN + 1]; /* the change at seq = horizon, "" when unknown */
	int schema_version;
	struct sm_schema schema;
};

enum {
	LIBRARY_LOCK = 1,   /* SELECT … FOR UPDATE: the caller's transaction orders pushes */
	LIBRARY_SCHEMA = 2, /* parse the schema into l->schema (pull and ack need only head) */
};

/* Reads library lib on c. 0, or -1 with out filled (404 library-not-found, database
 * problems). Release with library_free(). */
int library_load(PGconn *c, const char *lib, int flags, struct library *out_lib, struct reply *out);
void library_free(struct library *l);
/* The schema model named by a query argument, or NULL with a 400/422 in out. */
const struct sm_model *library_model(const struct library *l, const char *name, struct reply *out);
/* Checks an optional owner argument against model m's kind: *owner is "" when absent.
 * 0, or -1 with a 400 in out (an owner for a shared model, a malformed UUID). */
int library_owner(const struct sm_model *m, const char *arg, const char **owner, struct reply *out);

#endif
