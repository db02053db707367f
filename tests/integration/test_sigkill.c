/*
 * The relay killed with SIGKILL at random moments under a stream of large pushes, ten times,
 * restarted on the same database and address each time: no acknowledged change is lost, none
 * is stored twice, no batch is ever half stored. The seed is printed; SYNCRELAY_SEED replays.
 */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"

#define NBATCH 40
#define PER 2000
#define KILLS 10

struct pusher {
	char url[128];
	const char *token, *dev;
	uint64_t base_ms;
	int acked; /* batches answered 200, read by the test thread */
	int failed;
	char why[1024];
};

static char *batch_body(const struct pusher *p, int b)
{
	struct h_chb c = {0};
	char hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1], data[64];
	int k;

	for (k = 0; k < PER; k++) {
		h_hlc(hlc, p->base_ms + (uint64_t)b, (uint64_t)k, p->dev);
		snprintf(rid, sizeof rid, "%08x-0000-4000-8000-%012x", (unsigned)b, (unsigned)k);
		snprintf(data, sizeof data, "{\"b\":%d,\"k\":%d}", b, k);
		h_chb_add(&c, hlc, "entry", rid, "upsert", data);
	}
	return h_chb_end(&c);
}

/* Pushes every batch in turn, each until the relay answers 200 (a killed relay is down for a
 * moment; the repeat of a batch that was committed counts as duplicates). */
static void *push_all(void *arg)
{
	struct pusher *p = arg;
	int b;

	for (b = 0; b < NBATCH; b++) {
		char *body = batch_body(p, b);
		double deadline = h_mono() + 120;

		for (;;) {
			struct resp r;
			int rc = h_xhttp(NULL, "POST", p->url, p->token, body, 60, &r);
			long st = rc ? 0 : r.status;

			if (st == 200) {
				long long a = h_jint(r.json, "accepted"), d = h_jint(r.json, "duplicates");
				h_resp_free(&r);
				if (a + d != PER) {
					snprintf(p->why, sizeof p->why, "batch %d: accepted %lld + duplicates %lld != %d", b, a,
						 d, PER);
					p->failed = 1;
				}
				break;
			}
			if (st >= 400 && st < 500) {
				snprintf(p->why, sizeof p->why, "batch %d refused: %ld %.300s", b, st, r.body ? r.body : "");
				h_resp_free(&r);
				p->failed = 1;
				break;
			}
			h_resp_free(&r);
			if (h_mono() > deadline) {
				snprintf(p->why, sizeof p->why, "batch %d: no 200 within 120 s (last %ld %.300s)", b, st, r.err);
				p->failed = 1;
				break;
			}
			{
				struct timespec t = {0, 50 * 1000 * 1000};
				nanosleep(&t, NULL);
			}
		}
		free(body);
		if (p->failed)
			return NULL;
		__atomic_store_n(&p->acked, b + 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

/* Per batch, how many of its changes the log holds: every batch must be all or nothing, and
 * every batch acknowledged before must be whole. Returns the number of whole batches. */
static int check_log(const char *db, const char *lib, int acked, const char *when)
{
	PGconn *c = PQconnectdb(db);
	const char *p[1] = {lib};
	PGresult *res;
	int i, whole = 0;

	cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	res = PQexecParams(c,
			   "SELECT substr(record_id, 1, 8), count(*), count(DISTINCT hlc) FROM changes"
			   " WHERE library_id = $1 AND model = 'entry' GROUP BY 1 ORDER BY 1",
			   1, NULL, p, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	for (i = 0; i < PQntuples(res); i++) {
		long n = atol(PQgetvalue(res, i, 1)), distinct = atol(PQgetvalue(res, i, 2));
		int b = (int)strtol(PQgetvalue(res, i, 0), NULL, 16);

		cr_assert_eq(n, distinct, "%s: batch %d stored %ld changes but %ld distinct HLCs", when, b, n, distinct);
		cr_assert(n == PER, "%s: batch %d is half stored: %ld of %d changes", when, b, n, PER);
		whole++;
	}
	cr_assert_geq(whole, acked, "%s: %d batches were acknowledged but the log holds %d whole", when, acked,
		      whole);
	PQclear(res);
	res = PQexecParams(c, "SELECT head FROM libraries WHERE library_id = $1", 1, NULL, p, NULL, NULL, 0);
	cr_assert_eq(atol(PQgetvalue(res, 0, 0)), (long)whole * PER, "%s: head %s, log %d batches", when,
		     PQgetvalue(res, 0, 0), whole);
	PQclear(res);
	PQfinish(c);
	return whole;
}

TestSuite(sigkill, .init = h_curl_init, .fini = h_curl_fini);

Test(sigkill, ten_kills_under_large_pushes_lose_and_repeat_nothing, .timeout = 600)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct pusher p = {0};
	char db[512], listen[64];
	const char *env[4] = {listen, "SYNCRELAY_RATE_PER_S=100000", "SYNCRELAY_RATE_BURST=100000", NULL};
	unsigned seed = getenv("SYNCRELAY_SEED") ? (unsigned)strtoul(getenv("SYNCRELAY_SEED"), NULL, 10)
						 : (unsigned)(h_now_ms() % 1000000);
	pthread_t th;
	int k, port, whole;

	cr_log_info("sigkill: seed %u (SYNCRELAY_SEED=%u replays the kill times)", seed, seed);
	srand(seed);
	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d, NULL);
	snprintf(db, sizeof db, "%s", r.db);
	port = r.port;
	snprintf(listen, sizeof listen, "SYNCRELAY_LISTEN=127.0.0.1:%d", port);
	cr_assert_eq(h_relay_stop(&r), 0);
	h_relay_start(&r, db, env);

	snprintf(p.url, sizeof p.url, "%s/v1/libraries/%s/changes", r.url, l.id);
	p.token = d.token;
	p.dev = d.id;
	p.base_ms = h_now_ms() - 3600 * 1000;
	cr_assert_eq(pthread_create(&th, NULL, push_all, &p), 0);
	for (k = 0; k < KILLS && !p.failed; k++) {
		/* spread the kills over the stream: wait (with a deadline) for this kill's share of
		 * batches, then strike at a random moment of the next one */
		struct timespec step = {0, 20 * 1000 * 1000}, t = {0, (long)(rand() % 400) * 1000 * 1000};
		int st, acked, want = (k + 1) * NBATCH / (KILLS + 1);
		double deadline = h_mono() + 120;

		while (__atomic_load_n(&p.acked, __ATOMIC_SEQ_CST) < want && !p.failed) {
			cr_assert_lt(h_mono(), deadline, "kill %d: the pusher acknowledged %d batches in 120 s, want %d", k + 1,
				     __atomic_load_n(&p.acked, __ATOMIC_SEQ_CST), want);
			nanosleep(&step, NULL);
		}
		nanosleep(&t, NULL);
		acked = __atomic_load_n(&p.acked, __ATOMIC_SEQ_CST);
		cr_assert_eq(kill(r.pid, SIGKILL), 0);
		cr_assert_eq(waitpid(r.pid, &st, 0), r.pid);
		r.pid = 0;
		whole = check_log(db, l.id, acked, "after a kill");
		cr_log_info("sigkill: kill %d after %d acknowledged batches, %d whole in the log", k + 1, acked, whole);
		h_relay_start(&r, db, env);
		cr_assert_eq(r.port, port);
	}
	pthread_join(th, NULL);
	cr_assert(!p.failed, "the pusher failed: %s", p.why);
	whole = check_log(db, l.id, NBATCH, "at the end");
	cr_assert_eq(whole, NBATCH, "the log holds %d of %d batches", whole, NBATCH);
	cr_log_info("sigkill: %d kills, %d changes in %d batches, each stored exactly once", KILLS, NBATCH * PER, NBATCH);
	cr_assert_eq(h_relay_stop(&r), 0);
}
