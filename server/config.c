/* Relay configuration: defaults, environment variables and flags, from one table. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct config cfg;

enum ptype { P_STR, P_INT };

struct param {
	const char *flag;
	const char *env;
	enum ptype type;
	size_t offset;
	const char *def;
	int64_t min, max;
	const char *help;
};

#define OFF(f) offsetof(struct config, f)
static const struct param params[] = {
	{"--database-url", "DATABASE_URL", P_STR, OFF(database_url), NULL, 0, 0,
	 "libpq conninfo or URI of the database"},
	{"--listen", "SYNCRELAY_LISTEN", P_STR, OFF(listen), "127.0.0.1:8080", 0, 0,
	 "host:port to listen on (port 0 picks a free one)"},
	{"--admin-token", "SYNCRELAY_ADMIN_TOKEN", P_STR, OFF(admin_token), NULL, 0, 0,
	 "operator token (admin endpoints are refused when unset)"},
	{"--max-body-bytes", "SYNCRELAY_MAX_BODY_BYTES", P_INT, OFF(max_body_bytes), "16777216", 1024,
	 INT64_C(1) << 32, "largest request body accepted"},
	{"--max-batch", "SYNCRELAY_MAX_BATCH", P_INT, OFF(max_batch), "10000", 1, 1000000,
	 "most changes in one push"},
	{"--max-skew-ms", "SYNCRELAY_MAX_SKEW_MS", P_INT, OFF(max_skew_ms), "300000", 0,
	 INT64_C(1) << 40, "how far an HLC may run ahead of the relay clock"},
	{"--threads", "SYNCRELAY_THREADS", P_INT, OFF(threads), "8", 1, 256, "HTTP worker threads"},
	{"--db-pool", "SYNCRELAY_DB_POOL", P_INT, OFF(db_pool), "8", 1, 256,
	 "database connections in the pool"},
	{"--max-wait", "SYNCRELAY_MAX_WAIT", P_INT, OFF(max_wait_s), "60", 0, 3600,
	 "longest long-poll hold in seconds"},
	{"--shutdown-grace", "SYNCRELAY_SHUTDOWN_GRACE", P_INT, OFF(shutdown_grace_s), "30", 0, 3600,
	 "seconds SIGTERM waits for in-flight requests"},
	{"--log-level", "SYNCRELAY_LOG_LEVEL", P_INT, OFF(log_level), "2", 0, 3,
	 "0 error, 1 warn, 2 info, 3 debug"},
	{"--db-connect-timeout", "SYNCRELAY_DB_CONNECT_TIMEOUT", P_INT, OFF(db_connect_timeout_s), "5", 2, 600,
	 "seconds one database (re)connect may take"},
	{"--lock-timeout-ms", "SYNCRELAY_LOCK_TIMEOUT_MS", P_INT, OFF(lock_timeout_ms), "10000", 1,
	 INT64_C(3600000), "longest wait for a row lock (a library's, during a push); then 503"},
	{"--statement-timeout-ms", "SYNCRELAY_STATEMENT_TIMEOUT_MS", P_INT, OFF(statement_timeout_ms), "60000", 1,
	 INT64_C(3600000), "longest a database statement may run; then 503"},
	{"--max-connections", "SYNCRELAY_MAX_CONNECTIONS", P_INT, OFF(max_connections), "1000", 16, 1000000,
	 "open connections served; a few more get a quick 503"},
	{"--max-connections-per-ip", "SYNCRELAY_MAX_CONNECTIONS_PER_IP", P_INT, OFF(max_connections_per_ip), "512",
	 1, 1000000, "open connections from one address; more are closed at once"},
	{"--idle-timeout", "SYNCRELAY_IDLE_TIMEOUT", P_INT, OFF(idle_timeout_s), "30", 1, 3600,
	 "seconds a connection may stay silent (held polls excepted)"},
	{"--rate-per-s", "SYNCRELAY_RATE_PER_S", P_INT, OFF(rate_per_s), "100", 1, 1000000,
	 "requests a second one device may make on average; then 429"},
	{"--rate-burst", "SYNCRELAY_RATE_BURST", P_INT, OFF(rate_burst), "200", 1, 1000000,
	 "requests one device may make at once above its rate"},
	{"--max-polls-per-device", "SYNCRELAY_MAX_POLLS_PER_DEVICE", P_INT, OFF(max_polls_per_device), "8", 1, 100000,
	 "long-polls one device may hold at once; a further one is answered at once"},
	{"--max-models", "SYNCRELAY_MAX_MODELS", P_INT, OFF(max_models), "256", 1, 100000,
	 "models in a library schema; more are 413"},
	{"--max-refs", "SYNCRELAY_MAX_REFS", P_INT, OFF(max_refs), "64", 0, 100000,
	 "references of one model; more are 413"},
	{"--workers", "SYNCRELAY_WORKERS", P_INT, OFF(workers), "6", 1, 256,
	 "request workers running database work (keep below --db-pool: authentication needs some)"},
	{"--workers-per-library", "SYNCRELAY_WORKERS_PER_LIBRARY", P_INT, OFF(workers_per_library), "2", 1, 256,
	 "requests of one library running at once; the rest wait their turn"},
};
#define NPARAMS (sizeof params / sizeof params[0])

static int set_param(const struct param *p, const char *val)
{
	char *end;
	long long v;

	if (p->type == P_STR) {
		char **dst = (char **)((char *)&cfg + p->offset);
		free(*dst);
		*dst = val ? strdup(val) : NULL;
		return 0;
	}
	errno = 0;
	v = strtoll(val, &end, 10);
	if (errno || end == val || *end || v < p->min || v > p->max) {
		fprintf(stderr, "syncrelayd: invalid value \"%s\" for %s (%s): expected an integer from %lld to %lld\n",
			val, p->flag, p->env, (long long)p->min, (long long)p->max);
		return -1;
	}
	*(int64_t *)((char *)&cfg + p->offset) = v;
	return 0;
}

void config_usage(const char *prog)
{
	size_t i;

	printf("usage: %s [options]\n", prog);
	for (i = 0; i < NPARAMS; i++)
		printf("  %-20s %-26s %s%s%s%s\n", params[i].flag, params[i].env, params[i].help,
		       params[i].def ? " (default " : "", params[i].def ? params[i].def : "",
		       params[i].def ? ")" : "");
}

int config_load(int argc, char **argv)
{
	size_t i;
	int a;

	for (i = 0; i < NPARAMS; i++)
		if (params[i].def && set_param(&params[i], params[i].def))
			return -1;
	for (i = 0; i < NPARAMS; i++) {
		const char *v = getenv(params[i].env);
		if (v && *v && set_param(&params[i], v))
			return -1;
	}
	for (a = 1; a < argc; a++) {
		const char *arg = argv[a], *val = NULL;
		size_t n;

		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			config_usage(argv[0]);
			return 1;
		}
		for (i = 0; i < NPARAMS; i++) {
			n = strlen(params[i].flag);
			if (!strncmp(arg, params[i].flag, n) && (arg[n] == '=' || !arg[n]))
				break;
		}
		if (i == NPARAMS) {
			fprintf(stderr, "syncrelayd: unknown option \"%s\" (see --help)\n", arg);
			return -1;
		}
		if (arg[n] == '=') {
			val = arg + n + 1;
		} else if (a + 1 < argc) {
			val = argv[++a];
		} else {
			fprintf(stderr, "syncrelayd: option %s needs a value\n", params[i].flag);
			return -1;
		}
		if (set_param(&params[i], val))
			return -1;
	}
	if (!cfg.database_url || !*cfg.database_url) {
		fprintf(stderr, "syncrelayd: no database: set DATABASE_URL or --database-url\n");
		return -1;
	}
	return 0;
}
