/*
 * The notification thread. It owns one connection that LISTENs on "syncrelay"; every push
 * transaction sends pg_notify('syncrelay', library_id), which PostgreSQL delivers after
 * commit to every relay on the database. The thread also expires long-poll deadlines.
 * After a lost connection every held poll is woken, since notifications may have been
 * missed; the woken pulls query again and hold again if there is still nothing. The
 * connection has TCP keepalives and reconnects without blocking (PQconnectPoll), so deadlines
 * are answered on time while the database is away.
 */
#include "notify.h"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "longpoll.h"

static pthread_t thread;
static int running;
static int connected; /* 1 while LISTEN is in force: /readyz reports it */
static long losses;   /* times an established LISTEN connection was lost (metrics) */
static char *conninfo_;

/* The listener's connection goes through these states without ever blocking the thread, so
 * the deadline sweep (poll_expire) keeps running while the database is away. */
enum lstate { L_DOWN, L_CONNECTING, L_LISTENING, L_UP };

struct listener {
	PGconn *c;
	enum lstate st;
	int events;      /* what PQconnectPoll waits for: POLLIN or POLLOUT */
	double deadline; /* of the connect (connect timeout), or of the back-off while down */
};

static void go_down(struct listener *l, const char *why)
{
	if (l->st == L_UP) {
		log_warn("notification connection lost: %s", why);
		__atomic_add_fetch(&losses, 1, __ATOMIC_RELAXED);
	}
	else
		log_debug("notification connection not (re)established: %s", why);
	PQfinish(l->c);
	l->c = NULL;
	l->st = L_DOWN;
	l->deadline = now_mono() + 0.5;
	__atomic_store_n(&connected, 0, __ATOMIC_SEQ_CST);
}

/* One step of the non-blocking connect, LISTEN and receive; never waits longer than 20 ms,
 * which bounds how late a long-poll deadline is answered. */
static void step(struct listener *l)
{
	struct pollfd pfd = {.fd = -1, .events = POLLIN};
	PGnotify *n;
	PGresult *res;

	switch (l->st) {
	case L_DOWN:
		if (now_mono() < l->deadline) {
			poll(NULL, 0, 20);
			return;
		}
		l->c = db_connect_start(conninfo_, 1);
		if (!l->c || PQstatus(l->c) == CONNECTION_BAD) {
			go_down(l, l->c ? PQerrorMessage(l->c) : "out of memory");
			return;
		}
		l->st = L_CONNECTING;
		l->events = POLLOUT;
		l->deadline = now_mono() + (double)cfg.db_connect_timeout_s;
		return;
	case L_CONNECTING:
		pfd.fd = PQsocket(l->c);
		pfd.events = (short)l->events;
		if (poll(&pfd, 1, 20) == 0) {
			if (now_mono() > l->deadline)
				go_down(l, "connect timeout");
			return;
		}
		switch (PQconnectPoll(l->c)) {
		case PGRES_POLLING_READING:
			l->events = POLLIN;
			return;
		case PGRES_POLLING_WRITING:
			l->events = POLLOUT;
			return;
		case PGRES_POLLING_OK:
			if (!PQsendQuery(l->c, "LISTEN syncrelay")) {
				go_down(l, PQerrorMessage(l->c));
				return;
			}
			l->st = L_LISTENING;
			return;
		default:
			go_down(l, PQerrorMessage(l->c));
			return;
		}
	case L_LISTENING:
		pfd.fd = PQsocket(l->c);
		if (poll(&pfd, 1, 20) > 0 && !PQconsumeInput(l->c)) {
			go_down(l, PQerrorMessage(l->c));
			return;
		}
		if (now_mono() > l->deadline) {
			go_down(l, "LISTEN timed out");
			return;
		}
		while (!PQisBusy(l->c)) {
			int ok;

			res = PQgetResult(l->c);
			if (!res) {
				/* the LISTEN is answered and in force */
				l->st = L_UP;
				log_info("listening for notifications again");
				/* notifications sent while we were away are lost: every held poll looks again,
				 * and every wake generation moves first, so that nothing kept under an older one
				 * (pages, token lookups: pagememo.h, auth.c) is used once we say we are up */
				poll_wake_all();
				__atomic_store_n(&connected, 1, __ATOMIC_SEQ_CST);
				return;
			}
			ok = db_ok(res);
			PQclear(res);
			if (!ok) {
				go_down(l, PQerrorMessage(l->c));
				return;
			}
		}
		return;
	case L_UP:
		pfd.fd = PQsocket(l->c);
		if (poll(&pfd, 1, 20) > 0 && !PQconsumeInput(l->c)) {
			go_down(l, PQerrorMessage(l->c));
			return;
		}
		while ((n = PQnotifies(l->c)) != NULL) {
			if (n->extra && strlen(n->extra) == SR_UUID_LEN)
				poll_wake(n->extra);
			PQfreemem(n);
		}
		/* a FATAL from a shutting-down server arrives as a result while we wait for none */
		if (!PQisBusy(l->c) && (res = PQgetResult(l->c)) != NULL) {
			PQclear(res);
			go_down(l, PQerrorMessage(l->c));
		}
		return;
	}
}

static void *run(void *arg)
{
	struct listener *l = arg;

	while (__atomic_load_n(&running, __ATOMIC_SEQ_CST)) {
		step(l);
		poll_expire(now_mono());
	}
	PQfinish(l->c);
	free(l);
	return NULL;
}

long notify_losses(void)
{
	return __atomic_load_n(&losses, __ATOMIC_RELAXED);
}

int notify_connected(void)
{
	return __atomic_load_n(&connected, __ATOMIC_SEQ_CST);
}

int notify_start(const char *conninfo)
{
	struct listener *l = calloc(1, sizeof *l);
	PGconn *c;
	PGresult *res;

	conninfo_ = strdup(conninfo);
	if (!l || !conninfo_)
		goto fail;
	/* the first LISTEN is blocking: the relay does not start without it */
	c = db_connect(conninfo_);
	if (!c)
		goto fail;
	res = PQexec(c, "LISTEN syncrelay");
	if (!db_ok(res)) {
		log_error("could not LISTEN: %s", PQresultErrorMessage(res));
		PQclear(res);
		PQfinish(c);
		goto fail;
	}
	PQclear(res);
	l->c = c;
	l->st = L_UP;
	connected = 1;
	running = 1;
	if (pthread_create(&thread, NULL, run, l)) {
		PQfinish(c);
		goto fail;
	}
	return 0;
fail:
	free(l);
	return -1;
}

void notify_stop(void)
{
	if (!__atomic_exchange_n(&running, 0, __ATOMIC_SEQ_CST))
		return;
	pthread_join(thread, NULL);
	free(conninfo_);
	conninfo_ = NULL;
}
