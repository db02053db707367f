/*
 * The shared codec: UUID, HLC, model names, canonical data, FNV-1a hashes, buckets,
 * and the JSON of changes and records. Relay and client link this one file.
 */
#include "syncrelay_codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* ---- buffer ---- */

static int buf_reserve(sr_buf *b, size_t extra)
{
	size_t need, cap;
	char *p;

	if (b->oom)
		return -1;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = 1;
		return -1;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

void sr_buf_put(sr_buf *b, const void *data, size_t n)
{
	if (buf_reserve(b, n))
		return;
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void sr_buf_puts(sr_buf *b, const char *s)
{
	sr_buf_put(b, s, strlen(s));
}

void sr_buf_putc(sr_buf *b, char c)
{
	sr_buf_put(b, &c, 1);
}

void sr_buf_printf(sr_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void sr_buf_put_jstr(sr_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *run = p;

	sr_buf_putc(b, '"');
	for (; *p; p++) {
		const char *esc = NULL;
		char u[8];

		if (*p >= 0x20 && *p != '"' && *p != '\\')
			continue;
		sr_buf_put(b, run, (size_t)(p - run));
		switch (*p) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		default:
			snprintf(u, sizeof u, "\\u%04X", *p);
			esc = u;
		}
		sr_buf_puts(b, esc);
		run = p + 1;
	}
	sr_buf_put(b, run, (size_t)(p - run));
	sr_buf_putc(b, '"');
}

char *sr_buf_steal(sr_buf *b)
{
	char *p;

	if (b->oom) {
		sr_buf_free(b);
		return NULL;
	}
	if (!b->p) {
		if (buf_reserve(b, 0))
			return NULL;
		b->p[0] = '\0';
	}
	p = b->p;
	memset(b, 0, sizeof *b);
	return p;
}

void sr_buf_free(sr_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* ---- UUIDs, HLCs, names ---- */

static int is_lhex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

int sr_uuid_valid(const char *s, size_t len)
{
	size_t i;

	if (!s || len != SR_UUID_LEN)
		return 0;
	for (i = 0; i < SR_UUID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!is_lhex((unsigned char)s[i])) {
			return 0;
		}
	}
	return 1;
}

int sr_uuid_random(char out[SR_UUID_LEN + 1])
{
	unsigned char r[16];
	size_t got = 0;

	while (got < sizeof r) {
		ssize_t n = getrandom(r + got, sizeof r - got, 0);
		if (n < 0)
			return -1;
		got += (size_t)n;
	}
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
	snprintf(out, SR_UUID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
		 r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
		 r[15]);
	return 0;
}

static uint64_t hex16(const char *s)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 16; i++) {
		unsigned char c = (unsigned char)s[i];
		v = (v << 4) | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
	}
	return v;
}

int sr_hlc_parse(sr_hlc *out, const char *s, size_t len)
{
	int i;

	if (!s || len != SR_HLC_LEN)
		return -1;
	for (i = 0; i < 16; i++)
		if (!is_lhex((unsigned char)s[i]) || !is_lhex((unsigned char)s[17 + i]))
			return -1;
	if (s[16] != '-' || s[33] != '-' || !sr_uuid_valid(s + 34, SR_UUID_LEN))
		return -1;
	if (out) {
		out->ms = hex16(s);
		out->counter = hex16(s + 17);
		memcpy(out->device, s + 34, SR_UUID_LEN);
		out->device[SR_UUID_LEN] = '\0';
	}
	return 0;
}

void sr_hlc_format(char out[SR_HLC_LEN + 1], const sr_hlc *h)
{
	snprintf(out, SR_HLC_LEN + 1, "%016llx-%016llx-%s", (unsigned long long)h->ms,
		 (unsigned long long)h->counter, h->device);
}

int sr_hlc_cmp(const char *a, const char *b)
{
	return strcmp(a, b);
}

int sr_model_name_valid(const char *s)
{
	size_t i;

	if (!s || !(s[0] >= 'a' && s[0] <= 'z'))
		return 0;
	for (i = 1; s[i]; i++) {
		char c = s[i];
		if (i > SR_MODEL_MAX - 1)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return 0;
	}
	return 1;
}

/* ---- canonical data and hashes ---- */

char *sr_canonical(const json_t *data)
{
	if (!json_is_object(data))
		return NULL;
	return json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
}

uint64_t sr_fnv1a64_update(uint64_t h, const void *data, size_t n)
{
	const unsigned char *p = data;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

uint64_t sr_fnv1a64(const void *data, size_t n)
{
	return sr_fnv1a64_update(SR_FNV_OFFSET, data, n);
}

uint64_t sr_record_hash(const char *model, const char *record_id, const char *hlc,
			const char *canonical_data)
{
	uint64_t h = SR_FNV_OFFSET;

	h = sr_fnv1a64_update(h, model, strlen(model));
	h = sr_fnv1a64_update(h, "\n", 1);
	h = sr_fnv1a64_update(h, record_id, strlen(record_id));
	h = sr_fnv1a64_update(h, "\n", 1);
	h = sr_fnv1a64_update(h, hlc, strlen(hlc));
	h = sr_fnv1a64_update(h, "\n", 1);
	if (canonical_data)
		h = sr_fnv1a64_update(h, canonical_data, strlen(canonical_data));
	return h;
}

unsigned sr_bucket(const char *record_id)
{
	return (unsigned)(sr_fnv1a64(record_id, strlen(record_id)) % SR_BUCKETS);
}

void sr_hash_hex(char out[17], uint64_t h)
{
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}

int sr_hash_parse(uint64_t *out, const char *s)
{
	int i;

	if (!s || strlen(s) != 16)
		return -1;
	for (i = 0; i < 16; i++)
		if (!is_lhex((unsigned char)s[i]))
			return -1;
	*out = hex16(s);
	return 0;
}

/* ---- changes and records ---- */

const char *sr_op_name(sr_op op)
{
	return op == SR_OP_DELETE ? "delete" : "upsert";
}

static const char *member_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

int sr_change_check(const char *hlc, const char *model, const char *record_id, const char *op, int seq_ok,
		    int data, char *err, size_t errlen)
{
	const char *why = NULL;

	if (!hlc || sr_hlc_parse(NULL, hlc, strlen(hlc)))
		why = "\"hlc\" is missing or not a valid HLC";
	else if (!model || !sr_model_name_valid(model))
		why = "\"model\" is missing or not a valid model name";
	else if (!record_id || !sr_uuid_valid(record_id, strlen(record_id)))
		why = "\"record_id\" is missing or not a canonical UUID";
	else if (!op || (strcmp(op, "upsert") && strcmp(op, "delete")))
		why = "\"op\" must be \"upsert\" or \"delete\"";
	else if (!seq_ok)
		why = "\"seq\" must be a positive integer";
	else if (!strcmp(op, "upsert") && data != SR_DATA_OBJECT)
		why = "an upsert needs an object \"data\"";
	else if (!strcmp(op, "delete") && data != SR_DATA_NONE)
		why = "a delete carries no \"data\"";
	if (why)
		snprintf(err, errlen, "%s", why);
	return why ? -1 : 0;
}

int sr_change_parse(sr_change *out, const json_t *obj, char *err, size_t errlen)
{
	const char *hlc, *model, *rid, *op;
	const json_t *data, *seq;
	int seq_ok;

	memset(out, 0, sizeof *out);
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "change is not an object");
		return -1;
	}
	hlc = member_str(obj, "hlc");
	model = member_str(obj, "model");
	rid = member_str(obj, "record_id");
	op = member_str(obj, "op");
	seq = json_object_get(obj, "seq");
	seq_ok = !seq || json_is_null(seq) || (json_is_integer(seq) && json_integer_value(seq) > 0);
	data = json_object_get(obj, "data");
	if (sr_change_check(hlc, model, rid, op, seq_ok,
			    !data || json_is_null(data) ? SR_DATA_NONE : json_is_object(data) ? SR_DATA_OBJECT : SR_DATA_OTHER,
			    err, errlen))
		return -1;
	if (seq && json_is_integer(seq))
		out->seq = (int64_t)json_integer_value(seq);
	if (!strcmp(op, "upsert")) {
		out->data = sr_canonical(data);
		if (!out->data) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		out->op = SR_OP_UPSERT;
	} else {
		out->op = SR_OP_DELETE;
	}
	memcpy(out->hlc, hlc, SR_HLC_LEN + 1);
	snprintf(out->model, sizeof out->model, "%s", model);
	memcpy(out->record_id, rid, SR_UUID_LEN + 1);
	return 0;
}

void sr_change_clear(sr_change *c)
{
	if (!c)
		return;
	free(c->data);
	c->data = NULL;
}

/* Appends a literal (a string constant) without strlen. */
#define PUT_LIT(b, s) sr_buf_put((b), (s), sizeof(s) - 1)

void sr_change_write(sr_buf *b, const sr_change *c)
{
	/* a pull page writes one of these per change: plain copies, no printf (it was a third
	 * of the relay's time serving pages) */
	if (c->seq > 0) {
		char num[24], *e = num + sizeof num, *q = e;
		unsigned long long v = (unsigned long long)c->seq;

		do
			*--q = (char)('0' + v % 10);
		while (v /= 10);
		PUT_LIT(b, "{\"seq\":");
		sr_buf_put(b, q, (size_t)(e - q));
		PUT_LIT(b, ",\"hlc\":\"");
	} else {
		PUT_LIT(b, "{\"hlc\":\"");
	}
	/* hlc, model and record_id were validated: they need no escaping */
	sr_buf_puts(b, c->hlc);
	PUT_LIT(b, "\",\"model\":\"");
	sr_buf_puts(b, c->model);
	PUT_LIT(b, "\",\"record_id\":\"");
	sr_buf_puts(b, c->record_id);
	if (c->op == SR_OP_DELETE)
		PUT_LIT(b, "\",\"op\":\"delete\",\"data\":");
	else
		PUT_LIT(b, "\",\"op\":\"upsert\",\"data\":");
	if (c->data)
		sr_buf_puts(b, c->data);
	else
		PUT_LIT(b, "null");
	sr_buf_putc(b, '}');
}

void sr_record_write(sr_buf *b, const char *model, const char *record_id, const char *owner,
		     const char *hlc, int deleted, const char *data)
{
	sr_buf_printf(b, "{\"model\":\"%s\",\"record_id\":\"%s\",\"owner\":", model, record_id);
	if (owner && *owner)
		sr_buf_printf(b, "\"%s\"", owner);
	else
		sr_buf_puts(b, "null");
	sr_buf_printf(b, ",\"hlc\":\"%s\",\"deleted\":%s,\"data\":", hlc, deleted ? "true" : "false");
	sr_buf_puts(b, data ? data : "null");
	sr_buf_putc(b, '}');
}
