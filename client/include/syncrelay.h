/*
 * libsyncrelay: the device side of syncrelay.
 *
 * A client is one device's replica (a store) plus its link to the relay. Local writes are
 * stamped with a hybrid logical clock and queued in an outbox in the same local transaction;
 * sync pushes the outbox, pulls the relay's changes and applies them last-writer-wins.
 *
 * This header stands alone: it needs only <stdint.h>, and a program using it links
 * libsyncrelay alone (pkg-config --cflags --libs syncrelay); JSON goes in and out as text.
 *
 * Conventions: every call returns 0 (SR_OK) or a negative sr_err; sr_client_errmsg() then
 * says why in one line (a relay problem keeps its code, e.g. "relay refused: hlc-conflict: …").
 * Parameters come in one order: the handle, then output parameters, then inputs (like
 * libgit2's out-first calls, with the handle ahead of them); sr_client_open, which makes
 * the handle, takes its output first. Strings passed in are copied. Strings returned
 * through `char **out` are the caller's to release with sr_free(). Handles are released
 * with their _free, which accepts NULL.
 *
 * Threads: a sr_client belongs to one thread at a time (no internal locking); different
 * clients, on different stores, may be used from different threads at once. libcurl's
 * global initialisation is not thread-safe: a threaded program calls
 * curl_global_init(CURL_GLOBAL_DEFAULT) once before its threads start. Callbacks
 * (sr_link_fn) run on the calling thread, inside the call that triggered them, while the
 * store is in a transaction: they must not call back into the same client.
 */
#ifndef SYNCRELAY_H
#define SYNCRELAY_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: their numbers never change. */
typedef enum sr_err {
	SR_OK = 0,
	SR_EINVAL = -1,     /* bad argument (malformed id, JSON, model name) */
	SR_ENOTFOUND = -2,  /* no such record (or it is deleted) */
	SR_ESTORE = -3,     /* the local store failed */
	SR_ENETWORK = -4,   /* the relay could not be reached (after retries) */
	SR_ERELAY = -5,     /* the relay refused the request (see errmsg for its code) */
	SR_ESTATE = -6,     /* not enrolled, or already enrolled */
	SR_ENOMEM = -7,
	SR_EUNKNOWNMODEL = -8, /* the model is not in the library schema */
	SR_EMISMATCH = -9   /* verify found scopes that do not match */
} sr_err;

/* Fixed text for an error code. */
const char *sr_strerror(int code);
/* Releases a string the library returned through `char **out`; accepts NULL. */
void sr_free(void *p);
/* The library's version, "MAJOR.MINOR.PATCH". */
const char *sr_version(void);

typedef struct sr_client sr_client;

/* Opens (creating when missing) the store at path; ":memory:" gives an in-memory store.
 * *out is the caller's: release with sr_client_free(). */
int sr_client_open(sr_client **out, const char *path);
void sr_client_free(sr_client *c);
/* The last error message on this handle; borrowed, valid until the next call. With NULL:
 * why the last sr_client_open on this thread failed (SQLite's reason kept). */
const char *sr_client_errmsg(const sr_client *c);

/* Called when a pending reference resolves: record (model, record_id).field now points at a
 * present record. Also called with resolved == 0 when a reference is left pending. */
typedef void (*sr_link_fn)(void *arg, const char *model, const char *record_id, const char *field,
			   const char *target_id, int resolved);
void sr_client_on_link(sr_client *c, sr_link_fn fn, void *arg);
/* Progress on stderr for long work (import, backfill, sync); off by default. */
void sr_client_set_progress(sr_client *c, int on);

/* Enrolls this store as device_id (NULL: a random UUID) into library at relay_url with a join
 * token, keeps the device token and fetches the schema. */
int sr_client_enroll(sr_client *c, const char *relay_url, const char *library_id,
		     const char *join_token, const char *device_id, const char *name);

/* The CA certificate file (PEM, absolute path) that the relay's TLS certificate must chain
 * to, kept in the store; NULL or "" goes back to the system's CAs. SYNCRELAY_CA_FILE, when
 * set, wins over it. Certificates are always verified. */
int sr_client_set_ca_file(sr_client *c, const char *path);

/* Pushes a schema document {"models":[…]} to the relay and keeps the result locally. */
int sr_client_schema_set(sr_client *c, const char *schema_json);
/* The schema as kept locally: {"version":V,"models":[…],"order":[…]}. */
int sr_client_schema_get(sr_client *c, char **out);

/* Local writes: stamped, stored and queued for push in one local transaction. */
int sr_client_put(sr_client *c, const char *model, const char *record_id, const char *data_json);
int sr_client_delete(sr_client *c, const char *model, const char *record_id);
/* Groups the local writes that follow (put, delete) into one local transaction, for bulk
 * work; end it with sr_client_write_commit() or sr_client_write_rollback(). Sync, import and
 * verify are refused while it is open. */
int sr_client_write_begin(sr_client *c);
int sr_client_write_commit(sr_client *c);
void sr_client_write_rollback(sr_client *c);
/* The canonical text of a live record's data; SR_ENOTFOUND for absent or deleted. */
int sr_client_get(sr_client *c, char **out, const char *model, const char *record_id);
/* Calls fn(arg, record_id, data) for every live record of model, ordered by record_id; data
 * is the canonical text, borrowed for the call. fn returns non-zero to stop. */
int sr_client_records(sr_client *c, const char *model,
		      int (*fn)(void *arg, const char *record_id, const char *data), void *arg);
/* Bulk writes from JSON Lines {"record_id":…,"data":{…}}; *count gets the number written. */
int sr_client_import(sr_client *c, long *count, const char *model, const char *jsonl_path);

typedef struct sr_sync_opts {
	int version;       /* SR_SYNC_OPTS_VERSION */
	int watch;         /* keep long-polling until timeout_s passes */
	double timeout_s;  /* with watch: how long; 0 = until stopped */
	double verify_every_s; /* with watch: verify and repair this often (default 60) */
	volatile int *stop;    /* optional: set non-zero to stop a watch */
} sr_sync_opts;
#define SR_SYNC_OPTS_VERSION 1
#define SR_SYNC_OPTS_INIT {SR_SYNC_OPTS_VERSION, 0, 0, 60, NULL}

/* Pushes the outbox, pulls to head (backfilling first when fresh) and applies. */
int sr_client_sync(sr_client *c, const sr_sync_opts *opts);

/* How many local changes the relay refused for good: not-owner, hlc-conflict, a change larger
 * than any batch, malformed. They are kept aside in the store's rejected table with the
 * relay's reason and stay there until the user retries or drops them. A change refused for
 * clock-skew is not among them: it stays in the outbox and is pushed once the relay takes it. */
long sr_client_rejected(sr_client *c);
/* The rejected changes as JSON {"rejected":[{id, hlc, model, record_id, op, status, code,
 * detail}]}, oldest first. *out is the caller's: release with sr_free(). */
int sr_client_rejected_list(sr_client *c, char **out);
/* Puts rejected change id (0: every one) back at the end of the outbox; *count = how many. */
int sr_client_rejected_retry(sr_client *c, long *count, long long id);
/* Drops rejected change id (0: every one) for good; *count = how many. A record still showing
 * a dropped change leaves the replica until a verify --repair brings back the relay's version. */
int sr_client_rejected_drop(sr_client *c, long *count, long long id);

/* The device clock against the relay's, as last measured from a relay answer: *offset_ms is
 * device minus relay (positive: the device runs ahead), *limit_ms the relay's skew limit
 * (0 when the relay has not said). SR_ENOTFOUND when no answer measured it yet. Changes
 * stamped more than the limit ahead wait in the outbox until the relay's clock reaches them. */
int sr_client_clock_offset(sr_client *c, long long *offset_ms, long long *limit_ms);

/* Status as JSON (PROTOCOL.md section 7 `status --json`). */
int sr_client_status(sr_client *c, char **out);
/* Compares local and relay digests; with repair, fetches mismatched buckets and heals them.
 * *out gets the report (section 7 `verify --json`); returns SR_EMISMATCH when a scope still
 * differs. */
int sr_client_verify(sr_client *c, char **out, int repair);

#ifdef __cplusplus
}
#endif
#endif
