/*
 * Integration harness: a fresh database on the suite's private PostgreSQL cluster
 * (SYNCRELAY_TEST_PG), the real syncrelayd binary on a port it picks itself, and plain
 * HTTP requests through libcurl. Every helper fails the test with a diagnosis.
 */
#ifndef SR_HARNESS_H
#define SR_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

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
};

/* A fresh, empty database; its conninfo in out. */
void h_db_create(char *out, size_t n);
/* Starts syncrelayd on db (NULL: a fresh database) with extra "NAME=value" env entries
 * (NULL-terminated, may be NULL); waits for its "listening" line. */
void h_relay_start(struct relay *r, const char *db, const char *const *env);
/* SIGTERM and wait; returns the exit status (or 128+signal). */
int h_relay_stop(struct relay *r);

/* One request; token may be NULL, body may be NULL. */
void h_http(struct resp *out, struct relay *r, const char *method, const char *path,
	    const char *token, const char *body);
void h_resp_free(struct resp *p);
/* Asserts status and, for errors, a problem+json body with this code. */
void h_expect_problem(const struct resp *p, long status, const char *code);

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
/* HLC text for (ms, counter, device). */
void h_hlc(char out[SR_HLC_LEN + 1], uint64_t ms, uint64_t counter, const char *dev);
/* Milliseconds since the epoch now. */
uint64_t h_now_ms(void);
double h_mono(void);
/* A batch JSON body of n upserts of model "entry" by d, HLCs from base_ms, data {"i":k}. */
char *h_batch(const struct dev *d, uint64_t base_ms, int first, int n);

#endif
