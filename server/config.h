/* Relay configuration: one table of settings, each from a flag or the environment. */
#ifndef SR_CONFIG_H
#define SR_CONFIG_H

#include <stdint.h>

struct config {
	char *database_url;
	char *listen;        /* host:port */
	char *admin_token;
	int64_t max_body_bytes;
	int64_t max_batch;
	int64_t max_skew_ms;
	int64_t threads;
	int64_t db_pool;
	int64_t max_wait_s;
	int64_t shutdown_grace_s;
	int64_t log_level;
	int distribute;      /* --distribute: spread the database over Citus, then exit */
	int64_t retention_s;        /* compaction: 0 keeps every change */
	int64_t compact_interval_s; /* seconds between background passes */
};

/* the longest retention (100 years: its cutoff stays within PostgreSQL's timestamps) */
#define CONFIG_RETENTION_MAX INT64_C(3153600000)

extern struct config cfg;

/* Fills cfg from defaults, then the environment, then argv. Returns 0, or -1 after
 * printing a one-line reason (or 1 after printing usage for --help). */
int config_load(int argc, char **argv);
void config_usage(const char *prog);

#endif
