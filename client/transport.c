/* HTTP to the relay: one reused libcurl handle per client (keep-alive), timeouts, retries;
 * TLS certificates verified by libcurl, against the CA file of SYNCRELAY_CA_FILE or of the
 * store (enroll --ca-file) when one is given. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "internal.h"

#define MAX_ATTEMPTS 6

int sr_client_set_ca_file(sr_client *c, const char *path)
{
	FILE *f;

	if (!path || !*path) {
		if (store_meta_set(c->st, "ca_file", ""))
			return cerr(c, SR_ESTORE, "could not clear the CA file: %s", store_errmsg(c->st));
		return 0;
	}
	f = fopen(path, "r");
	if (!f)
		return cerr(c, SR_EINVAL, "could not read the CA file \"%s\": %s", path, strerror(errno));
	fclose(f);
	if (path[0] != '/')
		return cerr(c, SR_EINVAL, "the CA file \"%s\" must be an absolute path (it is kept in the store)", path);
	if (store_meta_set(c->st, "ca_file", path))
		return cerr(c, SR_ESTORE, "could not keep the CA file: %s", store_errmsg(c->st));
	return 0;
}

/* 1 when url's host is this machine (localhost, 127.0.0.0/8, ::1). */
static int loopback(const char *url)
{
	const char *h = strstr(url, "://");
	size_t n;

	h = h ? h + 3 : url;
	n = strcspn(h, ":/");
	if (*h == '[')
		return !strncmp(h, "[::1]", 5);
	return (n == 9 && !strncasecmp(h, "localhost", 9)) || !strncmp(h, "127.", 4);
}

/* The CA file for this call: SYNCRELAY_CA_FILE, else the store's, else libcurl's default. */
static void set_tls(sr_client *c)
{
	const char *env = getenv("SYNCRELAY_CA_FILE");
	char *kept = NULL;

	if (env && *env)
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, env);
	else if (store_meta_get(c->st, "ca_file", &kept) == 0 && kept && *kept)
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, kept);
	free(kept);
}

/* Transport failures that another attempt cannot mend: the relay's certificate. */
static int tls_refusal(CURLcode rc)
{
	return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
	       rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_ISSUER_ERROR || rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	sr_buf_put(arg, data, size * nmemb);
	return size * nmemb;
}

static void backoff(int attempt)
{
	unsigned r = 0;
	long ms = 200L << (attempt < 5 ? attempt : 5);
	struct timespec t;

	if (ms > 5000)
		ms = 5000;
	if (getrandom(&r, sizeof r, 0) < 0)
		r = 0;
	ms = ms / 2 + (long)(r % (unsigned)(ms / 2 + 1)); /* jitter: half to full */
	t.tv_sec = ms / 1000;
	t.tv_nsec = (ms % 1000) * 1000000L;
	nanosleep(&t, NULL);
}

/* Answers and problems that carry relay_time tell how far this device's clock is from the
 * relay's: the midpoint of the exchange against the relay's reading. */
static void learn_clock(sr_client *c, const json_t *j, uint64_t t0, uint64_t t1)
{
	const json_t *rt = json_object_get(j, "relay_time"), *lim = json_object_get(j, "max_skew_ms");

	if (json_is_integer(rt)) {
		c->clock_offset_ms = (long long)((t0 + t1) / 2) - (long long)json_integer_value(rt);
		c->have_offset = 1;
	}
	if (json_is_integer(lim) && json_integer_value(lim) > 0)
		c->max_skew_ms = (long long)json_integer_value(lim);
}

void relay_learn_time(sr_client *c, int have_time, int64_t relay_time, int64_t max_skew_ms)
{
	if (have_time) {
		c->clock_offset_ms = (long long)((c->raw_t0 + c->raw_t1) / 2) - (long long)relay_time;
		c->have_offset = 1;
	}
	if (max_skew_ms > 0)
		c->max_skew_ms = (long long)max_skew_ms;
}

/* ---- prefetch: the next page's GET runs on its own handle and thread while this page is
 * applied. It makes one attempt; relay_call_raw takes its answer only when the path is the
 * very one asked for and the answer a 2xx, and else asks again itself, with the retries and
 * problem handling of every call. */

struct relay_prefetch {
	pthread_t th;
	int running;
	CURL *curl;
	char url[2048], path[1024], auth[200], ca[1024];
	long timeout_s;
	/* the answer */
	CURLcode rc;
	long status;
	sr_buf b;
	uint64_t t0, t1;
};

static void *prefetch_run(void *arg)
{
	struct relay_prefetch *pf = arg;
	struct curl_slist *h = NULL;

	curl_easy_reset(pf->curl);
	curl_easy_setopt(pf->curl, CURLOPT_URL, pf->url);
	curl_easy_setopt(pf->curl, CURLOPT_CUSTOMREQUEST, "GET");
	curl_easy_setopt(pf->curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(pf->curl, CURLOPT_TIMEOUT, pf->timeout_s);
	curl_easy_setopt(pf->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(pf->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(pf->curl, CURLOPT_WRITEDATA, &pf->b);
	if (pf->ca[0])
		curl_easy_setopt(pf->curl, CURLOPT_CAINFO, pf->ca);
	h = curl_slist_append(h, "Expect:");
	if (pf->auth[0])
		h = curl_slist_append(h, pf->auth);
	curl_easy_setopt(pf->curl, CURLOPT_HTTPHEADER, h);
	pf->t0 = hlc_wall_ms();
	pf->rc = curl_easy_perform(pf->curl);
	pf->t1 = hlc_wall_ms();
	curl_slist_free_all(h);
	pf->status = 0;
	curl_easy_getinfo(pf->curl, CURLINFO_RESPONSE_CODE, &pf->status);
	return NULL;
}

/* Waits for a prefetch in flight: 1 when its answer is path's 2xx, handed over in *out; else dropped, 0. */
static int prefetch_finish(sr_client *c, const char *path, sr_buf *out)
{
	struct relay_prefetch *pf = c->prefetch;
	int ok;

	if (!pf || !pf->running)
		return 0;
	pthread_join(pf->th, NULL);
	pf->running = 0;
	ok = path && out && pf->rc == CURLE_OK && pf->status >= 200 && pf->status < 300 && pf->b.p &&
	     !strcmp(pf->path, path);
	if (ok) {
		c->raw_t0 = pf->t0;
		c->raw_t1 = pf->t1;
		*out = pf->b;
		memset(&pf->b, 0, sizeof pf->b);
	}
	sr_buf_free(&pf->b);
	return ok;
}

void relay_prefetch(sr_client *c, const char *path, long timeout_s)
{
	struct relay_prefetch *pf = c->prefetch;
	const char *env = getenv("SYNCRELAY_CA_FILE");
	char *kept = NULL;

	prefetch_finish(c, NULL, NULL);
	if (!pf) {
		pf = calloc(1, sizeof *pf);
		if (!pf)
			return; /* no prefetch: the page is asked for when it is needed */
		c->prefetch = pf;
	}
	if (!pf->curl && !(pf->curl = curl_easy_init()))
		return;
	snprintf(pf->url, sizeof pf->url, "%s%s", c->relay, path);
	snprintf(pf->path, sizeof pf->path, "%s", path);
	pf->auth[0] = '\0';
	if (c->token[0])
		snprintf(pf->auth, sizeof pf->auth, "Authorization: Bearer %s", c->token);
	/* the CA file is read here: the store is not used from the prefetch thread */
	pf->ca[0] = '\0';
	if (env && *env)
		snprintf(pf->ca, sizeof pf->ca, "%s", env);
	else if (store_meta_get(c->st, "ca_file", &kept) == 0 && kept && *kept)
		snprintf(pf->ca, sizeof pf->ca, "%s", kept);
	free(kept);
	pf->timeout_s = timeout_s;
	memset(&pf->b, 0, sizeof pf->b);
	pf->running = pthread_create(&pf->th, NULL, prefetch_run, pf) == 0;
}

void relay_prefetch_free(sr_client *c)
{
	struct relay_prefetch *pf = c->prefetch;

	if (!pf)
		return;
	prefetch_finish(c, NULL, NULL);
	if (pf->curl)
		curl_easy_cleanup(pf->curl);
	free(pf);
	c->prefetch = NULL;
}

/* relay_call, or with raw: a 2xx body is handed over as text in *raw (not parsed by jansson:
 * pages are read in place by jscan); other answers are parsed into *out as before. */
static int call(sr_client *c, const char *method, const char *path, const char *body, long timeout_s,
		json_t **out, sr_buf *raw)
{
	char url[2048];
	int attempt;

	if (out)
		*out = NULL;
	c->last_status = 0;
	c->last_code[0] = '\0';
	if (raw && !body && !strcmp(method, "GET") && prefetch_finish(c, path, raw)) {
		c->last_status = 200;
		return 0;
	}
	snprintf(url, sizeof url, "%s%s", c->relay, path);
	if (!c->curl) {
		c->curl = curl_easy_init();
		if (!c->curl)
			return cerr(c, SR_ENOMEM, "could not create an HTTP handle");
	}
	/* once per process: a token in clear text is readable by anyone on the path */
	if (c->token[0] && !strncmp(c->relay, "http://", 7) && !loopback(c->relay)) {
		static int warned;
		if (!__atomic_exchange_n(&warned, 1, __ATOMIC_SEQ_CST))
			fprintf(stderr, "syncrelay: warning: sending the device token over plain http:// to %s; "
					"anyone on the path can read it (serve the relay over https://)\n",
				c->relay);
	}
	for (attempt = 0;; attempt++) {
		char errbuf[CURL_ERROR_SIZE] = "";
		sr_buf b = {0};
		struct curl_slist *h = NULL;
		char auth[200];
		CURLcode rc;
		long status = 0;
		uint64_t t0, t1;
		json_t *j;

		curl_easy_reset(c->curl);
		curl_easy_setopt(c->curl, CURLOPT_URL, url);
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L);
		curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, timeout_s);
		curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
		curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
		set_tls(c);
		h = curl_slist_append(h, "Expect:");
		if (c->token[0]) {
			snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
			h = curl_slist_append(h, auth);
		}
		if (body) {
			h = curl_slist_append(h, "Content-Type: application/json");
			curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
			curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
		}
		curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
		t0 = hlc_wall_ms();
		rc = curl_easy_perform(c->curl);
		t1 = hlc_wall_ms();
		curl_slist_free_all(h);
		if (rc != CURLE_OK) {
			sr_buf_free(&b);
			curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
			if (tls_refusal(rc))
				return cerr(c, SR_ENETWORK,
					    "could not reach relay \"%s\": its TLS certificate is not trusted (%s); give the CA "
					    "that signed it with enroll --ca-file FILE or SYNCRELAY_CA_FILE",
					    c->relay, errbuf[0] ? errbuf : curl_easy_strerror(rc));
			if (attempt + 1 < MAX_ATTEMPTS) {
				backoff(attempt);
				continue;
			}
			return cerr(c, SR_ENETWORK, "could not reach relay \"%s\": %s", c->relay,
				    errbuf[0] ? errbuf : curl_easy_strerror(rc));
		}
		curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
		c->last_status = status;
		if (raw && status >= 200 && status < 300) {
			if (!b.p) {
				sr_buf_free(&b);
				return cerr(c, SR_ERELAY, "the relay's answer to %s %s is empty", method, path);
			}
			/* the page reader checks the text and learns relay_time from it */
			c->raw_t0 = t0;
			c->raw_t1 = t1;
			*raw = b;
			return 0;
		}
		j = b.p ? json_loads(b.p, 0, NULL) : NULL;
		learn_clock(c, j, t0, t1);
		if (status >= 200 && status < 300) {
			sr_buf_free(&b);
			if (out)
				*out = j;
			else
				json_decref(j);
			return 0;
		}
		snprintf(c->last_code, sizeof c->last_code, "%s",
			 json_string_value(json_object_get(j, "code")) ? json_string_value(json_object_get(j, "code"))
								      : "");
		if ((status == 429 || status >= 500) && attempt + 1 < MAX_ATTEMPTS) {
			json_decref(j);
			sr_buf_free(&b);
			backoff(attempt);
			continue;
		}
		cerr(c, SR_ERELAY, "relay refused %s %s: %ld %s: %s", method, path, status,
		     c->last_code[0] ? c->last_code : "(no code)",
		     json_string_value(json_object_get(j, "detail")) ? json_string_value(json_object_get(j, "detail"))
								      : (b.p ? b.p : ""));
		if (out)
			*out = j;
		else
			json_decref(j);
		sr_buf_free(&b);
		return SR_ERELAY;
	}
}

int relay_call(sr_client *c, const char *method, const char *path, const char *body,
	       long timeout_s, json_t **out)
{
	return call(c, method, path, body, timeout_s, out, NULL);
}

int relay_call_raw(sr_client *c, const char *method, const char *path, const char *body, long timeout_s,
		   sr_buf *raw, json_t **problem)
{
	memset(raw, 0, sizeof *raw);
	return call(c, method, path, body, timeout_s, problem, raw);
}
