/* syncrelayd --distribute: the database's tables spread over a Citus cluster by library. */
#ifndef SR_DISTRIBUTE_H
#define SR_DISTRIBUTE_H

/* Applies pending migrations, then, on a Citus coordinator, distributes every table with a
 * library_id column by library_id, co-located with libraries, and makes tokens and
 * schema_migrations reference tables; prints a one-line summary. Idempotent. 0 on success,
 * 1 after logging why (no citus extension, a worker node, a failed step). */
int distribute_run(const char *conninfo);

#endif
