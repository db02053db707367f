/*
 * libFuzzer target: the request path and query parser. The first line of the input is the
 * method, the rest the target: the path goes through the route table (a match names a route
 * whose {lib}/{dev} captures are canonical UUIDs), each query value through the strict
 * integer parser (an accepted value is digits, optionally after '-', and prints back the same).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "routes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), *nl, *path, *query, *arg, *save = NULL;
	struct req r;
	const char *allow = NULL;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	nl = strchr(text, '\n');
	if (!nl) {
		free(text);
		return 0;
	}
	*nl = '\0';
	path = nl + 1;
	query = strchr(path, '?');
	if (query)
		*query++ = '\0';
	memset(&r, 0, sizeof r);
	switch (routes_match(&r, text, path, &allow)) {
	case ROUTE_FOUND:
		assert(r.route && r.route_index >= 0 && r.route_index < routes_count);
		assert(!strcmp(r.route->method, text));
		assert(!r.lib[0] || sr_uuid_valid(r.lib, strlen(r.lib)));
		assert(!r.dev[0] || sr_uuid_valid(r.dev, strlen(r.dev)));
		break;
	case ROUTE_BAD_METHOD:
		assert(allow && *allow);
		break;
	default:
		break;
	}
	for (arg = query ? strtok_r(query, "&", &save) : NULL; arg; arg = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(arg, '=');
		long long v;

		if (eq && http_parse_int(eq + 1, -1000000, INT64_MAX, &v) == 0) {
			char back[32];
			const char *s = eq + 1;

			snprintf(back, sizeof back, "%lld", v);
			/* leading zeros are accepted; otherwise the text is the number */
			while (s[0] == '0' && s[1])
				s++;
			assert(!strcmp(back, s) || (s[0] == '-' && v <= 0));
		}
	}
	free(text);
	return 0;
}
