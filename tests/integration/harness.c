/* Integration harness: private databases, real relays, HTTP through libcurl. */
#define _GNU_SOURCE
#include "harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

double h_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void h_db_create(char *out, size_t n)
{
	static int counter;
	const char *base = getenv("SYNCRELAY_TEST_PG");
	char name[64], sql[128];
	PGconn *c;
	PGresult *res;

	H_ASSERT(base && *base, "SYNCRELAY_TEST_PG is not set: run the suite with tests/devenv.sh test");
	c = PQconnectdb(base);
	H_ASSERT(PQstatus(c) == CONNECTION_OK, "cannot reach the test cluster (%s): %s", base,
		  PQerrorMessage(c));
	snprintf(name, sizeof name, "t_%d_%d_%u", (int)getpid(), counter++, (unsigned)(h_now_ms() % 100000));
	/* the name is made of digits here, not user data; CREATE DATABASE takes no parameters */
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
	res = PQexec(c, sql);
	H_ASSERT(PQresultStatus(res) == PGRES_COMMAND_OK, "CREATE DATABASE failed: %s",
		  PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
	snprintf(out, n, "%s dbname=%s", base, name);
	if (getenv("SYNCRELAY_TEST_CITUS") && *getenv("SYNCRELAY_TEST_CITUS"))
		h_citus_prepare(out, name, 1);
}

const char *h_cainfo;

void h_relay_spawn(struct relay *r, const char *db, const char *const *env, int *fd)
{
	static int counter;
	int out[2];

	memset(r, 0, sizeof *r);
	if (db)
		snprintf(r->db, sizeof r->db, "%s", db);
	else
		h_db_create(r->db, sizeof r->db);
	snprintf(r->log, sizeof r->log, "/tmp/syncrelayd-test-%d-%d.log", (int)getpid(), counter++);
	H_ASSERT(pipe(out) == 0, "pipe failed");
	r->pid = fork();
	H_ASSERT(r->pid >= 0, "fork failed");
	if (r->pid == 0) {
		int logfd = open(r->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		/* a failed test must not leave its relay running */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(out[1], 1);
		if (logfd >= 0)
			dup2(logfd, 2);
		close(out[0]);
		setenv("DATABASE_URL", r->db, 1);
		setenv("SYNCRELAY_LISTEN", "127.0.0.1:0", 1);
		setenv("SYNCRELAY_ADMIN_TOKEN", H_ADMIN, 1);
		for (; env && *env; env++) {
			char *kv = strdup(*env), *eq = strchr(kv, '=');
			*eq = '\0';
			setenv(kv, eq + 1, 1);
		}
		execl(SYNCRELAYD_PATH, "syncrelayd", (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	*fd = out[0];
}

void h_relay_await(struct relay *r, int fd, double deadline)
{
	const char *prefix = "listening on http://127.0.0.1:", *tls_prefix = "listening on https://127.0.0.1:";
	char line[256] = "", *p;
	size_t len = 0;

	while (!strchr(line, '\n')) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int left = (int)((deadline - h_mono()) * 1000);
		ssize_t got;

		H_ASSERT(left > 0, "syncrelayd (pid %d) printed no listening line by its deadline; saw \"%s\"; see %s",
			 (int)r->pid, line, r->log);
		if (poll(&pfd, 1, left) <= 0)
			continue;
		got = read(fd, line + len, sizeof line - 1 - len);
		H_ASSERT(got > 0, "syncrelayd (pid %d) exited before listening; see %s", (int)r->pid, r->log);
		len += (size_t)got;
		line[len] = '\0';
	}
	close(fd);
	if ((p = strstr(line, tls_prefix))) {
		r->port = atoi(p + strlen(tls_prefix));
		snprintf(r->url, sizeof r->url, "https://127.0.0.1:%d", r->port);
		return;
	}
	p = strstr(line, prefix);
	H_ASSERT(p, "unexpected first line from syncrelayd: %s", line);
	r->port = atoi(p + strlen(prefix));
	snprintf(r->url, sizeof r->url, "http://127.0.0.1:%d", r->port);
}

void h_relay_start(struct relay *r, const char *db, const char *const *env)
{
	int fd;

	h_relay_spawn(r, db, env, &fd);
	h_relay_await(r, fd, h_mono() + 30);
}

int h_relay_stop(struct relay *r)
{
	double deadline = h_mono() + 30;
	int status;

	if (r->pid <= 0)
		return -1;
	kill(r->pid, SIGTERM);
	while (waitpid(r->pid, &status, WNOHANG) == 0) {
		struct timespec t = {0, 10 * 1000 * 1000};
		if (h_mono() > deadline) {
			kill(r->pid, SIGKILL);
			waitpid(r->pid, &status, 0);
			H_FAIL("syncrelayd did not exit within 30 s of SIGTERM; see %s", r->log);
		}
		nanosleep(&t, NULL);
	}
	r->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

size_t h_write_buf(char *data, size_t size, size_t nmemb, void *arg)
{
	sr_buf *b = arg;

	sr_buf_put(b, data, size * nmemb);
	return size * nmemb;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct resp *p = arg;
	size_t n = size * nmemb;

	if (n > 13 && !strncasecmp(data, "Content-Type:", 13)) {
		size_t i = 13;
		while (i < n && data[i] == ' ')
			i++;
		snprintf(p->ctype, sizeof p->ctype, "%.*s", (int)(n - i), data + i);
		p->ctype[strcspn(p->ctype, "\r\n")] = '\0';
	}
	return n;
}

/* The request of h_http, h_http_raw and h_xhttp on c, without assertions; the CURLcode. */
static CURLcode perform(CURL *c, struct resp *out, const char *method, const char *url,
			const char *authorization, const char *body, size_t len, long timeout)
{
	struct curl_slist *hdr = NULL;
	sr_buf b = {0}, auth = {0};
	double t0 = h_mono();
	CURLcode rc;

	memset(out, 0, sizeof *out);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_write_buf);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
	if (h_cainfo)
		curl_easy_setopt(c, CURLOPT_CAINFO, h_cainfo);
	if (authorization) {
		sr_buf_printf(&auth, "Authorization: %s", authorization);
		hdr = curl_slist_append(hdr, auth.p);
	}
	if (body) {
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	} else {
		/* a reused handle must not send an earlier request's body again */
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	}
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	hdr = curl_slist_append(hdr, "Expect:");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	rc = curl_easy_perform(c);
	out->seconds = h_mono() - t0;
	curl_slist_free_all(hdr);
	sr_buf_free(&auth);
	if (rc != CURLE_OK) {
		snprintf(out->err, sizeof out->err, "%s %s: %s", method, url, curl_easy_strerror(rc));
		sr_buf_free(&b);
		return rc;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	out->body = sr_buf_steal(&b);
	if (!out->body)
		out->body = strdup("");
	out->json = json_loads(out->body, 0, NULL);
	return rc;
}

void h_http_raw(struct resp *out, struct relay *r, const char *method, const char *path,
		const char *authorization, const char *body, size_t len)
{
	CURL *c = curl_easy_init();
	sr_buf url = {0};
	CURLcode rc;

	H_ASSERT(c, "curl_easy_init failed");
	sr_buf_printf(&url, "%s%s", r->url, path);
	rc = perform(c, out, method, url.p, authorization, body, len, 120L);
	curl_easy_cleanup(c);
	sr_buf_free(&url);
	H_ASSERT(rc == CURLE_OK, "%s %s failed: %s (relay log %s)", method, path, curl_easy_strerror(rc), r->log);
}

void h_http(struct resp *out, struct relay *r, const char *method, const char *path,
	    const char *token, const char *body)
{
	char auth[256];

	if (token)
		snprintf(auth, sizeof auth, "Bearer %s", token);
	h_http_raw(out, r, method, path, token ? auth : NULL, body, body ? strlen(body) : 0);
}

int h_xhttp(CURL *c, const char *method, const char *url, const char *token, const char *body,
	    long timeout, struct resp *out)
{
	CURL *own = c ? NULL : curl_easy_init();
	char auth[256];
	CURLcode rc;

	if (!c && !own) {
		memset(out, 0, sizeof *out);
		snprintf(out->err, sizeof out->err, "curl_easy_init failed");
		return -1;
	}
	if (token)
		snprintf(auth, sizeof auth, "Bearer %s", token);
	rc = perform(c ? c : own, out, method, url, token ? auth : NULL, body, body ? strlen(body) : 0, timeout);
	if (own)
		curl_easy_cleanup(own);
	return rc == CURLE_OK ? 0 : -1;
}

void h_curl_init(void)
{
	H_ASSERT(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK, "curl_global_init failed");
}

void h_curl_fini(void)
{
	curl_global_cleanup();
}

struct curl_slist *h_xheaders(const char *token)
{
	struct curl_slist *hdr = NULL;
	char auth[256];

	if (token) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
		hdr = curl_slist_append(hdr, auth);
	}
	return curl_slist_append(hdr, "Expect:");
}

static void *call_run(void *arg)
{
	struct h_call *c = arg;

	c->rc = h_xhttp(NULL, "GET", c->url, c->token, NULL, 90L, &c->resp);
	c->t_end = h_mono();
	return NULL;
}

void h_call_start(struct h_call *c, const struct relay *r, const char *token, const char *fmt, ...)
{
	char path[256];
	va_list ap;

	memset(c, 0, sizeof *c);
	va_start(ap, fmt);
	vsnprintf(path, sizeof path, fmt, ap);
	va_end(ap);
	snprintf(c->url, sizeof c->url, "%s%s", r->url, path);
	c->token = token;
	c->t_start = h_mono();
	H_ASSERT(pthread_create(&c->th, NULL, call_run, c) == 0, "pthread_create failed");
}

void h_call_join(struct h_call *c, double deadline, const char *what)
{
	struct timespec ts;
	double left = deadline - h_mono();
	int rc;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (left < 0)
		left = 0;
	ts.tv_sec += (time_t)left;
	ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	rc = pthread_timedjoin_np(c->th, NULL, &ts);
	H_ASSERT(rc == 0, "%s: GET %s had not returned %.1f s after it was sent", what, c->url, h_mono() - c->t_start);
	H_ASSERT(c->rc == 0, "%s: %s", what, c->resp.err);
	H_ASSERT(c->resp.json, "%s: the answer is not JSON: %ld %s", what, c->resp.status, c->resp.body);
}

const char *h_metric_line(const char *text, const char *name)
{
	size_t n = strlen(name);
	const char *p = text;

	while (p && *p) {
		if (!strncmp(p, name, n) && (p[n] == ' ' || p[n] == '{'))
			return p;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

/* GET /metrics; 1 with the value of name in *v, or 0 when it is not listed. */
static int metric_get(struct relay *r, const char *name, double *v)
{
	struct resp p;
	const char *line;

	h_http(&p, r, "GET", "/metrics", NULL, NULL);
	H_ASSERT(p.status == 200, "GET /metrics on %s: %ld %s", r->url, p.status, p.body);
	line = h_metric_line(p.body, name);
	if (line)
		*v = strtod(strchr(line, ' ') + 1, NULL);
	h_resp_free(&p);
	return line != NULL;
}

double h_metric(struct relay *r, const char *name)
{
	double v = 0;

	H_ASSERT(metric_get(r, name, &v), "metric %s is missing from /metrics of %s", name, r->url);
	return v;
}

double h_metric_or(struct relay *r, const char *name, double missing)
{
	double v;

	return metric_get(r, name, &v) ? v : missing;
}

void h_wait_held(struct relay *r, long want, int exact, double timeout)
{
	double t0 = h_mono();
	long v;

	for (;;) {
		struct timespec tick = {0, 20 * 1000 * 1000};

		v = (long)h_metric(r, "syncrelay_longpolls_held");
		if (exact ? v == want : v >= want)
			return;
		H_ASSERT(h_mono() - t0 < timeout,
			 "waited %.1f s for syncrelay_longpolls_held %s %ld on %s; last seen %ld (log %s)", timeout,
			 exact ? "==" : ">=", want, r->url, v, r->log);
		nanosleep(&tick, NULL);
	}
}

void h_resp_free(struct resp *p)
{
	free(p->body);
	json_decref(p->json);
	memset(p, 0, sizeof *p);
}

void h_expect_problem(const struct resp *p, long status, const char *code)
{
	const char *got;

	H_ASSERT(p->status == status, "expected %ld %s, got %ld: %s", status, code, p->status, p->body);
	H_ASSERT(!strcmp(p->ctype, "application/problem+json"), "problem content type, got \"%s\"", p->ctype);
	H_ASSERT(p->json, "problem body is not JSON: %s", p->body);
	got = json_string_value(json_object_get(p->json, "code"));
	H_ASSERT(got && !strcmp(got, code), "expected code %s, got %s", code, p->body);
	H_ASSERT(json_is_string(json_object_get(p->json, "type")) &&
		  json_is_string(json_object_get(p->json, "title")) &&
		  json_integer_value(json_object_get(p->json, "status")) == status &&
		  json_is_string(json_object_get(p->json, "detail")),
		  "problem lacks type/title/status/detail: %s", p->body);
}

void h_http_problem(struct relay *r, const char *method, const char *path, const char *token,
		    const char *body, long status, const char *code)
{
	struct resp p;

	h_http(&p, r, method, path, token, body);
	h_expect_problem(&p, status, code);
	h_resp_free(&p);
}

void h_http_json(struct relay *r, const char *method, const char *path, const char *token,
		 const char *body, long status)
{
	struct resp p;

	h_http(&p, r, method, path, token, body);
	h_expect_json(&p, status);
	h_resp_free(&p);
}

void h_expect_json(const struct resp *p, long status)
{
	H_ASSERT(p->status == status, "expected %ld, got %ld: %.2000s", status, p->status, p->body);
	H_ASSERT(!strcmp(p->ctype, "application/json"), "content type \"%s\" for %.2000s", p->ctype, p->body);
	H_ASSERT(p->json, "body is not JSON: %.2000s", p->body);
}

void h_library(struct relay *r, struct lib *out)
{
	struct resp p;

	h_http(&p, r, "POST", "/v1/libraries", H_ADMIN, "{\"name\":\"test library\"}");
	H_ASSERT(p.status == 201, "create library: %ld %s", p.status, p.body);
	snprintf(out->id, sizeof out->id, "%s", json_string_value(json_object_get(p.json, "library_id")));
	snprintf(out->join, sizeof out->join, "%s", json_string_value(json_object_get(p.json, "join_token")));
	h_resp_free(&p);
}

void h_device(struct relay *r, const struct lib *l, struct dev *out)
{
	char path[128], body[128];
	struct resp p;

	H_ASSERT(sr_uuid_random(out->id) == 0, "no random bytes");
	snprintf(path, sizeof path, "/v1/libraries/%s/devices", l->id);
	snprintf(body, sizeof body, "{\"device_id\":\"%s\",\"name\":\"dev\"}", out->id);
	h_http(&p, r, "POST", path, l->join, body);
	H_ASSERT(p.status == 201, "enroll: %ld %s", p.status, p.body);
	snprintf(out->token, sizeof out->token, "%s", json_string_value(json_object_get(p.json, "token")));
	h_resp_free(&p);
}

void h_schema_ref(struct relay *r, const struct lib *l, const struct dev *d)
{
	char path[128];
	struct resp p;

	snprintf(path, sizeof path, "/v1/libraries/%s/schema", l->id);
	h_http(&p, r, "PUT", path, d->token,
	       "{\"models\":[{\"name\":\"location\",\"kind\":\"device_owned\"},"
	       "{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":["
	       "{\"field\":\"content_id\",\"model\":\"content_identity\"},"
	       "{\"field\":\"parent_id\",\"model\":\"entry\"}]},"
	       "{\"name\":\"content_identity\",\"kind\":\"shared\"}]}");
	H_ASSERT(p.status == 200, "schema: %ld %s", p.status, p.body);
	h_resp_free(&p);
}

void h_fixture(struct relay *r, struct lib *l, struct dev *d1, struct dev *d2)
{
	h_library(r, l);
	h_device(r, l, d1);
	if (d2)
		h_device(r, l, d2);
	h_schema_ref(r, l, d1);
}

void h_hlc(char out[SR_HLC_LEN + 1], uint64_t ms, uint64_t counter, const char *dev)
{
	sr_hlc h = {.ms = ms, .counter = counter};

	snprintf(h.device, sizeof h.device, "%s", dev);
	sr_hlc_format(out, &h);
}

char *h_batch(const struct dev *d, uint64_t base_ms, int first, int n)
{
	sr_buf b = {0};
	int i;

	sr_buf_puts(&b, "{\"changes\":[");
	for (i = 0; i < n; i++) {
		char hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1];
		int k = first + i;

		h_hlc(hlc, base_ms, (uint64_t)k, d->id);
		/* record ids derived from k and the device, so a test can address them again */
		snprintf(rid, sizeof rid, "%.8s-0000-4000-8000-%012d", d->id, k);
		sr_buf_printf(&b, "%s{\"hlc\":\"%s\",\"model\":\"entry\",\"record_id\":\"%s\",\"op\":\"upsert\","
			      "\"data\":{\"i\":%d,\"name\":\"file %d\"}}", i ? "," : "", hlc, rid, k, k);
	}
	sr_buf_puts(&b, "]}");
	return sr_buf_steal(&b);
}

long long h_jint(const json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

const char *h_jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

const char *h_lp(const struct lib *l, const char *fmt, ...)
{
	static char bufs[8][2048];
	static int next;
	char *b = bufs[next++ % 8];
	int n = snprintf(b, 2048, "/v1/libraries/%s", l->id);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b + n, (size_t)(2048 - n), fmt, ap);
	va_end(ap);
	return b;
}

void h_uuid(char out[SR_UUID_LEN + 1])
{
	H_ASSERT(sr_uuid_random(out) == 0, "no random bytes");
}

void h_chb_add(struct h_chb *c, const char *hlc, const char *model, const char *rid, const char *op,
	       const char *data)
{
	sr_buf_puts(&c->b, c->n++ ? "," : "{\"changes\":[");
	sr_buf_printf(&c->b, "{\"hlc\":\"%s\",\"model\":\"%s\",\"record_id\":\"%s\",\"op\":\"%s\"", hlc, model,
		      rid, op);
	if (data)
		sr_buf_printf(&c->b, ",\"data\":%s", data);
	sr_buf_putc(&c->b, '}');
}

void h_chb_raw(struct h_chb *c, const char *obj)
{
	sr_buf_puts(&c->b, c->n++ ? "," : "{\"changes\":[");
	sr_buf_puts(&c->b, obj);
}

char *h_chb_end(struct h_chb *c)
{
	if (!c->n)
		sr_buf_puts(&c->b, "{\"changes\":[");
	sr_buf_puts(&c->b, "]}");
	c->n = 0;
	return sr_buf_steal(&c->b);
}

long long h_push_ok(struct relay *r, const struct lib *l, const struct dev *d, char *body, long long accepted,
		    long long dups)
{
	struct resp p;
	long long head;

	h_http(&p, r, "POST", h_lp(l, "/changes"), d->token, body);
	h_expect_json(&p, 200);
	H_ASSERT(h_jint(p.json, "accepted") == accepted, "accepted: expected %lld: %.2000s", accepted, p.body);
	if (dups >= 0)
		H_ASSERT(h_jint(p.json, "duplicates") == dups, "duplicates: expected %lld: %.2000s", dups, p.body);
	head = h_jint(p.json, "head");
	h_resp_free(&p);
	free(body);
	return head;
}

long long h_lib_head(struct relay *r, const struct lib *l)
{
	struct resp p;
	long long h;

	h_http(&p, r, "GET", h_lp(l, ""), H_ADMIN, NULL);
	h_expect_json(&p, 200);
	h = h_jint(p.json, "head");
	h_resp_free(&p);
	return h;
}

char *h_db_checksum(struct relay *r)
{
	static const char *sql =
		"SELECT md5("
		" coalesce((SELECT string_agg(c::text, ',' ORDER BY c.library_id, c.seq) FROM changes c), '') ||"
		" coalesce((SELECT string_agg(x::text, ',' ORDER BY x.library_id, x.model, x.record_id) FROM records x), '') ||"
		" coalesce((SELECT string_agg(s::text, ',' ORDER BY s.library_id, s.model, s.owner) FROM scope_digests s), '') ||"
		" coalesce((SELECT string_agg(b::text, ',' ORDER BY b.library_id, b.model, b.owner, b.bucket)"
		" FROM bucket_digests b), '') ||"
		" coalesce((SELECT string_agg(l::text, ',' ORDER BY l.library_id) FROM libraries l), '') ||"
		" coalesce((SELECT string_agg((d.library_id, d.device_id, d.name, d.acked_seq, d.revoked_at)::text, ','"
		" ORDER BY d.library_id, d.device_id) FROM devices d), '') ||"
		" coalesce((SELECT string_agg(t::text, ',' ORDER BY t.token_hash) FROM tokens t), ''))";
	PGconn *c = PQconnectdb(r->db);
	PGresult *res;
	char *sum;

	H_ASSERT(PQstatus(c) == CONNECTION_OK, "cannot reach the relay's database: %s", PQerrorMessage(c));
	if (getenv("SYNCRELAY_TEST_CITUS")) {
		/* the checksum spans every shard: on Citus databases made for the suite such a query
		 * is an error (citus_db.c), a trap for the relay's statements, not for this one */
		res = PQexec(c, "SET citus.multi_task_query_log_level = off");
		H_ASSERT(PQresultStatus(res) == PGRES_COMMAND_OK, "checksum: %s", PQresultErrorMessage(res));
		PQclear(res);
	}
	res = PQexec(c, sql);
	H_ASSERT(PQresultStatus(res) == PGRES_TUPLES_OK, "checksum: %s", PQresultErrorMessage(res));
	sum = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(c);
	return sum;
}

void h_sql(struct relay *r, const char *sql, const char *param)
{
	PGconn *c = PQconnectdb(r->db);
	PGresult *res;

	H_ASSERT(PQstatus(c) == CONNECTION_OK, "cannot reach the relay's database: %s", PQerrorMessage(c));
	res = PQexecParams(c, sql, param ? 1 : 0, NULL, &param, NULL, NULL, 0);
	H_ASSERT(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
		 PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
}
