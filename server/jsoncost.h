/* Sizing up a JSON text before parsing it. */
#ifndef SR_JSONCOST_H
#define SR_JSONCOST_H

#include <stddef.h>
#include <stdint.h>

/* Counted over the text: values in all (object keys are not values), containers (objects
 * and arrays), the elements of the largest array directly inside the top-level object (a
 * push's "changes") and the deepest nesting. Strings are skipped. For valid JSON the counts
 * are exact; for any other text they are what a parser would have to build at most, give
 * or take its first error. */
struct json_cost {
	size_t values, containers, top_array;
	int max_depth;
};

void json_cost_scan(const char *text, size_t len, struct json_cost *out);

#endif
