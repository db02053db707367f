/* libsyncrelay internals: the client handle and the helpers its modules share. */
#ifndef SR_CLIENT_INTERNAL_H
#define SR_CLIENT_INTERNAL_H

#include <curl/curl.h>
#include <jansson.h>

#include "hlc.h"
#include "schema_model.h"
#include "store.h"
#include "syncrelay.h"

struct sr_client {
	struct store *st;
	char err[1024];
	char relay[512];
	char library[SR_UUID_LEN + 1];
	char device[SR_UUID_LEN + 1];
	char token[160];
	int enrolled;
	struct hlc_clock clk;
	CURL *curl;
	struct curl_slist *headers;
	struct sm_schema schema;
	int schema_version;
	long last_status;       /* HTTP status of the last relay answer */
	char last_code[64];     /* its problem code, if any */
	sr_link_fn link_fn;
	void *link_arg;
	int progress;
	int in_batch; /* a sr_client_write_begin() transaction is open */
	int clock_held; /* inside a batch or an import: the clock was loaded at its begin and is saved at its commit */
	/* the device clock against the relay's, learned from every answer carrying relay_time */
	int have_offset;
	long long clock_offset_ms; /* device minus relay, positive when the device runs ahead */
	long long max_skew_ms;     /* the relay's limit, 0 until it said */
	long skew_waiting;         /* outbox changes held back by the last push for clock skew */
	int resyncing;             /* inside a 410 backfill and reconcile */
	struct relay_prefetch *prefetch; /* the next page's GET in flight, or NULL */
	uint64_t raw_t0, raw_t1;         /* when the last relay_call_raw answer was asked for and came */
};

/* Sets the handle's message and returns code. */
int cerr(sr_client *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* One relay request with retries on network errors, 429 and 5xx (backoff with jitter), none
 * on other 4xx. 2xx: 0 and *out (may be NULL) the parsed body. Otherwise SR_ENETWORK or
 * SR_ERELAY with the problem code in the message and c->last_code. */
int relay_call(sr_client *c, const char *method, const char *path, const char *body,
	       long timeout_s, json_t **out);

/* relay_call for pages: a 2xx body comes back as text in *raw (the caller's, sr_buf_free)
 * for jscan to read in place, and to check; any other answer's problem is parsed into
 * *problem (may be NULL) as relay_call does. */
int relay_call_raw(sr_client *c, const char *method, const char *path, const char *body, long timeout_s,
		   sr_buf *raw, json_t **problem);

/* What a raw answer said of the relay's clock (relay_time when have_time, max_skew_ms when
 * > 0), as relay_call learns it from every parsed answer. */
void relay_learn_time(sr_client *c, int have_time, int64_t relay_time, int64_t max_skew_ms);
/* Starts GET path on a second handle and thread, for the relay_call_raw of the same path
 * that follows (the next page, asked for while this one is applied). Any other call leaves
 * it be; a relay_call_raw of another path waits for it and drops it. */
void relay_prefetch(sr_client *c, const char *path, long timeout_s);
/* Waits for a prefetch in flight and releases the prefetch handle (sr_client_free). */
void relay_prefetch_free(sr_client *c);

/* Loads the schema from the store's meta into c->schema. */
int client_load_schema(sr_client *c);
/* Fetches the schema from the relay and keeps it. */
int client_fetch_schema(sr_client *c);
/* Takes the stored clock when it is ahead (inside the caller's write transaction, so two
 * processes on one store never stamp alike). */
void client_load_clock(sr_client *c);
/* Persists the clock (inside the caller's transaction). */
int client_save_clock(sr_client *c);

/* Applies one record state last-writer-wins with its references; inside a transaction.
 * force: replace even when the HLC is not newer (repair). Returns 1 applied, 0 kept, <0 error. */
int client_apply(sr_client *c, const struct srec *r, int force);
/* client_apply for a caller that has just read the record's head: found (1 or 0) and, when
 * found, its HLC. */
int client_apply_known(sr_client *c, const struct srec *r, int force, int found, const char *hlc);

void progress(sr_client *c, const char *what, long done, long total);
/* Keeps the learned clock offset and skew limit in the store meta (autocommit). */
void client_save_offset(sr_client *c);
/* 1 when hlc (70 characters) names this device. */
int client_own_hlc(const sr_client *c, const char *hlc);
/* Pushes the outbox and pulls to head (backfilling when fresh): a replica at head. */
int client_sync_once(sr_client *c);

#endif
