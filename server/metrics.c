/*
 * Metrics: lock-free counters updated on the request path, rendered on /metrics. Every
 * series an alert may watch is listed from the start, at zero (a rate() over a series that
 * appears only with the first 5xx misses that 5xx).
 */
#include "metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "notify.h"
#include "tls.h"

#include "compact.h"
#include "db.h"
#include "longpoll.h"
#include "pagememo.h"
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
	uint64_t codes[32]; /* by index in status_codes, last: any other */
	uint64_t refused[32]; /* by index in refusal_codes, last: any other */
	uint64_t db_errors;
} m;

#ifndef SYNCRELAY_VERSION
#define SYNCRELAY_VERSION "unknown"
#endif

/* the statuses the relay answers (api/openapi.yaml), each a series from the start */
static const int status_codes[] = {200, 201, 204, 400, 401, 403, 404, 405, 409, 410, 413, 414, 422, 429, 431, 500, 503};
#define NCODES (int)(sizeof status_codes / sizeof status_codes[0])
/* the problem codes a push can be refused with */
static const char *const refusal_codes[] = {"bad-request", "unauthorized", "forbidden", "foreign-hlc", "wrong-library",
					    "library-not-found", "hlc-conflict", "not-owner", "too-large", "clock-skew",
					    "unknown-model", "unavailable", "internal"};
#define NREFUSALS (int)(sizeof refusal_codes / sizeof refusal_codes[0])
_Static_assert(NCODES < 32 && NREFUSALS < 32, "the counters need one more slot than codes, for any other");

void metrics_push_refused(const char *code)
{
	int i;

	for (i = 0; i < NREFUSALS; i++)
		if (code && !strcmp(code, refusal_codes[i]))
			break;
	__atomic_add_fetch(&m.refused[i], 1, __ATOMIC_RELAXED);
}

void metrics_db_error(void)
{
	__atomic_add_fetch(&m.db_errors, 1, __ATOMIC_RELAXED);
}

static double start_time;

__attribute__((constructor)) static void mark_start(void)
{
	start_time = (double)time(NULL);
}

/* process_* as the Prometheus client libraries name them, from /proc/self */
static void render_process(sr_buf *b)
{
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	unsigned long utime = 0, stime = 0, vsize = 0;
	long rss = 0;
	int fds = 0;
	char buf[2048], *p;
	FILE *f;
	DIR *d;

	f = fopen("/proc/self/stat", "r");
	if (f) {
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		buf[n] = '\0';
		fclose(f);
		/* fields after the command name, which may hold spaces: state is field 3 */
		p = strrchr(buf, ')');
		if (p)
			sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %*u %lu %ld",
			       &utime, &stime, &vsize, &rss);
	}
	d = opendir("/proc/self/fd");
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			if (de->d_name[0] != '.')
				fds++;
		closedir(d);
		fds--; /* the directory stream itself */
	}
	sr_buf_printf(b,
		      "# HELP process_cpu_seconds_total User and system CPU time.\n# TYPE process_cpu_seconds_total counter\n"
		      "process_cpu_seconds_total %.2f\n"
		      "# HELP process_resident_memory_bytes Resident memory.\n# TYPE process_resident_memory_bytes gauge\n"
		      "process_resident_memory_bytes %ld\n"
		      "# HELP process_virtual_memory_bytes Virtual memory.\n# TYPE process_virtual_memory_bytes gauge\n"
		      "process_virtual_memory_bytes %lu\n"
		      "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds %d\n"
		      "# HELP process_start_time_seconds Start time since the epoch.\n# TYPE process_start_time_seconds gauge\n"
		      "process_start_time_seconds %.0f\n",
		      tick > 0 ? (double)(utime + stime) / (double)tick : 0.0, rss * page, vsize, fds, start_time);
}

void metrics_request(int route_index, int status, double seconds)
{
	int ri = route_index < 0 || route_index >= MAX_ROUTES ? MAX_ROUTES : route_index;
	int cls = status >= 100 && status < 600 ? status / 100 : 0;
	int b = 0, k;

	for (k = 0; k < NCODES && status_codes[k] != status; k++)
		;
	__atomic_add_fetch(&m.codes[k], 1, __ATOMIC_RELAXED);
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

/* the pool's wait histogram: where its p99 leaves the first buckets, requests queue for a
 * connection (SYNCRELAY_DB_POOL too small, or statements slow) */
static void render_pool_wait(sr_buf *b)
{
	const double *bound = db_pool_wait_bounds();
	struct db_wait_stats w;
	unsigned long long cum = 0;
	int i;

	db_pool_wait_stats(&w);
	sr_buf_puts(b, "# HELP syncrelay_db_pool_wait_seconds Time waited for a free database connection.\n"
		       "# TYPE syncrelay_db_pool_wait_seconds histogram\n");
	for (i = 0; i <= DB_WAIT_BUCKETS; i++) {
		cum += w.bucket[i];
		if (i < DB_WAIT_BUCKETS)
			sr_buf_printf(b, "syncrelay_db_pool_wait_seconds_bucket{le=\"%g\"} %llu\n", bound[i], cum);
		else
			sr_buf_printf(b, "syncrelay_db_pool_wait_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
	}
	sr_buf_printf(b,
		      "syncrelay_db_pool_wait_seconds_sum %.6f\nsyncrelay_db_pool_wait_seconds_count %llu\n"
		      "# HELP syncrelay_db_pool_timeouts_total Requests that found no free database connection within 5 s.\n"
		      "# TYPE syncrelay_db_pool_timeouts_total counter\nsyncrelay_db_pool_timeouts_total %llu\n",
		      w.sum_s, w.count, w.timeouts);
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
			sr_buf_printf(&b, "syncrelay_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
					      name, cls_label[c], (unsigned long long)ld(&m.count[r][c]));
	}
	sr_buf_puts(&b, "# HELP syncrelay_http_responses_total HTTP responses by status code.\n"
			"# TYPE syncrelay_http_responses_total counter\n");
	for (i = 0; i <= NCODES; i++) {
		char code[16];
		snprintf(code, sizeof code, "%d", i < NCODES ? status_codes[i] : 0);
		sr_buf_printf(&b, "syncrelay_http_responses_total{code=\"%s\"} %llu\n", i < NCODES ? code : "other",
			      (unsigned long long)ld(&m.codes[i]));
	}
	sr_buf_puts(&b, "# HELP syncrelay_push_refused_total Push batches refused, by problem code.\n"
			"# TYPE syncrelay_push_refused_total counter\n");
	for (i = 0; i <= NREFUSALS; i++)
		sr_buf_printf(&b, "syncrelay_push_refused_total{code=\"%s\"} %llu\n",
			      i < NREFUSALS ? refusal_codes[i] : "other", (unsigned long long)ld(&m.refused[i]));
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
		      "# HELP syncrelay_longpolls_held Long-polls and event streams currently held.\n"
		      "# TYPE syncrelay_longpolls_held gauge\nsyncrelay_longpolls_held %d\n"
		      "# HELP syncrelay_pull_pages_shared_total Pull pages served from one read by another request"
		      " (a woken herd of polls reads its page once).\n"
		      "# TYPE syncrelay_pull_pages_shared_total counter\nsyncrelay_pull_pages_shared_total %llu\n"
		      "# HELP syncrelay_db_pool_in_use Database connections in use.\n"
		      "# TYPE syncrelay_db_pool_in_use gauge\nsyncrelay_db_pool_in_use %d\n"
		      "# HELP syncrelay_db_pool_size Database connections in the pool.\n"
		      "# TYPE syncrelay_db_pool_size gauge\nsyncrelay_db_pool_size %d\n",
		      (unsigned long long)ld(&m.pushes), (unsigned long long)ld(&m.accepted),
		      (unsigned long long)ld(&m.duplicates), poll_held(), pagememo_hits(), db_pool_in_use(),
		      db_pool_size());
	render_pool_wait(&b);
	compact_metrics(&b);
	sr_buf_printf(&b,
		      "# HELP syncrelay_db_errors_total Requests answered 500 or 503 for a database error.\n"
		      "# TYPE syncrelay_db_errors_total counter\nsyncrelay_db_errors_total %llu\n"
		      "# HELP syncrelay_listen_connected 1 while the LISTEN connection (long-poll wake-ups) is up.\n"
		      "# TYPE syncrelay_listen_connected gauge\nsyncrelay_listen_connected %d\n"
		      "# HELP syncrelay_listen_reconnects_total Times the LISTEN connection was lost.\n"
		      "# TYPE syncrelay_listen_reconnects_total counter\nsyncrelay_listen_reconnects_total %ld\n"
		      "# HELP syncrelay_build_info The relay's version and features.\n"
		      "# TYPE syncrelay_build_info gauge\nsyncrelay_build_info{version=\"%s\",tls=\"%s\"} 1\n",
		      (unsigned long long)ld(&m.db_errors), notify_connected(), notify_losses(), SYNCRELAY_VERSION,
		      tls_enabled() ? "on" : "off");
	render_process(&b);
	return sr_buf_steal(&b);
}
