/* Prometheus metrics: request counts and latencies by route, push figures, gauges. */
#ifndef SR_METRICS_H
#define SR_METRICS_H

#include <stdint.h>

/* route_index -1 for requests that matched no route; status 0 when none was sent. */
void metrics_request(int route_index, int status, double seconds);
void metrics_push(int64_t accepted, int64_t duplicates);
/* The exposition text (malloc'd). */
char *metrics_render(void);

#endif
