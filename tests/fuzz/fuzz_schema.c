/*
 * libFuzzer target: the schema decoder. Any JSON goes through sm_parse; an accepted schema
 * orders (or reports its cycle), serialises, parses back to an equal schema and extends itself.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "schema_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sm_schema s = {0}, again = {0};
	char err[512];
	json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL), *order, *models;
	int same = 0;

	if (!j)
		return 0;
	if (sm_parse(&s, json_object_get(j, "models"), err, sizeof err) == 0) {
		order = sm_order_json(&s);
		if (!order) {
			int *ord = calloc((size_t)s.n + 1, sizeof *ord);

			assert(ord && sm_order(&s, ord, err, sizeof err) != 0);
			free(ord);
		}
		json_decref(order);
		models = sm_models_json(&s);
		assert(models);
		assert(sm_parse(&again, models, err, sizeof err) == 0);
		assert(again.n == s.n);
		assert(sm_check_extends(&s, &again, &same, err, sizeof err) == 0 && same);
		json_decref(models);
	}
	sm_free(&s);
	sm_free(&again);
	json_decref(j);
	return 0;
}
