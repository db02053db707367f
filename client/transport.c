/* HTTP to the relay: one reused libcurl handle per client (keep-alive), timeouts, retries. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "internal.h"

#define MAX_ATTEMPTS 6

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

int relay_call(sr_client *c, const char *method, const char *path, const char *body,
	       long timeout_s, json_t **out)
{
	char url[2048];
	int attempt;

	if (out)
		*out = NULL;
	c->last_status = 0;
	c->last_code[0] = '\0';
	snprintf(url, sizeof url, "%s%s", c->relay, path);
	if (!c->curl) {
		c->curl = curl_easy_init();
		if (!c->curl)
			return cerr(c, SR_ENOMEM, "could not create an HTTP handle");
	}
	for (attempt = 0;; attempt++) {
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
			if (attempt + 1 < MAX_ATTEMPTS) {
				backoff(attempt);
				continue;
			}
			return cerr(c, SR_ENETWORK, "could not reach relay \"%s\": %s", c->relay,
				    curl_easy_strerror(rc));
		}
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
		c->last_status = status;
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
