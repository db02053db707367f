/*
 * The relay under pressure: inputs that used to slip past (NUL bytes, loose numbers, transfer
 * codings, bodies where none belong), authentication before the body, the per-device rate limit,
 * held polls per device, the connection cap, and revocation ending held polls at once on every
 * relay. Each refusal is checked as problem+json (with Retry-After where it fits), the relay
 * still answering, the library's head unchanged and a checksum of the relay's tables equal.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

TestSuite(pressure, .init = h_curl_init, .fini = h_curl_fini, .timeout = 120);

/* ---- raw HTTP, for requests libcurl would not send ---- */

static int raw_connect(const struct relay *r)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
	int s = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0, "could not connect to %s", r->url);
	return s;
}

/* Sends len bytes of req on a fresh connection and reads the answer until the relay closes or
 * timeout passes; the answer (caller frees) and the seconds until its first byte. */
static char *raw_send(const struct relay *r, const char *req, size_t len, double timeout, double *first)
{
	int s = raw_connect(r);
	double t0 = h_mono(), deadline = t0 + timeout;
	sr_buf b = {0};

	cr_assert(write(s, req, len) == (ssize_t)len, "short write to %s", r->url);
	*first = -1;
	for (;;) {
		struct pollfd pfd = {.fd = s, .events = POLLIN};
		char buf[4096];
		int left = (int)((deadline - h_mono()) * 1000);
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, left) <= 0)
			break;
		n = read(s, buf, sizeof buf);
		if (n <= 0)
			break;
		if (*first < 0)
			*first = h_mono() - t0;
		sr_buf_put(&b, buf, (size_t)n);
	}
	close(s);
	sr_buf_putc(&b, '\0');
	return sr_buf_steal(&b);
}

/* Asserts a raw answer is one HTTP response with status and a problem+json body with code. */
static void expect_raw_problem(const char *ans, int status, const char *code, const char *what)
{
	char line[32];
	const char *body = strstr(ans, "\r\n\r\n");
	json_t *j;

	snprintf(line, sizeof line, "HTTP/1.1 %d ", status);
	cr_assert(!strncmp(ans, line, strlen(line)), "%s: expected %d, got: %.300s", what, status, ans);
	cr_assert(strcasestr(ans, "Content-Type: application/problem+json"), "%s: not problem+json: %.300s", what,
		  ans);
	cr_assert(body, "%s: no body: %.300s", what, ans);
	cr_assert(!strstr(body + 4, "HTTP/1.1 "), "%s: a second response followed: %.600s", what, ans);
	j = json_loads(body + 4, 0, NULL);
	cr_assert(j && h_jstr(j, "code") && !strcmp(h_jstr(j, "code"), code), "%s: expected code %s: %s", what, code,
		  body + 4);
	json_decref(j);
}

/* One libcurl request that also reports Retry-After (-1 when absent). */
struct ans {
	struct resp p;
	int retry_after;
};

static size_t on_hdr(char *d, size_t size, size_t n, void *arg)
{
	struct ans *a = arg;

	if (size * n > 12 && !strncasecmp(d, "Retry-After:", 12))
		a->retry_after = atoi(d + 12);
	return size * n;
}

static void ask(struct ans *a, const struct relay *r, const char *path, const char *token)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hdr = h_xheaders(token);
	sr_buf b = {0}, url = {0};

	memset(a, 0, sizeof *a);
	a->retry_after = -1;
	sr_buf_printf(&url, "%s%s", r->url, path);
	curl_easy_setopt(c, CURLOPT_URL, url.p);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_write_buf);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_hdr);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
	a->p.seconds = h_mono();
	cr_assert(curl_easy_perform(c) == CURLE_OK, "GET %s failed (log %s)", url.p, r->log);
	a->p.seconds = h_mono() - a->p.seconds;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->p.status);
	{
		char *ct = NULL;

		curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
		snprintf(a->p.ctype, sizeof a->p.ctype, "%s", ct ? ct : "");
	}
	sr_buf_putc(&b, '\0');
	a->p.body = sr_buf_steal(&b);
	a->p.json = json_loads(a->p.body, 0, NULL);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	sr_buf_free(&url);
}

/* ---- tests ---- */

Test(pressure, nul_bytes_loose_numbers_and_codings_are_400)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct resp p;
	char req[1024], *ans;
	double first;
	long long head;
	char *sum;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d, NULL);
	h_push_ok(&r, &l, &d, h_batch(&d, h_now_ms(), 0, 3), 3, 0);
	head = h_lib_head(&r, &l);
	sum = h_db_checksum(&r);

	/* %00 in the path and in a query value: refused, not cut short and served */
	snprintf(req, sizeof req, "GET /healthz%%00junk HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ans = raw_send(&r, req, strlen(req), 10, &first);
	expect_raw_problem(ans, 400, "bad-request", "%00 in the path");
	free(ans);
	snprintf(req, sizeof req,
		 "GET /v1/libraries/%s/changes?since=0%%00junk HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
		 "Connection: close\r\n\r\n", l.id, d.token);
	ans = raw_send(&r, req, strlen(req), 10, &first);
	expect_raw_problem(ans, 400, "bad-request", "%00 in a query value");
	free(ans);

	/* numbers: digits only */
	h_http_problem(&r, "GET", h_lp(&l, "/changes?since=+1"), d.token, NULL, 400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&l, "/changes?since=%%201"), d.token, NULL, 400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&l, "/changes?limit=-0"), d.token, NULL, 400, "bad-request");

	/* a transfer coding other than chunked: answered at once, not held until a timeout */
	snprintf(req, sizeof req,
		 "POST /v1/libraries/%s/changes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
		 "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", l.id, d.token);
	ans = raw_send(&r, req, strlen(req), 10, &first);
	expect_raw_problem(ans, 400, "bad-request", "Transfer-Encoding: gzip, chunked");
	cr_assert(first >= 0 && first < 2, "the transfer-coding refusal took %.2f s", first);
	free(ans);

	/* routes without a body take none */
	h_http_problem(&r, "GET", "/healthz", NULL, "{}", 413, "too-large");
	h_http_problem(&r, "GET", h_lp(&l, "/changes"), d.token, "{}", 413, "too-large");

	h_http(&p, &r, "GET", "/healthz", NULL, NULL);
	cr_assert_eq(p.status, 200, "the relay stopped answering: %ld", p.status);
	h_resp_free(&p);
	cr_assert_eq(h_lib_head(&r, &l), head, "a refused request changed the head");
	{
		char *after = h_db_checksum(&r);
		cr_assert_str_eq(after, sum, "a refused request changed the relay's tables");
		free(after);
	}
	free(sum);
	h_relay_stop(&r);
}

Test(pressure, the_token_is_checked_before_the_body_is_read)
{
	struct relay r;
	struct lib l;
	struct dev d;
	char req[1024], *ans;
	double first;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d, NULL);
	/* headers announce 8 MiB and no body follows: a bad token is answered without waiting for it */
	snprintf(req, sizeof req,
		 "POST /v1/libraries/%s/changes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sr_nope\r\n"
		 "Content-Type: application/json\r\nContent-Length: 8388608\r\n\r\n{\"changes\":[", l.id);
	ans = raw_send(&r, req, strlen(req), 10, &first);
	expect_raw_problem(ans, 401, "unauthorized", "unknown token, body pending");
	cr_assert(first >= 0 && first < 2, "the 401 took %.2f s", first);
	free(ans);
	/* a body larger than the route takes, announced: 413 before it is sent */
	snprintf(req, sizeof req,
		 "POST /v1/libraries/%s/ack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
		 "Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n", l.id, d.token);
	ans = raw_send(&r, req, strlen(req), 10, &first);
	expect_raw_problem(ans, 413, "too-large", "an ack body of 2 MB");
	free(ans);
	h_relay_stop(&r);
}

Test(pressure, a_device_over_its_rate_gets_429_with_retry_after)
{
	const char *env[] = {"SYNCRELAY_RATE_PER_S=2", "SYNCRELAY_RATE_BURST=5", NULL};
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct ans a;
	int i, ok = 0, limited = 0;
	long long head;
	char *sum, *after;

	h_relay_start(&r, NULL, env);
	h_fixture(&r, &l, &d1, &d2);
	head = h_lib_head(&r, &l);
	sum = h_db_checksum(&r);
	for (i = 0; i < 12; i++) {
		ask(&a, &r, h_lp(&l, "/changes?since=0"), d1.token);
		if (a.p.status == 200) {
			ok++;
		} else {
			h_expect_problem(&a.p, 429, "rate-limited");
			cr_assert(a.retry_after >= 1, "429 without Retry-After: %s", a.p.body);
			limited++;
		}
		h_resp_free(&a.p);
	}
	cr_assert(limited > 0 && ok >= 4 && ok <= 8, "12 quick reads with burst 5: %d answered, %d limited", ok, limited);
	/* another device, the admin and health checks are not held back by d1's limit */
	ask(&a, &r, h_lp(&l, "/changes?since=0"), d2.token);
	cr_assert_eq(a.p.status, 200, "another device was limited: %s", a.p.body);
	h_resp_free(&a.p);
	ask(&a, &r, "/healthz", NULL);
	cr_assert_eq(a.p.status, 200);
	h_resp_free(&a.p);
	cr_assert_eq(h_lib_head(&r, &l), head);
	after = h_db_checksum(&r);
	cr_assert_str_eq(after, sum, "rate-limited requests changed the relay's tables");
	free(after);
	free(sum);
	h_relay_stop(&r);
}

Test(pressure, a_device_holds_at_most_its_polls)
{
	const char *env[] = {"SYNCRELAY_MAX_POLLS_PER_DEVICE=2", NULL};
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct h_call c[3];
	int i;

	h_relay_start(&r, NULL, env);
	h_fixture(&r, &l, &d1, &d2);
	for (i = 0; i < 2; i++)
		h_call_start(&c[i], &r, d2.token, "%s", h_lp(&l, "/changes?since=0&wait=20"));
	h_wait_held(&r, 2, 1, 10);
	/* the third is answered at once, empty, instead of being held */
	h_call_start(&c[2], &r, d2.token, "%s", h_lp(&l, "/changes?since=0&wait=20"));
	h_call_join(&c[2], h_mono() + 5, "a third poll of one device");
	cr_assert_eq(c[2].resp.status, 200, "%s", c[2].resp.body);
	cr_assert(c[2].t_end - c[2].t_start < 3, "the third poll was held %.1f s", c[2].t_end - c[2].t_start);
	cr_assert_eq(json_array_size(json_object_get(c[2].resp.json, "changes")), 0, "%s", c[2].resp.body);
	h_wait_held(&r, 2, 1, 5);
	h_push_ok(&r, &l, &d1, h_batch(&d1, h_now_ms(), 0, 1), 1, 0);
	for (i = 0; i < 2; i++) {
		h_call_join(&c[i], h_mono() + 10, "a held poll woken by a push");
		cr_assert_eq(c[i].resp.status, 200, "%s", c[i].resp.body);
	}
	for (i = 0; i < 3; i++)
		h_resp_free(&c[i].resp);
	h_relay_stop(&r);
}

Test(pressure, revocation_ends_held_polls_at_once_on_every_relay)
{
	struct relay r1, r2;
	struct lib l;
	struct dev d1, d2, d3;
	struct h_call c1, c2, other;
	char path[256];
	struct resp p;

	h_relay_start(&r1, NULL, NULL);
	h_relay_start(&r2, r1.db, NULL);
	h_fixture(&r1, &l, &d1, &d2);
	h_device(&r1, &l, &d3);
	/* d2 holds a poll on each relay; d1 holds one on r2 that must stay held */
	h_call_start(&c1, &r1, d2.token, "%s", h_lp(&l, "/changes?since=0&wait=30"));
	h_call_start(&c2, &r2, d2.token, "%s", h_lp(&l, "/changes?since=0&wait=30"));
	h_call_start(&other, &r2, d1.token, "%s", h_lp(&l, "/changes?since=0&wait=30"));
	h_wait_held(&r1, 1, 1, 10);
	h_wait_held(&r2, 2, 1, 10);
	snprintf(path, sizeof path, "/v1/libraries/%s/devices/%s", l.id, d2.id);
	h_http(&p, &r1, "DELETE", path, H_ADMIN, NULL);
	cr_assert_eq(p.status, 200, "revoke: %ld %s", p.status, p.body);
	h_resp_free(&p);
	h_call_join(&c1, h_mono() + 5, "d2's poll on the relay that revoked it");
	h_call_join(&c2, h_mono() + 5, "d2's poll on another relay");
	h_expect_problem(&c1.resp, 401, "unauthorized");
	h_expect_problem(&c2.resp, 401, "unauthorized");
	cr_assert(c1.t_end - c1.t_start < 10 && c2.t_end - c2.t_start < 10, "polls ended after %.1f and %.1f s",
		  c1.t_end - c1.t_start, c2.t_end - c2.t_start);
	/* d1's poll is held again, and still answers a push */
	h_wait_held(&r2, 1, 1, 10);
	h_push_ok(&r1, &l, &d3, h_batch(&d3, h_now_ms(), 0, 1), 1, 0);
	h_call_join(&other, h_mono() + 10, "d1's poll after the revocation");
	cr_assert_eq(other.resp.status, 200, "%s", other.resp.body);
	h_resp_free(&c1.resp);
	h_resp_free(&c2.resp);
	h_resp_free(&other.resp);
	h_relay_stop(&r2);
	h_relay_stop(&r1);
}

Test(pressure, over_the_connection_cap_a_quick_503)
{
	const char *env[] = {"SYNCRELAY_MAX_CONNECTIONS=16", NULL};
	struct relay r;
	int socks[16], i;
	struct ans a;
	double t0;

	h_relay_start(&r, NULL, env);
	/* sixteen idle connections fill the cap */
	for (i = 0; i < 16; i++)
		socks[i] = raw_connect(&r);
	t0 = h_mono();
	for (;;) {
		ask(&a, &r, "/healthz", NULL);
		if (a.p.status == 503)
			break;
		/* the relay counts a connection once its thread has taken it: a moment */
		cr_assert(h_mono() - t0 < 10, "with 16 idle connections open, /healthz still answered %ld", a.p.status);
		h_resp_free(&a.p);
		nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
	}
	h_expect_problem(&a.p, 503, "unavailable");
	cr_assert(a.retry_after >= 1, "503 without Retry-After");
	cr_assert(a.p.seconds < 2, "the 503 took %.2f s", a.p.seconds);
	h_resp_free(&a.p);
	for (i = 0; i < 16; i++)
		close(socks[i]);
	t0 = h_mono();
	for (;;) {
		ask(&a, &r, "/healthz", NULL);
		if (a.p.status == 200)
			break;
		cr_assert(h_mono() - t0 < 10, "after the idle connections closed, /healthz answered %ld", a.p.status);
		h_resp_free(&a.p);
		nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
	}
	h_resp_free(&a.p);
	h_relay_stop(&r);
}

/* The relay's peak resident memory in KiB (VmHWM), from /proc. */
static long peak_kib(const struct relay *r)
{
	char path[64], line[256];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/status", (int)r->pid);
	f = fopen(path, "r");
	cr_assert(f, "cannot read %s", path);
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "VmHWM:", 6))
			v = atol(line + 6);
	fclose(f);
	cr_assert(v > 0, "no VmHWM in %s", path);
	return v;
}

Test(pressure, a_push_costs_a_small_multiple_of_its_body, .timeout = 300)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct resp p;
	struct h_chb b = {0};
	sr_buf junk = {0};
	char hlc[SR_HLC_LEN + 1], id[SR_UUID_LEN + 1], *pad, *data, *body;
	uint64_t ms = h_now_ms();
	long base, after_junk, after_real;
	long long head;
	size_t len;
	int i;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d, NULL);
	h_push_ok(&r, &l, &d, h_batch(&d, ms, 0, 10), 10, 0);
	head = h_lib_head(&r, &l);
	base = peak_kib(&r);

	/* 16 MiB less a little of "{}," in the changes array: refused before any tree is built */
	sr_buf_puts(&junk, "{\"changes\":[");
	while (junk.len < 16 * 1024 * 1024 - 64)
		sr_buf_puts(&junk, "{},");
	sr_buf_puts(&junk, "{}]}");
	h_http_raw(&p, &r, "POST", h_lp(&l, "/changes"), NULL, NULL, 0);
	h_resp_free(&p);
	{
		char auth[256];

		snprintf(auth, sizeof auth, "Bearer %s", d.token);
		h_http_raw(&p, &r, "POST", h_lp(&l, "/changes"), auth, junk.p, junk.len);
	}
	h_expect_problem(&p, 413, "too-large");
	h_resp_free(&p);
	after_junk = peak_kib(&r);
	len = junk.len;
	sr_buf_free(&junk);

	/* a real batch of the same size: 10,000 changes of about 1.6 KB each */
	pad = malloc(1601);
	cr_assert(pad);
	memset(pad, 'x', 1450);
	pad[1450] = '\0';
	data = malloc(1700);
	cr_assert(data);
	for (i = 0; i < 10000; i++) {
		h_hlc(hlc, ms + 1, (uint64_t)i, d.id);
		h_uuid(id);
		snprintf(data, 1700, "{\"i\":%d,\"pad\":\"%s\"}", i, pad);
		h_chb_add(&b, hlc, "entry", id, "upsert", data);
	}
	body = h_chb_end(&b);
	cr_assert(strlen(body) < 16 * 1024 * 1024, "the real batch is %zu bytes", strlen(body));
	{
		size_t real_len = strlen(body);

		h_push_ok(&r, &l, &d, body, 10000, 0);
		after_real = peak_kib(&r);
		cr_log_info("relay peak RSS: %ld KiB at rest; +%ld KiB after a %zu-byte body of \"{},\" (413); +%ld KiB"
			    " after a real %zu-byte batch of 10,000 changes", base, after_junk - base, len,
			    after_real - after_junk, real_len);
#ifdef __SANITIZE_ADDRESS__
		/* AddressSanitizer's redzones and quarantine inflate every allocation: the bound is
		 * checked in the plain build only */
		cr_log_info("AddressSanitizer build: memory bounds not checked");
		if (after_real >= 0) {
			cr_assert_eq(h_lib_head(&r, &l), head + 10000);
			free(pad);
			free(data);
			h_relay_stop(&r);
			return;
		}
#endif
		/* the junk body costs its buffer (at most twice its size while it arrives), no tree */
		cr_assert((after_junk - base) * 1024L < (long)(3 * len), "a refused 16 MiB body raised the peak by %ld KiB",
			  after_junk - base);
		/* a real batch stays within a small multiple of its size */
		cr_assert((after_real - base) * 1024L < (long)(12 * real_len),
			  "a %zu-byte batch raised the peak by %ld KiB", real_len, after_real - base);
	}
	cr_assert_eq(h_lib_head(&r, &l), head + 10000);
	free(pad);
	free(data);
	h_relay_stop(&r);
}

Test(pressure, schema_models_and_refs_are_capped)
{
	const char *env[] = {"SYNCRELAY_MAX_MODELS=3", "SYNCRELAY_MAX_REFS=2", NULL};
	struct relay r;
	struct lib l;
	struct dev d;
	struct resp before, after;

	h_relay_start(&r, NULL, env);
	h_fixture(&r, &l, &d, NULL); /* the reference schema: 3 models, at most 2 refs */
	h_http(&before, &r, "GET", h_lp(&l, "/schema"), d.token, NULL);
	h_expect_json(&before, 200);
	h_http_problem(&r, "PUT", h_lp(&l, "/schema"), d.token,
		       "{\"models\":[{\"name\":\"a\",\"kind\":\"shared\"},{\"name\":\"b\",\"kind\":\"shared\"},"
		       "{\"name\":\"c\",\"kind\":\"shared\"},{\"name\":\"e\",\"kind\":\"shared\"}]}",
		       413, "too-large");
	h_http_problem(&r, "PUT", h_lp(&l, "/schema"), d.token,
		       "{\"models\":[{\"name\":\"a\",\"kind\":\"shared\",\"refs\":[{\"field\":\"x\",\"model\":\"a\"},"
		       "{\"field\":\"y\",\"model\":\"a\"},{\"field\":\"z\",\"model\":\"a\"}]}]}",
		       413, "too-large");
	h_http(&after, &r, "GET", h_lp(&l, "/schema"), d.token, NULL);
	cr_assert_str_eq(after.body, before.body, "a refused schema changed the library's schema");
	h_resp_free(&before);
	h_resp_free(&after);
	h_relay_stop(&r);
}
