/* Schema migrations, compiled in from the schema/ folder and applied at start. */
#ifndef SR_MIGRATE_H
#define SR_MIGRATE_H

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
/* Highest compiled-in migration version. */
int migrate_latest(void);

#endif
