/* Sync: apply with references, push from the outbox, pull and apply, backfill, watch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "jscan.h"

/* changes per push batch (the relay takes up to 10,000 by default and answers 413 to more,
 * whereupon the batch is halved); its cost is mostly per batch */
#define PAGE 5000
/* changes per pull page (the relay serves up to 10,000): a page is one local transaction,
 * and fewer round trips leave the time to SQLite */
#define PULL_PAGE 5000
/* records per backfill page: each model's first page is small, so a small library or an
 * interrupted backfill keeps its pages small, and each next page doubles, up to the relay's
 * 10,000 (a records page costs the relay a query and a transaction here: fewer is faster) */
#define BACKFILL_FIRST 1000
#define BACKFILL_MAX 10000

static void on_resolved(void *arg, const char *model, const char *record_id, const char *field,
			const char *target)
{
	sr_client *c = arg;

	if (c->link_fn)
		c->link_fn(c->link_arg, model, record_id, field, target, 1);
}

int client_apply(sr_client *c, const struct srec *r, int force)
{
	char owner[SR_UUID_LEN + 1], hlc[SR_HLC_LEN + 1];
	int found = store_record_head(c->st, r->model, r->record_id, owner, hlc);

	return found < 0 ? -1 : client_apply_known(c, r, force, found, hlc);
}

int client_apply_known(sr_client *c, const struct srec *r, int force, int found, const char *hlc)
{
	const struct sm_model *m;
	int k;

	if (found && !force && strcmp(r->hlc, hlc) <= 0)
		return 0; /* last writer wins: what we hold is as new or newer */
	/* a record new to the replica has no pending links of its own to replace */
	if (store_record_put(c->st, r) || (found && store_pending_clear(c->st, r->model, r->record_id)))
		return -1;
	m = sm_find(&c->schema, r->model);
	if (m && !r->deleted && m->nrefs && r->data) {
		size_t n = strlen(r->data);

		/* the data is canonical text: its reference fields are read in place */
		for (k = 0; k < m->nrefs; k++) {
			char *t = NULL;
			int live;

			if (js_get_str(r->data, n, m->refs[k].field, &t) != 1)
				continue;
			live = store_live(c->st, m->refs[k].model, t);
			/* the target is not here yet: keep the record, remember the link */
			if (live == 0) {
				if (store_pending_add(c->st, r->model, r->record_id, m->refs[k].field,
						      m->refs[k].model, t))
					live = -1;
				else if (c->link_fn)
					c->link_fn(c->link_arg, r->model, r->record_id, m->refs[k].field, t, 0);
			}
			free(t);
			if (live < 0)
				return -1;
		}
	}
	if (!r->deleted && store_pending_resolve(c->st, r->model, r->record_id, on_resolved, c))
		return -1;
	return 1;
}

/* ---- push ---- */

#define PUSH_MAX_BYTES (8 * 1024 * 1024) /* half the relay's default body limit */

/* A change the relay refuses for good (its problem names the change's index) would block
 * the outbox forever: it moves to the rejected table with the reason, where it stays until
 * the user retries or drops it, and the rest goes on. */
static int reject(sr_client *c, int64_t id, json_t *problem)
{
	int rc = store_begin(c->st) ||
		 store_outbox_reject(c->st, id, c->last_status, c->last_code,
				     json_string_value(json_object_get(problem, "detail"))) ||
		 store_commit(c->st);

	if (rc) {
		store_rollback(c->st);
		return cerr(c, SR_ESTORE, "could not set a refused change aside: %s", store_errmsg(c->st));
	}
	return 0;
}

/* After an accepted batch: the outbox rows go, and the change at head is remembered as this
 * device's last push, so a relay that later loses it (restored from a backup) is noticed by
 * the next pull even when the device's cursor lies below it. One transaction. */
static int pushed(sr_client *c, int64_t upto, const json_t *answer)
{
	const char *hh = json_string_value(json_object_get(answer, "head_hlc"));
	json_int_t head = json_integer_value(json_object_get(answer, "head"));

	if (store_begin(c->st) || store_outbox_remove_upto(c->st, upto) ||
	    (hh && client_own_hlc(c, hh) &&
	     (store_meta_set_int(c->st, "push_seq", head) || store_meta_set(c->st, "push_hlc", hh))) ||
	    store_commit(c->st)) {
		store_rollback(c->st);
		return cerr(c, SR_ESTORE, "could not clear the outbox: %s", store_errmsg(c->st));
	}
	return 0;
}

static int push_outbox(sr_client *c)
{
	sr_change *ch = calloc(PAGE, sizeof *ch);
	int64_t *ids = calloc(PAGE, sizeof *ids);
	char path[128];
	long pushed_n = 0, total = (long)store_outbox_count(c->st);
	int n, i, rc = 0, limit = PAGE, skew_cap = 0;

	c->skew_waiting = 0;
	if (!ch || !ids) {
		free(ch);
		free(ids);
		return cerr(c, SR_ENOMEM, "out of memory");
	}
	snprintf(path, sizeof path, "/v1/libraries/%s/changes", c->library);
	while (!rc) {
		sr_buf b = {0};
		json_t *answer = NULL;
		int sent = 0;

		if (store_outbox_peek(c->st, skew_cap && skew_cap < limit ? skew_cap : limit, ch, ids, &n)) {
			rc = cerr(c, SR_ESTORE, "could not read the outbox: %s", store_errmsg(c->st));
			break;
		}
		if (n == 0)
			break;
		sr_buf_puts(&b, "{\"changes\":[");
		for (i = 0; i < n; i++) {
			/* keep a batch well under the relay's body limit */
			if (!sent || b.len < PUSH_MAX_BYTES) {
				if (sent++)
					sr_buf_putc(&b, ',');
				sr_change_write(&b, &ch[i]);
			}
			sr_change_clear(&ch[i]);
		}
		sr_buf_puts(&b, "]}");
		if (b.oom) {
			sr_buf_free(&b);
			rc = cerr(c, SR_ENOMEM, "out of memory");
			break;
		}
		/* a crash from here until the outbox rows are gone re-pushes them: the relay counts
		 * the repeats as duplicates */
		rc = relay_call(c, "POST", path, b.p, 120, &answer);
		sr_buf_free(&b);
		if (!rc) {
			rc = pushed(c, ids[sent - 1], answer);
			pushed_n += sent;
			if (total > PAGE)
				progress(c, "push", pushed_n < total ? pushed_n : total, total);
			skew_cap = 0;
		} else if (rc == SR_ERELAY && c->last_status == 413 && sent > 1) {
			limit = sent / 2; /* a smaller relay limit: halve and try again */
			rc = 0;
		} else if (rc == SR_ERELAY && !strcmp(c->last_code, "clock-skew")) {
			/* a delay, never a loss: what precedes the change goes now, the change itself and
			 * everything after it stay queued until the relay's clock reaches their stamps */
			json_t *ix = json_object_get(answer, "index");
			json_int_t k = json_is_integer(ix) ? json_integer_value(ix) : 0;

			rc = 0;
			if (k > 0 && k < sent) {
				skew_cap = (int)k;
			} else {
				c->skew_waiting = (long)store_outbox_count(c->st);
				json_decref(answer);
				break;
			}
		} else if (rc == SR_ERELAY && c->last_status >= 400 && c->last_status < 500 &&
			   c->last_status != 401 && c->last_status != 429) {
			json_t *ix = json_object_get(answer, "index");
			json_int_t k = json_is_integer(ix) ? json_integer_value(ix) : (c->last_status == 413 ? 0 : -1);

			if (k >= 0 && k < sent)
				rc = reject(c, ids[k], answer);
		}
		json_decref(answer);
	}
	free(ch);
	free(ids);
	client_save_offset(c);
	return rc;
}

/* ---- backfill ---- */

/* One relay page, read in place: the span of its "records" or "changes" array and the
 * members sync needs (absent numbers read as 0, as before). */
struct page {
	sr_buf body;
	const char *items, *items_end;
	int64_t next, head, schema_version;
	int more;
	int has_next_hlc, has_next_after;
	char next_hlc[SR_HLC_LEN + 1];
	char next_after[SR_UUID_LEN + 1];
	long n; /* items applied */
};

static int page_read(sr_client *c, struct page *pg, const char *array)
{
	struct js_iter it;
	const char *v, *vend;
	char key[16];
	int r, bad = 0, have_time = 0;
	int64_t relay_time = 0, max_skew = 0;

	pg->items = pg->items_end = NULL;
	pg->next = pg->head = pg->schema_version = 0;
	pg->more = pg->has_next_hlc = pg->has_next_after = 0;
	pg->n = 0;
	if (js_open(&it, pg->body.p, pg->body.p + pg->body.len, '{'))
		return cerr(c, SR_ERELAY, "the relay sent a malformed page");
	while (!bad && (r = js_member(&it, key, sizeof key, &v, &vend)) == 1) {
		if (!strcmp(key, array)) {
			bad = *v != '[';
			pg->items = v;
			pg->items_end = vend;
		} else if (!strcmp(key, "next")) {
			bad = js_int(v, vend, &pg->next);
		} else if (!strcmp(key, "head")) {
			bad = js_int(v, vend, &pg->head);
		} else if (!strcmp(key, "schema_version")) {
			bad = js_int(v, vend, &pg->schema_version);
		} else if (!strcmp(key, "more")) {
			pg->more = js_bool(v, vend) == 1;
		} else if (!strcmp(key, "next_hlc")) {
			pg->has_next_hlc = !js_null(v, vend);
			bad = pg->has_next_hlc && js_strcpy(v, vend, pg->next_hlc, sizeof pg->next_hlc);
		} else if (!strcmp(key, "next_after")) {
			pg->has_next_after = !js_null(v, vend);
			bad = pg->has_next_after && js_strcpy(v, vend, pg->next_after, sizeof pg->next_after);
		} else if (!strcmp(key, "relay_time")) {
			have_time = !js_int(v, vend, &relay_time);
		} else if (!strcmp(key, "max_skew_ms") && js_int(v, vend, &max_skew)) {
			max_skew = 0;
		}
	}
	/* the walk validated every member; nothing but whitespace may follow the object */
	if (bad || r < 0 || !js_trailing(it.p + 1, it.end))
		return cerr(c, SR_ERELAY, "the relay sent a malformed page (member \"%s\")", key);
	relay_learn_time(c, have_time, relay_time, max_skew);
	return 0;
}

/* One record of a records page, validated as before; data kept as served when canonical. */
static int record_read(struct srec *r, const char *v, const char *vend)
{
	struct js_iter it;
	const char *mv, *mvend, *dv = NULL, *dvend = NULL;
	char key[16];
	int k, ok_model = 0, ok_id = 0, ok_hlc = 0, canon = 1, dcanon = 0;

	memset(r, 0, sizeof *r);
	if (js_open(&it, v, vend, '{'))
		return -1;
	/* the one walk over the record also tells whether its data is canonical */
	while ((k = js_member_c(&it, key, sizeof key, &mv, &mvend, &canon)) == 1) {
		if (!strcmp(key, "model"))
			ok_model = !js_strcpy(mv, mvend, r->model, sizeof r->model) && sr_model_name_valid(r->model);
		else if (!strcmp(key, "record_id"))
			ok_id = !js_strcpy(mv, mvend, r->record_id, sizeof r->record_id) &&
				sr_uuid_valid(r->record_id, strlen(r->record_id));
		else if (!strcmp(key, "owner") && js_strcpy(mv, mvend, r->owner, sizeof r->owner))
			r->owner[0] = '\0'; /* null for a shared record */
		else if (!strcmp(key, "hlc"))
			ok_hlc = !js_strcpy(mv, mvend, r->hlc, sizeof r->hlc) &&
				 !sr_hlc_parse(NULL, r->hlc, strlen(r->hlc));
		else if (!strcmp(key, "deleted"))
			r->deleted = js_bool(mv, mvend) == 1;
		else if (!strcmp(key, "data"))
			dv = mv, dvend = mvend, dcanon = canon;
		canon = 1;
	}
	if (k < 0 || !ok_model || !ok_id || !ok_hlc)
		return -1;
	if (!r->deleted && dv && *dv == '{' && !(r->data = js_canonical_copy(dv, (size_t)(dvend - dv), dcanon)))
		return -1;
	return 0;
}

/* One change of a changes page, checked as sr_change_parse checks one (sr_change_check). */
static int change_read(sr_change *out, const char *v, const char *vend, char *err, size_t errlen)
{
	struct js_iter it;
	const char *mv, *mvend, *dv = NULL, *dvend = NULL;
	char key[16], op[8] = "";
	int k, got_hlc = 0, got_model = 0, got_id = 0, got_op = 0, ok_seq = 1, canon = 1, dcanon = 0, data;

	memset(out, 0, sizeof *out);
	if (js_open(&it, v, vend, '{')) {
		snprintf(err, errlen, "change is not an object");
		return -1;
	}
	/* a member that is not a string, or too long for its field, counts as absent */
	while ((k = js_member_c(&it, key, sizeof key, &mv, &mvend, &canon)) == 1) {
		if (!strcmp(key, "hlc"))
			got_hlc = !js_strcpy(mv, mvend, out->hlc, sizeof out->hlc);
		else if (!strcmp(key, "model"))
			got_model = !js_strcpy(mv, mvend, out->model, sizeof out->model);
		else if (!strcmp(key, "record_id"))
			got_id = !js_strcpy(mv, mvend, out->record_id, sizeof out->record_id);
		else if (!strcmp(key, "op"))
			got_op = !js_strcpy(mv, mvend, op, sizeof op);
		else if (!strcmp(key, "seq")) {
			out->seq = 0;
			ok_seq = js_null(mv, mvend) || (!js_int(mv, mvend, &out->seq) && out->seq > 0);
		} else if (!strcmp(key, "data"))
			dv = mv, dvend = mvend, dcanon = canon;
		canon = 1;
	}
	if (k < 0) {
		snprintf(err, errlen, "change is not valid JSON");
		return -1;
	}
	data = !dv || js_null(dv, dvend) ? SR_DATA_NONE : *dv == '{' ? SR_DATA_OBJECT : SR_DATA_OTHER;
	if (sr_change_check(got_hlc ? out->hlc : NULL, got_model ? out->model : NULL, got_id ? out->record_id : NULL,
			    got_op ? op : NULL, ok_seq, data, err, errlen))
		return -1;
	out->op = strcmp(op, "upsert") ? SR_OP_DELETE : SR_OP_UPSERT;
	if (out->op == SR_OP_UPSERT && !(out->data = js_canonical_copy(dv, (size_t)(dvend - dv), dcanon))) {
		snprintf(err, errlen, "\"data\" is not a valid JSON object");
		return -1;
	}
	return 0;
}

/* Applies one records page in one transaction, saving where the backfill stands. */
static int backfill_page(sr_client *c, struct page *pg, const char *model, const char *next_after, int limit,
			 long *done)
{
	struct js_iter it;
	const char *v, *vend;
	int k;

	if (store_begin(c->st))
		return cerr(c, SR_ESTORE, "could not begin: %s", store_errmsg(c->st));
	client_load_clock(c);
	if (!pg->items || js_open(&it, pg->items, pg->items_end, '[')) {
		store_rollback(c->st);
		return cerr(c, SR_ERELAY, "the relay sent a page without records");
	}
	while ((k = js_element(&it, &v, &vend)) == 1) {
		struct srec r;
		sr_hlc h;

		if (record_read(&r, v, vend)) {
			srec_clear(&r);
			store_rollback(c->st);
			return cerr(c, SR_ERELAY, "the relay sent a malformed record");
		}
		sr_hlc_parse(&h, r.hlc, SR_HLC_LEN);
		hlc_recv(&c->clk, hlc_wall_ms(), &h);
		if (client_apply(c, &r, 0) < 0) {
			srec_clear(&r);
			store_rollback(c->st);
			return cerr(c, SR_ESTORE, "could not apply: %s", store_errmsg(c->st));
		}
		srec_clear(&r);
		pg->n++;
	}
	if (k < 0) {
		store_rollback(c->st);
		return cerr(c, SR_ERELAY, "the relay sent a malformed records page");
	}
	*done += pg->n;
	/* saved by name: a schema that grew meanwhile may order the models differently */
	if (store_meta_set(c->st, "bf_model", model) ||
	    store_meta_set(c->st, "bf_after", next_after ? next_after : "") ||
	    store_meta_set_int(c->st, "bf_limit", limit) || client_save_clock(c) ||
	    store_commit(c->st)) {
		store_rollback(c->st);
		return cerr(c, SR_ESTORE, "could not save backfill progress: %s", store_errmsg(c->st));
	}
	return 0;
}

static int backfill(sr_client *c)
{
	char path[512], *after = NULL;
	int *order = NULL, i, rc = 0, start;
	long long h0 = store_meta_int(c->st, "bf_head", -1);
	long done = 0;
	json_t *j = NULL;
	char err[256];

	if ((rc = client_fetch_schema(c)))
		return rc;
	if (h0 < 0) {
		snprintf(path, sizeof path, "/v1/libraries/%s", c->library);
		if ((rc = relay_call(c, "GET", path, NULL, 60, &j)))
			return rc;
		h0 = json_integer_value(json_object_get(j, "head"));
		if (store_begin(c->st) ||
		    store_meta_set(c->st, "bf_head_hlc", json_string_value(json_object_get(j, "head_hlc"))) ||
		    store_meta_set(c->st, "purged_before", json_string_value(json_object_get(j, "purged_before"))) ||
		    store_meta_set_int(c->st, "bf_head", h0) ||
		    store_meta_set(c->st, "bf_model", "") || store_meta_set(c->st, "bf_after", "") ||
		    store_meta_set(c->st, "state", "backfilling") || store_commit(c->st)) {
			store_rollback(c->st);
			json_decref(j);
			return cerr(c, SR_ESTORE, "could not start the backfill: %s", store_errmsg(c->st));
		}
		json_decref(j);
	}
	/* a schema that changed since this backfill began may order models differently: page
	 * them all again (applying is idempotent), keeping the head read at the start */
	if (store_meta_int(c->st, "bf_schema", -1) != c->schema_version &&
	    (store_meta_set(c->st, "bf_model", "") || store_meta_set(c->st, "bf_after", "") ||
	     store_meta_set_int(c->st, "bf_schema", c->schema_version)))
		return cerr(c, SR_ESTORE, "could not save backfill progress: %s", store_errmsg(c->st));
	order = calloc((size_t)c->schema.n + 1, sizeof *order);
	if (!order)
		return cerr(c, SR_ENOMEM, "out of memory");
	if (sm_order(&c->schema, order, err, sizeof err)) {
		free(order);
		return cerr(c, SR_ERELAY, "the library schema cannot be ordered: %s", err);
	}
	/* resume: the model being paged, or the one after the last finished ("name>" marks done) */
	start = 0;
	{
		char *bm = NULL;
		size_t len;

		store_meta_get(c->st, "bf_model", &bm);
		len = bm ? strlen(bm) : 0;
		for (i = 0; len && i < c->schema.n; i++) {
			const char *nm = c->schema.models[order[i]].name;
			if (!strncmp(bm, nm, strlen(nm)) && (bm[strlen(nm)] == '\0' || bm[strlen(nm)] == '>')) {
				start = bm[strlen(nm)] == '>' ? i + 1 : i;
				break;
			}
		}
		free(bm);
	}
	store_meta_get(c->st, "bf_after", &after);
	if (after && !*after) {
		free(after);
		after = NULL;
	}
	for (i = start; i < c->schema.n && !rc; i++) {
		const char *model = c->schema.models[order[i]].name;
		/* a resumed model goes on with the page size it had reached */
		int limit = i == start && after ? (int)store_meta_int(c->st, "bf_limit", BACKFILL_FIRST) : BACKFILL_FIRST;

		if (limit < BACKFILL_FIRST || limit > BACKFILL_MAX)
			limit = BACKFILL_FIRST;

		for (;;) {
			struct page pg = {0};
			const char *next;

			snprintf(path, sizeof path, "/v1/libraries/%s/records?model=%s&include_deleted=1&limit=%d&after=%s",
				 c->library, model, limit, after ? after : "");
			limit = limit * 2 < BACKFILL_MAX ? limit * 2 : BACKFILL_MAX;
			if ((rc = relay_call_raw(c, "GET", path, NULL, 120, &pg.body, NULL)) ||
			    (rc = page_read(c, &pg, "records"))) {
				sr_buf_free(&pg.body);
				break;
			}
			next = pg.has_next_after ? pg.next_after : NULL;
			if (next) {
				char np[512];

				/* a large backfill's next page travels while this one is applied (only at full
				 * size: a small one is not worth a second connection, nor a page read twice
				 * when it is interrupted) */
				snprintf(np, sizeof np, "/v1/libraries/%s/records?model=%s&include_deleted=1&limit=%d&after=%s",
					 c->library, model, limit, next);
				if (limit == BACKFILL_MAX)
					relay_prefetch(c, np, 120);
				rc = backfill_page(c, &pg, model, next, limit, &done);
			} else {
				/* this model is done; the next one starts from its beginning */
				char done_mark[SR_MODEL_MAX + 2];
				snprintf(done_mark, sizeof done_mark, "%s>", model);
				rc = backfill_page(c, &pg, done_mark, NULL, BACKFILL_FIRST, &done);
			}
			free(after);
			after = next ? strdup(next) : NULL;
			sr_buf_free(&pg.body);
			progress(c, "backfill", done, -1);
			if (rc || !after)
				break;
		}
	}
	free(after);
	free(order);
	if (rc)
		return rc;
	if (c->progress)
		fputc('\n', stderr);
	{
		char *hh = NULL;

		store_meta_get(c->st, "bf_head_hlc", &hh);
		/* the cursor starts at the head read before paging, naming the change there */
		rc = store_begin(c->st) || store_meta_set_int(c->st, "cursor", h0) ||
		     store_meta_set(c->st, "cursor_hlc", hh) || store_meta_set(c->st, "state", "syncing") ||
		     store_meta_set(c->st, "bf_head", NULL) || store_commit(c->st);
		free(hh);
	}
	if (rc) {
		store_rollback(c->st);
		return cerr(c, SR_ESTORE, "could not finish the backfill: %s", store_errmsg(c->st));
	}
	return 0;
}

/* ---- pull ---- */

/* Applies one changes page and moves the cursor, in one transaction. */
static int apply_page(sr_client *c, struct page *pg)
{
	long long push_seq;
	struct js_iter it;
	const char *v, *vend;
	int rc = 0, k = 0;

	pg->n = 0;
	if (!pg->items || js_open(&it, pg->items, pg->items_end, '['))
		return cerr(c, SR_ERELAY, "the relay sent a page without changes");
	if (store_begin(c->st))
		return cerr(c, SR_ESTORE, "could not begin: %s", store_errmsg(c->st));
	push_seq = store_meta_int(c->st, "push_seq", 0);
	client_load_clock(c);
	while (!rc && (k = js_element(&it, &v, &vend)) == 1) {
		sr_change ch;
		struct srec r = {0};
		const struct sm_model *m;
		char err[200];
		sr_hlc h;

		if (change_read(&ch, v, vend, err, sizeof err)) {
			sr_change_clear(&ch);
			rc = cerr(c, SR_ERELAY, "the relay sent a malformed change: %s", err);
			break;
		}
		m = sm_find(&c->schema, ch.model);
		if (!m) {
			/* a model we do not know yet: fetch the schema, once, outside this page */
			sr_change_clear(&ch);
			store_rollback(c->st);
			if ((rc = client_fetch_schema(c)))
				return rc;
			if (!sm_find(&c->schema, ch.model))
				return cerr(c, SR_ERELAY, "the relay sent a change of unknown model \"%s\"", ch.model);
			return apply_page(c, pg);
		}
		sr_hlc_parse(&h, ch.hlc, SR_HLC_LEN);
		hlc_recv(&c->clk, hlc_wall_ms(), &h);
		snprintf(r.model, sizeof r.model, "%s", ch.model);
		snprintf(r.record_id, sizeof r.record_id, "%s", ch.record_id);
		/* a device_owned record belongs to its author, whom the HLC names */
		snprintf(r.owner, sizeof r.owner, "%s", m->device_owned ? h.device : "");
		memcpy(r.hlc, ch.hlc, sizeof r.hlc);
		r.deleted = ch.op == SR_OP_DELETE;
		r.data = ch.data;
		if (client_apply(c, &r, 0) < 0)
			rc = cerr(c, SR_ESTORE, "could not apply: %s", store_errmsg(c->st));
		sr_change_clear(&ch);
		pg->n++;
	}
	if (!rc && k < 0)
		rc = cerr(c, SR_ERELAY, "the relay sent a malformed changes page");
	/* once the cursor passes this device's last push, the cursor's own check covers it */
	if (!rc && (store_meta_set_int(c->st, "cursor", pg->next) ||
		    store_meta_set(c->st, "cursor_hlc", pg->has_next_hlc ? pg->next_hlc : NULL) ||
		    store_meta_set_int(c->st, "head", pg->head) ||
		    (push_seq > 0 && pg->next >= push_seq && store_meta_set(c->st, "push_seq", NULL)) ||
		    client_save_clock(c) || store_commit(c->st)))
		rc = cerr(c, SR_ESTORE, "could not save the page: %s", store_errmsg(c->st));
	if (rc)
		store_rollback(c->st);
	return rc;
}

/* The relay's history is not the one this device saw (restored from a backup) or no longer
 * reaches back to its cursor (compacted): backfill again and reconcile. Nothing local is lost:
 * the outbox stays and is pushed first, backfill applies last-writer-wins (never an older
 * version), and the repair pass re-pushes what this device authored that the relay lacks or
 * holds older, keeps what it cannot prove deleted, and reports it. */
static int resync(sr_client *c, const char *reason)
{
	char *report = NULL;
	int rc;

	if (c->resyncing)
		return cerr(c, SR_ERELAY, "the relay asked for a resync again during a resync (%s)", reason);
	if (store_begin(c->st) || store_meta_set(c->st, "state", "fresh") ||
	    store_meta_set(c->st, "bf_head", NULL) || store_meta_set(c->st, "cursor_hlc", NULL) ||
	    store_meta_set(c->st, "push_seq", NULL) || store_meta_set(c->st, "resync_reason", reason) ||
	    store_commit(c->st)) {
		store_rollback(c->st);
		return cerr(c, SR_ESTORE, "could not reset the state: %s", store_errmsg(c->st));
	}
	c->resyncing = 1;
	rc = backfill(c);
	if (!rc) {
		rc = sr_client_verify(c, &report, 1);
		free(report);
		/* a scope the relay is behind on is reported by verify, not an error of sync */
		if (rc == SR_EMISMATCH)
			rc = 0;
	}
	c->resyncing = 0;
	return rc;
}

/* The pull request for a cursor: it names its change; a last push beyond the cursor is
 * checked as well. */
static void pull_path(sr_client *c, char *path, size_t n, long long cursor, const char *chlc, long long push_seq,
		      const char *phlc, long wait)
{
	if (push_seq > cursor && phlc)
		snprintf(path, n,
			 "/v1/libraries/%s/changes?since=%lld&since_hlc=%s&check_seq=%lld&check_hlc=%s&limit=%d&wait=%ld",
			 c->library, cursor, chlc ? chlc : "", push_seq, phlc, PULL_PAGE, wait);
	else
		snprintf(path, n, "/v1/libraries/%s/changes?since=%lld&since_hlc=%s&limit=%d&wait=%ld", c->library,
			 cursor, chlc ? chlc : "", PULL_PAGE, wait);
}

/* One pull page. prefetch: when more follows, the next page is asked for while this one is
 * applied (pull_path of the cursor this page leaves; the next pull uses it only when it
 * builds the same path). */
static int pull_once(sr_client *c, long wait, int prefetch, int *more, long *applied)
{
	char path[512], *chlc = NULL, *phlc = NULL;
	long long cursor = store_meta_int(c->st, "cursor", 0), push_seq = store_meta_int(c->st, "push_seq", 0);
	struct page pg = {0};
	json_t *j = NULL;
	int rc;

	*more = 0;
	store_meta_get(c->st, "cursor_hlc", &chlc);
	store_meta_get(c->st, "push_hlc", &phlc);
	pull_path(c, path, sizeof path, cursor, chlc, push_seq, phlc, wait);
	free(chlc);
	rc = relay_call_raw(c, "GET", path, NULL, wait + 60, &pg.body, &j);
	if (rc == SR_ERELAY && c->last_status == 410) {
		char reason[64];

		snprintf(reason, sizeof reason, "%s",
			 json_string_value(json_object_get(j, "reason")) ? json_string_value(json_object_get(j, "reason"))
									 : "beyond-horizon");
		json_decref(j);
		free(phlc);
		*more = 1;
		return resync(c, reason);
	}
	json_decref(j);
	if (!rc)
		rc = page_read(c, &pg, "changes");
	if (!rc && pg.schema_version != c->schema_version)
		rc = client_fetch_schema(c);
	if (!rc && prefetch && pg.more) {
		char next[512];

		/* apply_page forgets the last push once the cursor reaches it */
		pull_path(c, next, sizeof next, pg.next, pg.has_next_hlc ? pg.next_hlc : NULL,
			  push_seq > 0 && pg.next >= push_seq ? 0 : push_seq, phlc, wait);
		relay_prefetch(c, next, wait + 60);
	}
	free(phlc);
	if (!rc) {
		rc = apply_page(c, &pg);
		*applied += pg.n;
		*more = pg.more;
	}
	sr_buf_free(&pg.body);
	return rc;
}

static int ack(sr_client *c)
{
	char path[128], body[64];

	snprintf(path, sizeof path, "/v1/libraries/%s/ack", c->library);
	snprintf(body, sizeof body, "{\"seq\":%lld}", (long long)store_meta_int(c->st, "cursor", 0));
	return relay_call(c, "POST", path, body, 60, NULL);
}

static int pull_to_head(sr_client *c)
{
	long applied = 0;
	int more = 1, rc = 0;
	char *state = NULL;

	store_meta_get(c->st, "state", &state);
	if (!state || strcmp(state, "syncing"))
		rc = backfill(c);
	free(state);
	while (!rc && more) {
		rc = pull_once(c, 0, 1, &more, &applied);
		if (applied > PAGE)
			progress(c, "pull", applied, -1);
	}
	if (c->progress && applied > PAGE)
		fputc('\n', stderr);
	return rc ? rc : ack(c);
}

static void sleep_s(double s)
{
	struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};

	nanosleep(&t, NULL);
}

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int sr_client_sync(sr_client *c, const sr_sync_opts *opts)
{
	sr_sync_opts def = SR_SYNC_OPTS_INIT;
	double end, next_verify;
	int rc, lrc;

	if (!c->enrolled)
		return cerr(c, SR_ESTATE, "this store is not enrolled (run enroll first)");
	if (c->in_batch)
		return cerr(c, SR_ESTATE, "a write batch is open: commit it first");
	if (!opts)
		opts = &def;
	/* a refused push does not keep the device from pulling */
	rc = push_outbox(c);
	if (rc && rc != SR_ERELAY)
		return rc;
	lrc = pull_to_head(c);
	if (rc || lrc || !opts->watch)
		return rc ? rc : lrc;
	end = opts->timeout_s > 0 ? mono() + opts->timeout_s : 0;
	next_verify = mono() + (opts->verify_every_s > 0 ? opts->verify_every_s : 60);
	while (!(opts->stop && *opts->stop)) {
		double left = end ? end - mono() : 25;
		long wait = left > 25 ? 25 : (long)left;
		long applied = 0;
		int more = 0;

		if (end && left <= 0)
			break;
		/* holds of a few seconds: local writes made by other processes on this store
		 * are pushed at the next turn */
		if (wait > 5)
			wait = 5;
		if ((rc = push_outbox(c)) || (rc = pull_once(c, wait, 0, &more, &applied))) {
			/* the relay away for a while does not end a watch: wait and go on */
			if (rc != SR_ENETWORK && !(rc == SR_ERELAY && c->last_status >= 500))
				return rc;
			sleep_s(2);
			continue;
		}
		if (!more && applied && (rc = ack(c)))
			return rc;
		if (mono() >= next_verify) {
			char *report = NULL;
			rc = sr_client_verify(c, &report, 1);
			free(report);
			if (rc && rc != SR_EMISMATCH)
				return rc;
			next_verify = mono() + (opts->verify_every_s > 0 ? opts->verify_every_s : 60);
		}
	}
	return 0;
}

int client_sync_once(sr_client *c)
{
	int rc = push_outbox(c);

	return rc ? rc : pull_to_head(c);
}
