/*
 * The replica store. SQLite is the embedded default (WAL, busy timeout, so a watching sync
 * and a status can share a store); ":memory:" gives the in-memory store unit tests use.
 * Records live in one table records(model, record_id, owner, hlc, deleted, data) beside the
 * outbox, the meta values (cursor, clock, token, schema) and the pending references.
 */
#ifndef SR_CLIENT_STORE_H
#define SR_CLIENT_STORE_H

#include <stdint.h>

#include "syncrelay_codec.h"

struct store;

struct srec {
	char model[SR_MODEL_MAX + 1];
	char record_id[SR_UUID_LEN + 1];
	char owner[SR_UUID_LEN + 1]; /* "" for shared */
	char hlc[SR_HLC_LEN + 1];
	int deleted;
	char *data; /* canonical text, owned; NULL for a tombstone */
};

int store_open(struct store **out, const char *path, char *err, size_t errlen);
void store_close(struct store *s);
const char *store_errmsg(struct store *s);

int store_begin(struct store *s); /* BEGIN IMMEDIATE: one writer at a time */
int store_commit(struct store *s);
void store_rollback(struct store *s);

/* Meta values: *out is malloc'd, NULL when absent. */
int store_meta_get(struct store *s, const char *key, char **out);
int store_meta_set(struct store *s, const char *key, const char *value);
int64_t store_meta_int(struct store *s, const char *key, int64_t def);
int store_meta_set_int(struct store *s, const char *key, int64_t v);

/* 1 found, 0 absent, <0 error. out->data is the caller's (srec_clear). */
int store_record_get(struct store *s, const char *model, const char *record_id, struct srec *out);
/* The owner and HLC of (model, record_id) without its data: 1 found, 0 absent, <0 error. */
int store_record_head(struct store *s, const char *model, const char *record_id, char owner[SR_UUID_LEN + 1],
		      char hlc[SR_HLC_LEN + 1]);
int store_record_put(struct store *s, const struct srec *r);
int store_record_remove(struct store *s, const char *model, const char *record_id);
void srec_clear(struct srec *r);
/* Calls fn for each record of (model, owner) [bucket >= 0: only that bucket], ordered by
 * record_id; owner NULL = every owner; model NULL = every record. Stops when fn returns non-zero. */
int store_records_each(struct store *s, const char *model, const char *owner, int bucket,
		       int (*fn)(void *arg, const struct srec *r), void *arg);

int store_outbox_add(struct store *s, const char *hlc, const char *model, const char *record_id,
		     int op, const char *data);
/* Up to limit oldest outbox changes with their row ids; *n set. ch[i].data owned. */
int store_outbox_peek(struct store *s, int limit, sr_change *ch, int64_t *ids, int *n);
/* Moves outbox row id to the rejected table with the relay's reason. */
int store_outbox_reject(struct store *s, int64_t id, long status, const char *code, const char *detail);
int64_t store_rejected_count(struct store *s);
/* Moves rejected change id (0: every one) back to the outbox, in its order; *n = how many.
 * Inside the caller's transaction. */
int store_rejected_retry(struct store *s, int64_t id, int *n);
/* 1 when the change (model, hlc) is one the relay refused for good. */
int store_rejected_has(struct store *s, const char *model, const char *hlc);
/* Drops rejected change id (0: every one); *n = how many. Only ever at the user's request.
 * A replica row that still shows a dropped change goes with it (a repair then brings back the
 * relay's version). */
int store_rejected_drop(struct store *s, int64_t id, int *n);
/* 1 when (model, record_id) has a change waiting in the outbox. */
int store_outbox_has(struct store *s, const char *model, const char *record_id);
int store_outbox_remove_upto(struct store *s, int64_t max_id);
int64_t store_outbox_count(struct store *s);

/* Pending references of a record: replaced wholesale when the record changes. */
int store_pending_clear(struct store *s, const char *model, const char *record_id);
int store_pending_add(struct store *s, const char *model, const char *record_id, const char *field,
		      const char *target_model, const char *target_id);
/* Removes the references waiting for (target_model, target_id) and calls fn for each. */
int store_pending_resolve(struct store *s, const char *target_model, const char *target_id,
			  void (*fn)(void *arg, const char *model, const char *record_id,
				     const char *field, const char *target_id),
			  void *arg);
/* 1 when a live record (model, id) exists. */
int store_live(struct store *s, const char *model, const char *record_id);

/* Runs a read-only query with text parameters, calling fn per row (column values as text). */
int store_query(struct store *s, const char *sql, const char *const *params, int nparams,
		int (*fn)(void *arg, int ncol, const char *const *vals), void *arg);

#endif
