/*
 * Unit tests of library schemas (server/schema_model.c): validation, topological order of
 * models by their refs, and the extend-only rule for a later PUT (PROTOCOL.md 4, Schema).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_model.h"

#define REF_SCENARIO                                                                                   \
	"[{\"name\":\"location\",\"kind\":\"device_owned\"},"                                          \
	"{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":\"content_id\","           \
	"\"model\":\"content_identity\"},{\"field\":\"parent_id\",\"model\":\"entry\"}]},"             \
	"{\"name\":\"content_identity\",\"kind\":\"shared\"}]"

/* Two schemas per test at most; freed by the fixture whatever the outcome. */
static struct sm_schema s1, s2;
static char err[512];

static void setup(void)
{
	memset(&s1, 0, sizeof s1);
	memset(&s2, 0, sizeof s2);
	err[0] = '\0';
}

static void teardown(void)
{
	sm_free(&s1);
	sm_free(&s2);
}

TestSuite(schema, .init = setup, .fini = teardown);
TestSuite(schema_order, .init = setup, .fini = teardown);
TestSuite(schema_extends, .init = setup, .fini = teardown);

static int parse(struct sm_schema *out, const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
	int rc;

	cr_assert_not_null(j, "test input does not parse: %s (%s)", text, e.text);
	err[0] = '\0';
	rc = sm_parse(out, j, err, sizeof err);
	json_decref(j);
	return rc;
}

static void parse_ok(struct sm_schema *out, const char *text)
{
	int rc = parse(out, text);

	cr_assert_eq(rc, SM_OK, "sm_parse refused %s: %d %s", text, rc, err);
}

/* The schema must be refused with code rc and a message containing `names`. */
static void expect_refused(const char *text, int rc, const char *names)
{
	struct sm_schema s = {0};
	int got = parse(&s, text);

	sm_free(&s);
	cr_expect_eq(got, rc, "sm_parse(%s) = %d, want %d (%s)", text, got, rc, err);
	cr_expect(strstr(err, names) != NULL, "error \"%s\" for %s should contain %s", err, text, names);
}

/* The order as "a,b,c", from sm_order and (checked equal) from sm_order_json. */
static void order_of(const struct sm_schema *s, char *out, size_t outlen)
{
	int *ord = calloc((size_t)s->n + 1, sizeof *ord);
	json_t *arr;
	size_t len = 0;
	int i, rc;

	cr_assert_not_null(ord);
	out[0] = '\0';
	rc = sm_order(s, ord, err, sizeof err);
	cr_assert_eq(rc, SM_OK, "sm_order: %d %s", rc, err);
	arr = sm_order_json(s);
	cr_assert_not_null(arr);
	cr_assert_eq(json_array_size(arr), (size_t)s->n);
	for (i = 0; i < s->n; i++) {
		cr_assert(ord[i] >= 0 && ord[i] < s->n, "order[%d] = %d", i, ord[i]);
		cr_expect_str_eq(json_string_value(json_array_get(arr, (size_t)i)), s->models[ord[i]].name);
		len += (size_t)snprintf(out + len, outlen - len, "%s%s", i ? "," : "", s->models[ord[i]].name);
		cr_assert_lt(len, outlen);
	}
	json_decref(arr);
	free(ord);
}

static void expect_order(const char *text, const char *want)
{
	char got[512];

	parse_ok(&s1, text);
	order_of(&s1, got, sizeof got);
	cr_expect_str_eq(got, want, "order of %s", text);
	sm_free(&s1);
}

static void expect_cycle(const char *text, const char *const *names, const char *const *not_names)
{
	int *ord;
	int rc;

	parse_ok(&s1, text);
	ord = calloc((size_t)s1.n + 1, sizeof *ord);
	cr_assert_not_null(ord);
	err[0] = '\0';
	rc = sm_order(&s1, ord, err, sizeof err);
	free(ord);
	cr_expect_eq(rc, SM_CYCLE, "sm_order(%s) = %d", text, rc);
	for (; names && *names; names++)
		cr_expect(strstr(err, *names) != NULL, "cycle message \"%s\" should name %s", err, *names);
	for (; not_names && *not_names; not_names++)
		cr_expect(strstr(err, *not_names) == NULL, "cycle message \"%s\" should not name %s", err,
			  *not_names);
	cr_expect_null(sm_order_json(&s1), "sm_order_json gives NULL on a cycle");
}

/* ---- parse ---- */

Test(schema, parses_reference_scenario)
{
	const struct sm_model *m;

	parse_ok(&s1, REF_SCENARIO);
	cr_assert_eq(s1.n, 3);
	/* models are kept sorted by name */
	cr_expect_str_eq(s1.models[0].name, "content_identity");
	cr_expect_str_eq(s1.models[1].name, "entry");
	cr_expect_str_eq(s1.models[2].name, "location");

	m = sm_find(&s1, "entry");
	cr_assert_not_null(m);
	cr_expect_eq(m->device_owned, 1);
	cr_assert_eq(m->nrefs, 2);
	cr_expect_str_eq(m->refs[0].field, "content_id");
	cr_expect_str_eq(m->refs[0].model, "content_identity");
	cr_expect_str_eq(m->refs[1].field, "parent_id");
	cr_expect_str_eq(m->refs[1].model, "entry");

	m = sm_find(&s1, "content_identity");
	cr_assert_not_null(m);
	cr_expect_eq(m->device_owned, 0);
	cr_expect_eq(m->nrefs, 0);

	m = sm_find(&s1, "location");
	cr_assert_not_null(m);
	cr_expect_eq(m->device_owned, 1);
	cr_expect_eq(m->nrefs, 0);

	cr_expect_null(sm_find(&s1, "tag"));
	cr_expect_null(sm_find(&s1, NULL));
}

Test(schema, parses_empty_and_null_refs)
{
	parse_ok(&s1, "[]");
	cr_expect_eq(s1.n, 0);
	cr_expect_null(sm_find(&s1, "entry"));
	parse_ok(&s2, "[{\"name\":\"tag\",\"kind\":\"shared\",\"refs\":null},{\"name\":\"note\",\"kind\":\"shared\",\"refs\":[]}]");
	cr_expect_eq(s2.n, 2);
	cr_assert_not_null(sm_find(&s2, "tag"));
	cr_assert_not_null(sm_find(&s2, "note"));
	cr_expect_eq(sm_find(&s2, "tag")->nrefs, 0);
	cr_expect_eq(sm_find(&s2, "note")->nrefs, 0);
}

Test(schema, rejects_models_not_an_array)
{
	expect_refused("{\"name\":\"entry\",\"kind\":\"shared\"}", SM_BAD, "\"models\"");
	expect_refused("null", SM_BAD, "\"models\"");
	cr_expect_eq(sm_parse(&s1, NULL, err, sizeof err), SM_BAD);
}

Test(schema, rejects_bad_names)
{
	expect_refused("[{\"name\":\"Entry\",\"kind\":\"shared\"}]", SM_BAD, "\"name\"");
	expect_refused("[{\"name\":\"\",\"kind\":\"shared\"}]", SM_BAD, "\"name\"");
	expect_refused("[{\"name\":\"9lives\",\"kind\":\"shared\"}]", SM_BAD, "\"name\"");
	expect_refused("[{\"name\":\"a-b\",\"kind\":\"shared\"}]", SM_BAD, "\"name\"");
	expect_refused("[{\"kind\":\"shared\"}]", SM_BAD, "\"name\"");
	expect_refused("[{\"name\":7,\"kind\":\"shared\"}]", SM_BAD, "\"name\"");
	expect_refused("[\"entry\"]", SM_BAD, "\"name\"");
	expect_refused("[{\"name\":\"ok\",\"kind\":\"shared\"},{\"name\":\"NOT_OK\",\"kind\":\"shared\"}]", SM_BAD,
		       "model 1");
}

Test(schema, rejects_bad_kind)
{
	expect_refused("[{\"name\":\"entry\",\"kind\":\"owned\"}]", SM_BAD, "\"kind\"");
	expect_refused("[{\"name\":\"entry\",\"kind\":\"Shared\"}]", SM_BAD, "\"kind\"");
	expect_refused("[{\"name\":\"entry\"}]", SM_BAD, "\"kind\"");
	expect_refused("[{\"name\":\"entry\",\"kind\":1}]", SM_BAD, "\"entry\"");
}

Test(schema, rejects_duplicate_model)
{
	expect_refused("[{\"name\":\"tag\",\"kind\":\"shared\"},{\"name\":\"entry\",\"kind\":\"shared\"},"
		       "{\"name\":\"tag\",\"kind\":\"shared\"}]",
		       SM_BAD, "\"tag\" is declared twice");
}

Test(schema, rejects_duplicate_ref_field)
{
	expect_refused("[{\"name\":\"tag\",\"kind\":\"shared\"},{\"name\":\"entry\",\"kind\":\"device_owned\","
		       "\"refs\":[{\"field\":\"t\",\"model\":\"tag\"},{\"field\":\"t\",\"model\":\"entry\"}]}]",
		       SM_BAD, "\"t\"");
}

Test(schema, rejects_refs_not_an_array)
{
	expect_refused("[{\"name\":\"entry\",\"kind\":\"shared\",\"refs\":{\"field\":\"p\",\"model\":\"entry\"}}]",
		       SM_BAD, "\"refs\"");
	expect_refused("[{\"name\":\"entry\",\"kind\":\"shared\",\"refs\":\"entry\"}]", SM_BAD, "\"refs\"");
}

Test(schema, rejects_bad_ref)
{
	expect_refused("[{\"name\":\"entry\",\"kind\":\"shared\",\"refs\":[{\"model\":\"entry\"}]}]", SM_BAD,
		       "\"field\"");
	expect_refused("[{\"name\":\"entry\",\"kind\":\"shared\",\"refs\":[{\"field\":\"\",\"model\":\"entry\"}]}]",
		       SM_BAD, "\"field\"");
	expect_refused("[{\"name\":\"entry\",\"kind\":\"shared\",\"refs\":[{\"field\":\"p\"}]}]", SM_BAD,
		       "\"model\"");
	expect_refused("[{\"name\":\"entry\",\"kind\":\"shared\",\"refs\":[{\"field\":\"p\",\"model\":\"Entry\"}]}]",
		       SM_BAD, "\"model\"");
	expect_refused("[{\"name\":\"entry\",\"kind\":\"shared\",\"refs\":[\"entry\"]}]", SM_BAD, "\"field\"");
}

Test(schema, rejects_ref_to_undeclared_model)
{
	expect_refused("[{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":\"content_id\","
		       "\"model\":\"content_identity\"}]}]",
		       SM_UNKNOWN_MODEL, "\"content_identity\"");
}

Test(schema, models_json_round_trips)
{
	json_t *arr;
	char *a, *b;

	parse_ok(&s1, REF_SCENARIO);
	arr = sm_models_json(&s1);
	cr_assert_not_null(arr);
	cr_expect_eq(json_array_size(arr), 3);
	a = json_dumps(arr, JSON_COMPACT);
	cr_expect_str_eq(a, "[{\"name\":\"content_identity\",\"kind\":\"shared\",\"refs\":[]},"
			    "{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":\"content_id\","
			    "\"model\":\"content_identity\"},{\"field\":\"parent_id\",\"model\":\"entry\"}]},"
			    "{\"name\":\"location\",\"kind\":\"device_owned\",\"refs\":[]}]");
	cr_assert_eq(sm_parse(&s2, arr, err, sizeof err), SM_OK, "%s", err);
	json_decref(arr);
	arr = sm_models_json(&s2);
	b = json_dumps(arr, JSON_COMPACT);
	cr_expect_str_eq(a, b);
	free(a);
	free(b);
	json_decref(arr);
}

/* ---- order ---- */

Test(schema_order, reference_scenario)
{
	expect_order(REF_SCENARIO, "content_identity,entry,location");
}

Test(schema_order, ties_broken_by_name)
{
	expect_order("[{\"name\":\"zeta\",\"kind\":\"shared\"},{\"name\":\"beta\",\"kind\":\"shared\"},"
		     "{\"name\":\"alpha\",\"kind\":\"shared\"}]",
		     "alpha,beta,zeta");
	/* "a" needs "z"; "m" is free and comes before "z" by name, "a" only after "z" */
	expect_order("[{\"name\":\"a\",\"kind\":\"shared\",\"refs\":[{\"field\":\"f\",\"model\":\"z\"}]},"
		     "{\"name\":\"m\",\"kind\":\"shared\"},{\"name\":\"z\",\"kind\":\"shared\"}]",
		     "m,z,a");
}

Test(schema_order, chain)
{
	expect_order("[{\"name\":\"a\",\"kind\":\"shared\",\"refs\":[{\"field\":\"b_id\",\"model\":\"b\"}]},"
		     "{\"name\":\"b\",\"kind\":\"shared\",\"refs\":[{\"field\":\"c_id\",\"model\":\"c\"}]},"
		     "{\"name\":\"c\",\"kind\":\"shared\"}]",
		     "c,b,a");
}

Test(schema_order, diamond)
{
	expect_order("[{\"name\":\"a\",\"kind\":\"shared\",\"refs\":[{\"field\":\"x\",\"model\":\"b\"},"
		     "{\"field\":\"y\",\"model\":\"c\"}]},"
		     "{\"name\":\"b\",\"kind\":\"shared\",\"refs\":[{\"field\":\"z\",\"model\":\"d\"}]},"
		     "{\"name\":\"c\",\"kind\":\"shared\",\"refs\":[{\"field\":\"z\",\"model\":\"d\"}]},"
		     "{\"name\":\"d\",\"kind\":\"shared\"}]",
		     "d,b,c,a");
}

Test(schema_order, self_reference_ignored)
{
	expect_order("[{\"name\":\"entry\",\"kind\":\"shared\",\"refs\":[{\"field\":\"parent_id\",\"model\":\"entry\"}]}]",
		     "entry");
	expect_order("[{\"name\":\"b\",\"kind\":\"shared\",\"refs\":[{\"field\":\"p\",\"model\":\"b\"}]},"
		     "{\"name\":\"a\",\"kind\":\"shared\",\"refs\":[{\"field\":\"p\",\"model\":\"a\"},"
		     "{\"field\":\"q\",\"model\":\"b\"}]}]",
		     "b,a");
}

Test(schema_order, empty)
{
	json_t *arr;

	parse_ok(&s1, "[]");
	arr = sm_order_json(&s1);
	cr_assert_not_null(arr);
	cr_expect_eq(json_array_size(arr), 0);
	json_decref(arr);
}

Test(schema_order, two_cycle)
{
	const char *names[] = {"cycle", "\"alpha\"", "\"beta\"", NULL};
	const char *not_names[] = {"\"free\"", NULL};

	expect_cycle("[{\"name\":\"alpha\",\"kind\":\"shared\",\"refs\":[{\"field\":\"b\",\"model\":\"beta\"}]},"
		     "{\"name\":\"beta\",\"kind\":\"shared\",\"refs\":[{\"field\":\"a\",\"model\":\"alpha\"}]},"
		     "{\"name\":\"free\",\"kind\":\"shared\"}]",
		     names, not_names);
}

Test(schema_order, three_cycle)
{
	const char *names[] = {"cycle", "\"x\"", "\"y\"", "\"z\"", NULL};
	const char *not_names[] = {"\"root\"", NULL};

	expect_cycle("[{\"name\":\"x\",\"kind\":\"shared\",\"refs\":[{\"field\":\"f\",\"model\":\"y\"}]},"
		     "{\"name\":\"y\",\"kind\":\"device_owned\",\"refs\":[{\"field\":\"f\",\"model\":\"z\"},"
		     "{\"field\":\"r\",\"model\":\"root\"}]},"
		     "{\"name\":\"z\",\"kind\":\"shared\",\"refs\":[{\"field\":\"f\",\"model\":\"x\"}]},"
		     "{\"name\":\"root\",\"kind\":\"shared\"}]",
		     names, not_names);
}

Test(schema_order, cycle_message_fits_small_buffer)
{
	char small[24];
	int ord[2];

	parse_ok(&s1, "[{\"name\":\"alpha\",\"kind\":\"shared\",\"refs\":[{\"field\":\"b\",\"model\":\"beta\"}]},"
		      "{\"name\":\"beta\",\"kind\":\"shared\",\"refs\":[{\"field\":\"a\",\"model\":\"alpha\"}]}]");
	memset(small, 'x', sizeof small);
	cr_expect_eq(sm_order(&s1, ord, small, sizeof small), SM_CYCLE);
	cr_expect_lt(strlen(small), sizeof small, "message is NUL-terminated inside its buffer");
}

/* ---- extends ---- */

static int extends(const char *prev, const char *next, int *same)
{
	parse_ok(&s1, prev);
	parse_ok(&s2, next);
	*same = -1;
	err[0] = '\0';
	return sm_check_extends(&s1, &s2, same, err, sizeof err);
}

static void expect_conflict(const char *prev, const char *next, const char *names)
{
	int same, rc = extends(prev, next, &same);

	cr_expect_eq(rc, SM_CONFLICT, "%s -> %s: %d (%s)", prev, next, rc, err);
	cr_expect(strstr(err, names) != NULL, "error \"%s\" should contain %s", err, names);
}

#define M_LOC "{\"name\":\"location\",\"kind\":\"device_owned\"}"
#define M_CID "{\"name\":\"content_identity\",\"kind\":\"shared\"}"
#define M_TAG "{\"name\":\"tag\",\"kind\":\"shared\"}"
#define M_ENTRY_1 "{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":\"parent_id\",\"model\":\"entry\"}]}"
#define M_ENTRY_2                                                                                      \
	"{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":\"content_id\",\"model\":"      \
	"\"content_identity\"},{\"field\":\"parent_id\",\"model\":\"entry\"}]}"

Test(schema_extends, identical_is_same)
{
	int same;

	cr_expect_eq(extends(REF_SCENARIO, REF_SCENARIO, &same), SM_OK, "%s", err);
	cr_expect_eq(same, 1);
}

Test(schema_extends, identical_in_another_order_is_same)
{
	int same;

	cr_expect_eq(extends(REF_SCENARIO,
			     "[" M_CID ",{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":"
			     "\"parent_id\",\"model\":\"entry\"},{\"field\":\"content_id\",\"model\":"
			     "\"content_identity\"}]}," M_LOC "]",
			     &same),
		     SM_OK, "%s", err);
	cr_expect_eq(same, 1);
}

Test(schema_extends, empty_to_empty_is_same)
{
	int same;

	cr_expect_eq(extends("[]", "[]", &same), SM_OK);
	cr_expect_eq(same, 1);
}

Test(schema_extends, added_model_is_not_same)
{
	int same;

	cr_expect_eq(extends("[" M_LOC "]", "[" M_LOC "," M_TAG "]", &same), SM_OK, "%s", err);
	cr_expect_eq(same, 0);
	sm_free(&s1);
	sm_free(&s2);
	cr_expect_eq(extends("[]", REF_SCENARIO, &same), SM_OK, "%s", err);
	cr_expect_eq(same, 0);
}

Test(schema_extends, added_ref_is_not_same)
{
	int same;

	cr_expect_eq(extends("[" M_LOC "," M_CID "," M_ENTRY_1 "]", REF_SCENARIO, &same), SM_OK, "%s", err);
	cr_expect_eq(same, 0);
}

Test(schema_extends, removed_model_conflicts)
{
	expect_conflict(REF_SCENARIO, "[" M_CID "," M_ENTRY_2 "]", "\"location\"");
	sm_free(&s1);
	sm_free(&s2);
	/* removing one model while adding another keeps the count but still conflicts */
	expect_conflict("[" M_LOC "," M_CID "]", "[" M_LOC "," M_TAG "]", "\"content_identity\"");
}

Test(schema_extends, changed_kind_conflicts)
{
	expect_conflict("[" M_LOC "]", "[{\"name\":\"location\",\"kind\":\"shared\"}]", "\"location\"");
	sm_free(&s1);
	sm_free(&s2);
	expect_conflict("[" M_CID "]", "[{\"name\":\"content_identity\",\"kind\":\"device_owned\"}]",
			"\"content_identity\"");
}

Test(schema_extends, removed_ref_conflicts)
{
	expect_conflict(REF_SCENARIO, "[" M_LOC "," M_CID "," M_ENTRY_1 "]", "content_id");
	sm_free(&s1);
	sm_free(&s2);
	/* same number of refs, one swapped for another */
	expect_conflict("[" M_LOC "," M_CID "," M_ENTRY_1 "]",
			"[" M_LOC "," M_CID ",{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":"
			"\"content_id\",\"model\":\"content_identity\"}]}]",
			"parent_id");
}

Test(schema_extends, changed_ref_target_conflicts)
{
	expect_conflict("[" M_LOC "," M_CID "," M_ENTRY_1 "]",
			"[" M_LOC "," M_CID ",{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":[{\"field\":"
			"\"parent_id\",\"model\":\"location\"}]}]",
			"parent_id");
}
