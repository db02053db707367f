/*
 * syncrelay codec: the encodings of PROTOCOL.md section 2 and the JSON shape of a
 * change and a record, written once and linked by both the relay and libsyncrelay.
 */
#ifndef SYNCRELAY_CODEC_H
#define SYNCRELAY_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SR_UUID_LEN 36
#define SR_HLC_LEN 70
#define SR_MODEL_MAX 63
#define SR_BUCKETS 256

/* ---- growable byte buffer (output of the writers below) ---- */

/* A NUL-terminated growing buffer. `oom` is set once an allocation failed; later
 * appends are then no-ops, so a writer checks once at the end. */
typedef struct sr_buf {
	char *p;
	size_t len;
	size_t cap;
	int oom;
} sr_buf;

void sr_buf_put(sr_buf *b, const void *data, size_t n);
void sr_buf_puts(sr_buf *b, const char *s);
void sr_buf_putc(sr_buf *b, char c);
void sr_buf_printf(sr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal (quotes included), escaped as jansson does. */
void sr_buf_put_jstr(sr_buf *b, const char *s);
/* Hands the buffer's bytes to the caller (free()), leaving b empty. NULL on oom. */
char *sr_buf_steal(sr_buf *b);
void sr_buf_free(sr_buf *b);

/* ---- UUIDs, HLCs, model names ---- */

/* 1 when s[0..len) is a canonical lowercase 8-4-4-4-12 UUID, else 0. */
int sr_uuid_valid(const char *s, size_t len);
/* Writes a random (version 4) canonical UUID into out[37]. 0 on success. */
int sr_uuid_random(char out[SR_UUID_LEN + 1]);

typedef struct sr_hlc {
	uint64_t ms;      /* milliseconds since the Unix epoch */
	uint64_t counter; /* logical counter */
	char device[SR_UUID_LEN + 1];
} sr_hlc;

/* Strict parse of `TTTTTTTTTTTTTTTT-CCCCCCCCCCCCCCCC-<uuid>` (exactly 70 bytes,
 * lowercase hex). Returns 0, or -1 when s is not a valid HLC. */
int sr_hlc_parse(sr_hlc *out, const char *s, size_t len);
/* Formats h into out[71]. Only for HLCs this side creates: received ones are kept as bytes. */
void sr_hlc_format(char out[SR_HLC_LEN + 1], const sr_hlc *h);
/* Total order of HLCs: byte-wise comparison of their text (<0, 0, >0). */
int sr_hlc_cmp(const char *a, const char *b);

/* 1 when s matches ^[a-z][a-z0-9_]{0,62}$, else 0. */
int sr_model_name_valid(const char *s);

/* ---- canonical data, hashes, buckets ---- */

/* Canonical text of a JSON object (json_dumps with JSON_COMPACT | JSON_SORT_KEYS).
 * Returns a malloc'd string the caller frees, or NULL when data is not an object. */
char *sr_canonical(const json_t *data);

#define SR_FNV_OFFSET 0xcbf29ce484222325ULL
uint64_t sr_fnv1a64_update(uint64_t h, const void *data, size_t n);
uint64_t sr_fnv1a64(const void *data, size_t n);
/* fnv1a64(model "\n" record_id "\n" hlc "\n" canonical_data) */
uint64_t sr_record_hash(const char *model, const char *record_id, const char *hlc,
			const char *canonical_data);
/* fnv1a64(record_id) mod 256 */
unsigned sr_bucket(const char *record_id);
/* 16 lowercase hex digits into out[17]. */
void sr_hash_hex(char out[17], uint64_t h);
/* Parses 16 hex digits; 0 on success, -1 otherwise. */
int sr_hash_parse(uint64_t *out, const char *s);

/* ---- changes and records ---- */

typedef enum sr_op { SR_OP_UPSERT = 0, SR_OP_DELETE = 1 } sr_op;

typedef struct sr_change {
	int64_t seq; /* 0 when not (yet) assigned */
	char hlc[SR_HLC_LEN + 1];
	char model[SR_MODEL_MAX + 1];
	char record_id[SR_UUID_LEN + 1];
	sr_op op;
	char *data; /* canonical text, owned; NULL for a delete */
} sr_change;

/* Parses one change object {hlc, model, record_id, op, data[, seq]}. On failure returns
 * -1 and writes a one-line reason (naming the member) to err. out->data is the caller's:
 * release with sr_change_clear(). Members it does not know are ignored. */
int sr_change_parse(sr_change *out, const json_t *obj, char *err, size_t errlen);
/* The checks of a change's members, in the order and the words of every parser of a change
 * (sr_change_parse here, the client's page scanner): hlc, model, record_id and op are the
 * members' text, NULL when absent or not a string; seq_ok is 0 when "seq" is present, not
 * null, and not a positive integer; data is what "data" holds. 0, or -1 with the reason. */
enum { SR_DATA_NONE = 0, SR_DATA_OBJECT = 1, SR_DATA_OTHER = 2 }; /* NONE: absent or null */
int sr_change_check(const char *hlc, const char *model, const char *record_id, const char *op, int seq_ok,
		    int data, char *err, size_t errlen);
void sr_change_clear(sr_change *c);
/* Appends the change as JSON; with seq > 0 the object carries it. data is written as the
 * stored canonical text, byte for byte. */
void sr_change_write(sr_buf *b, const sr_change *c);
const char *sr_op_name(sr_op op);

/* Appends a record object {model, record_id, owner, hlc, deleted, data}. owner NULL or ""
 * is written as null; data NULL as null. */
void sr_record_write(sr_buf *b, const char *model, const char *record_id, const char *owner,
		     const char *hlc, int deleted, const char *data);

#ifdef __cplusplus
}
#endif
#endif
