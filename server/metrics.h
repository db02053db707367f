/* Prometheus metrics: request counts and latencies by route and status, push figures and
 * refusals, database errors, the LISTEN connection, process figures and build info. */
#ifndef SR_METRICS_H
#define SR_METRICS_H

#include <stdint.h>

/* route_index -1 for requests that matched no route; status 0 when none was sent. */
void metrics_request(int route_index, int status, double seconds);
void metrics_push(int64_t accepted, int64_t duplicates);
/* A push refused with this problem code. */
void metrics_push_refused(const char *code);
/* A database error answered as 500 or 503. */
void metrics_db_error(void);
/* The exposition text (malloc'd). */
char *metrics_render(void);

#endif
