/* The route table: method, path pattern, handler, who may call, the metric label and the body limit. */
#ifndef SR_ROUTES_H
#define SR_ROUTES_H

#include "http.h"

struct route {
	const char *method;
	const char *pattern; /* segments; {lib} and {dev} capture canonical UUIDs */
	handler_fn handler;
	int auth; /* mask of enum auth_kind; AUTH_NONE for open routes */
	const char *name;
	long long max_body; /* most body bytes: 0 none (413 otherwise), -1 SYNCRELAY_MAX_BODY_BYTES */
};

extern const struct route routes[];
extern const int routes_count;

/* 1 for routes that need no database (health, metrics): they run on the HTTP thread. */
int routes_inline(const struct route *rt);

enum route_match { ROUTE_FOUND, ROUTE_NOT_FOUND, ROUTE_BAD_METHOD, ROUTE_BAD_ID };

/* Matches path and method; on ROUTE_FOUND fills r->route, r->lib, r->dev. On
 * ROUTE_BAD_METHOD, *allow names the methods the path takes (static storage). */
enum route_match routes_match(struct req *r, const char *method, const char *path,
			      const char **allow);

#endif
