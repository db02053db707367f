/* Integration harness: private databases, real relays, HTTP through libcurl. */
#define _GNU_SOURCE
#include "harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
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
}

void h_relay_start(struct relay *r, const char *db, const char *const *env)
{
	static int counter;
	int out[2];
	char line[256] = "", *p;
	size_t len = 0;
	double deadline;

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
	deadline = h_mono() + 30;
	while (!strchr(line, '\n')) {
		struct pollfd pfd = {.fd = out[0], .events = POLLIN};
		int left = (int)((deadline - h_mono()) * 1000);
		ssize_t got;

		H_ASSERT(left > 0, "syncrelayd did not print its listening line within 30 s; see %s", r->log);
		if (poll(&pfd, 1, left) <= 0)
			continue;
		got = read(out[0], line + len, sizeof line - 1 - len);
		H_ASSERT(got > 0, "syncrelayd exited before listening; see %s", r->log);
		len += (size_t)got;
		line[len] = '\0';
	}
	close(out[0]);
	p = strstr(line, "listening on http://127.0.0.1:");
	H_ASSERT(p, "unexpected first line from syncrelayd: %s", line);
	r->port = atoi(p + strlen("listening on http://127.0.0.1:"));
	snprintf(r->url, sizeof r->url, "http://127.0.0.1:%d", r->port);
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

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
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

void h_http(struct resp *out, struct relay *r, const char *method, const char *path,
	    const char *token, const char *body)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hdr = NULL;
	char url[4096], auth[256];
	sr_buf b = {0};
	double t0 = h_mono();
	CURLcode rc;

	memset(out, 0, sizeof *out);
	snprintf(url, sizeof url, "%s%s", r->url, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
	if (token) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
		hdr = curl_slist_append(hdr, auth);
	}
	if (body) {
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	}
	hdr = curl_slist_append(hdr, "Expect:");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	rc = curl_easy_perform(c);
	H_ASSERT(rc == CURLE_OK, "%s %s failed: %s (relay log %s)", method, path, curl_easy_strerror(rc),
		  r->log);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	out->seconds = h_mono() - t0;
	out->body = sr_buf_steal(&b);
	if (!out->body)
		out->body = strdup("");
	out->json = json_loads(out->body, 0, NULL);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
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
