/*
 * Join tokens: the admin rotates a library's join token (the old one stops at once, enrolled
 * devices keep working) or revokes it (no enrolment until the next rotation); neither a device
 * nor a join token may do either.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"

static void enroll(struct relay *r, const struct lib *l, const char *join, long status)
{
	char body[128], id[SR_UUID_LEN + 1];
	struct resp p;

	h_uuid(id);
	snprintf(body, sizeof body, "{\"device_id\":\"%s\",\"name\":\"n\"}", id);
	h_http(&p, r, "POST", h_lp(l, "/devices"), join, body);
	cr_assert_eq(p.status, status, "enroll with join token %.10s...: %ld %s", join, p.status, p.body);
	if (status != 201)
		h_expect_problem(&p, status, "unauthorized");
	h_resp_free(&p);
}

Test(tokens, join_token_rotated_and_revoked_by_the_admin, .timeout = 120)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct resp p;
	struct lib nil = {0};
	char fresh[128];

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d, NULL);
	enroll(&r, &l, l.join, 201);

	/* only the admin; an unknown library is 404 */
	h_http_problem(&r, "POST", h_lp(&l, "/join-token"), d.token, NULL, 403, "forbidden");
	h_http_problem(&r, "POST", h_lp(&l, "/join-token"), l.join, NULL, 403, "forbidden");
	h_uuid(nil.id);
	h_http_problem(&r, "POST", h_lp(&nil, "/join-token"), H_ADMIN, NULL, 404, "library-not-found");

	h_http(&p, &r, "POST", h_lp(&l, "/join-token"), H_ADMIN, NULL);
	h_expect_json(&p, 201);
	cr_assert(h_jstr(p.json, "join_token") && strcmp(h_jstr(p.json, "join_token"), l.join), "%s", p.body);
	cr_assert_eq(h_jint(p.json, "revoked"), 1, "%s", p.body);
	snprintf(fresh, sizeof fresh, "%s", h_jstr(p.json, "join_token"));
	h_resp_free(&p);
	enroll(&r, &l, l.join, 401);  /* the old one stopped at once */
	enroll(&r, &l, fresh, 201);
	h_http_json(&r, "GET", h_lp(&l, ""), d.token, NULL, 200); /* devices are not affected */

	h_http(&p, &r, "DELETE", h_lp(&l, "/join-token"), H_ADMIN, NULL);
	h_expect_json(&p, 200);
	cr_assert_eq(h_jint(p.json, "revoked"), 1, "%s", p.body);
	h_resp_free(&p);
	enroll(&r, &l, fresh, 401);
	h_http_json(&r, "GET", h_lp(&l, ""), d.token, NULL, 200);
	h_relay_stop(&r);
}
