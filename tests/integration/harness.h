/*
 * Integration harness: a fresh database on the suite's private PostgreSQL cluster
 * (SYNCRELAY_TEST_PG), the real syncrelayd binary on a port it picks itself, and plain
 * HTTP requests through libcurl. Every helper fails the test with a diagnosis.
 */
#ifndef SR_HARNESS_H
#define SR_HARNESS_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <jansson.h>

/* The harness serves Criterion tests and, built with H_STANDALONE, the benchmarks: a failed
 * step fails the test, or ends the benchmark with the reason. */
#ifdef H_STANDALONE
#include <stdio.h>
#include <stdlib.h>
#define H_FAIL(...) (fprintf(stderr, "bench: " __VA_ARGS__), fputc('\n', stderr), exit(1))
#define H_ASSERT(cond, ...) do { if (!(cond)) H_FAIL(__VA_ARGS__); } while (0)
#else
#include <criterion/criterion.h>
#define H_FAIL(...) cr_assert_fail(__VA_ARGS__)
#define H_ASSERT(cond, ...) cr_assert(cond, __VA_ARGS__)
#endif

#include "syncrelay_codec.h"

#define H_ADMIN "test-admin-token"

struct relay {
	pid_t pid;
	int port;
	char url[64];
	char db[512];   /* conninfo of its database */
	char log[256];  /* its stderr, kept for diagnosis */
};

struct resp {
	long status;
	char *body;
	json_t *json;   /* parsed body, or NULL */
	char ctype[128];
	double seconds;
	char err[768];  /* h_xhttp: the transport failure, or "" */
};

/* The CA file every harness request trusts (for relays serving https), or NULL. */
extern const char *h_cainfo;

/* A fresh, empty database; its conninfo in out. Under tests/citus.sh, a distributed one. */
void h_db_create(char *out, size_t n);
/* Makes the fresh database name (conninfo on the coordinator) a Citus one, with its tables
 * distributed by syncrelayd --distribute when distribute (citus_db.c). */
void h_citus_prepare(const char *conninfo, const char *name, int distribute);
/* Starts syncrelayd on db (NULL: a fresh database) with extra "NAME=value" env entries
 * (NULL-terminated, may be NULL); waits for its "listening" line. */
void h_relay_start(struct relay *r, const char *db, const char *const *env);
/* SIGTERM and wait; returns the exit status (or 128+signal). */
int h_relay_stop(struct relay *r);
/* h_relay_start in two steps, so that several relays can start at the same moment: the fork
 * (its stdout, for the listening line, in *fd) ... */
void h_relay_spawn(struct relay *r, const char *db, const char *const *env, int *fd);
/* ... and the wait, by the monotonic deadline, for the listening line on fd (closed after). */
void h_relay_await(struct relay *r, int fd, double deadline);

/* One request; token may be NULL, body may be NULL. */
void h_http(struct resp *out, struct relay *r, const char *method, const char *path,
	    const char *token, const char *body);
/* h_http with a raw Authorization value (NULL: none) and a binary-safe body of len bytes
 * (NULL: none); URL and header are sized to fit, so oversized ones are sent whole. */
void h_http_raw(struct resp *out, struct relay *r, const char *method, const char *path,
		const char *authorization, const char *body, size_t len);
void h_resp_free(struct resp *p);
/* Asserts status and, for errors, a problem+json body with this code. */
void h_expect_problem(const struct resp *p, long status, const char *code);
/* One request that must be refused with this problem. */
void h_http_problem(struct relay *r, const char *method, const char *path, const char *token,
		    const char *body, long status, const char *code);
/* Asserts status with an application/json body that parses. */
void h_expect_json(const struct resp *p, long status);
/* One request that must be answered with status and a JSON body (see h_expect_json). */
void h_http_json(struct relay *r, const char *method, const char *path, const char *token,
		 const char *body, long status);

/* One request on handle c (NULL: a handle of its own; the caller's keeps its other options,
 * such as a progress callback) with no assertions, so that it is safe off the test thread;
 * 0, or -1 with out->err set. Free out with h_resp_free. */
int h_xhttp(CURL *c, const char *method, const char *url, const char *token, const char *body,
	    long timeout, struct resp *out);
/* The headers h_xhttp sends without a body: Authorization when token, and an empty Expect. */
struct curl_slist *h_xheaders(const char *token);
/* A CURLOPT_WRITEFUNCTION appending to the sr_buf given as CURLOPT_WRITEDATA. */
size_t h_write_buf(char *data, size_t size, size_t nmemb, void *arg);
/* Suite .init/.fini of suites that use libcurl from threads: its global init is not thread-safe. */
void h_curl_init(void);
void h_curl_fini(void);

/* A GET on a thread of its own (h_xhttp, 90 s); h_call_join collects it. */
struct h_call {
	char url[512];
	const char *token;
	pthread_t th;
	double t_start, t_end;
	int rc;
	struct resp resp;
};
/* Starts a GET of r->url followed by the formatted path. */
void h_call_start(struct h_call *c, const struct relay *r, const char *token, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Joins the call by the monotonic deadline; fails naming what when it is late, failed or not JSON. */
void h_call_join(struct h_call *c, double deadline, const char *what);

/* The line of metric name ("name value" or "name{labels} value") in a /metrics text, or NULL. */
const char *h_metric_line(const char *text, const char *name);
/* The value of metric name on r's /metrics; fails when it is missing. */
double h_metric(struct relay *r, const char *name);
/* The same, or missing while the relay does not list it (a counter not yet counted). */
double h_metric_or(struct relay *r, const char *name, double missing);
/* Polls /metrics until syncrelay_longpolls_held reaches want (exactly, when exact). */
void h_wait_held(struct relay *r, long want, int exact, double timeout);

/* Fixtures. */
struct lib {
	char id[SR_UUID_LEN + 1];
	char join[128];
};
struct dev {
	char id[SR_UUID_LEN + 1];
	char token[128];
};
void h_library(struct relay *r, struct lib *out);
void h_device(struct relay *r, const struct lib *l, struct dev *out);
/* PUT the reference-scenario schema (location, entry, content_identity). */
void h_schema_ref(struct relay *r, const struct lib *l, const struct dev *d);
/* The usual start of a test on r: a library, device d1, device d2 unless NULL, and the
 * reference schema put by d1. */
void h_fixture(struct relay *r, struct lib *l, struct dev *d1, struct dev *d2);
/* HLC text for (ms, counter, device). */
void h_hlc(char out[SR_HLC_LEN + 1], uint64_t ms, uint64_t counter, const char *dev);
/* Milliseconds since the epoch now. */
uint64_t h_now_ms(void);
double h_mono(void);
/* A batch JSON body of n upserts of model "entry" by d, HLCs from base_ms, data {"i":k}. */
char *h_batch(const struct dev *d, uint64_t base_ms, int first, int n);

/* JSON members: integer (0 when absent) and string (NULL when absent). */
long long h_jint(const json_t *o, const char *k);
const char *h_jstr(const json_t *o, const char *k);
/* "/v1/libraries/<lib><fmt...>" in one of 8 rotating buffers, so one call may take several. */
const char *h_lp(const struct lib *l, const char *fmt, ...);
/* A random canonical UUID. */
void h_uuid(char out[SR_UUID_LEN + 1]);

/* A batch body under construction: {"changes":[...]}. */
struct h_chb {
	sr_buf b;
	int n;
};
/* Appends a change (data NULL: none, as for a delete). */
void h_chb_add(struct h_chb *c, const char *hlc, const char *model, const char *rid, const char *op,
	       const char *data);
/* Appends a raw change object (for malformed ones). */
void h_chb_raw(struct h_chb *c, const char *obj);
/* The body (caller frees); c is empty again. */
char *h_chb_end(struct h_chb *c);
/* Pushes body (freed) as d; expects 200 with accepted changes and, when dups >= 0, that many
 * duplicates; returns the head. */
long long h_push_ok(struct relay *r, const struct lib *l, const struct dev *d, char *body, long long accepted,
		    long long dups);
/* Runs one statement on r's database with $1 = param (NULL: no parameter); it must succeed.
 * For tests that play the database's part: a restore, a compaction, damage. */
void h_sql(struct relay *r, const char *sql, const char *param);
/* An md5 of everything a request could change in r's database, but a device's last_seen
 * (which every authenticated request touches): the log, the records, the digests, the
 * libraries, the devices and the tokens. Equal before and after: nothing was stored. Caller frees. */
char *h_db_checksum(struct relay *r);
/* The library's head, read as the admin. */
long long h_lib_head(struct relay *r, const struct lib *l);

#endif
