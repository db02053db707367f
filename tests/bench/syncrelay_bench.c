/*
 * syncrelay-bench: every measurement of issue 11 in one run, each beside its floor and its
 * target. It starts its own PostgreSQL cluster (initdb in a private directory, a private socket,
 * removed at the end; as the `postgres` user when run as root) and its own syncrelayd, or uses
 * --database CONNINFO and --relay URL. It prints a table, then one JSON line with every figure.
 * Not a test: targets are shown as PASS/MISS and the exit status is 0 whenever the run completed.
 *
 *   syncrelay-bench [--quick] [--only push,single,pull,prop,digest,hold,backfill,apply,index]
 *                   [--database CONNINFO] [--relay URL [--relay-pid PID]] [--relay-nofile N]
 *                   [--workdir DIR] [--keep]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define PG_BIN "/usr/lib/postgresql/15/bin"

/* ---- sizes and options ---- */

static struct {
	long push;        /* (1) changes pushed by 4 devices */
	int batch;        /* (1) changes per push */
	int single;       /* (2) single-change pushes per library count */
	long libs;        /* (2) libraries in the database for the large case */
	long pull;        /* (3) changes pulled (the push library) */
	int pull_page;    /* (3) page size */
	int prop;         /* (4) single pushes */
	long scope_big;   /* (5) records in the large digest scope, also (7) backfill */
	int digest_n;     /* (5) requests per digest figure */
	int holds;        /* (6) held long-polls */
	long apply;       /* (7) changes applied by the CLI */
	long files;       /* (8) files in the index tree */
} sz = {200000, 1000, 1000, 100000, 200000, 10000, 1000, 1000000, 200, 10000, 200000, 100000};

static struct {
	const char *database; /* --database */
	const char *relay;    /* --relay */
	pid_t relay_pid;      /* --relay-pid */
	long relay_nofile;    /* --relay-nofile: the soft descriptor limit the relay starts with */
	char only[256];
	char workdir[512];
	int keep;
	int quick;
} opt = {.relay_nofile = 1024};

static int want(const char *name)
{
	char list[260], *save = NULL, *t;

	if (!opt.only[0])
		return 1;
	snprintf(list, sizeof list, "%s", opt.only);
	for (t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (!strcmp(t, name))
			return 1;
	return 0;
}

/* ---- figures ---- */

struct fig {
	char key[48];      /* JSON name */
	char what[96];     /* table row */
	double value;
	char unit[16];
	char floor[96];    /* floor or peer, as text ("" when none) */
	char target[64];   /* target, as text ("" when none) */
	int pass;          /* 1 PASS, 0 MISS, -1 no target */
};
static struct fig figs[96];
static int nfigs;

static struct fig *fig_add(const char *key, const char *what, double value, const char *unit)
{
	struct fig *f = &figs[nfigs++];

	H_ASSERT(nfigs < (int)(sizeof figs / sizeof figs[0]), "too many figures");
	memset(f, 0, sizeof *f);
	snprintf(f->key, sizeof f->key, "%s", key);
	snprintf(f->what, sizeof f->what, "%s", what);
	snprintf(f->unit, sizeof f->unit, "%s", unit);
	f->value = value;
	f->pass = -1;
	fprintf(stderr, "bench: %-44s %12.2f %s\n", what, value, unit);
	return f;
}

static void fig_floor(struct fig *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fig_floor(struct fig *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->floor, sizeof f->floor, fmt, ap);
	va_end(ap);
}

static void fig_target(struct fig *f, int pass, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fig_target(struct fig *f, int pass, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->target, sizeof f->target, fmt, ap);
	va_end(ap);
	f->pass = pass;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char notes[8192];
static void note(const char *fmt, ...)
{
	size_t start = strlen(notes), n;
	va_list ap;

	if (start + 4 >= sizeof notes)
		return;
	snprintf(notes + start, sizeof notes - start, "- ");
	va_start(ap, fmt);
	vsnprintf(notes + start + 2, sizeof notes - start - 2, fmt, ap);
	va_end(ap);
	n = strlen(notes);
	if (n + 1 < sizeof notes)
		notes[n] = '\n', notes[n + 1] = '\0';
	fprintf(stderr, "bench: note: %s", notes + start + 2);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of n samples (sorted in place), nearest rank. */
static double quantile(double *v, int n, double q)
{
	int i;

	if (n <= 0)
		return NAN;
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	i = (int)ceil(q * n) - 1;
	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* ---- the cluster, the relay and the database ---- */

static char pgdir[600];   /* private cluster directory, "" when none */
static int pgport;
static struct relay relay;
static int own_relay;
static char tmpdir[600];  /* stores and the index tree */

static int run_wait(char *const argv[], const char *as_user, const char *log)
{
	pid_t pid = fork();
	int st;

	H_ASSERT(pid >= 0, "fork failed: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (as_user) {
			struct passwd *pw = getpwnam(as_user);
			if (!pw || setgid(pw->pw_gid) || setuid(pw->pw_uid))
				_exit(126);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	H_ASSERT(waitpid(pid, &st, 0) == pid, "waitpid failed");
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static const char *pg_user(void)
{
	return geteuid() == 0 ? "postgres" : NULL;
}

static void cluster_stop(void)
{
	char data[700];
	char *argv[] = {PG_BIN "/pg_ctl", "-D", data, "-m", "fast", "-w", "stop", NULL};

	if (!pgdir[0])
		return;
	snprintf(data, sizeof data, "%s/data", pgdir);
	run_wait(argv, pg_user(), NULL);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

static void cleanup(void)
{
	if (own_relay && relay.pid > 0) {
		kill(relay.pid, SIGTERM);
		waitpid(relay.pid, NULL, 0);
		relay.pid = 0;
		if (!opt.keep)
			unlink(relay.log);
	}
	cluster_stop();
	if (!opt.keep) {
		if (pgdir[0])
			nftw(pgdir, rm_entry, 64, FTW_DEPTH | FTW_PHYS);
		if (tmpdir[0])
			nftw(tmpdir, rm_entry, 64, FTW_DEPTH | FTW_PHYS);
		if (opt.workdir[0])
			rmdir(opt.workdir);
	}
	pgdir[0] = tmpdir[0] = '\0';
}

static void on_signal(int sig)
{
	(void)sig;
	exit(130); /* runs cleanup */
}

/* initdb and start a private cluster; SYNCRELAY_TEST_PG names it for the harness. */
static void cluster_start(void)
{
	char data[700], sock[700], log[700], opts[1200], conn[1024];
	struct passwd *pw = pg_user() ? getpwnam(pg_user()) : NULL;
	double t0 = h_mono();

	snprintf(pgdir, sizeof pgdir, "%s/pg", opt.workdir);
	H_ASSERT(mkdir(pgdir, 0700) == 0, "mkdir %s: %s", pgdir, strerror(errno));
	snprintf(data, sizeof data, "%s/data", pgdir);
	snprintf(sock, sizeof sock, "%s/sock", pgdir);
	snprintf(log, sizeof log, "%s/postgres.log", pgdir);
	H_ASSERT(mkdir(sock, 0700) == 0, "mkdir %s: %s", sock, strerror(errno));
	if (pw) {
		H_ASSERT(chown(opt.workdir, pw->pw_uid, pw->pw_gid) == 0 && chown(pgdir, pw->pw_uid, pw->pw_gid) == 0 &&
			 chown(sock, pw->pw_uid, pw->pw_gid) == 0, "chown to postgres: %s", strerror(errno));
	}
	{
		char *argv[] = {PG_BIN "/initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
				"--no-sync", NULL};
		char ilog[720];

		snprintf(ilog, sizeof ilog, "%s/initdb.log", pgdir);
		H_ASSERT(run_wait(argv, pg_user(), ilog) == 0, "initdb failed; see %s", ilog);
	}
	/* a free port: the socket is private, so any number not in use on this directory works,
	 * but TCP is off anyway; pick one from the pid */
	pgport = 20000 + (int)(getpid() % 20000);
	snprintf(opts, sizeof opts,
		 "-p %d -k %s -c listen_addresses='' -c shared_buffers=1GB -c max_connections=200"
		 " -c max_wal_size=4GB -c checkpoint_timeout=30min -c autovacuum=on",
		 pgport, sock);
	{
		char *argv[] = {PG_BIN "/pg_ctl", "-D", data, "-l", log, "-o", opts, "-w", "-t", "120", "start", NULL};
		H_ASSERT(run_wait(argv, pg_user(), NULL) == 0, "pg_ctl start failed; see %s", log);
	}
	snprintf(conn, sizeof conn, "host=%s port=%d user=postgres dbname=postgres", sock, pgport);
	setenv("SYNCRELAY_TEST_PG", conn, 1);
	fprintf(stderr, "bench: private cluster in %s (%.1f s)\n", pgdir, h_mono() - t0);
}

static void quiet(void *arg, const char *msg)
{
	(void)arg, (void)msg;
}

static PGconn *db_open(void)
{
	PGconn *c = PQconnectdb(relay.db);

	H_ASSERT(PQstatus(c) == CONNECTION_OK, "connect %s: %s", relay.db, PQerrorMessage(c));
	PQsetNoticeProcessor(c, quiet, NULL);
	return c;
}

static void sql(PGconn *c, const char *q)
{
	PGresult *res = PQexec(c, q);

	H_ASSERT(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", q,
		 PQresultErrorMessage(res));
	PQclear(res);
}

static void sql_analyze(void)
{
	PGconn *c = db_open();
	double t0 = h_mono();

	sql(c, "ANALYZE");
	PQfinish(c);
	fprintf(stderr, "bench: ANALYZE %.1f s\n", h_mono() - t0);
}

static long rss_kib(void)
{
	char path[64], line[256];
	long v = -1;
	FILE *f;

	if (relay.pid <= 0)
		return -1;
	snprintf(path, sizeof path, "/proc/%d/status", (int)relay.pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "VmRSS:", 6))
			v = atol(line + 6);
	fclose(f);
	return v;
}

/* ---- data ---- */

/* The canonical data of file entry k (sorted keys, compact: stored as sent), ~230 bytes, so
 * that a change is about 340 bytes like a file manager's entry. */
static void entry_data(char *out, size_t n, long k)
{
	snprintf(out, n,
		 "{\"kind\":\"file\",\"location_id\":\"5b0e8c1e-3c1a-4d2e-9f00-%012ld\",\"mime\":\"image/jpeg\","
		 "\"modified\":%ld,\"name\":\"IMG_%08ld.jpg\",\"path\":\"/home/user/Pictures/%04ld/holiday/IMG_%08ld.jpg\","
		 "\"size\":%ld}",
		 k / 1000, 1700000000L + k, k, k / 1000, k, 100000 + k * 37);
}

static void rid_of(char rid[SR_UUID_LEN + 1], const struct dev *d, long k)
{
	snprintf(rid, SR_UUID_LEN + 1, "%.8s-0000-4000-8000-%012lu", d->id, (unsigned long)k % 1000000000000UL);
}

/* A push body of records first..first+n-1 of device d (HLC counters from the record number). */
static char *push_body(const struct dev *d, uint64_t ms, long first, int n)
{
	sr_buf b = {0};
	char hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1], data[512];
	int i;

	sr_buf_puts(&b, "{\"changes\":[");
	for (i = 0; i < n; i++) {
		h_hlc(hlc, ms, (uint64_t)(first + i), d->id);
		rid_of(rid, d, first + i);
		entry_data(data, sizeof data, first + i);
		sr_buf_printf(&b, "%s{\"hlc\":\"%s\",\"model\":\"entry\",\"record_id\":\"%s\",\"op\":\"upsert\",\"data\":%s}",
			      i ? "," : "", hlc, rid, data);
	}
	sr_buf_puts(&b, "]}");
	H_ASSERT(!b.oom, "out of memory");
	return sr_buf_steal(&b);
}

/* The columns a push writes into changes (accepted_at takes its default, as in a push). */
#define CHANGE_COLS "(library_id, seq, hlc, device_id, model, record_id, op, data)"

/* COPYs rows into table; cols is a column list ("" for all). */
static void copy_rows(PGconn *c, const char *table, const char *cols, const char *rows, size_t len)
{
	char q[256];
	PGresult *res;

	snprintf(q, sizeof q, "COPY %s %s FROM STDIN", table, cols);
	res = PQexec(c, q);
	H_ASSERT(PQresultStatus(res) == PGRES_COPY_IN, "%s: %s", q, PQresultErrorMessage(res));
	PQclear(res);
	H_ASSERT(PQputCopyData(c, rows, (int)len) == 1 && PQputCopyEnd(c, NULL) == 1, "copy data: %s",
		 PQerrorMessage(c));
	res = PQgetResult(c);
	H_ASSERT(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", q, PQresultErrorMessage(res));
	PQclear(res);
	while ((res = PQgetResult(c)))
		PQclear(res);
}

/* The rows a push writes into changes, as COPY text: seq from seq0 + 1. */
static char *copy_body(const char *lib, const struct dev *d, uint64_t ms, long first, int n, long long seq0,
		       size_t *len)
{
	sr_buf b = {0};
	char hlc[SR_HLC_LEN + 1], rid[SR_UUID_LEN + 1], data[512];
	int i;

	for (i = 0; i < n; i++) {
		h_hlc(hlc, ms, (uint64_t)(first + i), d->id);
		rid_of(rid, d, first + i);
		entry_data(data, sizeof data, first + i);
		sr_buf_printf(&b, "%s\t%lld\t%s\t%s\tentry\t%s\t0\t%s\n", lib, seq0 + i + 1, hlc, d->id, rid, data);
	}
	H_ASSERT(!b.oom, "out of memory");
	*len = b.len;
	return sr_buf_steal(&b);
}

/* Fills library l with n upserts of records 0..n-1 of device d (model entry) by SQL, writing
 * what a push of them would write: the changes rows (seq 1..n), the records, the scope and
 * bucket digests (same hashes, buckets and watermark) and the head. The library must be empty. */
static void fill_library(const struct lib *l, const struct dev *d, uint64_t ms, long n)
{
	PGconn *c = db_open();
	static uint64_t bhash[SR_BUCKETS];
	static long bcount[SR_BUCKETS];
	uint64_t scope = 0;
	char hlc[SR_HLC_LEN + 1] = "", rid[SR_UUID_LEN + 1], data[512];
	const long chunk = 50000;
	double t0 = h_mono();
	long k, i;
	sr_buf b;

	memset(bhash, 0, sizeof bhash);
	memset(bcount, 0, sizeof bcount);
	sql(c, "BEGIN");
	for (k = 0; k < n; k += chunk) {
		long m = n - k < chunk ? n - k : chunk;
		sr_buf rb = {0};

		memset(&b, 0, sizeof b);
		for (i = k; i < k + m; i++) {
			unsigned bk;
			uint64_t h;

			h_hlc(hlc, ms, (uint64_t)i, d->id);
			rid_of(rid, d, i);
			entry_data(data, sizeof data, i);
			bk = sr_bucket(rid);
			h = sr_record_hash("entry", rid, hlc, data);
			bhash[bk] ^= h;
			bcount[bk]++;
			scope ^= h;
			sr_buf_printf(&b, "%s\t%ld\t%s\t%s\tentry\t%s\t0\t%s\n", l->id, i + 1, hlc, d->id, rid, data);
			sr_buf_printf(&rb, "%s\tentry\t%s\t%s\t%u\t%s\tf\t%s\n", l->id, rid, d->id, bk, hlc, data);
		}
		H_ASSERT(!b.oom && !rb.oom, "out of memory");
		copy_rows(c, "changes", CHANGE_COLS, b.p, b.len);
		copy_rows(c, "records", "", rb.p, rb.len);
		sr_buf_free(&b);
		sr_buf_free(&rb);
	}
	{
		sr_buf q = {0};
		char s[24];
		const char *p[5];
		PGresult *res;

		snprintf(s, sizeof s, "%lld", (long long)scope);
		p[0] = l->id, p[1] = d->id, p[2] = s, p[3] = hlc;
		snprintf(data, sizeof data, "%ld", n);
		p[4] = data;
		res = PQexecParams(c,
				   "INSERT INTO scope_digests (library_id, model, owner, count, hash, watermark)"
				   " VALUES ($1, 'entry', $2, $5::bigint, $3::bigint, $4)",
				   5, NULL, p, NULL, NULL, 0);
		H_ASSERT(PQresultStatus(res) == PGRES_COMMAND_OK, "scope digest: %s", PQresultErrorMessage(res));
		PQclear(res);
		for (i = 0; i < SR_BUCKETS; i++)
			if (bcount[i])
				sr_buf_printf(&q, "%s\tentry\t%s\t%ld\t%ld\t%lld\n", l->id, d->id, i, bcount[i],
					      (long long)bhash[i]);
		copy_rows(c, "bucket_digests", "", q.p, q.len);
		sr_buf_free(&q);
		p[1] = data;
		res = PQexecParams(c, "UPDATE libraries SET head = $2::bigint WHERE library_id = $1", 2, NULL, p, NULL,
				   NULL, 0);
		H_ASSERT(PQresultStatus(res) == PGRES_COMMAND_OK, "head: %s", PQresultErrorMessage(res));
		PQclear(res);
	}
	sql(c, "COMMIT");
	PQfinish(c);
	fprintf(stderr, "bench: filled a library with %ld records by SQL in %.1f s\n", n, h_mono() - t0);
}

/* ---- HTTP ---- */

static char *url_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *url_of(const char *fmt, ...)
{
	static char bufs[4][1024];
	static int next;
	char *b = bufs[next++ % 4];
	int n = snprintf(b, 1024, "%s", relay.url);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b + n, (size_t)(1024 - n), fmt, ap);
	va_end(ap);
	return b;
}

/* One request on a kept-alive handle, which must be answered with status; its seconds. */
static double call(CURL *c, const char *method, const char *url, const char *token, const char *body, long status,
		   json_t **json)
{
	struct resp p;
	double s;

	H_ASSERT(h_xhttp(c, method, url, token, body, 300, &p) == 0, "%s", p.err);
	H_ASSERT(p.status == status, "%s %s: expected %ld, got %ld: %.500s", method, url, status, p.status, p.body);
	s = p.seconds;
	if (json) {
		*json = p.json;
		p.json = NULL;
	}
	h_resp_free(&p);
	return s;
}

static void fixture(struct lib *l, struct dev *d, int ndev)
{
	int i;

	h_library(&relay, l);
	for (i = 0; i < ndev; i++)
		h_device(&relay, l, &d[i]);
	h_schema_ref(&relay, l, &d[0]);
}

/* ---- the CLI ---- */

/* Runs `syncrelay --store STORE args...` (NULL-terminated), output to STORE.log; its seconds.
 * Fails when it exits non-zero or outlasts timeout. */
static double cli(const char *store, double timeout, ...)
{
	const char *argv[16] = {"syncrelay", "--store", store};
	char log[700];
	int n = 3, st = 0;
	double t0 = h_mono();
	va_list ap;
	pid_t pid;

	va_start(ap, timeout);
	while (n < 15 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	snprintf(log, sizeof log, "%s.log", store);
	pid = fork();
	H_ASSERT(pid >= 0, "fork failed");
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644), nul = open("/dev/null", O_RDONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(nul, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(SYNCRELAY_CLI_PATH, (char *const *)argv);
		_exit(127);
	}
	for (;;) {
		struct timespec t = {0, 20 * 1000 * 1000};
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			break;
		if (h_mono() - t0 > timeout) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			H_FAIL("`syncrelay --store %s %s` did not finish within %.0f s; see %s", store, argv[3], timeout,
			       log);
		}
		nanosleep(&t, NULL);
	}
	H_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "`syncrelay --store %s %s` failed (status %d); see %s", store,
		 argv[3], st, log);
	return h_mono() - t0;
}

static void cli_enroll(const char *store, const struct lib *l)
{
	char dev[SR_UUID_LEN + 1];

	h_uuid(dev);
	cli(store, 60, "enroll", "--relay", relay.url, "--library", l->id, "--join-token", l->join, "--device-id", dev,
	    "--name", "bench", (const char *)NULL);
}

/* ---- (1) push against COPY, and (3) pull ---- */

struct pusher {
	const struct lib *l;
	const struct dev *d;
	char **bodies;
	int n;
	double *lat;  /* seconds per batch */
	PGconn *pg;   /* COPY floor: the connection, NULL for pushes */
	const char *table;
};

static void *pusher_run(void *arg)
{
	struct pusher *p = arg;
	CURL *c = curl_easy_init();
	int i;

	for (i = 0; i < p->n; i++) {
		double t0 = h_mono();

		if (p->pg) {
			copy_rows(p->pg, p->table, CHANGE_COLS, p->bodies[i], strlen(p->bodies[i]));
		} else {
			json_t *j = NULL;
			call(c, "POST", url_of("/v1/libraries/%s/changes", p->l->id), p->d->token, p->bodies[i], 200, &j);
			H_ASSERT(h_jint(j, "accepted") == sz.batch, "push accepted %lld of %d", h_jint(j, "accepted"),
				 sz.batch);
			json_decref(j);
		}
		p->lat[i] = h_mono() - t0;
		free(p->bodies[i]);
		p->bodies[i] = NULL;
	}
	curl_easy_cleanup(c);
	return NULL;
}

/* 4 devices push sz.push changes into l in sz.batch batches (or COPY them into table); seconds.
 * *first gets the seconds of the first batch of each device, as the mean. */
static double push_run(const struct lib *l, const struct dev d[4], uint64_t ms, const char *table, double *first)
{
	struct pusher p[4];
	pthread_t th[4];
	long per = sz.push / 4;
	int nb = (int)(per / sz.batch), i, k;
	double t0;

	for (i = 0; i < 4; i++) {
		p[i] = (struct pusher){.l = l, .d = &d[i], .n = nb, .table = table};
		p[i].bodies = calloc((size_t)nb, sizeof *p[i].bodies);
		p[i].lat = calloc((size_t)nb, sizeof *p[i].lat);
		for (k = 0; k < nb; k++) {
			size_t len;
			p[i].bodies[k] = table ? copy_body(l->id, &d[i], ms, (long)k * sz.batch, sz.batch,
							   (long long)i * per + (long long)k * sz.batch, &len)
					       : push_body(&d[i], ms, (long)k * sz.batch, sz.batch);
		}
		if (table)
			p[i].pg = db_open();
	}
	t0 = h_mono();
	for (i = 0; i < 4; i++)
		H_ASSERT(pthread_create(&th[i], NULL, pusher_run, &p[i]) == 0, "pthread_create");
	for (i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	t0 = h_mono() - t0;
	*first = 0;
	for (i = 0; i < 4; i++) {
		*first += p[i].lat[0] / 4;
		if (p[i].pg)
			PQfinish(p[i].pg);
		free(p[i].bodies);
		free(p[i].lat);
	}
	return t0;
}

static struct lib push_lib;
static struct dev push_dev[5];
static int have_push_lib;

static void bench_push(void)
{
	struct lib l2;
	struct dev d2[4];
	uint64_t ms = h_now_ms() - 3600 * 1000;
	long total = sz.push / 4 / sz.batch * 4 * sz.batch;
	double push_s, push2_s, copy_s, first, first2, cfirst;
	struct fig *f;
	PGconn *c;

	fixture(&push_lib, push_dev, 5);
	push_s = push_run(&push_lib, push_dev, ms, NULL, &first);
	have_push_lib = 1;

	/* the floor: the same rows into a table shaped like changes, with its indexes */
	c = db_open();
	sql(c, "DROP TABLE IF EXISTS bench_copy_floor");
	sql(c, "CREATE TABLE bench_copy_floor (LIKE changes INCLUDING ALL)");
	PQfinish(c);
	copy_s = push_run(&push_lib, push_dev, ms, "bench_copy_floor", &cfirst);

	sql_analyze();
	fixture(&l2, d2, 4);
	push2_s = push_run(&l2, d2, ms, NULL, &first2);

	f = fig_add("push_fresh_per_s", "(1) push 4 devices x batches, fresh library", (double)total / push_s,
		    "changes/s");
	fig_floor(f, "COPY %.0f rows/s (%.2fx)", (double)total / copy_s, copy_s / push_s);
	fig_target(f, copy_s / push_s >= 0.5, ">= 0.5x COPY");
	f = fig_add("push_fresh_first_batch_ms", "(1) first batch of each device, fresh library", first * 1000, "ms");
	fig_floor(f, "COPY of 1 batch %.1f ms", cfirst * 1000);
	f = fig_add("push_analyzed_per_s", "(1) push, the same after ANALYZE", (double)total / push2_s, "changes/s");
	fig_floor(f, "COPY %.0f rows/s (%.2fx)", (double)total / copy_s, copy_s / push2_s);
	fig_target(f, copy_s / push2_s >= 0.5, ">= 0.5x COPY");
	fig_add("copy_floor_per_s", "(1) floor: COPY, 1 transaction per batch", (double)total / copy_s, "rows/s");
}

/* A GET on a kept-alive handle into b, without parsing (a 3 MB page takes the bench's jansson
 * longer than the relay takes to serve it); the status. */
static long raw_get(CURL *c, const char *url, const char *token, sr_buf *b)
{
	struct curl_slist *hdr = h_xheaders(token);
	long status = 0;
	CURLcode rc;

	b->len = 0;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_write_buf);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	rc = curl_easy_perform(c);
	curl_slist_free_all(hdr);
	H_ASSERT(rc == CURLE_OK, "GET %s: %s", url, curl_easy_strerror(rc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	sr_buf_putc(b, '\0');
	b->len--;
	return status;
}

static void bench_pull(void)
{
	CURL *c = curl_easy_init();
	long long since = 0, head, got = 0;
	double t0, req_s = 0;
	struct fig *f;

	if (!have_push_lib || sz.pull != sz.push) {
		/* without the push measurement: a library filled by SQL */
		uint64_t ms = h_now_ms() - 3600 * 1000;

		fixture(&push_lib, push_dev, 5);
		fill_library(&push_lib, &push_dev[0], ms, sz.pull);
		have_push_lib = 1;
	}
	head = h_lib_head(&relay, &push_lib);
	t0 = h_mono();
	while (since < head) {
		sr_buf b = {0};
		const char *p, *nx;
		long long next;
		double t1 = h_mono();
		long st = raw_get(c, url_of("/v1/libraries/%s/changes?since=%lld&limit=%d&include_own=1", push_lib.id,
					    since, sz.pull_page),
				  push_dev[4].token, &b);

		req_s += h_mono() - t1;
		H_ASSERT(st == 200 && b.p, "pull since %lld: %ld %.300s", since, st, b.p ? b.p : "");
		/* every change carries its seq; the page ends with next */
		for (p = b.p; (p = strstr(p, "\"seq\":")); p += 6)
			got++;
		nx = strstr(b.p + (b.len > 400 ? b.len - 400 : 0), "\"next\":");
		H_ASSERT(nx && (next = atoll(nx + 7)) > since, "pull made no progress at %lld: %.300s", since,
			 nx ? nx : b.p);
		since = next;
		sr_buf_free(&b);
	}
	t0 = h_mono() - t0;
	H_ASSERT(got == head, "pulled %lld changes, the head is %lld", got, head);
	f = fig_add("pull_per_s", "(3) pull in pages", (double)got / t0, "changes/s");
	fig_floor(f, "%lld changes, pages of %d; %.2f s of %.2f s in HTTP", got, sz.pull_page, req_s, t0);
	fig_target(f, (double)got / t0 >= 200000, ">= 200,000/s");
	curl_easy_cleanup(c);
}

/* ---- (2) single-change push with 10 and with many libraries ---- */

static struct lib big_lib;
static struct dev big_dev;

static void make_big_lib(void)
{
	if (big_lib.id[0])
		return;
	fixture(&big_lib, &big_dev, 1);
	fill_library(&big_lib, &big_dev, h_now_ms() - 7200 * 1000, sz.scope_big);
}

static struct lib single_lib;
static struct dev single_dev;
static struct dev big_dev2; /* a second device of big_lib: its pushes stay out of big_dev's scope */
static long single_next = 100000;

static void single_pushes(const char *key, const char *what, long libs, int targeted, const struct lib *sl,
			  const struct dev *sd)
{
	CURL *c = curl_easy_init();
	uint64_t ms = h_now_ms() - 1800 * 1000;
	double *lat = calloc((size_t)sz.single, sizeof *lat), p50, p99;
	char k2[48], w2[96];
	struct fig *f;
	double t_end = h_mono() + 120;
	int i, n = sz.single;

	/* 20 to warm up the pool and its plans; at most 2 minutes (a plan that scans the library
	 * can take seconds a push), then the figures are of the pushes made */
	for (i = 0; i < 20 + sz.single; i++) {
		char *b;
		double s;

		if (i > 20 && h_mono() > t_end) {
			n = i - 20;
			break;
		}
		b = push_body(sd, ms, single_next++, 1);
		s = call(c, "POST", url_of("/v1/libraries/%s/changes", sl->id), sd->token, b, 200, NULL);
		if (i >= 20)
			lat[i - 20] = s;
		free(b);
	}
	p50 = quantile(lat, n, 0.5) * 1000;
	p99 = quantile(lat, n, 0.99) * 1000;
	snprintf(k2, sizeof k2, "%s_p50_ms", key);
	snprintf(w2, sizeof w2, "%s p50", what);
	f = fig_add(k2, w2, p50, "ms");
	fig_floor(f, "%ld libraries, %d pushes", libs, n);
	if (sl == &big_lib)
		fig_floor(f, "%ld libraries, %d pushes into a library of %ld records", libs, n, sz.scope_big);
	snprintf(k2, sizeof k2, "%s_p99_ms", key);
	snprintf(w2, sizeof w2, "%s p99", what);
	f = fig_add(k2, w2, p99, "ms");
	if (targeted)
		fig_target(f, p99 < 5, "< 5 ms at 100,000 libraries");
	free(lat);
	curl_easy_cleanup(c);
}

static long count_libraries(void)
{
	PGconn *c = db_open();
	PGresult *res = PQexec(c, "SELECT count(*) FROM libraries");
	long n;

	H_ASSERT(PQresultStatus(res) == PGRES_TUPLES_OK, "count: %s", PQresultErrorMessage(res));
	n = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(c);
	return n;
}

static void bench_single_few(void)
{
	uint64_t ms = h_now_ms() - 1800 * 1000;
	long n;

	fixture(&single_lib, &single_dev, 1);
	h_push_ok(&relay, &single_lib, &single_dev, push_body(&single_dev, ms, 0, 1000), 1000, 0);
	make_big_lib();
	h_device(&relay, &big_lib, &big_dev2);
	for (n = count_libraries(); n < 10; n++) {
		struct lib l;
		struct dev d;

		fixture(&l, &d, 1);
		h_push_ok(&relay, &l, &d, push_body(&d, ms, 0, 100), 100, 0);
	}
	sql_analyze();
	n = count_libraries();
	single_pushes("single_few", "(2) single-change push, few libraries", n, 0, &single_lib, &single_dev);
	single_pushes("single_few_biglib", "(2) the same into the large library", n, 0, &big_lib, &big_dev2);
}

/* Adds libraries by SQL (each with a device, 5 records, their changes and digests) up to
 * sz.libs, analyses, and measures again. */
static void bench_single_many(void)
{
	PGconn *c;
	long have = count_libraries(), add = sz.libs - have;
	char q[2048];
	double t0 = h_mono();

	if (!single_lib.id[0]) {
		uint64_t ms = h_now_ms() - 1800 * 1000;
		fixture(&single_lib, &single_dev, 1);
		h_push_ok(&relay, &single_lib, &single_dev, push_body(&single_dev, ms, 0, 1000), 1000, 0);
	}
	c = db_open();
	if (add > 0) {
		sql(c, "BEGIN");
		sql(c, "CREATE TEMP TABLE bench_libs ON COMMIT DROP AS SELECT gen_random_uuid() AS l,"
		       " gen_random_uuid() AS d, g FROM generate_series(1, 1) g WHERE false");
		snprintf(q, sizeof q,
			 "INSERT INTO bench_libs SELECT gen_random_uuid(), gen_random_uuid(), g FROM generate_series(1, %ld) g",
			 add);
		sql(c, q);
		sql(c, "INSERT INTO libraries (library_id, name, head, schema_version, schema_models)"
		       " SELECT l, 'bench ' || g, 5, 1, (SELECT schema_models FROM libraries WHERE schema_version > 0 LIMIT 1)"
		       " FROM bench_libs");
		sql(c, "INSERT INTO devices (library_id, device_id, name) SELECT l, d, 'bench' FROM bench_libs");
		sql(c, "INSERT INTO tokens (token_hash, kind, library_id, device_id)"
		       " SELECT md5(l::text) || md5(d::text), 'device', l, d FROM bench_libs");
		sql(c, "INSERT INTO changes (library_id, seq, hlc, device_id, model, record_id, op, data)"
		       " SELECT l, s, lpad(to_hex(1700000000000 + g), 16, '0') || '-' || lpad(to_hex(s), 16, '0') || '-' || d,"
		       " d, 'entry', md5(l::text || s)::uuid::text, 0, '{\"i\":' || s || '}'"
		       " FROM bench_libs, generate_series(1, 5) s");
		sql(c, "INSERT INTO records (library_id, model, record_id, owner, bucket, hlc, deleted, data)"
		       " SELECT library_id, model, record_id, device_id::text, (seq * 37) % 256, hlc, false, data"
		       " FROM changes WHERE library_id IN (SELECT l FROM bench_libs)");
		sql(c, "INSERT INTO scope_digests (library_id, model, owner, count, hash, watermark)"
		       " SELECT l, 'entry', d::text, 5, g, NULL FROM bench_libs");
		sql(c, "INSERT INTO bucket_digests (library_id, model, owner, bucket, count, hash)"
		       " SELECT l, 'entry', d::text, (s * 37) % 256, 1, g + s FROM bench_libs, generate_series(1, 5) s");
		sql(c, "COMMIT");
		note("(2) %ld libraries added by SQL for the many-libraries case (5 records each; their digest hashes"
		     " are placeholders, those libraries are never read)", add);
	}
	PQfinish(c);
	fprintf(stderr, "bench: %ld libraries in the database (%.1f s)\n", count_libraries(), h_mono() - t0);
	sql_analyze();
	single_pushes("single_many", "(2) single-change push, many libraries", count_libraries(), 1, &single_lib,
		      &single_dev);
	if (big_dev2.id[0])
		single_pushes("single_many_biglib", "(2) the same into the large library", count_libraries(), 1,
			      &big_lib, &big_dev2);
}

/* ---- (4) propagation ---- */

static void bench_prop(void)
{
	struct lib l;
	struct dev d[2];
	CURL *c = curl_easy_init();
	uint64_t ms = h_now_ms() - 600 * 1000;
	double *lat = calloc((size_t)sz.prop, sizeof *lat), p50, p99;
	long long since = 0;
	struct fig *f;
	int i;

	fixture(&l, d, 2);
	for (i = 0; i < sz.prop; i++) {
		struct h_call pc;
		char *b = push_body(&d[1], ms, i, 1);
		double t0;

		h_call_start(&pc, &relay, d[0].token, "/v1/libraries/%s/changes?since=%lld&wait=30", l.id, since);
		h_wait_held(&relay, 1, 1, 30);
		t0 = h_mono();
		call(c, "POST", url_of("/v1/libraries/%s/changes", l.id), d[1].token, b, 200, NULL);
		h_call_join(&pc, h_mono() + 30, "propagation poll");
		H_ASSERT(pc.resp.status == 200 && json_array_size(json_object_get(pc.resp.json, "changes")) == 1,
			 "the held poll got %ld %.300s", pc.resp.status, pc.resp.body);
		lat[i] = pc.t_end - t0;
		since = h_jint(pc.resp.json, "next");
		h_resp_free(&pc.resp);
		free(b);
	}
	p50 = quantile(lat, sz.prop, 0.5) * 1000;
	p99 = quantile(lat, sz.prop, 0.99) * 1000;
	f = fig_add("prop_p50_ms", "(4) propagation push -> held poll p50", p50, "ms");
	fig_floor(f, "%d single pushes", sz.prop);
	f = fig_add("prop_p99_ms", "(4) propagation push -> held poll p99", p99, "ms");
	fig_target(f, p99 < 10, "< 10 ms");
	free(lat);
	curl_easy_cleanup(c);
}

/* ---- (5) digests at a small and a large scope ---- */


static void digest_times(const struct lib *l, const struct dev *d, double out[4])
{
	CURL *c = curl_easy_init();
	double *lat = calloc((size_t)sz.digest_n, sizeof *lat);
	int i, which;

	for (which = 0; which < 2; which++) {
		const char *u = url_of("/v1/libraries/%s/digest%s?model=entry&owner=%s", l->id, which ? "/buckets" : "",
				       d->id);
		for (i = 0; i < 10 + sz.digest_n; i++) {
			double s = call(c, "GET", u, d->token, NULL, 200, NULL);
			if (i >= 10)
				lat[i - 10] = s;
		}
		out[2 * which] = quantile(lat, sz.digest_n, 0.5) * 1000;
		out[2 * which + 1] = quantile(lat, sz.digest_n, 0.99) * 1000;
	}
	free(lat);
	curl_easy_cleanup(c);
}


static void bench_digest(void)
{
	struct lib l;
	struct dev d;
	double small[4], big[4];
	struct fig *f;
	json_t *j = NULL;
	CURL *c = curl_easy_init();

	fixture(&l, &d, 1);
	h_push_ok(&relay, &l, &d, push_body(&d, h_now_ms() - 600 * 1000, 0, 1000), 1000, 0);
	make_big_lib();
	sql_analyze();
	/* the filled scope must be what a push would have left: the digest says so */
	call(c, "GET", url_of("/v1/libraries/%s/digest?model=entry&owner=%s", big_lib.id, big_dev.id), big_dev.token,
	     NULL, 200, &j);
	H_ASSERT(h_jint(json_array_get(json_object_get(j, "scopes"), 0), "count") == sz.scope_big,
		 "the filled scope's digest: %s", json_dumps(j, JSON_COMPACT));
	json_decref(j);
	curl_easy_cleanup(c);
	digest_times(&l, &d, small);
	digest_times(&big_lib, &big_dev, big);
	f = fig_add("digest_1k_p50_ms", "(5) digest, 1,000-record scope p50", small[0], "ms");
	fig_floor(f, "p99 %.2f ms", small[1]);
	f = fig_add("digest_big_p50_ms", "(5) digest, large scope p50", big[0], "ms");
	fig_floor(f, "%ld records, p99 %.2f ms", sz.scope_big, big[1]);
	fig_target(f, big[0] <= 2 * small[0], "<= 2x the 1k scope (%.2f ms)", 2 * small[0]);
	f = fig_add("bucket_digest_1k_p50_ms", "(5) bucket digest, 1,000-record scope p50", small[2], "ms");
	fig_floor(f, "p99 %.2f ms", small[3]);
	f = fig_add("bucket_digest_big_p50_ms", "(5) bucket digest, large scope p50", big[2], "ms");
	fig_floor(f, "%ld records, p99 %.2f ms", sz.scope_big, big[3]);
	fig_target(f, big[2] <= 2 * small[2], "<= 2x the 1k scope (%.2f ms)", 2 * small[2]);
}

/* ---- (6) many held long-polls ---- */

/* syncrelay_longpolls_held, or -1 when /metrics does not answer within 5 s (a relay out of
 * descriptors may not): not fatal, the bench reports it. */
static long held_now(CURL *c)
{
	struct resp p;
	const char *line;
	long v = -1;

	if (h_xhttp(c, "GET", url_of("/metrics"), NULL, NULL, 5L, &p) == 0 && p.status == 200 &&
	    (line = h_metric_line(p.body, "syncrelay_longpolls_held")))
		v = atol(strchr(line, ' ') + 1);
	h_resp_free(&p);
	return v;
}

struct holder {
	CURL *e;
	sr_buf body;
	long status;
	double t_done;
	int done, failed;
};

static void bench_hold(void)
{
	struct lib l;
	struct dev d[2];
	struct holder *hs = calloc((size_t)sz.holds, sizeof *hs);
	struct curl_slist *hdr;
	CURLM *m = curl_multi_init();
	CURL *c = curl_easy_init();
	long rss0, rss_held, rss_after, rss_1s, held = 0, last_held = -1, ok = 0, refused = 0, early = 0, failed = 0;
	long metric_fail = 0, other_fail = 0;
	double t_stall = 0, t0, t_last = 0, *lat = calloc(200, sizeof *lat), p99_other, deadline;
	int running = 0, i, nother = 200;
	struct rlimit rl;
	char *url;
	struct fig *f;

	/* the bench needs a descriptor per poll; the relay keeps the limit it was started with */
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)sz.holds + 1000) {
		rl.rlim_cur = (rlim_t)sz.holds + 1000;
		if (rl.rlim_max < rl.rlim_cur)
			rl.rlim_max = rl.rlim_cur;
		H_ASSERT(setrlimit(RLIMIT_NOFILE, &rl) == 0, "cannot raise RLIMIT_NOFILE to %ld: %s",
			 (long)rl.rlim_cur, strerror(errno));
	}
	fixture(&l, d, 2);
	h_push_ok(&relay, &l, &d[1], push_body(&d[1], h_now_ms() - 600 * 1000, 0, 1), 1, 0);
	/* settle: the relay's RSS before, with its pool and statements warm */
	for (i = 0; i < 50; i++)
		call(c, "GET", url_of("/v1/libraries/%s/digest", l.id), d[0].token, NULL, 200, NULL);
	rss0 = rss_kib();
	url = strdup(url_of("/v1/libraries/%s/changes?since=1&wait=60", l.id));
	hdr = h_xheaders(d[0].token);
	curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)sz.holds + 10);
	for (i = 0; i < sz.holds; i++) {
		struct holder *h = &hs[i];

		h->e = curl_easy_init();
		curl_easy_setopt(h->e, CURLOPT_URL, url);
		curl_easy_setopt(h->e, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(h->e, CURLOPT_TIMEOUT, 90L);
		curl_easy_setopt(h->e, CURLOPT_CONNECTTIMEOUT, 60L);
		curl_easy_setopt(h->e, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h->e, CURLOPT_FORBID_REUSE, 1L);
		curl_easy_setopt(h->e, CURLOPT_WRITEFUNCTION, h_write_buf);
		curl_easy_setopt(h->e, CURLOPT_WRITEDATA, &h->body);
		curl_easy_setopt(h->e, CURLOPT_PRIVATE, h);
		curl_multi_add_handle(m, h->e);
	}
	t0 = h_mono();
	deadline = t0 + 120;
	/* drive the connects until the held count stops growing for 5 s */
	while (h_mono() < deadline) {
		CURLMsg *msg;
		int q;
		double tick = h_mono();

		while (h_mono() - tick < 0.25) {
			curl_multi_perform(m, &running);
			curl_multi_poll(m, NULL, 0, 50, NULL);
		}
		while ((msg = curl_multi_info_read(m, &q)))
			if (msg->msg == CURLMSG_DONE) {
				struct holder *h;
				curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&h);
				curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &h->status);
				h->done = 1;
				h->failed = msg->data.result != CURLE_OK;
				early++;
			}
		{
			long v = held_now(c);
			if (v < 0)
				metric_fail++;
			else
				held = v;
		}
		if (held >= sz.holds)
			break;
		if (held != last_held)
			last_held = held, t_stall = h_mono();
		else if (h_mono() - t_stall > 5)
			break;
	}
	f = fig_add("hold_held", "(6) long-polls held", (double)held, "polls");
	fig_floor(f, "of %d opened in %.1f s; %ld answered early", sz.holds, h_mono() - t0, early);
	fig_target(f, held >= sz.holds, "all %d", sz.holds);
	if (metric_fail)
		note("(6) GET /metrics failed or took over 5 s %ld times while the polls were opened", metric_fail);
	if (early) {
		long codes[600] = {0}, errs = 0;
		for (i = 0; i < sz.holds; i++)
			if (hs[i].done) {
				if (hs[i].failed)
					errs++;
				else if (hs[i].status >= 0 && hs[i].status < 600)
					codes[hs[i].status]++;
			}
		for (i = 0; i < 600; i++)
			if (codes[i])
				note("(6) %ld polls answered %d before the wake-up", codes[i], i);
		if (errs)
			note("(6) %ld polls failed at the transport before the wake-up", errs);
	}
	rss_held = rss_kib();
	/* other requests while they are held, each on a new connection as a device or a health check
	 * would open (an open one would hide a relay that no longer accepts); after 5 failures the
	 * rest count as failed */
	for (i = 0; i < nother; i++) {
		struct resp p;

		if (other_fail >= 5) {
			lat[i] = 5;
			other_fail++;
			continue;
		}
		if (h_xhttp(NULL, "GET", url_of("/v1/libraries/%s/digest?model=entry&owner=%s", l.id, d[1].id),
			    d[1].token, NULL, 5L, &p) || p.status != 200) {
			other_fail++;
			lat[i] = 5;
		} else {
			lat[i] = p.seconds;
		}
		h_resp_free(&p);
	}
	if (other_fail)
		note("(6) %ld of %d other requests (new connections) failed or took over 5 s while the polls were held"
		     " (counted as 5 s; after 5 failures the rest were not sent)",
		     other_fail, nother);
	p99_other = quantile(lat, nother, 0.99) * 1000;
	/* one push wakes them all */
	{
		char *b = push_body(&d[1], h_now_ms() - 600 * 1000, 1, 1);
		t0 = h_mono();
		call(c, "POST", url_of("/v1/libraries/%s/changes", l.id), d[1].token, b, 200, NULL);
		free(b);
	}
	deadline = t0 + 90;
	for (;;) {
		CURLMsg *msg;
		int q;

		curl_multi_perform(m, &running);
		while ((msg = curl_multi_info_read(m, &q)))
			if (msg->msg == CURLMSG_DONE) {
				struct holder *h;
				curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&h);
				curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &h->status);
				h->done = 1;
				h->failed = msg->data.result != CURLE_OK;
				h->t_done = h_mono();
				if (h->t_done > t_last)
					t_last = h->t_done;
			}
		if (!running || h_mono() > deadline)
			break;
		curl_multi_poll(m, NULL, 0, 20, NULL);
	}
	rss_after = rss_kib();
	for (i = 0; i < sz.holds; i++) {
		struct holder *h = &hs[i];
		if (h->t_done > 0 && !h->failed && h->status == 200 && strstr(h->body.p ? h->body.p : "", "\"hlc\""))
			ok++;
		else if (h->t_done > 0 && !h->failed)
			refused++;
		else if (h->t_done > 0 || !h->done)
			failed++;
	}
	if (running)
		note("(6) %d polls still unanswered 90 s after the wake-up", running);
	/* RSS a second after the last answer */
	while (h_mono() < (t_last > 0 ? t_last : t0) + 1.0) {
		struct timespec tk = {0, 50 * 1000 * 1000};
		nanosleep(&tk, NULL);
	}
	rss_1s = rss_kib();
	if (ok > held)
		note("(6) %ld polls were answered with the change though only %ld were held: the others waited"
		     " unaccepted or unread and were served after the wake-up", ok, held);
	f = fig_add("hold_woken_ok", "(6) polls answered with the change", (double)ok, "polls");
	fig_floor(f, "%ld other answers, %ld failed or never answered", refused, failed);
	f = fig_add("hold_last_answer_s", "(6) wake-up: push until the last answer", t_last > 0 ? t_last - t0 : NAN, "s");
	fig_target(f, t_last > 0 && t_last - t0 < 1, "< 1 s");
	f = fig_add("hold_other_p99_ms", "(6) other requests while held, p99", p99_other, "ms");
	fig_floor(f, "%d digest requests, new connections, %ld failed", nother, other_fail);
	fig_target(f, p99_other < 20, "< 20 ms");
	if (rss0 > 0) {
		f = fig_add("hold_rss_before_mib", "(6) relay RSS before", (double)rss0 / 1024, "MiB");
		f = fig_add("hold_rss_growth_mib", "(6) relay RSS growth while held", (double)(rss_held - rss0) / 1024,
			    "MiB");
		fig_floor(f, "held RSS %.0f MiB", (double)rss_held / 1024);
		fig_target(f, rss_held - rss0 < 100 * 1024, "< 100 MiB");
		f = fig_add("hold_rss_after_mib", "(6) relay RSS right after the last answer", (double)rss_after / 1024,
			    "MiB");
		f = fig_add("hold_rss_1s_mib", "(6) relay RSS 1 s after the last answer", (double)rss_1s / 1024, "MiB");
		fig_target(f, rss_1s - rss0 < 50 * 1024, "< before + 50 MiB");
	} else {
		note("(6) relay RSS not measured: give --relay-pid with --relay");
	}
	for (i = 0; i < sz.holds; i++) {
		curl_multi_remove_handle(m, hs[i].e);
		curl_easy_cleanup(hs[i].e);
		sr_buf_free(&hs[i].body);
	}
	curl_multi_cleanup(m);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	free(hs);
	free(lat);
	free(url);
}

/* ---- (7) CLI backfill and apply ---- */

static void bench_backfill(void)
{
	char store[700];
	double s;
	struct fig *f;

	make_big_lib();
	snprintf(store, sizeof store, "%s/backfill.db", tmpdir);
	cli_enroll(store, &big_lib);
	s = cli(store, 3600, "sync", (const char *)NULL);
	f = fig_add("cli_backfill_per_s", "(7) CLI: fresh device backfill", (double)sz.scope_big / s, "records/s");
	fig_floor(f, "%ld records in %.1f s", sz.scope_big, s);
	fig_target(f, (double)sz.scope_big / s >= 100000, ">= 100,000/s");
}

static void bench_apply(void)
{
	struct lib l;
	struct dev d;
	char store[700];
	double s;
	struct fig *f;

	fixture(&l, &d, 1);
	snprintf(store, sizeof store, "%s/apply.db", tmpdir);
	cli_enroll(store, &l);
	cli(store, 120, "sync", (const char *)NULL); /* empty: cursor at 0 */
	fill_library(&l, &d, h_now_ms() - 7200 * 1000, sz.apply);
	s = cli(store, 3600, "sync", (const char *)NULL);
	f = fig_add("cli_apply_per_s", "(7) CLI: apply pulled changes", (double)sz.apply / s, "changes/s");
	fig_floor(f, "%ld changes in %.1f s", sz.apply, s);
	fig_target(f, (double)sz.apply / s >= 100000, ">= 100,000/s");
}

/* ---- (8) index against read-and-hash ---- */

#define SECOND_BASIS 0x84222325cbf29ce4ULL /* as client/cli/cmd_index.c */
static uint64_t floor_sum;
static long floor_files;

static int floor_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	unsigned char buf[65536];
	uint64_t h1 = SR_FNV_OFFSET, h2 = SECOND_BASIS;
	ssize_t n;
	int fd;

	(void)ftw;
	if (flag != FTW_F || !S_ISREG(st->st_mode))
		return 0;
	if ((fd = open(path, O_RDONLY)) < 0)
		return 0;
	while ((n = read(fd, buf, sizeof buf)) > 0) {
		h1 = sr_fnv1a64_update(h1, buf, (size_t)n);
		h2 = sr_fnv1a64_update(h2, buf, (size_t)n);
	}
	close(fd);
	floor_sum ^= h1 ^ h2;
	floor_files++;
	return 0;
}

static void bench_index(void)
{
	struct lib l;
	struct dev d;
	char root[700], path[800], store[700], buf[4096];
	double floor_s, idx_s, t0 = h_mono();
	long i;
	struct fig *f;

	snprintf(root, sizeof root, "%s/tree", tmpdir);
	H_ASSERT(mkdir(root, 0755) == 0, "mkdir %s: %s", root, strerror(errno));
	for (i = 0; i < sz.files; i++) {
		int fd, len;

		if (i % 1000 == 0) {
			snprintf(path, sizeof path, "%s/dir%04ld", root, i / 1000);
			H_ASSERT(mkdir(path, 0755) == 0, "mkdir %s: %s", path, strerror(errno));
		}
		snprintf(path, sizeof path, "%s/dir%04ld/file%06ld.txt", root, i / 1000, i);
		len = snprintf(buf, sizeof buf, "file %ld\n", i);
		while (len < 200 + (int)((i * 7919) % 1800))
			len += snprintf(buf + len, sizeof buf - (size_t)len, "line %ld of file %ld\n", (long)len, i);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		H_ASSERT(fd >= 0 && write(fd, buf, (size_t)len) == len && close(fd) == 0, "write %s: %s", path,
			 strerror(errno));
	}
	fprintf(stderr, "bench: generated %ld files in %.1f s\n", sz.files, h_mono() - t0);
	t0 = h_mono();
	H_ASSERT(nftw(root, floor_entry, 64, FTW_PHYS) == 0, "walk %s: %s", root, strerror(errno));
	floor_s = h_mono() - t0;
	H_ASSERT(floor_files == sz.files, "the floor read %ld files of %ld", floor_files, sz.files);

	fixture(&l, &d, 1);
	snprintf(store, sizeof store, "%s/index.db", tmpdir);
	cli_enroll(store, &l);
	cli(store, 120, "sync", (const char *)NULL);
	idx_s = cli(store, 7200, "index", root, (const char *)NULL);
	f = fig_add("index_files_per_s", "(8) syncrelay index of a tree", (double)sz.files / idx_s, "files/s");
	fig_floor(f, "read+hash %.0f files/s (%.2f s vs %.2f s)", (double)sz.files / floor_s, idx_s, floor_s);
	fig_target(f, idx_s <= 1.5 * floor_s, "within 1.5x of read+hash (%.1fx)", idx_s / floor_s);
}

/* ---- report ---- */

static void report(const char *machine, double total_s)
{
	sr_buf j = {0};
	int i;

	printf("\nsyncrelay-bench%s on %s, %.0f s\n\n", opt.quick ? " --quick" : "", machine, total_s);
	printf("| measure | figure | floor / detail | target | |\n| --- | --- | --- | --- | --- |\n");
	for (i = 0; i < nfigs; i++) {
		const struct fig *f = &figs[i];
		char v[32];

		if (f->value >= 1000)
			snprintf(v, sizeof v, "%.0f", f->value);
		else
			snprintf(v, sizeof v, "%.2f", f->value);
		printf("| %s | %s %s | %s | %s | %s |\n", f->what, v, f->unit, f->floor, f->target,
		       f->pass < 0 ? "" : f->pass ? "PASS" : "MISS");
	}
	if (notes[0])
		printf("\n%s", notes);
	sr_buf_printf(&j, "{\"bench\":\"syncrelay\",\"quick\":%s,\"machine\":", opt.quick ? "true" : "false");
	sr_buf_put_jstr(&j, machine);
	sr_buf_printf(&j, ",\"seconds\":%.1f,\"sizes\":{\"push\":%ld,\"batch\":%d,\"single\":%d,\"libraries\":%ld,"
		      "\"pull\":%ld,\"pull_page\":%d,\"prop\":%d,\"scope_big\":%ld,\"holds\":%d,\"apply\":%ld,\"files\":%ld}",
		      total_s, sz.push, sz.batch, sz.single, sz.libs, sz.pull, sz.pull_page, sz.prop, sz.scope_big,
		      sz.holds, sz.apply, sz.files);
	sr_buf_puts(&j, ",\"figures\":{");
	for (i = 0; i < nfigs; i++) {
		if (isfinite(figs[i].value))
			sr_buf_printf(&j, "%s\"%s\":%.4g", i ? "," : "", figs[i].key, figs[i].value);
		else
			sr_buf_printf(&j, "%s\"%s\":null", i ? "," : "", figs[i].key);
	}
	sr_buf_puts(&j, "},\"pass\":{");
	{
		int n = 0;
		for (i = 0; i < nfigs; i++)
			if (figs[i].pass >= 0)
				sr_buf_printf(&j, "%s\"%s\":%s", n++ ? "," : "", figs[i].key, figs[i].pass ? "true" : "false");
	}
	sr_buf_puts(&j, "}}");
	printf("\n%s\n", j.p);
	sr_buf_free(&j);
	fflush(stdout);
}

static void machine_of(char *out, size_t n)
{
	char model[256] = "?", line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	double load = 0;

	if (f) {
		while (fgets(line, sizeof line, f))
			if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
				snprintf(model, sizeof model, "%s", strchr(line, ':') + 2);
				model[strcspn(model, "\n")] = '\0';
				break;
			}
		fclose(f);
	}
	if ((f = fopen("/proc/loadavg", "r"))) {
		if (fscanf(f, "%lf", &load) != 1)
			load = 0;
		fclose(f);
	}
	snprintf(out, n, "%ld cores (%s), %.1f GiB, load %.1f at start", cores, model,
		 (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / (1 << 30), load);
}

static int usage(void)
{
	fputs("usage: syncrelay-bench [--quick] [--only LIST] [--database CONNINFO] [--relay URL [--relay-pid PID]]\n"
	      "                       [--relay-nofile N] [--workdir DIR] [--keep]\n"
	      "  LIST: comma-separated of push,single,pull,prop,digest,hold,backfill,apply,index (default all)\n"
	      "  --database: a superuser conninfo of a database to use (the relay's, with --relay); without it\n"
	      "              a private cluster is initdb'd under the workdir and removed at the end\n"
	      "  --relay: a running relay on that database, with admin token " H_ADMIN "\n"
	      "  --relay-pid: its pid, for RSS (read from /proc)\n"
	      "  --relay-nofile: the soft RLIMIT_NOFILE the bench starts its relay with (default 1024; 0: inherit)\n"
	      "  --quick: sizes scaled down for a run of a few minutes\n",
	      stderr);
	return 2;
}

int main(int argc, char **argv)
{
	char machine[400];
	double t_start = h_mono();
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--quick")) {
			opt.quick = 1;
			sz.push = 20000, sz.single = 300, sz.libs = 10000, sz.pull = 20000, sz.prop = 200;
			sz.scope_big = 100000, sz.digest_n = 100, sz.holds = 2000, sz.apply = 20000, sz.files = 10000;
		} else if (!strcmp(a, "--keep")) {
			opt.keep = 1;
		} else if (v && !strcmp(a, "--only")) {
			snprintf(opt.only, sizeof opt.only, "%s", v), i++;
		} else if (v && !strcmp(a, "--database")) {
			opt.database = v, i++;
		} else if (v && !strcmp(a, "--relay")) {
			opt.relay = v, i++;
		} else if (v && !strcmp(a, "--relay-pid")) {
			opt.relay_pid = (pid_t)atoi(v), i++;
		} else if (v && !strcmp(a, "--relay-nofile")) {
			opt.relay_nofile = atol(v), i++;
		} else if (v && !strcmp(a, "--workdir")) {
			snprintf(opt.workdir, sizeof opt.workdir, "%s/syncrelay-bench-XXXXXX", v), i++;
		} else {
			return usage();
		}
	}
	if (opt.relay && !opt.database)
		return fprintf(stderr, "syncrelay-bench: --relay needs --database (the relay's database)\n"), 2;
	if (!opt.workdir[0])
		snprintf(opt.workdir, sizeof opt.workdir, "/tmp/syncrelay-bench-XXXXXX");
	H_ASSERT(mkdtemp(opt.workdir), "mkdtemp %s: %s", opt.workdir, strerror(errno));
	snprintf(tmpdir, sizeof tmpdir, "%s/run", opt.workdir);
	H_ASSERT(mkdir(tmpdir, 0755) == 0, "mkdir %s: %s", tmpdir, strerror(errno));
	H_ASSERT(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK, "curl_global_init");
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	machine_of(machine, sizeof machine);
	fprintf(stderr, "bench: %s; work in %s\n", machine, opt.workdir);

	if (opt.relay) {
		memset(&relay, 0, sizeof relay);
		snprintf(relay.url, sizeof relay.url, "%s", opt.relay);
		snprintf(relay.db, sizeof relay.db, "%s", opt.database);
		snprintf(relay.log, sizeof relay.log, "(the relay's own log)");
		relay.pid = opt.relay_pid;
	} else {
		struct rlimit rl, keep;
		if (!opt.database)
			cluster_start();
		else
			setenv("SYNCRELAY_TEST_PG", opt.database, 1);
		/* the relay starts with the usual soft descriptor limit (raising it is the relay's job,
		 * issue 11); the bench raises its own only for (6) */
		getrlimit(RLIMIT_NOFILE, &keep);
		rl = keep;
		if (opt.relay_nofile > 0 && (rlim_t)opt.relay_nofile < rl.rlim_cur)
			rl.rlim_cur = (rlim_t)opt.relay_nofile;
		setrlimit(RLIMIT_NOFILE, &rl);
		{
			/* a load test from one host and a few devices: the per-device rate limit, the
			 * per-IP and total connection caps and the per-device poll cap are settings an
			 * operator raises for it (their defaults protect a shared relay) */
			static const char *const env[] = {
				"SYNCRELAY_RATE_PER_S=1000000", "SYNCRELAY_RATE_BURST=1000000",
				"SYNCRELAY_MAX_CONNECTIONS=30000", "SYNCRELAY_MAX_CONNECTIONS_PER_IP=30000",
				"SYNCRELAY_MAX_POLLS_PER_DEVICE=100000", NULL};
			h_relay_start(&relay, NULL, env);
		}
		setrlimit(RLIMIT_NOFILE, &keep);
		own_relay = 1;
		note("the relay was started with a soft RLIMIT_NOFILE of %ld (hard %ld)", (long)rl.rlim_cur,
		     (long)rl.rlim_max);
		fprintf(stderr, "bench: relay %s (pid %d), database %s\n", relay.url, (int)relay.pid, relay.db);
	}

	if (want("single"))
		bench_single_few();
	if (want("push"))
		bench_push();
	if (want("pull"))
		bench_pull();
	if (want("prop"))
		bench_prop();
	if (want("digest"))
		bench_digest();
	if (want("hold"))
		bench_hold();
	if (want("backfill"))
		bench_backfill();
	if (want("apply"))
		bench_apply();
	if (want("index"))
		bench_index();
	if (want("single"))
		bench_single_many();

	report(machine, h_mono() - t_start);
	curl_global_cleanup();
	return 0;
}
