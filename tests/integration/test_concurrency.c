/*
 * Concurrency: several devices push at once (each thread with its own libcurl handle)
 * while a puller follows the cursor. The puller must see every change exactly once, in
 * seq order with no gap, whether the pushes reach one relay or two relays on one database.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define NDEV 4
#define NBATCH 25
#define BATCH 40
#define TOTAL (NDEV * NBATCH * BATCH)
#define PULL_LIMIT 50
#define DEADLINE_S 60.0

TestSuite(concurrency, .init = h_curl_init, .fini = h_curl_fini, .timeout = 120);

/* ---- pushers ---- */

struct pusher {
	const char *url;
	const char *lib;
	struct dev dev;
	uint64_t base_ms;
	pthread_barrier_t *start;
	int ok;             /* batches answered 200 with accepted == BATCH */
	long long heads[NBATCH];
	char err[1024];     /* first failure, or "" */
};

static void *pusher_run(void *arg)
{
	struct pusher *p = arg;
	CURL *c = curl_easy_init();
	char url[256];
	int j;

	snprintf(url, sizeof url, "%s/v1/libraries/%s/changes", p->url, p->lib);
	pthread_barrier_wait(p->start);
	if (!c) {
		snprintf(p->err, sizeof p->err, "curl_easy_init failed");
		return NULL;
	}
	for (j = 0; j < NBATCH && !p->err[0]; j++) {
		char *batch = h_batch(&p->dev, p->base_ms, j * BATCH, BATCH);
		struct resp r;

		if (h_xhttp(c, "POST", url, p->dev.token, batch, 60L, &r))
			snprintf(p->err, sizeof p->err, "batch %d: %s", j, r.err);
		else if (r.status != 200 || json_integer_value(json_object_get(r.json, "accepted")) != BATCH ||
			 json_integer_value(json_object_get(r.json, "duplicates")) != 0)
			snprintf(p->err, sizeof p->err, "batch %d: expected 200 with %d accepted, got %ld %s", j,
				 BATCH, r.status, r.body);
		else {
			p->heads[j] = json_integer_value(json_object_get(r.json, "head"));
			p->ok++;
		}
		h_resp_free(&r);
		free(batch);
	}
	curl_easy_cleanup(c);
	return NULL;
}

/* ---- the puller ---- */

struct puller {
	const char *url;
	const char *lib;
	const char *token;
	int pushers_done; /* set (atomically) once every pusher has its answers */
	double deadline;
	long long next, head;
	int nseen, requests, held_polls;
	int pages_during_pushes; /* pages whose head was still below TOTAL */
	char (*hlcs)[SR_HLC_LEN + 1]; /* TOTAL entries, in seq order */
	char err[1024];
};

/* Checks one page; fills p->err on the first inconsistency. */
static void puller_page(struct puller *p, long long since, const json_t *page)
{
	const json_t *changes = json_object_get(page, "changes"), *ch;
	long long next = json_integer_value(json_object_get(page, "next"));
	long long head = json_integer_value(json_object_get(page, "head"));
	int more = json_is_true(json_object_get(page, "more"));
	size_t i;

	if (!json_is_array(changes) || !json_is_integer(json_object_get(page, "next")) ||
	    !json_is_integer(json_object_get(page, "head"))) {
		snprintf(p->err, sizeof p->err, "since=%lld: page lacks changes/next/head", since);
		return;
	}
	if (json_array_size(changes) > PULL_LIMIT) {
		snprintf(p->err, sizeof p->err, "since=%lld: %zu changes, above limit %d", since,
			 json_array_size(changes), PULL_LIMIT);
		return;
	}
	if (head < p->head) {
		snprintf(p->err, sizeof p->err, "since=%lld: head went back from %lld to %lld", since, p->head,
			 head);
		return;
	}
	json_array_foreach(changes, i, ch) {
		long long seq = json_integer_value(json_object_get(ch, "seq"));
		const char *hlc = json_string_value(json_object_get(ch, "hlc"));

		if (seq != since + 1 + (long long)i) {
			snprintf(p->err, sizeof p->err,
				 "since=%lld: change %zu has seq %lld, expected %lld (a gap, a repeat or disorder)",
				 since, i, seq, since + 1 + (long long)i);
			return;
		}
		if (!hlc || strlen(hlc) != SR_HLC_LEN || p->nseen >= TOTAL) {
			snprintf(p->err, sizeof p->err, "since=%lld: seq %lld has a bad hlc or is beyond %d changes",
				 since, seq, TOTAL);
			return;
		}
		memcpy(p->hlcs[p->nseen++], hlc, SR_HLC_LEN + 1);
	}
	/* include_own=1: nothing is skipped, so next is exactly the last seq returned */
	if (next != since + (long long)json_array_size(changes) || next > head || more != (next < head)) {
		snprintf(p->err, sizeof p->err, "since=%lld: %zu changes but next=%lld head=%lld more=%d", since,
			 json_array_size(changes), next, head, more);
		return;
	}
	p->next = next;
	p->head = head;
}

static void *puller_run(void *arg)
{
	struct puller *p = arg;
	CURL *c = curl_easy_init();

	if (!c) {
		snprintf(p->err, sizeof p->err, "curl_easy_init failed");
		return NULL;
	}
	for (;;) {
		int done_before = __atomic_load_n(&p->pushers_done, __ATOMIC_SEQ_CST);
		long long since = p->next;
		char url[1024];
		struct resp r;

		if (h_mono() > p->deadline) {
			snprintf(p->err, sizeof p->err,
				 "deadline: waited %.0f s for the cursor to reach head after the pushers finished"
				 " (pushers done: %d); saw next=%lld head=%lld, %d changes in %d requests",
				 DEADLINE_S, done_before, p->next, p->head, p->nseen, p->requests);
			break;
		}
		/* while pushes go on, hold briefly when caught up; afterwards never wait */
		snprintf(url, sizeof url, "%s/v1/libraries/%s/changes?since=%lld&limit=%d&include_own=1&wait=%d",
			 p->url, p->lib, since, PULL_LIMIT, done_before ? 0 : 2);
		if (h_xhttp(c, "GET", url, p->token, NULL, 60L, &r)) {
			snprintf(p->err, sizeof p->err, "%s", r.err);
			break;
		}
		p->requests++;
		if (r.status != 200 || !r.json) {
			snprintf(p->err, sizeof p->err, "since=%lld: expected 200, got %ld %s", since, r.status, r.body);
			h_resp_free(&r);
			break;
		}
		if (json_array_size(json_object_get(r.json, "changes")) == 0)
			p->held_polls++;
		if (json_integer_value(json_object_get(r.json, "head")) < TOTAL)
			p->pages_during_pushes++;
		puller_page(p, since, r.json);
		h_resp_free(&r);
		if (p->err[0])
			break;
		/* a page read after every push was answered, and caught up: the puller is done */
		if (done_before && p->next == p->head)
			break;
	}
	curl_easy_cleanup(c);
	return NULL;
}

/* ---- the scenario ---- */

static int cmp_hlc(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Pushers 0..NDEV-1 push to relays[i % nrelays]; the puller reads relays[0]. */
static void run_scenario(struct relay *relays, int nrelays)
{
	struct relay *a = &relays[0];
	struct pusher pushers[NDEV];
	struct puller pl;
	struct dev reader;
	struct lib l;
	pthread_t pt[NDEV], rt;
	pthread_barrier_t start;
	char (*want)[SR_HLC_LEN + 1];
	char heads_seen[TOTAL / BATCH + 1] = {0};
	double t0;
	int i, j, k, nwant = 0;
	struct resp p;
	char path[128];

	h_fixture(a, &l, &reader, NULL);
	memset(pushers, 0, sizeof pushers);
	cr_assert_eq(pthread_barrier_init(&start, NULL, NDEV + 1), 0);
	for (i = 0; i < NDEV; i++) {
		h_device(a, &l, &pushers[i].dev);
		pushers[i].url = relays[i % nrelays].url;
		pushers[i].lib = l.id;
		pushers[i].base_ms = h_now_ms();
		pushers[i].start = &start;
	}
	memset(&pl, 0, sizeof pl);
	pl.url = a->url;
	pl.lib = l.id;
	pl.token = reader.token;
	pl.hlcs = calloc(TOTAL, sizeof *pl.hlcs);
	cr_assert(pl.hlcs);

	t0 = h_mono();
	pl.deadline = t0 + DEADLINE_S;
	cr_assert_eq(pthread_create(&rt, NULL, puller_run, &pl), 0);
	for (i = 0; i < NDEV; i++)
		cr_assert_eq(pthread_create(&pt[i], NULL, pusher_run, &pushers[i]), 0);
	pthread_barrier_wait(&start);
	for (i = 0; i < NDEV; i++)
		pthread_join(pt[i], NULL);
	__atomic_store_n(&pl.pushers_done, 1, __ATOMIC_SEQ_CST);
	pthread_join(rt, NULL);
	pthread_barrier_destroy(&start);
	cr_log_info("%d relay(s): %d changes pushed by %d devices and followed by the puller in %.2f s"
		    " (%d pull requests, %d while pushes went on, %d empty)",
		    nrelays, TOTAL, NDEV, h_mono() - t0, pl.requests, pl.pages_during_pushes, pl.held_polls);

	for (i = 0; i < NDEV; i++)
		cr_assert(pushers[i].ok == NBATCH && !pushers[i].err[0],
			  "pusher %d (to %s): %d of %d batches accepted; first failure: %s", i, pushers[i].url,
			  pushers[i].ok, NBATCH, pushers[i].err);
	/* every batch got its own block of seqs: the heads are exactly 40, 80, ... TOTAL */
	for (i = 0; i < NDEV; i++)
		for (j = 0; j < NBATCH; j++) {
			long long h = pushers[i].heads[j];
			cr_assert(h > 0 && h % BATCH == 0 && h <= TOTAL && !heads_seen[h / BATCH],
				  "pusher %d batch %d answered head %lld: not a fresh multiple of %d up to %d", i, j,
				  h, BATCH, TOTAL);
			heads_seen[h / BATCH] = 1;
		}

	cr_assert(!pl.err[0], "puller: %s", pl.err);
	/* the puller followed the pushes, not merely read the log once they were over */
	cr_assert(pl.pages_during_pushes > 0, "no page was read while the pushes went on (%d requests)",
		  pl.requests);
	cr_assert_eq(pl.nseen, TOTAL, "puller saw %d changes, %d were pushed", pl.nseen, TOTAL);
	cr_assert_eq(pl.next, TOTAL, "puller cursor ended at %lld, expected %d", pl.next, TOTAL);
	cr_assert_eq(pl.head, TOTAL, "last head seen %lld, expected %d", pl.head, TOTAL);

	/* batches are atomic and keep their order: seq block b holds one batch, counters in order */
	for (k = 0; k < TOTAL; k += BATCH) {
		sr_hlc first, h;

		cr_assert_eq(sr_hlc_parse(&first, pl.hlcs[k], SR_HLC_LEN), 0, "seq %d: bad hlc %s", k + 1,
			     pl.hlcs[k]);
		cr_assert_eq(first.counter % BATCH, 0, "seq %d starts a block but has counter %llu", k + 1,
			     (unsigned long long)first.counter);
		for (j = 1; j < BATCH; j++) {
			sr_hlc_parse(&h, pl.hlcs[k + j], SR_HLC_LEN);
			cr_assert(!strcmp(h.device, first.device) && h.counter == first.counter + (uint64_t)j,
				  "seq %d: %s does not follow %s of the same batch (interleaved batches?)",
				  k + j + 1, pl.hlcs[k + j], pl.hlcs[k]);
		}
	}

	/* every pushed HLC seen exactly once */
	want = calloc(TOTAL, sizeof *want);
	cr_assert(want);
	for (i = 0; i < NDEV; i++)
		for (k = 0; k < NBATCH * BATCH; k++)
			h_hlc(want[nwant++], pushers[i].base_ms, (uint64_t)k, pushers[i].dev.id);
	qsort(want, TOTAL, sizeof *want, cmp_hlc);
	qsort(pl.hlcs, TOTAL, sizeof *pl.hlcs, cmp_hlc);
	for (k = 0; k < TOTAL; k++) {
		cr_assert(k == 0 || strcmp(pl.hlcs[k - 1], pl.hlcs[k]),
			  "the puller saw %s twice", pl.hlcs[k]);
		cr_assert_str_eq(pl.hlcs[k], want[k], "pulled and pushed HLC sets differ at sorted index %d", k);
	}

	/* the state that follows: both relays report the same head */
	snprintf(path, sizeof path, "/v1/libraries/%s", l.id);
	for (i = 0; i < nrelays; i++) {
		h_http(&p, &relays[i], "GET", path, reader.token, NULL);
		cr_assert_eq(p.status, 200, "%s", p.body);
		cr_assert_eq(json_integer_value(json_object_get(p.json, "head")), TOTAL, "relay %d: %s", i, p.body);
		h_resp_free(&p);
	}
	free(want);
	free(pl.hlcs);
}

Test(concurrency, pushers_and_puller_on_one_relay)
{
	struct relay r;

	h_relay_start(&r, NULL, NULL);
	run_scenario(&r, 1);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status; see %s", r.log);
}

Test(concurrency, pushers_split_over_two_relays_on_one_database)
{
	struct relay r[2];

	h_relay_start(&r[0], NULL, NULL);
	h_relay_start(&r[1], r[0].db, NULL);
	run_scenario(r, 2);
	cr_assert_eq(h_relay_stop(&r[1]), 0, "relay B exit status; see %s", r[1].log);
	cr_assert_eq(h_relay_stop(&r[0]), 0, "relay A exit status; see %s", r[0].log);
}
