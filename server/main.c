/* syncrelayd: configuration, start-up order, signals, and the orderly shutdown. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "migrate.h"
#include "notify.h"
#include "longpoll.h"
#include "workq.h"

int main(int argc, char **argv)
{
	sigset_t sigs;
	int rc, sig = 0, port = 0;
	char host[256];
	const char *colon;

	rc = config_load(argc, argv);
	if (rc)
		return rc > 0 ? 0 : 2;
	log_level = (int)cfg.log_level;

	/* the signals are taken by sigwait below; threads started from here inherit the mask */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

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
	if (workq_start((int)cfg.workers, (int)cfg.workers_per_library)) {
		log_error("could not start the request workers");
		return 1;
	}
	if (http_start(cfg.listen, &port))
		return 1;
	if (!cfg.admin_token || !*cfg.admin_token)
		log_warn("SYNCRELAY_ADMIN_TOKEN is not set: admin endpoints will refuse every request");
	colon = strrchr(cfg.listen, ':');
	snprintf(host, sizeof host, "%.*s", (int)(colon - cfg.listen), cfg.listen);
	printf("syncrelayd listening on http://%s:%d\n", host, port);
	fflush(stdout);

	while (sigwait(&sigs, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
		;
	log_info("signal %d: stopping (no new connections, answering held polls)", sig);
	http_quiesce();
	poll_shutdown();
	http_stop((int)cfg.shutdown_grace_s);
	workq_stop();
	notify_stop();
	db_pool_close();
	log_info("stopped");
	return 0;
}
