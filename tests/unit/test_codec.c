/*
 * Unit tests of the shared codec (client/codec.c): UUIDs, HLCs, model names, canonical
 * data, FNV-1a hashes and buckets, and the JSON of changes and records (PROTOCOL.md 2, 4).
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "syncrelay_codec.h"

#define UUID_A "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
#define UUID_B "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
#define HLC_A "0000018f2b3c4d5e-0000000000000001-" UUID_A

/* ---- helpers ---- */

static json_t *load(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);

	cr_assert_not_null(j, "test input does not parse: %s (%s)", text, e.text);
	return j;
}

/* sr_canonical of text must be exactly want, and equal to the reference json_dumps. */
static void expect_canonical(const char *text, const char *want)
{
	json_t *j = load(text);
	char *got = sr_canonical(j);
	char *ref = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

	cr_assert_not_null(got, "sr_canonical(%s) returned NULL", text);
	cr_assert_not_null(ref);
	cr_expect_str_eq(got, ref, "sr_canonical differs from jansson for %s", text);
	cr_expect_str_eq(got, want, "canonical text of %s", text);
	free(got);
	free(ref);
	json_decref(j);
}

static int hlc_ok(const char *s)
{
	return sr_hlc_parse(NULL, s, strlen(s)) == 0;
}

static int uuid_ok(const char *s)
{
	return sr_uuid_valid(s, strlen(s));
}

static int sign(int v)
{
	return (v > 0) - (v < 0);
}

/* ---- UUIDs ---- */

Test(uuid, accepts_canonical_lowercase)
{
	cr_expect(uuid_ok(UUID_A));
	cr_expect(uuid_ok(UUID_B));
	cr_expect(uuid_ok("00000000-0000-0000-0000-000000000000"));
	cr_expect(uuid_ok("ffffffff-ffff-ffff-ffff-ffffffffffff"));
}

Test(uuid, rejects_uppercase)
{
	cr_expect_not(uuid_ok("0F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A"));
	cr_expect_not(uuid_ok("0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1A"));
}

Test(uuid, rejects_wrong_length)
{
	cr_expect_not(uuid_ok(""));
	cr_expect_not(uuid_ok("0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1"));
	cr_expect_not(uuid_ok("0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1aa"));
	/* the length argument is what counts, not the NUL */
	cr_expect_not(sr_uuid_valid(UUID_A, SR_UUID_LEN - 1));
	cr_expect_not(sr_uuid_valid(UUID_A "0", SR_UUID_LEN + 1));
	cr_expect(sr_uuid_valid(UUID_A "trailing", SR_UUID_LEN));
}

Test(uuid, rejects_misplaced_dashes)
{
	cr_expect_not(uuid_ok("0f8e7d6c5-b4a-4392-8170-6f5e4d3c2b1a"));
	cr_expect_not(uuid_ok("0f8e7d6c-5b4a4-392-8170-6f5e4d3c2b1a"));
	cr_expect_not(uuid_ok("0f8e7d6c-5b4a-43928-170-6f5e4d3c2b1a"));
	cr_expect_not(uuid_ok("0f8e7d6c-5b4a-4392-81706-f5e4d3c2b1a"));
	cr_expect_not(uuid_ok("0f8e7d6c05b4a-4392-8170-6f5e4d3c2b1a"));
	cr_expect_not(uuid_ok("0f8e7d6c5b4a43928170-6f5e4d3c2b1a---"));
	cr_expect_not(uuid_ok("0f8e7d6c5b4a439281706f5e4d3c2b1a")); /* 32 hex, no dashes */
	cr_expect_not(uuid_ok("------------------------------------"));
}

Test(uuid, rejects_non_hex)
{
	cr_expect_not(uuid_ok("0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1g"));
	cr_expect_not(uuid_ok("zf8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"));
	cr_expect_not(uuid_ok("0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1 "));
	cr_expect_not(uuid_ok("0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b/a"));
	cr_expect_not(sr_uuid_valid("0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b\0a", SR_UUID_LEN));
}

Test(uuid, rejects_braces_and_urn)
{
	cr_expect_not(uuid_ok("{0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a}"));
	cr_expect_not(uuid_ok("{0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b}"));
	cr_expect_not(uuid_ok("urn:uuid:0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"));
}

Test(uuid, rejects_null)
{
	cr_expect_not(sr_uuid_valid(NULL, SR_UUID_LEN));
	cr_expect_not(sr_uuid_valid(NULL, 0));
}

Test(uuid, random_is_canonical_version4_and_differs)
{
	char a[SR_UUID_LEN + 1], b[SR_UUID_LEN + 1];
	int i;

	for (i = 0; i < 64; i++) {
		memset(a, 'x', sizeof a);
		cr_assert_eq(sr_uuid_random(a), 0);
		cr_assert_eq(strlen(a), SR_UUID_LEN);
		cr_assert(uuid_ok(a), "not canonical: %s", a);
		cr_assert_eq(a[14], '4', "version nibble of %s", a);
		cr_assert(strchr("89ab", a[19]) != NULL, "variant nibble of %s", a);
	}
	cr_assert_eq(sr_uuid_random(a), 0);
	cr_assert_eq(sr_uuid_random(b), 0);
	cr_expect_str_neq(a, b);
}

/* ---- HLCs ---- */

Test(hlc, accepts_valid)
{
	cr_expect(hlc_ok(HLC_A));
	cr_expect(hlc_ok("0000000000000000-0000000000000000-00000000-0000-0000-0000-000000000000"));
	cr_expect(hlc_ok("ffffffffffffffff-ffffffffffffffff-" UUID_B));
	cr_expect_eq(strlen(HLC_A), SR_HLC_LEN);
}

Test(hlc, parses_fields)
{
	sr_hlc h;

	memset(&h, 0x55, sizeof h);
	cr_assert_eq(sr_hlc_parse(&h, HLC_A, strlen(HLC_A)), 0);
	cr_expect_eq(h.ms, UINT64_C(0x0000018f2b3c4d5e));
	cr_expect_eq(h.counter, UINT64_C(1));
	cr_expect_str_eq(h.device, UUID_A);

	cr_assert_eq(sr_hlc_parse(&h, "ffffffffffffffff-abcdef0123456789-" UUID_B, SR_HLC_LEN), 0);
	cr_expect_eq(h.ms, UINT64_MAX);
	cr_expect_eq(h.counter, UINT64_C(0xabcdef0123456789));
	cr_expect_str_eq(h.device, UUID_B);
}

Test(hlc, rejects_uppercase_hex)
{
	cr_expect_not(hlc_ok("0000018F2B3C4D5E-0000000000000001-" UUID_A));
	cr_expect_not(hlc_ok("0000018f2b3c4d5e-000000000000000A-" UUID_A));
	cr_expect_not(hlc_ok("0000018f2b3c4d5e-0000000000000001-0F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A"));
}

Test(hlc, rejects_wrong_length)
{
	char s71[SR_HLC_LEN + 2];

	cr_expect_not(hlc_ok("000018f2b3c4d5e-0000000000000001-" UUID_A));   /* 69 */
	cr_expect_not(hlc_ok("00000018f2b3c4d5e-0000000000000001-" UUID_A)); /* 71 */
	cr_expect_not(hlc_ok("0000018f2b3c4d5e-000000000000001-" UUID_A));   /* 69 */
	cr_expect_not(hlc_ok(HLC_A "0"));                                    /* 71 */
	snprintf(s71, sizeof s71, "%sa", HLC_A);
	cr_expect_not(sr_hlc_parse(NULL, s71, SR_HLC_LEN + 1) == 0);
	cr_expect_not(sr_hlc_parse(NULL, HLC_A, SR_HLC_LEN - 1) == 0);
	cr_expect_not(hlc_ok(""));
}

Test(hlc, rejects_wrong_separators)
{
	cr_expect_not(hlc_ok("0000018f2b3c4d5e_0000000000000001-" UUID_A));
	cr_expect_not(hlc_ok("0000018f2b3c4d5e-0000000000000001_" UUID_A));
	cr_expect_not(hlc_ok("0000018f2b3c4d5e:0000000000000001:" UUID_A));
	cr_expect_not(hlc_ok("0000018f2b3c4d5e00000000000000001-" UUID_A));
	cr_expect_not(hlc_ok("0000018f2b3c4d5e-00000000000000010" UUID_A));
}

Test(hlc, rejects_bad_uuid_part)
{
	cr_expect_not(hlc_ok("0000018f2b3c4d5e-0000000000000001-0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1g"));
	cr_expect_not(hlc_ok("0000018f2b3c4d5e-0000000000000001-0f8e7d6c-5b4a-4392-81706-f5e4d3c2b1a"));
	cr_expect_not(hlc_ok("0000018f2b3c4d5e-0000000000000001-0f8e7d6c05b4a-4392-8170-6f5e4d3c2b1a"));
}

Test(hlc, rejects_non_hex)
{
	cr_expect_not(hlc_ok("0000018f2b3c4d5g-0000000000000001-" UUID_A));
	cr_expect_not(hlc_ok("0000018f2b3c4d5e-000000000000000z-" UUID_A));
	cr_expect_not(hlc_ok(" 000018f2b3c4d5e-0000000000000001-" UUID_A));
	cr_expect_not(hlc_ok("-000018f2b3c4d5e-0000000000000001-" UUID_A));
	cr_expect_not(hlc_ok("0000018f2b3c4d5e-+000000000000001-" UUID_A));
}

Test(hlc, rejects_null)
{
	sr_hlc h;

	cr_expect_neq(sr_hlc_parse(&h, NULL, SR_HLC_LEN), 0);
	cr_expect_neq(sr_hlc_parse(NULL, NULL, 0), 0);
}

Test(hlc, format_parse_round_trip)
{
	const uint64_t ms[] = {0, 1, UINT64_C(0x18f2b3c4d5e), UINT64_C(0x7fffffffffffffff), UINT64_MAX};
	const uint64_t ctr[] = {0, 1, 0xff, UINT64_C(0x100000000), UINT64_MAX};
	size_t i, k;

	for (i = 0; i < sizeof ms / sizeof ms[0]; i++)
		for (k = 0; k < sizeof ctr / sizeof ctr[0]; k++) {
			sr_hlc h = {.ms = ms[i], .counter = ctr[k]}, back;
			char text[SR_HLC_LEN + 1], again[SR_HLC_LEN + 1];

			strcpy(h.device, k % 2 ? UUID_A : UUID_B);
			sr_hlc_format(text, &h);
			cr_assert_eq(strlen(text), SR_HLC_LEN, "formatted: %s", text);
			cr_assert(hlc_ok(text), "format gave an invalid HLC: %s", text);
			cr_assert_eq(sr_hlc_parse(&back, text, strlen(text)), 0);
			cr_expect_eq(back.ms, h.ms);
			cr_expect_eq(back.counter, h.counter);
			cr_expect_str_eq(back.device, h.device);
			sr_hlc_format(again, &back);
			cr_expect_str_eq(again, text);
		}
}

Test(hlc, format_is_lowercase_zero_padded)
{
	sr_hlc h = {.ms = 0xABCDEF, .counter = 0x2A};
	char text[SR_HLC_LEN + 1];

	strcpy(h.device, UUID_A);
	sr_hlc_format(text, &h);
	cr_expect_str_eq(text, "0000000000abcdef-000000000000002a-" UUID_A);
}

Test(hlc, parse_keeps_text_byte_for_byte)
{
	/* parse then format of a received HLC gives back its bytes */
	sr_hlc h;
	char text[SR_HLC_LEN + 1];

	cr_assert_eq(sr_hlc_parse(&h, HLC_A, SR_HLC_LEN), 0);
	sr_hlc_format(text, &h);
	cr_expect_str_eq(text, HLC_A);
}

static int tuple_cmp(const sr_hlc *a, const sr_hlc *b)
{
	if (a->ms != b->ms)
		return a->ms < b->ms ? -1 : 1;
	if (a->counter != b->counter)
		return a->counter < b->counter ? -1 : 1;
	return sign(strcmp(a->device, b->device));
}

Test(hlc, order_is_bytewise)
{
	const char *a = "0000018f2b3c4d5e-0000000000000001-" UUID_A;
	const char *b = "0000018f2b3c4d5e-0000000000000002-" UUID_A;

	cr_expect_lt(sr_hlc_cmp(a, b), 0);
	cr_expect_gt(sr_hlc_cmp(b, a), 0);
	cr_expect_eq(sr_hlc_cmp(a, a), 0);
	cr_expect_eq(sign(sr_hlc_cmp(a, b)), sign(memcmp(a, b, SR_HLC_LEN)));
	/* 'a' (0x61) sorts after '9' (0x39): byte order, which is numeric order of lowercase hex */
	cr_expect_lt(sr_hlc_cmp("0000000000000009-0000000000000000-" UUID_A,
				"000000000000000a-0000000000000000-" UUID_A), 0);
}

Test(hlc, counter_rollover_across_ms)
{
	sr_hlc lo = {.ms = 1000, .counter = UINT64_MAX}, hi = {.ms = 1001, .counter = 0};
	char a[SR_HLC_LEN + 1], b[SR_HLC_LEN + 1];

	strcpy(lo.device, "ffffffff-ffff-4fff-bfff-ffffffffffff");
	strcpy(hi.device, "00000000-0000-4000-8000-000000000000");
	sr_hlc_format(a, &lo);
	sr_hlc_format(b, &hi);
	cr_expect_lt(sr_hlc_cmp(a, b), 0, "%s should sort before %s", a, b);
	cr_expect_gt(sr_hlc_cmp(b, a), 0);

	/* a bigger counter in the same ms sorts later, whatever the device */
	hi.ms = 1000;
	hi.counter = 0x10;
	lo.counter = 0xf;
	sr_hlc_format(a, &lo);
	sr_hlc_format(b, &hi);
	cr_expect_lt(sr_hlc_cmp(a, b), 0, "%s should sort before %s", a, b);
}

Test(hlc, order_matches_field_order)
{
	const uint64_t ms[] = {0, 1, 0xf, 0x10, 0xff, UINT64_C(0x18f2b3c4d5e), UINT64_MAX - 1, UINT64_MAX};
	const uint64_t ctr[] = {0, 9, 0xa, 0xffff, UINT64_C(0x10000), UINT64_MAX};
	const char *dev[] = {"00000000-0000-4000-8000-000000000000", UUID_A, "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1b",
			     UUID_B, "ffffffff-ffff-4fff-bfff-ffffffffffff"};
	enum { NM = sizeof ms / sizeof ms[0], NC = sizeof ctr / sizeof ctr[0], ND = sizeof dev / sizeof dev[0] };
	static sr_hlc h[NM * NC * ND];
	static char t[NM * NC * ND][SR_HLC_LEN + 1];
	size_t n = 0, i, k;

	for (i = 0; i < NM; i++)
		for (k = 0; k < NC; k++) {
			size_t d;
			for (d = 0; d < ND; d++) {
				h[n].ms = ms[i];
				h[n].counter = ctr[k];
				strcpy(h[n].device, dev[d]);
				sr_hlc_format(t[n], &h[n]);
				n++;
			}
		}
	for (i = 0; i < n; i++)
		for (k = 0; k < n; k++)
			if (sign(sr_hlc_cmp(t[i], t[k])) != tuple_cmp(&h[i], &h[k]))
				cr_assert_fail("order of %s and %s: text %d, fields %d", t[i], t[k],
					       sign(sr_hlc_cmp(t[i], t[k])), tuple_cmp(&h[i], &h[k]));
}

/* ---- model names ---- */

Test(model_name, accepts_valid)
{
	char longest[SR_MODEL_MAX + 1];

	cr_expect(sr_model_name_valid("a"));
	cr_expect(sr_model_name_valid("entry"));
	cr_expect(sr_model_name_valid("content_identity"));
	cr_expect(sr_model_name_valid("t0_9"));
	memset(longest, 'a', SR_MODEL_MAX);
	longest[SR_MODEL_MAX] = '\0';
	cr_expect(sr_model_name_valid(longest), "63 characters is the longest allowed");
}

Test(model_name, rejects_invalid)
{
	char too_long[SR_MODEL_MAX + 2];

	cr_expect_not(sr_model_name_valid(NULL));
	cr_expect_not(sr_model_name_valid(""));
	cr_expect_not(sr_model_name_valid("Entry"));
	cr_expect_not(sr_model_name_valid("entrY"));
	cr_expect_not(sr_model_name_valid("_entry"));
	cr_expect_not(sr_model_name_valid("0entry"));
	cr_expect_not(sr_model_name_valid("en-try"));
	cr_expect_not(sr_model_name_valid("en try"));
	cr_expect_not(sr_model_name_valid("entr\xc3\xa9"));
	memset(too_long, 'a', SR_MODEL_MAX + 1);
	too_long[SR_MODEL_MAX + 1] = '\0';
	cr_expect_not(sr_model_name_valid(too_long), "64 characters is too long");
}

/* ---- canonical text ---- */

Test(canonical, sorts_keys_without_whitespace)
{
	expect_canonical("{ \"b\" : 1 , \"a\" : 2 , \"c\" : [ 1 , 2 , { } ] }", "{\"a\":2,\"b\":1,\"c\":[1,2,{}]}");
	expect_canonical("{}", "{}");
}

Test(canonical, sorts_keys_by_utf8_bytes)
{
	/* "B" 0x42 < "_" 0x5f < "a" < "aa" < "b" < "z" < "é" 0xc3 0xa9 < "😀" 0xf0 */
	expect_canonical("{\"\xc3\xa9\":1,\"b\":2,\"\xf0\x9f\x98\x80\":3,\"aa\":4,\"_\":5,\"a\":6,\"B\":7,\"z\":8}",
			 "{\"B\":7,\"_\":5,\"a\":6,\"aa\":4,\"b\":2,\"z\":8,\"\xc3\xa9\":1,\"\xf0\x9f\x98\x80\":3}");
}

Test(canonical, sorts_nested_objects)
{
	expect_canonical("{\"z\":{\"y\":{\"b\":null,\"a\":true}},\"a\":[{\"d\":1,\"c\":false}]}",
			 "{\"a\":[{\"c\":false,\"d\":1}],\"z\":{\"y\":{\"a\":true,\"b\":null}}}");
}

Test(canonical, prints_numbers)
{
	expect_canonical("{\"i\":-42,\"z\":0,\"big\":9223372036854775807,\"neg\":-9223372036854775808}",
			 "{\"big\":9223372036854775807,\"i\":-42,\"neg\":-9223372036854775808,\"z\":0}");
	/* reals: %.17g, ".0" added when needed, exponent without "+" or leading zeros */
	expect_canonical("{\"r\":1.5}", "{\"r\":1.5}");
	expect_canonical("{\"e\":1e100}", "{\"e\":1e100}");
	expect_canonical("{\"e\":1E+22}", "{\"e\":1e22}");
	expect_canonical("{\"w\":2.0}", "{\"w\":2.0}");
	expect_canonical("{\"w\":-0.0}", "{\"w\":-0.0}");
	expect_canonical("{\"t\":0.1}", "{\"t\":0.10000000000000001}");
	expect_canonical("{\"s\":1e-7}", "{\"s\":9.9999999999999995e-8}");
}

Test(canonical, escapes_control_characters)
{
	expect_canonical("{\"c\":\"a\\u0001b\\u001fc\\n\\t\\r\\b\\f\\\"\\\\\"}",
			 "{\"c\":\"a\\u0001b\\u001Fc\\n\\t\\r\\b\\f\\\"\\\\\"}");
	/* "/" and DEL are not escaped */
	expect_canonical("{\"s\":\"\\/\\u007f\"}", "{\"s\":\"/\x7f\"}");
}

Test(canonical, passes_unicode_through)
{
	expect_canonical("{\"u\":\"\\u00e9\\ud83d\\ude00\\u4e2d\"}", "{\"u\":\"\xc3\xa9\xf0\x9f\x98\x80\xe4\xb8\xad\"}");
	expect_canonical("{\"\xc3\xa9t\xc3\xa9\":\"\xe4\xb8\xad\"}", "{\"\xc3\xa9t\xc3\xa9\":\"\xe4\xb8\xad\"}");
}

Test(canonical, rejects_non_objects)
{
	json_t *v[] = {json_array(), json_string("x"), json_integer(1), json_real(1.5), json_true(),
		       json_null()};
	size_t i;

	cr_expect_null(sr_canonical(NULL));
	for (i = 0; i < sizeof v / sizeof v[0]; i++) {
		char *s = sr_canonical(v[i]);
		cr_expect_null(s, "non-object %zu gave %s", i, s ? s : "");
		free(s);
		json_decref(v[i]);
	}
}

/* ---- FNV-1a 64, record hash, buckets, hash hex ---- */

Test(fnv, known_vectors)
{
	cr_expect_eq(sr_fnv1a64("", 0), UINT64_C(0xcbf29ce484222325));
	cr_expect_eq(sr_fnv1a64("a", 1), UINT64_C(0xaf63dc4c8601ec8c));
	cr_expect_eq(sr_fnv1a64("foobar", 6), UINT64_C(0x85944171f73967e8));
	cr_expect_eq(SR_FNV_OFFSET, UINT64_C(0xcbf29ce484222325));
}

Test(fnv, update_is_incremental)
{
	uint64_t h = sr_fnv1a64_update(SR_FNV_OFFSET, "foo", 3);

	h = sr_fnv1a64_update(h, "bar", 3);
	cr_expect_eq(h, UINT64_C(0x85944171f73967e8));
	cr_expect_eq(sr_fnv1a64_update(SR_FNV_OFFSET, "", 0), SR_FNV_OFFSET);
}

Test(fnv, uses_bytes_not_chars)
{
	/* bytes >= 0x80 must not be sign-extended */
	const unsigned char hi[] = {0xff};
	uint64_t want = (SR_FNV_OFFSET ^ 0xff) * UINT64_C(0x100000001b3);

	cr_expect_eq(sr_fnv1a64(hi, 1), want);
}

static uint64_t record_hash_by_hand(const char *model, const char *rid, const char *hlc, const char *data)
{
	char buf[1024];
	int n = snprintf(buf, sizeof buf, "%s\n%s\n%s\n%s", model, rid, hlc, data);

	cr_assert(n > 0 && (size_t)n < sizeof buf);
	return sr_fnv1a64(buf, (size_t)n);
}

Test(record_hash, is_fnv_of_joined_fields)
{
	const char *data = "{\"name\":\"a.txt\",\"size\":12}";
	uint64_t h = sr_record_hash("entry", UUID_B, HLC_A, data);

	cr_expect_eq(h, record_hash_by_hand("entry", UUID_B, HLC_A, data));
	cr_expect_eq(sr_record_hash("tag", UUID_A, HLC_A, "{}"), record_hash_by_hand("tag", UUID_A, HLC_A, "{}"));
	cr_expect_eq(sr_record_hash("content_identity", UUID_A, HLC_A, "{\"u\":\"\xc3\xa9\"}"),
		     record_hash_by_hand("content_identity", UUID_A, HLC_A, "{\"u\":\"\xc3\xa9\"}"));
}

Test(record_hash, changes_with_every_field)
{
	const char *data = "{\"a\":1}";
	uint64_t h = sr_record_hash("entry", UUID_B, HLC_A, data);

	cr_expect_neq(h, sr_record_hash("entrx", UUID_B, HLC_A, data));
	cr_expect_neq(h, sr_record_hash("entry", UUID_A, HLC_A, data));
	cr_expect_neq(h, sr_record_hash("entry", UUID_B, "0000018f2b3c4d5e-0000000000000002-" UUID_A, data));
	cr_expect_neq(h, sr_record_hash("entry", UUID_B, HLC_A, "{\"a\":2}"));
	/* the separators matter: moving a byte across a field boundary changes the hash */
	cr_expect_neq(sr_record_hash("ab", "c", "d", "e"), sr_record_hash("a", "bc", "d", "e"));
}

Test(bucket, is_fnv_of_record_id_mod_256)
{
	const char *ids[] = {UUID_A, UUID_B, "00000000-0000-0000-0000-000000000000", "a", ""};
	size_t i;
	int j;

	cr_expect_eq(sr_bucket("a"), 0x8c); /* fnv1a64("a") = 0xaf63dc4c8601ec8c */
	cr_expect_eq(sr_bucket("foobar"), 0xe8);
	cr_expect_eq(sr_bucket(""), 0x25);
	for (i = 0; i < sizeof ids / sizeof ids[0]; i++)
		cr_expect_eq(sr_bucket(ids[i]), (unsigned)(sr_fnv1a64(ids[i], strlen(ids[i])) % 256), "%s",
			     ids[i]);
	for (j = 0; j < 2000; j++) {
		char id[SR_UUID_LEN + 1];
		unsigned bk;

		cr_assert_eq(sr_uuid_random(id), 0);
		bk = sr_bucket(id);
		cr_assert_lt(bk, SR_BUCKETS);
		cr_assert_eq(bk, (unsigned)(sr_fnv1a64(id, SR_UUID_LEN) % 256), "%s", id);
	}
}

Test(hash_hex, is_16_lowercase_digits)
{
	char out[17];
	size_t i;

	sr_hash_hex(out, 0);
	cr_expect_str_eq(out, "0000000000000000");
	sr_hash_hex(out, UINT64_C(0xcbf29ce484222325));
	cr_expect_str_eq(out, "cbf29ce484222325");
	sr_hash_hex(out, UINT64_MAX);
	cr_expect_str_eq(out, "ffffffffffffffff");
	sr_hash_hex(out, UINT64_C(0xABCDEF));
	cr_expect_str_eq(out, "0000000000abcdef");
	cr_expect_eq(strlen(out), 16);
	for (i = 0; i < 16; i++)
		cr_expect(strchr("0123456789abcdef", out[i]) != NULL);
}

Test(hash_hex, parse_round_trips)
{
	const uint64_t v[] = {0, 1, UINT64_C(0xcbf29ce484222325), UINT64_C(0x85944171f73967e8),
			      UINT64_C(0x8000000000000000), UINT64_MAX};
	size_t i;

	for (i = 0; i < sizeof v / sizeof v[0]; i++) {
		char out[17];
		uint64_t back = ~v[i];

		sr_hash_hex(out, v[i]);
		cr_assert_eq(sr_hash_parse(&back, out), 0, "%s", out);
		cr_expect_eq(back, v[i], "%s", out);
	}
}

Test(hash_hex, parse_rejects_bad_input)
{
	const char *bad[] = {"", "cbf29ce48422232", "cbf29ce4842223255", "cbf29ce48422232g",
			     " cbf29ce48422232", "0xcbf29ce4842223", "-bf29ce484222325", "cbf29ce48422232 "};
	uint64_t out = 42;
	size_t i;

	cr_expect_neq(sr_hash_parse(&out, NULL), 0);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_expect_neq(sr_hash_parse(&out, bad[i]), 0, "accepted \"%s\"", bad[i]);
	cr_expect_eq(out, 42, "a rejected input must not write the output");
}

/* ---- changes ---- */

struct parsed {
	sr_change c;
	char err[256];
	int rc;
};

static void parse_text(struct parsed *p, const char *text)
{
	json_t *j = load(text);

	memset(p->err, 0, sizeof p->err);
	p->rc = sr_change_parse(&p->c, j, p->err, sizeof p->err);
	json_decref(j);
}

/* The change must be refused with a message that contains `names`. */
static void expect_refused(const char *text, const char *names)
{
	struct parsed p;

	parse_text(&p, text);
	cr_expect_eq(p.rc, -1, "accepted: %s", text);
	cr_expect(strstr(p.err, names) != NULL, "error \"%s\" for %s should name %s", p.err, text, names);
	cr_expect_null(p.c.data);
	sr_change_clear(&p.c);
}

#define CH_HLC "\"hlc\":\"" HLC_A "\""
#define CH_MODEL "\"model\":\"entry\""
#define CH_RID "\"record_id\":\"" UUID_B "\""

Test(change, parses_upsert)
{
	struct parsed p;

	parse_text(&p, "{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"upsert\",\"data\":{\"b\":1, \"a\":[true]},"
		       "\"unknown\":7}");
	cr_assert_eq(p.rc, 0, "refused: %s", p.err);
	cr_expect_str_eq(p.c.hlc, HLC_A);
	cr_expect_str_eq(p.c.model, "entry");
	cr_expect_str_eq(p.c.record_id, UUID_B);
	cr_expect_eq(p.c.op, SR_OP_UPSERT);
	cr_expect_eq(p.c.seq, 0);
	cr_assert_not_null(p.c.data);
	cr_expect_str_eq(p.c.data, "{\"a\":[true],\"b\":1}");
	sr_change_clear(&p.c);
	cr_expect_null(p.c.data);
}

Test(change, parses_delete)
{
	struct parsed p;

	parse_text(&p, "{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"delete\"}");
	cr_assert_eq(p.rc, 0, "refused: %s", p.err);
	cr_expect_eq(p.c.op, SR_OP_DELETE);
	cr_expect_null(p.c.data);
	cr_expect_str_eq(p.c.record_id, UUID_B);
	sr_change_clear(&p.c);

	parse_text(&p, "{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"delete\",\"data\":null}");
	cr_assert_eq(p.rc, 0, "a delete with data null refused: %s", p.err);
	cr_expect_eq(p.c.op, SR_OP_DELETE);
	cr_expect_null(p.c.data);
	sr_change_clear(&p.c);
}

Test(change, parses_seq)
{
	struct parsed p;

	parse_text(&p, "{\"seq\":9007199254740993," CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"delete\"}");
	cr_assert_eq(p.rc, 0, "refused: %s", p.err);
	cr_expect_eq(p.c.seq, INT64_C(9007199254740993));
	sr_change_clear(&p.c);

	parse_text(&p, "{\"seq\":null," CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"delete\"}");
	cr_assert_eq(p.rc, 0, "refused: %s", p.err);
	cr_expect_eq(p.c.seq, 0);
	sr_change_clear(&p.c);
}

Test(change, rejects_non_object)
{
	sr_change c;
	char err[128] = "";
	json_t *a = json_array();

	cr_expect_eq(sr_change_parse(&c, a, err, sizeof err), -1);
	cr_expect(strstr(err, "object") != NULL, "error: %s", err);
	err[0] = '\0';
	cr_expect_eq(sr_change_parse(&c, NULL, err, sizeof err), -1);
	cr_expect_neq(err[0], '\0');
	json_decref(a);
}

Test(change, rejects_bad_hlc)
{
	expect_refused("{" CH_MODEL "," CH_RID ",\"op\":\"delete\"}", "\"hlc\"");
	expect_refused("{\"hlc\":null," CH_MODEL "," CH_RID ",\"op\":\"delete\"}", "\"hlc\"");
	expect_refused("{\"hlc\":12," CH_MODEL "," CH_RID ",\"op\":\"delete\"}", "\"hlc\"");
	expect_refused("{\"hlc\":\"0000018F2B3C4D5E-0000000000000001-" UUID_A "\"," CH_MODEL "," CH_RID
		       ",\"op\":\"delete\"}",
		       "\"hlc\"");
	expect_refused("{\"hlc\":\"" HLC_A "0\"," CH_MODEL "," CH_RID ",\"op\":\"delete\"}", "\"hlc\"");
}

Test(change, rejects_bad_model)
{
	expect_refused("{" CH_HLC "," CH_RID ",\"op\":\"delete\"}", "\"model\"");
	expect_refused("{" CH_HLC ",\"model\":\"Entry\"," CH_RID ",\"op\":\"delete\"}", "\"model\"");
	expect_refused("{" CH_HLC ",\"model\":\"\"," CH_RID ",\"op\":\"delete\"}", "\"model\"");
	expect_refused("{" CH_HLC ",\"model\":[\"entry\"]," CH_RID ",\"op\":\"delete\"}", "\"model\"");
}

Test(change, rejects_bad_record_id)
{
	expect_refused("{" CH_HLC "," CH_MODEL ",\"op\":\"delete\"}", "\"record_id\"");
	expect_refused("{" CH_HLC "," CH_MODEL ",\"record_id\":\"A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D\","
		       "\"op\":\"delete\"}",
		       "\"record_id\"");
	expect_refused("{" CH_HLC "," CH_MODEL ",\"record_id\":\"{" UUID_B "}\",\"op\":\"delete\"}",
		       "\"record_id\"");
	expect_refused("{" CH_HLC "," CH_MODEL ",\"record_id\":1,\"op\":\"delete\"}", "\"record_id\"");
}

Test(change, rejects_bad_op)
{
	expect_refused("{" CH_HLC "," CH_MODEL "," CH_RID ",\"data\":{}}", "\"op\"");
	expect_refused("{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"insert\",\"data\":{}}", "\"op\"");
	expect_refused("{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"UPSERT\",\"data\":{}}", "\"op\"");
	expect_refused("{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":0,\"data\":{}}", "\"op\"");
}

Test(change, rejects_upsert_without_object_data)
{
	expect_refused("{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"upsert\"}", "\"data\"");
	expect_refused("{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"upsert\",\"data\":null}", "\"data\"");
	expect_refused("{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"upsert\",\"data\":[]}", "\"data\"");
	expect_refused("{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"upsert\",\"data\":\"{}\"}", "\"data\"");
}

Test(change, rejects_delete_with_data)
{
	expect_refused("{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"delete\",\"data\":{}}", "\"data\"");
	expect_refused("{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"delete\",\"data\":{\"a\":1}}", "\"data\"");
	expect_refused("{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"delete\",\"data\":false}", "\"data\"");
}

Test(change, rejects_non_positive_seq)
{
	expect_refused("{\"seq\":0," CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"delete\"}", "\"seq\"");
	expect_refused("{\"seq\":-1," CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"delete\"}", "\"seq\"");
	expect_refused("{\"seq\":1.5," CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"delete\"}", "\"seq\"");
	expect_refused("{\"seq\":\"3\"," CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"delete\"}", "\"seq\"");
}

/* Parses written JSON and checks its members against c. */
static json_t *written(const sr_change *c, char **text)
{
	sr_buf b = {0};
	json_error_t e;
	json_t *j;

	sr_change_write(&b, c);
	cr_assert_not(b.oom);
	*text = sr_buf_steal(&b);
	cr_assert_not_null(*text);
	j = json_loads(*text, 0, &e);
	cr_assert_not_null(j, "written change is not JSON: %s (%s)", *text, e.text);
	cr_expect_str_eq(json_string_value(json_object_get(j, "hlc")), c->hlc);
	cr_expect_str_eq(json_string_value(json_object_get(j, "model")), c->model);
	cr_expect_str_eq(json_string_value(json_object_get(j, "record_id")), c->record_id);
	cr_expect_str_eq(json_string_value(json_object_get(j, "op")), sr_op_name(c->op));
	return j;
}

Test(change, write_keeps_data_byte_for_byte)
{
	struct parsed p;
	char *text, *at, want[512];
	json_t *j;

	parse_text(&p, "{" CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"upsert\",\"data\":{\"z\":1.5,\"a\":\"\\u0001\xc3\xa9\\n\"}}");
	cr_assert_eq(p.rc, 0, "%s", p.err);
	j = written(&p.c, &text);
	cr_expect_null(json_object_get(j, "seq"), "seq 0 is not written");
	cr_expect(json_is_object(json_object_get(j, "data")));
	at = strstr(text, "\"data\":");
	cr_assert_not_null(at, "%s", text);
	snprintf(want, sizeof want, "\"data\":%s}", p.c.data);
	cr_expect_str_eq(at, want, "data in %s is not the stored text %s", text, p.c.data);
	free(text);
	json_decref(j);
	sr_change_clear(&p.c);
}

Test(change, write_does_not_re_encode_stored_text)
{
	/* stored text is served as it is, even when it is not what this side would produce */
	sr_change c = {.seq = 17, .op = SR_OP_UPSERT, .data = "{\"b\":1,\"a\":1.50}"};
	char *text;
	json_t *j;

	strcpy(c.hlc, HLC_A);
	strcpy(c.model, "content_identity");
	strcpy(c.record_id, UUID_A);
	j = written(&c, &text);
	cr_expect_eq(json_integer_value(json_object_get(j, "seq")), 17);
	cr_expect(strstr(text, "\"data\":{\"b\":1,\"a\":1.50}}") != NULL, "%s", text);
	free(text);
	json_decref(j);
}

Test(change, write_delete_has_null_data)
{
	struct parsed p;
	char *text;
	json_t *j;

	parse_text(&p, "{\"seq\":3," CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"delete\"}");
	cr_assert_eq(p.rc, 0, "%s", p.err);
	j = written(&p.c, &text);
	cr_expect(json_is_null(json_object_get(j, "data")), "%s", text);
	cr_expect(strstr(text, "\"data\":null") != NULL, "%s", text);
	cr_expect_eq(json_integer_value(json_object_get(j, "seq")), 3);
	free(text);
	json_decref(j);
	sr_change_clear(&p.c);
}

Test(change, write_then_parse_round_trips)
{
	struct parsed p, q;
	char *text;
	json_t *j;

	parse_text(&p, "{\"seq\":5," CH_HLC "," CH_MODEL "," CH_RID ",\"op\":\"upsert\",\"data\":{\"k\":[1,{\"y\":2,\"x\":null}]}}");
	cr_assert_eq(p.rc, 0, "%s", p.err);
	j = written(&p.c, &text);
	q.rc = sr_change_parse(&q.c, j, q.err, sizeof q.err);
	cr_assert_eq(q.rc, 0, "%s", q.err);
	cr_expect_eq(q.c.seq, p.c.seq);
	cr_expect_str_eq(q.c.hlc, p.c.hlc);
	cr_expect_str_eq(q.c.model, p.c.model);
	cr_expect_str_eq(q.c.record_id, p.c.record_id);
	cr_expect_eq(q.c.op, p.c.op);
	cr_expect_str_eq(q.c.data, p.c.data);
	free(text);
	json_decref(j);
	sr_change_clear(&p.c);
	sr_change_clear(&q.c);
}

Test(change, clear_accepts_null)
{
	sr_change_clear(NULL);
	cr_expect_str_eq(sr_op_name(SR_OP_UPSERT), "upsert");
	cr_expect_str_eq(sr_op_name(SR_OP_DELETE), "delete");
}

/* ---- records ---- */

static json_t *record_json(char **text, const char *owner, int deleted, const char *data)
{
	sr_buf b = {0};
	json_error_t e;
	json_t *j;

	sr_record_write(&b, "entry", UUID_B, owner, HLC_A, deleted, data);
	*text = sr_buf_steal(&b);
	cr_assert_not_null(*text);
	j = json_loads(*text, 0, &e);
	cr_assert_not_null(j, "written record is not JSON: %s (%s)", *text, e.text);
	cr_expect_str_eq(json_string_value(json_object_get(j, "model")), "entry");
	cr_expect_str_eq(json_string_value(json_object_get(j, "record_id")), UUID_B);
	cr_expect_str_eq(json_string_value(json_object_get(j, "hlc")), HLC_A);
	cr_expect_eq(json_object_size(j), 6, "%s", *text);
	return j;
}

Test(record, write_with_owner_and_data)
{
	char *text;
	json_t *j = record_json(&text, UUID_A, 0, "{\"b\":2,\"a\":1}");

	cr_expect_str_eq(json_string_value(json_object_get(j, "owner")), UUID_A);
	cr_expect(json_is_false(json_object_get(j, "deleted")));
	cr_expect(json_is_object(json_object_get(j, "data")));
	cr_expect(strstr(text, "\"data\":{\"b\":2,\"a\":1}}") != NULL, "data not kept byte for byte: %s", text);
	free(text);
	json_decref(j);
}

Test(record, write_shared_tombstone)
{
	char *text;
	json_t *j = record_json(&text, NULL, 1, NULL);

	cr_expect(json_is_null(json_object_get(j, "owner")));
	cr_expect(json_is_true(json_object_get(j, "deleted")));
	cr_expect(json_is_null(json_object_get(j, "data")));
	free(text);
	json_decref(j);

	j = record_json(&text, "", 0, "{}");
	cr_expect(json_is_null(json_object_get(j, "owner")), "empty owner is null: %s", text);
	free(text);
	json_decref(j);
}

/* ---- buffer ---- */

Test(buf, appends_and_grows)
{
	sr_buf b = {0};
	char *s;
	int i;

	sr_buf_puts(&b, "ab");
	sr_buf_putc(&b, 'c');
	sr_buf_put(&b, "dexx", 2);
	sr_buf_printf(&b, "-%d-%s", 42, "x");
	cr_assert_not(b.oom);
	cr_expect_eq(b.len, 10);
	cr_expect_str_eq(b.p, "abcde-42-x");
	for (i = 0; i < 1000; i++)
		sr_buf_printf(&b, "%03d", i);
	cr_expect_eq(b.len, 10 + 3000);
	cr_expect_eq(strlen(b.p), b.len);
	cr_expect_eq(memcmp(b.p + 10 + 3 * 999, "999", 3), 0);
	s = sr_buf_steal(&b);
	cr_expect_null(b.p);
	cr_expect_eq(b.len, 0);
	cr_expect_eq(strncmp(s, "abcde-42-x000001", 16), 0);
	free(s);
}

Test(buf, steal_empty_is_empty_string)
{
	sr_buf b = {0};
	char *s = sr_buf_steal(&b);

	cr_assert_not_null(s);
	/* compared as a byte: an unterminated buffer must fail here, not be read past its end */
	cr_expect_eq(s[0], '\0', "stealing an empty buffer gives \"\" (first byte 0x%02x)", (unsigned char)s[0]);
	free(s);
	sr_buf_free(&b);
	sr_buf_puts(&b, "x");
	sr_buf_free(&b);
	cr_expect_null(b.p);
	cr_expect_eq(b.len, 0);
}

Test(buf, put_jstr_escapes_like_jansson)
{
	const char *inputs[] = {
		"",
		"plain text",
		"say \"hi\" \\ there",
		"\b\f\n\r\t",
		"\x01 and \x1f and \x7f",
		"caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 /slash",
		"\"\\\b\f\n\r\t\x01\x1f\xc3\xa9",
	};
	size_t i;

	for (i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
		json_t *js = json_string(inputs[i]);
		char *ref, *got;
		sr_buf b = {0};

		cr_assert_not_null(js, "test input %zu is not UTF-8", i);
		ref = json_dumps(js, JSON_ENCODE_ANY);
		cr_assert_not_null(ref);
		sr_buf_puts(&b, "[");
		sr_buf_put_jstr(&b, inputs[i]);
		sr_buf_puts(&b, "]");
		got = sr_buf_steal(&b);
		cr_assert_not_null(got);
		/* strip the brackets that prove the writer appends rather than overwrites */
		cr_expect_eq(got[0], '[');
		cr_expect_eq(got[strlen(got) - 1], ']');
		got[strlen(got) - 1] = '\0';
		cr_expect_str_eq(got + 1, ref, "input %zu", i);
		free(got);
		free(ref);
		json_decref(js);
	}
}

Test(buf, put_jstr_exact_escapes)
{
	sr_buf b = {0};

	sr_buf_put_jstr(&b, "q\"b\\\b\f\n\r\t\x01\x1f\xc3\xa9");
	cr_assert_not(b.oom);
	cr_expect_str_eq(b.p, "\"q\\\"b\\\\\\b\\f\\n\\r\\t\\u0001\\u001F\xc3\xa9\"");
	sr_buf_free(&b);
}
