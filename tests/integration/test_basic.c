/* The basic round trip: library, device, schema, push, pull, digest. */
#include <string.h>

#include "harness.h"

Test(basic, push_then_pull_round_trip)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct resp p;
	char path[256], *batch;

	h_relay_start(&r, NULL, NULL);
	h_fixture(&r, &l, &d1, &d2);

	batch = h_batch(&d1, h_now_ms(), 0, 3);
	snprintf(path, sizeof path, "/v1/libraries/%s/changes", l.id);
	h_http(&p, &r, "POST", path, d1.token, batch);
	cr_assert_eq(p.status, 200, "%s", p.body);
	cr_assert_eq(json_integer_value(json_object_get(p.json, "accepted")), 3);
	cr_assert_eq(json_integer_value(json_object_get(p.json, "head")), 3);
	h_resp_free(&p);

	snprintf(path, sizeof path, "/v1/libraries/%s/changes?since=0", l.id);
	h_http(&p, &r, "GET", path, d2.token, NULL);
	cr_assert_eq(p.status, 200, "%s", p.body);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 3, "%s", p.body);
	cr_assert_eq(json_integer_value(json_object_get(p.json, "next")), 3);
	h_resp_free(&p);

	/* the author's own changes are left out, but next moves past them */
	h_http(&p, &r, "GET", path, d1.token, NULL);
	cr_assert_eq(json_array_size(json_object_get(p.json, "changes")), 0, "%s", p.body);
	cr_assert_eq(json_integer_value(json_object_get(p.json, "next")), 3);
	h_resp_free(&p);
	free(batch);
	cr_assert_eq(h_relay_stop(&r), 0);
}
