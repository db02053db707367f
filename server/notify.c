/*
 * The notification thread. It owns one connection that LISTENs on "syncrelay"; every push
 * transaction sends pg_notify('syncrelay', library_id), which PostgreSQL delivers after
 * commit to every relay on the database. The thread also expires long-poll deadlines.
 * After a lost connection every held poll is woken, since notifications may have been
 * missed; the woken pulls query again and hold again if there is still nothing.
 */
#include "notify.h"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "db.h"
#include "log.h"
#include "longpoll.h"

static pthread_t thread;
static int running;
static char *conninfo_;
static int connected;
static long losses;

int notify_connected(void)
{
	return __atomic_load_n(&connected, __ATOMIC_RELAXED);
}

long notify_losses(void)
{
	return __atomic_load_n(&losses, __ATOMIC_RELAXED);
}

static PGconn *listen_conn(void)
{
	PGconn *c = db_connect(conninfo_);
	PGresult *res;

	if (!c)
		return NULL;
	res = PQexec(c, "LISTEN syncrelay");
	if (!db_ok(res)) {
		log_error("could not LISTEN: %s", PQresultErrorMessage(res));
		PQclear(res);
		PQfinish(c);
		return NULL;
	}
	PQclear(res);
	return c;
}

static void *run(void *arg)
{
	PGconn *c = arg;

	while (__atomic_load_n(&running, __ATOMIC_SEQ_CST)) {
		struct pollfd pfd = {.events = POLLIN};
		PGnotify *n;

		if (!c) {
			struct timespec backoff = {0, 500 * 1000 * 1000};
			nanosleep(&backoff, NULL);
			poll_expire(now_mono());
			c = listen_conn();
			if (c) {
				__atomic_store_n(&connected, 1, __ATOMIC_RELAXED);
				poll_wake_all();
			}
			continue;
		}
		pfd.fd = PQsocket(c);
		/* 20 ms bounds how late a long-poll deadline is answered */
		if (poll(&pfd, 1, 20) > 0 && !PQconsumeInput(c)) {
			log_warn("notification connection lost: %s", PQerrorMessage(c));
			PQfinish(c);
			c = NULL;
			__atomic_store_n(&connected, 0, __ATOMIC_RELAXED);
			__atomic_add_fetch(&losses, 1, __ATOMIC_RELAXED);
			continue;
		}
		while ((n = PQnotifies(c)) != NULL) {
			if (n->extra && strlen(n->extra) == SR_UUID_LEN)
				poll_wake(n->extra);
			PQfreemem(n);
		}
		poll_expire(now_mono());
	}
	PQfinish(c);
	return NULL;
}

int notify_start(const char *conninfo)
{
	PGconn *c;

	conninfo_ = strdup(conninfo);
	c = listen_conn();
	if (!c)
		return -1;
	running = 1;
	connected = 1;
	if (pthread_create(&thread, NULL, run, c)) {
		PQfinish(c);
		return -1;
	}
	return 0;
}

void notify_stop(void)
{
	if (!__atomic_exchange_n(&running, 0, __ATOMIC_SEQ_CST))
		return;
	pthread_join(thread, NULL);
	free(conninfo_);
	conninfo_ = NULL;
}
