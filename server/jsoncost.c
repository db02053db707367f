/*
 * What a JSON text would cost as a jansson tree, counted in one pass that allocates nothing,
 * so that a body can be refused before it is parsed (see jsoncost.h).
 */
#include "jsoncost.h"

#include <string.h>

void json_cost_scan(const char *p, size_t len, struct json_cost *c)
{
	const char *end = p + len;
	uint64_t objects = 0; /* bit d-1: the container at depth d is an object (64 levels kept) */
	size_t elems = 0;
	int depth = 0, in_top_array = 0, expect_value = 1;

	memset(c, 0, sizeof *c);
	for (; p < end; p++) {
		int open = *p == '{' || *p == '[', scalar = 0;

		if (*p == '"') {
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\')
					p++;
			scalar = expect_value; /* else an object key */
		} else if (open) {
			depth++;
			if (depth > c->max_depth)
				c->max_depth = depth;
			if (depth <= 64)
				objects = *p == '{' ? objects | (UINT64_C(1) << (depth - 1))
						    : objects & ~(UINT64_C(1) << (depth - 1));
			c->values++;
			c->containers++;
			if (in_top_array && depth == 3)
				elems++;
			if (depth == 2 && *p == '[') {
				in_top_array = 1;
				elems = 0;
			}
			expect_value = *p == '[';
			continue;
		} else if (*p == '}' || *p == ']') {
			if (depth == 2 && in_top_array) {
				in_top_array = 0;
				if (elems > c->top_array)
					c->top_array = elems;
			}
			/* an unbalanced close (invalid JSON) must not take the depth below zero */
			if (depth > 0)
				depth--;
			expect_value = 0;
			continue;
		} else if (*p == ',') {
			/* in an object a key comes next, in an array a value */
			expect_value = depth < 1 || depth > 64 || !(objects & (UINT64_C(1) << (depth - 1)));
			continue;
		} else if (*p == ':') {
			expect_value = 1;
			continue;
		} else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
			continue;
		} else {
			/* a number or a literal: one value, however many bytes */
			scalar = expect_value;
			while (p + 1 < end && !strchr(",]}: \t\r\n\"{[", p[1]))
				p++;
		}
		if (scalar) {
			c->values++;
			if (in_top_array && depth == 2)
				elems++;
		}
		expect_value = 0;
	}
	if (in_top_array && elems > c->top_array)
		c->top_array = elems;
}

