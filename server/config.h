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
	int64_t db_connect_timeout_s;
	int64_t lock_timeout_ms;
	int64_t statement_timeout_ms;
	int64_t max_connections;
	int64_t max_connections_per_ip;
	int64_t idle_timeout_s;
	int64_t rate_per_s;
	int64_t rate_burst;
	int64_t max_polls_per_device;
	int64_t max_models;
	int64_t max_refs;
	int64_t workers;
	int64_t workers_per_library;
};

extern struct config cfg;

/* Fills cfg from defaults, then the environment, then argv. Returns 0, or -1 after
 * printing a one-line reason (or 1 after printing usage for --help). */
int config_load(int argc, char **argv);
void config_usage(const char *prog);

#endif
