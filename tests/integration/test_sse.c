/*
 * The live change feed: a pull with Accept: text/event-stream. Events arrive as changes are
 * pushed (id = seq, event: change, data = the change's JSON exactly as a pull page holds it);
 * a stream dropped and resumed with Last-Event-ID (or since) loses and repeats nothing; a bad
 * cursor or token is a plain problem+json before any stream; streams are held like long-polls
 * (counted in syncrelay_longpolls_held, within the device's poll cap, no thread each) and end
 * cleanly on SIGTERM. Every wait has a deadline and names what it waited for.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

TestSuite(sse, .init = h_curl_init, .fini = h_curl_fini, .timeout = 180);

/* ---- an event-stream client on a thread of its own ---- */

#define MAXEV 4096

struct event {
	long long id; /* -1 without an id line */
	char name[32];
	char *data;
};

struct stream {
	char url[512];
	char token[160];
	char last_id[32]; /* sent as Last-Event-ID when not "" */
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	sr_buf raw;       /* every byte received */
	size_t parsed;    /* raw offset up to which events were parsed */
	struct event ev[MAXEV];
	int nev, keepalives, opened, done, stop, joined;
	CURLcode rc;
	long status;
	char ctype[128];
	double t_end;
};

/* Parses the complete events in raw (lock held). */
static void parse(struct stream *s)
{
	for (;;) {
		char *start = s->raw.p + s->parsed, *end = strstr(start, "\n\n"), *line;
		struct event e = {.id = -1};
		sr_buf data = {0};
		int ndata = 0;

		if (!end)
			return;
		*end = '\0';
		for (line = start; line && *line;) {
			char *nl = strchr(line, '\n');

			if (nl)
				*nl = '\0';
			if (!strncmp(line, "id: ", 4))
				e.id = atoll(line + 4);
			else if (!strncmp(line, "event: ", 7))
				snprintf(e.name, sizeof e.name, "%s", line + 7);
			else if (!strncmp(line, "data: ", 6)) {
				if (ndata++)
					sr_buf_putc(&data, '\n');
				sr_buf_puts(&data, line + 6);
			} else if (!strcmp(line, ": keepalive"))
				s->keepalives++;
			else if (!strcmp(line, ": open"))
				s->opened = 1;
			if (nl)
				*nl = '\n';
			line = nl ? nl + 1 : NULL;
		}
		*end = '\n';
		s->parsed = (size_t)(end - s->raw.p) + 2;
		if (ndata && s->nev < MAXEV) {
			e.data = sr_buf_steal(&data);
			s->ev[s->nev++] = e;
		}
		sr_buf_free(&data);
	}
}

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
	struct stream *s = arg;

	pthread_mutex_lock(&s->mu);
	sr_buf_put(&s->raw, data, size * nmemb);
	parse(s);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return size * nmemb;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	return __atomic_load_n(&((struct stream *)arg)->stop, __ATOMIC_SEQ_CST);
}

static void *stream_run(void *arg)
{
	struct stream *s = arg;
	CURL *c = curl_easy_init();
	struct curl_slist *hdr = h_xheaders(s->token[0] ? s->token : NULL);
	char last[64];
	char *ct = NULL;
	CURLcode rc = CURLE_FAILED_INIT;

	hdr = curl_slist_append(hdr, "Accept: text/event-stream");
	if (s->last_id[0]) {
		snprintf(last, sizeof last, "Last-Event-ID: %s", s->last_id);
		hdr = curl_slist_append(hdr, last);
	}
	if (c) {
		curl_easy_setopt(c, CURLOPT_URL, s->url);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
		rc = curl_easy_perform(c);
	}
	pthread_mutex_lock(&s->mu);
	s->rc = rc;
	if (c) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
		if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
			snprintf(s->ctype, sizeof s->ctype, "%s", ct);
	}
	s->t_end = h_mono();
	s->done = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	curl_slist_free_all(hdr);
	if (c)
		curl_easy_cleanup(c);
	return NULL;
}

/* Opens a stream of path on r as token (NULL: none), with Last-Event-ID last (NULL: none). */
static struct stream *stream_open(const struct relay *r, const char *token, const char *last, const char *path)
{
	struct stream *s = calloc(1, sizeof *s);

	cr_assert(s);
	snprintf(s->url, sizeof s->url, "%s%s", r->url, path);
	snprintf(s->token, sizeof s->token, "%s", token ? token : "");
	snprintf(s->last_id, sizeof s->last_id, "%s", last ? last : "");
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	sr_buf_puts(&s->raw, "");
	cr_assert_eq(pthread_create(&s->th, NULL, stream_run, s), 0);
	return s;
}

static void deadline_ts(struct timespec *ts, double deadline)
{
	double left = deadline - h_mono();

	clock_gettime(CLOCK_REALTIME, ts);
	if (left < 0)
		left = 0;
	ts->tv_sec += (time_t)left;
	ts->tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Waits by the monotonic deadline until the stream has n events (done: 0), its open comment
 * (n < 0) or k keepalives (keep > 0); fails naming what and showing what came. */
static void stream_wait(struct stream *s, int n, int keep, double deadline, const char *what)
{
	struct timespec ts;
	int ok;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		ok = keep > 0 ? s->keepalives >= keep : n < 0 ? s->opened : s->nev >= n;
		if (ok || s->done || h_mono() >= deadline)
			break;
		deadline_ts(&ts, deadline < h_mono() + 0.2 ? deadline : h_mono() + 0.2);
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	}
	pthread_mutex_unlock(&s->mu);
	cr_assert(ok, "%s: waited for %d events / %d keepalives / the open comment; have %d events, %d keepalives,"
		  " open %d, done %d (curl %d, status %ld); received:\n%.2000s", what, n, keep, s->nev, s->keepalives,
		  s->opened, s->done, s->rc, s->status, s->raw.p);
}

/* Waits for the response to end by the deadline. */
static void stream_wait_done(struct stream *s, double deadline, const char *what)
{
	struct timespec ts;

	pthread_mutex_lock(&s->mu);
	while (!s->done && h_mono() < deadline) {
		deadline_ts(&ts, deadline < h_mono() + 0.2 ? deadline : h_mono() + 0.2);
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	}
	pthread_mutex_unlock(&s->mu);
	cr_assert(s->done, "%s: the response had not ended by its deadline; received:\n%.2000s", what, s->raw.p);
}

/* Drops the connection (the client goes away) and joins the client; what came stays readable. */
static void stream_stop(struct stream *s)
{
	struct timespec ts;

	if (s->joined)
		return;
	__atomic_store_n(&s->stop, 1, __ATOMIC_SEQ_CST);
	/* libcurl calls the progress callback at least once a second, so the abort is prompt */
	deadline_ts(&ts, h_mono() + 10);
	cr_assert_eq(pthread_timedjoin_np(s->th, NULL, &ts), 0, "the stream client did not stop within 10 s");
	s->joined = 1;
}

/* stream_stop, then frees the stream. */
static void stream_close(struct stream *s)
{
	int i;

	stream_stop(s);
	for (i = 0; i < s->nev; i++)
		free(s->ev[i].data);
	sr_buf_free(&s->raw);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

/* Closes n streams, all dropped at once (each client notices within a second). */
static void stream_close_all(struct stream **s, int n)
{
	int i;

	for (i = 0; i < n; i++)
		__atomic_store_n(&s[i]->stop, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < n; i++)
		stream_close(s[i]);
}

/* Snapshot of event i (lock taken). */
static struct event ev_at(struct stream *s, int i)
{
	struct event e;

	pthread_mutex_lock(&s->mu);
	cr_assert(i < s->nev, "event %d of %d", i, s->nev);
	e = s->ev[i];
	pthread_mutex_unlock(&s->mu);
	return e;
}

/* Asserts event e is the change with seq and data {"i": k} pushed by d. */
static void expect_change(const struct event *e, long long seq, int k, const struct dev *d)
{
	json_error_t err;
	json_t *j = json_loads(e->data, 0, &err);

	cr_assert(j, "event %lld: data is not JSON (%s): %s", e->id, err.text, e->data);
	cr_assert_str_eq(e->name, "change", "event %lld is \"%s\"", e->id, e->name);
	cr_assert_eq(e->id, seq, "event id %lld, expected seq %lld: %s", e->id, seq, e->data);
	cr_assert_eq(h_jint(j, "seq"), seq, "the id is the change's seq: id %lld, %s", e->id, e->data);
	cr_assert_str_eq(h_jstr(j, "model"), "entry", "%s", e->data);
	cr_assert_str_eq(h_jstr(j, "op"), "upsert", "%s", e->data);
	cr_assert_eq(h_jint(json_object_get(j, "data"), "i"), k, "event %lld holds the wrong change: %s", seq, e->data);
	cr_assert(strstr(h_jstr(j, "hlc"), d->id), "event %lld: not a change of device %s: %s", seq, d->id, e->data);
	json_decref(j);
}

static void push_n(struct relay *r, const struct lib *l, const struct dev *d, uint64_t ms, int first, int n)
{
	h_push_ok(r, l, d, h_batch(d, ms, first, n), n, 0);
}

/* ---- tests ---- */

Test(sse, events_arrive_as_pushed_with_seq_ids_and_the_pull_json)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct stream *s;
	struct resp p;
	struct event e;
	uint64_t ms = h_now_ms();
	double t_push;
	char hlc[SR_HLC_LEN + 1];
	int i;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);
	/* wait=2: keepalives every 2 s, so the relay finds the client gone soon after it left */
	s = stream_open(&r, d2.token, NULL, h_lp(&l, "/changes?since=0&wait=2"));
	stream_wait(s, -1, 0, h_mono() + 10, "the stream opens");
	cr_assert_eq(s->nev, 0, "an empty library streamed a change");
	/* parked between events: counted as a held poll */
	h_wait_held(&r, 1, 1, 10);

	push_n(&r, &l, &d1, ms, 0, 1);
	t_push = h_mono();
	stream_wait(s, 1, 0, t_push + 5, "the pushed change arrives");
	cr_log_info("stream latency (push answered -> event received): %.1f ms", (h_mono() - t_push) * 1e3);
	e = ev_at(s, 0);
	expect_change(&e, 1, 0, &d1);
	h_hlc(hlc, ms, 0, d1.id);
	cr_assert(strstr(e.data, hlc), "the event names another change: %s", e.data);
	/* data is the change's JSON byte for byte as a pull page holds it */
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=0"), d2.token, NULL);
	cr_assert_eq(p.status, 200, "%s", p.body);
	cr_assert(strstr(p.body, e.data), "the event's data is not the pull's change text:\n%s\n%s", e.data, p.body);
	h_resp_free(&p);

	/* three more pushes, one by one: three more events, in seq order */
	for (i = 1; i <= 3; i++) {
		push_n(&r, &l, &d1, ms, i, 1);
		stream_wait(s, i + 1, 0, h_mono() + 5, "a later push arrives");
	}
	for (i = 0; i < 4; i++) {
		e = ev_at(s, i);
		expect_change(&e, i + 1, i, &d1);
	}
	cr_assert_eq(s->status, 0, "the stream ended early: %ld", s->status);
	cr_assert(!s->done, "the stream ended: %.500s", s->raw.p);
	stream_close(s);
	/* a dropped stream is noticed at its next write at the latest (a keepalive) */
	h_wait_held(&r, 0, 1, 10);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status; see %s", r.log);
}

Test(sse, headers_own_changes_and_keepalives)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct stream *own, *other;
	uint64_t ms = h_now_ms();
	double t0;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);
	/* wait=1: a keepalive comment after each silent second */
	own = stream_open(&r, d1.token, NULL, h_lp(&l, "/changes?since=0&wait=1"));
	other = stream_open(&r, d2.token, NULL, h_lp(&l, "/changes?since=0&wait=1"));
	h_wait_held(&r, 2, 1, 10);
	t0 = h_mono();
	stream_wait(other, 0, 2, t0 + 6, "two keepalives on an idle stream");
	cr_log_info("two keepalives after %.2f s with wait=1", h_mono() - t0);

	push_n(&r, &l, &d1, ms, 0, 2);
	stream_wait(other, 2, 0, h_mono() + 5, "the other device's stream gets both changes");
	/* the author's own changes are left out; a keepalive after them shows its stream went on */
	pthread_mutex_lock(&own->mu);
	int kept = own->keepalives;
	pthread_mutex_unlock(&own->mu);
	stream_wait(own, 0, kept + 1, h_mono() + 5, "the author's stream keeps going");
	cr_assert_eq(own->nev, 0, "the author's own change came back on its stream: %s", own->raw.p);

	{
		struct stream *both[2] = {own, other};

		stream_close_all(both, 2);
	}
	/* headers seen by a plain request with the same Accept */
	{
		CURL *c = curl_easy_init();
		struct curl_slist *hdr = h_xheaders(d2.token);
		sr_buf hb = {0}, body = {0};
		char url[512];
		long status = 0;

		hdr = curl_slist_append(hdr, "Accept: text/event-stream");
		/* wait=1: the relay finds the client gone at the keepalive a second after it left */
		snprintf(url, sizeof url, "%s%s", r.url, h_lp(&l, "/changes?since=0&wait=1"));
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1500L);
		curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, h_write_buf);
		curl_easy_setopt(c, CURLOPT_HEADERDATA, &hb);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_write_buf);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
		/* a stream does not end by itself: the timeout is the expected end here */
		cr_assert_eq(curl_easy_perform(c), CURLE_OPERATION_TIMEDOUT, "the stream ended by itself: %s", body.p);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		cr_assert_eq(status, 200, "%s", hb.p);
		cr_assert(strcasestr(hb.p, "content-type: text/event-stream"), "%s", hb.p);
		cr_assert(strcasestr(hb.p, "cache-control: no-cache"), "%s", hb.p);
		cr_assert(strcasestr(hb.p, "x-request-id:"), "%s", hb.p);
		cr_assert(body.p && strstr(body.p, "id: 2\nevent: change\ndata: {"), "%s", body.p ? body.p : "");
		sr_buf_free(&hb);
		sr_buf_free(&body);
		curl_slist_free_all(hdr);
		curl_easy_cleanup(c);
	}
	h_wait_held(&r, 0, 1, 10);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status; see %s", r.log);
}

Test(sse, resume_with_last_event_id_loses_and_repeats_nothing)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	uint64_t ms = h_now_ms();
	/* batches pushed before the rounds' streams, while they are open, and while none is */
	const int sizes[] = {3, 250, 1, 40, 7, 120};
	const int nround = (int)(sizeof sizes / sizeof sizes[0]);
	long long last = 0;
	int pushed = 0, got = 0, round, drops = 0;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);
	for (round = 0; round < nround; round++) {
		char id[32];
		struct stream *s;
		int i, want;

		/* pages of 16: a drop can come between pages as well as between pushes */
		snprintf(id, sizeof id, "%lld", last);
		s = stream_open(&r, d2.token, round ? id : NULL, h_lp(&l, "/changes?since=0&limit=16"));
		stream_wait(s, -1, 0, h_mono() + 10, "the stream opens");
		push_n(&r, &l, &d1, ms, pushed, sizes[round]);
		pushed += sizes[round];
		/* take some of what is there (round 0: all), then drop the connection mid-stream */
		want = round == nround - 1 ? pushed - got : (sizes[round] + 1) / 2;
		stream_wait(s, want, 0, h_mono() + 20, "events after a resume");
		stream_stop(s);
		cr_log_info("round %d: the connection took %d events of %d pending, then dropped", round, s->nev,
			    pushed - got);
		/* everything this connection delivered, whole events only */
		for (i = 0; i < s->nev; i++) {
			struct event *e = &s->ev[i];

			got++;
			cr_assert_eq(e->id, last + 1, "round %d: after event %lld came %lld (a %s)", round, last, e->id,
				     e->id <= last ? "repeat" : "gap");
			expect_change(e, got, got - 1, &d1);
			last = e->id;
		}
		drops++;
		stream_close(s);
		/* and a push while no stream is open */
		if (round < nround - 1) {
			push_n(&r, &l, &d1, ms, pushed, 5);
			pushed += 5;
		}
	}
	cr_log_info("%d changes over %d connections, resumed with Last-Event-ID: none lost, none repeated", got, drops);
	cr_assert_eq(got, pushed, "received %d of %d changes", got, pushed);
	cr_assert_eq(last, pushed, "last id %lld, head %d", last, pushed);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status; see %s", r.log);
}

Test(sse, since_resumes_and_last_event_id_wins)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct stream *s;
	struct resp p;
	struct event e;
	uint64_t ms = h_now_ms();
	const char *hlc3;
	char path[512];

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);
	push_n(&r, &l, &d1, ms, 0, 5);
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=2&limit=1"), d2.token, NULL);
	cr_assert_eq(p.status, 200, "%s", p.body);
	hlc3 = h_jstr(p.json, "next_hlc");
	cr_assert(hlc3, "%s", p.body);

	/* since with its change named: the changes after it, nothing before */
	snprintf(path, sizeof path, "%s", h_lp(&l, "/changes?since=3&since_hlc=%s", hlc3));
	s = stream_open(&r, d2.token, NULL, path);
	stream_wait(s, 2, 0, h_mono() + 10, "since=3 streams 4 and 5");
	e = ev_at(s, 0);
	expect_change(&e, 4, 3, &d1);
	e = ev_at(s, 1);
	expect_change(&e, 5, 4, &d1);
	push_n(&r, &l, &d1, ms, 5, 1);
	stream_wait(s, 3, 0, h_mono() + 5, "a push after the resume");
	e = ev_at(s, 2);
	expect_change(&e, 6, 5, &d1);
	stream_close(s);

	/* Last-Event-ID wins over since (and since_hlc, which named since's change, is not checked) */
	s = stream_open(&r, d2.token, "5", path);
	stream_wait(s, 1, 0, h_mono() + 10, "Last-Event-ID 5 streams 6");
	e = ev_at(s, 0);
	expect_change(&e, 6, 5, &d1);
	stream_wait(s, -1, 0, h_mono() + 1, "open");
	cr_assert_eq(s->nev, 1, "Last-Event-ID 5 streamed more than seq 6: %s", s->raw.p);
	stream_close(s);
	h_resp_free(&p);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status; see %s", r.log);
}

/* A stream request that must be refused with a problem before any stream starts. */
static void refused(struct relay *r, const char *token, const char *last, const char *path, long status,
		    const char *code)
{
	struct stream *s = stream_open(r, token, last, path);
	json_t *j;

	stream_wait_done(s, h_mono() + 10, path);
	cr_assert_eq(s->rc, CURLE_OK, "%s: curl %d", path, s->rc);
	cr_assert_eq(s->status, status, "%s (Last-Event-ID %s): status %ld, expected %ld: %s", path,
		     last ? last : "-", s->status, status, s->raw.p);
	cr_assert(!strncmp(s->ctype, "application/problem+json", 24), "%s: Content-Type %s", path, s->ctype);
	j = json_loads(s->raw.p, 0, NULL);
	cr_assert(j, "%s: not JSON: %s", path, s->raw.p);
	cr_assert_str_eq(h_jstr(j, "code"), code, "%s: %s", path, s->raw.p);
	json_decref(j);
	stream_close(s);
}

Test(sse, bad_cursor_or_token_is_a_problem_before_the_stream)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	uint64_t ms = h_now_ms();
	char *before, *after;
	struct resp p;
	int i;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);
	push_n(&r, &l, &d1, ms, 0, 3);
	before = h_db_checksum(&r);
	refused(&r, d2.token, NULL, h_lp(&l, "/changes?since=x"), 400, "bad-request");
	refused(&r, d2.token, NULL, h_lp(&l, "/changes?since=-1"), 400, "bad-request");
	refused(&r, d2.token, NULL, h_lp(&l, "/changes?since=0&wait=61"), 400, "bad-request");
	refused(&r, d2.token, "abc", h_lp(&l, "/changes?since=0"), 400, "bad-request");
	refused(&r, d2.token, "-3", h_lp(&l, "/changes"), 400, "bad-request");
	refused(&r, d2.token, NULL, h_lp(&l, "/changes?since=9"), 410, "resync-required");
	refused(&r, d2.token, "9", h_lp(&l, "/changes?since=0"), 410, "resync-required");
	refused(&r, d2.token, NULL, h_lp(&l, "/changes?since=2&since_hlc=%s", "0000000000000001-0000000000000000-"
					  "11111111-1111-4111-8111-111111111111"), 410, "resync-required");
	refused(&r, NULL, NULL, h_lp(&l, "/changes?since=0"), 401, "unauthorized");
	refused(&r, "sr_0000000000000000000000000000000000000000000000000000000000000000", NULL,
		h_lp(&l, "/changes?since=0"), 401, "unauthorized");
	after = h_db_checksum(&r);
	cr_assert_str_eq(before, after, "a refused stream changed the database");
	free(before);
	free(after);
	cr_assert_eq(h_metric(&r, "syncrelay_longpolls_held"), 0, "a refused stream is held");

	/* the device's poll cap (8 by default) counts streams: the ninth is refused, 429 */
	{
		struct stream *s[8];

		for (i = 0; i < 8; i++)
			s[i] = stream_open(&r, d2.token, NULL, h_lp(&l, "/changes?since=3"));
		h_wait_held(&r, 8, 1, 10);
		refused(&r, d2.token, NULL, h_lp(&l, "/changes?since=3"), 429, "rate-limited");
		/* and a long-poll of that device is answered at once rather than held */
		h_http(&p, &r, "GET", h_lp(&l, "/changes?since=3&wait=10"), d2.token, NULL);
		cr_assert_eq(p.status, 200, "%s", p.body);
		cr_assert(p.seconds < 2, "a long-poll over the cap was held %.2f s", p.seconds);
		h_resp_free(&p);
		/* another device is not limited by d2's streams */
		{
			struct stream *o = stream_open(&r, d1.token, NULL, h_lp(&l, "/changes?since=3"));

			stream_wait(o, -1, 0, h_mono() + 10, "another device's stream opens");
			stream_close(o);
		}
		stream_close_all(s, 8);
	}
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status; see %s", r.log);
}

Test(sse, a_revoked_device_s_stream_ends_with_the_problem)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct stream *s;
	struct resp p;
	struct event e;
	uint64_t ms = h_now_ms();

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);
	s = stream_open(&r, d2.token, NULL, h_lp(&l, "/changes?since=0"));
	h_wait_held(&r, 1, 1, 10);
	h_http(&p, &r, "DELETE", h_lp(&l, "/devices/%s", d2.id), H_ADMIN, NULL);
	cr_assert(p.status == 200 || p.status == 204, "revoke: %ld %s", p.status, p.body);
	h_resp_free(&p);
	/* the next wake checks the token again */
	push_n(&r, &l, &d1, ms, 0, 1);
	stream_wait_done(s, h_mono() + 10, "the revoked device's stream ends");
	cr_assert_eq(s->rc, CURLE_OK, "the stream did not end cleanly: curl %d", s->rc);
	cr_assert_eq(s->nev, 1, "expected one problem event: %s", s->raw.p);
	e = ev_at(s, 0);
	cr_assert_str_eq(e.name, "problem", "%s", s->raw.p);
	cr_assert(strstr(e.data, "\"code\":\"unauthorized\""), "%s", e.data);
	stream_close(s);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status; see %s", r.log);
}

#define NSTREAM 40

Test(sse, many_streams_hold_no_thread_each)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct stream *s[NSTREAM];
	uint64_t ms = h_now_ms();
	double t_push, worst = 0, max_get = 0;
	int i;
	/* 2 libmicrohttpd threads and 2 request workers hold 40 streams */
	const char *env[] = {"SYNCRELAY_THREADS=2", "SYNCRELAY_WORKERS=2", "SYNCRELAY_MAX_POLLS_PER_DEVICE=1000",
			     "SYNCRELAY_RATE_BURST=2000", NULL};

	h_relay_start(&r, NULL, env);
	h_fixture(&r, &l, &d1, &d2);
	for (i = 0; i < NSTREAM; i++)
		s[i] = stream_open(&r, d2.token, NULL, h_lp(&l, "/changes?since=0"));
	h_wait_held(&r, NSTREAM, 1, 30);
	for (i = 0; i < 20; i++) {
		struct resp p;

		h_http(&p, &r, "GET", h_lp(&l, ""), d1.token, NULL);
		cr_assert_eq(p.status, 200, "%s", p.body);
		if (p.seconds > max_get)
			max_get = p.seconds;
		h_resp_free(&p);
	}
	cr_log_info("with %d streams held on 2 threads and 2 workers: 20 GETs, slowest %.1f ms", NSTREAM,
		    max_get * 1e3);
	cr_assert(max_get < 0.5, "a GET took %.3f s with %d streams held", max_get, NSTREAM);

	push_n(&r, &l, &d1, ms, 0, 1);
	t_push = h_mono();
	for (i = 0; i < NSTREAM; i++) {
		struct event e;

		stream_wait(s[i], 1, 0, t_push + 10, "every stream gets the change");
		e = ev_at(s[i], 0);
		expect_change(&e, 1, 0, &d1);
		if (h_mono() - t_push > worst)
			worst = h_mono() - t_push;
	}
	cr_log_info("one push reached all %d streams within %.1f ms", NSTREAM, worst * 1e3);
	stream_close_all(s, NSTREAM);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status; see %s", r.log);
}

Test(sse, sigterm_ends_streams_cleanly)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct stream *s[3];
	uint64_t ms = h_now_ms();
	double t0, took;
	int i;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);
	push_n(&r, &l, &d1, ms, 0, 2);
	for (i = 0; i < 3; i++)
		s[i] = stream_open(&r, d2.token, NULL, h_lp(&l, "/changes?since=0"));
	for (i = 0; i < 3; i++)
		stream_wait(s[i], 2, 0, h_mono() + 10, "the streams catch up");
	h_wait_held(&r, 3, 1, 10);
	t0 = h_mono();
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status; see %s", r.log);
	took = h_mono() - t0;
	cr_log_info("SIGTERM with 3 streams open: relay exited after %.1f ms", took * 1e3);
	cr_assert(took < 5, "the relay took %.2f s to stop with streams open (grace 30 s)", took);
	for (i = 0; i < 3; i++) {
		stream_wait_done(s[i], h_mono() + 5, "a stream ends on SIGTERM");
		/* a clean end: the last chunk came, nothing cut off */
		cr_assert_eq(s[i]->rc, CURLE_OK, "stream %d ended with curl error %d: %s", i, s[i]->rc, s[i]->raw.p);
		cr_assert_eq(s[i]->status, 200, "%ld", s[i]->status);
		cr_assert_eq(s[i]->nev, 2, "%s", s[i]->raw.p);
		stream_close(s[i]);
	}
}
