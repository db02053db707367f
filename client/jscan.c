/* In-place JSON scanning of relay pages, and the canonical-text check (see jscan.h). */
#include "jscan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "syncrelay_codec.h"

#define MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

static const char *ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* ws inside a value being checked for canonical form: any whitespace makes it not canonical */
static const char *ws_c(const char *p, const char *end, int *canon)
{
	const char *q = ws(p, end);

	if (q != p)
		*canon = 0;
	return q;
}

/* 1 for the bytes a string holds as they are and that need no UTF-8 check: printable
 * ASCII but '"' and '\\' */
static const unsigned char plain[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* The length of the valid UTF-8 sequence at p (no overlongs, surrogates or code points
 * beyond U+10FFFF, as jansson checks), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned c = p[0];
	uint32_t cp;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0;
	if (c < 0xE0)
		n = 2, cp = c & 0x1F;
	else if (c < 0xF0)
		n = 3, cp = c & 0x0F;
	else if (c < 0xF5)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

static int hex4(const char *p, const char *end, uint32_t *out, int *upper_only)
{
	uint32_t v = 0;
	int i;

	if (end - p < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10), *upper_only = 0;
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* Appends one byte to the decoded output when there is room; counts it always. */
static void out_byte(char *out, size_t outn, size_t *len, char c)
{
	if (out && *len + 1 < outn)
		out[*len] = c;
	(*len)++;
}

static void out_cp(char *out, size_t outn, size_t *len, uint32_t cp)
{
	if (cp < 0x80) {
		out_byte(out, outn, len, (char)cp);
	} else if (cp < 0x800) {
		out_byte(out, outn, len, (char)(0xC0 | (cp >> 6)));
		out_byte(out, outn, len, (char)(0x80 | (cp & 0x3F)));
	} else if (cp < 0x10000) {
		out_byte(out, outn, len, (char)(0xE0 | (cp >> 12)));
		out_byte(out, outn, len, (char)(0x80 | ((cp >> 6) & 0x3F)));
		out_byte(out, outn, len, (char)(0x80 | (cp & 0x3F)));
	} else {
		out_byte(out, outn, len, (char)(0xF0 | (cp >> 18)));
		out_byte(out, outn, len, (char)(0x80 | ((cp >> 12) & 0x3F)));
		out_byte(out, outn, len, (char)(0x80 | ((cp >> 6) & 0x3F)));
		out_byte(out, outn, len, (char)(0x80 | (cp & 0x3F)));
	}
}

/* Walks the string literal at p (its opening quote): returns the byte after its closing
 * quote, or NULL when malformed. Decodes into out[outn] when out is given (*len counts every
 * decoded byte, so a longer string shows as *len >= outn). *canon is cleared when the text
 * is not how jansson writes it; *esc is set when it holds an escape. */
static const char *str_walk(const char *p, const char *end, char *out, size_t outn, size_t *len, int *canon,
			    int *esc)
{
	size_t n = 0;

	if (p >= end || *p != '"')
		return NULL;
	p++;
	while (p < end) {
		unsigned char c = (unsigned char)*p;
		uint32_t cp, lo;
		int upper = 1;
		size_t k;

		if (c == '"') {
			if (len)
				*len = n;
			if (out && outn)
				out[n < outn ? n : outn - 1] = '\0';
			return p + 1;
		}
		if (c < 0x20)
			return NULL;
		if (c < 0x80 && c != '\\') {
			/* the common case, a run of plain ASCII: copied or passed over at once */
			const char *run = p;

			while (++p < end && plain[(unsigned char)*p])
				;
			if (out && n + 1 < outn) {
				size_t m = (size_t)(p - run) < outn - 1 - n ? (size_t)(p - run) : outn - 1 - n;
				memcpy(out + n, run, m);
			}
			n += (size_t)(p - run);
			continue;
		}
		if (c != '\\') {
			k = utf8_len((const unsigned char *)p, (const unsigned char *)end);
			if (!k)
				return NULL;
			while (k--)
				out_byte(out, outn, &n, *p++);
			continue;
		}
		if (esc)
			*esc = 1;
		if (++p >= end)
			return NULL;
		switch (*p) {
		case '"': out_byte(out, outn, &n, '"'); p++; continue;
		case '\\': out_byte(out, outn, &n, '\\'); p++; continue;
		case 'b': out_byte(out, outn, &n, '\b'); p++; continue;
		case 'f': out_byte(out, outn, &n, '\f'); p++; continue;
		case 'n': out_byte(out, outn, &n, '\n'); p++; continue;
		case 'r': out_byte(out, outn, &n, '\r'); p++; continue;
		case 't': out_byte(out, outn, &n, '\t'); p++; continue;
		case '/': out_byte(out, outn, &n, '/'); p++; *canon = 0; continue;
		case 'u': break;
		default: return NULL;
		}
		if (hex4(p + 1, end, &cp, &upper))
			return NULL;
		p += 5;
		if (cp >= 0xD800 && cp <= 0xDBFF) {
			/* a high surrogate needs its low half next */
			if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &lo, &upper) || lo < 0xDC00 ||
			    lo > 0xDFFF)
				return NULL;
			p += 6;
			cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
		} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
			return NULL;
		}
		if (cp == 0)
			return NULL; /* jansson refuses NUL without JSON_ALLOW_NUL */
		/* jansson writes \u00XX (upper-case) only for the control characters without a
		 * short escape */
		if (cp >= 0x20 || cp == '\b' || cp == '\f' || cp == '\n' || cp == '\r' || cp == '\t' || !upper)
			*canon = 0;
		out_cp(out, outn, &n, cp);
	}
	return NULL;
}

/* 1 when the integer text [s, e) is how jansson prints the value it parses to. */
static int int_canonical(const char *s, const char *e)
{
	char buf[32];
	size_t digits = (size_t)(e - s) - (*s == '-');

	if (*s == '-' && s[1] == '0')
		return 0; /* -0 reads as 0 */
	if (digits < 19)
		return 1;
	if (digits > 19)
		return 0; /* beyond int64: jansson refuses it */
	memcpy(buf, s, (size_t)(e - s));
	buf[e - s] = '\0';
	errno = 0;
	(void)strtoll(buf, NULL, 10);
	return errno == 0;
}

/* 1 when the real text [s, e) is what jansson 2.14's dtostr writes for its value: %.17g,
 * ".0" when that shows neither '.' nor 'e', the exponent without '+' or leading zeros. */
static int real_canonical(const char *s, const char *e)
{
	char in[64], out[64], *endp, *x;
	size_t n = (size_t)(e - s), len;
	double v;

	if (n >= sizeof in)
		return 0;
	memcpy(in, s, n);
	in[n] = '\0';
	errno = 0;
	v = strtod(in, &endp);
	if (*endp || errno == ERANGE || !isfinite(v))
		return 0; /* another locale's decimal point, or out of range: jansson decides */
	len = (size_t)snprintf(out, sizeof out, "%.17g", v);
	if (len >= sizeof out - 3)
		return 0;
	if (!strchr(out, '.') && !strchr(out, 'e')) {
		memcpy(out + len, ".0", 3);
		len += 2;
	}
	x = strchr(out, 'e');
	if (x) {
		char *start = x + 1, *end = x + 2;

		if (*start == '-')
			start++;
		while (*end == '0')
			end++;
		if (end != start)
			memmove(start, end, strlen(end) + 1);
	}
	return !strcmp(in, out);
}

static const char *num_walk(const char *p, const char *end, int *canon)
{
	const char *s = p;
	int is_int = 1;

	if (p < end && *p == '-')
		p++;
	if (p >= end)
		return NULL;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (p < end && is_digit(*p))
			p++;
	else
		return NULL;
	if (p < end && *p == '.') {
		is_int = 0;
		if (++p >= end || !is_digit(*p))
			return NULL;
		while (p < end && is_digit(*p))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		is_int = 0;
		if (++p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || !is_digit(*p))
			return NULL;
		while (p < end && is_digit(*p))
			p++;
	}
	if (*canon)
		*canon = is_int ? int_canonical(s, p) : real_canonical(s, p);
	return p;
}

/* Compares two raw key spans as strcmp compares the keys (they hold no escapes). */
static int key_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	int r = memcmp(a, b, an < bn ? an : bn);

	return r ? r : an < bn ? -1 : an > bn;
}

/* Walks the value at p (no whitespace before it): the byte after it, or NULL when malformed.
 * *canon is cleared at anything that is not canonical text. */
static const char *val_walk(const char *p, const char *end, int depth, int *canon)
{
	if (p >= end)
		return NULL;
	switch (*p) {
	case '{': {
		const char *prev = NULL;
		size_t prevn = 0;
		int n = 0;

		if (depth >= MAX_DEPTH)
			return NULL;
		p++;
		for (;;) {
			const char *k;
			int esc = 0;

			p = ws_c(p, end, canon);
			if (p < end && *p == '}' && n == 0)
				return p + 1;
			k = p;
			p = str_walk(p, end, NULL, 0, NULL, canon, &esc);
			if (!p)
				return NULL;
			if (*canon) {
				/* keys sorted by their bytes, each once; an escaped key is left to jansson */
				if (esc || (prev && key_cmp(prev, prevn, k + 1, (size_t)(p - k - 2)) >= 0))
					*canon = 0;
				prev = k + 1;
				prevn = (size_t)(p - k - 2);
			}
			p = ws_c(p, end, canon);
			if (p >= end || *p != ':')
				return NULL;
			p = val_walk(ws_c(p + 1, end, canon), end, depth + 1, canon);
			if (!p)
				return NULL;
			n++;
			p = ws_c(p, end, canon);
			if (p >= end)
				return NULL;
			if (*p == '}')
				return p + 1;
			if (*p != ',')
				return NULL;
			p++;
		}
	}
	case '[': {
		int n = 0;

		if (depth >= MAX_DEPTH)
			return NULL;
		p++;
		for (;;) {
			p = ws_c(p, end, canon);
			if (p < end && *p == ']' && n == 0)
				return p + 1;
			p = val_walk(p, end, depth + 1, canon);
			if (!p)
				return NULL;
			n++;
			p = ws_c(p, end, canon);
			if (p >= end)
				return NULL;
			if (*p == ']')
				return p + 1;
			if (*p != ',')
				return NULL;
			p++;
		}
	}
	case '"':
		return str_walk(p, end, NULL, 0, NULL, canon, NULL);
	case 't':
		return end - p >= 4 && !memcmp(p, "true", 4) ? p + 4 : NULL;
	case 'f':
		return end - p >= 5 && !memcmp(p, "false", 5) ? p + 5 : NULL;
	case 'n':
		return end - p >= 4 && !memcmp(p, "null", 4) ? p + 4 : NULL;
	default:
		return num_walk(p, end, canon);
	}
}

int js_document(const char *p, const char *end)
{
	int canon = 0;

	p = ws(p, end);
	p = val_walk(p, end, 0, &canon);
	return p && ws(p, end) == end ? 0 : -1;
}

int js_trailing(const char *p, const char *end)
{
	return ws(p, end) == end;
}

int js_open(struct js_iter *it, const char *v, const char *vend, char open)
{
	v = ws(v, vend);
	if (v >= vend || *v != open)
		return -1;
	it->p = v + 1;
	it->end = vend;
	it->n = 0;
	it->close = open == '{' ? '}' : ']';
	return 0;
}

/* Moves past the separator before the next item: 1 an item follows, 0 the end, -1 malformed. */
static int next_item(struct js_iter *it)
{
	it->p = ws(it->p, it->end);
	if (it->p >= it->end)
		return -1;
	if (*it->p == it->close && it->n == 0)
		return 0;
	if (it->n > 0) {
		if (*it->p == it->close)
			return 0;
		if (*it->p != ',')
			return -1;
		it->p = ws(it->p + 1, it->end);
	}
	return 1;
}

int js_member(struct js_iter *it, char *key, size_t keyn, const char **v, const char **vend)
{
	int canon = 0;

	return js_member_c(it, key, keyn, v, vend, &canon);
}

int js_member_c(struct js_iter *it, char *key, size_t keyn, const char **v, const char **vend, int *vcanon)
{
	int canon = 0, r = next_item(it);
	size_t len = 0;
	const char *p;

	if (r <= 0)
		return r;
	p = str_walk(it->p, it->end, key, keyn, &len, &canon, NULL);
	if (!p)
		return -1;
	if (len >= keyn || memchr(key, '\0', len))
		key[0] = '\0';
	p = ws(p, it->end);
	if (p >= it->end || *p != ':')
		return -1;
	*v = ws(p + 1, it->end);
	*vend = val_walk(*v, it->end, 1, vcanon);
	if (!*vend)
		return -1;
	it->p = *vend;
	it->n++;
	return 1;
}

int js_element(struct js_iter *it, const char **v, const char **vend)
{
	int canon = 0, r = next_item(it);

	if (r <= 0)
		return r;
	*v = it->p;
	*vend = val_walk(*v, it->end, 1, &canon);
	if (!*vend)
		return -1;
	it->p = *vend;
	it->n++;
	return 1;
}

int js_strcpy(const char *v, const char *vend, char *out, size_t outn)
{
	int canon = 0;
	size_t len = 0;
	const char *p = str_walk(v, vend, out, outn, &len, &canon, NULL);

	if (!p || ws(p, vend) != vend)
		return -1;
	if (len >= outn)
		return -2;
	return memchr(out, '\0', len) ? -1 : 0;
}

char *js_strdup(const char *v, const char *vend)
{
	int canon = 0;
	size_t len = 0;
	const char *p = str_walk(v, vend, NULL, 0, &len, &canon, NULL);
	char *s;

	if (!p || ws(p, vend) != vend || !(s = malloc(len + 1)))
		return NULL;
	if (js_strcpy(v, vend, s, len + 1)) {
		free(s);
		return NULL;
	}
	return s;
}

int js_int(const char *v, const char *vend, int64_t *out)
{
	char buf[32];
	int canon = 0;
	const char *p = num_walk(v, vend, &canon);
	long long x;

	if (!p || ws(p, vend) != vend || (size_t)(p - v) >= sizeof buf || memchr(v, '.', (size_t)(p - v)) ||
	    memchr(v, 'e', (size_t)(p - v)) || memchr(v, 'E', (size_t)(p - v)))
		return -1;
	memcpy(buf, v, (size_t)(p - v));
	buf[p - v] = '\0';
	errno = 0;
	x = strtoll(buf, NULL, 10);
	if (errno)
		return -1;
	*out = (int64_t)x;
	return 0;
}

int js_bool(const char *v, const char *vend)
{
	size_t n = (size_t)(vend - v);

	if (n == 4 && !memcmp(v, "true", 4))
		return 1;
	if (n == 5 && !memcmp(v, "false", 5))
		return 0;
	return -1;
}

int js_null(const char *v, const char *vend)
{
	return vend - v == 4 && !memcmp(v, "null", 4);
}

int js_canonical(const char *v, size_t n)
{
	int canon = 1;
	const char *p;

	if (!n || *v != '{')
		return 0;
	p = val_walk(v, v + n, 0, &canon);
	return p == v + n && canon;
}

char *js_canonical_dup(const char *v, size_t n)
{
	return js_canonical_copy(v, n, js_canonical(v, n));
}

char *js_canonical_copy(const char *v, size_t n, int canon)
{
	json_t *j;
	char *s;

	if (canon && n && *v == '{') {
		s = malloc(n + 1);
		if (s) {
			memcpy(s, v, n);
			s[n] = '\0';
		}
		return s;
	}
	j = json_loadb(v, n, 0, NULL);
	s = sr_canonical(j); /* NULL when not an object */
	json_decref(j);
	return s;
}

int js_get_str(const char *obj, size_t n, const char *key, char **out)
{
	struct js_iter it;
	size_t kn = strlen(key) + 2;
	char small[128], *kb = kn <= sizeof small ? small : malloc(kn);
	const char *v, *vend;
	int r, found = 0;

	*out = NULL;
	if (!kb)
		return -1;
	if (js_open(&it, obj, obj + n, '{')) {
		r = -1;
		goto done;
	}
	while ((r = js_member(&it, kb, kn, &v, &vend)) == 1) {
		if (strcmp(kb, key))
			continue;
		/* a later duplicate replaces an earlier one, as in jansson */
		free(*out);
		*out = *v == '"' ? js_strdup(v, vend) : NULL;
		found = *out != NULL;
	}
done:
	if (kb != small)
		free(kb);
	if (r < 0) {
		free(*out);
		*out = NULL;
		return -1;
	}
	return found;
}
