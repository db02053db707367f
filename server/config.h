/* Relay configuration: one table of settings, each from a config file, the environment or
 * a flag; SIGHUP re-reads them and applies those that can change live. */
#ifndef SR_CONFIG_H
#define SR_CONFIG_H

#include <stddef.h>
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
	char *config_file;   /* --config / SYNCRELAY_CONFIG, or NULL */
	char *tls_cert;      /* PEM certificate (chain) file; TLS is on when set */
	char *tls_key;       /* PEM private key file */
	char *log_format;    /* "text" or "json" */
	char *cors_origins;  /* comma-separated allowed origins, "*", or NULL (CORS off) */
	int64_t db_wait_s;   /* how long start-up retries the database */
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

/* the longest retention (100 years: its cutoff stays within PostgreSQL's timestamps) */
#define CONFIG_RETENTION_MAX INT64_C(3153600000)

extern struct config cfg;

/* Fills cfg from defaults, then the config file (--config FILE or SYNCRELAY_CONFIG), then
 * the environment, then argv. Returns 0, or -1 after printing a one-line reason (or 1 after
 * printing usage for --help). */
int config_load(int argc, char **argv);
void config_usage(const char *prog);
/* SIGHUP: builds the configuration again from the same sources; applies the settings that
 * can change live and logs each change, logs those that need a restart and keeps them. On
 * any error nothing changes (logged). Returns the number of settings changed, or -1. */
int config_reload(void);
/* The value of a setting named by its environment name, as text (for tests and logs);
 * secrets read as "(set)". NULL for an unknown name or an unset string. */
const char *config_show(const char *env, char *buf, size_t n);

#endif
