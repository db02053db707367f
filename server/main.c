/* syncrelayd: configuration, start-up order (waiting for the database), signals (SIGHUP
 * reloads, SIGTERM/SIGINT stop), and the orderly shutdown. */
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "compact.h"
#include "config.h"
#include "db.h"
#include "distribute.h"
#include "http.h"
#include "log.h"
#include "migrate.h"
#include "notify.h"
#include "pagememo.h"
#include "longpoll.h"
#include "tls.h"

/* Tries the database until it answers or cfg.db_wait_s passes, one log line per try: a
 * container started beside its database comes up once the database does. 0 or -1. */
static int wait_for_database(void)
{
	double until = now_mono() + (double)cfg.db_wait_s, pause = 0.5;
	int attempt;

	for (attempt = 1;; attempt++) {
		PGconn *c = PQconnectdb(cfg.database_url);
		char reason[512];

		if (PQstatus(c) == CONNECTION_OK) {
			PQfinish(c);
			if (attempt > 1)
				log_info("database reachable after %d attempts", attempt);
			return 0;
		}
		snprintf(reason, sizeof reason, "%s", PQerrorMessage(c));
		PQfinish(c);
		if (now_mono() + pause > until) {
			log_error("database not reachable within %lld s (SYNCRELAY_DB_WAIT): %s", (long long)cfg.db_wait_s,
				  reason);
			return -1;
		}
		log_warn("database not reachable (attempt %d, retrying in %.1f s): %s", attempt, pause, reason);
		{
			struct timespec t = {(time_t)pause, (long)((pause - (double)(time_t)pause) * 1e9)};
			nanosleep(&t, NULL);
		}
		if (pause < 5)
			pause *= 2;
	}
}

/* Loads the TLS pair named by cfg; at start a failure stops the relay, on SIGHUP the pair
 * in use stays. */
static int load_tls(const char *when)
{
	char err[1024];

	if (tls_load(cfg.tls_cert, cfg.tls_key, err, sizeof err)) {
		log_error("%s: TLS certificate not loaded: %s", when, err);
		return -1;
	}
	log_info("%s: TLS certificate loaded from %s", when, cfg.tls_cert);
	return 0;
}

/* Held long-polls are open connections: the usual soft limit of 1,024 files would cap them
 * near a thousand and then leave new clients unanswered. Take the hard limit. */
static void raise_fd_limit(void)
{
	struct rlimit l;

	if (getrlimit(RLIMIT_NOFILE, &l) || l.rlim_cur >= l.rlim_max)
		return;
	l.rlim_cur = l.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &l))
		log_warn("could not raise the open-files limit to %llu", (unsigned long long)l.rlim_max);
	else
		log_info("open-files limit raised to %llu", (unsigned long long)l.rlim_cur);
}

static void reload(int tls_at_start)
{
	log_info("SIGHUP: reloading the configuration");
	if (config_reload() < 0)
		return;
	log_level = (int)cfg.log_level;
	log_json = !strcmp(cfg.log_format, "json");
	/* the files are read again even when their names did not change: a renewed
	 * certificate is usually written over the old one */
	if (tls_at_start && cfg.tls_cert)
		load_tls("SIGHUP");
	else if (tls_at_start != !!cfg.tls_cert)
		log_warn("SIGHUP: turning TLS %s needs a restart", tls_at_start ? "off" : "on");
}
#include "workq.h"

int main(int argc, char **argv)
{
	sigset_t sigs;
	int rc, sig = 0, port = 0, tls_on;
	char host[256];
	const char *colon;

	rc = config_load(argc, argv);
	if (rc)
		return rc > 0 ? 0 : 2;
	log_level = (int)cfg.log_level;
	if (cfg.distribute)
		return distribute_run(cfg.database_url);
	log_json = !strcmp(cfg.log_format, "json");

	/* the signals are taken by sigwait below; threads started from here inherit the mask */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	tls_on = cfg.tls_cert != NULL;
	if (tls_on && load_tls("start"))
		return 1;
	if (wait_for_database())
		return 1;
	if (migrate_apply(cfg.database_url)) {
		log_error("could not apply migrations; not starting");
		return 1;
	}
	if (db_pool_open(cfg.database_url, (int)cfg.db_pool)) {
		log_error("could not open the database pool");
		return 1;
	}
	if (notify_start(cfg.database_url)) {
		log_error("could not start the notification listener");
		return 1;
	}
	if (compact_start(cfg.database_url)) {
		log_error("could not start compaction");
		return 1;
	}
	if (workq_start((int)cfg.workers, (int)cfg.workers_per_library)) {
		log_error("could not start the request workers");
		return 1;
	}
	raise_fd_limit();
	if (http_start(cfg.listen, &port))
		return 1;
	if (!cfg.admin_token || !*cfg.admin_token)
		log_warn("SYNCRELAY_ADMIN_TOKEN is not set: admin endpoints will refuse every request");
	colon = strrchr(cfg.listen, ':');
	snprintf(host, sizeof host, "%.*s", (int)(colon - cfg.listen), cfg.listen);
	printf("syncrelayd listening on %s://%s:%d\n", tls_on ? "https" : "http", host, port);
	fflush(stdout);

	for (;;) {
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			reload(tls_on);
			continue;
		}
		if (sig == SIGTERM || sig == SIGINT)
			break;
	}
	log_info("signal %d: stopping (no new connections, answering held polls)", sig);
	http_quiesce();
	poll_shutdown();
	http_stop((int)cfg.shutdown_grace_s);
	workq_stop();
	notify_stop();
	compact_stop();
	pagememo_clear();
	db_pool_close();
	tls_free();
	log_info("stopped");
	return 0;
}
