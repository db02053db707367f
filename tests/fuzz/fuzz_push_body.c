/*
 * libFuzzer target: the push body decoder. The relay's one-pass sizing (json_cost_scan) runs
 * on any bytes; when jansson parses them, its counts must equal the tree's exactly, and every
 * change of a "changes" array that sr_change_parse accepts must survive sr_change_write and a
 * second parse unchanged.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jsoncost.h"
#include "syncrelay_codec.h"

static void count(const json_t *j, int depth, struct json_cost *c)
{
	size_t i;
	const char *k;
	json_t *v;

	c->values++;
	if (depth > c->max_depth && (json_is_object(j) || json_is_array(j)))
		c->max_depth = depth;
	if (json_is_object(j)) {
		c->containers++;
		json_object_foreach((json_t *)j, k, v) {
			if (depth == 1 && json_is_array(v) && json_array_size(v) > c->top_array)
				c->top_array = json_array_size(v);
			count(v, depth + 1, c);
		}
	} else if (json_is_array(j)) {
		c->containers++;
		for (i = 0; i < json_array_size(j); i++)
			count(json_array_get(j, i), depth + 1, c);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_cost scan, tree = {0};
	json_error_t err;
	json_t *j;
	size_t i;

	json_cost_scan((const char *)data, size, &scan);
	j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
	if (!j)
		return 0;
	count(j, 1, &tree);
	assert(scan.values == tree.values);
	assert(scan.containers == tree.containers);
	assert(scan.max_depth == tree.max_depth);
	/* the scan also counts an array at depth 2 of a top-level array: at least the tree's */
	assert(json_is_array(j) ? scan.top_array >= tree.top_array : scan.top_array == tree.top_array);
	{
		const json_t *arr = json_object_get(j, "changes");

		for (i = 0; i < json_array_size(arr); i++) {
			sr_change a = {0}, b = {0};
			char e[256];
			sr_buf out = {0};
			json_t *again;

			if (sr_change_parse(&a, json_array_get(arr, i), e, sizeof e)) {
				sr_change_clear(&a);
				continue;
			}
			sr_change_write(&out, &a);
			again = out.p ? json_loadb(out.p, out.len, 0, NULL) : NULL;
			assert(again);
			assert(sr_change_parse(&b, again, e, sizeof e) == 0);
			assert(!strcmp(a.hlc, b.hlc) && !strcmp(a.model, b.model) && !strcmp(a.record_id, b.record_id));
			assert(a.op == b.op);
			assert((!a.data && !b.data) || (a.data && b.data && !strcmp(a.data, b.data)));
			json_decref(again);
			sr_buf_free(&out);
			sr_change_clear(&a);
			sr_change_clear(&b);
		}
	}
	json_decref(j);
	return 0;
}
