/*
 * What an operator relies on: the access line and request id, metric series present from
 * the start, SIGHUP re-reading the config file (live settings change, the others say they
 * need a restart, a broken file changes nothing, the relay never dies of it), CORS, HEAD,
 * OPTIONS, WWW-Authenticate, and a relay that waits for its database at start.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* One request with extra header lines; the reply's headers kept whole. */
struct hresp {
	long status;
	char headers[8192];
	sr_buf body;
};

static size_t keep_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct hresp *p = arg;
	size_t n = size * nmemb, len = strlen(p->headers);

	if (len + n + 1 < sizeof p->headers) {
		memcpy(p->headers + len, data, n);
		p->headers[len + n] = '\0';
	}
	return n;
}

static void hreq(struct hresp *out, struct relay *r, const char *method, const char *path, const char *body,
		 const char *const *headers)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char url[1024];
	CURLcode rc;

	memset(out, 0, sizeof *out);
	cr_assert(c);
	snprintf(url, sizeof url, "%s%s", r->url, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	else
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_write_buf);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &out->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, keep_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
	h = curl_slist_append(h, "Expect:");
	for (; headers && *headers; headers++)
		h = curl_slist_append(h, *headers);
	if (body) {
		h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	rc = curl_easy_perform(c);
	cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	sr_buf_putc(&out->body, '\0');
}

/* The value of header name in h (case-insensitive), copied to out; NULL when absent. */
static const char *header(const struct hresp *h, const char *name, char *out, size_t n)
{
	const char *p = h->headers;
	size_t len = strlen(name);

	while (p && *p) {
		if (!strncasecmp(p, name, len) && p[len] == ':') {
			const char *v = p + len + 1;
			while (*v == ' ')
				v++;
			snprintf(out, n, "%.*s", (int)strcspn(v, "\r\n"), v);
			return out;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "r");
	sr_buf b = {0};
	char buf[4096];
	size_t got;

	if (f) {
		while ((got = fread(buf, 1, sizeof buf, f)))
			sr_buf_put(&b, buf, got);
		fclose(f);
	}
	sr_buf_putc(&b, '\0');
	return b.p;
}

/* Waits until the relay's log holds needle (and returns the line holding it, malloc'd). */
static char *wait_log(const struct relay *r, const char *needle, double timeout)
{
	double deadline = h_mono() + timeout;

	for (;;) {
		char *text = read_text(r->log), *p = strstr(text, needle);

		if (p) {
			char *start = p, *line;
			while (start > text && start[-1] != '\n')
				start--;
			line = strndup(start, strcspn(start, "\n"));
			free(text);
			return line;
		}
		free(text);
		cr_assert(h_mono() < deadline, "the relay did not log \"%s\" within %.0f s; see %s", needle, timeout,
			  r->log);
		{
			struct timespec t = {0, 20 * 1000 * 1000};
			nanosleep(&t, NULL);
		}
	}
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert(f, "could not write %s", path);
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

Test(operator, access_line_and_request_id)
{
	struct relay r;
	struct lib l;
	struct dev d;
	struct hresp h;
	char v[256], auth[200], path[256], *line;
	json_t *j;

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &l);
	h_device(&r, &l, &d);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", d.token);
	snprintf(path, sizeof path, "/v1/libraries/%s/changes?since=0", l.id);

	/* the client's own id is echoed and logged with the route, library and device */
	hreq(&h, &r, "GET", path, NULL, (const char *const[]){auth, "X-Request-Id: op-test-0001", NULL});
	cr_assert_eq(h.status, 200, "%s", h.body.p);
	cr_assert_str_eq(header(&h, "X-Request-Id", v, sizeof v), "op-test-0001");
	line = wait_log(&r, "request_id=op-test-0001", 10);
	cr_assert(strstr(line, "access method=GET route=pull status=200 bytes="), "%s", line);
	cr_assert(strstr(line, l.id) && strstr(line, d.id), "the access line names no library or device: %s", line);
	free(line);
	free(h.body.p);

	/* an id that is not printable-safe is replaced; problem bodies carry the id */
	hreq(&h, &r, "GET", path, NULL, (const char *const[]){"Authorization: Bearer nope", "X-Request-Id: bad id\x01", NULL});
	cr_assert_eq(h.status, 401);
	cr_assert(header(&h, "X-Request-Id", v, sizeof v));
	cr_assert_eq(strlen(v), 16, "a made-up request id is 16 hex digits: \"%s\"", v);
	cr_assert_eq(strspn(v, "0123456789abcdef"), 16, "%s", v);
	j = json_loads(h.body.p, 0, NULL);
	cr_assert(j, "%s", h.body.p);
	cr_assert_str_eq(h_jstr(j, "request_id"), v, "the problem body's request_id is not the header's");
	json_decref(j);
	cr_assert_str_eq(header(&h, "WWW-Authenticate", auth, sizeof auth), "Bearer realm=\"syncrelay\"");
	free(h.body.p);
	{
		char needle[64];
		snprintf(needle, sizeof needle, "status=401 bytes=");
		line = wait_log(&r, needle, 10);
		cr_assert(strstr(line, v), "the 401's access line has another request id: %s", line);
		free(line);
	}
	/* one line per message: no line of the log starts without a timestamp */
	{
		char *text = read_text(r.log), *p;
		for (p = text; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
			if (*p != '\n')
				cr_assert(!strncmp(p, "20", 2), "a log line without a timestamp: %.200s", p);
		cr_assert(!strstr(text, "NOTICE"), "the log holds a NOTICE: %s", text);
		cr_assert(!strstr(text, "not the first option"), "libmicrohttpd's option-order warning: %s", text);
		free(text);
	}
	cr_assert_eq(h_relay_stop(&r), 0);
}

Test(operator, metric_series_present_from_the_start)
{
	static const char *const names[] = {
		"syncrelay_http_requests_total{route=\"push\",status=\"5xx\"}",
		"syncrelay_http_requests_total{route=\"pull\",status=\"4xx\"}",
		"syncrelay_http_responses_total{code=\"503\"}",
		"syncrelay_http_responses_total{code=\"429\"}",
		"syncrelay_push_refused_total{code=\"clock-skew\"}",
		"syncrelay_push_refused_total{code=\"bad-request\"}",
		"syncrelay_db_errors_total",
		"syncrelay_longpolls_held",
	};
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct resp p;
	char name[256];
	size_t i;

	h_relay_start(&r, NULL, NULL);
	for (i = 0; i < sizeof names / sizeof names[0]; i++)
		cr_assert_eq(h_metric(&r, names[i]), 0, "%s is not 0 on a fresh relay", names[i]);
	cr_assert_eq(h_metric(&r, "syncrelay_listen_connected"), 1);
	cr_assert_eq(h_metric(&r, "syncrelay_listen_reconnects_total"), 0);
	cr_assert_eq(h_metric(&r, "syncrelay_build_info{version=\"0.1.0\",tls=\"off\"}"), 1);
	cr_assert_gt(h_metric(&r, "process_resident_memory_bytes"), 1e6);
	cr_assert_gt(h_metric(&r, "process_open_fds"), 3);
	cr_assert_gt(h_metric(&r, "process_start_time_seconds"), 1.7e9);

	/* a refused push is counted by its code, and by its status */
	h_fixture(&r, &l, &d1, &d2);
	h_http(&p, &r, "POST", h_lp(&l, "/changes"), d1.token, "{\"changes\":7}");
	cr_assert_eq(p.status, 400, "%s", p.body);
	h_resp_free(&p);
	cr_assert_eq(h_metric(&r, "syncrelay_push_refused_total{code=\"bad-request\"}"), 1);
	cr_assert_eq(h_metric(&r, "syncrelay_http_responses_total{code=\"400\"}"), 1);
	cr_assert_eq(h_metric(&r, "syncrelay_http_requests_total{route=\"push\",status=\"4xx\"}"), 1);

	/* per-library head and the slowest device's lag */
	h_push_ok(&r, &l, &d1, h_batch(&d1, h_now_ms(), 0, 3), 3, 0);
	snprintf(name, sizeof name, "syncrelay_library_head{library=\"%s\"}", l.id);
	cr_assert_eq(h_metric(&r, name), 3);
	snprintf(name, sizeof name, "syncrelay_library_lag_changes{library=\"%s\"}", l.id);
	cr_assert_eq(h_metric(&r, name), 3, "no device acknowledged anything: the lag is the head");
	h_http_json(&r, "POST", h_lp(&l, "/ack"), d1.token, "{\"seq\":3}", 200);
	h_http_json(&r, "POST", h_lp(&l, "/ack"), d2.token, "{\"seq\":2}", 200);
	cr_assert_eq(h_metric(&r, name), 1, "the slowest device (d2, at 2 of 3) sets the lag");
	cr_assert_eq(h_metric(&r, "syncrelay_metrics_db_up"), 1);
	cr_assert_eq(h_relay_stop(&r), 0);
}

Test(operator, sighup_reloads_the_config_file)
{
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct resp p;
	char conf[128], envc[160], *line;
	const char *env[2] = {envc, NULL};
	int fd;

	snprintf(conf, sizeof conf, "/tmp/syncrelay-op-XXXXXX");
	fd = mkstemp(conf);
	cr_assert(fd >= 0);
	close(fd);
	write_text(conf, "# operator test\nSYNCRELAY_MAX_BATCH = 2\nSYNCRELAY_THREADS = 4\nSYNCRELAY_LOG_LEVEL = 2\n");
	snprintf(envc, sizeof envc, "SYNCRELAY_CONFIG=%s", conf);
	h_relay_start(&r, NULL, env);
	h_fixture(&r, &l, &d1, &d2);
	{
		char *body = h_batch(&d1, h_now_ms(), 0, 3);
		h_http(&p, &r, "POST", h_lp(&l, "/changes"), d1.token, body);
		free(body);
	}
	h_expect_problem(&p, 413, "too-large");
	h_resp_free(&p);

	write_text(conf, "SYNCRELAY_MAX_BATCH = 10\nSYNCRELAY_THREADS = 6\nSYNCRELAY_LOG_LEVEL = 2\n");
	cr_assert_eq(kill(r.pid, SIGHUP), 0);
	line = wait_log(&r, "reload: SYNCRELAY_MAX_BATCH changed from 2 to 10", 10);
	free(line);
	line = wait_log(&r, "reload: SYNCRELAY_THREADS changed to 6 but needs a restart; still 4", 10);
	free(line);
	h_push_ok(&r, &l, &d1, h_batch(&d1, h_now_ms(), 0, 3), 3, 0);

	/* a broken file: logged, nothing changes, the relay stays */
	write_text(conf, "SYNCRELAY_MAX_BATCH = lots\n");
	cr_assert_eq(kill(r.pid, SIGHUP), 0);
	line = wait_log(&r, "reload: configuration not changed:", 10);
	cr_assert(strstr(line, ":1: invalid value \"lots\" for --max-batch"), "%s", line);
	free(line);
	h_push_ok(&r, &l, &d1, h_batch(&d1, h_now_ms() + 1000, 0, 3), 3, 0);
	/* several signals at once do not kill it either */
	cr_assert_eq(kill(r.pid, SIGHUP), 0);
	cr_assert_eq(kill(r.pid, SIGHUP), 0);
	h_http_json(&r, "GET", "/healthz", NULL, NULL, 200);
	cr_assert_eq(h_relay_stop(&r), 0, "the relay did not stop cleanly after SIGHUPs; see %s", r.log);
	unlink(conf);
}

Test(operator, cors_head_options)
{
	static const char *const env[] = {"SYNCRELAY_CORS_ORIGINS=https://app.example, https://other.example", NULL};
	struct relay r, plain;
	struct lib l;
	struct hresp h;
	char v[256], path[256];

	h_relay_start(&r, NULL, env);
	h_library(&r, &l);
	snprintf(path, sizeof path, "/v1/libraries/%s/changes", l.id);

	/* a preflight from an allowed origin */
	hreq(&h, &r, "OPTIONS", path, NULL,
	     (const char *const[]){"Origin: https://app.example", "Access-Control-Request-Method: POST",
				   "Access-Control-Request-Headers: authorization, content-type", NULL});
	cr_assert_eq(h.status, 204, "preflight: %ld %s", h.status, h.headers);
	cr_assert_str_eq(header(&h, "Access-Control-Allow-Origin", v, sizeof v), "https://app.example");
	cr_assert(strstr(header(&h, "Access-Control-Allow-Methods", v, sizeof v), "POST"), "%s", h.headers);
	cr_assert(strstr(header(&h, "Access-Control-Allow-Headers", v, sizeof v), "Authorization"), "%s", h.headers);
	cr_assert(strstr(header(&h, "Allow", v, sizeof v), "OPTIONS"), "%s", h.headers);
	free(h.body.p);
	/* another origin gets no CORS headers */
	hreq(&h, &r, "OPTIONS", path, NULL,
	     (const char *const[]){"Origin: https://evil.example", "Access-Control-Request-Method: POST", NULL});
	cr_assert_eq(h.status, 204);
	cr_assert_null(header(&h, "Access-Control-Allow-Origin", v, sizeof v), "%s", h.headers);
	free(h.body.p);
	/* an actual request from an allowed origin, and its exposed request id */
	hreq(&h, &r, "GET", "/healthz", NULL, (const char *const[]){"Origin: https://other.example", NULL});
	cr_assert_eq(h.status, 200);
	cr_assert_str_eq(header(&h, "Access-Control-Allow-Origin", v, sizeof v), "https://other.example");
	cr_assert(strstr(header(&h, "Access-Control-Expose-Headers", v, sizeof v), "X-Request-Id"), "%s", h.headers);
	free(h.body.p);
	/* HEAD on a GET route: the headers, no body */
	hreq(&h, &r, "HEAD", "/healthz", NULL, NULL);
	cr_assert_eq(h.status, 200);
	cr_assert_str_eq(h.body.p, "");
	cr_assert_str_eq(header(&h, "Content-Type", v, sizeof v), "application/json");
	free(h.body.p);
	cr_assert_eq(h_relay_stop(&r), 0);

	/* CORS is off by default */
	h_relay_start(&plain, NULL, NULL);
	hreq(&h, &plain, "GET", "/healthz", NULL, (const char *const[]){"Origin: https://app.example", NULL});
	cr_assert_eq(h.status, 200);
	cr_assert_null(header(&h, "Access-Control-Allow-Origin", v, sizeof v), "%s", h.headers);
	free(h.body.p);
	cr_assert_eq(h_relay_stop(&plain), 0);
}

Test(operator, start_waits_for_the_database)
{
	const char *base = getenv("SYNCRELAY_TEST_PG");
	char db[600], name[64], sql[128], *line;
	struct relay r;
	PGconn *c;
	PGresult *res;
	int fd;

	cr_assert(base && *base);
	snprintf(name, sizeof name, "t_late_%d_%u", (int)getpid(), (unsigned)(h_now_ms() % 100000));
	snprintf(db, sizeof db, "%s dbname=%s", base, name);
	h_relay_spawn(&r, db, NULL, &fd);
	/* the database does not exist yet: the relay says so and keeps trying */
	line = wait_log(&r, "database not reachable (attempt 2", 20);
	cr_assert(strstr(line, name), "the retry line does not give libpq's reason: %s", line);
	free(line);
	cr_assert_eq(waitpid(r.pid, NULL, WNOHANG), 0, "the relay exited while the database was missing");
	c = PQconnectdb(base);
	cr_assert_eq(PQstatus(c), CONNECTION_OK);
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
	res = PQexec(c, sql);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
	h_relay_await(&r, fd, h_mono() + 30);
	h_http_json(&r, "GET", "/readyz", NULL, NULL, 200);
	line = wait_log(&r, "database reachable after", 5);
	free(line);
	cr_assert_eq(h_relay_stop(&r), 0);
}

Test(operator, json_log_format)
{
	static const char *const env[] = {"SYNCRELAY_LOG_FORMAT=json", NULL};
	struct relay r;
	struct hresp h;
	char *line;
	json_t *j;

	h_relay_start(&r, NULL, env);
	hreq(&h, &r, "GET", "/healthz", NULL, (const char *const[]){"X-Request-Id: json-log-1", NULL});
	cr_assert_eq(h.status, 200);
	free(h.body.p);
	line = wait_log(&r, "\"request_id\":\"json-log-1\"", 10);
	j = json_loads(line, 0, NULL);
	cr_assert(j, "the access line is not one JSON object: %s", line);
	cr_assert_str_eq(h_jstr(j, "msg"), "access");
	cr_assert_str_eq(h_jstr(j, "route"), "healthz");
	cr_assert_str_eq(h_jstr(j, "level"), "info");
	cr_assert_eq(h_jint(j, "status"), 200);
	cr_assert(h_jstr(j, "ts"), "%s", line);
	json_decref(j);
	free(line);
	cr_assert_eq(h_relay_stop(&r), 0);
	/* every line of the log is JSON */
	{
		char *text = read_text(r.log), *p = text, *nl;
		for (; *p; p = nl + 1) {
			nl = strchr(p, '\n');
			if (!nl)
				break;
			*nl = '\0';
			j = json_loads(p, 0, NULL);
			cr_assert(j, "a log line is not JSON: %s", p);
			json_decref(j);
		}
		free(text);
	}
}

/* Runs sql on its own session; fails naming the statement. */
static void pq_ok(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(res);

	cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
	PQclear(res);
}

Test(operator, pool_wait_time_is_measured)
{
	static const char *const env[] = {"SYNCRELAY_DB_POOL=1", NULL};
	struct relay r;
	struct lib l;
	struct dev d1, d2;
	struct h_call a, b;
	PGconn *lock;
	double count0, slow0, deadline;
	int seen = 0;

	h_relay_start(&r, NULL, env);
	h_fixture(&r, &l, &d1, &d2);
	cr_assert_eq(h_metric(&r, "syncrelay_db_pool_timeouts_total"), 0);
	count0 = h_metric(&r, "syncrelay_db_pool_wait_seconds_count");
	cr_assert_gt(count0, 0, "the fixture's requests took connections: they are counted");
	slow0 = count0 - h_metric(&r, "syncrelay_db_pool_wait_seconds_bucket{le=\"0.1\"}");

	/* the pool's one connection is held by request a, blocked on a lock this test holds (tokens may be cached:
	 * libraries too);
	 * request b then waits for the pool, not for the database */
	lock = PQconnectdb(r.db);
	cr_assert_eq(PQstatus(lock), CONNECTION_OK, "%s", PQerrorMessage(lock));
	pq_ok(lock, "BEGIN");
	pq_ok(lock, "LOCK TABLE tokens, libraries IN ACCESS EXCLUSIVE MODE");
	h_call_start(&a, &r, d1.token, "/v1/libraries/%s", l.id);
	for (deadline = h_mono() + 10; !seen && h_mono() < deadline;) {
		PGresult *res = PQexec(lock, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'");
		seen = PQresultStatus(res) == PGRES_TUPLES_OK && atoi(PQgetvalue(res, 0, 0)) > 0;
		PQclear(res);
	}
	cr_assert(seen, "request a never waited on the lock within 10 s");
	h_call_start(&b, &r, d2.token, "/v1/libraries/%s", l.id);
	/* the fault lasts 300 ms: b's wait for the pool covers most of it */
	usleep(300 * 1000);
	pq_ok(lock, "COMMIT");
	PQfinish(lock);
	h_call_join(&a, h_mono() + 10, "request a");
	h_call_join(&b, h_mono() + 10, "request b");
	cr_assert_gt(b.t_end - b.t_start, 0.2, "request b should have waited for the pool");

	cr_assert_gt(h_metric(&r, "syncrelay_db_pool_wait_seconds_count"), count0 + 1);
	cr_assert_gt(h_metric(&r, "syncrelay_db_pool_wait_seconds_count") -
			     h_metric(&r, "syncrelay_db_pool_wait_seconds_bucket{le=\"0.1\"}"),
		     slow0, "b's wait of over 0.1 s is not in the histogram");
	cr_assert_geq(h_metric(&r, "syncrelay_db_pool_wait_seconds_sum"), 0.15);
	cr_assert_eq(h_metric(&r, "syncrelay_db_pool_timeouts_total"), 0);
	h_resp_free(&a.resp);
	h_resp_free(&b.resp);
	cr_assert_eq(h_relay_stop(&r), 0);
}
