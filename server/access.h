/* What every request gets around its handler: a request id, CORS, the WWW-Authenticate
 * challenge on 401, OPTIONS answers, and the access log line. */
#ifndef SR_ACCESS_H
#define SR_ACCESS_H

#include <microhttpd.h>

#include "http.h"

/* The request's own X-Request-Id when it is 1..64 of [A-Za-z0-9._:-], else a fresh one. */
void access_request_id(struct MHD_Connection *conn, char out[65]);
/* Sets the thread's current request id (NULL: none). */
void access_set_current(const char *id);
/* Headers on every reply: X-Request-Id, CORS for an allowed Origin, WWW-Authenticate on 401. */
void access_headers(struct req *r, struct MHD_Response *resp, int status, const char *allow, const char *code);
/* The answer to OPTIONS on a path that takes the methods in allow: 204 with Allow and, for a
 * CORS preflight from an allowed origin, the Access-Control-Allow-* headers. */
void access_options(struct req *r, const char *allow, struct reply *out);
/* The access line, once the request is complete. */
void access_log(struct req *r);

#endif
