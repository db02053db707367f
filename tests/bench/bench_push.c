/*
 * Push throughput against a raw COPY of the same rows into the same PostgreSQL, and digest
 * latency at a small and a large library. Needs SYNCRELAY_TEST_PG (a superuser conninfo of
 * a cluster it may create databases in). Usage: bench_push [changes] [batch]
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char *make_batch(const struct dev *d, uint64_t ms, long first, int n, int copy_format,
			const char *lib)
{
	sr_buf b = {0};
	int i;

	if (!copy_format)
		sr_buf_puts(&b, "{\"changes\":[");
	for (i = 0; i < n; i++) {
		char hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1];
		long k = first + i;

		h_hlc(hlc, ms, (uint64_t)k, d->id);
		snprintf(rid, sizeof rid, "%.8s-0000-4000-8000-%012ld", d->id, k);
		if (copy_format) /* the row the relay writes into changes, as COPY text */
			sr_buf_printf(&b, "%s\t%ld\t%s\t%s\tentry\t%s\t0\t{\"i\":%ld,\"name\":\"file %ld\",\"size\":%ld}\n",
				      lib, k + 1, hlc, d->id, rid, k, k, k * 7);
		else
			sr_buf_printf(&b, "%s{\"hlc\":\"%s\",\"model\":\"entry\",\"record_id\":\"%s\",\"op\":\"upsert\","
				      "\"data\":{\"i\":%ld,\"name\":\"file %ld\",\"size\":%ld}}", i ? "," : "", hlc, rid,
				      k, k, k * 7);
	}
	if (!copy_format)
		sr_buf_puts(&b, "]}");
	return sr_buf_steal(&b);
}

static double digest_ms(struct relay *r, const struct lib *l, const struct dev *d)
{
	char path[128];
	double best = 1e9;
	int i;

	snprintf(path, sizeof path, "/v1/libraries/%s/digest?model=entry&owner=%s", l->id, d->id);
	for (i = 0; i < 20; i++) {
		struct resp p;
		h_http(&p, r, "GET", path, d->token, NULL);
		H_ASSERT(p.status == 200, "digest: %ld %s", p.status, p.body);
		if (p.seconds < best)
			best = p.seconds;
		h_resp_free(&p);
	}
	return best * 1000;
}

int main(int argc, char **argv)
{
	long total = argc > 1 ? atol(argv[1]) : 200000;
	int batch = argc > 2 ? atoi(argv[2]) : 5000;
	long nb = total / batch, i;
	struct relay r;
	struct lib l;
	struct dev d;
	char path[128], **bodies;
	uint64_t ms = h_now_ms() - 60000;
	double t0, push_s, copy_s, small_ms, large_ms;
	PGconn *pg;
	PGresult *res;

	h_relay_start(&r, NULL, NULL);
	h_library(&r, &l);
	h_device(&r, &l, &d);
	h_schema_ref(&r, &l, &d);

	/* a small library first, for the digest at 1k records */
	{
		struct lib l2;
		struct dev d2;
		struct resp p;
		char *b;

		h_library(&r, &l2);
		h_device(&r, &l2, &d2);
		h_schema_ref(&r, &l2, &d2);
		b = make_batch(&d2, ms, 0, 1000, 0, NULL);
		snprintf(path, sizeof path, "/v1/libraries/%s/changes", l2.id);
		h_http(&p, &r, "POST", path, d2.token, b);
		H_ASSERT(p.status == 200, "push: %ld %s", p.status, p.body);
		h_resp_free(&p);
		free(b);
		small_ms = digest_ms(&r, &l2, &d2);
	}

	bodies = calloc((size_t)nb, sizeof *bodies);
	for (i = 0; i < nb; i++)
		bodies[i] = make_batch(&d, ms, i * batch, batch, 0, NULL);
	snprintf(path, sizeof path, "/v1/libraries/%s/changes", l.id);
	t0 = h_mono();
	for (i = 0; i < nb; i++) {
		struct resp p;
		h_http(&p, &r, "POST", path, d.token, bodies[i]);
		H_ASSERT(p.status == 200, "push %ld: %ld %s", i, p.status, p.body);
		h_resp_free(&p);
		free(bodies[i]);
	}
	push_s = h_mono() - t0;
	large_ms = digest_ms(&r, &l, &d);

	/* the baseline: the same rows COPYed into a table shaped like changes, one COPY and one
	 * commit per batch, like the relay's one transaction per push */
	pg = PQconnectdb(r.db);
	H_ASSERT(PQstatus(pg) == CONNECTION_OK, "connect: %s", PQerrorMessage(pg));
	res = PQexec(pg, "CREATE TABLE copy_bench (LIKE changes INCLUDING ALL)");
	H_ASSERT(PQresultStatus(res) == PGRES_COMMAND_OK, "create: %s", PQresultErrorMessage(res));
	PQclear(res);
	for (i = 0; i < nb; i++)
		bodies[i] = make_batch(&d, ms, i * batch, batch, 1, l.id);
	t0 = h_mono();
	for (i = 0; i < nb; i++) {
		res = PQexec(pg, "COPY copy_bench FROM STDIN");
		H_ASSERT(PQresultStatus(res) == PGRES_COPY_IN, "copy: %s", PQresultErrorMessage(res));
		PQclear(res);
		H_ASSERT(PQputCopyData(pg, bodies[i], (int)strlen(bodies[i])) == 1 && PQputCopyEnd(pg, NULL) == 1,
			 "copy data: %s", PQerrorMessage(pg));
		res = PQgetResult(pg);
		H_ASSERT(PQresultStatus(res) == PGRES_COMMAND_OK, "copy end: %s", PQresultErrorMessage(res));
		PQclear(res);
		free(bodies[i]);
	}
	copy_s = h_mono() - t0;
	PQfinish(pg);
	free(bodies);

	printf("changes %ld in batches of %d\n", nb * batch, batch);
	printf("push  %.2f s  %.0f changes/s (changes, records, digests, notify)\n", push_s, (double)(nb * batch) / push_s);
	printf("COPY  %.2f s  %.0f rows/s (changes rows only)\n", copy_s, (double)(nb * batch) / copy_s);
	printf("push/COPY %.2f\n", copy_s / push_s);
	printf("digest of one scope: %.2f ms at 1000 records, %.2f ms at %ld records (best of 20)\n", small_ms,
	       large_ms, nb * batch);
	H_ASSERT(h_relay_stop(&r) == 0, "relay did not stop cleanly");
	return 0;
}
