/* The push transaction: validation, duplicates, last-writer-wins, digests. See push.h. */
#define _GNU_SOURCE
#include "push.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "library.h"
#include "pagememo.h"

/* ---- a small string-keyed index (open addressing); values are array positions ---- */

struct kmap {
	const char **keys;
	int *vals;
	size_t cap;
};

static int kmap_init(struct kmap *m, size_t n)
{
	m->cap = 16;
	while (m->cap < 2 * n + 2)
		m->cap *= 2;
	m->keys = calloc(m->cap, sizeof *m->keys);
	m->vals = calloc(m->cap, sizeof *m->vals);
	return m->keys && m->vals ? 0 : -1;
}

static void kmap_free(struct kmap *m)
{
	free(m->keys);
	free(m->vals);
}

/* Returns the slot for key: m->keys[slot] is NULL when absent. Keys are compared as
 * NUL-separated pairs of length klen. */
static size_t kmap_slot(const struct kmap *m, const char *key, size_t klen)
{
	size_t i = (size_t)sr_fnv1a64(key, klen) & (m->cap - 1);

	while (m->keys[i] && memcmp(m->keys[i], key, klen))
		i = (i + 1) & (m->cap - 1);
	return i;
}

/* ---- PostgreSQL text-array literals ---- */

static void arr_add(sr_buf *b, const char *s)
{
	sr_buf_putc(b, b->len ? ',' : '{');
	if (!s) {
		sr_buf_puts(b, "NULL");
		return;
	}
	sr_buf_putc(b, '"');
	for (const char *run = s;; s++) {
		if (*s == '"' || *s == '\\' || !*s) {
			sr_buf_put(b, run, (size_t)(s - run));
			if (!*s)
				break;
			sr_buf_putc(b, '\\');
			sr_buf_putc(b, *s);
			run = s + 1;
		}
	}
	sr_buf_putc(b, '"');
}

static void arr_addf(sr_buf *b, long long v)
{
	char num[24];

	snprintf(num, sizeof num, "%lld", v);
	arr_add(b, num);
}

static const char *arr_end(sr_buf *b)
{
	sr_buf_puts(b, b->len ? "}" : "{}");
	return b->oom ? NULL : b->p;
}

/* 1 when every array of a statement was built; an array lost to memory would bind as NULL
 * and silently write nothing. */
static int arrays_ok(const char *const *params, int n, struct reply *out)
{
	int i;

	for (i = 0; i < n; i++)
		if (!params[i]) {
			reply_problem(out, 500, "internal", "out of memory building the batch");
			return 0;
		}
	return 1;
}

/* ---- binary text[] parameters ----
 * The wire form of a one-dimensional text array (array_recv): dimensions, a has-nulls flag,
 * the element type, the length and lower bound, then each element as its byte count and
 * bytes (-1: NULL). Sent so, the server takes each element as is, where a text literal had to
 * be unescaped character by character (the data of a change is JSON, full of quotes). */
#define TEXT_OID 25
#define TARR_HEAD 20

struct tarr {
	sr_buf b;
	int n, nulls;
};

static void be32_at(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void put_be32(sr_buf *b, uint32_t v)
{
	unsigned char x[4];

	be32_at(x, v);
	sr_buf_put(b, x, 4);
}

/* Room for the head, written by tarr_end once the count is known. */
static void tarr_head(struct tarr *a)
{
	static const char zero[TARR_HEAD];

	if (!a->b.len)
		sr_buf_put(&a->b, zero, TARR_HEAD);
}

static void tarr_add(struct tarr *a, const char *s)
{
	tarr_head(a);
	if (!s) {
		put_be32(&a->b, 0xffffffffu);
		a->nulls = 1;
	} else {
		size_t n = strlen(s);
		put_be32(&a->b, (uint32_t)n);
		sr_buf_put(&a->b, s, n);
	}
	a->n++;
}

/* The array's bytes (NULL when memory ran out) and their count in *len. */
static const char *tarr_end(struct tarr *a, int *len)
{
	const uint32_t head[5] = {a->n ? 1u : 0u, (uint32_t)a->nulls, TEXT_OID, (uint32_t)a->n, 1u};
	int i;

	tarr_head(a);
	if (a->b.oom)
		return NULL;
	for (i = 0; i < 5; i++)
		be32_at((unsigned char *)a->b.p + 4 * i, head[i]);
	/* an empty array has no dimension: only the first three words */
	*len = a->n ? (int)a->b.len : 12;
	return a->b.p;
}

static void tarr_free(struct tarr *a)
{
	sr_buf_free(&a->b);
	a->n = a->nulls = 0;
}

/* ---- batch state ---- */

struct rec {
	const char *model, *record_id;
	const struct sm_model *sm;
	char owner[SR_UUID_LEN + 1];
	int existed, init_deleted;
	const char *init_hlc, *init_data; /* borrowed from the records query */
	int deleted, changed;
	const char *hlc, *data; /* borrowed from the query or the batch */
};

struct scope {
	const char *model, *owner;
	long long count;
	uint64_t hash;
	const char *watermark;
};

struct bucket {
	int scope;
	unsigned bucket;
	long long count;
	uint64_t hash;
};

struct batch {
	sr_change *ch;
	int n;
	char *dup; /* 1 when change i is a duplicate */
	int ndup;
	struct rec *recs;
	int nrecs;
	struct kmap rec_ix;
	char *rec_keys;  /* "model\0record_id\0" per rec, RK bytes each */
	int *rec_of;     /* change -> rec */
	struct scope *scopes;
	int nscopes;
	struct bucket *buckets;
	int nbuckets;
};

#define RK (SR_MODEL_MAX + 1 + SR_UUID_LEN + 1)

static void batch_free(struct batch *b)
{
	int i;

	for (i = 0; i < b->n; i++)
		sr_change_clear(&b->ch[i]);
	free(b->ch);
	free(b->dup);
	free(b->recs);
	free(b->rec_keys);
	free(b->rec_of);
	free(b->scopes);
	free(b->buckets);
	kmap_free(&b->rec_ix);
}

static json_t *index_extra(int i)
{
	return json_pack("{s:i}", "index", i);
}

/* Parses and checks what needs no database: 400, 403 foreign-hlc, 422 clock-skew. */
static int batch_parse(struct batch *b, const json_t *body, const char *dev, struct reply *out)
{
	const json_t *arr = json_object_get(body, "changes");
	int64_t now = now_unix_ms();
	char err[256];
	int i;

	if (!json_is_array(arr)) {
		reply_problem(out, 400, "bad-request", "the body needs a \"changes\" array");
		return -1;
	}
	if ((int64_t)json_array_size(arr) > cfg.max_batch) {
		reply_problem(out, 413, "too-large", "a batch holds at most %lld changes, this one %zu",
			      (long long)cfg.max_batch, json_array_size(arr));
		return -1;
	}
	b->n = (int)json_array_size(arr);
	b->ch = calloc((size_t)b->n + 1, sizeof *b->ch);
	b->dup = calloc((size_t)b->n + 1, 1);
	b->rec_of = calloc((size_t)b->n + 1, sizeof *b->rec_of);
	if (!b->ch || !b->dup || !b->rec_of) {
		reply_problem(out, 500, "internal", "out of memory");
		return -1;
	}
	for (i = 0; i < b->n; i++) {
		sr_hlc h;

		if (sr_change_parse(&b->ch[i], json_array_get(arr, (size_t)i), err, sizeof err)) {
			reply_problem_x(out, 400, "bad-request", index_extra(i), "change %d: %s", i, err);
			return -1;
		}
		sr_hlc_parse(&h, b->ch[i].hlc, SR_HLC_LEN);
		if (strcmp(h.device, dev)) {
			reply_problem_x(out, 403, "foreign-hlc", index_extra(i),
					"change %d: its HLC names device %s, not the pushing device", i,
					h.device);
			return -1;
		}
		if (h.ms > (uint64_t)(now + cfg.max_skew_ms)) {
			json_t *x = json_pack("{s:i, s:I, s:I}", "index", i, "relay_time", (json_int_t)now,
					      "max_skew_ms", (json_int_t)cfg.max_skew_ms);
			reply_problem_x(out, 422, "clock-skew", x,
					"change %d: its HLC is %lld ms ahead of the relay clock (limit %lld)",
					i, (long long)(h.ms - (uint64_t)now), (long long)cfg.max_skew_ms);
			return -1;
		}
	}
	return 0;
}

static int same_content(const sr_change *c, const char *model, const char *rid, int op,
			const char *data)
{
	return !strcmp(c->model, model) && !strcmp(c->record_id, rid) && (int)c->op == op &&
	       ((!c->data && !data) || (c->data && data && !strcmp(c->data, data)));
}

static int cmp_hlc_ix(const void *a, const void *b, void *arg)
{
	const sr_change *ch = arg;
	int r = strcmp(ch[*(const int *)a].hlc, ch[*(const int *)b].hlc);

	return r ? r : *(const int *)a - *(const int *)b;
}

/* Marks duplicates inside the batch and against the log; 409 on a conflicting HLC. */
static int batch_dups(struct batch *b, PGconn *c, const char *lib, struct reply *out)
{
	struct tarr hl = {0};
	PGresult *res = NULL;
	int *ix = calloc((size_t)b->n + 1, sizeof *ix);
	int i, rc = -1;
	struct kmap m = {0};

	if (!ix || kmap_init(&m, (size_t)b->n)) {
		reply_problem(out, 500, "internal", "out of memory");
		goto cleanup;
	}
	for (i = 0; i < b->n; i++)
		ix[i] = i;
	qsort_r(ix, (size_t)b->n, sizeof *ix, cmp_hlc_ix, b->ch);
	for (i = 1; i < b->n; i++) {
		const sr_change *p = &b->ch[ix[i - 1]], *q = &b->ch[ix[i]];
		if (strcmp(p->hlc, q->hlc))
			continue;
		if (!same_content(p, q->model, q->record_id, (int)q->op, q->data)) {
			reply_problem_x(out, 409, "hlc-conflict", index_extra(ix[i]),
					"change %d repeats the HLC of change %d with other content", ix[i],
					ix[i - 1]);
			goto cleanup;
		}
		b->dup[ix[i]] = 1;
	}
	for (i = 0; i < b->n; i++) {
		size_t s = kmap_slot(&m, b->ch[i].hlc, SR_HLC_LEN);
		/* the first of equal HLCs stands for them all: the others are duplicates of it */
		if (!m.keys[s]) {
			m.keys[s] = b->ch[i].hlc;
			m.vals[s] = i;
			tarr_add(&hl, b->ch[i].hlc);
		}
	}
	{
		int len[2] = {0, 0}, fmt[2] = {0, 1};
		const char *params[2] = {lib, tarr_end(&hl, &len[1])};
		if (!arrays_ok(params, 2, out))
			goto cleanup;
		res = db_exec_f(c, ST_PUSH_DUPS, params, len, fmt);
	}
	if (!db_ok(res)) {
		db_problem(out, c, res);
		goto cleanup;
	}
	for (i = 0; i < PQntuples(res); i++) {
		const char *hlc = PQgetvalue(res, i, 0);
		size_t s = kmap_slot(&m, hlc, SR_HLC_LEN);
		int first = m.keys[s] ? m.vals[s] : -1;

		if (first < 0)
			continue;
		if (!same_content(&b->ch[first], PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
				  atoi(PQgetvalue(res, i, 3)),
				  PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4))) {
			reply_problem_x(out, 409, "hlc-conflict", index_extra(first),
					"change %d: HLC %s was accepted before with other content", first, hlc);
			goto cleanup;
		}
		b->dup[first] = 1; /* later equal HLCs were marked by the sort above */
	}
	for (i = 0; i < b->n; i++)
		b->ndup += b->dup[i];
	rc = 0;
cleanup:
	PQclear(res);
	tarr_free(&hl);
	kmap_free(&m);
	free(ix);
	return rc;
}

/* Marks the records the batch touches with their stored state. */
static void batch_mark_current(struct batch *b, const PGresult *res)
{
	int i;

	for (i = 0; i < PQntuples(res); i++) {
		char key[RK] = {0};
		const char *m = PQgetvalue(res, i, 0), *id = PQgetvalue(res, i, 1);
		size_t s;
		struct rec *r;

		memcpy(key, m, strlen(m) < SR_MODEL_MAX ? strlen(m) : SR_MODEL_MAX);
		memcpy(key + SR_MODEL_MAX + 1, id, strlen(id) < SR_UUID_LEN ? strlen(id) : SR_UUID_LEN);
		s = kmap_slot(&b->rec_ix, key, RK);
		if (!b->rec_ix.keys[s])
			continue;
		r = &b->recs[b->rec_ix.vals[s]];
		r->existed = 1;
		snprintf(r->owner, sizeof r->owner, "%s", PQgetvalue(res, i, 2));
		r->init_hlc = r->hlc = PQgetvalue(res, i, 3);
		r->init_deleted = r->deleted = PQgetvalue(res, i, 4)[0] == 't';
		r->init_data = r->data = PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5);
	}
}

/* Groups new changes by record and reads the records' current state, one query per model
 * in the batch. The results stay alive (the recs borrow from them): the caller clears
 * res[0..nres). */
static int batch_records(struct batch *b, PGconn *c, const char *lib, const struct sm_schema *sc,
			 PGresult **res, int *nres, struct reply *out)
{
	int i, k;

	b->recs = calloc((size_t)b->n + 1, sizeof *b->recs);
	b->rec_keys = calloc((size_t)b->n + 1, RK);
	if (!b->recs || !b->rec_keys || kmap_init(&b->rec_ix, (size_t)b->n)) {
		reply_problem(out, 500, "internal", "out of memory");
		return -1;
	}
	for (i = 0; i < b->n; i++) {
		sr_change *ch = &b->ch[i];
		char *key = b->rec_keys + (size_t)b->nrecs * RK;
		const struct sm_model *sm;
		size_t s;

		b->rec_of[i] = -1;
		if (b->dup[i])
			continue;
		sm = sm_find(sc, ch->model);
		if (!sm) {
			reply_problem_x(out, 422, "unknown-model", index_extra(i),
					"change %d: model \"%s\" is not in the library schema", i, ch->model);
			return -1;
		}
		memset(key, 0, RK);
		memcpy(key, ch->model, strlen(ch->model));
		memcpy(key + SR_MODEL_MAX + 1, ch->record_id, SR_UUID_LEN);
		s = kmap_slot(&b->rec_ix, key, RK);
		if (!b->rec_ix.keys[s]) {
			struct rec *r = &b->recs[b->nrecs];
			r->model = ch->model;
			r->record_id = ch->record_id;
			r->sm = sm;
			b->rec_ix.keys[s] = key;
			b->rec_ix.vals[s] = b->nrecs++;
		}
		b->rec_of[i] = b->rec_ix.vals[s];
	}
	/* schemas hold few models: one pass over the records per model */
	for (k = 0; k < sc->n; k++) {
		struct tarr ids = {0};
		const char *model = sc->models[k].name;

		for (i = 0; i < b->nrecs; i++)
			if (!strcmp(b->recs[i].model, model))
				tarr_add(&ids, b->recs[i].record_id);
		if (!ids.n)
			continue;
		{
			int len[3] = {0, 0, 0}, fmt[3] = {0, 0, 1};
			const char *params[3] = {lib, model, tarr_end(&ids, &len[2])};
			if (!arrays_ok(params, 3, out)) {
				tarr_free(&ids);
				return -1;
			}
			res[*nres] = db_exec_f(c, ST_PUSH_CURRENT, params, len, fmt);
		}
		tarr_free(&ids);
		if (!db_ok(res[(*nres)++])) {
			db_problem(out, c, res[*nres - 1]);
			return -1;
		}
		batch_mark_current(b, res[*nres - 1]);
	}
	return 0;
}

static int scope_of(struct batch *b, const char *model, const char *owner)
{
	int i;

	/* batches touch few scopes: a linear scan is cheaper than a map */
	for (i = b->nscopes - 1; i >= 0; i--)
		if (!strcmp(b->scopes[i].model, model) && !strcmp(b->scopes[i].owner, owner))
			return i;
	b->scopes[b->nscopes] = (struct scope){.model = model, .owner = owner};
	return b->nscopes++;
}

static void bucket_add(struct batch *b, int scope, const char *rid, uint64_t h, int dcount)
{
	unsigned bk = sr_bucket(rid);
	int i;

	for (i = b->nbuckets - 1; i >= 0; i--)
		if (b->buckets[i].scope == scope && b->buckets[i].bucket == bk)
			break;
	if (i < 0) {
		i = b->nbuckets++;
		b->buckets[i] = (struct bucket){.scope = scope, .bucket = bk};
	}
	b->buckets[i].count += dcount;
	b->buckets[i].hash ^= h;
	b->scopes[scope].count += dcount;
	b->scopes[scope].hash ^= h;
}

/* Last-writer-wins over the batch, ownership, and the digest deltas. */
static int batch_apply(struct batch *b, const char *dev, struct reply *out)
{
	int i;

	b->scopes = calloc((size_t)b->nrecs + 1, sizeof *b->scopes);
	b->buckets = calloc(2 * (size_t)b->nrecs + 1, sizeof *b->buckets);
	if (!b->scopes || !b->buckets) {
		reply_problem(out, 500, "internal", "out of memory");
		return -1;
	}
	for (i = 0; i < b->n; i++) {
		sr_change *ch = &b->ch[i];
		struct rec *r;
		int sc;

		if (b->rec_of[i] < 0)
			continue;
		r = &b->recs[b->rec_of[i]];
		if (!r->existed && !r->changed)
			snprintf(r->owner, sizeof r->owner, "%s", r->sm->device_owned ? dev : "");
		if (r->sm->device_owned && strcmp(r->owner, dev)) {
			reply_problem_x(out, 409, "not-owner", index_extra(i),
					"change %d: %s record %s belongs to device %s", i, ch->model,
					ch->record_id, r->owner);
			return -1;
		}
		sc = scope_of(b, r->model, r->owner);
		if (!b->scopes[sc].watermark || strcmp(ch->hlc, b->scopes[sc].watermark) > 0)
			b->scopes[sc].watermark = ch->hlc;
		if ((!r->existed && !r->changed) || strcmp(ch->hlc, r->hlc) > 0) {
			r->hlc = ch->hlc;
			r->deleted = ch->op == SR_OP_DELETE;
			r->data = ch->data;
			r->changed = 1;
		}
	}
	for (i = 0; i < b->nrecs; i++) {
		struct rec *r = &b->recs[i];
		int sc;

		if (!r->changed)
			continue;
		sc = scope_of(b, r->model, r->owner);
		if (r->existed && !r->init_deleted)
			bucket_add(b, sc, r->record_id,
				   sr_record_hash(r->model, r->record_id, r->init_hlc, r->init_data), -1);
		if (!r->deleted)
			bucket_add(b, sc, r->record_id,
				   sr_record_hash(r->model, r->record_id, r->hlc, r->data), +1);
	}
	return 0;
}

/* Empties a statement's parameter arrays for the next one: the text literals a[8] and the
 * binary t[5] of batch_write. */
static void arrays_reset(sr_buf a[8], struct tarr t[5])
{
	int i;

	for (i = 0; i < 8; i++)
		sr_buf_free(&a[i]);
	for (i = 0; i < 5; i++)
		tarr_free(&t[i]);
}

/* The writes: changes, records, digests, head. */
static int batch_write(struct batch *b, PGconn *c, const char *lib, const char *dev,
		       long long head, struct reply *out)
{
	sr_buf a[8] = {{0}};
	struct tarr t[5];
	char headtxt[24];
	PGresult *res = NULL;
	int i, k, rc = -1;

	memset(t, 0, sizeof t);
	snprintf(headtxt, sizeof headtxt, "%lld", head);
	for (i = 0; i < b->n; i++) {
		if (b->dup[i])
			continue;
		tarr_add(&t[0], b->ch[i].hlc);
		tarr_add(&t[1], b->ch[i].model);
		tarr_add(&t[2], b->ch[i].record_id);
		arr_addf(&a[0], b->ch[i].op);
		tarr_add(&t[3], b->ch[i].data);
	}
	{
		int len[8] = {0}, fmt[8] = {0, 0, 0, 1, 1, 1, 0, 1};
		const char *p[8] = {lib, headtxt, dev, tarr_end(&t[0], &len[3]), tarr_end(&t[1], &len[4]),
				    tarr_end(&t[2], &len[5]), arr_end(&a[0]), tarr_end(&t[3], &len[7])};
		if (!arrays_ok(p, 8, out))
			goto cleanup;
		res = db_exec_f(c, ST_PUSH_CHANGES, p, len, fmt);
	}
	if (!db_ok(res))
		goto fail;
	PQclear(res);
	arrays_reset(a, t);

	/* the records the batch creates, then those it changes */
	for (k = 0; k < 2; k++) {
		int len[8] = {0}, fmt[8] = {0, 1, 1, 1, 0, 1, 0, 1};
		const char *p[8];

		for (i = 0; i < b->nrecs; i++) {
			struct rec *r = &b->recs[i];
			if (!r->changed || r->existed != k)
				continue;
			tarr_add(&t[0], r->model);
			tarr_add(&t[1], r->record_id);
			tarr_add(&t[2], r->owner);
			arr_addf(&a[0], sr_bucket(r->record_id));
			tarr_add(&t[3], r->hlc);
			arr_add(&a[1], r->deleted ? "t" : "f");
			tarr_add(&t[4], r->deleted ? NULL : r->data);
		}
		if (!t[0].n)
			continue;
		p[0] = lib;
		p[1] = tarr_end(&t[0], &len[1]);
		p[2] = tarr_end(&t[1], &len[2]);
		p[3] = tarr_end(&t[2], &len[3]);
		p[4] = arr_end(&a[0]);
		p[5] = tarr_end(&t[3], &len[5]);
		p[6] = arr_end(&a[1]);
		p[7] = tarr_end(&t[4], &len[7]);
		if (!arrays_ok(p, 8, out))
			goto cleanup;
		res = db_exec_f(c, k ? ST_PUSH_RECORDS : ST_PUSH_RECORDS_NEW, p, len, fmt);
		if (!db_ok(res))
			goto fail;
		PQclear(res);
		res = NULL;
		arrays_reset(a, t);
	}

	for (i = 0; i < b->nscopes; i++) {
		arr_add(&a[0], b->scopes[i].model);
		arr_add(&a[1], b->scopes[i].owner);
		arr_addf(&a[2], b->scopes[i].count);
		arr_addf(&a[3], (long long)b->scopes[i].hash);
		arr_add(&a[4], b->scopes[i].watermark);
	}
	{
		const char *p[6] = {lib, arr_end(&a[0]), arr_end(&a[1]), arr_end(&a[2]), arr_end(&a[3]),
				    arr_end(&a[4])};
		if (!arrays_ok(p, 6, out))
			goto cleanup;
		res = db_exec(c, ST_PUSH_SCOPES, p);
	}
	if (!db_ok(res))
		goto fail;
	PQclear(res);
	arrays_reset(a, t);

	for (i = 0; i < b->nbuckets; i++) {
		arr_add(&a[0], b->scopes[b->buckets[i].scope].model);
		arr_add(&a[1], b->scopes[b->buckets[i].scope].owner);
		arr_addf(&a[2], b->buckets[i].bucket);
		arr_addf(&a[3], b->buckets[i].count);
		arr_addf(&a[4], (long long)b->buckets[i].hash);
	}
	{
		const char *p[6] = {lib, arr_end(&a[0]), arr_end(&a[1]), arr_end(&a[2]), arr_end(&a[3]),
				    arr_end(&a[4])};
		if (!arrays_ok(p, 6, out))
			goto cleanup;
		res = db_exec(c, ST_PUSH_BUCKETS, p);
	}
	if (!db_ok(res))
		goto fail;
	PQclear(res);
	res = NULL;
	rc = 0;
	goto cleanup;
fail:
	db_problem(out, c, res);
cleanup:
	PQclear(res);
	arrays_reset(a, t);
	return rc;
}

/* 200 {accepted, duplicates, head, head_hlc, relay_time}. head_hlc names the change at head
 * when this batch wrote it (its last accepted change), so the pusher can check later that
 * the relay still holds it there; null when the batch added nothing. */
static void push_reply(const struct batch *b, int accepted, long long head, struct reply *out)
{
	const char *last = NULL;
	int i;

	for (i = b->n - 1; accepted > 0 && i >= 0 && !last; i--)
		if (!b->dup[i])
			last = b->ch[i].hlc;
	reply_json(out, 200, json_pack("{s:i, s:i, s:I, s:o, s:I}", "accepted", accepted, "duplicates",
				       b->ndup, "head", (json_int_t)head, "head_hlc",
				       last ? json_string(last) : json_null(), "relay_time",
				       (json_int_t)now_unix_ms()));
}

void push_run(const char *lib, const char *dev, const json_t *body, struct reply *out)
{
	struct batch b = {0};
	struct library l = {0};
	PGconn *c = NULL;
	PGresult **cur = NULL, *res = NULL;
	int ncur = 0, i;
	long long head = 0;
	int accepted;

	if (batch_parse(&b, body, dev, out))
		goto cleanup;
	c = db_acquire();
	if (!c) {
		db_problem(out, NULL, NULL);
		goto cleanup;
	}
	if (db_begin(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	if (library_load(c, lib, LIBRARY_LOCK | LIBRARY_SCHEMA, &l, out))
		goto cleanup;
	head = l.head;
	if (b.n == 0 || batch_dups(&b, c, lib, out))
		goto reply_or_cleanup;
	accepted = b.n - b.ndup;
	if (accepted > 0) {
		cur = calloc((size_t)l.schema.n + 1, sizeof *cur);
		if (!cur) {
			reply_problem(out, 500, "internal", "out of memory");
			goto cleanup;
		}
		if (batch_records(&b, c, lib, &l.schema, cur, &ncur, out) || batch_apply(&b, dev, out) ||
		    batch_write(&b, c, lib, dev, head, out))
			goto cleanup;
		head += accepted;
		{
			char h[24];
			const char *p[2] = {lib, h};
			snprintf(h, sizeof h, "%lld", head);
			res = db_exec(c, ST_PUSH_HEAD, p);
			if (db_ok(res)) {
				PQclear(res);
				res = db_exec(c, ST_PUSH_NOTIFY, p);
			}
		}
		if (!db_ok(res)) {
			db_problem(out, c, res);
			goto cleanup;
		}
	}
	if (db_commit(c)) {
		db_problem(out, c, NULL);
		goto cleanup;
	}
	if (accepted > 0)
		pagememo_forget(lib);
	metrics_push(accepted, b.ndup);
	push_reply(&b, accepted, head, out);
	goto cleanup;
reply_or_cleanup:
	if (b.n == 0 && !out->body)
		push_reply(&b, 0, head, out);
cleanup:
	for (i = 0; i < ncur; i++)
		PQclear(cur[i]);
	free(cur);
	PQclear(res);
	db_release(c); /* rolls back anything left open */
	library_free(&l);
	batch_free(&b);
}
