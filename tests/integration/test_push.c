/*
 * Push and pull over real HTTP: a large batch served back byte for byte, seq order,
 * paging, idempotent re-push, every refusal a push can meet (each leaving the library
 * untouched), last-writer-wins, tombstones, limits, and held long-polls.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* ---- small helpers ---- */

/* Pushes body (freed) and expects a problem; with idx >= 0 the problem names that index. */
static void push_refused(struct relay *r, const struct lib *l, const struct dev *d, char *body, long status,
			 const char *code, int idx)
{
	struct resp p;

	h_http(&p, r, "POST", h_lp(l, "/changes"), d->token, body);
	h_expect_problem(&p, status, code);
	if (idx >= 0)
		cr_assert(json_is_integer(json_object_get(p.json, "index")) && h_jint(p.json, "index") == idx,
			  "expected index %d: %s", idx, p.body);
	h_resp_free(&p);
	free(body);
}

static void put1(struct relay *r, const struct lib *l, const struct dev *d, const char *model, const char *rid,
		 uint64_t ms, uint64_t counter, const char *data)
{
	struct h_chb c = {0};
	char hlc[SR_HLC_LEN + 1];

	h_hlc(hlc, ms, counter, d->id);
	h_chb_add(&c, hlc, model, rid, data ? "upsert" : "delete", data);
	h_push_ok(r, l, d, h_chb_end(&c), 1, 0);
}

/* Everything a push could change, as text: the whole log (pull with include_own), every
 * scope digest, and the head. Two equal snapshots mean nothing was stored in between. */
static char *snapshot(struct relay *r, const struct lib *l, const struct dev *d)
{
	struct resp p;
	sr_buf b = {0};

	h_http(&p, r, "GET", h_lp(l, "/changes?since=0&limit=10000&include_own=1"), d->token, NULL);
	h_expect_json(&p, 200);
	{
		/* the relay's clock reading is not library state */
		json_t *j = json_loads(p.body, 0, NULL);
		char *t;

		json_object_del(j, "relay_time");
		t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
		sr_buf_puts(&b, t);
		free(t);
		json_decref(j);
	}
	h_resp_free(&p);
	h_http(&p, r, "GET", h_lp(l, "/digest"), d->token, NULL);
	h_expect_json(&p, 200);
	sr_buf_puts(&b, p.body);
	h_resp_free(&p);
	sr_buf_printf(&b, "head=%lld", h_lib_head(r, l));
	return sr_buf_steal(&b);
}

static void same_snapshot(char *before, struct relay *r, const struct lib *l, const struct dev *d,
			  const char *what)
{
	char *after = snapshot(r, l, d);

	cr_assert_str_eq(after, before, "%s changed the library", what);
	free(after);
}

/* One record as the records endpoint serves it (include_deleted=1); new ref or NULL. */
static json_t *record_get(struct relay *r, const struct lib *l, const struct dev *d, const char *model,
			  const char *rid)
{
	struct resp p;
	json_t *rec, *found = NULL;
	size_t i;

	h_http(&p, r, "GET", h_lp(l, "/records?model=%s&include_deleted=1&limit=10000", model), d->token, NULL);
	h_expect_json(&p, 200);
	json_array_foreach(json_object_get(p.json, "records"), i, rec)
		if (!strcmp(h_jstr(rec, "record_id"), rid))
			found = json_incref(rec);
	h_resp_free(&p);
	return found;
}

/* The single digest scope of model (and owner), or NULL when the relay lists none. */
static json_t *scope_get(struct relay *r, const struct lib *l, const struct dev *d, const char *model,
			 const char *owner)
{
	struct resp p;
	json_t *s = NULL, *scopes;

	h_http(&p, r, "GET", h_lp(l, "/digest?model=%s%s%s", model, owner ? "&owner=" : "", owner ? owner : ""),
	       d->token, NULL);
	h_expect_json(&p, 200);
	scopes = json_object_get(p.json, "scopes");
	cr_assert_leq(json_array_size(scopes), 1, "%s", p.body);
	if (json_array_size(scopes))
		s = json_incref(json_array_get(scopes, 0));
	h_resp_free(&p);
	return s;
}

static void hash_hex(char out[17], const char *model, const char *rid, const char *hlc, const char *canon)
{
	sr_hash_hex(out, sr_record_hash(model, rid, hlc, canon));
}

/* ---- raw JSON spans: what the relay served, byte for byte ---- */

static const char *ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

static const char *skip_string(const char *p)
{
	for (p++; *p && *p != '"'; p++)
		if (*p == '\\' && p[1])
			p++;
	return *p ? p + 1 : p;
}

static const char *skip_value(const char *p)
{
	int depth = 0;

	p = ws(p);
	do {
		if (*p == '"')
			p = skip_string(p);
		else if (*p == '{' || *p == '[')
			depth++, p++;
		else if (*p == '}' || *p == ']')
			depth--, p++;
		else if (depth == 0)
			while (!strchr(",}] \t\r\n", *p))
				p++;
		else
			p++;
	} while (depth > 0 && *p);
	return p;
}

/* The value of member name in the object at p, or NULL. */
static const char *member(const char *p, const char *name)
{
	size_t n = strlen(name);

	p = ws(p);
	if (*p != '{')
		return NULL;
	p = ws(p + 1);
	while (*p == '"') {
		const char *k = p + 1, *ke = skip_string(p) - 1, *v;

		v = ws(ke + 1);
		if (*v != ':')
			return NULL;
		v = ws(v + 1);
		if ((size_t)(ke - k) == n && !strncmp(k, name, n))
			return v;
		p = ws(skip_value(v));
		if (*p == ',')
			p = ws(p + 1);
	}
	return NULL;
}

struct span {
	const char *p;
	size_t n;
};

/* The raw "data" text of every change of a pull body; returns how many, or -1. */
static int raw_data(const char *body, struct span *out, int max)
{
	const char *p = member(body, "changes");
	int n = 0;

	if (!p || *p != '[')
		return -1;
	p = ws(p + 1);
	while (*p == '{' && n < max) {
		const char *v = member(p, "data");

		if (!v)
			return -1;
		out[n].p = v;
		out[n].n = (size_t)(skip_value(v) - v);
		n++;
		p = ws(skip_value(p));
		if (*p == ',')
			p = ws(p + 1);
	}
	return n;
}

/* ---- the big batch ---- */

#define BIG 1000

static const char *templates[] = {
	"{ \"z\" : %d, \"a\" : \"plain\" }",
	"{\"name\":\"caf\\u00e9 \\u2603 %d\",\"nested\":{\"b\":[1,2,{\"y\":null,\"x\":true}],\"a\":false}}",
	"{\"s\":\"line\\nbreak\\ttab \\\"q\\\" back\\\\slash \\u0001 \\u001f \\/ ctl %d\"}",
	"{\"f\":1.5,\"g\":-0.25,\"e\":1e300,\"tiny\":5e-324,\"i\":-%d,\"big\":9007199254740993,\"p\":0.1}",
	"{\"emoji\":\"\xf0\x9f\x98\x80 %d\",\"utf8\":\"na\xc3\xaf" "ve \xce\xa9\",\"pair\":\"\\ud83d\\ude00\"}",
	"{\"k%d\":[],\"K\":{},\"_\":\"\",\"\":0}",
	"{\"\\u00e9\":%d,\"e\":2,\"E\":3,\"\\u00e8\":4,\"ee\":-0.0}",
	"{\"deep\":{\"a\":{\"b\":{\"c\":[[[%d]]]}}},\"del\":\"\\u007f\",\"n\":-9223372036854775807}",
	"{\n  \"spaced\" : [ 1 , 2 , 3 ] ,\n  \"t\" : %d\n}",
};
#define NTEMPLATES (int)(sizeof templates / sizeof templates[0])

struct bigc {
	char hlc[SR_HLC_LEN + 1];
	const char *model;
	char rid[SR_UUID_LEN + 1];
	int del;
	char *canon; /* expected canonical data, NULL for a delete */
};

struct bigrec {
	const char *model;
	char rid[SR_UUID_LEN + 1];
	const char *hlc; /* the winning change */
	const char *canon;
	int deleted;
};

Test(push, thousand_changes_pulled_back_byte_for_byte, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct resp p;
	struct h_chb c = {0};
	static struct bigc ch[BIG];
	static struct bigrec recs[BIG];
	static struct span spans[BIG];
	uint64_t base = h_now_ms() - 100000;
	char *body, wm[2][SR_HLC_LEN + 1] = {"", ""};
	long long since = 0, head;
	int i, k, nrecs = 0, got = 0, pages = 0;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);

	for (i = 0; i < BIG; i++) {
		struct bigc *x = &ch[i];
		int target = -1;

		/* HLCs deliberately out of batch order: seqs must still follow the batch */
		h_hlc(x->hlc, base + (uint64_t)((i * 389) % BIG), (uint64_t)i, d1.id);
		if (i % 10 == 8 && nrecs > 5)
			target = nrecs - 5; /* an update of an earlier record */
		else if (i % 10 == 9 && nrecs > 3)
			target = nrecs - 3; /* a delete */
		if (target < 0) {
			target = nrecs++;
			recs[target].model = i % 7 == 3 ? "content_identity" : "entry";
			h_uuid(recs[target].rid);
		}
		x->model = recs[target].model;
		snprintf(x->rid, sizeof x->rid, "%s", recs[target].rid);
		x->del = i % 10 == 9 && target < nrecs - 1;
		if (!x->del) {
			char raw[512];
			json_error_t err;
			json_t *j;

			snprintf(raw, sizeof raw, templates[i % NTEMPLATES], i);
			j = json_loads(raw, 0, &err);
			cr_assert(j, "template %d: %s", i % NTEMPLATES, err.text);
			x->canon = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
			json_decref(j);
			h_chb_add(&c, x->hlc, x->model, x->rid, "upsert", raw);
		} else {
			h_chb_add(&c, x->hlc, x->model, x->rid, "delete", NULL);
		}
		/* the expected current state: last writer wins by HLC */
		if (!recs[target].hlc || strcmp(x->hlc, recs[target].hlc) > 0) {
			recs[target].hlc = x->hlc;
			recs[target].canon = x->canon;
			recs[target].deleted = x->del;
		}
		k = !strcmp(x->model, "entry") ? 0 : 1;
		if (strcmp(x->hlc, wm[k]) > 0)
			memcpy(wm[k], x->hlc, sizeof wm[k]);
	}
	body = h_chb_end(&c);

	h_http(&p, &r, "POST", h_lp(&l, "/changes"), d1.token, body);
	h_expect_json(&p, 200);
	cr_assert_eq(h_jint(p.json, "accepted"), BIG, "%.500s", p.body);
	cr_assert_eq(h_jint(p.json, "duplicates"), 0);
	cr_assert_eq(h_jint(p.json, "head"), BIG);
	h_resp_free(&p);

	/* pulled back by another device in pages of 300 */
	while (got < BIG) {
		json_t *arr, *e;
		size_t j;
		int n;

		h_http(&p, &r, "GET", h_lp(&l, "/changes?since=%lld&limit=300", since), d2.token, NULL);
		h_expect_json(&p, 200);
		arr = json_object_get(p.json, "changes");
		n = raw_data(p.body, spans, BIG);
		cr_assert_eq(n, (int)json_array_size(arr), "raw scan found %d changes, JSON %zu", n,
			     json_array_size(arr));
		cr_assert_eq(n, got + 300 <= BIG ? 300 : BIG - got, "page %d holds %d changes", pages, n);
		json_array_foreach(arr, j, e) {
			struct bigc *x = &ch[got];

			cr_assert_eq(h_jint(e, "seq"), got + 1, "change %d has seq %lld", got, h_jint(e, "seq"));
			cr_assert_str_eq(h_jstr(e, "hlc"), x->hlc, "change %d hlc", got);
			cr_assert_str_eq(h_jstr(e, "model"), x->model, "change %d model", got);
			cr_assert_str_eq(h_jstr(e, "record_id"), x->rid, "change %d record_id", got);
			cr_assert_str_eq(h_jstr(e, "op"), x->del ? "delete" : "upsert", "change %d op", got);
			if (x->del) {
				cr_assert(spans[j].n == 4 && !strncmp(spans[j].p, "null", 4),
					  "delete %d served data %.*s", got, (int)spans[j].n, spans[j].p);
			} else {
				cr_assert(spans[j].n == strlen(x->canon) && !strncmp(spans[j].p, x->canon, spans[j].n),
					  "change %d data served as\n%.*s\nexpected\n%s", got, (int)spans[j].n,
					  spans[j].p, x->canon);
			}
			got++;
		}
		cr_assert_eq(h_jint(p.json, "next"), got, "next after page %d", pages);
		cr_assert_eq(h_jint(p.json, "head"), BIG);
		cr_assert_eq(h_jint(p.json, "schema_version"), 1);
		cr_assert(json_is_boolean(json_object_get(p.json, "more")) &&
			  json_is_true(json_object_get(p.json, "more")) == (got < BIG),
			  "more is wrong after %d changes: %.200s", got, p.body);
		since = h_jint(p.json, "next");
		h_resp_free(&p);
		cr_assert_lt(++pages, 10, "pull does not end");
	}
	cr_assert_eq(pages, 4);

	/* the default limit is 1000: one page, nothing more */
	h_http(&p, &r, "GET", h_lp(&l, "/changes"), d2.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), BIG);
	cr_assert(json_is_false(json_object_get(p.json, "more")));
	h_resp_free(&p);
	/* the tail */
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=995"), d2.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 5);
	cr_assert_eq(h_jint(json_array_get(json_object_get(p.json, "changes"), 0), "seq"), 996);
	cr_assert_eq(h_jint(p.json, "next"), BIG);
	h_resp_free(&p);
	/* the author's own changes are left out unless include_own=1; next still moves */
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=0"), d1.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 0, "%.300s", p.body);
	cr_assert_eq(h_jint(p.json, "next"), BIG);
	cr_assert(json_is_false(json_object_get(p.json, "more")));
	h_resp_free(&p);
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=0&limit=10&include_own=1"), d1.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 10);
	cr_assert_str_eq(h_jstr(json_array_get(json_object_get(p.json, "changes"), 9), "hlc"), ch[9].hlc);
	cr_assert_eq(h_jint(p.json, "next"), 10);
	cr_assert(json_is_true(json_object_get(p.json, "more")));
	h_resp_free(&p);

	/* current state and digests follow last-writer-wins over the whole batch */
	{
		uint64_t hx[2] = {0, 0};
		long long cnt[2] = {0, 0};
		char hex[17];
		json_t *s;

		for (i = 0; i < nrecs; i++) {
			k = !strcmp(recs[i].model, "entry") ? 0 : 1;
			if (recs[i].deleted)
				continue;
			cnt[k]++;
			hx[k] ^= sr_record_hash(recs[i].model, recs[i].rid, recs[i].hlc, recs[i].canon);
		}
		s = scope_get(&r, &l, &d2, "entry", d1.id);
		cr_assert(s, "no entry scope");
		cr_assert_eq(h_jint(s, "count"), cnt[0]);
		sr_hash_hex(hex, hx[0]);
		cr_assert_str_eq(h_jstr(s, "hash"), hex);
		cr_assert_str_eq(h_jstr(s, "watermark"), wm[0]);
		json_decref(s);
		s = scope_get(&r, &l, &d2, "content_identity", NULL);
		cr_assert(s, "no content_identity scope");
		cr_assert_eq(h_jint(s, "count"), cnt[1]);
		sr_hash_hex(hex, hx[1]);
		cr_assert_str_eq(h_jstr(s, "hash"), hex);
		cr_assert_str_eq(h_jstr(s, "watermark"), wm[1]);
		json_decref(s);
	}

	/* the same batch again: all duplicates, nothing moves */
	head = h_lib_head(&r, &l);
	h_http(&p, &r, "POST", h_lp(&l, "/changes"), d1.token, body);
	h_expect_json(&p, 200);
	cr_assert_eq(h_jint(p.json, "accepted"), 0, "%.300s", p.body);
	cr_assert_eq(h_jint(p.json, "duplicates"), BIG);
	cr_assert_eq(h_jint(p.json, "head"), head);
	h_resp_free(&p);
	cr_assert_eq(h_lib_head(&r, &l), BIG);
	free(body);
	for (i = 0; i < BIG; i++)
		free(ch[i].canon);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- idempotence ---- */

Test(push, repush_counts_duplicates, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct resp p;
	struct h_chb c = {0};
	char *batch, hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1];
	uint64_t t = h_now_ms() - 10000;
	json_t *arr;
	int i;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);

	batch = h_batch(&d1, t, 0, 20);
	cr_assert_eq(h_push_ok(&r, &l, &d1, strdup(batch), 20, 0), 20);
	cr_assert_eq(h_push_ok(&r, &l, &d1, strdup(batch), 0, 20), 20);
	cr_assert_eq(h_lib_head(&r, &l), 20);
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=0"), d2.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 20, "re-push duplicated changes");
	h_resp_free(&p);
	free(batch);

	/* half old, some new: only the new ones get seqs, in batch order */
	{
		char *old = h_batch(&d1, t, 10, 10), *fresh = h_batch(&d1, t, 20, 5);
		sr_buf b = {0};

		old[strlen(old) - 2] = '\0';
		sr_buf_printf(&b, "%s,%s", old, strchr(fresh, '[') + 1);
		free(old);
		free(fresh);
		cr_assert_eq(h_push_ok(&r, &l, &d1, sr_buf_steal(&b), 5, 10), 25);
	}
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=20"), d2.token, NULL);
	h_expect_json(&p, 200);
	arr = json_object_get(p.json, "changes");
	cr_assert_eq(json_array_size(arr), 5, "%s", p.body);
	for (i = 0; i < 5; i++) {
		h_hlc(hlc, t, (uint64_t)(20 + i), d1.id);
		cr_assert_eq(h_jint(json_array_get(arr, (size_t)i), "seq"), 21 + i);
		cr_assert_str_eq(h_jstr(json_array_get(arr, (size_t)i), "hlc"), hlc);
	}
	h_resp_free(&p);

	/* the same change twice in one batch, and written differently: one stored */
	h_uuid(rid);
	h_hlc(hlc, t + 1, 0, d1.id);
	h_chb_add(&c, hlc, "entry", rid, "upsert", "{\"a\":1,\"b\":[true,null]}");
	h_chb_add(&c, hlc, "entry", rid, "upsert", "{ \"b\" : [ true , null ] , \"a\" : 1 }");
	cr_assert_eq(h_push_ok(&r, &l, &d1, h_chb_end(&c), 1, 1), 26);
	h_chb_add(&c, hlc, "entry", rid, "upsert", "{\"b\":[true,null],\"a\":1}");
	cr_assert_eq(h_push_ok(&r, &l, &d1, h_chb_end(&c), 0, 1), 26);
	/* a re-sent delete too */
	h_hlc(hlc, t + 2, 0, d1.id);
	h_chb_add(&c, hlc, "entry", rid, "delete", NULL);
	cr_assert_eq(h_push_ok(&r, &l, &d1, h_chb_end(&c), 1, 0), 27);
	h_chb_add(&c, hlc, "entry", rid, "delete", NULL);
	cr_assert_eq(h_push_ok(&r, &l, &d1, h_chb_end(&c), 0, 1), 27);
	/* an empty batch is fine and changes nothing */
	cr_assert_eq(h_push_ok(&r, &l, &d1, strdup("{\"changes\":[]}"), 0, 0), 27);
	cr_assert_eq(h_lib_head(&r, &l), 27);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

Test(push, same_hlc_other_content_is_a_conflict, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct h_chb c = {0};
	char h1[SR_HLC_LEN + 1], h2[SR_HLC_LEN + 1], h3[SR_HLC_LEN + 1], a[SR_UUID_LEN + 1], b[SR_UUID_LEN + 1];
	char *before;
	uint64_t t = h_now_ms() - 10000;
	json_t *rec;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d, NULL);
	h_uuid(a);
	h_uuid(b);
	h_hlc(h1, t, 1, d.id);
	h_hlc(h2, t, 2, d.id);
	h_hlc(h3, t, 3, d.id);
	h_chb_add(&c, h1, "entry", a, "upsert", "{\"v\":1}");
	h_push_ok(&r, &l, &d, h_chb_end(&c), 1, 0);
	before = snapshot(&r, &l, &d);

	/* against the log: other data, other record, other op, other model */
	h_chb_add(&c, h2, "entry", b, "upsert", "{\"new\":true}");
	h_chb_add(&c, h1, "entry", a, "upsert", "{\"v\":2}");
	push_refused(&r, &l, &d, h_chb_end(&c), 409, "hlc-conflict", 1);
	h_chb_add(&c, h1, "entry", b, "upsert", "{\"v\":1}");
	push_refused(&r, &l, &d, h_chb_end(&c), 409, "hlc-conflict", 0);
	h_chb_add(&c, h1, "entry", a, "delete", NULL);
	push_refused(&r, &l, &d, h_chb_end(&c), 409, "hlc-conflict", 0);
	h_chb_add(&c, h1, "location", a, "upsert", "{\"v\":1}");
	push_refused(&r, &l, &d, h_chb_end(&c), 409, "hlc-conflict", 0);
	/* inside one batch */
	h_chb_add(&c, h2, "entry", b, "upsert", "{\"c\":1}");
	h_chb_add(&c, h3, "entry", b, "upsert", "{\"c\":3}");
	h_chb_add(&c, h2, "entry", b, "upsert", "{\"c\":2}");
	push_refused(&r, &l, &d, h_chb_end(&c), 409, "hlc-conflict", 2);
	same_snapshot(before, &r, &l, &d, "a refused hlc-conflict batch");

	rec = record_get(&r, &l, &d, "entry", a);
	cr_assert(rec, "record a is gone");
	cr_assert_str_eq(h_jstr(rec, "hlc"), h1);
	cr_assert_eq(h_jint(json_object_get(rec, "data"), "v"), 1);
	json_decref(rec);
	cr_assert_null(record_get(&r, &l, &d, "entry", b), "record b of a refused batch was stored");
	free(before);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- malformed changes ---- */

/* Writes tmpl into out with the @-tokens of the variants below replaced. */
static void expand(char *out, size_t n, const char *tmpl, const char *hlc, const char *rid)
{
	sr_buf b = {0};
	const char *s;
	char tmp[SR_HLC_LEN + 2];
	int k;

	for (s = tmpl; *s; s++) {
		if (*s != '@' || !s[1]) {
			sr_buf_putc(&b, *s);
			continue;
		}
		switch (*++s) {
		case 'H':
			sr_buf_puts(&b, hlc);
			break;
		case 'U':
			for (k = 0; hlc[k]; k++)
				sr_buf_putc(&b, hlc[k] >= 'a' && hlc[k] <= 'f' ? (char)(hlc[k] - 'a' + 'A') : hlc[k]);
			break;
		case 'S':
			sr_buf_put(&b, hlc, SR_HLC_LEN - 1);
			break;
		case 'X':
			sr_buf_printf(&b, "%sx", hlc);
			break;
		case 'B':
			snprintf(tmp, sizeof tmp, "%s", hlc);
			tmp[16] = '_';
			sr_buf_puts(&b, tmp);
			break;
		case 'R':
			sr_buf_puts(&b, rid);
			break;
		case 'T':
			sr_buf_put(&b, rid, SR_UUID_LEN - 1);
			break;
		}
	}
	snprintf(out, n, "%s", b.p);
	sr_buf_free(&b);
}

Test(push, one_bad_change_refuses_the_batch, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct resp p;
	char hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1], bad[512], *before, *body;
	uint64_t t = h_now_ms() - 10000;
	size_t v;
	int i;
	/* @H a valid HLC of the device, @U it in upper case, @S it one byte short, @X one byte
	 * long, @B with '_' for its first '-'; @R a valid record id, @T one byte short */
	const char *variants[] = {
		"{\"hlc\":\"@U\",\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":{}}",
		"{\"hlc\":\"@S\",\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":{}}",
		"{\"hlc\":\"@X\",\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":{}}",
		"{\"hlc\":\"@B\",\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":{}}",
		"{\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":{}}",
		"{\"hlc\":12345,\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":{}}",
		"{\"hlc\":\"@H\",\"model\":\"Entry\",\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":{}}",
		"{\"hlc\":\"@H\",\"model\":\"\",\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":{}}",
		"{\"hlc\":\"@H\",\"model\":7,\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":{}}",
		"{\"hlc\":\"@H\",\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":{}}",
		"{\"hlc\":\"@H\",\"model\":\"entry\",\"record_id\":\"not-a-uuid\",\"op\":\"upsert\",\"data\":{}}",
		"{\"hlc\":\"@H\",\"model\":\"entry\",\"op\":\"upsert\",\"data\":{}}",
		"{\"hlc\":\"@H\",\"model\":\"entry\",\"record_id\":\"@T\",\"op\":\"upsert\",\"data\":{}}",
		"{\"hlc\":\"@H\",\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"insert\",\"data\":{}}",
		"{\"hlc\":\"@H\",\"model\":\"entry\",\"record_id\":\"@R\",\"data\":{}}",
		"{\"hlc\":\"@H\",\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"upsert\"}",
		"{\"hlc\":\"@H\",\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":null}",
		"{\"hlc\":\"@H\",\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":[1]}",
		"{\"hlc\":\"@H\",\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"upsert\",\"data\":\"{}\"}",
		"{\"hlc\":\"@H\",\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"delete\",\"data\":{}}",
		"{\"hlc\":\"@H\",\"model\":\"entry\",\"record_id\":\"@R\",\"op\":\"delete\",\"data\":{\"x\":1}}",
		"\"a change\"",
		"[\"@H\",\"entry\"]",
		"null",
	};

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d, NULL);
	before = snapshot(&r, &l, &d);

	for (v = 0; v < sizeof variants / sizeof variants[0]; v++) {
		struct h_chb c = {0};

		for (i = 0; i < 10; i++) {
			h_hlc(hlc, t, (uint64_t)(v * 100 + (size_t)i), d.id);
			h_uuid(rid);
			if (i != 5) {
				h_chb_add(&c, hlc, "entry", rid, "upsert", "{\"ok\":true}");
				continue;
			}
			expand(bad, sizeof bad, variants[v], hlc, rid);
			h_chb_raw(&c, bad);
		}
		body = h_chb_end(&c);
		h_http(&p, &r, "POST", h_lp(&l, "/changes"), d.token, body);
		free(body);
		h_expect_problem(&p, 400, "bad-request");
		cr_assert(h_jint(p.json, "index") == 5 && json_is_integer(json_object_get(p.json, "index")),
			  "variant %zu: the problem does not name index 5: %s", v, p.body);
		h_resp_free(&p);
	}
	same_snapshot(before, &r, &l, &d, "a batch with one bad change");
	cr_assert_eq(h_lib_head(&r, &l), 0);
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=0&include_own=1"), d.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 0);
	h_resp_free(&p);

	/* the batch itself malformed */
	{
		const char *bodies[] = {"{}", "{\"changes\":{}}", "{\"changes\":\"x\"}", "{\"changes\":null}",
					"{\"change\":[]}", "[]", NULL};
		for (i = 0; bodies[i]; i++)
			push_refused(&r, &l, &d, strdup(bodies[i]), 400, "bad-request", -1);
	}
	same_snapshot(before, &r, &l, &d, "a malformed batch");
	free(before);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- refusals that need the relay's knowledge ---- */

Test(push, foreign_hlc, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct h_chb c = {0};
	char hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1], nobody[SR_UUID_LEN + 1], *before;
	uint64_t t = h_now_ms() - 10000;
	int i;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);
	h_push_ok(&r, &l, &d1, h_batch(&d1, t, 0, 2), 2, 0);
	before = snapshot(&r, &l, &d1);

	for (i = 0; i < 5; i++) {
		h_hlc(hlc, t + 1, (uint64_t)i, i == 3 ? d2.id : d1.id);
		h_uuid(rid);
		h_chb_add(&c, hlc, "entry", rid, "upsert", "{}");
	}
	push_refused(&r, &l, &d1, h_chb_end(&c), 403, "foreign-hlc", 3);
	h_uuid(nobody);
	h_hlc(hlc, t + 1, 0, nobody);
	h_chb_add(&c, hlc, "content_identity", rid, "upsert", "{}");
	push_refused(&r, &l, &d1, h_chb_end(&c), 403, "foreign-hlc", 0);
	/* d2 cannot re-send d1's accepted change either, not even as a duplicate */
	{
		char *again = h_batch(&d1, t, 0, 1);
		push_refused(&r, &l, &d2, again, 403, "foreign-hlc", 0);
	}
	same_snapshot(before, &r, &l, &d1, "a foreign-hlc batch");
	free(before);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

Test(push, device_owned_records_have_one_writer, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct h_chb c = {0};
	char e[SR_UUID_LEN + 1], n2[SR_UUID_LEN + 1], ci[SR_UUID_LEN + 1], hlc[SR_HLC_LEN + 1], e_hlc[SR_HLC_LEN + 1];
	char *before;
	uint64_t t = h_now_ms() - 10000;
	json_t *rec;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);
	h_uuid(e);
	h_uuid(ci);
	h_uuid(n2);
	h_hlc(e_hlc, t, 0, d1.id);
	h_chb_add(&c, e_hlc, "entry", e, "upsert", "{\"by\":\"d1\"}");
	h_hlc(hlc, t, 1, d1.id);
	h_chb_add(&c, hlc, "content_identity", ci, "upsert", "{\"by\":\"d1\"}");
	h_push_ok(&r, &l, &d1, h_chb_end(&c), 2, 0);
	before = snapshot(&r, &l, &d1);

	h_hlc(hlc, t + 100, 0, d2.id);
	h_chb_add(&c, hlc, "entry", e, "upsert", "{\"by\":\"d2\"}");
	push_refused(&r, &l, &d2, h_chb_end(&c), 409, "not-owner", 0);
	h_chb_add(&c, hlc, "entry", e, "delete", NULL);
	push_refused(&r, &l, &d2, h_chb_end(&c), 409, "not-owner", 0);
	h_hlc(hlc, t + 100, 1, d2.id);
	h_chb_add(&c, hlc, "entry", n2, "upsert", "{\"mine\":true}");
	h_hlc(hlc, t + 100, 2, d2.id);
	h_chb_add(&c, hlc, "entry", e, "upsert", "{\"by\":\"d2\"}");
	push_refused(&r, &l, &d2, h_chb_end(&c), 409, "not-owner", 1);
	same_snapshot(before, &r, &l, &d1, "a not-owner batch");
	rec = record_get(&r, &l, &d1, "entry", e);
	cr_assert(rec);
	cr_assert_str_eq(h_jstr(rec, "hlc"), e_hlc);
	cr_assert_str_eq(h_jstr(rec, "owner"), d1.id);
	json_decref(rec);
	cr_assert_null(record_get(&r, &l, &d1, "entry", n2), "a record of the refused batch was stored");

	/* the shared model is writable by both */
	h_hlc(hlc, t + 200, 0, d2.id);
	h_chb_add(&c, hlc, "content_identity", ci, "upsert", "{\"by\":\"d2\"}");
	h_push_ok(&r, &l, &d2, h_chb_end(&c), 1, 0);
	rec = record_get(&r, &l, &d1, "content_identity", ci);
	cr_assert_str_eq(h_jstr(json_object_get(rec, "data"), "by"), "d2");
	cr_assert(json_is_null(json_object_get(rec, "owner")), "shared record has an owner");
	json_decref(rec);
	put1(&r, &l, &d1, "content_identity", ci, t + 300, 0, "{\"by\":\"d1 again\"}");
	rec = record_get(&r, &l, &d2, "content_identity", ci);
	cr_assert_str_eq(h_jstr(json_object_get(rec, "data"), "by"), "d1 again");
	json_decref(rec);
	/* and d2 still owns what it creates */
	put1(&r, &l, &d2, "entry", n2, t + 400, 0, "{\"mine\":true}");
	rec = record_get(&r, &l, &d1, "entry", n2);
	cr_assert_str_eq(h_jstr(rec, "owner"), d2.id);
	json_decref(rec);
	cr_assert_eq(h_lib_head(&r, &l), 5);
	free(before);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

Test(push, clock_skew_and_unknown_model, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct resp p;
	struct h_chb c = {0};
	char hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1], *before, *body;
	uint64_t now = h_now_ms();
	int i;

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &l);
	h_device(&r, &l, &d);

	/* no schema yet: every model is unknown */
	h_uuid(rid);
	h_hlc(hlc, now - 1000, 0, d.id);
	h_chb_add(&c, hlc, "entry", rid, "upsert", "{}");
	push_refused(&r, &l, &d, h_chb_end(&c), 422, "unknown-model", 0);
	h_schema_ref(&r, &l, &d);
	before = snapshot(&r, &l, &d);

	for (i = 0; i < 4; i++) {
		h_hlc(hlc, i == 2 ? now + 3600 * 1000 : now - 1000, (uint64_t)i, d.id);
		h_uuid(rid);
		h_chb_add(&c, hlc, "entry", rid, "upsert", "{}");
	}
	body = h_chb_end(&c);
	h_http(&p, &r, "POST", h_lp(&l, "/changes"), d.token, body);
	free(body);
	h_expect_problem(&p, 422, "clock-skew");
	cr_assert_eq(h_jint(p.json, "index"), 2, "%s", p.body);
	cr_assert(json_is_integer(json_object_get(p.json, "relay_time")), "no relay_time: %s", p.body);
	cr_assert(llabs(h_jint(p.json, "relay_time") - (long long)h_now_ms()) < 5000, "relay_time not near now: %s",
		  p.body);
	h_resp_free(&p);

	for (i = 0; i < 3; i++) {
		h_hlc(hlc, now - 1000, (uint64_t)(10 + i), d.id);
		h_uuid(rid);
		h_chb_add(&c, hlc, i == 1 ? "tag" : "entry", rid, "upsert", "{}");
	}
	push_refused(&r, &l, &d, h_chb_end(&c), 422, "unknown-model", 1);
	same_snapshot(before, &r, &l, &d, "a refused clock-skew or unknown-model batch");

	/* within the default skew (300 s) is fine */
	h_uuid(rid);
	h_hlc(hlc, h_now_ms() + 60 * 1000, 0, d.id);
	h_chb_add(&c, hlc, "entry", rid, "upsert", "{}");
	h_push_ok(&r, &l, &d, h_chb_end(&c), 1, 0);
	free(before);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

Test(push, limits_batch_body_and_skew, .timeout = 120)
{
	const char *env[] = {"SYNCRELAY_MAX_BATCH=10", "SYNCRELAY_MAX_BODY_BYTES=2048", "SYNCRELAY_MAX_SKEW_MS=1000",
			     NULL};
	struct relay r;
	struct lib l;
	struct dev d;
	struct h_chb c = {0};
	char hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1], *body, *before;
	uint64_t t = h_now_ms() - 10000;
	sr_buf big = {0};
	int i;

	h_relay_start(&r, NULL, env);
	h_fixture(&r, &l, &d, NULL);

	for (i = 0; i < 10; i++) {
		h_hlc(hlc, t, (uint64_t)i, d.id);
		h_uuid(rid);
		h_chb_add(&c, hlc, "entry", rid, "upsert", "{}");
	}
	body = h_chb_end(&c);
	cr_assert_lt(strlen(body), 2048);
	h_push_ok(&r, &l, &d, body, 10, 0);
	before = snapshot(&r, &l, &d);

	/* 11 changes in fewer than 2048 bytes: too many */
	for (i = 0; i < 11; i++) {
		h_hlc(hlc, t, (uint64_t)(100 + i), d.id);
		h_uuid(rid);
		h_chb_add(&c, hlc, "entry", rid, "upsert", "{}");
	}
	body = h_chb_end(&c);
	cr_assert_lt(strlen(body), 2048);
	push_refused(&r, &l, &d, body, 413, "too-large", -1);

	/* one change in more than 2048 bytes: too big */
	sr_buf_puts(&big, "{\"pad\":\"");
	for (i = 0; i < 3000; i++)
		sr_buf_putc(&big, 'x');
	sr_buf_puts(&big, "\"}");
	h_hlc(hlc, t, 200, d.id);
	h_uuid(rid);
	h_chb_add(&c, hlc, "entry", rid, "upsert", big.p);
	push_refused(&r, &l, &d, h_chb_end(&c), 413, "too-large", -1);
	/* a megabyte */
	for (i = 0; i < 1 << 20; i++)
		sr_buf_putc(&big, 'y');
	h_http_problem(&r, "POST", h_lp(&l, "/changes"), d.token, big.p, 413, "too-large");
	h_http_problem(&r, "PUT", h_lp(&l, "/schema"), d.token, big.p, 413, "too-large");
	sr_buf_free(&big);

	/* this relay allows only 1 s of skew */
	h_hlc(hlc, h_now_ms() + 60 * 1000, 0, d.id);
	h_uuid(rid);
	h_chb_add(&c, hlc, "entry", rid, "upsert", "{}");
	push_refused(&r, &l, &d, h_chb_end(&c), 422, "clock-skew", 0);
	same_snapshot(before, &r, &l, &d, "a refused batch over a limit");

	/* and a normal push still works */
	h_hlc(hlc, t, 300, d.id);
	h_chb_add(&c, hlc, "entry", rid, "upsert", "{}");
	cr_assert_eq(h_push_ok(&r, &l, &d, h_chb_end(&c), 1, 0), 11);
	free(before);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- current state ---- */

Test(push, last_writer_wins_and_tombstones, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct resp p;
	struct h_chb c = {0};
	char x[SR_UUID_LEN + 1], y[SR_UUID_LEN + 1], ci[SR_UUID_LEN + 1];
	char h_new[SR_HLC_LEN + 1], h_old[SR_HLC_LEN + 1], h_del[SR_HLC_LEN + 1], h_ci[SR_HLC_LEN + 1], hex[17];
	uint64_t t = h_now_ms() - 100000;
	json_t *rec, *s, *arr;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);
	h_uuid(x);
	h_uuid(y);
	h_uuid(ci);

	/* newer first, then an older one arrives late */
	h_hlc(h_new, t + 2000, 0, d1.id);
	h_hlc(h_old, t + 1000, 0, d1.id);
	put1(&r, &l, &d1, "entry", x, t + 2000, 0, "{\"v\":2}");
	put1(&r, &l, &d1, "entry", x, t + 1000, 0, "{\"v\":1}");
	cr_assert_eq(h_lib_head(&r, &l), 2, "the late change was not logged");
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=0"), d2.token, NULL);
	h_expect_json(&p, 200);
	arr = json_object_get(p.json, "changes");
	cr_assert_eq(json_array_size(arr), 2, "%s", p.body);
	cr_assert_str_eq(h_jstr(json_array_get(arr, 1), "hlc"), h_old, "the late change is not pulled: %s", p.body);
	cr_assert_eq(h_jint(json_array_get(arr, 1), "seq"), 2);
	h_resp_free(&p);
	rec = record_get(&r, &l, &d2, "entry", x);
	cr_assert_str_eq(h_jstr(rec, "hlc"), h_new, "an older change replaced the record");
	cr_assert_eq(h_jint(json_object_get(rec, "data"), "v"), 2);
	json_decref(rec);
	s = scope_get(&r, &l, &d2, "entry", d1.id);
	cr_assert_eq(h_jint(s, "count"), 1);
	hash_hex(hex, "entry", x, h_new, "{\"v\":2}");
	cr_assert_str_eq(h_jstr(s, "hash"), hex, "digest is not of the newer version");
	cr_assert_str_eq(h_jstr(s, "watermark"), h_new);
	json_decref(s);

	/* inside one batch the order of arrival does not matter either */
	{
		char a1[SR_HLC_LEN + 1], a2[SR_HLC_LEN + 1];
		h_hlc(a1, t + 500, 0, d1.id);
		h_hlc(a2, t + 400, 0, d1.id);
		h_chb_add(&c, a1, "entry", y, "upsert", "{\"w\":\"newer\"}");
		h_chb_add(&c, a2, "entry", y, "upsert", "{\"w\":\"older\"}");
		h_push_ok(&r, &l, &d1, h_chb_end(&c), 2, 0);
		rec = record_get(&r, &l, &d2, "entry", y);
		cr_assert_str_eq(h_jstr(rec, "hlc"), a1);
		cr_assert_str_eq(h_jstr(json_object_get(rec, "data"), "w"), "newer");
		json_decref(rec);
	}

	/* shared: the older write of another device is logged but loses */
	h_hlc(h_ci, t + 5000, 0, d1.id);
	put1(&r, &l, &d1, "content_identity", ci, t + 5000, 0, "{\"by\":1}");
	put1(&r, &l, &d2, "content_identity", ci, t + 4000, 0, "{\"by\":2}");
	rec = record_get(&r, &l, &d2, "content_identity", ci);
	cr_assert_str_eq(h_jstr(rec, "hlc"), h_ci);
	json_decref(rec);
	s = scope_get(&r, &l, &d2, "content_identity", NULL);
	hash_hex(hex, "content_identity", ci, h_ci, "{\"by\":1}");
	cr_assert_eq(h_jint(s, "count"), 1);
	cr_assert_str_eq(h_jstr(s, "hash"), hex);
	cr_assert_str_eq(h_jstr(s, "watermark"), h_ci);
	json_decref(s);

	/* an older delete does not remove it; a newer one makes a tombstone */
	put1(&r, &l, &d1, "entry", x, t + 1500, 0, NULL);
	rec = record_get(&r, &l, &d2, "entry", x);
	cr_assert(json_is_false(json_object_get(rec, "deleted")), "an older delete removed the record");
	json_decref(rec);
	h_hlc(h_del, t + 3000, 0, d1.id);
	put1(&r, &l, &d1, "entry", x, t + 3000, 0, NULL);
	rec = record_get(&r, &l, &d2, "entry", x);
	cr_assert(json_is_true(json_object_get(rec, "deleted")), "no tombstone");
	cr_assert_str_eq(h_jstr(rec, "hlc"), h_del);
	cr_assert(json_is_null(json_object_get(rec, "data")));
	json_decref(rec);
	h_http(&p, &r, "GET", h_lp(&l, "/records?model=entry&owner=%s", d1.id), d2.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "records")), 1, "tombstone listed without include_deleted");
	h_resp_free(&p);
	s = scope_get(&r, &l, &d2, "entry", d1.id);
	cr_assert(s, "the scope vanished");
	cr_assert_eq(h_jint(s, "count"), 1, "the delete did not lower the count");
	{
		char hy[SR_HLC_LEN + 1];
		h_hlc(hy, t + 500, 0, d1.id);
		hash_hex(hex, "entry", y, hy, "{\"w\":\"newer\"}");
	}
	cr_assert_str_eq(h_jstr(s, "hash"), hex, "the deleted record is still in the hash");
	cr_assert_str_eq(h_jstr(s, "watermark"), h_del, "the watermark ignores the delete");
	json_decref(s);

	/* an upsert older than the tombstone stays dead; a newer one revives */
	put1(&r, &l, &d1, "entry", x, t + 2500, 0, "{\"v\":\"zombie\"}");
	rec = record_get(&r, &l, &d2, "entry", x);
	cr_assert(json_is_true(json_object_get(rec, "deleted")), "an upsert older than the delete revived it");
	json_decref(rec);
	put1(&r, &l, &d1, "entry", x, t + 4000, 0, "{\"v\":3}");
	rec = record_get(&r, &l, &d2, "entry", x);
	cr_assert(json_is_false(json_object_get(rec, "deleted")));
	cr_assert_eq(h_jint(json_object_get(rec, "data"), "v"), 3);
	json_decref(rec);
	s = scope_get(&r, &l, &d2, "entry", d1.id);
	cr_assert_eq(h_jint(s, "count"), 2);
	json_decref(s);
	cr_assert_eq(h_lib_head(&r, &l), 10);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- long-poll ---- */

Test(pull, long_poll_wakes_on_push_and_expires, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct resp p;
	struct h_call bg;
	double deadline, t0;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);
	h_push_ok(&r, &l, &d1, h_batch(&d1, h_now_ms() - 1000, 0, 2), 2, 0);

	/* nothing new: held for about the wait, then an empty answer */
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=2&wait=1"), d2.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 0);
	cr_assert_eq(h_jint(p.json, "next"), 2);
	cr_assert(p.seconds > 0.8 && p.seconds < 5, "wait=1 answered after %.2f s", p.seconds);
	h_resp_free(&p);

	/* a held pull is answered as soon as a change arrives */
	h_call_start(&bg, &r, d2.token, "%s", h_lp(&l, "/changes?since=2&wait=20"));
	deadline = h_mono() + 10;
	while (h_metric(&r, "syncrelay_longpolls_held") < 1) {
		struct timespec tick = {0, 20 * 1000 * 1000};
		if (h_mono() > deadline) {
			pthread_join(bg.th, NULL);
			cr_assert_fail("the pull was never held (status %ld after %.1f s)", bg.resp.status,
				       bg.t_end - bg.t_start);
		}
		nanosleep(&tick, NULL);
	}
	t0 = h_mono();
	h_push_ok(&r, &l, &d1, h_batch(&d1, h_now_ms() - 1000, 2, 1), 1, 0);
	h_call_join(&bg, h_mono() + 30, "held pull");
	cr_assert_eq(bg.resp.status, 200, "%s", bg.resp.body);
	cr_assert_lt(h_mono() - t0, 5, "the held pull was answered %.2f s after the push", h_mono() - t0);
	cr_assert_eq(json_array_size(json_object_get(bg.resp.json, "changes")), 1, "%s", bg.resp.body);
	cr_assert_eq(h_jint(json_array_get(json_object_get(bg.resp.json, "changes"), 0), "seq"), 3);
	cr_assert_eq(h_jint(bg.resp.json, "next"), 3);
	h_resp_free(&bg.resp);
	cr_assert_eq(h_metric(&r, "syncrelay_longpolls_held"), 0);

	/* something new already: answered at once */
	h_http(&p, &r, "GET", h_lp(&l, "/changes?since=0&wait=20"), d2.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 3);
	cr_assert_lt(p.seconds, 5);
	h_resp_free(&p);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* One number from the relay's database. */
static long long sql_num(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	long long v;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
	v = atoll(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

/* The rows of records the relay's session has read and inserted, once its statistics show
 * at least want inserts (a backend reports them when it goes idle, within about 10 s). */
static void records_reads(PGconn *c, long long want_ins, long long *read, const char *what)
{
	double deadline = h_mono() + 30;
	long long ins = -1;

	while (h_mono() < deadline) {
		PQclear(PQexec(c, "SELECT pg_stat_clear_snapshot()"));
		ins = sql_num(c, "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'records'");
		if (ins >= want_ins)
			break;
		usleep(50 * 1000); /* polling the statistics view, under the deadline */
	}
	cr_assert_geq(ins, want_ins, "%s: the statistics show %lld inserts into records after 30 s, want %lld", what,
		      ins, want_ins);
	*read = sql_num(c, "SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0)"
			   " FROM pg_stat_user_tables WHERE relname = 'records'");
}

/* A push reads the records it touches, not the library: with a pool of one connection its
 * statements run on their generic plans after 5 pushes, over a library of 20,000 records
 * that has no statistics (the plans that once hashed the whole library per batch). */
Test(push, touches_only_its_records_whatever_the_plan)
{
	static const char *const env[] = {"SYNCRELAY_DB_POOL=1", NULL};
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	PGconn *c;
	long long before, after, base_ins;
	uint64_t t = h_now_ms();
	int i;

	if (getenv("SYNCRELAY_TEST_CITUS"))
		cr_skip_test("on Citus the reads happen in the workers' shards, which the coordinator's statistics do not "
			     "show; the statements are the same");
	h_relay_start(&r, NULL, env);
	h_fixture(&r, &l, &d1, &d2);
	h_sql(&r,
	      "INSERT INTO records (library_id, model, record_id, owner, bucket, hlc, deleted, data)"
	      " SELECT $1, 'entry', md5(g::text)::uuid::text, '', 0, lpad(to_hex(g), 16, '0') || '-0000000000000000-"
	      "00000000-0000-4000-8000-000000000000', false, '{}' FROM generate_series(1, 20000) g",
	      l.id);
	c = PQconnectdb(r.db);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	for (i = 0; i < 8; i++) /* past the 5 custom plans */
		h_push_ok(&r, &l, &d1, h_batch(&d1, t, i * 10, 10), 10, 0);
	base_ins = 20000 + 80;
	records_reads(c, base_ins, &before, "after the warm-up pushes");
	for (i = 8; i < 18; i++)
		h_push_ok(&r, &l, &d1, h_batch(&d1, t, i * 10, 10), 10, 0);
	records_reads(c, base_ins + 100, &after, "after the measured pushes");
	cr_assert_lt(after - before, 2000,
		     "10 pushes of 10 new records read %lld rows of records: the library of 20,000 was scanned",
		     after - before);
	PQfinish(c);
	cr_assert_eq(h_relay_stop(&r), 0);
}

