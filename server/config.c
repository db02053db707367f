/*
 * Relay configuration: defaults, a config file, environment variables and flags, from one
 * table (as PgBouncer does): each setting's flag, environment name (also its name in the
 * file), type, target, flags (live: SIGHUP applies it; secret: never logged), default and
 * range. Later sources win: default < file < environment < flag.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct config cfg;

enum ptype { P_STR, P_INT };
enum { CF_LIVE = 1, CF_SECRET = 2, CF_NOFILE = 4 };

struct param {
	const char *flag;
	const char *env;
	enum ptype type;
	size_t offset;
	const char *def;
	int64_t min, max;
	int flags;
	const char *help;
};

#define OFF(f) offsetof(struct config, f)
static const struct param params[] = {
	{"--database-url", "DATABASE_URL", P_STR, OFF(database_url), NULL, 0, 0, CF_SECRET,
	 "libpq conninfo or URI of the database"},
	{"--listen", "SYNCRELAY_LISTEN", P_STR, OFF(listen), "127.0.0.1:8080", 0, 0, 0,
	 "host:port to listen on (port 0 picks a free one)"},
	{"--admin-token", "SYNCRELAY_ADMIN_TOKEN", P_STR, OFF(admin_token), NULL, 0, 0, CF_LIVE | CF_SECRET,
	 "operator token (admin endpoints are refused when unset)"},
	{"--max-body-bytes", "SYNCRELAY_MAX_BODY_BYTES", P_INT, OFF(max_body_bytes), "16777216", 1024,
	 INT64_C(1) << 32, CF_LIVE, "largest request body accepted"},
	{"--max-batch", "SYNCRELAY_MAX_BATCH", P_INT, OFF(max_batch), "10000", 1, 1000000, CF_LIVE,
	 "most changes in one push"},
	{"--max-skew-ms", "SYNCRELAY_MAX_SKEW_MS", P_INT, OFF(max_skew_ms), "300000", 0,
	 INT64_C(1) << 40, CF_LIVE, "how far an HLC may run ahead of the relay clock"},
	{"--threads", "SYNCRELAY_THREADS", P_INT, OFF(threads), "8", 1, 256, 0, "HTTP worker threads"},
	{"--db-pool", "SYNCRELAY_DB_POOL", P_INT, OFF(db_pool), "8", 1, 256, 0,
	 "database connections in the pool"},
	/* not live: the daemon's connection timeout is set from it at start */
	{"--max-wait", "SYNCRELAY_MAX_WAIT", P_INT, OFF(max_wait_s), "60", 0, 3600, 0,
	 "longest long-poll hold in seconds"},
	{"--shutdown-grace", "SYNCRELAY_SHUTDOWN_GRACE", P_INT, OFF(shutdown_grace_s), "30", 0, 3600, CF_LIVE,
	 "seconds SIGTERM waits for in-flight requests"},
	{"--log-level", "SYNCRELAY_LOG_LEVEL", P_INT, OFF(log_level), "2", 0, 3, CF_LIVE,
	 "0 error, 1 warn, 2 info, 3 debug"},
	{"--config", "SYNCRELAY_CONFIG", P_STR, OFF(config_file), NULL, 0, 0, CF_NOFILE,
	 "file of NAME = value lines (NAME as in this table's environment column)"},
	{"--tls-cert", "SYNCRELAY_TLS_CERT", P_STR, OFF(tls_cert), NULL, 0, 0, CF_LIVE,
	 "PEM certificate chain: serve HTTPS (reloaded on SIGHUP)"},
	{"--tls-key", "SYNCRELAY_TLS_KEY", P_STR, OFF(tls_key), NULL, 0, 0, CF_LIVE,
	 "PEM private key of the certificate"},
	{"--log-format", "SYNCRELAY_LOG_FORMAT", P_STR, OFF(log_format), "text", 0, 0, CF_LIVE,
	 "text or json (one object per line)"},
	{"--cors-origins", "SYNCRELAY_CORS_ORIGINS", P_STR, OFF(cors_origins), NULL, 0, 0, CF_LIVE,
	 "comma-separated origins allowed by CORS, or * (off when unset)"},
	{"--db-wait", "SYNCRELAY_DB_WAIT", P_INT, OFF(db_wait_s), "60", 0, 3600, 0,
	 "seconds start-up retries a database that is not up yet"},
	{"--retention", "SYNCRELAY_RETENTION", P_INT, OFF(retention_s), "2592000", 0, CONFIG_RETENTION_MAX, 0,
	 "age (since accepted) at which a superseded change leaves the log and a tombstone the records; 0 keeps all"},
	{"--compact-interval", "SYNCRELAY_COMPACT_INTERVAL", P_INT, OFF(compact_interval_s), "600", 1,
	 604800, 0, "seconds between background compaction passes"},
	{"--db-connect-timeout", "SYNCRELAY_DB_CONNECT_TIMEOUT", P_INT, OFF(db_connect_timeout_s), "5", 2, 600, 0,
	 "seconds one database (re)connect may take"},
	{"--lock-timeout-ms", "SYNCRELAY_LOCK_TIMEOUT_MS", P_INT, OFF(lock_timeout_ms), "10000", 1,
	 INT64_C(3600000), 0, "longest wait for a row lock (a library's, during a push); then 503"},
	{"--statement-timeout-ms", "SYNCRELAY_STATEMENT_TIMEOUT_MS", P_INT, OFF(statement_timeout_ms), "60000", 1,
	 INT64_C(3600000), 0, "longest a database statement may run; then 503"},
	{"--max-connections", "SYNCRELAY_MAX_CONNECTIONS", P_INT, OFF(max_connections), "1000", 16, 1000000, 0,
	 "open connections served; a few more get a quick 503"},
	{"--max-connections-per-ip", "SYNCRELAY_MAX_CONNECTIONS_PER_IP", P_INT, OFF(max_connections_per_ip), "512",
	 1, 1000000, 0, "open connections from one address; more are closed at once"},
	{"--idle-timeout", "SYNCRELAY_IDLE_TIMEOUT", P_INT, OFF(idle_timeout_s), "30", 1, 3600, 0,
	 "seconds a connection may stay silent (held polls excepted)"},
	{"--rate-per-s", "SYNCRELAY_RATE_PER_S", P_INT, OFF(rate_per_s), "100", 1, 1000000, 0,
	 "requests a second one device may make on average; then 429"},
	{"--rate-burst", "SYNCRELAY_RATE_BURST", P_INT, OFF(rate_burst), "200", 1, 1000000, 0,
	 "requests one device may make at once above its rate"},
	{"--max-polls-per-device", "SYNCRELAY_MAX_POLLS_PER_DEVICE", P_INT, OFF(max_polls_per_device), "8", 1, 100000, 0,
	 "long-polls one device may hold at once; a further one is answered at once"},
	{"--max-models", "SYNCRELAY_MAX_MODELS", P_INT, OFF(max_models), "256", 1, 100000, 0,
	 "models in a library schema; more are 413"},
	{"--max-refs", "SYNCRELAY_MAX_REFS", P_INT, OFF(max_refs), "64", 0, 100000, 0,
	 "references of one model; more are 413"},
	{"--workers", "SYNCRELAY_WORKERS", P_INT, OFF(workers), "6", 1, 256, 0,
	 "request workers running database work (keep below --db-pool: authentication needs some)"},
	{"--workers-per-library", "SYNCRELAY_WORKERS_PER_LIBRARY", P_INT, OFF(workers_per_library), "2", 1, 256, 0,
	 "requests of one library running at once; the rest wait their turn"},
};
#define NPARAMS (sizeof params / sizeof params[0])

/* argv kept for SIGHUP, which builds the configuration again from the same sources */
static int saved_argc;
static char **saved_argv;

/* strings replaced by a reload: another thread may still be reading one, so they are kept
 * (reachable) rather than freed */
struct retired {
	char *s;
	struct retired *next;
};
static struct retired *retired;

static char **str_at(struct config *c, const struct param *p)
{
	return (char **)((char *)c + p->offset);
}

static int64_t *int_at(struct config *c, const struct param *p)
{
	return (int64_t *)((char *)c + p->offset);
}

static int set_param(struct config *c, const struct param *p, const char *val, const char *where, char *err,
		     size_t n)
{
	char *end;
	long long v;

	if (p->type == P_STR) {
		char **dst = str_at(c, p);
		free(*dst);
		*dst = val ? strdup(val) : NULL;
		return 0;
	}
	errno = 0;
	v = strtoll(val, &end, 10);
	if (errno || end == val || *end || v < p->min || v > p->max) {
		snprintf(err, n, "%sinvalid value \"%s\" for %s (%s): expected an integer from %lld to %lld", where,
			 val, p->flag, p->env, (long long)p->min, (long long)p->max);
		return -1;
	}
	*int_at(c, p) = v;
	return 0;
}

static void free_strings(struct config *c)
{
	size_t i;

	for (i = 0; i < NPARAMS; i++)
		if (params[i].type == P_STR) {
			free(*str_at(c, &params[i]));
			*str_at(c, &params[i]) = NULL;
		}
}

static const struct param *by_env(const char *name)
{
	size_t i;

	for (i = 0; i < NPARAMS; i++)
		if (!strcmp(params[i].env, name))
			return &params[i];
	return NULL;
}

/* "NAME = value" lines; '#' starts a comment line; a value may be wrapped in double quotes. */
static int read_file(struct config *c, const char *path, char *err, size_t n)
{
	FILE *f = fopen(path, "r");
	char line[4096], where[600];
	int lineno = 0, rc = -1;

	if (!f) {
		snprintf(err, n, "could not read the config file \"%s\": %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof line, f)) {
		char *name = line, *eq, *val, *end;
		const struct param *p;

		lineno++;
		snprintf(where, sizeof where, "%s:%d: ", path, lineno);
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, n, "%sline longer than %zu bytes", where, sizeof line - 2);
			goto cleanup;
		}
		while (isspace((unsigned char)*name))
			name++;
		if (!*name || *name == '#')
			continue;
		eq = strchr(name, '=');
		if (!eq) {
			snprintf(err, n, "%sexpected NAME = value", where);
			goto cleanup;
		}
		for (end = eq; end > name && isspace((unsigned char)end[-1]); end--)
			;
		*end = '\0';
		val = eq + 1;
		while (isspace((unsigned char)*val))
			val++;
		for (end = val + strlen(val); end > val && isspace((unsigned char)end[-1]); end--)
			;
		*end = '\0';
		if (end - val >= 2 && val[0] == '"' && end[-1] == '"') {
			end[-1] = '\0';
			val++;
		}
		p = by_env(name);
		if (!p) {
			snprintf(err, n, "%sunknown setting \"%.200s\" (names are the environment names of --help)", where,
				 name);
			goto cleanup;
		}
		if (p->flags & CF_NOFILE) {
			snprintf(err, n, "%s%.100s cannot be set in a config file", where, name);
			goto cleanup;
		}
		if (set_param(c, p, val, where, err, n))
			goto cleanup;
	}
	if (ferror(f)) {
		snprintf(err, n, "could not read the config file \"%s\"", path);
		goto cleanup;
	}
	rc = 0;
cleanup:
	fclose(f);
	return rc;
}

void config_usage(const char *prog)
{
	size_t i;

	printf("usage: %s [options]\n", prog);
	for (i = 0; i < NPARAMS; i++)
		printf("  %-20s %-26s %s%s%s%s%s\n", params[i].flag, params[i].env, params[i].help,
		       params[i].def ? " (default " : "", params[i].def ? params[i].def : "",
		       params[i].def ? ")" : "", params[i].flags & CF_LIVE ? " [SIGHUP]" : "");
	printf("  %-47s %s\n", "--distribute",
	       "apply migrations, distribute the tables over the Citus cluster, exit");
	printf("Later sources win: default, config file, environment, flag. Settings marked [SIGHUP]\n"
	       "change when the relay gets SIGHUP; the others need a restart.\n");
}

/* Builds c from every source. 0, 1 for --help, -1 with the reason in err. */
static int build(struct config *c, int argc, char **argv, char *err, size_t n)
{
	const char *file = getenv("SYNCRELAY_CONFIG");
	size_t i;
	int a;

	for (i = 0; i < NPARAMS; i++)
		if (params[i].def && set_param(c, &params[i], params[i].def, "", err, n))
			return -1;
	/* the file comes before the environment, so find it first */
	for (a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h"))
			return 1;
		if (!strncmp(argv[a], "--config=", 9))
			file = argv[a] + 9;
		else if (!strcmp(argv[a], "--config") && a + 1 < argc)
			file = argv[a + 1];
	}
	if (file && *file && read_file(c, file, err, n))
		return -1;
	for (i = 0; i < NPARAMS; i++) {
		const char *v = getenv(params[i].env);
		if (v && *v && set_param(c, &params[i], v, "", err, n))
			return -1;
	}
	for (a = 1; a < argc; a++) {
		const char *arg = argv[a], *val = NULL;
		size_t len = 0;

		if (!strcmp(arg, "--distribute")) {
			c->distribute = 1;
			continue;
		}
		for (i = 0; i < NPARAMS; i++) {
			len = strlen(params[i].flag);
			if (!strncmp(arg, params[i].flag, len) && (arg[len] == '=' || !arg[len]))
				break;
		}
		if (i == NPARAMS) {
			snprintf(err, n, "unknown option \"%s\" (see --help)", arg);
			return -1;
		}
		if (arg[len] == '=') {
			val = arg + len + 1;
		} else if (a + 1 < argc) {
			val = argv[++a];
		} else {
			snprintf(err, n, "option %s needs a value", params[i].flag);
			return -1;
		}
		if (set_param(c, &params[i], val, "", err, n))
			return -1;
	}
	if (!c->database_url || !*c->database_url) {
		snprintf(err, n, "no database: set DATABASE_URL or --database-url");
		return -1;
	}
	if (!c->tls_cert != !c->tls_key || (c->tls_cert && (!*c->tls_cert || !*c->tls_key))) {
		snprintf(err, n, "TLS needs both SYNCRELAY_TLS_CERT and SYNCRELAY_TLS_KEY");
		return -1;
	}
	if (strcmp(c->log_format, "text") && strcmp(c->log_format, "json")) {
		snprintf(err, n, "invalid value \"%s\" for --log-format (SYNCRELAY_LOG_FORMAT): expected text or json",
			 c->log_format);
		return -1;
	}
	return 0;
}

int config_load(int argc, char **argv)
{
	char err[1024];
	int rc;

	int i;

	/* a copy: the caller's argv need not outlive this call */
	if (saved_argv) {
		for (i = 0; i < saved_argc; i++)
			free(saved_argv[i]);
		free(saved_argv);
	}
	saved_argv = calloc((size_t)argc + 1, sizeof *saved_argv);
	saved_argc = 0;
	for (i = 0; saved_argv && i < argc; i++)
		if ((saved_argv[i] = strdup(argv[i])))
			saved_argc = i + 1;
	free_strings(&cfg);
	rc = build(&cfg, argc, argv, err, sizeof err);
	if (rc == 1)
		config_usage(argv[0]);
	else if (rc)
		fprintf(stderr, "syncrelayd: %s\n", err);
	return rc;
}

static void show(const struct config *c, const struct param *p, char *buf, size_t n)
{
	const char *s;

	if (p->type == P_INT) {
		snprintf(buf, n, "%lld", (long long)*(const int64_t *)((const char *)c + p->offset));
		return;
	}
	s = *(char *const *)((const char *)c + p->offset);
	if (!s)
		snprintf(buf, n, "(unset)");
	else if (p->flags & CF_SECRET)
		snprintf(buf, n, "(set)");
	else
		snprintf(buf, n, "\"%s\"", s);
}

static int same(const struct config *a, const struct config *b, const struct param *p)
{
	const char *x, *y;

	if (p->type == P_INT)
		return *(const int64_t *)((const char *)a + p->offset) == *(const int64_t *)((const char *)b + p->offset);
	x = *(char *const *)((const char *)a + p->offset);
	y = *(char *const *)((const char *)b + p->offset);
	return (!x && !y) || (x && y && !strcmp(x, y));
}

int config_reload(void)
{
	struct config next = {0};
	char err[1024], was[256], now[256];
	int changed = 0, rc;
	size_t i;

	rc = build(&next, saved_argc, saved_argv, err, sizeof err);
	if (rc) {
		log_error("reload: configuration not changed: %s", rc == 1 ? "--help given" : err);
		free_strings(&next);
		return -1;
	}
	for (i = 0; i < NPARAMS; i++) {
		const struct param *p = &params[i];

		if (same(&cfg, &next, p))
			continue;
		show(&cfg, p, was, sizeof was);
		show(&next, p, now, sizeof now);
		if (!(p->flags & CF_LIVE)) {
			log_warn("reload: %s changed to %s but needs a restart; still %s", p->env,
				 p->flags & CF_SECRET ? "a new value" : now, was);
			continue;
		}
		if (p->flags & CF_SECRET)
			log_info("reload: %s changed", p->env);
		else
			log_info("reload: %s changed from %s to %s", p->env, was, now);
		if (p->type == P_INT) {
			__atomic_store_n(int_at(&cfg, p), *int_at(&next, p), __ATOMIC_RELAXED);
		} else {
			struct retired *r = malloc(sizeof *r);
			char *old = *str_at(&cfg, p);

			if (r) {
				r->s = old;
				r->next = retired;
				retired = r;
			}
			__atomic_store_n(str_at(&cfg, p), *str_at(&next, p), __ATOMIC_RELEASE);
			*str_at(&next, p) = NULL;
		}
		changed++;
	}
	free_strings(&next);
	if (!changed)
		log_info("reload: no setting changed");
	return changed;
}

const char *config_show(const char *env, char *buf, size_t n)
{
	const struct param *p = by_env(env);

	if (!p)
		return NULL;
	show(&cfg, p, buf, n);
	return buf;
}
