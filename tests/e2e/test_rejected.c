/*
 * Changes the relay refuses for good: kept in rejected with the relay's reason, listed by
 * status and `syncrelay rejected`, and gone only when the user retries or drops them.
 */
#include <criterion/criterion.h>

#include "cli.h"

Test(rejected, listed_retried_and_dropped_only_at_the_users_request, .timeout = 240)
{
	struct e2e e;
	char a[512], b[512], x[SR_UUID_LEN + 1], *want, *got;
	struct cli c;
	json_t *s, *r;

	e2e_start_two(&e, a, b, sizeof a);
	e2e_id(x, 0xcc, 1);
	cli_do(a, 60, "put", "entry", x, "{\"by\":\"A\"}");
	e2e_sync(a, 60);
	/* B writes A's device_owned record before it has heard of it: not-owner, for good */
	cli_do(b, 60, "put", "entry", x, "{\"by\":\"B\"}");
	e2e_sync(b, 60);

	cli_ok(&c, b, 60, "rejected", "--json");
	r = json_array_get(json_object_get(c.json, "rejected"), 0);
	cr_assert_eq(json_array_size(json_object_get(c.json, "rejected")), 1, "rejected: %s", c.out);
	cr_assert_str_eq(json_string_value(json_object_get(r, "code")), "not-owner", "%s", c.out);
	cr_assert_str_eq(json_string_value(json_object_get(r, "record_id")), x, "%s", c.out);
	cr_assert_eq(json_integer_value(json_object_get(r, "status")), 409, "%s", c.out);
	cr_assert(json_string_length(json_object_get(r, "detail")) > 0, "no reason kept: %s", c.out);
	cli_free(&c);
	s = e2e_status(b);
	cr_assert_eq(json_array_size(json_object_get(s, "rejected")), 1, "status does not list it: %s", json_dumps(s, 0));
	json_decref(s);

	/* syncs and repairs never drop it */
	e2e_sync(b, 60);
	cli_run(&c, b, 60, "verify", "--repair", "--json");
	cli_free(&c);
	cli_ok(&c, b, 60, "rejected", "--json");
	cr_assert_eq(json_array_size(json_object_get(c.json, "rejected")), 1, "a sync or repair dropped it: %s", c.out);
	cli_free(&c);

	/* bad ids: a one-line reason and a non-zero exit, nothing changed */
	cli_run(&c, b, 60, "rejected", "drop", "x1");
	cr_assert_eq(c.status, 2, "rejected drop x1 exited %d", c.status);
	cr_assert(strstr(c.err, "not a rejected change id"), "%s", c.err);
	cli_free(&c);
	cli_run(&c, b, 60, "rejected", "drop", "999");
	cr_assert_eq(c.status, 1, "rejected drop 999 exited %d", c.status);
	cr_assert(strstr(c.err, "no rejected change has id 999"), "%s", c.err);
	cli_free(&c);

	/* retry puts it back in the outbox; the relay refuses it again, and it is set aside again */
	cli_ok(&c, b, 60, "rejected", "retry", "all", "--json");
	cr_assert_eq(json_integer_value(json_object_get(c.json, "retried")), 1, "%s", c.out);
	cli_free(&c);
	s = e2e_status(b);
	cr_assert_eq(e2e_jint(s, "outbox", NULL), 1, "%s", json_dumps(s, 0));
	cr_assert_eq(json_array_size(json_object_get(s, "rejected")), 0, "%s", json_dumps(s, 0));
	json_decref(s);
	e2e_sync(b, 60);
	s = e2e_status(b);
	cr_assert_eq(json_array_size(json_object_get(s, "rejected")), 1, "%s", json_dumps(s, 0));
	json_decref(s);

	/* drop, at the user's request; a repair then shows the relay's version */
	cli_ok(&c, b, 60, "rejected", "drop", "all", "--json");
	cr_assert_eq(json_integer_value(json_object_get(c.json, "dropped")), 1, "%s", c.out);
	cli_free(&c);
	cli_run(&c, b, 60, "verify", "--repair", "--json");
	cr_assert_eq(c.status, 0, "verify --repair after the drop: %s %s", c.out, c.err);
	cli_free(&c);
	want = e2e_get(a, "entry", x);
	got = e2e_get(b, "entry", x);
	cr_assert(want && got && !strcmp(want, got), "B holds %s, A %s", got ? got : "(absent)", want ? want : "(absent)");
	free(want);
	free(got);
	e2e_assert_verified(b, "B");
	e2e_finish(&e);
}
