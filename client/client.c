/* libsyncrelay: the client handle, enrollment, schema, local writes and reads, status. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "jscan.h"

const char *sr_strerror(int code)
{
	switch (code) {
	case SR_OK: return "ok";
	case SR_EINVAL: return "invalid argument";
	case SR_ENOTFOUND: return "not found";
	case SR_ESTORE: return "local store failure";
	case SR_ENETWORK: return "relay unreachable";
	case SR_ERELAY: return "relay refused the request";
	case SR_ESTATE: return "wrong state for this operation";
	case SR_ENOMEM: return "out of memory";
	case SR_EUNKNOWNMODEL: return "unknown model";
	case SR_EMISMATCH: return "replica does not match the relay";
	}
	return "unknown error";
}

int cerr(sr_client *c, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof c->err, fmt, ap);
	va_end(ap);
	return code;
}

/* why the last sr_client_open on this thread failed (there is no handle to hold it) */
static __thread char open_err[512];

const char *sr_client_errmsg(const sr_client *c)
{
	return c ? c->err : open_err[0] ? open_err : "no client";
}

void sr_client_on_link(sr_client *c, sr_link_fn fn, void *arg)
{
	c->link_fn = fn;
	c->link_arg = arg;
}

void sr_client_set_progress(sr_client *c, int on)
{
	c->progress = on;
}

void progress(sr_client *c, const char *what, long done, long total)
{
	if (!c->progress)
		return;
	if (total > 0)
		fprintf(stderr, "\r%s: %ld/%ld (%ld%%)   ", what, done, total, done * 100 / total);
	else
		fprintf(stderr, "\r%s: %ld   ", what, done);
	if (done == total)
		fputc('\n', stderr);
}

static void meta_str(sr_client *c, const char *key, char *dst, size_t n)
{
	char *v = NULL;

	store_meta_get(c->st, key, &v);
	snprintf(dst, n, "%s", v ? v : "");
	free(v);
}

int client_load_schema(sr_client *c)
{
	char *text = NULL, err[256];
	json_t *models;
	int rc;

	sm_free(&c->schema);
	c->schema_version = (int)store_meta_int(c->st, "schema_version", 0);
	store_meta_get(c->st, "schema_models", &text);
	models = json_loads(text ? text : "[]", 0, NULL);
	free(text);
	rc = sm_parse(&c->schema, models, err, sizeof err);
	json_decref(models);
	return rc ? cerr(c, SR_ESTORE, "the stored schema is unreadable: %s", err) : 0;
}

void client_load_clock(sr_client *c)
{
	uint64_t ms = (uint64_t)store_meta_int(c->st, "hlc_ms", 0);
	uint64_t counter = (uint64_t)store_meta_int(c->st, "hlc_counter", 0);

	/* another process on this store may have moved the clock: never go behind it */
	if (ms > c->clk.ms || (ms == c->clk.ms && counter > c->clk.counter)) {
		c->clk.ms = ms;
		c->clk.counter = counter;
	}
}

int client_save_clock(sr_client *c)
{
	if (store_meta_set_int(c->st, "hlc_ms", (int64_t)c->clk.ms) ||
	    store_meta_set_int(c->st, "hlc_counter", (int64_t)c->clk.counter))
		return cerr(c, SR_ESTORE, "could not save the clock: %s", store_errmsg(c->st));
	return 0;
}

void client_save_offset(sr_client *c)
{
	/* a hint for status, not state: a busy store only delays it to the next sync */
	if (c->have_offset && (store_meta_int(c->st, "clock_offset_ms", 0) != c->clock_offset_ms ||
			       store_meta_int(c->st, "max_skew_ms", 0) != c->max_skew_ms ||
			       !store_meta_int(c->st, "clock_offset_known", 0)))
		(void)(store_meta_set_int(c->st, "clock_offset_ms", c->clock_offset_ms) ||
		       store_meta_set_int(c->st, "max_skew_ms", c->max_skew_ms) ||
		       store_meta_set_int(c->st, "clock_offset_known", 1));
}

int client_own_hlc(const sr_client *c, const char *hlc)
{
	/* the author's UUID is the HLC's last 36 characters */
	return strlen(hlc) == SR_HLC_LEN && !strcmp(hlc + SR_HLC_LEN - SR_UUID_LEN, c->device);
}

int sr_client_clock_offset(sr_client *c, long long *offset_ms, long long *limit_ms)
{
	*offset_ms = c->clock_offset_ms;
	*limit_ms = c->max_skew_ms;
	return c->have_offset ? 0 : SR_ENOTFOUND; /* a getter: the last error message stays */
}

int sr_client_open(sr_client **out, const char *path)
{
	sr_client *c = calloc(1, sizeof *c);
	char err[512];

	*out = NULL;
	if (!c)
		return SR_ENOMEM;
	if (store_open(&c->st, path, err, sizeof err)) {
		snprintf(open_err, sizeof open_err, "%s", err);
		free(c);
		return SR_ESTORE;
	}
	meta_str(c, "relay", c->relay, sizeof c->relay);
	meta_str(c, "library_id", c->library, sizeof c->library);
	meta_str(c, "device_id", c->device, sizeof c->device);
	meta_str(c, "token", c->token, sizeof c->token);
	c->enrolled = c->device[0] && c->token[0];
	memcpy(c->clk.device, c->device, sizeof c->clk.device);
	c->clk.ms = (uint64_t)store_meta_int(c->st, "hlc_ms", 0);
	c->clk.counter = (uint64_t)store_meta_int(c->st, "hlc_counter", 0);
	c->have_offset = store_meta_int(c->st, "clock_offset_known", 0) != 0;
	c->clock_offset_ms = (long long)store_meta_int(c->st, "clock_offset_ms", 0);
	c->max_skew_ms = (long long)store_meta_int(c->st, "max_skew_ms", 0);
	if (client_load_schema(c)) {
		sr_client_free(c);
		return SR_ESTORE;
	}
	*out = c;
	return 0;
}

void sr_client_free(sr_client *c)
{
	if (!c)
		return;
	relay_prefetch_free(c);
	if (c->curl)
		curl_easy_cleanup(c->curl);
	sm_free(&c->schema);
	store_close(c->st);
	free(c);
}

/* Keeps a schema answer ({version, models?, order}) in the store. */
static int keep_schema(sr_client *c, json_t *models, int version)
{
	char *text = json_dumps(models, JSON_COMPACT);
	int rc = 0;

	if (!text)
		return cerr(c, SR_ENOMEM, "out of memory");
	if (store_meta_set(c->st, "schema_models", text) ||
	    store_meta_set_int(c->st, "schema_version", version))
		rc = cerr(c, SR_ESTORE, "could not keep the schema: %s", store_errmsg(c->st));
	free(text);
	return rc ? rc : client_load_schema(c);
}

int client_fetch_schema(sr_client *c)
{
	char path[128];
	json_t *j = NULL;
	int rc;

	snprintf(path, sizeof path, "/v1/libraries/%s/schema", c->library);
	rc = relay_call(c, "GET", path, NULL, 60, &j);
	if (!rc)
		rc = keep_schema(c, json_object_get(j, "models"),
				 (int)json_integer_value(json_object_get(j, "version")));
	json_decref(j);
	return rc;
}

int sr_client_enroll(sr_client *c, const char *relay_url, const char *library_id,
		     const char *join_token, const char *device_id, const char *name)
{
	char dev[SR_UUID_LEN + 1], path[128];
	json_t *body, *j = NULL;
	char *text;
	int rc;

	if (c->enrolled)
		return cerr(c, SR_ESTATE, "this store is already enrolled as device %s", c->device);
	if (!relay_url || strncmp(relay_url, "http", 4))
		return cerr(c, SR_EINVAL, "relay URL \"%s\" must start with http:// or https://",
			    relay_url ? relay_url : "");
	if (!library_id || !sr_uuid_valid(library_id, strlen(library_id)))
		return cerr(c, SR_EINVAL, "library id \"%s\" is not a canonical UUID", library_id ? library_id : "");
	if (device_id && !sr_uuid_valid(device_id, strlen(device_id)))
		return cerr(c, SR_EINVAL, "device id \"%s\" is not a canonical UUID", device_id);
	if (device_id)
		snprintf(dev, sizeof dev, "%s", device_id);
	else if (sr_uuid_random(dev))
		return cerr(c, SR_ENOMEM, "could not read random bytes");
	snprintf(c->relay, sizeof c->relay, "%s", relay_url);
	while (strlen(c->relay) && c->relay[strlen(c->relay) - 1] == '/')
		c->relay[strlen(c->relay) - 1] = '\0';
	snprintf(c->library, sizeof c->library, "%s", library_id);
	snprintf(c->token, sizeof c->token, "%s", join_token ? join_token : "");
	body = json_pack("{s:s, s:s}", "device_id", dev, "name", name ? name : "");
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	snprintf(path, sizeof path, "/v1/libraries/%s/devices", library_id);
	rc = relay_call(c, "POST", path, text, 60, &j);
	free(text);
	if (rc) {
		c->token[0] = '\0';
		json_decref(j);
		return rc;
	}
	snprintf(c->token, sizeof c->token, "%s", json_string_value(json_object_get(j, "token")));
	json_decref(j);
	snprintf(c->device, sizeof c->device, "%s", dev);
	memcpy(c->clk.device, dev, sizeof c->clk.device);
	if (store_begin(c->st) || store_meta_set(c->st, "relay", c->relay) ||
	    store_meta_set(c->st, "library_id", c->library) || store_meta_set(c->st, "device_id", dev) ||
	    store_meta_set(c->st, "token", c->token) || store_meta_set(c->st, "state", "fresh") ||
	    store_meta_set_int(c->st, "cursor", 0) || store_commit(c->st)) {
		store_rollback(c->st);
		return cerr(c, SR_ESTORE, "enrolled, but could not keep the device token: %s",
			    store_errmsg(c->st));
	}
	c->enrolled = 1;
	return client_fetch_schema(c);
}

static int need_enrolled(sr_client *c)
{
	return c->enrolled ? 0 : cerr(c, SR_ESTATE, "this store is not enrolled (run enroll first)");
}

int sr_client_schema_set(sr_client *c, const char *schema_json)
{
	json_t *doc, *j = NULL;
	char path[128];
	int rc;

	if ((rc = need_enrolled(c)))
		return rc;
	doc = json_loads(schema_json, 0, NULL);
	if (!json_is_object(doc) || !json_is_array(json_object_get(doc, "models"))) {
		json_decref(doc);
		return cerr(c, SR_EINVAL, "a schema is a JSON object with a \"models\" array");
	}
	json_decref(doc);
	snprintf(path, sizeof path, "/v1/libraries/%s/schema", c->library);
	rc = relay_call(c, "PUT", path, schema_json, 60, &j);
	json_decref(j);
	return rc ? rc : client_fetch_schema(c);
}

int sr_client_schema_get(sr_client *c, char **out)
{
	json_t *j = json_pack("{s:i, s:o, s:o}", "version", c->schema_version, "models",
			      sm_models_json(&c->schema), "order", sm_order_json(&c->schema));

	*out = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return *out ? 0 : cerr(c, SR_ENOMEM, "out of memory");
}

/* One local write inside the caller's transaction: stamp, apply, queue. canon is the data's
 * canonical text (the write takes it over), NULL for a delete. */
static int local_write_text(sr_client *c, const char *model, const char *record_id, char *canon);

static int local_write(sr_client *c, const char *model, const char *record_id, const json_t *data)
{
	char *canon;

	if (!data)
		return local_write_text(c, model, record_id, NULL);
	if (!json_is_object(data))
		return cerr(c, SR_EINVAL, "record data must be a JSON object");
	canon = sr_canonical(data);
	if (!canon)
		return cerr(c, SR_ENOMEM, "out of memory");
	return local_write_text(c, model, record_id, canon);
}

static int local_write_text(sr_client *c, const char *model, const char *record_id, char *canon)
{
	const struct sm_model *m = sm_find(&c->schema, model);
	struct srec r = {0};
	char owner[SR_UUID_LEN + 1], hlc[SR_HLC_LEN + 1];
	int found = 0, rc = 0;

	r.data = canon; /* freed on every path below */
	if (!sr_model_name_valid(model))
		rc = cerr(c, SR_EINVAL, "\"%s\" is not a model name", model);
	else if (!m)
		rc = cerr(c, SR_EUNKNOWNMODEL, "model \"%s\" is not in the library schema", model);
	else if (!record_id || !sr_uuid_valid(record_id, strlen(record_id)))
		rc = cerr(c, SR_EINVAL, "record id \"%s\" is not a canonical UUID", record_id ? record_id : "");
	else if ((found = store_record_head(c->st, model, record_id, owner, hlc)) < 0)
		rc = cerr(c, SR_ESTORE, "could not read the store: %s", store_errmsg(c->st));
	else if (found && m->device_owned && strcmp(owner, c->device))
		rc = cerr(c, SR_EINVAL, "%s record %s belongs to device %s", model, record_id, owner);
	if (rc) {
		srec_clear(&r);
		return rc;
	}
	snprintf(r.model, sizeof r.model, "%s", model);
	snprintf(r.record_id, sizeof r.record_id, "%s", record_id);
	snprintf(r.owner, sizeof r.owner, "%s", m->device_owned ? c->device : "");
	/* a batch holds the write lock: its clock is loaded at begin and saved at commit */
	if (!c->clock_held)
		client_load_clock(c);
	hlc_tick(&c->clk, hlc_wall_ms(), r.hlc);
	r.deleted = canon == NULL;
	/* the head read above stands: the write lock is held since */
	found = client_apply_known(c, &r, 0, found, hlc);
	if (found == 0)
		/* cannot happen with a monotonic clock; refuse rather than queue a lost write */
		rc = cerr(c, SR_ESTORE, "the stored %s record %s is newer than this device's clock", model,
			  record_id);
	else if (found < 0 || store_outbox_add(c->st, r.hlc, model, record_id, r.deleted, r.data) ||
		 (!c->clock_held && client_save_clock(c)))
		rc = cerr(c, SR_ESTORE, "could not write locally: %s", store_errmsg(c->st));
	srec_clear(&r);
	return rc;
}

int sr_client_write_begin(sr_client *c)
{
	int rc;

	if ((rc = need_enrolled(c)))
		return rc;
	if (c->in_batch)
		return cerr(c, SR_ESTATE, "a write batch is already open");
	if (store_begin(c->st))
		return cerr(c, SR_ESTORE, "could not begin a local transaction: %s", store_errmsg(c->st));
	c->in_batch = 1;
	client_load_clock(c);
	c->clock_held = 1;
	return 0;
}

int sr_client_write_commit(sr_client *c)
{
	if (!c->in_batch)
		return cerr(c, SR_ESTATE, "no write batch is open");
	c->in_batch = 0;
	c->clock_held = 0;
	if (client_save_clock(c) || store_commit(c->st)) {
		store_rollback(c->st);
		return cerr(c, SR_ESTORE, "could not commit: %s", store_errmsg(c->st));
	}
	return 0;
}

void sr_client_write_rollback(sr_client *c)
{
	if (c->in_batch)
		store_rollback(c->st);
	c->in_batch = 0;
	c->clock_held = 0;
}

/* canon: the data's canonical text, taken over; NULL for a delete. */
static int write_one(sr_client *c, const char *model, const char *record_id, char *canon)
{
	int rc;

	if ((rc = need_enrolled(c))) {
		free(canon);
		return rc;
	}
	if (c->in_batch)
		return local_write_text(c, model, record_id, canon);
	if (store_begin(c->st)) {
		free(canon);
		return cerr(c, SR_ESTORE, "could not begin a local transaction: %s", store_errmsg(c->st));
	}
	rc = local_write_text(c, model, record_id, canon);
	if (!rc && store_commit(c->st))
		rc = cerr(c, SR_ESTORE, "could not commit: %s", store_errmsg(c->st));
	if (rc)
		store_rollback(c->st);
	return rc;
}

int sr_client_put(sr_client *c, const char *model, const char *record_id, const char *data_json)
{
	json_error_t e;
	json_t *data;
	char *canon;
	size_t n = data_json ? strlen(data_json) : 0;

	/* text already canonical (an indexer's, a copy of what get returned) is taken as it is */
	if (n && js_canonical(data_json, n)) {
		canon = strdup(data_json);
		return canon ? write_one(c, model, record_id, canon) : cerr(c, SR_ENOMEM, "out of memory");
	}
	data = json_loads(data_json ? data_json : "", 0, &e);
	if (!json_is_object(data)) {
		json_decref(data);
		return cerr(c, SR_EINVAL, "record data must be a JSON object%s%s", data ? "" : ": ",
			    data ? "" : e.text);
	}
	canon = sr_canonical(data);
	json_decref(data);
	return canon ? write_one(c, model, record_id, canon) : cerr(c, SR_ENOMEM, "out of memory");
}

int sr_client_delete(sr_client *c, const char *model, const char *record_id)
{
	return write_one(c, model, record_id, NULL);
}

int sr_client_get(sr_client *c, char **out, const char *model, const char *record_id)
{
	struct srec r;
	int found;

	*out = NULL;
	if (!model || !record_id)
		return cerr(c, SR_EINVAL, "model and record id are required");
	found = store_record_get(c->st, model, record_id, &r);
	if (found < 0)
		return cerr(c, SR_ESTORE, "could not read the store: %s", store_errmsg(c->st));
	if (!found || r.deleted) {
		srec_clear(&r);
		return cerr(c, SR_ENOTFOUND, "not found");
	}
	*out = r.data;
	return 0;
}

struct each_arg {
	int (*fn)(void *arg, const char *record_id, const char *data);
	void *arg;
};

static int each_live(void *arg, const struct srec *r)
{
	struct each_arg *a = arg;

	return r->deleted ? 0 : a->fn(a->arg, r->record_id, r->data);
}

int sr_client_records(sr_client *c, const char *model,
		      int (*fn)(void *arg, const char *record_id, const char *data), void *arg)
{
	struct each_arg a = {fn, arg};

	if (!model || !sr_model_name_valid(model))
		return cerr(c, SR_EINVAL, "\"%s\" is not a model name", model ? model : "");
	if (store_records_each(c->st, model, NULL, -1, each_live, &a))
		return cerr(c, SR_ESTORE, "could not read the store: %s", store_errmsg(c->st));
	return 0;
}

int sr_client_import(sr_client *c, long *count, const char *model, const char *jsonl_path)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	long lineno = 0, total = 0;
	ssize_t len;
	int rc = 0;

	*count = 0;
	if ((rc = need_enrolled(c)))
		return rc;
	if (c->in_batch)
		return cerr(c, SR_ESTATE, "a write batch is open: commit it first");
	f = fopen(jsonl_path, "r");
	if (!f)
		return cerr(c, SR_EINVAL, "could not open \"%s\": %s", jsonl_path, strerror(errno));
	while ((len = getline(&line, &cap, f)) >= 0)
		total += len > 1;
	rewind(f);
	if (store_begin(c->st)) {
		fclose(f);
		return cerr(c, SR_ESTORE, "could not begin: %s", store_errmsg(c->st));
	}
	client_load_clock(c);
	c->clock_held = 1;
	/* the whole file is one transaction: an import is all or nothing */
	while (!rc && (len = getline(&line, &cap, f)) >= 0) {
		json_error_t e;
		json_t *j;
		const char *rid;

		lineno++;
		if (len <= 1)
			continue;
		j = json_loads(line, 0, &e);
		rid = json_string_value(json_object_get(j, "record_id"));
		if (!json_is_object(j) || !rid || !json_is_object(json_object_get(j, "data")))
			rc = cerr(c, SR_EINVAL, "%s:%ld: expected {\"record_id\":…,\"data\":{…}}", jsonl_path, lineno);
		else if ((rc = local_write(c, model, rid, json_object_get(j, "data"))))
			snprintf(c->err + strlen(c->err), sizeof c->err - strlen(c->err), " (%s:%ld)",
				 jsonl_path, lineno);
		json_decref(j);
		if (!rc && ++*count % 500 == 0)
			progress(c, "import", *count, total);
	}
	free(line);
	fclose(f);
	c->clock_held = 0;
	if (!rc && (client_save_clock(c) || store_commit(c->st)))
		rc = cerr(c, SR_ESTORE, "could not commit: %s", store_errmsg(c->st));
	if (rc) {
		store_rollback(c->st);
		*count = 0;
		return rc;
	}
	progress(c, "import", *count, *count);
	return 0;
}

long sr_client_rejected(sr_client *c)
{
	return (long)store_rejected_count(c->st);
}

static int rejected_row(void *arg, int ncol, const char *const *v)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_integer(atoll(v[0])));
	json_object_set_new(o, "hlc", json_string(v[1]));
	json_object_set_new(o, "model", json_string(v[2]));
	json_object_set_new(o, "record_id", json_string(v[3]));
	json_object_set_new(o, "op", json_string(atoi(v[4]) ? "delete" : "upsert"));
	json_object_set_new(o, "status", json_integer(v[5] ? atoll(v[5]) : 0));
	json_object_set_new(o, "code", json_string(v[6] ? v[6] : ""));
	json_object_set_new(o, "detail", json_string(v[7] ? v[7] : ""));
	return json_array_append_new(arg, o);
}

/* The rejected table as a JSON array, or NULL on a store failure (message set). */
static json_t *rejected_json(sr_client *c)
{
	json_t *a = json_array();

	if (store_query(c->st, "SELECT id, hlc, model, record_id, op, status, code, detail FROM rejected"
			       " ORDER BY id", NULL, 0, rejected_row, a)) {
		json_decref(a);
		cerr(c, SR_ESTORE, "could not read the rejected changes: %s", store_errmsg(c->st));
		return NULL;
	}
	return a;
}

int sr_client_rejected_list(sr_client *c, char **out)
{
	json_t *a = rejected_json(c), *j;

	*out = NULL;
	if (!a)
		return SR_ESTORE;
	j = json_pack("{s:o}", "rejected", a);
	*out = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return *out ? 0 : cerr(c, SR_ENOMEM, "out of memory");
}

/* Retry or drop, in one local transaction. */
static int rejected_change(sr_client *c, long *count, long long id, int retry)
{
	int n = 0;

	*count = 0;
	if (id < 0)
		return cerr(c, SR_EINVAL, "a rejected change id is a positive number (0 for all)");
	if (c->in_batch)
		return cerr(c, SR_ESTATE, "a write batch is open: commit it first");
	if (store_begin(c->st) ||
	    (retry ? store_rejected_retry(c->st, id, &n) : store_rejected_drop(c->st, id, &n)) ||
	    store_commit(c->st)) {
		store_rollback(c->st);
		return cerr(c, SR_ESTORE, "could not change the rejected changes: %s", store_errmsg(c->st));
	}
	*count = n;
	if (!n && id)
		return cerr(c, SR_ENOTFOUND, "no rejected change has id %lld", id);
	return 0;
}

int sr_client_rejected_retry(sr_client *c, long *count, long long id)
{
	return rejected_change(c, count, id, 1);
}

int sr_client_rejected_drop(sr_client *c, long *count, long long id)
{
	return rejected_change(c, count, id, 0);
}

/* ---- status ---- */

static int count_row(void *arg, int ncol, const char *const *v)
{
	json_object_set_new(arg, v[0], json_integer(v[1] ? atoll(v[1]) : 0));
	return 0;
}

static int refs_row(void *arg, int ncol, const char *const *v)
{
	long long *n = arg;

	n[0] = v[0] ? atoll(v[0]) : 0;
	n[1] = v[1] ? atoll(v[1]) : 0;
	return 0;
}

int sr_client_status(sr_client *c, char **out)
{
	json_t *j = json_object(), *records = json_object(), *refs = json_object();
	char *state = NULL;
	long long unresolved = 0;
	int i, k;

	*out = NULL;
	store_meta_get(c->st, "state", &state);
	json_object_set_new(j, "device_id", c->enrolled ? json_string(c->device) : json_null());
	json_object_set_new(j, "library_id", c->library[0] ? json_string(c->library) : json_null());
	json_object_set_new(j, "state", json_string(state ? state : "fresh"));
	free(state);
	json_object_set_new(j, "cursor", json_integer(store_meta_int(c->st, "cursor", 0)));
	json_object_set_new(j, "head", json_integer(store_meta_int(c->st, "head", 0)));
	json_object_set_new(j, "outbox", json_integer(store_outbox_count(c->st)));
	json_object_set_new(j, "clock_offset_ms", c->have_offset ? json_integer(c->clock_offset_ms) : json_null());
	json_object_set_new(j, "max_skew_ms", c->max_skew_ms ? json_integer(c->max_skew_ms) : json_null());
	{
		json_t *rej = rejected_json(c);
		if (!rej)
			goto fail;
		json_object_set_new(j, "rejected", rej);
	}
	for (i = 0; i < c->schema.n; i++)
		json_object_set_new(records, c->schema.models[i].name, json_integer(0));
	if (store_query(c->st, "SELECT model, count(*) FROM records WHERE deleted = 0 GROUP BY model", NULL, 0,
			count_row, records))
		goto fail;
	for (i = 0; i < c->schema.n; i++) {
		const struct sm_model *m = &c->schema.models[i];
		for (k = 0; k < m->nrefs; k++) {
			char key[600], jpath[600];
			long long n[2] = {0, 0};
			const char *p[3] = {m->name, m->refs[k].model, jpath};
			const char *f;
			size_t len = 0;

			/* a JSON path naming the field, quoted so any key works */
			len += (size_t)snprintf(jpath, sizeof jpath, "$.\"");
			for (f = m->refs[k].field; *f && len + 3 < sizeof jpath; f++) {
				if (*f == '"' || *f == '\\')
					jpath[len++] = '\\';
				jpath[len++] = *f;
			}
			snprintf(jpath + len, sizeof jpath - len, "\"");
			if (store_query(c->st,
					"SELECT count(*), coalesce(sum(NOT EXISTS (SELECT 1 FROM records t"
					" WHERE t.model = ?2 AND t.record_id = json_extract(r.data, ?3)"
					" AND t.deleted = 0)), 0)"
					" FROM records r WHERE r.model = ?1 AND r.deleted = 0"
					" AND json_extract(r.data, ?3) IS NOT NULL",
					p, 3, refs_row, n))
				goto fail;
			snprintf(key, sizeof key, "%s.%s", m->name, m->refs[k].field);
			json_object_set_new(refs, key, json_pack("{s:I, s:I}", "set", (json_int_t)n[0],
								 "unresolved", (json_int_t)n[1]));
			unresolved += n[1];
		}
	}
	json_object_set_new(j, "unresolved", json_integer(unresolved));
	json_object_set_new(j, "records", records);
	json_object_set_new(j, "refs", refs);
	*out = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return *out ? 0 : cerr(c, SR_ENOMEM, "out of memory");
fail:
	json_decref(j);
	json_decref(records);
	json_decref(refs);
	return cerr(c, SR_ESTORE, "could not read the store: %s", store_errmsg(c->st));
}
