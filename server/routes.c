/* The route table and path matching. */
#include "routes.h"

#include <stdio.h>
#include <string.h>

#include "handlers.h"

#define ADM AUTH_ADMIN
#define DEV AUTH_DEVICE
#define JOIN AUTH_JOIN
#define SMALL (1024 * 1024)    /* bodies of a few fields (and a schema document) */
#define SCHEMA SMALL

const struct route routes[] = {
	{"POST", "/v1/libraries", h_library_create, ADM, "library_create", SMALL},
	{"GET", "/v1/libraries/{lib}", h_library_get, DEV | ADM, "library_get", 0},
	{"POST", "/v1/libraries/{lib}/devices", h_device_enroll, JOIN | ADM, "device_enroll", SMALL},
	{"GET", "/v1/libraries/{lib}/devices", h_device_list, DEV | ADM, "device_list", 0},
	{"DELETE", "/v1/libraries/{lib}/devices/{dev}", h_device_revoke, DEV | ADM, "device_revoke", 0},
	{"POST", "/v1/libraries/{lib}/join-token", h_join_token_rotate, ADM, "join_token_rotate", 0},
	{"DELETE", "/v1/libraries/{lib}/join-token", h_join_token_revoke, ADM, "join_token_revoke", 0},
	{"PUT", "/v1/libraries/{lib}/schema", h_schema_put, DEV | ADM, "schema_put", SCHEMA},
	{"GET", "/v1/libraries/{lib}/schema", h_schema_get, DEV | ADM, "schema_get", 0},
	{"POST", "/v1/libraries/{lib}/changes", h_changes_push, DEV, "push", -1},
	{"GET", "/v1/libraries/{lib}/changes", h_changes_pull, DEV, "pull", 0},
	{"POST", "/v1/libraries/{lib}/ack", h_ack, DEV, "ack", SMALL},
	{"GET", "/v1/libraries/{lib}/records", h_records, DEV, "records", 0},
	{"GET", "/v1/libraries/{lib}/digest", h_digest, DEV, "digest", 0},
	{"GET", "/v1/libraries/{lib}/digest/buckets", h_digest_buckets, DEV, "digest_buckets", 0},
	{"GET", "/healthz", h_healthz, AUTH_NONE, "healthz", 0},
	{"GET", "/readyz", h_readyz, AUTH_NONE, "readyz", 0},
	{"GET", "/metrics", h_metrics, AUTH_NONE, "metrics", 0},
	{"POST", "/v1/libraries/{lib}/compact", h_compact, ADM, "compact", SMALL},
};
const int routes_count = (int)(sizeof routes / sizeof routes[0]);

int routes_inline(const struct route *rt)
{
	return rt->handler == h_healthz || rt->handler == h_metrics;
}

/* Matches one pattern against path. Returns 1 on match, 0 on none, -1 when the shape
 * matches but a {lib}/{dev} segment is not a canonical UUID. */
static int match_pattern(const char *pat, const char *path, char *lib, char *dev)
{
	int bad = 0;

	while (*pat && *path) {
		if (*pat != '/' || *path != '/')
			return 0;
		pat++;
		path++;
		const char *pe = strchr(pat, '/'), *se = strchr(path, '/');
		size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);
		size_t sl = se ? (size_t)(se - path) : strlen(path);

		if (pat[0] == '{') {
			char *dst = !strncmp(pat, "{lib}", 5) ? lib : dev;
			if (sl == 0)
				return 0;
			if (!sr_uuid_valid(path, sl)) {
				bad = 1;
			} else {
				memcpy(dst, path, sl);
				dst[sl] = '\0';
			}
		} else if (pl != sl || strncmp(pat, path, pl)) {
			return 0;
		}
		pat += pl;
		path += sl;
	}
	if (*pat || (*path && strcmp(path, "/")))
		return 0;
	return bad ? -1 : 1;
}

enum route_match routes_match(struct req *r, const char *method, const char *path,
			      const char **allow)
{
	static __thread char allow_buf[64];
	int i, shape = 0, bad_id = 0;

	allow_buf[0] = '\0';
	for (i = 0; i < routes_count; i++) {
		int m = match_pattern(routes[i].pattern, path, r->lib, r->dev);

		if (m == 0)
			continue;
		shape = 1;
		if (strcmp(routes[i].method, method)) {
			size_t n = strlen(allow_buf);
			snprintf(allow_buf + n, sizeof allow_buf - n, "%s%s", n ? ", " : "",
				 routes[i].method);
			continue;
		}
		if (m < 0) {
			bad_id = 1;
			continue;
		}
		r->route = &routes[i];
		r->route_index = i;
		return ROUTE_FOUND;
	}
	if (bad_id)
		return ROUTE_BAD_ID;
	if (shape) {
		*allow = allow_buf;
		return ROUTE_BAD_METHOD;
	}
	return ROUTE_NOT_FOUND;
}
