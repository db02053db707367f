/*
 * End-to-end: PostgreSQL restarts under load. The test starts a PostgreSQL cluster of its own
 * (never the suite's shared one), a real relay on it and three CLI devices that write and sync
 * in loops; it stops PostgreSQL (-m fast, then -m immediate in a second round) and starts it
 * again. The relay answers 503 problem+json with Retry-After while the database is away and
 * /readyz says not ready, serves again soon after PostgreSQL is back, every device converges
 * and the change log holds each change every device wrote exactly once.
 */
#include "cli.h"

#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>

#define PGBIN "/usr/lib/postgresql/15/bin"
#define NDEV 3
#define TAG_DEV 0xd0000000u

struct cluster {
	char dir[256];  /* data, socket and log under it */
	int port;
	char conninfo[512];
};

static struct cluster pg;

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	int s = socket(AF_INET, SOCK_STREAM, 0), port;

	cr_assert(s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
		  getsockname(s, (struct sockaddr *)&a, &len) == 0, "could not find a free port");
	port = ntohs(a.sin_port);
	close(s);
	return port;
}

/* Runs a PostgreSQL program, as the postgres user when we are root (it refuses to run as root);
 * returns its exit status. Output goes to dir/pg_cmd.log. */
static int pg_run(const char *const *argv)
{
	char log[300];
	pid_t pid;
	int st, fd;

	snprintf(log, sizeof log, "%s/pg_cmd.log", pg.dir);
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	cr_assert(fd >= 0, "could not open %s", log);
	pid = fork();
	cr_assert(pid >= 0, "fork failed");
	if (pid == 0) {
		const char *full[32];
		int i = 0, j;

		dup2(fd, 1);
		dup2(fd, 2);
		if (geteuid() == 0) {
			full[i++] = "runuser";
			full[i++] = "-u";
			full[i++] = "postgres";
			full[i++] = "--";
		}
		for (j = 0; argv[j] && i < 31; j++)
			full[i++] = argv[j];
		full[i] = NULL;
		execvp(full[0], (char *const *)full);
		_exit(127);
	}
	close(fd);
	cr_assert(waitpid(pid, &st, 0) == pid, "waitpid failed");
	return cli_exit_status(st);
}

/* fsync off is safe here (the operating system does not crash, -m immediate only kills
 * PostgreSQL); synchronous_commit must stay on, or an immediate stop loses acknowledged commits. */
static void pg_start(void)
{
	char data[300], opts[600], log[300];

	snprintf(data, sizeof data, "%s/data", pg.dir);
	snprintf(log, sizeof log, "%s/postgres.log", pg.dir);
	snprintf(opts, sizeof opts,
		 "-c listen_addresses='' -p %d -c unix_socket_directories=%s -c fsync=off -c full_page_writes=off"
		 " -c max_connections=100",
		 pg.port, pg.dir);
	cr_assert_eq(pg_run((const char *const[]){PGBIN "/pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "start",
						  "-o", opts, NULL}),
		     0, "could not start the private PostgreSQL cluster; see %s and %s/pg_cmd.log", log, pg.dir);
}

static void pg_stop(const char *mode)
{
	char data[300];

	snprintf(data, sizeof data, "%s/data", pg.dir);
	cr_assert_eq(pg_run((const char *const[]){PGBIN "/pg_ctl", "-D", data, "-w", "-t", "60", "-m", mode, "stop",
						  NULL}),
		     0, "pg_ctl stop -m %s failed; see %s/pg_cmd.log", mode, pg.dir);
}

/* A cluster of our own in a fresh directory, on a free port, reached by its socket only. */
static void pg_setup(void)
{
	char data[300];
	PGconn *c;
	PGresult *res;

	cr_assert(access(PGBIN "/initdb", X_OK) == 0, "PostgreSQL 15 server binaries not found in %s", PGBIN);
	snprintf(pg.dir, sizeof pg.dir, "/tmp/syncrelay-outage-XXXXXX");
	cr_assert(mkdtemp(pg.dir), "mkdtemp failed");
	chmod(pg.dir, 0755);
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("postgres");

		cr_assert(pw, "running as root, but there is no postgres user to run PostgreSQL as");
		cr_assert(chown(pg.dir, pw->pw_uid, pw->pw_gid) == 0, "chown %s failed", pg.dir);
	}
	snprintf(data, sizeof data, "%s/data", pg.dir);
	cr_assert_eq(pg_run((const char *const[]){PGBIN "/initdb", "-D", data, "-U", "postgres", "--auth=trust",
						  "-E", "UTF8", "--locale=C.UTF-8", NULL}),
		     0, "initdb failed; see %s/pg_cmd.log", pg.dir);
	pg.port = free_port();
	pg_start();
	snprintf(pg.conninfo, sizeof pg.conninfo, "host=%s port=%d user=postgres dbname=postgres", pg.dir, pg.port);
	c = PQconnectdb(pg.conninfo);
	cr_assert(PQstatus(c) == CONNECTION_OK, "cannot reach the private cluster: %s", PQerrorMessage(c));
	res = PQexec(c, "CREATE DATABASE relay");
	cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK, "CREATE DATABASE: %s", PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
	snprintf(pg.conninfo, sizeof pg.conninfo, "host=%s port=%d user=postgres dbname=relay", pg.dir, pg.port);
}

static void pg_teardown(void)
{
	char cmd[600];

	if (!pg.dir[0])
		return;
	pg_stop("immediate");
	/* the directory is ours alone (mkdtemp); nothing else lives under it */
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", pg.dir);
	cr_assert(system(cmd) == 0, "could not remove %s", pg.dir);
	pg.dir[0] = '\0';
}

/* ---- one request, recording what the outage test checks ---- */

struct answer {
	long status;     /* 0 when the relay could not be reached */
	int problem;     /* the body is problem+json with a code */
	int retry_after; /* seconds in Retry-After, -1 when absent */
	char code[64];
};

static size_t on_hdr(char *d, size_t size, size_t n, void *arg)
{
	struct answer *a = arg;
	size_t len = size * n;

	if (len > 12 && !strncasecmp(d, "Retry-After:", 12))
		a->retry_after = atoi(d + 12);
	return len;
}

static void ask(struct answer *a, const struct relay *r, const char *method, const char *path, const char *token,
		const char *body)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hdr = h_xheaders(token);
	sr_buf b = {0}, url = {0};
	char *ctype = NULL;

	memset(a, 0, sizeof *a);
	a->retry_after = -1;
	cr_assert(c, "curl_easy_init failed");
	sr_buf_printf(&url, "%s%s", r->url, path);
	if (body)
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url.p);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_write_buf);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_hdr);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
	if (curl_easy_perform(c) == CURLE_OK) {
		json_t *j;

		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
		curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctype);
		j = b.p ? json_loads(b.p, 0, NULL) : NULL;
		if (ctype && !strncmp(ctype, "application/problem+json", 24) && h_jstr(j, "code")) {
			a->problem = 1;
			snprintf(a->code, sizeof a->code, "%s", h_jstr(j, "code"));
		}
		json_decref(j);
	}
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	sr_buf_free(&b);
	sr_buf_free(&url);
}

/* ---- the writing devices ---- */

/* A device loop, in a child process: put a new entry (every fourth write also updates an
 * earlier one), sync every third write, until dir/stop exists; the number of puts it made goes
 * to dir/<name>.count. A failed sync (the database away) is expected and only counted. */
static void device_loop(const struct e2e *e, const char *store, const char *name, unsigned tag)
{
	char stop[512], count[512], log[512], id[SR_UUID_LEN + 1], data[128];
	long k = 0, puts_done = 0, sync_fail = 0;
	FILE *f;

	e2e_path(e, stop, sizeof stop, "stop");
	snprintf(count, sizeof count, "%s/%s.count", e->dir, name);
	snprintf(log, sizeof log, "%s/%s.log", e->dir, name);
	while (access(stop, F_OK) != 0) {
		pid_t pid;
		int st;

		e2e_id(id, tag, k & 0xffffff);
		snprintf(data, sizeof data, "{\"name\":\"file %ld\",\"size\":%ld}", k, k);
		pid = cli_spawn(store, log, "put", "entry", id, data);
		st = cli_wait(pid, 60, "put", log);
		if (st != 0)
			_exit(10);
		puts_done++;
		if (k % 4 == 3) {
			e2e_id(id, tag, (k / 2) & 0xffffff);
			snprintf(data, sizeof data, "{\"name\":\"file %ld\",\"size\":%ld,\"v\":2}", k / 2, k);
			pid = cli_spawn(store, log, "put", "entry", id, data);
			if (cli_wait(pid, 60, "put", log) != 0)
				_exit(11);
			puts_done++;
		}
		if (k % 3 == 2) {
			pid = cli_spawn(store, log, "sync", "--timeout", "3");
			if (cli_wait(pid, 60, "sync", log) != 0)
				sync_fail++;
		}
		k++;
	}
	f = fopen(count, "w");
	if (!f)
		_exit(12);
	fprintf(f, "%ld %ld %ld\n", puts_done, k, sync_fail);
	fclose(f);
	_exit(0);
}

/* ---- the test ---- */

/* One integer from sql with $1 = lib and $2 = dev (when not NULL). */
static long long q_int(PGconn *c, const char *sql, const char *lib, const char *dev)
{
	const char *params[2] = {lib, dev};
	PGresult *res = PQexecParams(c, sql, dev ? 2 : 1, NULL, params, NULL, NULL, 0);
	long long v;

	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s", sql,
		  PQresultErrorMessage(res));
	v = atoll(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

/* Waits, by a deadline, until GET path answers want; the seconds it took. */
static double await_status(const struct relay *r, const char *path, const char *token, long want, double timeout,
			   const char *what)
{
	double t0 = h_mono();
	struct answer a;

	for (;;) {
		ask(&a, r, "GET", path, token, NULL);
		if (a.status == want)
			return h_mono() - t0;
		cr_assert(h_mono() - t0 < timeout, "%s: GET %s still answered %ld after %.1f s (relay log %s)", what,
			  path, a.status, timeout, r->log);
		cli_sleep(0.05);
	}
}

struct outage_figures {
	int n503, n503_retry, n503_problem, nother;
	double back_s;
};

/* Stops PostgreSQL with mode while the devices write; during the outage asks the relay every
 * 100 ms for a read and a push, then starts PostgreSQL again and measures how soon the relay
 * serves. */
static void outage(struct e2e *e, const char *mode, const char *token, const char *dev_id,
		   struct outage_figures *o)
{
	double until;
	struct answer a;
	char hlc[SR_HLC_LEN + 1], body[512], id[SR_UUID_LEN + 1];
	uint64_t ms = h_now_ms();
	int i = 0;

	memset(o, 0, sizeof *o);
	pg_stop(mode);
	until = h_mono() + 3;
	while (h_mono() < until) {
		h_hlc(hlc, ms, (uint64_t)i, dev_id);
		e2e_id(id, 0x0beef000u, i & 0xffffff);
		snprintf(body, sizeof body,
			 "{\"changes\":[{\"hlc\":\"%s\",\"model\":\"location\",\"record_id\":\"%s\",\"op\":\"upsert\","
			 "\"data\":{}}]}", hlc, id);
		ask(&a, &e->r, "GET", h_lp(&e->l, ""), token, NULL);
		if (a.status == 503) {
			o->n503++;
			o->n503_retry += a.retry_after > 0;
			o->n503_problem += a.problem && !strcmp(a.code, "unavailable");
		} else {
			o->nother++;
		}
		ask(&a, &e->r, "POST", h_lp(&e->l, "/changes"), token, body);
		if (a.status == 503) {
			o->n503++;
			o->n503_retry += a.retry_after > 0;
			o->n503_problem += a.problem && !strcmp(a.code, "unavailable");
		} else {
			o->nother++;
		}
		ask(&a, &e->r, "GET", "/readyz", NULL, NULL);
		cr_assert_eq(a.status, 503, "/readyz answered %ld while PostgreSQL was stopped (-m %s)", a.status, mode);
		cr_assert(a.retry_after > 0, "/readyz 503 without Retry-After");
		i++;
		cli_sleep(0.1);
	}
	pg_start();
	o->back_s = await_status(&e->r, h_lp(&e->l, ""), token, 200, 30, "after PostgreSQL restarted");
	await_status(&e->r, "/readyz", NULL, 200, 30, "readiness after PostgreSQL restarted");
}

Test(outage, postgres_restarts_under_three_writing_devices, .timeout = 600)
{
	const char *env[] = {"SYNCRELAY_DB_POOL=4", NULL};
	struct e2e e;
	struct dev probe;
	struct outage_figures f[2];
	const char *modes[2] = {"fast", "immediate"};
	static char store_buf[NDEV][512];
	char *stores[NDEV], names[NDEV][8], path[512];
	pid_t pids[NDEV];
	long long puts_total = 0, written[NDEV], probes = 0, entries;
	long loops[NDEV], fails[NDEV];
	PGconn *c;
	int i, round;

	h_curl_init();
	memset(&e, 0, sizeof e);
	pg_setup();
	h_relay_start(&e.r, pg.conninfo, env);
	h_library(&e.r, &e.l);
	snprintf(e.dir, sizeof e.dir, "/tmp/syncrelay-e2e-XXXXXX");
	cr_assert(mkdtemp(e.dir), "mkdtemp failed");
	e2e_path(&e, path, sizeof path, "schema.json");
	e2e_write_file(path, E2E_SCHEMA);
	for (i = 0; i < NDEV; i++) {
		snprintf(names[i], sizeof names[i], "D%d", i);
		stores[i] = store_buf[i];
		e2e_enroll(&e, names[i], stores[i], sizeof store_buf[i]);
		if (i == 0)
			e2e_schema(&e, stores[0]);
	}
	h_device(&e.r, &e.l, &probe);

	for (i = 0; i < NDEV; i++) {
		pids[i] = fork();
		cr_assert(pids[i] >= 0, "fork failed");
		if (pids[i] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			device_loop(&e, stores[i], names[i], TAG_DEV + (unsigned)i);
		}
	}
	cli_sleep(2); /* load before the first outage; not a synchronisation */
	for (round = 0; round < 2; round++) {
		outage(&e, modes[round], probe.token, probe.id, &f[round]);
		cr_assert(f[round].n503 > 0, "round %d (-m %s): no request was answered 503 during the outage", round,
			  modes[round]);
		cr_assert_eq(f[round].n503_retry, f[round].n503, "round %d: %d of %d 503 answers had no Retry-After",
			     round, f[round].n503 - f[round].n503_retry, f[round].n503);
		cr_assert_eq(f[round].n503_problem, f[round].n503,
			     "round %d: %d of %d 503 answers were not problem+json \"unavailable\"", round,
			     f[round].n503 - f[round].n503_problem, f[round].n503);
		cr_assert_eq(f[round].nother, 0, "round %d: %d answers during the outage were not 503", round,
			     f[round].nother);
		cr_assert(f[round].back_s < 3.0, "round %d: the relay served again only %.2f s after PostgreSQL was up",
			  round, f[round].back_s);
		cli_sleep(2);
	}
	e2e_path(&e, path, sizeof path, "stop");
	e2e_write_file(path, "");
	for (i = 0; i < NDEV; i++) {
		char log[600], count[600];
		FILE *cf;
		int st;

		snprintf(log, sizeof log, "%s/%s.log", e.dir, names[i]);
		st = cli_wait(pids[i], 120, "a writing device", log);
		cr_assert_eq(st, 0, "device %s's loop failed (exit %d); see %s", names[i], st, log);
		snprintf(count, sizeof count, "%s/%s.count", e.dir, names[i]);
		cf = fopen(count, "r");
		cr_assert(cf && fscanf(cf, "%lld %ld %ld", &written[i], &loops[i], &fails[i]) == 3,
			  "device %s wrote no count", names[i]);
		fclose(cf);
		puts_total += written[i];
	}
	/* twice around: the second pass brings everyone what the others pushed in the first */
	for (round = 0; round < 2; round++)
		for (i = 0; i < NDEV; i++)
			e2e_sync(stores[i], 120);

	c = PQconnectdb(pg.conninfo);
	cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	probes = q_int(c, "SELECT count(*) FROM changes WHERE library_id = $1 AND model = 'location'", e.l.id, NULL);
	cr_assert_eq(q_int(c, "SELECT count(*) - count(DISTINCT hlc) FROM changes WHERE library_id = $1", e.l.id, NULL), 0,
		     "the change log holds an HLC twice");
	for (i = 0; i < NDEV; i++) {
		char *did = e2e_store_meta(stores[i], "device_id");
		long long n = q_int(c, "SELECT count(*) FROM changes WHERE library_id = $1 AND device_id = $2", e.l.id, did);

		free(did);
		if (n != written[i]) {
			struct cli st;

			cli_run(&st, stores[i], 60, "status", "--json");
			cr_log_error("device %s status: %s", names[i], st.out);
			cli_free(&st);
		}
		cr_assert_eq(n, written[i], "device %s wrote %lld changes, the log holds %lld of it", names[i], written[i],
			     n);
	}
	entries = q_int(c, "SELECT count(*) FROM changes WHERE library_id = $1 AND model = 'entry'", e.l.id, NULL);
	cr_assert_eq(entries, puts_total, "the log holds %lld entry changes, the devices wrote %lld", entries,
		     puts_total);
	{
		long long live = q_int(c, "SELECT count(*) FROM records WHERE library_id = $1 AND model = 'entry'"
				       " AND NOT deleted", e.l.id, NULL);
		for (i = 0; i < NDEV; i++) {
			long long n = e2e_records(stores[i], "entry");

			cr_assert_eq(n, live, "device %s holds %lld entries, the relay %lld", names[i], n, live);
			e2e_assert_verified(stores[i], names[i]);
		}
		cr_log_info("outage: %lld changes by %d devices (%ld/%ld/%ld loops, %ld/%ld/%ld failed syncs), %lld probe"
			    " pushes; -m fast: %d answers 503 (all with Retry-After), back %.2f s after start;"
			    " -m immediate: %d answers 503, back %.2f s; %lld live entries on every device",
			    puts_total, NDEV, loops[0], loops[1], loops[2], fails[0], fails[1], fails[2], probes,
			    f[0].n503, f[0].back_s, f[1].n503, f[1].back_s, live);
	}
	PQfinish(c);
	e2e_finish(&e);
	pg_teardown();
	h_curl_fini();
}
