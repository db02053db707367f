/*
 * Errors: every refusal is problem+json with type, title, status, detail and code;
 * malformed bodies get 400 and change nothing; a bounded, seeded fuzz loop never gets a
 * 5xx or an empty body and leaves a healthy relay; and the authentication matrix
 * (missing, unknown, revoked, wrong-library and wrong-kind tokens) on every route.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ---- helpers ---- */

/* Everything these tests could change, as text: the log, the digests, the schema, the
 * devices with their acks and revocations, and the head. */
static char *snapshot(struct relay *r, const struct lib *l, const struct dev *d)
{
	const char *paths[] = {"/changes?since=0&limit=10000&include_own=1", "/digest", "/schema", "/devices", ""};
	sr_buf b = {0};
	size_t i;

	for (i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		struct resp p;
		json_t *j;

		h_http(&p, r, "GET", h_lp(l, "%s", paths[i]), d->token, NULL);
		h_expect_json(&p, 200);
		j = json_deep_copy(p.json);
		/* what moves by itself: the relay's clock and the device's last_seen */
		json_object_del(j, "relay_time");
		if (json_is_array(json_object_get(j, "devices"))) {
			size_t k;
			json_t *e;
			json_array_foreach(json_object_get(j, "devices"), k, e)
				json_object_del(e, "last_seen");
		}
		{
			char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
			sr_buf_printf(&b, "%s\n", text);
			free(text);
		}
		json_decref(j);
		h_resp_free(&p);
	}
	return sr_buf_steal(&b);
}

static void same_snapshot(const char *before, struct relay *r, const struct lib *l, const struct dev *d,
			  const char *what)
{
	char *after = snapshot(r, l, d);

	cr_assert_str_eq(after, before, "%s changed the library", what);
	free(after);
}

/* A problem body beyond what h_expect_problem checks: non-empty strings, a urn type. */
static void problem_shape(const struct resp *p)
{
	const char *type = json_string_value(json_object_get(p->json, "type"));
	const char *title = json_string_value(json_object_get(p->json, "title"));
	const char *detail = json_string_value(json_object_get(p->json, "detail"));

	cr_assert(type && *type && title && *title && detail && *detail, "empty problem member: %s", p->body);
}

/* ---- deterministic randomness (xorshift64*) ---- */

static uint64_t rng_state = 0x5eed5eed12345678ULL;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static size_t rndn(size_t n)
{
	return (size_t)(rnd() % n);
}

/* ---- malformed bodies ---- */

struct body {
	const char *what;
	char *p;
	size_t len;
	int none; /* no body at all */
};

static void add_body(struct body *b, int *n, const char *what, const char *p, size_t len)
{
	b[*n].what = what;
	b[*n].p = malloc(len + 1);
	memcpy(b[*n].p, p, len);
	b[*n].p[len] = '\0';
	b[*n].len = len;
	b[*n].none = 0;
	(*n)++;
}

#define ADD(what, lit) add_body(bodies, &n, what, lit, sizeof lit - 1)

Test(errors, malformed_bodies_get_400_and_change_nothing, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d, fresh;
	struct resp p;
	struct body bodies[32];
	char *before, hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1], buf[512];
	sr_buf g = {0};
	int n = 0, i, e;
	size_t k;
	struct {
		const char *method, *token;
		char path[128];
	} eps[5];

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d, NULL);
	{
		char *batch = h_batch(&d, h_now_ms() - 1000, 0, 3);
		h_http_json(&r, "POST", h_lp(&l, "/changes"), d.token, batch, 200);
		free(batch);
	}
	eps[0].method = "POST", eps[0].token = d.token;
	snprintf(eps[0].path, sizeof eps[0].path, "%s", h_lp(&l, "/changes"));
	eps[1].method = "PUT", eps[1].token = d.token;
	snprintf(eps[1].path, sizeof eps[1].path, "%s", h_lp(&l, "/schema"));
	eps[2].method = "POST", eps[2].token = l.join;
	snprintf(eps[2].path, sizeof eps[2].path, "%s", h_lp(&l, "/devices"));
	eps[3].method = "POST", eps[3].token = d.token;
	snprintf(eps[3].path, sizeof eps[3].path, "%s", h_lp(&l, "/ack"));
	eps[4].method = "POST", eps[4].token = H_ADMIN;
	snprintf(eps[4].path, sizeof eps[4].path, "/v1/libraries");

	ADD("not JSON", "not json");
	ADD("a JSON array", "[{\"changes\":[],\"models\":[],\"seq\":1,\"name\":\"x\"}]");
	ADD("a JSON string", "\"changes\"");
	ADD("a JSON number", "42");
	ADD("JSON null", "null");
	ADD("an empty body", "");
	ADD("whitespace only", "  \n\t ");
	ADD("truncated JSON", "{\"changes\":[{\"hlc\":");
	ADD("trailing garbage", "{\"changes\":[],\"models\":[],\"seq\":1,\"name\":\"x\"} trailing");
	ADD("a duplicate key", "{\"seq\":1,\"seq\":2,\"name\":\"a\",\"name\":\"b\",\"changes\":[],\"changes\":[]}");
	ADD("invalid UTF-8 (0xff)", "{\"changes\":[],\"models\":[],\"seq\":0,\"name\":\"\xff\xfe\"}");
	ADD("invalid UTF-8 (bad continuation)", "{\"changes\":[],\"models\":[],\"seq\":0,\"name\":\"\xc3\x28\"}");
	ADD("invalid UTF-8 (overlong)", "{\"changes\":[],\"models\":[],\"seq\":0,\"name\":\"\xc0\xaf\"}");
	ADD("invalid UTF-8 (surrogate)", "{\"changes\":[],\"models\":[],\"seq\":0,\"name\":\"\xed\xa0\x80\"}");
	ADD("a NUL byte in a string", "{\"changes\":[],\"models\":[],\"seq\":0,\"name\":\"a\0b\"}");
	ADD("a NUL byte after the object", "{\"changes\":[],\"models\":[],\"seq\":0,\"name\":\"x\"}\0");
	ADD("a NUL byte first", "\0{\"changes\":[],\"models\":[],\"seq\":0,\"name\":\"x\"}");
	ADD("an escaped NUL in a key", "{\"changes\":[],\"models\":[],\"seq\":0,\"name\":\"x\",\"a\\u0000\":1}");
	ADD("a lone surrogate escape", "{\"changes\":[],\"models\":[],\"seq\":0,\"name\":\"\\ud800\"}");
	ADD("an integer too big", "{\"changes\":[],\"models\":[],\"seq\":99999999999999999999999,\"name\":\"x\"}");
	ADD("a real too big", "{\"changes\":[],\"models\":[],\"seq\":1e999,\"name\":\"x\"}");
	/* valid device_ids make the enroll body otherwise acceptable: only the encoding is wrong */
	h_uuid(fresh.id);
	snprintf(buf, sizeof buf, "{\"device_id\":\"%s\",\"name\":\"\xff\",\"changes\":[],\"models\":[],\"seq\":0}",
		 fresh.id);
	add_body(bodies, &n, "invalid UTF-8 beside valid members", buf, strlen(buf));
	snprintf(buf, sizeof buf, "{\"device_id\":\"%s\",\"name\":\"a\\u0000b\"}", fresh.id);
	add_body(bodies, &n, "an escaped NUL in a valid enroll", buf, strlen(buf));

	/* a megabyte of garbage */
	for (k = 0; k < 1 << 20; k++)
		sr_buf_putc(&g, (char)(' ' + rndn(95)));
	add_body(bodies, &n, "1 MB of garbage", g.p, g.len);
	sr_buf_free(&g);
	/* deep nesting, bare and inside an otherwise valid body */
	for (k = 0; k < 100000; k++)
		sr_buf_putc(&g, '[');
	add_body(bodies, &n, "100000 open arrays", g.p, g.len);
	sr_buf_free(&g);
	sr_buf_puts(&g, "{\"changes\":");
	for (k = 0; k < 20000; k++)
		sr_buf_putc(&g, '[');
	for (k = 0; k < 20000; k++)
		sr_buf_putc(&g, ']');
	sr_buf_puts(&g, ",\"seq\":0,\"models\":[],\"name\":\"x\"}");
	add_body(bodies, &n, "20000 nested arrays", g.p, g.len);
	sr_buf_free(&g);
	/* deep nesting inside a change's data */
	h_hlc(hlc, h_now_ms() - 1000, 99, d.id);
	h_uuid(rid);
	sr_buf_printf(&g, "{\"changes\":[{\"hlc\":\"%s\",\"model\":\"entry\",\"record_id\":\"%s\",\"op\":\"upsert\","
		      "\"data\":", hlc, rid);
	for (k = 0; k < 20000; k++)
		sr_buf_puts(&g, "{\"a\":");
	sr_buf_puts(&g, "1");
	for (k = 0; k < 20000; k++)
		sr_buf_putc(&g, '}');
	sr_buf_puts(&g, "}]}");
	add_body(bodies, &n, "20000 nested objects in data", g.p, g.len);
	sr_buf_free(&g);
	bodies[n].what = "no body at all";
	bodies[n].p = NULL;
	bodies[n].len = 0;
	bodies[n].none = 1;
	n++;
	cr_assert_leq(n, 32);

	before = snapshot(&r, &l, &d);
	for (e = 0; e < 5; e++)
		for (i = 0; i < n; i++) {
			h_http_raw(&p, &r, eps[e].method, eps[e].path, NULL, NULL, 0);
			h_resp_free(&p); /* unauthenticated: refused before the body matters */
			{
				char auth[256];
				snprintf(auth, sizeof auth, "Bearer %s", eps[e].token);
				h_http_raw(&p, &r, eps[e].method, eps[e].path, auth, bodies[i].none ? NULL : bodies[i].p,
					 bodies[i].len);
			}
			cr_assert_eq(p.status, 400, "%s %s with %s: expected 400, got %ld: %.300s", eps[e].method,
				     eps[e].path, bodies[i].what, p.status, p.body);
			h_expect_problem(&p, 400, "bad-request");
			problem_shape(&p);
			h_resp_free(&p);
		}
	same_snapshot(before, &r, &l, &d, "a malformed body");
	/* the enroll that was refused for its encoding did not happen */
	{
		char auth[256];
		snprintf(buf, sizeof buf, "{\"device_id\":\"%s\",\"name\":\"ok\"}", fresh.id);
		snprintf(auth, sizeof auth, "Bearer %s", l.join);
		h_http_raw(&p, &r, "POST", h_lp(&l, "/devices"), auth, buf, strlen(buf));
		h_expect_json(&p, 201);
		h_resp_free(&p);
	}
	for (i = 0; i < n; i++)
		free(bodies[i].p);
	free(before);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- fuzz ---- */

static void mutate(sr_buf *out, const char *tmpl)
{
	static const char *tokens[] = {"{", "}", "[", "]", "\"", ",", ":", "null", "-1", "0", "1e999", "\\",
				       "\xff", "99999999999999999999", "\"\\u0000\"", "true", "[]", "{}", "\"x\"",
				       "-0", "1.5", "\"\\ud800\"", "\x01", " "};
	size_t len = strlen(tmpl), i, nops = 1 + rndn(4);
	char *s = malloc(len * 2 + 256);

	memcpy(s, tmpl, len + 1);
	for (i = 0; i < nops; i++) {
		size_t at = len ? rndn(len) : 0;

		switch (rndn(4)) {
		case 0: /* flip a byte */
			if (len) {
				size_t v = rndn(256);
				s[at] = (char)(v ? v : 'x');
			}
			break;
		case 1: /* drop a range */
			if (len) {
				size_t cut = 1 + rndn(len - at < 16 ? len - at : 16);
				memmove(s + at, s + at + cut, len - at - cut + 1);
				len -= cut;
			}
			break;
		case 2: { /* insert a token */
			const char *t = tokens[rndn(sizeof tokens / sizeof tokens[0])];
			size_t tl = strlen(t);
			if (len + tl < len * 2 + 200) {
				memmove(s + at + tl, s + at, len - at + 1);
				memcpy(s + at, t, tl);
				len += tl;
			}
			break;
		}
		default: /* truncate */
			s[at] = '\0';
			len = at;
		}
	}
	sr_buf_put(out, s, len);
	free(s);
}

static void random_bytes(sr_buf *out)
{
	size_t n = rndn(600), i;

	for (i = 0; i < n; i++)
		sr_buf_putc(out, (char)rndn(256));
}

static void put_pct(sr_buf *b, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_')
			sr_buf_putc(b, (char)c);
		else
			sr_buf_printf(b, "%%%02X", c);
	}
}

static void random_query(sr_buf *b, const struct dev *d, const char *other_id)
{
	static const char *keys[] = {"since", "limit", "wait", "model", "owner", "bucket", "after",
				     "include_deleted", "include_own", "x", "model", "owner"};
	static const char *vals[] = {"0", "1", "-1", "255", "256", "10000", "10001", "99999999999999999999",
				     "entry", "content_identity", "location", "Entry", "tag", "", "1", "true",
				     "0x10", "1e3", " 5", "5 ", "+7", "%00", "null"};
	size_t nk = 1 + rndn(4), i;

	sr_buf_putc(b, '?');
	for (i = 0; i < nk; i++) {
		const char *k = keys[rndn(sizeof keys / sizeof keys[0])];

		if (i)
			sr_buf_putc(b, '&');
		sr_buf_printf(b, "%s=", k);
		if (!strcmp(k, "wait")) {
			/* never a valid wait: the fuzz must not sit in held polls */
			static const char *w[] = {"-1", "x", "61", "1.5", "", "99999999999999999999"};
			sr_buf_puts(b, w[rndn(sizeof w / sizeof w[0])]);
			continue;
		}
		switch (rndn(5)) {
		case 0: {
			char raw[16];
			size_t n = rndn(12), j;
			for (j = 0; j < n; j++)
				raw[j] = (char)rndn(256);
			put_pct(b, raw, n);
			break;
		}
		case 1:
			sr_buf_puts(b, rndn(2) ? d->id : other_id);
			break;
		case 2:
			sr_buf_printf(b, "%lld", (long long)(rnd() % 2000) - 100);
			break;
		default: {
			const char *v = vals[rndn(sizeof vals / sizeof vals[0])];
			if (!strcmp(v, "%00"))
				sr_buf_puts(b, v);
			else
				put_pct(b, v, strlen(v));
		}
		}
	}
}

Test(errors, fuzz_never_5xx_never_empty, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d, d2;
	struct resp p;
	char auth_dev[256], auth_join[256], hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1];
	char push_tmpl[1024], enroll_tmpl[256];
	const char *schema_tmpl =
		"{\"models\":[{\"name\":\"location\",\"kind\":\"device_owned\"},"
		"{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":\"content_id\",\"model\":\"content_identity\"},"
		"{\"field\":\"parent_id\",\"model\":\"entry\"}]},{\"name\":\"content_identity\",\"kind\":\"shared\"}]}";
	int i, counts[6] = {0};
	uint64_t now = h_now_ms();

	/* thousands of requests from one device in a second or two: not a rate-limit test */
	h_relay_start(&r, NULL, (const char *const[]){"SYNCRELAY_RATE_PER_S=100000", "SYNCRELAY_RATE_BURST=100000", NULL});
	h_fixture(&r, &l, &d, &d2);
	snprintf(auth_dev, sizeof auth_dev, "Bearer %s", d.token);
	snprintf(auth_join, sizeof auth_join, "Bearer %s", l.join);
	h_hlc(hlc, now - 5000, 0, d.id);
	h_uuid(rid);
	snprintf(push_tmpl, sizeof push_tmpl,
		 "{\"changes\":[{\"hlc\":\"%s\",\"model\":\"entry\",\"record_id\":\"%s\",\"op\":\"upsert\","
		 "\"data\":{\"name\":\"a\",\"n\":[1,2.5,null,true],\"o\":{\"k\":\"v\"}}},"
		 "{\"hlc\":\"%s\",\"model\":\"content_identity\",\"record_id\":\"%s\",\"op\":\"delete\"}]}",
		 hlc, rid, hlc, rid);
	snprintf(enroll_tmpl, sizeof enroll_tmpl, "{\"device_id\":\"%s\",\"name\":\"fuzzed\"}", d2.id);

	for (i = 0; i < 300; i++) {
		sr_buf body = {0}, path = {0};
		const char *method = "GET", *auth = auth_dev;
		int kind = (int)rndn(10), with_body = 0;

		switch (kind) {
		case 0:
		case 1:
			method = "POST";
			sr_buf_puts(&path, h_lp(&l, "/changes"));
			if (kind == 0)
				random_bytes(&body);
			else
				mutate(&body, push_tmpl);
			with_body = 1;
			break;
		case 2:
			method = "PUT";
			sr_buf_puts(&path, h_lp(&l, "/schema"));
			if (rndn(2))
				random_bytes(&body);
			else
				mutate(&body, schema_tmpl);
			with_body = 1;
			break;
		case 3:
			method = "POST";
			auth = auth_join;
			sr_buf_puts(&path, h_lp(&l, "/devices"));
			if (rndn(2))
				random_bytes(&body);
			else
				mutate(&body, enroll_tmpl);
			with_body = 1;
			break;
		case 4:
			method = "POST";
			sr_buf_puts(&path, h_lp(&l, "/ack"));
			if (rndn(2))
				random_bytes(&body);
			else
				mutate(&body, "{\"seq\":1}");
			with_body = 1;
			break;
		case 5:
			sr_buf_puts(&path, h_lp(&l, "/changes"));
			random_query(&path, &d, d2.id);
			break;
		case 6:
			sr_buf_puts(&path, h_lp(&l, "/records"));
			random_query(&path, &d, d2.id);
			break;
		case 7:
			sr_buf_puts(&path, h_lp(&l, "/digest"));
			random_query(&path, &d, d2.id);
			break;
		case 8:
			sr_buf_puts(&path, h_lp(&l, "/digest/buckets"));
			random_query(&path, &d, d2.id);
			break;
		default: {
			/* a path with random bytes in place of an id or a segment */
			char raw[16];
			size_t n = 1 + rndn(12), j;
			for (j = 0; j < n; j++)
				raw[j] = (char)rndn(256);
			sr_buf_puts(&path, "/v1/libraries/");
			if (rndn(2)) {
				put_pct(&path, raw, n);
			} else {
				sr_buf_printf(&path, "%s/", l.id);
				put_pct(&path, raw, n);
			}
		}
		}
		h_http_raw(&p, &r, method, path.p, auth, with_body ? (body.p ? body.p : "") : NULL, body.len);
		counts[p.status / 100 < 6 ? p.status / 100 : 0]++;
		cr_assert(p.status >= 200 && p.status < 500, "request %d (%s %.300s) got %ld: %.300s (relay log %s)", i,
			  method, path.p, p.status, p.body, r.log);
		cr_assert(p.body[0], "request %d (%s %.300s) got an empty body with %ld", i, method, path.p, p.status);
		cr_assert(p.json, "request %d (%s %.300s) got a body that is not JSON: %.300s", i, method, path.p, p.body);
		if (p.status >= 400) {
			const char *code = json_string_value(json_object_get(p.json, "code"));
			cr_assert(code, "request %d: problem without code: %s", i, p.body);
			h_expect_problem(&p, p.status, code);
			problem_shape(&p);
		} else {
			cr_assert_str_eq(p.ctype, "application/json", "request %d: content type %s", i, p.ctype);
		}
		h_resp_free(&p);
		sr_buf_free(&body);
		sr_buf_free(&path);
	}
	cr_log_info("fuzz: %d 2xx, %d 4xx of 300", counts[2], counts[4]);
	cr_assert_gt(counts[4], 100, "the fuzz hardly reached any refusal");

	/* still healthy: probes, and an ordinary push and pull */
	h_http_json(&r, "GET", "/healthz", NULL, NULL, 200);
	h_http_json(&r, "GET", "/readyz", NULL, NULL, 200);
	{
		long long head0;
		h_http(&p, &r, "GET", h_lp(&l, ""), d.token, NULL);
		h_expect_json(&p, 200);
		head0 = h_jint(p.json, "head");
		h_resp_free(&p);
		cr_assert_eq(h_push_ok(&r, &l, &d, h_batch(&d, h_now_ms() - 1000, 1000, 2), 2, -1), head0 + 2);
		h_http(&p, &r, "GET", h_lp(&l, "/changes?since=%lld", head0), d2.token, NULL);
		h_expect_json(&p, 200);
		cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 2, "%s", p.body);
		h_resp_free(&p);
	}
	h_http(&p, &r, "GET", "/metrics", NULL, NULL);
	cr_assert_eq(p.status, 200);
	/* every 5xx series is listed from the start: each must still read 0 */
	for (const char *q = p.body; (q = strstr(q, "status=\"5xx\"} ")); q++)
		cr_assert(!strncmp(q + strlen("status=\"5xx\"} "), "0\n", 2), "the relay counted 5xx replies:\n%s", p.body);
	h_resp_free(&p);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- authentication ---- */

struct route_case {
	const char *method, *suffix, *body;
	int admin_ok, join_ok, dev_ok;
};

Test(errors, authentication_matrix, .timeout = 120)
{
	struct relay r;
	struct lib a, b;
	struct dev d, gone, other;
	struct resp p;
	char *before, enroll[160], rid[SR_UUID_LEN + 1], hlc[SR_HLC_LEN + 1], push[512], auth[256];
	size_t i;
	struct route_case rc[13];
	const char *bad_auth[] = {NULL, "Bearer ", "Bearer", "Bearer not-a-token",
				  "Bearer sr_0000000000000000000000000000000000000000000000000000000000000000",
				  "Basic dGVzdDp0ZXN0", "test-admin-token", "Bearer  test-admin-token", "Token x"};

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &a);
	h_library(&r, &b);
	h_device(&r, &a, &d);
	h_device(&r, &a, &gone);
	h_device(&r, &b, &other);
	h_schema_ref(&r, &a, &d);
	h_schema_ref(&r, &b, &other);
	h_http_json(&r, "DELETE", h_lp(&a, "/devices/%s", gone.id), H_ADMIN, NULL, 200);

	h_uuid(rid);
	snprintf(enroll, sizeof enroll, "{\"device_id\":\"%s\",\"name\":\"n\"}", rid);
	h_hlc(hlc, h_now_ms() - 1000, 0, d.id);
	snprintf(push, sizeof push,
		 "{\"changes\":[{\"hlc\":\"%s\",\"model\":\"content_identity\",\"record_id\":\"%s\",\"op\":\"upsert\","
		 "\"data\":{}}]}", hlc, rid);
	/* method, path after /v1/libraries/{a}, body; who may call it */
	rc[0] = (struct route_case){"GET", "", NULL, 1, 0, 1};
	rc[1] = (struct route_case){"POST", "/devices", enroll, 1, 1, 0};
	rc[2] = (struct route_case){"GET", "/devices", NULL, 1, 0, 1};
	rc[3] = (struct route_case){"DELETE", NULL, NULL, 1, 0, 0}; /* another device: only the admin */
	rc[4] = (struct route_case){"PUT", "/schema", "{\"models\":[]}", 1, 0, 1};
	rc[5] = (struct route_case){"GET", "/schema", NULL, 1, 0, 1};
	rc[6] = (struct route_case){"POST", "/changes", push, 0, 0, 1};
	rc[7] = (struct route_case){"GET", "/changes?since=0", NULL, 0, 0, 1};
	rc[8] = (struct route_case){"POST", "/ack", "{\"seq\":0}", 0, 0, 1};
	rc[9] = (struct route_case){"GET", "/records?model=entry", NULL, 0, 0, 1};
	rc[10] = (struct route_case){"GET", "/digest", NULL, 0, 0, 1};
	rc[11] = (struct route_case){"GET", "/digest/buckets?model=content_identity", NULL, 0, 0, 1};
	rc[12] = (struct route_case){"POST", NULL, "{\"name\":\"n\"}", 1, 0, 0}; /* POST /v1/libraries */

	before = snapshot(&r, &a, &d);
	for (i = 0; i < sizeof rc / sizeof rc[0]; i++) {
		char path[256];
		size_t k;
		int lib_route = i != 12;

		if (i == 12)
			snprintf(path, sizeof path, "/v1/libraries");
		else if (i == 3)
			snprintf(path, sizeof path, "%s", h_lp(&a, "/devices/%s", d.id));
		else
			snprintf(path, sizeof path, "%s", h_lp(&a, "%s", rc[i].suffix));

		/* missing, malformed, unknown and revoked tokens: 401 */
		for (k = 0; k < sizeof bad_auth / sizeof bad_auth[0]; k++) {
			h_http_raw(&p, &r, rc[i].method, path, bad_auth[k], rc[i].body,
				 rc[i].body ? strlen(rc[i].body) : 0);
			h_expect_problem(&p, 401, "unauthorized");
			problem_shape(&p);
			h_resp_free(&p);
		}
		snprintf(auth, sizeof auth, "Bearer %s", gone.token);
		h_http_raw(&p, &r, rc[i].method, path, auth, rc[i].body, rc[i].body ? strlen(rc[i].body) : 0);
		h_expect_problem(&p, 401, "unauthorized");
		h_resp_free(&p);

		if (lib_route) {
			/* tokens of library b on library a: 403 wrong-library, whatever their kind */
			h_http_problem(&r, rc[i].method, path, other.token, rc[i].body, 403, "wrong-library");
			h_http_problem(&r, rc[i].method, path, b.join, rc[i].body, 403, "wrong-library");
		}
		/* the right library, the wrong kind of token: 403 forbidden */
		if (!rc[i].admin_ok)
			h_http_problem(&r, rc[i].method, path, H_ADMIN, rc[i].body, 403, "forbidden");
		if (!rc[i].join_ok) {
			h_http_problem(&r, rc[i].method, path, a.join, rc[i].body, 403, "forbidden");
		}
		if (!rc[i].dev_ok && i != 3)
			h_http_problem(&r, rc[i].method, path, d.token, rc[i].body, 403, "forbidden");
	}
	/* a device may revoke only itself */
	h_http_problem(&r, "DELETE", h_lp(&a, "/devices/%s", gone.id), d.token, NULL, 403, "forbidden");
	same_snapshot(before, &r, &a, &d, "a refused request");

	/* and the tokens that were refused elsewhere still work where they belong */
	h_http(&p, &r, "GET", h_lp(&b, ""), other.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(h_jint(p.json, "head"), 0, "a refused push reached library b");
	h_resp_free(&p);
	h_http(&p, &r, "POST", h_lp(&a, "/changes"), d.token, push);
	h_expect_json(&p, 200);
	cr_assert_eq(h_jint(p.json, "accepted"), 1);
	h_resp_free(&p);
	h_http(&p, &r, "GET", h_lp(&a, "/devices"), H_ADMIN, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "devices")), 2, "a refused enroll added a device: %s",
		     p.body);
	h_resp_free(&p);
	free(before);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- query parameters ---- */

Test(errors, bad_query_parameters, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct resp p;
	char *before;
	size_t i;
	const char *bad[] = {
		"/changes?since=-1", "/changes?since=abc", "/changes?since=", "/changes?since=1.5",
		"/changes?since=99999999999999999999", "/changes?limit=0", "/changes?limit=10001",
		"/changes?limit=x", "/changes?wait=61", "/changes?wait=-1", "/changes?wait=soon",
		"/records?model=entry&limit=0", "/records?model=entry&limit=10001", "/records?model=entry&bucket=-1",
		"/records?model=entry&bucket=x", "/records?model=Entry", "/records?model=", "/records?model=entry&after=x",
		"/records?model=content_identity&owner=00000000-0000-4000-8000-000000000000",
		"/digest?model=Entry", "/digest?owner=x", "/digest?model=entry&owner=X",
		"/digest/buckets?model=", "/digest/buckets?model=content_identity&bucket=1&owner=x",
	};

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d, NULL);
	before = snapshot(&r, &l, &d);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		h_http(&p, &r, "GET", h_lp(&l, "%s", bad[i]), d.token, NULL);
		cr_assert_eq(p.status, 400, "%s: expected 400, got %ld: %s", bad[i], p.status, p.body);
		h_expect_problem(&p, 400, "bad-request");
		problem_shape(&p);
		h_resp_free(&p);
	}
	same_snapshot(before, &r, &l, &d, "a bad query");
	free(before);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- oversized request heads ---- */

/* A long query string or header is still an HTTP request a client can send: the answer
 * must be a problem like any other (PROTOCOL.md section 2: never an HTML page), whether
 * the relay reads it (400, 401) or refuses its size (too-large). */
static void expect_some_problem(struct resp *p, const char *what)
{
	/* copied out and freed first, so a failure here leaks nothing */
	long status = p->status;
	char ctype[128], body[256], code[64] = "";
	int shaped = p->json && json_is_string(json_object_get(p->json, "type")) &&
		     json_is_string(json_object_get(p->json, "title")) &&
		     json_is_string(json_object_get(p->json, "detail")) &&
		     json_integer_value(json_object_get(p->json, "status")) == p->status;

	snprintf(ctype, sizeof ctype, "%s", p->ctype);
	snprintf(body, sizeof body, "%s", p->body);
	if (json_string_value(json_object_get(p->json, "code")))
		snprintf(code, sizeof code, "%s", json_string_value(json_object_get(p->json, "code")));
	h_resp_free(p);
	cr_assert(status >= 400 && status < 500, "%s: got %ld", what, status);
	cr_assert_str_eq(ctype, "application/problem+json", "%s: %ld with content type \"%s\" and body %s", what,
			 status, ctype, body);
	cr_assert(!strcmp(code, "bad-request") || !strcmp(code, "unauthorized") || !strcmp(code, "too-large"),
		  "%s: unexpected problem %s", what, body);
	cr_assert(shaped, "%s: problem lacks type/title/status/detail: %s", what, body);
}

Test(errors, oversized_query_string_gets_a_problem, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct resp p;
	char auth[256];
	sr_buf b = {0};
	size_t k;

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &l);
	h_device(&r, &l, &d);
	snprintf(auth, sizeof auth, "Bearer %s", d.token);
	/* a 100 KB since= */
	sr_buf_puts(&b, h_lp(&l, "/changes?since="));
	for (k = 0; k < 100000; k++)
		sr_buf_putc(&b, '1');
	h_http_raw(&p, &r, "GET", b.p, auth, NULL, 0);
	sr_buf_free(&b);
	expect_some_problem(&p, "a 100 KB query string");
	/* and the relay serves the next ordinary request */
	h_http_json(&r, "GET", h_lp(&l, ""), d.token, NULL, 200);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

Test(errors, oversized_header_gets_a_problem, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct resp p;
	sr_buf b = {0};
	size_t k;

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &l);
	h_device(&r, &l, &d);
	/* a 100 KB bearer token */
	sr_buf_puts(&b, "Bearer ");
	for (k = 0; k < 100000; k++)
		sr_buf_putc(&b, 'a');
	h_http_raw(&p, &r, "GET", h_lp(&l, ""), b.p, NULL, 0);
	sr_buf_free(&b);
	expect_some_problem(&p, "a 100 KB Authorization header");
	h_http_json(&r, "GET", h_lp(&l, ""), d.token, NULL, 200);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* The target and header limits are the relay's, answered as problem+json: just under them a
 * request is read and handled (libmicrohttpd's connection memory holds it), just over them it
 * is refused with 414 or 431, never with libmicrohttpd's own HTML page. */
/* prefix followed by 'a's up to n bytes (malloc'd) */
static char *padded(const char *prefix, size_t n)
{
	size_t k = strlen(prefix);
	char *s = malloc(n + 1);

	cr_assert(s && n > k);
	memcpy(s, prefix, k);
	memset(s + k, 'a', n - k);
	s[n] = '\0';
	return s;
}

Test(errors, target_and_header_limits_are_answered_by_the_relay)
{
	struct relay r;
	struct resp p;
	char *s;

	h_relay_start(&r, NULL, NULL);
	/* a target of 15 KiB is read; one of 17 KiB is refused */
	s = padded("/healthz?pad=", 15 * 1024);
	h_http_raw(&p, &r, "GET", s, NULL, NULL, 0);
	cr_assert_eq(p.status, 200, "a 15 KiB target: %ld %.200s", p.status, p.body);
	h_resp_free(&p);
	free(s);
	s = padded("/healthz?pad=", 17 * 1024);
	h_http_raw(&p, &r, "GET", s, NULL, NULL, 0);
	h_expect_problem(&p, 414, "too-large");
	h_resp_free(&p);
	free(s);
	/* an Authorization header of 30 KiB is read (and refused as a token); one of 33 KiB is refused */
	s = padded("Bearer ", 30 * 1024);
	h_http_raw(&p, &r, "GET", "/v1/libraries/00000000-0000-4000-8000-000000000000", s, NULL, 0);
	h_expect_problem(&p, 401, "unauthorized");
	h_resp_free(&p);
	free(s);
	s = padded("Bearer ", 33 * 1024);
	h_http_raw(&p, &r, "GET", "/v1/libraries/00000000-0000-4000-8000-000000000000", s, NULL, 0);
	h_expect_problem(&p, 431, "too-large");
	h_resp_free(&p);
	free(s);
	cr_assert_eq(h_relay_stop(&r), 0);
}
