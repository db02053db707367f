/*
 * Lifecycle: SIGTERM stops the relay with exit 0 when idle, after answering held
 * long-polls, and after finishing (or cleanly refusing) a push in flight, never leaving
 * half a batch; relays started at the same moment on a fresh database share the
 * migration under its advisory lock; a relay on a migrated database starts ready.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

TestSuite(lifecycle, .init = h_curl_init, .fini = h_curl_fini, .timeout = 120);

/* Lines of the relay's log that contain needle. */
static int log_count(const struct relay *r, const char *needle)
{
	FILE *f = fopen(r->log, "r");
	char line[4096];
	int n = 0;

	cr_assert(f, "cannot read relay log %s", r->log);
	while (fgets(line, sizeof line, f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/* GET /readyz is 200 "ready"; returns the schema version it reports. */
static int expect_ready(struct relay *r)
{
	struct resp p;
	int schema;

	h_http(&p, r, "GET", "/readyz", NULL, NULL);
	cr_assert_eq(p.status, 200, "/readyz on %s: %ld %s (log %s)", r->url, p.status, p.body, r->log);
	cr_assert_str_eq(json_string_value(json_object_get(p.json, "status")), "ready", "%s", p.body);
	schema = (int)json_integer_value(json_object_get(p.json, "schema"));
	cr_assert(schema > 0, "/readyz reports no schema version: %s", p.body);
	h_resp_free(&p);
	return schema;
}

/* schema_migrations: every version 1..max recorded exactly once; returns max. */
static int migrations_recorded(const char *db)
{
	PGconn *c = PQconnectdb(db);
	PGresult *res;
	int count, max, distinct;

	cr_assert(PQstatus(c) == CONNECTION_OK, "cannot connect to %s: %s", db, PQerrorMessage(c));
	res = PQexec(c, "SELECT count(*), coalesce(max(version), 0), count(DISTINCT version) FROM schema_migrations");
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "reading schema_migrations: %s",
		  PQresultErrorMessage(res));
	count = atoi(PQgetvalue(res, 0, 0));
	max = atoi(PQgetvalue(res, 0, 1));
	distinct = atoi(PQgetvalue(res, 0, 2));
	PQclear(res);
	PQfinish(c);
	cr_assert(count == max && distinct == count && max > 0,
		  "schema_migrations holds %d rows (%d distinct) up to version %d", count, distinct, max);
	return max;
}

/* ---- tests ---- */

Test(lifecycle, sigterm_when_idle_exits_zero)
{
	struct relay r;
	struct resp x;
	char url[128];

	h_relay_start(&r, NULL, NULL);
	expect_ready(&r);
	cr_assert_eq(h_relay_stop(&r), 0, "exit status after SIGTERM; see %s", r.log);
	cr_assert_eq(log_count(&r, "stopped"), 1, "the relay did not log its orderly stop; see %s", r.log);
	/* it no longer listens */
	snprintf(url, sizeof url, "%s/healthz", r.url);
	cr_assert_neq(h_xhttp(NULL, "GET", url, NULL, NULL, 90L, &x), 0, "the stopped relay still answered: %ld %s",
		      x.status, x.body);
	h_resp_free(&x);
}

Test(lifecycle, sigterm_answers_held_polls_then_exits_zero)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct h_call h[5];
	double t_sig, t_exit;
	int i, rc;

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &l);
	h_device(&r, &l, &d);
	for (i = 0; i < 5; i++)
		h_call_start(&h[i], &r, d.token, "/v1/libraries/%s/changes?since=0&wait=30", l.id);
	h_wait_held(&r, 5, 1, 10);

	t_sig = h_mono();
	rc = h_relay_stop(&r);
	t_exit = h_mono();
	cr_log_info("SIGTERM with 5 held polls: exited after %.3f s", t_exit - t_sig);
	cr_assert_eq(rc, 0, "exit status after SIGTERM with held polls; see %s", r.log);
	for (i = 0; i < 5; i++) {
		h_call_join(&h[i], t_sig + 10, "a held poll after SIGTERM");
		cr_assert_eq(h[i].rc, 0, "poll %d got no answer before the relay exited: %s", i, h[i].resp.err);
		cr_assert_eq(h[i].resp.status, 200, "poll %d: %ld %s", i, h[i].resp.status, h[i].resp.body);
		cr_assert(json_is_array(json_object_get(h[i].resp.json, "changes")) &&
			  json_array_size(json_object_get(h[i].resp.json, "changes")) == 0,
			  "poll %d: expected changes [], got %s", i, h[i].resp.body);
		cr_assert_eq(json_integer_value(json_object_get(h[i].resp.json, "next")), 0, "%s", h[i].resp.body);
		cr_assert(h[i].t_end - t_sig < 5.0, "poll %d was answered %.3f s after SIGTERM (its wait was 30 s)",
			  i, h[i].t_end - t_sig);
		h_resp_free(&h[i].resp);
	}
}

#define BIG 5000

/* Through a fresh relay on db: the library's head, checked against a full pull of changes
 * 1..head, which must be writer's batch from h_batch(writer, ms, 0, ...) in order. */
static int stored_changes(const char *db, const struct lib *l, const struct dev *reader,
			  const struct dev *writer, uint64_t ms)
{
	struct relay r;
	struct resp p;
	char path[256];
	int head, i;

	h_relay_start(&r, db, NULL);
	snprintf(path, sizeof path, "/v1/libraries/%s", l->id);
	h_http(&p, &r, "GET", path, reader->token, NULL);
	cr_assert_eq(p.status, 200, "%s", p.body);
	head = (int)json_integer_value(json_object_get(p.json, "head"));
	h_resp_free(&p);
	snprintf(path, sizeof path, "/v1/libraries/%s/changes?since=0&limit=10000", l->id);
	h_http(&p, &r, "GET", path, reader->token, NULL);
	cr_assert_eq(p.status, 200, "%s", p.body);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), (size_t)head,
		     "pull: %zu changes, head %d", json_array_size(json_object_get(p.json, "changes")), head);
	for (i = 0; i < head; i++) {
		const json_t *ch = json_array_get(json_object_get(p.json, "changes"), (size_t)i);
		char hlc[SR_HLC_LEN + 1];

		h_hlc(hlc, ms, (uint64_t)i, writer->id);
		cr_assert_eq(json_integer_value(json_object_get(ch, "seq")), i + 1, "change %d has the wrong seq", i);
		cr_assert_str_eq(json_string_value(json_object_get(ch, "hlc")), hlc, "change %d", i);
	}
	h_resp_free(&p);
	cr_assert_eq(h_relay_stop(&r), 0, "checking relay exit status; see %s", r.log);
	return head;
}

struct bigpush {
	char url[256];
	const char *token;
	char *body;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int uploaded; /* the whole body was handed to the socket */
	int rc;
	double t_end;
	struct resp resp;
};

static int big_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct bigpush *b = arg;

	if (ultotal > 0 && ulnow >= ultotal) {
		pthread_mutex_lock(&b->lock);
		if (!b->uploaded) {
			b->uploaded = 1;
			pthread_cond_signal(&b->cond);
		}
		pthread_mutex_unlock(&b->lock);
	}
	return 0;
}

static void *big_run(void *arg)
{
	struct bigpush *b = arg;
	CURL *c = curl_easy_init();

	if (c) {
		/* the progress callback tells the test once the whole body is on its way */
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, big_progress);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, b);
		b->rc = h_xhttp(c, "POST", b->url, b->token, b->body, 90L, &b->resp);
		curl_easy_cleanup(c);
	} else {
		b->rc = -1;
		snprintf(b->resp.err, sizeof b->resp.err, "curl_easy_init failed");
	}
	b->t_end = h_mono();
	pthread_mutex_lock(&b->lock);
	b->uploaded = 2; /* finished, uploaded or not */
	pthread_cond_signal(&b->cond);
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

Test(lifecycle, sigterm_during_a_push_keeps_it_whole)
{
	struct relay r;
	struct lib l;
	struct dev writer, reader;
	struct bigpush b;
	struct timespec until;
	pthread_t th;
	uint64_t ms = h_now_ms();
	double t0, t_sig;
	int rc, stored, answered, uploaded;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &writer, &reader);

	memset(&b, 0, sizeof b);
	pthread_mutex_init(&b.lock, NULL);
	pthread_cond_init(&b.cond, NULL);
	snprintf(b.url, sizeof b.url, "%s/v1/libraries/%s/changes", r.url, l.id);
	b.token = writer.token;
	b.body = h_batch(&writer, ms, 0, BIG);
	t0 = h_mono();
	cr_assert_eq(pthread_create(&th, NULL, big_run, &b), 0);

	/* SIGTERM as soon as the body is on its way: the relay is then reading or storing it */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 20;
	pthread_mutex_lock(&b.lock);
	while (!b.uploaded && pthread_cond_timedwait(&b.cond, &b.lock, &until) == 0)
		;
	uploaded = b.uploaded;
	pthread_mutex_unlock(&b.lock);
	cr_assert(uploaded, "waited 20 s for the %d-change push (%zu bytes) to be sent; it was not", BIG,
		  strlen(b.body));
	t_sig = h_mono();
	rc = h_relay_stop(&r);
	cr_assert_eq(rc, 0, "exit status after SIGTERM during a push; see %s", r.log);

	/* the push thread ends once the relay is gone, at the latest */
	pthread_mutex_lock(&b.lock);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	while (b.uploaded != 2 && pthread_cond_timedwait(&b.cond, &b.lock, &until) == 0)
		;
	uploaded = b.uploaded;
	pthread_mutex_unlock(&b.lock);
	cr_assert_eq(uploaded, 2, "the push had no outcome 30 s after the relay exited");
	pthread_join(th, NULL);
	answered = b.rc == 0 && b.resp.status == 200;
	cr_log_info("push of %d changes: SIGTERM %.3f s after it started; outcome: %s%s%ld %s", BIG,
		    t_sig - t0, b.rc ? b.resp.err : "", b.rc ? "" : "HTTP ", b.rc ? 0L : b.resp.status,
		    answered ? "(completed)" : "(refused)");
	if (answered) {
		cr_assert_eq(json_integer_value(json_object_get(b.resp.json, "accepted")), BIG, "%s", b.resp.body);
		/* else the test exercised nothing */
		cr_assert(b.t_end > t_sig, "the push was answered %.3f s before SIGTERM: it was not in flight",
			  t_sig - b.t_end);
	}

	stored = stored_changes(r.db, &l, &reader, &writer, ms);
	cr_assert(stored == 0 || stored == BIG, "a partial batch was stored: head %d of %d", stored, BIG);
	cr_assert_eq(stored, answered ? BIG : 0,
		     "the client was answered %s but the database holds %d of the %d changes",
		     answered ? "200" : "with a refusal", stored, BIG);
	h_resp_free(&b.resp);
	free(b.body);
}

/* A push whose body stops halfway until the test releases it. */
struct slowpush {
	char url[256];
	const char *token;
	char *body;
	size_t len, off, half;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int half_sent; /* the relay asked for the body (100 Continue) and took its first half */
	int released;
	int finished;
	int rc;
	long status;
	char *resp;
	char err[256];
};

static size_t slow_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct slowpush *s = arg;
	size_t n = size * nitems, limit;

	pthread_mutex_lock(&s->lock);
	if (s->off >= s->half && !s->released) {
		struct timespec until;

		s->half_sent = 1;
		pthread_cond_broadcast(&s->cond);
		/* bounded, so a failed test never leaves this thread stuck */
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 30;
		while (!s->released && pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
			;
		s->released = 1;
	}
	limit = s->released ? s->len : s->half;
	pthread_mutex_unlock(&s->lock);
	if (n > limit - s->off)
		n = limit - s->off;
	memcpy(buf, s->body + s->off, n);
	s->off += n;
	return n;
}

static void *slow_run(void *arg)
{
	struct slowpush *s = arg;
	CURL *c = curl_easy_init();
	struct curl_slist *hdr = NULL;
	char auth[256];
	sr_buf b = {0};
	CURLcode rc = CURLE_FAILED_INIT;

	if (c) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", s->token);
		hdr = curl_slist_append(hdr, auth);
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
		/* the relay's 100 Continue proves it has taken the request before any body is sent */
		hdr = curl_slist_append(hdr, "Expect: 100-continue");
		curl_easy_setopt(c, CURLOPT_URL, s->url);
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, slow_read);
		curl_easy_setopt(c, CURLOPT_READDATA, s);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->len);
		curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 30000L);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(c, CURLOPT_TIMEOUT, 90L);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_write_buf);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
		rc = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
		curl_slist_free_all(hdr);
		curl_easy_cleanup(c);
	}
	pthread_mutex_lock(&s->lock);
	s->rc = rc;
	snprintf(s->err, sizeof s->err, "%s", curl_easy_strerror(rc));
	s->resp = sr_buf_steal(&b);
	s->finished = 1;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Waits on s->cond until *flag, by the monotonic deadline; fails naming what it waited for. */
static void slow_wait(struct slowpush *s, const int *flag, double deadline, const char *what)
{
	int ok;

	pthread_mutex_lock(&s->lock);
	while (!*flag && h_mono() < deadline) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 50 * 1000 * 1000;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cond, &s->lock, &until);
	}
	ok = *flag;
	pthread_mutex_unlock(&s->lock);
	cr_assert(ok, "%s (sent %zu of %zu body bytes, finished %d)", what, s->off, s->len, s->finished);
}

Test(lifecycle, sigterm_while_a_push_body_is_arriving_finishes_it)
{
	struct relay r;
	struct lib l;
	struct dev writer, reader;
	struct slowpush s;
	struct resp x;
	pthread_t th;
	char url[128];
	uint64_t ms = h_now_ms();
	double t_sig, t_refused = 0;
	json_t *j;
	int status;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &writer, &reader);

	memset(&s, 0, sizeof s);
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	snprintf(s.url, sizeof s.url, "%s/v1/libraries/%s/changes", r.url, l.id);
	s.token = writer.token;
	s.body = h_batch(&writer, ms, 0, BIG);
	s.len = strlen(s.body);
	s.half = s.len / 2;
	cr_assert_eq(pthread_create(&th, NULL, slow_run, &s), 0);
	slow_wait(&s, &s.half_sent, h_mono() + 20,
		  "waited 20 s for the relay to ask for the push body (100 Continue) and take half of it");

	t_sig = h_mono();
	cr_assert_eq(kill(r.pid, SIGTERM), 0);
	/* the relay stops accepting: a new connection is refused */
	snprintf(url, sizeof url, "%s/healthz", r.url);
	for (;;) {
		struct timespec tick = {0, 20 * 1000 * 1000};

		if (h_xhttp(NULL, "GET", url, NULL, NULL, 90L, &x)) {
			t_refused = h_mono();
			break;
		}
		h_resp_free(&x);
		cr_assert(h_mono() - t_sig < 10, "the relay still accepted new connections 10 s after SIGTERM");
		nanosleep(&tick, NULL);
	}
	/* ... but it waits for the request it has half read */
	cr_assert_eq(waitpid(r.pid, &status, WNOHANG), 0,
		     "the relay exited with a push in flight (half its body received); see %s", r.log);

	pthread_mutex_lock(&s.lock);
	s.released = 1;
	pthread_cond_broadcast(&s.cond);
	pthread_mutex_unlock(&s.lock);
	slow_wait(&s, &s.finished, h_mono() + 30, "waited 30 s for the push to be answered once its body was complete");
	pthread_join(th, NULL);
	cr_log_info("push in flight at SIGTERM: new connections refused %.3f s after SIGTERM; the push: %s %ld",
		    t_refused - t_sig, s.err, s.status);
	cr_assert_eq(s.rc, CURLE_OK, "the push in flight at SIGTERM got no answer: %s (relay log %s)", s.err, r.log);
	cr_assert_eq(s.status, 200, "the push in flight at SIGTERM: %ld %s", s.status, s.resp);
	j = json_loads(s.resp, 0, NULL);
	cr_assert_eq(json_integer_value(json_object_get(j, "accepted")), BIG, "%s", s.resp);
	json_decref(j);
	cr_assert_eq(h_relay_stop(&r), 0, "exit status after SIGTERM; see %s", r.log);
	cr_assert_eq(stored_changes(r.db, &l, &reader, &writer, ms), BIG, "the answered push is not stored whole");
	free(s.resp);
	free(s.body);
}

Test(lifecycle, two_relays_started_at_once_share_the_migration)
{
	struct relay a, b;
	struct lib l;
	struct dev d;
	struct resp p;
	char db[512], path[256], *batch;
	int fa, fb, va, vb, applied;
	double deadline;

	h_db_create(db, sizeof db);
	h_relay_spawn(&a, db, NULL, &fa);
	h_relay_spawn(&b, db, NULL, &fb);
	deadline = h_mono() + 30;
	h_relay_await(&a, fa, deadline);
	h_relay_await(&b, fb, deadline);
	va = expect_ready(&a);
	vb = expect_ready(&b);
	cr_assert_eq(va, vb, "the relays report schema versions %d and %d", va, vb);
	cr_assert_eq(migrations_recorded(db), va, "schema_migrations disagrees with /readyz (%d)", va);
	applied = log_count(&a, "applied migration") + log_count(&b, "applied migration");
	cr_assert_eq(applied, va, "the two relays applied %d migrations between them, expected %d once each"
		     " (logs %s, %s)", applied, va, a.log, b.log);
	cr_assert_eq(log_count(&a, "ERROR") + log_count(&b, "ERROR"), 0, "errors in %s or %s", a.log, b.log);

	/* both serve the one database: create on A, enroll and push on B, read on A */
	h_library(&a, &l);
	h_device(&b, &l, &d);
	h_schema_ref(&b, &l, &d);
	batch = h_batch(&d, h_now_ms(), 0, 3);
	snprintf(path, sizeof path, "/v1/libraries/%s/changes", l.id);
	h_http(&p, &b, "POST", path, d.token, batch);
	cr_assert_eq(p.status, 200, "push on B: %s", p.body);
	h_resp_free(&p);
	free(batch);
	snprintf(path, sizeof path, "/v1/libraries/%s/changes?include_own=1", l.id);
	h_http(&p, &a, "GET", path, d.token, NULL);
	cr_assert_eq(p.status, 200, "pull on A: %s", p.body);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 3, "pull on A: %s", p.body);
	h_resp_free(&p);

	cr_assert_eq(h_relay_stop(&a), 0, "relay A exit status; see %s", a.log);
	cr_assert_eq(h_relay_stop(&b), 0, "relay B exit status; see %s", b.log);
}

Test(lifecycle, relay_on_a_migrated_database_starts_ready)
{
	struct relay a, b;
	struct lib l;
	struct resp p;
	char path[128];
	int v;

	h_relay_start(&a, NULL, NULL);
	v = expect_ready(&a);
	cr_assert(log_count(&a, "applied migration") == v, "the first relay applied %d of %d migrations",
		  log_count(&a, "applied migration"), v);
	h_library(&a, &l);
	cr_assert_eq(h_relay_stop(&a), 0, "first relay exit status; see %s", a.log);

	h_relay_start(&b, a.db, NULL);
	cr_assert_eq(expect_ready(&b), v, "the second relay reports another schema version");
	cr_assert_eq(log_count(&b, "applied migration"), 0, "the second relay applied migrations again; see %s",
		     b.log);
	cr_assert_eq(migrations_recorded(b.db), v, "schema_migrations changed on restart");
	snprintf(path, sizeof path, "/v1/libraries/%s", l.id);
	h_http(&p, &b, "GET", path, H_ADMIN, NULL);
	cr_assert_eq(p.status, 200, "the library made before the restart: %ld %s", p.status, p.body);
	cr_assert_str_eq(json_string_value(json_object_get(p.json, "library_id")), l.id, "%s", p.body);
	h_resp_free(&p);
	cr_assert_eq(h_relay_stop(&b), 0, "second relay exit status; see %s", b.log);
}

/* The relay takes the hard open-files limit: held polls are open connections. */
Test(lifecycle, the_open_files_limit_is_raised_at_start, .timeout = 60)
{
	struct rlimit old, low;
	struct relay r;
	char path[64], line[256];
	FILE *f;
	long long soft = -1;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	if (old.rlim_max <= 1024)
		cr_skip_test("the hard open-files limit is %llu: nothing to raise", (unsigned long long)old.rlim_max);
	low = old;
	low.rlim_cur = 1024;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	h_relay_start(&r, NULL, NULL); /* inherits the soft limit of 1,024 */
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	snprintf(path, sizeof path, "/proc/%d/limits", (int)r.pid);
	f = fopen(path, "r");
	cr_assert(f, "cannot read %s", path);
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "Max open files", 14))
			soft = atoll(line + 14 + strspn(line + 14, " "));
	fclose(f);
	cr_assert_eq((unsigned long long)soft, (unsigned long long)old.rlim_max,
		     "the relay's soft open-files limit is %lld, the hard one %llu", soft, (unsigned long long)old.rlim_max);
	cr_assert_eq(h_relay_stop(&r), 0);
}
