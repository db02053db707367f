/*
 * Verify and repair. The replica's digests are computed from its rows themselves, so damage
 * done behind the library's back shows; scopes are compared with the relay's, and with
 * repair only the mismatched buckets' records are fetched and healed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct dscope {
	char model[SR_MODEL_MAX + 1];
	char owner[SR_UUID_LEN + 1];
	long long count;
	uint64_t hash;
	char watermark[SR_HLC_LEN + 1];
	long long bcount[SR_BUCKETS];
	uint64_t bhash[SR_BUCKETS];
	/* relay side */
	int on_relay;
	long long rcount;
	uint64_t rhash;
	char rwatermark[SR_HLC_LEN + 1];
	int relay_behind; /* the replica holds what the relay lacks or holds older */
};

struct dset {
	struct dscope *s;
	int n, cap;
};

static struct dscope *scope_get(struct dset *d, const char *model, const char *owner)
{
	int i;

	for (i = 0; i < d->n; i++)
		if (!strcmp(d->s[i].model, model) && !strcmp(d->s[i].owner, owner))
			return &d->s[i];
	if (d->n == d->cap) {
		int cap = d->cap ? 2 * d->cap : 8;
		struct dscope *p = realloc(d->s, (size_t)cap * sizeof *p);
		if (!p)
			return NULL;
		d->s = p;
		d->cap = cap;
	}
	memset(&d->s[d->n], 0, sizeof d->s[d->n]);
	snprintf(d->s[d->n].model, sizeof d->s[d->n].model, "%s", model);
	snprintf(d->s[d->n].owner, sizeof d->s[d->n].owner, "%s", owner);
	return &d->s[d->n++];
}

static int add_local(void *arg, const struct srec *r)
{
	struct dscope *s = scope_get(arg, r->model, r->owner);
	unsigned b;
	uint64_t h;

	if (!s)
		return -1;
	if (strcmp(r->hlc, s->watermark) > 0)
		memcpy(s->watermark, r->hlc, sizeof s->watermark);
	if (r->deleted)
		return 0;
	h = sr_record_hash(r->model, r->record_id, r->hlc, r->data);
	b = sr_bucket(r->record_id);
	s->count++;
	s->hash ^= h;
	s->bcount[b]++;
	s->bhash[b] ^= h;
	return 0;
}

static int local_digests(sr_client *c, struct dset *d)
{
	d->n = 0;
	if (store_records_each(c->st, NULL, NULL, -1, add_local, d))
		return cerr(c, SR_ESTORE, "could not read the store: %s", store_errmsg(c->st));
	return 0;
}

static int relay_digests(sr_client *c, struct dset *d, long long *head)
{
	char path[128];
	json_t *j = NULL, *scopes;
	size_t i;
	int rc;

	snprintf(path, sizeof path, "/v1/libraries/%s/digest", c->library);
	if ((rc = relay_call(c, "GET", path, NULL, 60, &j)))
		return rc;
	scopes = json_object_get(j, "scopes");
	*head = json_integer_value(json_object_get(j, "head"));
	for (i = 0; i < json_array_size(scopes); i++) {
		json_t *s = json_array_get(scopes, i);
		const char *owner = json_string_value(json_object_get(s, "owner"));
		const char *wm = json_string_value(json_object_get(s, "watermark"));
		struct dscope *ds = scope_get(d, json_string_value(json_object_get(s, "model")), owner ? owner : "");

		if (!ds) {
			json_decref(j);
			return cerr(c, SR_ENOMEM, "out of memory");
		}
		ds->on_relay = 1;
		ds->rcount = json_integer_value(json_object_get(s, "count"));
		sr_hash_parse(&ds->rhash, json_string_value(json_object_get(s, "hash")));
		snprintf(ds->rwatermark, sizeof ds->rwatermark, "%s", wm ? wm : "");
	}
	json_decref(j);
	return 0;
}

static int scope_matches(const struct dscope *s)
{
	return s->count == s->rcount && s->hash == s->rhash;
}

struct repair {
	long fetched, replaced, removed, kept, repushed;
};

struct idlist {
	char (*ids)[SR_UUID_LEN + 1];
	size_t n, cap;
};

static int idlist_add(struct idlist *l, const char *id)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		void *p = realloc(l->ids, cap * sizeof *l->ids);
		if (!p)
			return -1;
		l->ids = p;
		l->cap = cap;
	}
	memcpy(l->ids[l->n++], id, SR_UUID_LEN + 1);
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

struct reclist {
	struct srec *r;
	size_t n, cap;
};

/* A new zeroed slot at the end of l, or NULL out of memory. */
static struct srec *reclist_add(struct reclist *l)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		void *p = realloc(l->r, cap * sizeof *l->r);
		if (!p)
			return NULL;
		l->r = p;
		l->cap = cap;
	}
	memset(&l->r[l->n], 0, sizeof l->r[l->n]);
	return &l->r[l->n++];
}

static void reclist_free(struct reclist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		srec_clear(&l->r[i]);
	free(l->r);
}

struct scope_walk {
	const struct idlist *relay; /* sorted */
	const char *mismatched;     /* [SR_BUCKETS] */
	struct reclist absent;      /* local records of those buckets the relay does not list */
};

static int collect_absent(void *arg, const struct srec *r)
{
	struct scope_walk *w = arg;
	struct srec *copy;

	if (!w->mismatched[sr_bucket(r->record_id)] ||
	    (w->relay->n && bsearch(r->record_id, w->relay->ids, w->relay->n, sizeof *w->relay->ids, cmp_id)))
		return 0;
	if (!(copy = reclist_add(&w->absent)))
		return -1;
	*copy = *r;
	copy->data = r->data ? strdup(r->data) : NULL;
	return r->data && !copy->data ? -1 : 0;
}

/* Fetches one bucket's records from the relay into got; no store transaction is open, so
 * local writers never wait on the network. */
static int fetch_bucket(sr_client *c, const struct dscope *s, int bucket, struct reclist *got)
{
	char path[512], after[SR_UUID_LEN + 1] = "";
	int rc = 0;
	size_t i;

	for (;;) {
		json_t *j = NULL, *recs;
		const char *next;

		snprintf(path, sizeof path, "/v1/libraries/%s/records?model=%s&owner=%s&bucket=%d&include_deleted=1&limit=1000&after=%s",
			 c->library, s->model, s->owner, bucket, after);
		if ((rc = relay_call(c, "GET", path, NULL, 120, &j)))
			break;
		recs = json_object_get(j, "records");
		for (i = 0; i < json_array_size(recs) && !rc; i++) {
			json_t *rj = json_array_get(recs, i);
			const json_t *d = json_object_get(rj, "data");
			const char *id = json_string_value(json_object_get(rj, "record_id"));
			const char *h = json_string_value(json_object_get(rj, "hlc"));
			struct srec *r;

			if (!id || !h || !sr_uuid_valid(id, strlen(id)) || sr_hlc_parse(NULL, h, strlen(h))) {
				rc = cerr(c, SR_ERELAY, "the relay sent a malformed record");
				break;
			}
			if (!(r = reclist_add(got))) {
				rc = cerr(c, SR_ENOMEM, "out of memory");
				break;
			}
			snprintf(r->model, sizeof r->model, "%s", s->model);
			memcpy(r->record_id, id, sizeof r->record_id);
			memcpy(r->owner, s->owner, sizeof r->owner);
			memcpy(r->hlc, h, sizeof r->hlc);
			r->deleted = json_is_true(json_object_get(rj, "deleted"));
			r->data = r->deleted || !json_is_object(d) ? NULL : sr_canonical(d);
		}
		next = json_string_value(json_object_get(j, "next_after"));
		snprintf(after, sizeof after, "%s", next ? next : "");
		json_decref(j);
		if (rc || !next)
			break;
	}
	return rc;
}

static int same_state(const struct srec *a, const struct srec *b)
{
	return !strcmp(a->hlc, b->hlc) && a->deleted == b->deleted &&
	       ((!a->data && !b->data) || (a->data && b->data && !strcmp(a->data, b->data)));
}

/* A local state the relay lacks or holds older. This device's own goes back in the outbox with
 * its own HLC (the relay counts it a duplicate if it had it after all); another device's is
 * kept, never reverted, and the scope reported relay_behind. */
static int keep_local(sr_client *c, const struct srec *cur, struct repair *rep, int *behind)
{
	if (!client_own_hlc(c, cur->hlc)) {
		rep->kept++;
		*behind = 1;
		return 0;
	}
	if (store_outbox_add(c->st, cur->hlc, cur->model, cur->record_id, cur->deleted, cur->data))
		return cerr(c, SR_ESTORE, "could not queue a record again: %s", store_errmsg(c->st));
	rep->repushed++;
	return 0;
}

/* Brings one relay record into the replica under the repair rules: a local record is never
 * replaced by an older version; at an equal HLC the relay's copy wins (the local row was
 * damaged); a local write still in the outbox is newer than anything the relay has. */
static int repair_one(sr_client *c, const struct srec *r, struct repair *rep, int *behind)
{
	struct srec cur;
	int found, rc = 0, cmp, refused;
	sr_hlc h;

	if (store_outbox_has(c->st, r->model, r->record_id))
		return 0;
	found = store_record_get(c->st, r->model, r->record_id, &cur);
	if (found < 0)
		return cerr(c, SR_ESTORE, "could not read the store: %s", store_errmsg(c->st));
	sr_hlc_parse(&h, r->hlc, SR_HLC_LEN);
	hlc_recv(&c->clk, hlc_wall_ms(), &h);
	cmp = found ? strcmp(r->hlc, cur.hlc) : 1;
	/* a local state the relay refused for good can never reach it: it stays in the rejected
	 * table, and the relay's version stands in the replica */
	if (found && cmp < 0 && (refused = store_rejected_has(c->st, cur.model, cur.hlc)) != 0) {
		if (refused < 0 || client_apply(c, r, 1) < 0)
			rc = cerr(c, SR_ESTORE, "could not repair: %s", store_errmsg(c->st));
		rep->replaced++;
	} else if (found && same_state(&cur, r)) {
		/* nothing to do */
	} else if (cmp > 0 || (cmp == 0 && found)) {
		if (client_apply(c, r, cmp == 0) < 0)
			rc = cerr(c, SR_ESTORE, "could not repair: %s", store_errmsg(c->st));
		rep->replaced++;
	} else {
		rc = keep_local(c, &cur, rep, behind);
	}
	srec_clear(&cur);
	return rc;
}

/* Compares a scope's buckets with the relay's, fetches only the mismatched ones, then in one
 * short transaction brings the replica in line: newer relay states are applied, newer local
 * ones kept (and re-pushed when this device wrote them), and a local record the relay does
 * not list is removed only under the relay's purge point (deleted and purged), else kept. */
static int repair_scope(sr_client *c, struct dscope *s, const char *purged_before, struct repair *rep)
{
	char path[256], mismatched[SR_BUCKETS] = {0};
	json_t *j = NULL, *buckets;
	long long rcount[SR_BUCKETS] = {0};
	uint64_t rhash[SR_BUCKETS] = {0};
	struct idlist ids = {0};
	struct reclist got = {0};
	struct scope_walk w = {.relay = &ids, .mismatched = mismatched};
	size_t i;
	int b, any = 0, rc;

	snprintf(path, sizeof path, "/v1/libraries/%s/digest/buckets?model=%s&owner=%s", c->library, s->model,
		 s->owner);
	if ((rc = relay_call(c, "GET", path, NULL, 60, &j)))
		return rc;
	buckets = json_object_get(j, "buckets");
	for (i = 0; i < json_array_size(buckets); i++) {
		json_t *bj = json_array_get(buckets, i);
		b = (int)json_integer_value(json_object_get(bj, "bucket"));
		if (b < 0 || b >= SR_BUCKETS)
			continue;
		rcount[b] = json_integer_value(json_object_get(bj, "count"));
		sr_hash_parse(&rhash[b], json_string_value(json_object_get(bj, "hash")));
	}
	json_decref(j);
	for (b = 0; b < SR_BUCKETS; b++)
		any |= mismatched[b] = rcount[b] != s->bcount[b] || rhash[b] != s->bhash[b];
	if (!any)
		return 0;
	for (b = 0; b < SR_BUCKETS && !rc; b++)
		if (mismatched[b])
			rc = fetch_bucket(c, s, b, &got);
	for (i = 0; !rc && i < got.n; i++)
		if (idlist_add(&ids, got.r[i].record_id))
			rc = cerr(c, SR_ENOMEM, "out of memory");
	if (rc)
		goto cleanup;
	rep->fetched += (long)got.n;
	if (ids.n)
		qsort(ids.ids, ids.n, sizeof *ids.ids, cmp_id);
	if (store_begin(c->st)) {
		rc = cerr(c, SR_ESTORE, "could not begin: %s", store_errmsg(c->st));
		goto cleanup;
	}
	client_load_clock(c);
	for (i = 0; !rc && i < got.n; i++)
		rc = repair_one(c, &got.r[i], rep, &s->relay_behind);
	/* one scan of the scope finds what the relay lacks in every mismatched bucket */
	if (!rc && store_records_each(c->st, s->model, s->owner, -1, collect_absent, &w))
		rc = cerr(c, SR_ESTORE, "could not read the store: %s", store_errmsg(c->st));
	for (i = 0; !rc && i < w.absent.n; i++) {
		const struct srec *r = &w.absent.r[i];

		if (store_outbox_has(c->st, r->model, r->record_id) || store_rejected_has(c->st, r->model, r->hlc))
			continue; /* not pushed yet, or refused for good and kept aside */
		if (purged_before && strcmp(r->hlc, purged_before) < 0) {
			if (store_record_remove(c->st, r->model, r->record_id) ||
			    store_pending_clear(c->st, r->model, r->record_id))
				rc = cerr(c, SR_ESTORE, "could not remove: %s", store_errmsg(c->st));
			rep->removed++;
		} else if (!r->deleted || client_own_hlc(c, r->hlc)) {
			rc = keep_local(c, r, rep, &s->relay_behind);
		}
	}
	if (!rc && (client_save_clock(c) || store_commit(c->st)))
		rc = cerr(c, SR_ESTORE, "could not commit: %s", store_errmsg(c->st));
	if (rc)
		store_rollback(c->st);
cleanup:
	reclist_free(&got);
	reclist_free(&w.absent);
	free(ids.ids);
	return rc;
}

/* The relay's purge point (GET library), kept in the store meta; NULL when none. */
static char *relay_purge_point(sr_client *c, int *rc)
{
	char path[128], *pb = NULL;
	json_t *j = NULL;

	snprintf(path, sizeof path, "/v1/libraries/%s", c->library);
	if ((*rc = relay_call(c, "GET", path, NULL, 60, &j)))
		return NULL;
	if (json_string_value(json_object_get(j, "purged_before")))
		pb = strdup(json_string_value(json_object_get(j, "purged_before")));
	json_decref(j);
	if (store_meta_set(c->st, "purged_before", pb))
		*rc = cerr(c, SR_ESTORE, "could not keep the purge point: %s", store_errmsg(c->st));
	return pb;
}

int sr_client_verify(sr_client *c, char **out, int repair)
{
	struct dset d = {0};
	struct repair rep = {0};
	json_t *j = NULL, *arr;
	long long head = 0;
	int i, rc, all = 1, tries, behind = 0;

	*out = NULL;
	if (!c->enrolled)
		return cerr(c, SR_ESTATE, "this store is not enrolled (run enroll first)");
	if (c->in_batch)
		return cerr(c, SR_ESTATE, "a write batch is open: commit it first");
	/* compare like with like: local writes pushed, relay changes pulled; a relay that moved on
	 * meanwhile is pulled again, and a replica still behind is reported, not repaired */
	if (repair && (rc = client_sync_once(c)))
		return rc;
	for (tries = 0;; tries++) {
		d.n = 0;
		if ((rc = local_digests(c, &d)) || (rc = relay_digests(c, &d, &head)))
			goto cleanup;
		behind = head > store_meta_int(c->st, "cursor", 0);
		if (!repair || !behind || tries == 3)
			break;
		if ((rc = client_sync_once(c)))
			goto cleanup;
	}
	if (repair && !behind) {
		struct dset d2 = {0};
		char *pb = NULL;
		int k, any = 0;

		for (i = 0; i < d.n; i++)
			any |= !scope_matches(&d.s[i]);
		if (any)
			pb = relay_purge_point(c, &rc);
		for (i = 0; i < d.n && !rc; i++)
			if (!scope_matches(&d.s[i]))
				rc = repair_scope(c, &d.s[i], pb, &rep);
		free(pb);
		/* what went back in the outbox is pushed now, so the report compares like with like */
		if (!rc && rep.repushed)
			rc = client_sync_once(c);
		if (!rc && !(rc = local_digests(c, &d2)))
			rc = relay_digests(c, &d2, &head);
		for (i = 0; i < d2.n; i++)
			for (k = 0; k < d.n; k++)
				if (!strcmp(d2.s[i].model, d.s[k].model) && !strcmp(d2.s[i].owner, d.s[k].owner))
					d2.s[i].relay_behind = d.s[k].relay_behind;
		free(d.s);
		d = d2;
		if (rc)
			goto cleanup;
	}
	arr = json_array();
	for (i = 0; i < d.n; i++) {
		struct dscope *s = &d.s[i];
		char lh[17], rh[17];
		int match = scope_matches(s);

		all &= match;
		sr_hash_hex(lh, s->hash);
		sr_hash_hex(rh, s->rhash);
		/* a local version newer than anything the relay accepted in the scope shows too */
		if (!match && s->watermark[0] && strcmp(s->watermark, s->rwatermark) > 0)
			s->relay_behind = 1;
		json_array_append_new(
			arr, json_pack("{s:s, s:o, s:{s:I, s:s, s:o}, s:{s:I, s:s, s:o}, s:b, s:b}", "model", s->model,
				       "owner", s->owner[0] ? json_string(s->owner) : json_null(), "local", "count",
				       (json_int_t)s->count, "hash", lh, "watermark",
				       s->watermark[0] ? json_string(s->watermark) : json_null(), "relay", "count",
				       (json_int_t)s->rcount, "hash", rh, "watermark",
				       s->rwatermark[0] ? json_string(s->rwatermark) : json_null(), "match", match,
				       "relay_behind", !match && s->relay_behind));
	}
	j = json_pack("{s:o, s:{s:I, s:I, s:I, s:I, s:I}}", "scopes", arr, "repaired", "fetched",
		      (json_int_t)rep.fetched, "replaced", (json_int_t)rep.replaced, "removed", (json_int_t)rep.removed,
		      "kept", (json_int_t)rep.kept, "repushed", (json_int_t)rep.repushed);
	*out = json_dumps(j, JSON_COMPACT);
	rc = !*out ? cerr(c, SR_ENOMEM, "out of memory") : all ? 0 : cerr(c, SR_EMISMATCH, "scopes differ from the relay");
cleanup:
	json_decref(j);
	free(d.s);
	return rc;
}
