/* Schema migrations, compiled in from the schema/ folder and applied at start. */
#ifndef SR_MIGRATE_H
#define SR_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

struct migration {
	int version;
	const char *name;
	const char *sql;
};

extern const struct migration migrations[];
extern const int migrations_count;

/* Applies every pending migration, each in its own transaction, under a PostgreSQL
 * advisory lock so that relays starting at once take turns. 0 on success. */
int migrate_apply(const char *conninfo);
/* The next statement of the SQL text at *pos (comments and quoted text skipped over
 * correctly, no trailing ';'): its start, with its length in *len, and *pos moved past it;
 * NULL when only whitespace and comments are left. */
const char *migrate_next_statement(const char **pos, size_t *len);
/* 0 on plain PostgreSQL and on a Citus coordinator; -1 after logging why on a Citus worker
 * node (or when the node cannot be told). */
int migrate_check_node(PGconn *c);
/* Highest compiled-in migration version. */
int migrate_latest(void);

#endif
