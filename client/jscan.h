/*
 * A JSON scanner for the relay's pages: it validates the raw body and walks its members in
 * place, without building a tree, so a page of 1000 records costs one pass over its bytes.
 * Record data is kept as the text the relay served when that text is already canonical
 * (PROTOCOL.md section 2: the relay serves the canonical text it stored); any other text is
 * canonicalised by jansson, the reference, so the result is always what sr_canonical() gives.
 * Grammar and limits follow jansson's decoder (json_loads with flags 0): strict RFC 8259,
 * UTF-8 checked, no \u0000, nesting at most 2048 deep.
 */
#ifndef SR_CLIENT_JSCAN_H
#define SR_CLIENT_JSCAN_H

#include <stddef.h>
#include <stdint.h>

/* Validates the one JSON value at p (whitespace around it allowed) that must fill [p, end):
 * 0, or -1 when the text is malformed or something follows the value. */
int js_document(const char *p, const char *end);

/* 1 when [p, end) is only whitespace. */
int js_trailing(const char *p, const char *end);

/* A walk over the members of an object or the elements of an array, in place. */
struct js_iter {
	const char *p, *end;
	int n; /* members or elements seen so far */
	char close;
};

/* Starts a walk over the object ('{') or array ('[') at [v, vend): 0, or -1 when the value
 * is not one. The value must be valid (js_document checked it, or an iterator returned it). */
int js_open(struct js_iter *it, const char *v, const char *vend, char open);
/* The next object member: its key decoded into key[keyn] ("" when longer), its value's span
 * [*v, *vend). 1 a member, 0 the end, -1 malformed. */
int js_member(struct js_iter *it, char *key, size_t keyn, const char **v, const char **vend);
/* js_member that also tells whether the value's text is canonical: *canon, 1 on entry, is
 * cleared at anything jansson would write otherwise (for an object, js_canonical's answer). */
int js_member_c(struct js_iter *it, char *key, size_t keyn, const char **v, const char **vend, int *canon);
/* The next array element's span. 1 an element, 0 the end, -1 malformed. */
int js_element(struct js_iter *it, const char **v, const char **vend);

/* Decodes the string value [v, vend) into out[outn]: 0, -1 when it is not a string or
 * holds a NUL, -2 when it needs more than outn - 1 bytes. */
int js_strcpy(const char *v, const char *vend, char *out, size_t outn);
/* The decoded string value as a malloc'd copy; NULL when not a string (or out of memory). */
char *js_strdup(const char *v, const char *vend);
/* An integer value (no fraction or exponent, within int64): 0, or -1. */
int js_int(const char *v, const char *vend, int64_t *out);
/* 1 true, 0 false, -1 anything else. */
int js_bool(const char *v, const char *vend);
/* 1 when the value is null. */
int js_null(const char *v, const char *vend);

/* 1 when [v, v + n) is an object whose text is canonical, i.e. exactly what
 * json_dumps(json_loads(text), JSON_COMPACT | JSON_SORT_KEYS) returns; 0 when it is not or
 * when that cannot be told without jansson (escaped keys, for one). */
int js_canonical(const char *v, size_t n);
/* The canonical text of the object [v, v + n), malloc'd: a copy of the span when it is
 * canonical already, else jansson's. NULL when it is not an object (or out of memory). */
char *js_canonical_dup(const char *v, size_t n);

/* js_canonical_dup for a caller that knows canon, js_canonical's answer (js_member_c). */
char *js_canonical_copy(const char *v, size_t n, int canon);

/* The string member key of the object text obj[0..n) (the last one, as jansson keeps):
 * 1 found, its decoded value malloc'd in *out; 0 absent or not a string; -1 malformed. */
int js_get_str(const char *obj, size_t n, const char *key, char **out);

#endif
