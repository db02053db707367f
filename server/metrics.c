/* Metrics: lock-free counters updated on the request path, rendered on /metrics. */
#include "metrics.h"

#include <stdlib.h>

#include "compact.h"
#include "db.h"
#include "longpoll.h"
#include "routes.h"
#include "syncrelay_codec.h"

#define MAX_ROUTES 32
#define NCLASS 6 /* 1xx..5xx, and 0 = no reply */
static const double bounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define NBOUNDS (int)(sizeof bounds / sizeof bounds[0])

static struct {
	uint64_t count[MAX_ROUTES + 1][NCLASS];
	uint64_t hist[MAX_ROUTES + 1][NBOUNDS + 1];
	uint64_t sum_us[MAX_ROUTES + 1];
	uint64_t pushes, accepted, duplicates;
} m;

void metrics_request(int route_index, int status, double seconds)
{
	int ri = route_index < 0 || route_index >= MAX_ROUTES ? MAX_ROUTES : route_index;
	int cls = status >= 100 && status < 600 ? status / 100 : 0;
	int b = 0;

	while (b < NBOUNDS && seconds > bounds[b])
		b++;
	__atomic_add_fetch(&m.count[ri][cls], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&m.hist[ri][b], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&m.sum_us[ri], (uint64_t)(seconds * 1e6), __ATOMIC_RELAXED);
}

void metrics_push(int64_t accepted, int64_t duplicates)
{
	__atomic_add_fetch(&m.pushes, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&m.accepted, (uint64_t)accepted, __ATOMIC_RELAXED);
	__atomic_add_fetch(&m.duplicates, (uint64_t)duplicates, __ATOMIC_RELAXED);
}

static uint64_t ld(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

char *metrics_render(void)
{
	static const char *cls_label[NCLASS] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
	sr_buf b = {0};
	int r, c, i;

	sr_buf_puts(&b, "# HELP syncrelay_http_requests_total HTTP requests by route and status class.\n"
			"# TYPE syncrelay_http_requests_total counter\n");
	for (r = 0; r <= MAX_ROUTES; r++) {
		const char *name = r < routes_count ? routes[r].name : r == MAX_ROUTES ? "unmatched" : NULL;
		if (!name)
			continue;
		for (c = 0; c < NCLASS; c++)
			if (ld(&m.count[r][c]))
				sr_buf_printf(&b, "syncrelay_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
					      name, cls_label[c], (unsigned long long)ld(&m.count[r][c]));
	}
	sr_buf_puts(&b, "# HELP syncrelay_http_request_duration_seconds Request latency by route.\n"
			"# TYPE syncrelay_http_request_duration_seconds histogram\n");
	for (r = 0; r <= MAX_ROUTES; r++) {
		const char *name = r < routes_count ? routes[r].name : r == MAX_ROUTES ? "unmatched" : NULL;
		uint64_t cum = 0;
		if (!name)
			continue;
		for (i = 0; i <= NBOUNDS; i++) {
			cum += ld(&m.hist[r][i]);
			if (i < NBOUNDS)
				sr_buf_printf(&b, "syncrelay_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
					      name, bounds[i], (unsigned long long)cum);
			else
				sr_buf_printf(&b, "syncrelay_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
					      name, (unsigned long long)cum);
		}
		sr_buf_printf(&b, "syncrelay_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", name,
			      (double)ld(&m.sum_us[r]) / 1e6);
		sr_buf_printf(&b, "syncrelay_http_request_duration_seconds_count{route=\"%s\"} %llu\n", name,
			      (unsigned long long)cum);
	}
	sr_buf_printf(&b,
		      "# HELP syncrelay_pushes_total Push batches committed.\n"
		      "# TYPE syncrelay_pushes_total counter\nsyncrelay_pushes_total %llu\n"
		      "# HELP syncrelay_changes_accepted_total Changes stored by pushes.\n"
		      "# TYPE syncrelay_changes_accepted_total counter\nsyncrelay_changes_accepted_total %llu\n"
		      "# HELP syncrelay_changes_duplicate_total Re-sent changes counted as duplicates.\n"
		      "# TYPE syncrelay_changes_duplicate_total counter\nsyncrelay_changes_duplicate_total %llu\n"
		      "# HELP syncrelay_longpolls_held Long-polls currently held.\n"
		      "# TYPE syncrelay_longpolls_held gauge\nsyncrelay_longpolls_held %d\n"
		      "# HELP syncrelay_db_pool_in_use Database connections in use.\n"
		      "# TYPE syncrelay_db_pool_in_use gauge\nsyncrelay_db_pool_in_use %d\n"
		      "# HELP syncrelay_db_pool_size Database connections in the pool.\n"
		      "# TYPE syncrelay_db_pool_size gauge\nsyncrelay_db_pool_size %d\n",
		      (unsigned long long)ld(&m.pushes), (unsigned long long)ld(&m.accepted),
		      (unsigned long long)ld(&m.duplicates), poll_held(), db_pool_in_use(), db_pool_size());
	compact_metrics(&b);
	return sr_buf_steal(&b);
}
