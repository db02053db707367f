/*
 * Every endpoint of the relay over real HTTP: libraries, devices (enroll, list, revoke),
 * schema, ack, records pages, digests and buckets, and the operational endpoints. Each
 * test checks the status, the body, and the state that follows through a second read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define REF_ORDER "[\"content_identity\",\"entry\",\"location\"]"

/* ---- small helpers ---- */

/* GET path and expect 200 with JSON; returns the parsed body (caller decrefs). */
static json_t *get_json(struct relay *r, const char *path, const char *token)
{
	struct resp p;
	json_t *j;

	h_http(&p, r, "GET", path, token, NULL);
	h_expect_json(&p, 200);
	j = json_incref(p.json);
	h_resp_free(&p);
	return j;
}

/* The device list as admin; returns the "devices" array (caller decrefs). */
static json_t *dev_list(struct relay *r, const struct lib *l)
{
	struct resp p;
	json_t *a;

	h_http(&p, r, "GET", h_lp(l, "/devices"), H_ADMIN, NULL);
	h_expect_json(&p, 200);
	a = json_incref(json_object_get(p.json, "devices"));
	cr_assert(json_is_array(a), "no devices array: %s", p.body);
	h_resp_free(&p);
	return a;
}

static json_t *dev_find(json_t *devices, const char *id)
{
	size_t i;
	json_t *d;

	json_array_foreach(devices, i, d)
		if (h_jstr(d, "device_id") && !strcmp(h_jstr(d, "device_id"), id))
			return d;
	return NULL;
}

/* Every record of one query, page by page with `after`; asserts order and page sizes.
 * Returns a new array. */
static json_t *records_all(struct relay *r, const struct lib *l, const struct dev *d, const char *query,
			   int limit)
{
	json_t *all = json_array();
	char after[SR_UUID_LEN + 1] = "", prev[SR_UUID_LEN + 1] = "";
	int pages = 0;

	for (;;) {
		struct resp p;
		json_t *recs, *rec, *na;
		size_t i;

		h_http(&p, r, "GET", h_lp(l, "/records?%s&limit=%d%s%s", query, limit, *after ? "&after=" : "", after),
		       d->token, NULL);
		h_expect_json(&p, 200);
		recs = json_object_get(p.json, "records");
		cr_assert(json_is_array(recs), "no records array: %s", p.body);
		cr_assert_leq(json_array_size(recs), (size_t)limit, "page larger than limit %d: %s", limit, p.body);
		cr_assert(json_is_integer(json_object_get(p.json, "head")), "records page lacks head: %s", p.body);
		json_array_foreach(recs, i, rec) {
			const char *id = h_jstr(rec, "record_id");
			cr_assert(id && strcmp(id, prev) > 0, "records not ordered by record_id: %s after %s", id, prev);
			snprintf(prev, sizeof prev, "%s", id);
			json_array_append(all, rec);
		}
		na = json_object_get(p.json, "next_after");
		if (json_is_null(na)) {
			h_resp_free(&p);
			break;
		}
		cr_assert(json_is_string(na), "next_after is neither null nor a string: %s", p.body);
		cr_assert(json_array_size(recs) > 0 && !strcmp(json_string_value(na), prev),
			  "next_after is not the last record_id of the page: %s", p.body);
		snprintf(after, sizeof after, "%s", json_string_value(na));
		h_resp_free(&p);
		cr_assert_lt(++pages, 10000, "records paging does not end");
	}
	return all;
}

/* The digest of a set of records as the relay should compute it (live records only). */
struct dg {
	long long count;
	uint64_t hash;
	long long bcount[SR_BUCKETS];
	uint64_t bhash[SR_BUCKETS];
};

static void dg_of(struct dg *out, const json_t *records)
{
	size_t i;
	json_t *rec;

	memset(out, 0, sizeof *out);
	json_array_foreach(records, i, rec) {
		const char *id = h_jstr(rec, "record_id");
		char *canon;
		uint64_t h;
		unsigned b;

		if (json_is_true(json_object_get(rec, "deleted")))
			continue;
		canon = sr_canonical(json_object_get(rec, "data"));
		cr_assert(canon, "live record without object data");
		h = sr_record_hash(h_jstr(rec, "model"), id, h_jstr(rec, "hlc"), canon);
		free(canon);
		b = sr_bucket(id);
		out->count++;
		out->hash ^= h;
		out->bcount[b]++;
		out->bhash[b] ^= h;
	}
}

/* GET digest?query; returns the single scope it lists (new ref). */
static json_t *digest_scope(struct relay *r, const struct lib *l, const struct dev *d, const char *query)
{
	struct resp p;
	json_t *scopes, *s;

	h_http(&p, r, "GET", h_lp(l, "/digest?%s", query), d->token, NULL);
	h_expect_json(&p, 200);
	scopes = json_object_get(p.json, "scopes");
	cr_assert(json_is_array(scopes) && json_array_size(scopes) == 1, "expected one scope for %s: %s", query,
		  p.body);
	s = json_incref(json_array_get(scopes, 0));
	h_resp_free(&p);
	return s;
}

/* Checks one scope's digest and buckets against a recomputation from its records page. */
static void check_scope(struct relay *r, const struct lib *l, const struct dev *d, const char *model,
			const char *owner, const char *watermark)
{
	char q[256], hex[17];
	json_t *recs, *scope, *b;
	struct dg want;
	struct resp p;
	long long sum = 0, prev = -1;
	uint64_t x = 0;
	size_t i;
	int nonempty = 0, k;

	snprintf(q, sizeof q, "model=%s%s%s", model, owner ? "&owner=" : "", owner ? owner : "");
	recs = records_all(r, l, d, q, 1000);
	dg_of(&want, recs);
	scope = digest_scope(r, l, d, q);
	cr_assert_str_eq(h_jstr(scope, "model"), model);
	if (owner)
		cr_assert(h_jstr(scope, "owner") && !strcmp(h_jstr(scope, "owner"), owner), "scope owner");
	else
		cr_assert(json_is_null(json_object_get(scope, "owner")), "shared scope owner must be null");
	cr_assert_eq(h_jint(scope, "count"), want.count, "%s/%s: count %lld, records page has %lld live", model,
		     owner ? owner : "-", h_jint(scope, "count"), want.count);
	sr_hash_hex(hex, want.hash);
	cr_assert(h_jstr(scope, "hash") && strlen(h_jstr(scope, "hash")) == 16, "hash is not 16 hex digits");
	cr_assert_str_eq(h_jstr(scope, "hash"), hex, "%s/%s: relay hash differs from the recomputation", model,
			 owner ? owner : "-");
	if (watermark)
		cr_assert(h_jstr(scope, "watermark") && !strcmp(h_jstr(scope, "watermark"), watermark),
			  "watermark %s, expected %s", h_jstr(scope, "watermark"), watermark);

	h_http(&p, r, "GET", h_lp(l, "/digest/buckets?%s", q), d->token, NULL);
	h_expect_json(&p, 200);
	cr_assert_str_eq(h_jstr(p.json, "model"), model);
	cr_assert(owner ? h_jstr(p.json, "owner") && !strcmp(h_jstr(p.json, "owner"), owner)
			: json_is_null(json_object_get(p.json, "owner")),
		  "buckets owner: %s", p.body);
	cr_assert(json_is_array(json_object_get(p.json, "buckets")), "no buckets array: %s", p.body);
	json_array_foreach(json_object_get(p.json, "buckets"), i, b) {
		long long bk = h_jint(b, "bucket"), cnt = h_jint(b, "count");
		uint64_t h = 0;

		cr_assert(bk > prev && bk < SR_BUCKETS, "buckets not ascending or out of range: %s", p.body);
		prev = bk;
		cr_assert_gt(cnt, 0, "empty bucket listed: %s", p.body);
		cr_assert(sr_hash_parse(&h, h_jstr(b, "hash")) == 0, "bucket hash not 16 hex digits: %s", p.body);
		cr_assert_eq(cnt, want.bcount[bk], "bucket %lld count %lld, expected %lld", bk, cnt, want.bcount[bk]);
		cr_assert_eq(h, want.bhash[bk], "bucket %lld hash differs from the recomputation", bk);
		sum += cnt;
		x ^= h;
		nonempty++;
	}
	for (k = 0; k < SR_BUCKETS; k++)
		nonempty -= want.bcount[k] > 0;
	cr_assert_eq(nonempty, 0, "the relay lists a different number of non-empty buckets: %s", p.body);
	cr_assert_eq(sum, h_jint(scope, "count"), "bucket counts do not sum to the scope count");
	sr_hash_hex(hex, x);
	cr_assert_str_eq(hex, h_jstr(scope, "hash"), "bucket hashes do not XOR to the scope hash");
	h_resp_free(&p);
	json_decref(scope);
	json_decref(recs);
}

/* ---- libraries ---- */

Test(libraries, create_needs_admin_and_a_name, .timeout = 120)
{
	struct relay r;
	struct lib a = {0}, b = {0};
	struct dev d;
	struct resp p;
	json_t *j;
	const char *bad[] = {"{}", "{\"name\":\"\"}", "{\"name\":5}", "{\"name\":null}", "{\"name\":[\"x\"]}", NULL};
	char longname[300];
	int i;

	h_relay_start(&r, NULL, NULL);
	h_http(&p, &r, "POST", "/v1/libraries", H_ADMIN, "{\"name\":\"photos \\u00e9t\\u00e9\"}");
	h_expect_json(&p, 201);
	cr_assert(h_jstr(p.json, "library_id") &&
		  sr_uuid_valid(h_jstr(p.json, "library_id"), strlen(h_jstr(p.json, "library_id"))),
		  "library_id is not a canonical UUID: %s", p.body);
	cr_assert_str_eq(h_jstr(p.json, "name"), "photos \xc3\xa9t\xc3\xa9");
	cr_assert(h_jstr(p.json, "join_token") && strlen(h_jstr(p.json, "join_token")) >= 32,
		  "join token shorter than 128 bits of hex: %s", p.body);
	snprintf(a.id, sizeof a.id, "%s", h_jstr(p.json, "library_id"));
	snprintf(a.join, sizeof a.join, "%s", h_jstr(p.json, "join_token"));
	h_resp_free(&p);

	/* second read: the library exists, empty */
	j = get_json(&r, h_lp(&a, ""), H_ADMIN);
	cr_assert_str_eq(h_jstr(j, "library_id"), a.id);
	cr_assert_str_eq(h_jstr(j, "name"), "photos \xc3\xa9t\xc3\xa9");
	cr_assert_eq(h_jint(j, "head"), 0);
	cr_assert_eq(h_jint(j, "schema_version"), 0);
	json_decref(j);
	/* the join token it showed works, and a second library is distinct */
	h_device(&r, &a, &d);
	h_library(&r, &b);
	cr_assert_str_neq(a.id, b.id);
	cr_assert_str_neq(a.join, b.join);

	h_http_problem(&r, "POST", "/v1/libraries", NULL, "{\"name\":\"x\"}", 401, "unauthorized");
	h_http_problem(&r, "POST", "/v1/libraries", "not-the-admin-token", "{\"name\":\"x\"}", 401, "unauthorized");
	h_http_problem(&r, "POST", "/v1/libraries", d.token, "{\"name\":\"x\"}", 403, "forbidden");
	h_http_problem(&r, "POST", "/v1/libraries", a.join, "{\"name\":\"x\"}", 403, "forbidden");

	for (i = 0; bad[i]; i++)
		h_http_problem(&r, "POST", "/v1/libraries", H_ADMIN, bad[i], 400, "bad-request");
	memset(longname, 'n', sizeof longname);
	memcpy(longname, "{\"name\":\"", 9);
	memcpy(longname + 9 + 201, "\"}", 3);
	h_http_problem(&r, "POST", "/v1/libraries", H_ADMIN, longname, 400, "bad-request");
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

Test(libraries, get_head_horizon_schema_and_time, .timeout = 120)
{
	struct relay r;
	struct lib a, b, unknown;
	struct dev da, db;
	struct resp p;
	uint64_t t0;

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &a);
	h_library(&r, &b);
	h_device(&r, &a, &da);
	h_device(&r, &b, &db);

	t0 = h_now_ms();
	h_http(&p, &r, "GET", h_lp(&a, ""), da.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_str_eq(h_jstr(p.json, "library_id"), a.id);
	cr_assert_str_eq(h_jstr(p.json, "name"), "test library");
	cr_assert_eq(h_jint(p.json, "head"), 0);
	cr_assert(json_is_integer(json_object_get(p.json, "horizon")) && h_jint(p.json, "horizon") == 0, "%s", p.body);
	cr_assert_eq(h_jint(p.json, "schema_version"), 0);
	cr_assert(llabs(h_jint(p.json, "relay_time") - (long long)t0) < 5000, "relay_time %lld is not near now %llu",
		  h_jint(p.json, "relay_time"), (unsigned long long)t0);
	h_resp_free(&p);

	/* after a schema and a push: head and schema_version follow */
	h_schema_ref(&r, &a, &da);
	h_push_ok(&r, &a, &da, h_batch(&da, h_now_ms(), 0, 4), 4, -1);
	h_http(&p, &r, "GET", h_lp(&a, ""), da.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(h_jint(p.json, "head"), 4, "%s", p.body);
	cr_assert_eq(h_jint(p.json, "schema_version"), 1, "%s", p.body);
	h_resp_free(&p);
	/* library b is untouched */
	cr_assert_eq(h_lib_head(&r, &b), 0);

	h_uuid(unknown.id);
	h_http_problem(&r, "GET", h_lp(&unknown, ""), H_ADMIN, NULL, 404, "library-not-found");
	h_http_problem(&r, "GET", h_lp(&a, ""), db.token, NULL, 403, "wrong-library");
	h_http_problem(&r, "GET", h_lp(&a, ""), a.join, NULL, 403, "forbidden");
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- devices ---- */

Test(devices, enroll, .timeout = 120)
{
	struct relay r;
	struct lib a, b, unknown;
	struct dev d, other;
	struct resp p;
	json_t *list;
	char id[SR_UUID_LEN + 1], body[256], upper[SR_UUID_LEN + 1];
	const char *bad[] = {"{\"device_id\":\"not-a-uuid\",\"name\":\"x\"}", "{\"name\":\"x\"}",
			     "{\"device_id\":42,\"name\":\"x\"}", "{\"device_id\":null}", NULL};
	size_t i;

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &a);
	h_library(&r, &b);

	h_uuid(d.id);
	snprintf(body, sizeof body, "{\"device_id\":\"%s\",\"name\":\"laptop\"}", d.id);
	h_http(&p, &r, "POST", h_lp(&a, "/devices"), a.join, body);
	h_expect_json(&p, 201);
	cr_assert_str_eq(h_jstr(p.json, "device_id"), d.id);
	cr_assert(h_jstr(p.json, "token") && strlen(h_jstr(p.json, "token")) >= 32, "token: %s", p.body);
	cr_assert_str_neq(h_jstr(p.json, "token"), a.join);
	snprintf(d.token, sizeof d.token, "%s", h_jstr(p.json, "token"));
	h_resp_free(&p);
	/* the token works, and the device is listed with its name */
	h_http_json(&r, "GET", h_lp(&a, ""), d.token, NULL, 200);
	list = dev_list(&r, &a);
	cr_assert_eq(json_array_size(list), 1);
	cr_assert(dev_find(list, d.id), "enrolled device not listed");
	cr_assert_str_eq(h_jstr(dev_find(list, d.id), "name"), "laptop");
	cr_assert(h_jstr(dev_find(list, d.id), "enrolled_at"), "enrolled_at missing");
	json_decref(list);

	/* again: 409, and the first token keeps working */
	snprintf(body, sizeof body, "{\"device_id\":\"%s\",\"name\":\"impostor\"}", d.id);
	h_http_problem(&r, "POST", h_lp(&a, "/devices"), a.join, body, 409, "device-exists");
	h_http_problem(&r, "POST", h_lp(&a, "/devices"), H_ADMIN, body, 409, "device-exists");
	h_http_json(&r, "GET", h_lp(&a, ""), d.token, NULL, 200);
	list = dev_list(&r, &a);
	cr_assert_eq(json_array_size(list), 1);
	cr_assert_str_eq(h_jstr(dev_find(list, d.id), "name"), "laptop");
	json_decref(list);

	/* bad device ids */
	for (i = 0; bad[i]; i++)
		h_http_problem(&r, "POST", h_lp(&a, "/devices"), a.join, bad[i], 400, "bad-request");
	h_uuid(upper);
	for (i = 0; upper[i]; i++)
		if (upper[i] >= 'a' && upper[i] <= 'f')
			upper[i] = (char)(upper[i] - 'a' + 'A');
	snprintf(body, sizeof body, "{\"device_id\":\"%s\",\"name\":\"x\"}", upper);
	h_http_problem(&r, "POST", h_lp(&a, "/devices"), a.join, body, 400, "bad-request");
	list = dev_list(&r, &a);
	cr_assert_eq(json_array_size(list), 1, "a refused enroll added a device");
	json_decref(list);

	/* the join token of a on b, a device token, and an unknown library */
	h_uuid(id);
	snprintf(body, sizeof body, "{\"device_id\":\"%s\",\"name\":\"x\"}", id);
	h_http_problem(&r, "POST", h_lp(&b, "/devices"), a.join, body, 403, "wrong-library");
	h_http_problem(&r, "POST", h_lp(&a, "/devices"), d.token, body, 403, "forbidden");
	h_uuid(unknown.id);
	h_http_problem(&r, "POST", h_lp(&unknown, "/devices"), H_ADMIN, body, 404, "library-not-found");
	list = dev_list(&r, &b);
	cr_assert_eq(json_array_size(list), 0, "a refused enroll added a device to b");
	json_decref(list);

	/* the admin may enroll; the same device id may join another library */
	h_http(&p, &r, "POST", h_lp(&b, "/devices"), H_ADMIN, body);
	h_expect_json(&p, 201);
	snprintf(other.token, sizeof other.token, "%s", h_jstr(p.json, "token"));
	h_resp_free(&p);
	h_http_json(&r, "GET", h_lp(&b, ""), other.token, NULL, 200);
	h_http_problem(&r, "GET", h_lp(&a, ""), other.token, NULL, 403, "wrong-library");
	list = dev_list(&r, &b);
	cr_assert_eq(json_array_size(list), 1);
	cr_assert(dev_find(list, id), "admin-enrolled device not listed");
	json_decref(list);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

Test(devices, list_ack_and_lag, .timeout = 120)
{
	struct relay r;
	struct lib a, b;
	struct dev d1, d2, other;
	struct resp p;
	json_t *list, *e1, *e2;
	const char *bad[] = {"{\"seq\":-1}", "{\"seq\":1.5}", "{\"seq\":\"3\"}", "{}", "{\"seq\":null}",
			     "{\"seq\":true}", NULL};
	int i;

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &a);
	h_library(&r, &b);
	h_device(&r, &a, &d1);
	h_device(&r, &a, &d2);
	h_device(&r, &b, &other);

	list = dev_list(&r, &a);
	cr_assert_eq(json_array_size(list), 2);
	e2 = dev_find(list, d2.id);
	cr_assert(e2, "d2 not listed");
	cr_assert(json_is_null(json_object_get(e2, "last_seen")), "a device that never called has last_seen: %s",
		  json_dumps(e2, 0));
	cr_assert_eq(h_jint(e2, "acked_seq"), 0);
	cr_assert(json_is_false(json_object_get(e2, "revoked")));
	json_decref(list);

	h_schema_ref(&r, &a, &d1);
	h_push_ok(&r, &a, &d1, h_batch(&d1, h_now_ms(), 0, 5), 5, -1);

	/* d2's own view of the list (device tokens may list) */
	h_http(&p, &r, "GET", h_lp(&a, "/devices"), d2.token, NULL);
	h_expect_json(&p, 200);
	e1 = dev_find(json_object_get(p.json, "devices"), d1.id);
	e2 = dev_find(json_object_get(p.json, "devices"), d2.id);
	cr_assert(e1 && e2, "%s", p.body);
	cr_assert_eq(h_jint(e1, "acked_seq"), 0);
	cr_assert_eq(h_jint(e1, "lag"), 5, "lag = head - acked_seq: %s", p.body);
	cr_assert_eq(h_jint(e2, "lag"), 5, "%s", p.body);
	cr_assert(h_jstr(e1, "last_seen"), "d1 pushed but has no last_seen: %s", p.body);
	cr_assert(json_is_false(json_object_get(e1, "revoked")));
	h_resp_free(&p);
	h_http_problem(&r, "GET", h_lp(&a, "/devices"), other.token, NULL, 403, "wrong-library");

	h_http(&p, &r, "POST", h_lp(&a, "/ack"), d2.token, "{\"seq\":3}");
	h_expect_json(&p, 200);
	cr_assert_eq(h_jint(p.json, "acked_seq"), 3, "%s", p.body);
	h_resp_free(&p);
	list = dev_list(&r, &a);
	e2 = dev_find(list, d2.id);
	cr_assert_eq(h_jint(e2, "acked_seq"), 3);
	cr_assert_eq(h_jint(e2, "lag"), 2);
	cr_assert(h_jstr(e2, "last_seen"), "d2 acked but has no last_seen");
	cr_assert_eq(h_jint(dev_find(list, d1.id), "lag"), 5, "d1's lag moved with d2's ack");
	json_decref(list);

	h_http(&p, &r, "POST", h_lp(&a, "/ack"), d2.token, "{\"seq\":5}");
	h_expect_json(&p, 200);
	cr_assert_eq(h_jint(p.json, "acked_seq"), 5);
	h_resp_free(&p);

	/* beyond head, malformed, or not a device: refused, and nothing moves */
	h_http_problem(&r, "POST", h_lp(&a, "/ack"), d1.token, "{\"seq\":6}", 422, "seq-ahead");
	for (i = 0; bad[i]; i++)
		h_http_problem(&r, "POST", h_lp(&a, "/ack"), d1.token, bad[i], 400, "bad-request");
	h_http_problem(&r, "POST", h_lp(&a, "/ack"), a.join, "{\"seq\":1}", 403, "forbidden");
	h_http_problem(&r, "POST", h_lp(&a, "/ack"), H_ADMIN, "{\"seq\":1}", 403, "forbidden");
	h_http_problem(&r, "POST", h_lp(&a, "/ack"), other.token, "{\"seq\":1}", 403, "wrong-library");
	list = dev_list(&r, &a);
	cr_assert_eq(h_jint(dev_find(list, d1.id), "acked_seq"), 0, "a refused ack moved acked_seq");
	cr_assert_eq(h_jint(dev_find(list, d1.id), "lag"), 5);
	cr_assert_eq(h_jint(dev_find(list, d2.id), "acked_seq"), 5);
	cr_assert_eq(h_jint(dev_find(list, d2.id), "lag"), 0);
	json_decref(list);

	/* more changes: lag grows again */
	h_push_ok(&r, &a, &d1, h_batch(&d1, h_now_ms(), 5, 2), 2, -1);
	list = dev_list(&r, &a);
	cr_assert_eq(h_jint(dev_find(list, d2.id), "lag"), 2);
	cr_assert_eq(h_jint(dev_find(list, d1.id), "lag"), 7);
	json_decref(list);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

Test(devices, revoke, .timeout = 120)
{
	struct relay r;
	struct lib a, b;
	struct dev d1, d2, d3, d4, other;
	struct resp p;
	json_t *list;
	char nobody[SR_UUID_LEN + 1];

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &a);
	h_library(&r, &b);
	h_device(&r, &a, &d1);
	h_device(&r, &a, &d2);
	h_device(&r, &a, &d3);
	h_device(&r, &a, &d4);
	h_device(&r, &b, &other);
	h_schema_ref(&r, &a, &d1);
	h_push_ok(&r, &a, &d1, h_batch(&d1, h_now_ms(), 0, 3), 3, -1);

	/* the admin revokes d1: its token fails on the very next request */
	h_http_json(&r, "DELETE", h_lp(&a, "/devices/%s", d1.id), H_ADMIN, NULL, 200);
	h_http_problem(&r, "GET", h_lp(&a, "/changes?since=0"), d1.token, NULL, 401, "unauthorized");
	h_http_problem(&r, "GET", h_lp(&a, ""), d1.token, NULL, 401, "unauthorized");
	h_http_problem(&r, "POST", h_lp(&a, "/changes"), d1.token, "{\"changes\":[]}", 401, "unauthorized");
	list = dev_list(&r, &a);
	cr_assert(json_is_true(json_object_get(dev_find(list, d1.id), "revoked")), "d1 not marked revoked");
	cr_assert(json_is_false(json_object_get(dev_find(list, d2.id), "revoked")), "d2 marked revoked");
	json_decref(list);

	/* its data stays: others still pull it, its records and digest remain */
	h_http(&p, &r, "GET", h_lp(&a, "/changes?since=0"), d2.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 3, "%s", p.body);
	h_resp_free(&p);
	h_http(&p, &r, "GET", h_lp(&a, "/records?model=entry&owner=%s", d1.id), d2.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "records")), 3, "%s", p.body);
	h_resp_free(&p);
	check_scope(&r, &a, &d2, "entry", d1.id, NULL);

	/* a device revokes itself */
	h_http_json(&r, "DELETE", h_lp(&a, "/devices/%s", d2.id), d2.token, NULL, 200);
	h_http_problem(&r, "GET", h_lp(&a, ""), d2.token, NULL, 401, "unauthorized");

	/* but not another device */
	h_http_problem(&r, "DELETE", h_lp(&a, "/devices/%s", d4.id), d3.token, NULL, 403, "forbidden");
	h_http_json(&r, "GET", h_lp(&a, ""), d4.token, NULL, 200);
	/* nor with a join token, nor from another library */
	h_http_problem(&r, "DELETE", h_lp(&a, "/devices/%s", d4.id), a.join, NULL, 403, "forbidden");
	h_http_problem(&r, "DELETE", h_lp(&a, "/devices/%s", d4.id), other.token, NULL, 403, "wrong-library");
	h_http_problem(&r, "DELETE", h_lp(&a, "/devices/%s", other.id), H_ADMIN, NULL, 404, "device-not-found");
	h_uuid(nobody);
	h_http_problem(&r, "DELETE", h_lp(&a, "/devices/%s", nobody), H_ADMIN, NULL, 404, "device-not-found");
	h_http_problem(&r, "DELETE", h_lp(&a, "/devices/not-a-uuid"), H_ADMIN, NULL, 400, "bad-request");

	list = dev_list(&r, &a);
	cr_assert_eq(json_array_size(list), 4);
	cr_assert(json_is_true(json_object_get(dev_find(list, d2.id), "revoked")));
	cr_assert(json_is_false(json_object_get(dev_find(list, d3.id), "revoked")));
	cr_assert(json_is_false(json_object_get(dev_find(list, d4.id), "revoked")));
	json_decref(list);
	/* the device in the other library was not touched by the refused revoke */
	h_http_json(&r, "GET", h_lp(&b, ""), other.token, NULL, 200);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- schema ---- */

Test(schema, put_get_extend_and_refuse, .timeout = 120)
{
	struct relay r;
	struct lib a;
	struct dev d;
	struct resp p;
	json_t *g, *want, *before;
	size_t i;
	const char *ref_reordered =
		"{\"models\":[{\"name\":\"content_identity\",\"kind\":\"shared\"},"
		"{\"kind\":\"device_owned\",\"name\":\"entry\",\"refs\":[{\"field\":\"parent_id\",\"model\":\"entry\"},"
		"{\"model\":\"content_identity\",\"field\":\"content_id\"}]},"
		"{\"name\":\"location\",\"kind\":\"device_owned\",\"refs\":[]}]}";
	const char *with_tag =
		"{\"models\":[{\"name\":\"location\",\"kind\":\"device_owned\"},"
		"{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":["
		"{\"field\":\"content_id\",\"model\":\"content_identity\"},{\"field\":\"parent_id\",\"model\":\"entry\"},"
		"{\"field\":\"tag_id\",\"model\":\"tag\"}]},"
		"{\"name\":\"content_identity\",\"kind\":\"shared\"},{\"name\":\"tag\",\"kind\":\"shared\"}]}";
	const struct {
		const char *body;
		long status;
		const char *code;
	} refused[] = {
		/* removes tag */
		{"{\"models\":[{\"name\":\"location\",\"kind\":\"device_owned\"},"
		 "{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":\"content_id\",\"model\":\"content_identity\"},"
		 "{\"field\":\"parent_id\",\"model\":\"entry\"}]},{\"name\":\"content_identity\",\"kind\":\"shared\"}]}",
		 409, "schema-conflict"},
		/* changes location's kind */
		{"{\"models\":[{\"name\":\"location\",\"kind\":\"shared\"},"
		 "{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":\"content_id\",\"model\":\"content_identity\"},"
		 "{\"field\":\"parent_id\",\"model\":\"entry\"},{\"field\":\"tag_id\",\"model\":\"tag\"}]},"
		 "{\"name\":\"content_identity\",\"kind\":\"shared\"},{\"name\":\"tag\",\"kind\":\"shared\"}]}",
		 409, "schema-conflict"},
		/* removes a ref */
		{"{\"models\":[{\"name\":\"location\",\"kind\":\"device_owned\"},"
		 "{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":\"content_id\",\"model\":\"content_identity\"},"
		 "{\"field\":\"parent_id\",\"model\":\"entry\"}]},"
		 "{\"name\":\"content_identity\",\"kind\":\"shared\"},{\"name\":\"tag\",\"kind\":\"shared\"}]}",
		 409, "schema-conflict"},
		/* a cycle of two (plus everything already declared) */
		{"{\"models\":[{\"name\":\"location\",\"kind\":\"device_owned\"},"
		 "{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":\"content_id\",\"model\":\"content_identity\"},"
		 "{\"field\":\"parent_id\",\"model\":\"entry\"},{\"field\":\"tag_id\",\"model\":\"tag\"}]},"
		 "{\"name\":\"content_identity\",\"kind\":\"shared\"},{\"name\":\"tag\",\"kind\":\"shared\"},"
		 "{\"name\":\"aa\",\"kind\":\"shared\",\"refs\":[{\"field\":\"b\",\"model\":\"bb\"}]},"
		 "{\"name\":\"bb\",\"kind\":\"shared\",\"refs\":[{\"field\":\"a\",\"model\":\"aa\"}]}]}",
		 422, "schema-cycle"},
		/* a cycle of three on its own */
		{"{\"models\":[{\"name\":\"x\",\"kind\":\"shared\",\"refs\":[{\"field\":\"y\",\"model\":\"y\"}]},"
		 "{\"name\":\"y\",\"kind\":\"shared\",\"refs\":[{\"field\":\"z\",\"model\":\"z\"}]},"
		 "{\"name\":\"z\",\"kind\":\"shared\",\"refs\":[{\"field\":\"x\",\"model\":\"x\"}]}]}",
		 422, "schema-cycle"},
		/* a ref to an undeclared model */
		{"{\"models\":[{\"name\":\"location\",\"kind\":\"device_owned\"},"
		 "{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":\"content_id\",\"model\":\"content_identity\"},"
		 "{\"field\":\"parent_id\",\"model\":\"entry\"},{\"field\":\"tag_id\",\"model\":\"tag\"},"
		 "{\"field\":\"album_id\",\"model\":\"album\"}]},"
		 "{\"name\":\"content_identity\",\"kind\":\"shared\"},{\"name\":\"tag\",\"kind\":\"shared\"}]}",
		 422, "unknown-model"},
		/* malformed */
		{"{\"models\":{}}", 400, "bad-request"},
		{"{}", 400, "bad-request"},
		{"{\"models\":[{\"kind\":\"shared\"}]}", 400, "bad-request"},
		{"{\"models\":[{\"name\":\"Entry\",\"kind\":\"shared\"}]}", 400, "bad-request"},
		{"{\"models\":[{\"name\":\"1entry\",\"kind\":\"shared\"}]}", 400, "bad-request"},
		{"{\"models\":[{\"name\":\"tag\",\"kind\":\"owned\"}]}", 400, "bad-request"},
		{"{\"models\":[{\"name\":\"tag\"}]}", 400, "bad-request"},
		{"{\"models\":[{\"name\":\"tag\",\"kind\":\"shared\"},{\"name\":\"tag\",\"kind\":\"shared\"}]}", 400,
		 "bad-request"},
		{"{\"models\":[{\"name\":\"tag\",\"kind\":\"shared\",\"refs\":{}}]}", 400, "bad-request"},
		{"{\"models\":[{\"name\":\"tag\",\"kind\":\"shared\",\"refs\":[{\"model\":\"tag\"}]}]}", 400,
		 "bad-request"},
		{"{\"models\":[\"tag\"]}", 400, "bad-request"},
		{"[]", 400, "bad-request"},
		{"not json", 400, "bad-request"},
	};

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &a);
	h_device(&r, &a, &d);

	/* before any PUT */
	g = get_json(&r, h_lp(&a, "/schema"), d.token);
	want = json_loads("{\"version\":0,\"models\":[],\"order\":[]}", 0, NULL);
	cr_assert(json_equal(g, want), "schema before any PUT: %s", json_dumps(g, JSON_COMPACT));
	json_decref(want);
	json_decref(g);

	h_http(&p, &r, "PUT", h_lp(&a, "/schema"), d.token,
	       "{\"models\":[{\"name\":\"location\",\"kind\":\"device_owned\"},"
	       "{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":["
	       "{\"field\":\"content_id\",\"model\":\"content_identity\"},{\"field\":\"parent_id\",\"model\":\"entry\"}]},"
	       "{\"name\":\"content_identity\",\"kind\":\"shared\"}]}");
	h_expect_json(&p, 200);
	cr_assert_eq(h_jint(p.json, "version"), 1, "%s", p.body);
	want = json_loads(REF_ORDER, 0, NULL);
	cr_assert(json_equal(json_object_get(p.json, "order"), want), "order: %s", p.body);
	json_decref(want);
	h_resp_free(&p);

	g = get_json(&r, h_lp(&a, "/schema"), H_ADMIN);
	cr_assert_eq(h_jint(g, "version"), 1);
	want = json_loads(REF_ORDER, 0, NULL);
	cr_assert(json_equal(json_object_get(g, "order"), want), "GET order: %s", json_dumps(g, JSON_COMPACT));
	json_decref(want);
	cr_assert_eq(json_array_size(json_object_get(g, "models")), 3);
	{
		int seen = 0;
		json_t *m;
		json_array_foreach(json_object_get(g, "models"), i, m) {
			const char *name = h_jstr(m, "name"), *kind = h_jstr(m, "kind");
			cr_assert(name && kind, "model without name or kind: %s", json_dumps(g, JSON_COMPACT));
			if (!strcmp(name, "entry")) {
				json_t *refs = json_object_get(m, "refs");
				cr_assert_str_eq(kind, "device_owned");
				cr_assert_eq(json_array_size(refs), 2, "entry refs: %s", json_dumps(g, JSON_COMPACT));
				seen |= 1;
			} else if (!strcmp(name, "location")) {
				cr_assert_str_eq(kind, "device_owned");
				seen |= 2;
			} else if (!strcmp(name, "content_identity")) {
				cr_assert_str_eq(kind, "shared");
				seen |= 4;
			}
		}
		cr_assert_eq(seen, 7, "GET lacks a model: %s", json_dumps(g, JSON_COMPACT));
	}
	json_decref(g);
	g = get_json(&r, h_lp(&a, ""), H_ADMIN);
	cr_assert_eq(h_jint(g, "schema_version"), 1);
	json_decref(g);

	/* the same schema, written differently: a no-op with the same version */
	h_http(&p, &r, "PUT", h_lp(&a, "/schema"), d.token, ref_reordered);
	h_expect_json(&p, 200);
	cr_assert_eq(h_jint(p.json, "version"), 1, "re-PUT of the same schema changed the version: %s", p.body);
	h_resp_free(&p);
	g = get_json(&r, h_lp(&a, "/schema"), d.token);
	cr_assert_eq(h_jint(g, "version"), 1);
	json_decref(g);

	/* adding a model and a ref bumps the version; the new order puts tag before entry */
	h_http(&p, &r, "PUT", h_lp(&a, "/schema"), d.token, with_tag);
	h_expect_json(&p, 200);
	cr_assert_eq(h_jint(p.json, "version"), 2, "%s", p.body);
	want = json_loads("[\"content_identity\",\"location\",\"tag\",\"entry\"]", 0, NULL);
	cr_assert(json_equal(json_object_get(p.json, "order"), want), "order with tag: %s", p.body);
	json_decref(want);
	h_resp_free(&p);
	/* the admin may PUT too; the same schema is still version 2 */
	h_http(&p, &r, "PUT", h_lp(&a, "/schema"), H_ADMIN, with_tag);
	h_expect_json(&p, 200);
	cr_assert_eq(h_jint(p.json, "version"), 2, "%s", p.body);
	h_resp_free(&p);

	before = get_json(&r, h_lp(&a, "/schema"), d.token);
	cr_assert_eq(h_jint(before, "version"), 2);
	cr_assert_eq(json_array_size(json_object_get(before, "models")), 4);
	for (i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		h_http_problem(&r, "PUT", h_lp(&a, "/schema"), d.token, refused[i].body, refused[i].status, refused[i].code);
		g = get_json(&r, h_lp(&a, "/schema"), d.token);
		cr_assert(json_equal(g, before), "refused PUT %zu changed the schema: %s", i, json_dumps(g, JSON_COMPACT));
		json_decref(g);
	}
	h_http_problem(&r, "PUT", h_lp(&a, "/schema"), a.join, with_tag, 403, "forbidden");
	g = get_json(&r, h_lp(&a, ""), H_ADMIN);
	cr_assert_eq(h_jint(g, "schema_version"), 2);
	json_decref(g);
	json_decref(before);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- records ---- */

static int cmp_str(const void *x, const void *y)
{
	return strcmp((const char *)x, (const char *)y);
}

Test(records, pages_filters_and_tombstones, .timeout = 120)
{
	struct relay r;
	struct lib a;
	struct dev d1, d2;
	struct resp p;
	struct h_chb c = {0};
	char ids1[25][SR_UUID_LEN + 1], ids2[5][SR_UUID_LEN + 1], cid[SR_UUID_LEN + 1], hlc[SR_HLC_LEN + 1];
	char data[64];
	json_t *all, *page, *rec;
	uint64_t t = h_now_ms() - 60000;
	size_t i;
	unsigned bk;
	int n, k;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &a, &d1, &d2);

	for (k = 0; k < 25; k++) {
		h_uuid(ids1[k]);
		h_hlc(hlc, t, (uint64_t)k, d1.id);
		snprintf(data, sizeof data, "{\"n\":%d,\"b\":\"x\",\"a\":[%d]}", k, k);
		h_chb_add(&c, hlc, "entry", ids1[k], "upsert", data);
	}
	h_uuid(cid);
	h_hlc(hlc, t, 100, d1.id);
	h_chb_add(&c, hlc, "content_identity", cid, "upsert", "{\"size\":10}");
	h_push_ok(&r, &a, &d1, h_chb_end(&c), 26, -1);
	for (k = 0; k < 5; k++) {
		h_uuid(ids2[k]);
		h_hlc(hlc, t, (uint64_t)k, d2.id);
		h_chb_add(&c, hlc, "entry", ids2[k], "upsert", "{\"from\":\"d2\"}");
	}
	h_push_ok(&r, &a, &d2, h_chb_end(&c), 5, -1);
	qsort(ids1, 25, sizeof ids1[0], cmp_str);

	/* one scope, every field */
	h_http(&p, &r, "GET", h_lp(&a, "/records?model=entry&owner=%s", d1.id), d2.token, NULL);
	h_expect_json(&p, 200);
	page = json_object_get(p.json, "records");
	cr_assert_eq(json_array_size(page), 25, "%s", p.body);
	cr_assert(json_is_null(json_object_get(p.json, "next_after")), "%s", p.body);
	cr_assert_eq(h_jint(p.json, "head"), 31);
	json_array_foreach(page, i, rec) {
		cr_assert_str_eq(h_jstr(rec, "model"), "entry");
		cr_assert_str_eq(h_jstr(rec, "record_id"), ids1[i], "record %zu out of order", i);
		cr_assert_str_eq(h_jstr(rec, "owner"), d1.id);
		cr_assert(json_is_false(json_object_get(rec, "deleted")));
		n = (int)json_integer_value(json_object_get(json_object_get(rec, "data"), "n"));
		h_hlc(hlc, t, (uint64_t)n, d1.id);
		cr_assert_str_eq(h_jstr(rec, "hlc"), hlc);
		snprintf(data, sizeof data, "{\"a\":[%d],\"b\":\"x\",\"n\":%d}", n, n);
		/* served as canonical text, byte for byte */
		cr_assert(strstr(p.body, data), "canonical data %s not in the body", data);
	}
	h_resp_free(&p);

	/* without owner: both devices' entries; paging with after/limit gives the same */
	all = records_all(&r, &a, &d1, "model=entry", 1000);
	cr_assert_eq(json_array_size(all), 30);
	page = records_all(&r, &a, &d1, "model=entry", 7);
	cr_assert(json_equal(all, page), "paged records differ from one page");
	json_decref(page);
	json_decref(all);
	h_http(&p, &r, "GET", h_lp(&a, "/records?model=entry&owner=%s&limit=10", d1.id), d1.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "records")), 10);
	cr_assert_str_eq(h_jstr(p.json, "next_after"), ids1[9]);
	h_resp_free(&p);
	h_http(&p, &r, "GET", h_lp(&a, "/records?model=entry&owner=%s&after=%s", d1.id, ids1[19]), d1.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "records")), 5);
	cr_assert_str_eq(h_jstr(json_array_get(json_object_get(p.json, "records"), 0), "record_id"), ids1[20]);
	h_resp_free(&p);
	/* an empty owner is no owner */
	all = records_all(&r, &a, &d1, "model=entry&owner=", 1000);
	cr_assert_eq(json_array_size(all), 30);
	json_decref(all);
	{
		char q[128];
		snprintf(q, sizeof q, "model=entry&owner=%s", d2.id);
		all = records_all(&r, &a, &d1, q, 2);
		cr_assert_eq(json_array_size(all), 5);
		json_array_foreach(all, i, rec)
			cr_assert_str_eq(h_jstr(rec, "owner"), d2.id);
		json_decref(all);
	}

	/* bucket filter */
	bk = sr_bucket(ids1[3]);
	h_http(&p, &r, "GET", h_lp(&a, "/records?model=entry&owner=%s&bucket=%u", d1.id, bk), d1.token, NULL);
	h_expect_json(&p, 200);
	n = 0;
	for (k = 0; k < 25; k++)
		n += sr_bucket(ids1[k]) == bk;
	cr_assert_eq(json_array_size(json_object_get(p.json, "records")), (size_t)n, "bucket %u: %s", bk, p.body);
	json_array_foreach(json_object_get(p.json, "records"), i, rec)
		cr_assert_eq(sr_bucket(h_jstr(rec, "record_id")), bk, "record outside bucket %u", bk);
	h_resp_free(&p);
	h_http_problem(&r, "GET", h_lp(&a, "/records?model=entry&bucket=%u", bk), d1.token, NULL, 400, "bad-request");
	h_http(&p, &r, "GET", h_lp(&a, "/records?model=content_identity&bucket=%u", sr_bucket(cid)), d1.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "records")), 1, "%s", p.body);
	rec = json_array_get(json_object_get(p.json, "records"), 0);
	cr_assert_str_eq(h_jstr(rec, "record_id"), cid);
	cr_assert(json_is_null(json_object_get(rec, "owner")), "shared record has an owner: %s", p.body);
	h_resp_free(&p);
	h_http(&p, &r, "GET", h_lp(&a, "/records?model=content_identity&bucket=%u", (sr_bucket(cid) + 1) % 256),
	       d1.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "records")), 0, "%s", p.body);
	h_resp_free(&p);

	/* tombstones only with include_deleted=1 */
	h_hlc(hlc, t + 1000, 0, d1.id);
	h_chb_add(&c, hlc, "entry", ids1[0], "delete", NULL);
	h_hlc(hlc, t + 1000, 1, d1.id);
	h_chb_add(&c, hlc, "entry", ids1[24], "delete", NULL);
	h_push_ok(&r, &a, &d1, h_chb_end(&c), 2, -1);
	h_http(&p, &r, "GET", h_lp(&a, "/records?model=entry&owner=%s", d1.id), d2.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "records")), 23, "%s", p.body);
	cr_assert_str_eq(h_jstr(json_array_get(json_object_get(p.json, "records"), 0), "record_id"), ids1[1]);
	h_resp_free(&p);
	h_http(&p, &r, "GET", h_lp(&a, "/records?model=entry&owner=%s&include_deleted=1", d1.id), d2.token, NULL);
	h_expect_json(&p, 200);
	page = json_object_get(p.json, "records");
	cr_assert_eq(json_array_size(page), 25, "%s", p.body);
	rec = json_array_get(page, 0);
	cr_assert_str_eq(h_jstr(rec, "record_id"), ids1[0]);
	cr_assert(json_is_true(json_object_get(rec, "deleted")), "tombstone not marked deleted: %s", p.body);
	cr_assert(json_is_null(json_object_get(rec, "data")), "tombstone carries data: %s", p.body);
	h_hlc(hlc, t + 1000, 0, d1.id);
	cr_assert_str_eq(h_jstr(rec, "hlc"), hlc);
	cr_assert(json_is_true(json_object_get(json_array_get(page, 24), "deleted")));
	cr_assert(json_is_false(json_object_get(json_array_get(page, 1), "deleted")));
	h_resp_free(&p);
	/* the watermark counts the deletes */
	h_hlc(hlc, t + 1000, 1, d1.id);
	check_scope(&r, &a, &d2, "entry", d1.id, hlc);

	/* refused queries */
	h_http_problem(&r, "GET", h_lp(&a, "/records?model=album"), d1.token, NULL, 422, "unknown-model");
	h_http_problem(&r, "GET", h_lp(&a, "/records"), d1.token, NULL, 400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&a, "/records?model=content_identity&owner=%s", d1.id), d1.token, NULL,
		       400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&a, "/records?model=entry&owner=nobody"), d1.token, NULL, 400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&a, "/records?model=entry&after=zzz"), d1.token, NULL, 400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&a, "/records?model=entry&owner=%s&bucket=256", d1.id), d1.token, NULL,
		       400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&a, "/records?model=entry&limit=0"), d1.token, NULL, 400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&a, "/records?model=entry"), H_ADMIN, NULL, 403, "forbidden");
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- digests ---- */

Test(digest, scopes_buckets_and_recomputation, .timeout = 120)
{
	struct relay r;
	struct lib a;
	struct dev d1, d2;
	struct resp p;
	struct h_chb c = {0};
	char e1[40][SR_UUID_LEN + 1], e2[10][SR_UUID_LEN + 1], loc[SR_UUID_LEN + 1], ci[6][SR_UUID_LEN + 1];
	char hlc[SR_HLC_LEN + 1], wm_e1[SR_HLC_LEN + 1], wm_ci[SR_HLC_LEN + 1], data[96], q[128];
	uint64_t t = h_now_ms() - 120000;
	json_t *scopes, *s;
	size_t i;
	int k;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &a, &d1, &d2);

	/* an empty library has no scopes */
	h_http(&p, &r, "GET", h_lp(&a, "/digest"), d1.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "scopes")), 0, "%s", p.body);
	cr_assert_eq(h_jint(p.json, "head"), 0);
	h_resp_free(&p);

	for (k = 0; k < 40; k++) {
		h_uuid(e1[k]);
		h_hlc(hlc, t + (uint64_t)k, 0, d1.id);
		snprintf(data, sizeof data, "{\"name\":\"f\\u00e9 %d\",\"size\":%d,\"x\":1.25}", k, k * 1000);
		h_chb_add(&c, hlc, "entry", e1[k], "upsert", data);
	}
	h_uuid(loc);
	h_hlc(hlc, t, 50, d1.id);
	h_chb_add(&c, hlc, "location", loc, "upsert", "{\"path\":\"/home\"}");
	for (k = 0; k < 3; k++) {
		h_uuid(ci[k]);
		h_hlc(hlc, t + 500, (uint64_t)k, d1.id);
		h_chb_add(&c, hlc, "content_identity", ci[k], "upsert", "{\"kind\":\"image\"}");
	}
	h_push_ok(&r, &a, &d1, h_chb_end(&c), 44, -1);
	for (k = 0; k < 10; k++) {
		h_uuid(e2[k]);
		h_hlc(hlc, t + 10, (uint64_t)k, d2.id);
		h_chb_add(&c, hlc, "entry", e2[k], "upsert", "{\"d\":2}");
	}
	for (k = 3; k < 6; k++) {
		h_uuid(ci[k]);
		h_hlc(hlc, t + 600, (uint64_t)k, d2.id);
		h_chb_add(&c, hlc, "content_identity", ci[k], "upsert", "{\"kind\":\"video\"}");
	}
	h_push_ok(&r, &a, &d2, h_chb_end(&c), 13, -1);
	h_hlc(wm_e1, t + 39, 0, d1.id);
	h_hlc(wm_ci, t + 600, 5, d2.id);

	/* every scope of the library, in one answer */
	h_http(&p, &r, "GET", h_lp(&a, "/digest"), d2.token, NULL);
	h_expect_json(&p, 200);
	scopes = json_object_get(p.json, "scopes");
	cr_assert_eq(json_array_size(scopes), 4, "%s", p.body);
	cr_assert_eq(h_jint(p.json, "head"), 57);
	{
		int seen = 0;
		json_array_foreach(scopes, i, s) {
			const char *m = h_jstr(s, "model"), *o = h_jstr(s, "owner");
			cr_assert(json_is_integer(json_object_get(s, "count")) && h_jstr(s, "hash") &&
				  strlen(h_jstr(s, "hash")) == 16 && h_jstr(s, "watermark"), "scope shape: %s", p.body);
			if (!strcmp(m, "entry") && o && !strcmp(o, d1.id))
				{ seen |= 1; cr_assert_eq(h_jint(s, "count"), 40); }
			else if (!strcmp(m, "entry") && o && !strcmp(o, d2.id))
				{ seen |= 2; cr_assert_eq(h_jint(s, "count"), 10); }
			else if (!strcmp(m, "location") && o && !strcmp(o, d1.id))
				{ seen |= 4; cr_assert_eq(h_jint(s, "count"), 1); }
			else if (!strcmp(m, "content_identity") && json_is_null(json_object_get(s, "owner")))
				{ seen |= 8; cr_assert_eq(h_jint(s, "count"), 6); }
		}
		cr_assert_eq(seen, 15, "scopes missing: %s", p.body);
	}
	h_resp_free(&p);
	h_http(&p, &r, "GET", h_lp(&a, "/digest?model=entry"), d2.token, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(json_array_size(json_object_get(p.json, "scopes")), 2, "%s", p.body);
	json_array_foreach(json_object_get(p.json, "scopes"), i, s)
		cr_assert_str_eq(h_jstr(s, "model"), "entry");
	h_resp_free(&p);

	check_scope(&r, &a, &d2, "entry", d1.id, wm_e1);
	check_scope(&r, &a, &d1, "entry", d2.id, NULL);
	check_scope(&r, &a, &d1, "location", d1.id, NULL);
	check_scope(&r, &a, &d1, "content_identity", NULL, wm_ci);

	/* updates (newer HLCs) and deletes: the digest still equals the recomputation */
	for (k = 0; k < 10; k++) {
		h_hlc(hlc, t + 5000, (uint64_t)k, d1.id);
		snprintf(data, sizeof data, "{\"name\":\"renamed %d\",\"size\":%d}", k, k);
		h_chb_add(&c, hlc, "entry", e1[k], "upsert", data);
	}
	for (k = 10; k < 15; k++) {
		h_hlc(hlc, t + 6000, (uint64_t)k, d1.id);
		h_chb_add(&c, hlc, "entry", e1[k], "delete", NULL);
	}
	h_hlc(hlc, t + 7000, 0, d1.id);
	h_chb_add(&c, hlc, "content_identity", ci[4], "upsert", "{\"kind\":\"video\",\"checked\":true}");
	h_hlc(wm_ci, t + 7000, 1, d1.id);
	h_chb_add(&c, wm_ci, "content_identity", ci[0], "delete", NULL);
	h_push_ok(&r, &a, &d1, h_chb_end(&c), 17, -1);
	h_hlc(wm_e1, t + 6000, 14, d1.id);
	snprintf(q, sizeof q, "model=entry&owner=%s", d1.id);
	s = digest_scope(&r, &a, &d1, q);
	cr_assert_eq(h_jint(s, "count"), 35, "deletes did not lower the count");
	json_decref(s);
	check_scope(&r, &a, &d2, "entry", d1.id, wm_e1);
	check_scope(&r, &a, &d2, "content_identity", NULL, wm_ci);
	check_scope(&r, &a, &d2, "entry", d2.id, NULL);

	/* refused queries */
	h_http_problem(&r, "GET", h_lp(&a, "/digest?model=album"), d1.token, NULL, 422, "unknown-model");
	h_http_problem(&r, "GET", h_lp(&a, "/digest/buckets?model=album"), d1.token, NULL, 422, "unknown-model");
	h_http_problem(&r, "GET", h_lp(&a, "/digest/buckets?model=entry"), d1.token, NULL, 400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&a, "/digest/buckets"), d1.token, NULL, 400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&a, "/digest?model=content_identity&owner=%s", d1.id), d1.token, NULL,
		       400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&a, "/digest?model=entry&owner=bad"), d1.token, NULL, 400, "bad-request");
	h_http_problem(&r, "GET", h_lp(&a, "/digest"), H_ADMIN, NULL, 403, "forbidden");
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

/* ---- operations and routing ---- */

Test(ops, health_ready_metrics, .timeout = 120)
{
	struct relay r;
	struct lib a;
	struct dev d;
	struct resp p;
	const char *names[] = {"syncrelay_http_requests_total", "syncrelay_pushes_total",
			       "syncrelay_changes_accepted_total", "syncrelay_longpolls_held",
			       "syncrelay_db_pool_in_use", NULL};
	double pushes, accepted;
	int i;

	h_relay_start(&r, NULL, NULL);
	h_http_json(&r, "GET", "/healthz", NULL, NULL, 200);
	h_http_json(&r, "GET", "/readyz", NULL, NULL, 200);

	h_fixture(&r, &a, &d, NULL);
	h_http(&p, &r, "GET", "/metrics", NULL, NULL);
	cr_assert_eq(p.status, 200, "%s", p.body);
	cr_assert(!strncmp(p.ctype, "text/plain", 10), "metrics content type \"%s\"", p.ctype);
	for (i = 0; names[i]; i++)
		cr_assert(h_metric_line(p.body, names[i]), "metric %s missing:\n%s", names[i], p.body);
	h_resp_free(&p);

	pushes = h_metric(&r, "syncrelay_pushes_total");
	accepted = h_metric(&r, "syncrelay_changes_accepted_total");
	h_push_ok(&r, &a, &d, h_batch(&d, h_now_ms(), 0, 7), 7, -1);
	cr_assert_eq(h_metric(&r, "syncrelay_pushes_total"), pushes + 1);
	cr_assert_eq(h_metric(&r, "syncrelay_changes_accepted_total"), accepted + 7);
	cr_assert_eq(h_metric(&r, "syncrelay_longpolls_held"), 0);
	cr_assert_eq(h_metric(&r, "syncrelay_db_pool_in_use"), 0);
	h_http(&p, &r, "GET", "/metrics", NULL, NULL);
	cr_assert(strstr(p.body, "syncrelay_http_requests_total{route=\"push\",status=\"2xx\"} 1\n"),
		  "push request not counted:\n%s", p.body);
	h_resp_free(&p);
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}

Test(routing, unknown_path_wrong_method_bad_id, .timeout = 120)
{
	struct relay r;
	struct lib a;
	struct dev d;
	const char *notfound[] = {"/", "/v1", "/v2/libraries", "/v1/nope", "/healthz/x", NULL};
	int i;

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &a);
	h_device(&r, &a, &d);

	for (i = 0; notfound[i]; i++)
		h_http_problem(&r, "GET", notfound[i], d.token, NULL, 404, "not-found");
	h_http_problem(&r, "GET", h_lp(&a, "/nope"), d.token, NULL, 404, "not-found");
	h_http_problem(&r, "GET", h_lp(&a, "/devices/%s/extra", d.id), d.token, NULL, 404, "not-found");

	h_http_problem(&r, "DELETE", "/v1/libraries", H_ADMIN, NULL, 405, "method-not-allowed");
	h_http_problem(&r, "GET", "/v1/libraries", H_ADMIN, NULL, 405, "method-not-allowed");
	h_http_problem(&r, "POST", "/healthz", NULL, "{}", 405, "method-not-allowed");
	h_http_problem(&r, "PUT", h_lp(&a, "/changes"), d.token, "{}", 405, "method-not-allowed");
	h_http_problem(&r, "POST", h_lp(&a, "/records"), d.token, "{}", 405, "method-not-allowed");
	h_http_problem(&r, "DELETE", h_lp(&a, ""), H_ADMIN, NULL, 405, "method-not-allowed");
	h_http_problem(&r, "GET", h_lp(&a, "/devices/%s", d.id), d.token, NULL, 405, "method-not-allowed");
	/* the library survived all that */
	cr_assert_eq(h_lib_head(&r, &a), 0);

	h_http_problem(&r, "GET", "/v1/libraries/not-a-uuid", H_ADMIN, NULL, 400, "bad-request");
	{
		char upper[SR_UUID_LEN + 1], path[128];
		snprintf(upper, sizeof upper, "%s", a.id);
		for (i = 0; upper[i]; i++)
			if (upper[i] >= 'a' && upper[i] <= 'f')
				upper[i] = (char)(upper[i] - 'a' + 'A');
		snprintf(path, sizeof path, "/v1/libraries/%s", upper);
		h_http_problem(&r, "GET", path, H_ADMIN, NULL, 400, "bad-request");
		snprintf(path, sizeof path, "/v1/libraries/%.35s/changes", a.id);
		h_http_problem(&r, "GET", path, d.token, NULL, 400, "bad-request");
		snprintf(path, sizeof path, "/v1/libraries/%s-0/schema", a.id);
		h_http_problem(&r, "GET", path, d.token, NULL, 400, "bad-request");
	}
	cr_assert_eq(h_relay_stop(&r), 0, "relay exit status not 0; see %s", r.log);
}
