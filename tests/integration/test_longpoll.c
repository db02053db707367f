/*
 * Long-polls: a held pull is woken at once by a push (on the same relay or another relay
 * on the database), answers [] at its deadline, never returns the poller's own change,
 * refuses waits above the limit, and 300 of them held at once leave the relay responsive.
 * Holds are confirmed through /metrics (syncrelay_longpolls_held), never by sleeping.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

TestSuite(longpoll, .init = h_curl_init, .fini = h_curl_fini, .timeout = 120);

/* ---- fixtures ---- */

struct world {
	struct relay r;
	struct lib l;
	struct dev d1, d2; /* d1 pushes, d2 polls */
};

/* Pushes n changes and returns the monotonic time the answer arrived; seconds taken in *took. */
static double push(struct relay *r, const struct lib *l, const struct dev *d, uint64_t ms, int first,
		   int n, double *took)
{
	char path[128], *batch = h_batch(d, ms, first, n);
	struct resp p;
	double t;

	snprintf(path, sizeof path, "/v1/libraries/%s/changes", l->id);
	h_http(&p, r, "POST", path, d->token, batch);
	t = h_mono();
	cr_assert_eq(p.status, 200, "push to %s: %ld %s", r->url, p.status, p.body);
	cr_assert_eq(json_integer_value(json_object_get(p.json, "accepted")), n, "push: %s", p.body);
	if (took)
		*took = p.seconds;
	h_resp_free(&p);
	free(batch);
	return t;
}

/* Asserts a pull answer holds exactly the one change hlc, and next/head. */
static void expect_one_change(const json_t *page, const char *body, const char *hlc, long long seq)
{
	const json_t *changes = json_object_get(page, "changes");
	const char *got = json_string_value(json_object_get(json_array_get(changes, 0), "hlc"));

	cr_assert_eq(json_array_size(changes), 1, "expected the one pushed change, got %s", body);
	cr_assert(got && !strcmp(got, hlc), "expected change %s, got %s", hlc, body);
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(changes, 0), "seq")), seq, "%s", body);
	cr_assert_eq(json_integer_value(json_object_get(page, "next")), seq, "%s", body);
	cr_assert_eq(json_integer_value(json_object_get(page, "head")), seq, "%s", body);
}

/* ---- tests ---- */

Test(longpoll, held_poll_is_woken_by_a_push_from_another_device)
{
	struct world w;
	struct h_call c;
	char hlc[SR_HLC_LEN + 1];
	uint64_t ms = h_now_ms();
	double t_push, latency;

	h_relay_start(&w.r, NULL, NULL);
	h_fixture(&w.r, &w.l, &w.d1, &w.d2);
	h_call_start(&c, &w.r, w.d2.token, "/v1/libraries/%s/changes?since=0&wait=10", w.l.id);
	h_wait_held(&w.r, 1, 1, 10);

	t_push = push(&w.r, &w.l, &w.d1, ms, 0, 1, NULL);
	h_call_join(&c, t_push + 5, "poll woken by a push");
	latency = c.t_end - t_push;
	cr_log_info("long-poll wake latency (push answered -> poll answered): %.1f ms", latency * 1e3);
	cr_assert_eq(c.resp.status, 200, "%s", c.resp.body);
	h_hlc(hlc, ms, 0, w.d1.id);
	expect_one_change(c.resp.json, c.resp.body, hlc, 1);
	cr_assert(latency < 1.0, "the poll returned %.3f s after the push was answered (limit 1 s)", latency);
	h_wait_held(&w.r, 0, 1, 5);
	h_resp_free(&c.resp);
	cr_assert_eq(h_relay_stop(&w.r), 0, "relay exit status; see %s", w.r.log);
}

Test(longpoll, wait_with_nothing_new_answers_empty_at_its_deadline)
{
	struct world w;
	struct lib empty;
	struct resp p;
	char path[256];
	uint64_t ms = h_now_ms();

	h_relay_start(&w.r, NULL, NULL);
	h_fixture(&w.r, &w.l, &w.d1, &w.d2);
	push(&w.r, &w.l, &w.d1, ms, 0, 2, NULL);

	/* caught up with two changes: nothing new after since=2 */
	snprintf(path, sizeof path, "/v1/libraries/%s/changes?since=2&wait=1", w.l.id);
	h_http(&p, &w.r, "GET", path, w.d2.token, NULL);
	cr_assert_eq(p.status, 200, "%s", p.body);
	cr_assert(json_is_array(json_object_get(p.json, "changes")) &&
		  json_array_size(json_object_get(p.json, "changes")) == 0, "expected changes [], got %s", p.body);
	cr_assert_eq(json_integer_value(json_object_get(p.json, "next")), 2, "%s", p.body);
	cr_assert_eq(json_integer_value(json_object_get(p.json, "head")), 2, "%s", p.body);
	cr_assert(json_is_false(json_object_get(p.json, "more")), "%s", p.body);
	cr_assert(p.seconds >= 0.9 && p.seconds < 3.0, "wait=1 answered after %.3f s, expected about 1 s",
		  p.seconds);
	cr_log_info("wait=1 on a caught-up library answered after %.3f s", p.seconds);
	h_resp_free(&p);

	/* a library that never had a change */
	h_library(&w.r, &empty);
	{
		struct dev d;
		h_device(&w.r, &empty, &d);
		snprintf(path, sizeof path, "/v1/libraries/%s/changes?wait=1", empty.id);
		h_http(&p, &w.r, "GET", path, d.token, NULL);
	}
	cr_assert_eq(p.status, 200, "%s", p.body);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 0, "%s", p.body);
	cr_assert_eq(json_integer_value(json_object_get(p.json, "next")), 0, "%s", p.body);
	cr_assert(p.seconds >= 0.9 && p.seconds < 3.0, "wait=1 on an empty library answered after %.3f s",
		  p.seconds);
	h_resp_free(&p);
	h_wait_held(&w.r, 0, 1, 5);
	cr_assert_eq(h_relay_stop(&w.r), 0, "relay exit status; see %s", w.r.log);
}

Test(longpoll, poll_on_one_relay_is_woken_by_a_push_to_another)
{
	struct relay a, b;
	struct world w;
	struct h_call c;
	char hlc[SR_HLC_LEN + 1];
	uint64_t ms = h_now_ms();
	double t_push, latency;

	h_relay_start(&a, NULL, NULL);
	h_relay_start(&b, a.db, NULL);
	h_fixture(&a, &w.l, &w.d1, &w.d2);
	h_call_start(&c, &a, w.d2.token, "/v1/libraries/%s/changes?since=0&wait=10", w.l.id);
	h_wait_held(&a, 1, 1, 10);
	cr_assert_eq(h_metric(&b, "syncrelay_longpolls_held"), 0, "relay B holds a poll it never received");

	t_push = push(&b, &w.l, &w.d1, ms, 0, 1, NULL);
	h_call_join(&c, t_push + 5, "poll on relay A woken by a push to relay B");
	latency = c.t_end - t_push;
	cr_log_info("cross-relay wake latency (push to B answered -> poll on A answered): %.1f ms",
		    latency * 1e3);
	cr_assert_eq(c.resp.status, 200, "%s", c.resp.body);
	h_hlc(hlc, ms, 0, w.d1.id);
	expect_one_change(c.resp.json, c.resp.body, hlc, 1);
	cr_assert(latency < 1.0, "the poll on A returned %.3f s after the push to B was answered (limit 1 s)",
		  latency);
	h_resp_free(&c.resp);
	cr_assert_eq(h_relay_stop(&b), 0, "relay B exit status; see %s", b.log);
	cr_assert_eq(h_relay_stop(&a), 0, "relay A exit status; see %s", a.log);
}

Test(longpoll, own_change_does_not_answer_the_poll)
{
	struct world w;
	struct h_call own, other;
	char hlc[SR_HLC_LEN + 1];
	uint64_t ms = h_now_ms();
	double t_push, held_for;

	h_relay_start(&w.r, NULL, NULL);
	h_fixture(&w.r, &w.l, &w.d1, &w.d2);
	/* d1 waits 3 s and is the author of the coming change; d2 waits 10 s and should get it */
	h_call_start(&own, &w.r, w.d1.token, "/v1/libraries/%s/changes?since=0&wait=3", w.l.id);
	h_call_start(&other, &w.r, w.d2.token, "/v1/libraries/%s/changes?since=0&wait=10", w.l.id);
	h_wait_held(&w.r, 2, 1, 10);

	t_push = push(&w.r, &w.l, &w.d1, ms, 0, 1, NULL);
	/* the push woke the library: d2's poll returns with the change ... */
	h_call_join(&other, t_push + 5, "poll of the other device");
	cr_assert_eq(other.resp.status, 200, "%s", other.resp.body);
	h_hlc(hlc, ms, 0, w.d1.id);
	expect_one_change(other.resp.json, other.resp.body, hlc, 1);
	cr_assert(other.t_end - t_push < 1.0, "the other device's poll took %.3f s after the push",
		  other.t_end - t_push);
	/* ... while the author's poll, woken too, found only its own change and is held again */
	h_wait_held(&w.r, 1, 1, 5);
	cr_assert(own.t_end == 0, "the author's poll returned %.3f s after the push: %s",
		  own.t_end - t_push, own.resp.body ? own.resp.body : own.resp.err);

	h_call_join(&own, own.t_start + 3 + 5, "the author's poll, due at its 3 s deadline");
	held_for = own.t_end - own.t_start;
	cr_log_info("author's poll answered after %.3f s (push at %.3f s)", held_for, t_push - own.t_start);
	cr_assert_eq(own.resp.status, 200, "%s", own.resp.body);
	cr_assert(json_is_array(json_object_get(own.resp.json, "changes")) &&
		  json_array_size(json_object_get(own.resp.json, "changes")) == 0,
		  "the author's own change came back to it: %s", own.resp.body);
	cr_assert_eq(json_integer_value(json_object_get(own.resp.json, "next")), 1,
		     "next must move past the own change: %s", own.resp.body);
	cr_assert_eq(json_integer_value(json_object_get(own.resp.json, "head")), 1, "%s", own.resp.body);
	cr_assert(held_for >= 2.9 && held_for < 6.0,
		  "the author's poll was answered after %.3f s, expected its 3 s deadline", held_for);
	h_resp_free(&own.resp);
	h_resp_free(&other.resp);
	cr_assert_eq(h_relay_stop(&w.r), 0, "relay exit status; see %s", w.r.log);
}

Test(longpoll, wait_above_the_limit_is_refused)
{
	struct world w;
	struct resp p;
	char path[256], hlc[SR_HLC_LEN + 1];
	const char *bad[] = {"61", "-1", "3600", "x", "1.5"};
	uint64_t ms = h_now_ms();
	size_t i;

	h_relay_start(&w.r, NULL, NULL);
	h_fixture(&w.r, &w.l, &w.d1, &w.d2);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(path, sizeof path, "/v1/libraries/%s/changes?since=0&wait=%s", w.l.id, bad[i]);
		h_http(&p, &w.r, "GET", path, w.d2.token, NULL);
		cr_assert(p.seconds < 1.0, "wait=%s took %.3f s to refuse", bad[i], p.seconds);
		h_expect_problem(&p, 400, "bad-request");
		h_resp_free(&p);
	}
	cr_assert_eq(h_metric(&w.r, "syncrelay_longpolls_held"), 0, "a refused poll is held");

	/* the limit itself is accepted: with a change pending it answers at once */
	push(&w.r, &w.l, &w.d1, ms, 0, 1, NULL);
	snprintf(path, sizeof path, "/v1/libraries/%s/changes?since=0&wait=60", w.l.id);
	h_http(&p, &w.r, "GET", path, w.d2.token, NULL);
	cr_assert_eq(p.status, 200, "wait=60: %ld %s", p.status, p.body);
	h_hlc(hlc, ms, 0, w.d1.id);
	expect_one_change(p.json, p.body, hlc, 1);
	cr_assert(p.seconds < 1.0, "wait=60 with a change pending took %.3f s", p.seconds);
	h_resp_free(&p);
	cr_assert_eq(h_relay_stop(&w.r), 0, "relay exit status; see %s", w.r.log);
}

/* ---- 300 held polls through one curl multi handle ---- */

#define NPOLL 300

struct mpoll {
	CURL *e;
	sr_buf body;
	struct curl_slist *hdr;
	CURLcode rc;
	long status;
	double t_end;
	int done;
};

struct multi {
	char url[512];
	const char *token;
	struct mpoll p[NPOLL];
	int ndone; /* atomic */
	double hard_deadline;
	char err[256];
};

static void *multi_run(void *arg)
{
	struct multi *m = arg;
	CURLM *cm = curl_multi_init();
	int i, running = 1;

	if (!cm) {
		snprintf(m->err, sizeof m->err, "curl_multi_init failed");
		return NULL;
	}
	for (i = 0; i < NPOLL; i++) {
		struct mpoll *p = &m->p[i];

		p->e = curl_easy_init();
		if (!p->e) {
			snprintf(m->err, sizeof m->err, "curl_easy_init failed at poll %d", i);
			goto cleanup;
		}
		p->hdr = h_xheaders(m->token);
		curl_easy_setopt(p->e, CURLOPT_URL, m->url);
		curl_easy_setopt(p->e, CURLOPT_TIMEOUT, 90L);
		curl_easy_setopt(p->e, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(p->e, CURLOPT_WRITEFUNCTION, h_write_buf);
		curl_easy_setopt(p->e, CURLOPT_WRITEDATA, &p->body);
		curl_easy_setopt(p->e, CURLOPT_HTTPHEADER, p->hdr);
		curl_easy_setopt(p->e, CURLOPT_PRIVATE, p);
		curl_multi_add_handle(cm, p->e);
	}
	while (running && __atomic_load_n(&m->ndone, __ATOMIC_SEQ_CST) < NPOLL && h_mono() < m->hard_deadline) {
		CURLMsg *msg;
		int left;

		curl_multi_perform(cm, &running);
		while ((msg = curl_multi_info_read(cm, &left)) != NULL) {
			struct mpoll *p = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&p);
			p->rc = msg->data.result;
			curl_easy_getinfo(p->e, CURLINFO_RESPONSE_CODE, &p->status);
			p->t_end = h_mono();
			p->done = 1;
			__atomic_add_fetch(&m->ndone, 1, __ATOMIC_SEQ_CST);
		}
		curl_multi_poll(cm, NULL, 0, 50, NULL);
	}
cleanup:
	for (i = 0; i < NPOLL; i++)
		if (m->p[i].e) {
			curl_multi_remove_handle(cm, m->p[i].e);
			curl_easy_cleanup(m->p[i].e);
			m->p[i].e = NULL;
			curl_slist_free_all(m->p[i].hdr);
		}
	curl_multi_cleanup(cm);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

Test(longpoll, three_hundred_held_polls_leave_the_relay_responsive, .timeout = 150)
{
	struct world w;
	struct lib other;
	struct dev d3;
	struct multi *m = calloc(1, sizeof *m);
	pthread_t th;
	struct timespec ts;
	char path[256], hlc[SR_HLC_LEN + 1];
	double lat[60], sorted[60], t_push, worst_wake = 0, max_get = 0, max_push = 0, shared0, shared, acquires0,
	       acquires;
	uint64_t ms = h_now_ms();
	int i, rc, worst = 0;

	/* one device holds all 300: lift the per-device poll and rate limits for it */
	const char *env[] = {"SYNCRELAY_MAX_POLLS_PER_DEVICE=1000", "SYNCRELAY_RATE_BURST=2000", NULL};

	cr_assert(m);
	h_relay_start(&w.r, NULL, env);
	h_fixture(&w.r, &w.l, &w.d1, &w.d2);
	h_fixture(&w.r, &other, &d3, NULL);

	snprintf(m->url, sizeof m->url, "%s/v1/libraries/%s/changes?since=0&wait=20", w.r.url, w.l.id);
	m->token = w.d2.token;
	m->hard_deadline = h_mono() + 60;
	cr_assert_eq(pthread_create(&th, NULL, multi_run, m), 0);
	h_wait_held(&w.r, NPOLL, 0, 30);
	cr_assert_eq(__atomic_load_n(&m->ndone, __ATOMIC_SEQ_CST), 0,
		     "%d polls returned before anything was pushed (%s)", m->ndone, m->err);

	/* with the 300 held: 50 reads and 10 pushes to another library stay fast */
	snprintf(path, sizeof path, "/v1/libraries/%s", w.l.id);
	for (i = 0; i < 50; i++) {
		struct resp p;

		h_http(&p, &w.r, "GET", path, w.d1.token, NULL);
		cr_assert_eq(p.status, 200, "GET %s: %ld %s", path, p.status, p.body);
		cr_assert_eq(json_integer_value(json_object_get(p.json, "head")), 0, "%s", p.body);
		lat[i] = p.seconds;
		if (p.seconds > max_get)
			max_get = p.seconds;
		h_resp_free(&p);
	}
	for (i = 0; i < 10; i++) {
		push(&w.r, &other, &d3, ms, i * 10, 10, &lat[50 + i]);
		if (lat[50 + i] > max_push)
			max_push = lat[50 + i];
	}
	memcpy(sorted, lat, sizeof sorted);
	qsort(sorted, 60, sizeof sorted[0], cmp_double);
	cr_log_info("with %d polls held: 60 requests, median %.1f ms, max %.1f ms (GET max %.1f ms, push max %.1f ms)",
		    NPOLL, (sorted[29] + sorted[30]) / 2 * 1e3, sorted[59] * 1e3, max_get * 1e3, max_push * 1e3);
	for (i = 0; i < 60; i++)
		cr_assert(lat[i] < 0.5, "%s %d took %.3f s with %d polls held (limit 0.5 s)",
			  i < 50 ? "GET" : "push", i < 50 ? i : i - 50, lat[i], NPOLL);
	/* pushes to another library wake no one here */
	cr_assert_eq(__atomic_load_n(&m->ndone, __ATOMIC_SEQ_CST), 0,
		     "%d polls returned after pushes to another library", m->ndone);
	h_wait_held(&w.r, NPOLL, 0, 5);

	/* one change to the held library answers all 300, from one read of the page shared by
	 * the woken polls (at most one read per worker before the first is kept) */
	shared0 = h_metric(&w.r, "syncrelay_pull_pages_shared_total");
	acquires0 = h_metric(&w.r, "syncrelay_db_pool_wait_seconds_count");
	t_push = push(&w.r, &w.l, &w.d1, ms, 0, 1, NULL);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	rc = pthread_timedjoin_np(th, NULL, &ts);
	cr_assert_eq(rc, 0, "%d of %d polls had returned 10 s after the push", m->ndone, NPOLL);
	cr_assert(!m->err[0], "%s", m->err);
	h_hlc(hlc, ms, 0, w.d1.id);
	for (i = 0; i < NPOLL; i++) {
		struct mpoll *p = &m->p[i];
		char *body = sr_buf_steal(&p->body);
		json_t *j;

		cr_assert(p->done && p->rc == CURLE_OK, "poll %d: %s", i,
			  p->done ? curl_easy_strerror(p->rc) : "never finished");
		cr_assert_eq(p->status, 200, "poll %d: %ld %s", i, p->status, body ? body : "");
		j = json_loads(body ? body : "", 0, NULL);
		cr_assert(j, "poll %d: the answer is not JSON: %s", i, body ? body : "");
		expect_one_change(j, body, hlc, 1);
		if (p->t_end - t_push > worst_wake) {
			worst_wake = p->t_end - t_push;
			worst = i;
		}
		json_decref(j);
		free(body);
	}
	cr_log_info("all %d polls answered with the change; the last %.1f ms after the push", NPOLL,
		    worst_wake * 1e3);
	shared = h_metric(&w.r, "syncrelay_pull_pages_shared_total") - shared0;
	cr_log_info("%.0f of the %d woken polls answered from a shared page", shared, NPOLL);
	cr_assert_geq(shared, NPOLL - 50, "only %.0f of %d woken polls shared the page: each read its own", shared,
		      NPOLL);
	/* and most were answered without a database connection at all: token and page cached,
	 * answered on libmicrohttpd's thread (the metrics requests take one each) */
	acquires = h_metric(&w.r, "syncrelay_db_pool_wait_seconds_count") - acquires0;
	cr_log_info("%.0f database connections taken to answer %d woken polls", acquires, NPOLL);
	cr_assert_lt(acquires, NPOLL / 2, "%.0f connections taken for %d woken polls", acquires, NPOLL);
	cr_assert(worst_wake < 5.0, "poll %d returned %.3f s after the push (limit 5 s)", worst, worst_wake);
	h_wait_held(&w.r, 0, 1, 5);
	free(m);
	cr_assert_eq(h_relay_stop(&w.r), 0, "relay exit status; see %s", w.r.log);
}

/* A page kept for sharing never hides a change pushed through the same relay: a device that
 * pulls right after another's push was answered sees it. (The push forgets the kept page;
 * the NOTIFY usually moves the generation first, so this checks the outcome, not which of
 * the two made it.) */
Test(longpoll, a_shared_page_never_hides_a_pushed_change)
{
	struct world w;
	char path[256], hlc[SR_HLC_LEN + 1];
	uint64_t ms = h_now_ms();
	int i;

	h_relay_start(&w.r, NULL, NULL);
	h_fixture(&w.r, &w.l, &w.d1, &w.d2);
	snprintf(path, sizeof path, "/v1/libraries/%s/changes?since=0", w.l.id);
	for (i = 0; i < 20; i++) {
		struct resp a, b;

		/* twice: the second is answered from the first's kept page */
		h_http(&a, &w.r, "GET", path, w.d2.token, NULL);
		h_http(&b, &w.r, "GET", path, w.d2.token, NULL);
		cr_assert_eq(b.status, 200, "%s", b.body);
		cr_assert_eq(json_array_size(json_object_get(b.json, "changes")), (size_t)i, "round %d: %s", i, b.body);
		h_resp_free(&a);
		h_resp_free(&b);
		push(&w.r, &w.l, &w.d1, ms, i, 1, NULL);
		h_http(&a, &w.r, "GET", path, w.d2.token, NULL);
		cr_assert_eq(a.status, 200, "%s", a.body);
		cr_assert_eq(json_array_size(json_object_get(a.json, "changes")), (size_t)i + 1,
			     "round %d: the pull right after the push does not show it: %s", i, a.body);
		h_hlc(hlc, ms, (uint64_t)i, w.d1.id);
		cr_assert(strstr(a.body, hlc), "round %d: change %s missing from %s", i, hlc, a.body);
		h_resp_free(&a);
	}
	cr_assert_gt(h_metric(&w.r, "syncrelay_pull_pages_shared_total"), 0, "no page was shared");
	cr_assert_eq(h_relay_stop(&w.r), 0, "relay exit status; see %s", w.r.log);
}

/* Token lookups are cached for a device's run of requests and a woken herd (auth.c), but a
 * revocation through another relay still ends the device's held poll on this one with 401
 * at once, and refuses its next request: the revocation's NOTIFY voids the cache. */
Test(longpoll, revoked_on_another_relay_the_cached_token_is_refused)
{
	struct relay a, b;
	struct world w;
	struct h_call c;
	double t_revoke;
	int i;

	h_relay_start(&a, NULL, NULL);
	h_relay_start(&b, a.db, NULL);
	h_fixture(&a, &w.l, &w.d1, &w.d2);
	for (i = 0; i < 5; i++) /* a run of requests: the lookup is cached on relay A */
		h_http_json(&a, "GET", h_lp(&w.l, ""), w.d2.token, NULL, 200);
	h_call_start(&c, &a, w.d2.token, "/v1/libraries/%s/changes?since=0&wait=20", w.l.id);
	h_wait_held(&a, 1, 1, 10);
	h_http_json(&b, "DELETE", h_lp(&w.l, "/devices/%s", w.d2.id), H_ADMIN, NULL, 200);
	t_revoke = h_mono();
	h_call_join(&c, t_revoke + 5, "the revoked device's held poll");
	cr_assert_eq(c.resp.status, 401, "the poll held on relay A answered %ld after the revocation on B: %s",
		     c.resp.status, c.resp.body);
	h_http_problem(&a, "GET", h_lp(&w.l, ""), w.d2.token, NULL, 401, "unauthorized");
	h_http_json(&a, "GET", h_lp(&w.l, ""), w.d1.token, NULL, 200); /* the other device is still in */
	h_resp_free(&c.resp);
	cr_assert_eq(h_relay_stop(&b), 0);
	cr_assert_eq(h_relay_stop(&a), 0);
}
