/* The in-place JSON scanner of relay pages (client/jscan.c): walks, decoding, the canonical
 * check, and agreement with jansson, the reference for canonical text. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"
#include "syncrelay_codec.h"

/* jansson's canonical text of s, or NULL when jansson does not read s as an object. */
static char *reference(const char *s, size_t n)
{
	json_t *j = json_loadb(s, n, 0, NULL);
	char *t = sr_canonical(j);

	json_decref(j);
	return t;
}

/* js_canonical_dup agrees with jansson, and js_canonical says 1 only for its own output. */
static void agrees(const char *s)
{
	size_t n = strlen(s);
	char *want = reference(s, n), *got = js_canonical_dup(s, n);

	if (!want)
		cr_assert_null(got, "jansson refuses %s, the scanner gave %s", s, got);
	else
		cr_assert(got && !strcmp(got, want), "for %s: jansson %s, scanner %s", s, want, got ? got : "NULL");
	if (js_canonical(s, n))
		cr_assert(want && !strcmp(want, s), "%s was taken as canonical, jansson writes %s", s,
			  want ? want : "NULL");
	free(want);
	free(got);
}

Test(jscan, canonical_text_is_kept_as_served)
{
	const char *yes[] = {
		"{}",
		"{\"a\":1}",
		"{\"a\":-12,\"b\":\"x\",\"c\":true,\"d\":false,\"e\":null}",
		"{\"a\":[1,2,[3,{}],{\"x\":[]}],\"b\":{\"c\":{\"d\":{}}}}",
		"{\"a\":1.5,\"b\":-0.25,\"c\":1.0,\"d\":1.0000000000000001e300,\"e\":1e-300}",
		"{\"a\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
		"{\"a\":\"q\\\"b\\\\n\\n\\t\\r\\b\\f\\u001F\\u0001\"}",
		"{\"\":0,\"A\":1,\"a\":2,\"ab\":3,\"b\":4,\"\xc3\xa9\":5}",
		"{\"m\":-9223372036854775808,\"n\":9223372036854775807}",
		"{\"s\":\"/\x7f\"}",
	};
	size_t i;

	for (i = 0; i < sizeof yes / sizeof *yes; i++) {
		cr_assert(js_canonical(yes[i], strlen(yes[i])), "not taken as canonical: %s", yes[i]);
		agrees(yes[i]);
	}
}

Test(jscan, other_text_is_canonicalised_like_jansson)
{
	const char *no[] = {
		"{ \"a\":1}",
		"{\"a\" :1}",
		"{\"a\":1 }",
		"{\"b\":1,\"a\":2}",
		"{\"a\":1,\"a\":2}",
		"{\"a\":0.1}",
		"{\"a\":1E5}",
		"{\"a\":1e+05}",
		"{\"a\":-0}",
		"{\"a\":1.50}",
		"{\"a\":1e300}",
		"{\"a\":\"\\u00e9\"}",
		"{\"a\":\"\\u001f\"}",
		"{\"a\":\"\\u000a\"}",
		"{\"a\":\"\\/\"}",
		"{\"a\":\"\\ud83d\\ude00\"}",
		"{\"\\u0061\":1,\"a\":2}",
		"{\"a\":[1, 2]}",
		"{\"a\":{\"z\":1,\"y\":2}}",
	};
	size_t i;

	for (i = 0; i < sizeof no / sizeof *no; i++) {
		cr_assert_not(js_canonical(no[i], strlen(no[i])), "taken as canonical: %s", no[i]);
		agrees(no[i]);
	}
}

Test(jscan, malformed_input_is_refused)
{
	const char *bad[] = {
		"",
		"{",
		"{\"a\"}",
		"{\"a\":}",
		"{\"a\":1,}",
		"{,}",
		"{\"a\":01}",
		"{\"a\":1.}",
		"{\"a\":.5}",
		"{\"a\":1e}",
		"{\"a\":-}",
		"{\"a\":tru}",
		"{\"a\":\"x}",
		"{\"a\":\"\\x\"}",
		"{\"a\":\"\\u12\"}",
		"{\"a\":\"\\u0000\"}",
		"{\"a\":\"\\ud83d\"}",
		"{\"a\":\"\\ude00\"}",
		"{\"a\":\"\x01\"}",
		"{\"a\":\"\xc3\"}",
		"{\"a\":\"\xc0\xaf\"}",
		"{\"a\":\"\xed\xa0\x80\"}",
		"{\"a\":\"\xf4\x90\x80\x80\"}",
		"{\"a\":99999999999999999999}",
		"{\"a\":1e999}",
		"[1]",
		"\"s\"",
		"{\"a\":1}x",
	};
	size_t i;

	for (i = 0; i < sizeof bad / sizeof *bad; i++) {
		size_t n = strlen(bad[i]);
		char *got = js_canonical_dup(bad[i], n);

		cr_assert_null(got, "accepted as an object: %s -> %s", bad[i], got);
		cr_assert_not(js_canonical(bad[i], n), "taken as canonical: %s", bad[i]);
	}
	{
		const char *a = "{\"a\":[1,", *b = "{\"a\":1} x", *ok = " {\"a\":[1, 2]} \n";

		cr_assert_eq(js_document(a, a + strlen(a)), -1);
		cr_assert_eq(js_document(b, b + strlen(b)), -1);
		cr_assert_eq(js_document(ok, ok + strlen(ok)), 0);
	}
}

Test(jscan, nesting_deeper_than_jansson_allows_is_refused)
{
	size_t depth = 3000, i;
	char *s = malloc(2 * depth + 16), *p = s;

	p += sprintf(p, "{\"a\":");
	for (i = 0; i < depth; i++)
		*p++ = '[';
	for (i = 0; i < depth; i++)
		*p++ = ']';
	sprintf(p, "}");
	cr_assert_null(js_canonical_dup(s, strlen(s)));
	cr_assert_eq(js_document(s, s + strlen(s)), -1);
	free(s);
}

Test(jscan, a_page_is_walked_member_by_member)
{
	const char *page = " { \"records\" : [ {\"model\":\"entry\",\"data\":{\"k\":[1,{\"x\":\"]}\"}]}} , {} ] ,"
			   " \"next_after\":null, \"head\": 42, \"more\":true, \"w\\u0065ird\":\"\\u00e9\\n\" } ";
	const char *end = page + strlen(page), *v, *vend, *ev, *evend;
	struct js_iter it, arr;
	char key[16], buf[8];
	int64_t head = 0;
	int n = 0;

	cr_assert_eq(js_document(page, end), 0);
	cr_assert_eq(js_open(&it, page, end, '{'), 0);
	cr_assert_eq(js_member(&it, key, sizeof key, &v, &vend), 1);
	cr_assert_str_eq(key, "records");
	cr_assert_eq(js_open(&arr, v, vend, '['), 0);
	while (js_element(&arr, &ev, &evend) == 1)
		n++;
	cr_assert_eq(n, 2);
	cr_assert_eq(js_member(&it, key, sizeof key, &v, &vend), 1);
	cr_assert_str_eq(key, "next_after");
	cr_assert(js_null(v, vend));
	cr_assert_eq(js_member(&it, key, sizeof key, &v, &vend), 1);
	cr_assert_eq(js_int(v, vend, &head), 0);
	cr_assert_eq(head, 42);
	cr_assert_eq(js_member(&it, key, sizeof key, &v, &vend), 1);
	cr_assert_eq(js_bool(v, vend), 1);
	cr_assert_eq(js_member(&it, key, sizeof key, &v, &vend), 1);
	cr_assert_str_eq(key, "weird", "an escaped key is decoded");
	cr_assert_eq(js_strcpy(v, vend, buf, sizeof buf), 0);
	cr_assert_str_eq(buf, "\xc3\xa9\n");
	cr_assert_eq(js_strcpy(v, vend, buf, 3), -2, "a string longer than the buffer");
	cr_assert_eq(js_member(&it, key, sizeof key, &v, &vend), 0);
}

Test(jscan, a_long_key_never_matches_a_short_one)
{
	const char *o = "{\"next_after_but_much_longer\":1}";
	struct js_iter it;
	const char *v, *vend;
	char key[12];

	cr_assert_eq(js_open(&it, o, o + strlen(o), '{'), 0);
	cr_assert_eq(js_member(&it, key, sizeof key, &v, &vend), 1);
	cr_assert_str_eq(key, "");
}

Test(jscan, reference_fields_are_read_from_the_text)
{
	const char *d = "{\"content_id\":\"c\\u00e9\",\"n\":{\"parent_id\":\"inner\"},\"parent_id\":\"p1\",\"x\":1}";
	char *t = NULL;

	cr_assert_eq(js_get_str(d, strlen(d), "parent_id", &t), 1);
	cr_assert_str_eq(t, "p1", "the top-level member, not the nested one");
	free(t);
	cr_assert_eq(js_get_str(d, strlen(d), "content_id", &t), 1);
	cr_assert_str_eq(t, "c\xc3\xa9");
	free(t);
	cr_assert_eq(js_get_str(d, strlen(d), "x", &t), 0, "a number is not a reference");
	cr_assert_null(t);
	cr_assert_eq(js_get_str(d, strlen(d), "missing", &t), 0);
	cr_assert_eq(js_get_str("{\"a\":\"1\",\"a\":\"2\"}", 17, "a", &t), 1);
	cr_assert_str_eq(t, "2", "the last duplicate, as jansson keeps");
	free(t);
	cr_assert_eq(js_get_str("{\"a\":", 5, "a", &t), -1);
}

Test(jscan, integers_and_booleans_are_strict)
{
	int64_t x = 7;

	cr_assert_eq(js_int("12", (const char *)"12" + 2, &x), 0);
	cr_assert_eq(x, 12);
	cr_assert_eq(js_int("1.0", (const char *)"1.0" + 3, &x), -1);
	cr_assert_eq(js_int("1e2", (const char *)"1e2" + 3, &x), -1);
	cr_assert_eq(js_int("\"1\"", (const char *)"\"1\"" + 3, &x), -1);
	cr_assert_eq(js_int("99999999999999999999", (const char *)"99999999999999999999" + 20, &x), -1);
	cr_assert_eq(js_bool("true", (const char *)"true" + 4), 1);
	cr_assert_eq(js_bool("false", (const char *)"false" + 5), 0);
	cr_assert_eq(js_bool("null", (const char *)"null" + 4), -1);
}

Test(jscan, a_member_walk_tells_whether_the_value_is_canonical)
{
	const char *o = "{\"a\":{\"x\":1,\"y\":[true]},\"b\":{\"y\":1,\"x\":2},\"c\":{ \"x\":1},\"d\":{\"x\":0.1}}";
	const char *want[] = {"{\"x\":1,\"y\":[true]}", "{\"x\":2,\"y\":1}", "{\"x\":1}", "{\"x\":0.10000000000000001}"};
	int expect[] = {1, 0, 0, 0}, i = 0, canon = 1;
	struct js_iter it;
	const char *v, *vend;
	char key[4];

	cr_assert_eq(js_open(&it, o, o + strlen(o), '{'), 0);
	while (js_member_c(&it, key, sizeof key, &v, &vend, &canon) == 1) {
		char *t = js_canonical_copy(v, (size_t)(vend - v), canon);

		cr_assert_eq(canon, expect[i], "member %s: canonical %d", key, canon);
		cr_assert_eq(canon, js_canonical(v, (size_t)(vend - v)), "member %s", key);
		cr_assert_str_eq(t, want[i], "member %s", key);
		free(t);
		canon = 1;
		i++;
	}
	cr_assert_eq(i, 4);
}
