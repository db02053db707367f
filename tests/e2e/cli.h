/*
 * End-to-end helpers: run the real `syncrelay` CLI as a user would (fork/exec with a deadline,
 * stdout, stderr and exit status captured), a per-test world (a real relay, a library, a
 * private directory for the device stores) and the checks the suites share. Every wait has a
 * deadline and fails with a diagnosis naming the command, the store and what it saw.
 */
#ifndef SR_E2E_CLI_H
#define SR_E2E_CLI_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "harness.h"

/* ---- running the CLI ---- */

struct cli {
	int status;    /* exit status, 128+signal when killed by one */
	char *out;     /* stdout, never NULL */
	char *err;     /* stderr, never NULL */
	json_t *json;  /* stdout parsed as JSON, or NULL */
	double seconds;
	char cmd[512]; /* the command line, for diagnosis */
};

static inline void cli_free(struct cli *c)
{
	free(c->out);
	free(c->err);
	json_decref(c->json);
	memset(c, 0, sizeof *c);
}

static inline void cli_sleep(double s)
{
	struct timespec t;

	t.tv_sec = (time_t)s;
	t.tv_nsec = (long)((s - (double)t.tv_sec) * 1e9);
	nanosleep(&t, NULL);
}

static inline void cli_describe(char *out, size_t n, const char *store, const char *const *args)
{
	size_t len = (size_t)snprintf(out, n, "syncrelay --store %s", store);

	for (; *args && len < n; args++)
		len += (size_t)snprintf(out + len, n - len, " %s", *args);
}

/* Forks and execs the CLI; stdout/stderr go to the given descriptors (closed by the caller). */
static inline pid_t cli_fork(const char *store, const char *const *args, int outfd, int errfd)
{
	const char **argv;
	pid_t pid;
	int n = 0, i;

	while (args[n])
		n++;
	/* built before fork: the child of a threaded test only execs */
	argv = calloc((size_t)n + 4, sizeof *argv);
	cr_assert(argv);
	argv[0] = "syncrelay";
	argv[1] = "--store";
	argv[2] = store;
	for (i = 0; i < n; i++)
		argv[3 + i] = args[i];
	pid = fork();
	cr_assert(pid >= 0, "fork failed: %s", strerror(errno));
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		/* a failed test must not leave a CLI running */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(outfd, 1);
		dup2(errfd, 2);
		execv(SYNCRELAY_CLI_PATH, (char *const *)argv);
		_exit(127);
	}
	free(argv);
	return pid;
}

static inline int cli_exit_status(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs `syncrelay --store STORE ARGS...` and waits at most timeout seconds. Past the deadline
 * the CLI is killed; with must_finish the test fails, otherwise o->status is -1. */
static inline void cli_runv_deadline(struct cli *o, const char *store, double timeout, const char *const *args,
				     int must_finish)
{
	int po[2], pe[2], st = 0, open_fds = 2;
	sr_buf bo = {0}, be = {0};
	double t0 = h_mono(), deadline = t0 + timeout;
	pid_t pid;

	memset(o, 0, sizeof *o);
	cli_describe(o->cmd, sizeof o->cmd, store, args);
	cr_assert(pipe(po) == 0 && pipe(pe) == 0, "pipe failed: %s", strerror(errno));
	pid = cli_fork(store, args, po[1], pe[1]);
	close(po[1]);
	close(pe[1]);
	while (open_fds) {
		struct pollfd pfd[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
		int left = (int)((deadline - h_mono()) * 1000), i;

		if (left <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			sr_buf_putc(&bo, '\0');
			sr_buf_putc(&be, '\0');
			if (!must_finish) {
				close(po[0]);
				close(pe[0]);
				o->status = -1;
				o->seconds = h_mono() - t0;
				o->out = bo.p ? bo.p : strdup("");
				o->err = be.p ? be.p : strdup("");
				return;
			}
			cr_assert_fail("`%s` did not finish within %.0f s; stdout so far: %.500s; stderr: %.500s",
				       o->cmd, timeout, bo.p ? bo.p : "", be.p ? be.p : "");
		}
		if (poll(pfd, 2, left) <= 0)
			continue;
		for (i = 0; i < 2; i++) {
			char buf[65536];
			ssize_t got;

			if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			got = read(pfd[i].fd, buf, sizeof buf);
			if (got > 0) {
				sr_buf_put(i ? &be : &bo, buf, (size_t)got);
			} else if (got == 0 || errno != EINTR) {
				close(pfd[i].fd);
				if (i)
					pe[0] = -1;
				else
					po[0] = -1;
				open_fds--;
			}
		}
	}
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (h_mono() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			cr_assert_fail("`%s` closed its output but did not exit within %.0f s", o->cmd, timeout);
		}
		cli_sleep(0.002);
	}
	o->seconds = h_mono() - t0;
	o->status = cli_exit_status(st);
	o->out = sr_buf_steal(&bo);
	o->err = sr_buf_steal(&be);
	if (!o->out)
		o->out = strdup("");
	if (!o->err)
		o->err = strdup("");
	o->json = json_loads(o->out, JSON_DISABLE_EOF_CHECK, NULL);
}

static inline void cli_runv(struct cli *o, const char *store, double timeout, const char *const *args)
{
	cli_runv_deadline(o, store, timeout, args, 1);
}

#define cli_run(o, store, timeout, ...) cli_runv((o), (store), (timeout), (const char *const[]){__VA_ARGS__, NULL})

/* Runs the command and asserts exit 0, naming the command and its stderr otherwise. */
#define cli_ok(o, store, timeout, ...)                                                                   \
	do {                                                                                             \
		cli_run((o), (store), (timeout), __VA_ARGS__);                                           \
		cr_assert_eq((o)->status, 0, "`%s` exited %d; stderr: %s; stdout: %.500s", (o)->cmd,     \
			     (o)->status, (o)->err, (o)->out);                                           \
	} while (0)

/* cli_ok for a command whose output is not needed. */
#define cli_do(store, timeout, ...)                                                                      \
	do {                                                                                             \
		struct cli cli_do_;                                                                      \
		cli_ok(&cli_do_, (store), (timeout), __VA_ARGS__);                                       \
		cli_free(&cli_do_);                                                                      \
	} while (0)

/* Starts the CLI in the background, stdout and stderr appended to log. */
static inline pid_t cli_spawnv(const char *store, const char *log, const char *const *args)
{
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	pid_t pid;

	cr_assert(fd >= 0, "could not open %s: %s", log, strerror(errno));
	pid = cli_fork(store, args, fd, fd);
	close(fd);
	return pid;
}

#define cli_spawn(store, log, ...) cli_spawnv((store), (log), (const char *const[]){__VA_ARGS__, NULL})

/* Waits for a background CLI; returns its exit status, fails after timeout. */
static inline int cli_wait(pid_t pid, double timeout, const char *what, const char *log)
{
	double deadline = h_mono() + timeout;
	int st;

	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (h_mono() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			cr_assert_fail("%s did not exit within %.0f s; its output is in %s", what, timeout, log);
		}
		cli_sleep(0.01);
	}
	return cli_exit_status(st);
}

/* ---- the world of one test ---- */

struct e2e {
	struct relay r;
	struct lib l;
	char dir[256];
};

#define E2E_SCHEMA                                                                                        \
	"{\"models\":[{\"name\":\"location\",\"kind\":\"device_owned\"},"                             \
	"{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":["                                    \
	"{\"field\":\"content_id\",\"model\":\"content_identity\"},"                                  \
	"{\"field\":\"parent_id\",\"model\":\"entry\"}]},"                                            \
	"{\"name\":\"content_identity\",\"kind\":\"shared\"}]}"

static inline void e2e_path(const struct e2e *e, char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", e->dir, name);
}

static inline void e2e_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert(f, "could not write %s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert(fclose(f) == 0, "could not write %s", path);
}

/* A relay on a fresh database, a library, and a private directory for stores. */
static inline void e2e_start(struct e2e *e)
{
	char path[512];

	memset(e, 0, sizeof *e);
	h_relay_start(&e->r, NULL, NULL);
	h_library(&e->r, &e->l);
	snprintf(e->dir, sizeof e->dir, "/tmp/syncrelay-e2e-XXXXXX");
	cr_assert(mkdtemp(e->dir), "mkdtemp failed: %s", strerror(errno));
	e2e_path(e, path, sizeof path, "schema.json");
	e2e_write_file(path, E2E_SCHEMA);
}

/* Stops the relay and removes the stores (only reached when the test passed, so a failed
 * test leaves its stores for diagnosis). */
static inline void e2e_finish(struct e2e *e)
{
	DIR *d = opendir(e->dir);
	struct dirent *de;

	if (e->r.pid > 0)
		cr_assert_eq(h_relay_stop(&e->r), 0, "syncrelayd did not exit cleanly; see %s", e->r.log);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char p[600];

		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s", e->dir, de->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(e->dir);
}

/* Enrolls a new device through the CLI into store dir/NAME.db; its path goes to out. */
static inline void e2e_enroll(struct e2e *e, const char *name, char *out, size_t n)
{
	struct cli c;
	char file[128];

	snprintf(file, sizeof file, "%s.db", name);
	e2e_path(e, out, n, file);
	cli_ok(&c, out, 60, "enroll", "--relay", e->r.url, "--library", e->l.id, "--join-token", e->l.join,
	       "--name", name);
	cli_free(&c);
}

/* e2e_start with device A (which declares the reference schema) and then device B enrolled;
 * their stores in a and b, each of n bytes. */
static inline void e2e_start_two(struct e2e *e, char *a, char *b, size_t n);

/* Declares the reference-scenario schema through the CLI of the device at store. */
static inline void e2e_schema(struct e2e *e, const char *store)
{
	struct cli c;
	char path[512];

	e2e_path(e, path, sizeof path, "schema.json");
	cli_ok(&c, store, 60, "schema", "set", path);
	cli_free(&c);
}

static inline void e2e_start_two(struct e2e *e, char *a, char *b, size_t n)
{
	e2e_start(e);
	e2e_enroll(e, "A", a, n);
	e2e_schema(e, a);
	e2e_enroll(e, "B", b, n);
}

static inline int e2e_state_row(void *arg, int ncol, char **vals, char **cols)
{
	char *buf = arg;
	size_t len = strlen(buf);
	int i;

	for (i = 0; i < ncol && len < 1000; i++)
		len += (size_t)snprintf(buf + len, 1024 - len, " %s=%s", cols[i], vals[i] ? vals[i] : "null");
	return 0;
}

/* Where a device stands, read straight from its store: sync state, cursor, head, backfill
 * position, outbox and live records per model. */
static inline void e2e_store_state(const char *store, char out[1024])
{
	sqlite3 *db = NULL;

	out[0] = '\0';
	if (sqlite3_open_v2(store, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		snprintf(out, 1024, "(cannot open %.900s)", store);
		sqlite3_close(db);
		return;
	}
	sqlite3_busy_timeout(db, 5000);
	sqlite3_exec(db,
		     "SELECT (SELECT value FROM meta WHERE key='state') AS state,"
		     " (SELECT value FROM meta WHERE key='cursor') AS cursor,"
		     " (SELECT value FROM meta WHERE key='head') AS head,"
		     " (SELECT value FROM meta WHERE key='bf_head') AS backfill_head,"
		     " (SELECT value FROM meta WHERE key='bf_model') AS backfill_model,"
		     " (SELECT value FROM meta WHERE key='bf_after') AS backfill_after,"
		     " (SELECT count(*) FROM outbox) AS outbox,"
		     " (SELECT count(*) FROM pending_refs) AS pending,"
		     " (SELECT group_concat(model || ':' || n) FROM (SELECT model, count(*) AS n FROM records"
		     "   WHERE deleted = 0 GROUP BY model)) AS live_records",
		     e2e_state_row, out, NULL);
	sqlite3_close(db);
}

/* `sync` once; returns how long it took. Past the deadline it fails saying where the device's
 * sync stands. */
static inline double e2e_sync(const char *store, double timeout)
{
	struct cli c;
	double s;
	char state[1024];

	cli_runv_deadline(&c, store, timeout, (const char *const[]){"sync", NULL}, 0);
	if (c.status == -1) {
		e2e_store_state(store, state);
		cr_assert_fail("`%s` did not finish within %.0f s; the store (%s) stands at:%s; stderr: %.300s",
			       c.cmd, timeout, store, state, c.err);
	}
	cr_assert_eq(c.status, 0, "`%s` exited %d; stderr: %s", c.cmd, c.status, c.err);
	s = c.seconds;
	cli_free(&c);
	return s;
}

/* `status --json`, parsed; the caller json_decref()s it. */
static inline json_t *e2e_status(const char *store)
{
	struct cli c;
	json_t *j;

	cli_ok(&c, store, 60, "status", "--json");
	cr_assert(json_is_object(c.json), "`%s` printed no JSON object: %s", c.cmd, c.out);
	j = json_incref(c.json);
	cli_free(&c);
	return j;
}

static inline long long e2e_jint(const json_t *j, const char *a, const char *b)
{
	const json_t *v = json_object_get(j, a);

	if (b)
		v = json_object_get(v, b);
	return json_integer_value(v);
}

static inline long long e2e_records(const char *store, const char *model)
{
	json_t *s = e2e_status(store);
	long long n = e2e_jint(s, "records", model);

	json_decref(s);
	return n;
}

/* One line per scope of a verify report, for diagnosis. */
static inline void e2e_scopes_text(const json_t *report, char *out, size_t n)
{
	const json_t *s;
	size_t i, len = 0;

	out[0] = '\0';
	json_array_foreach(json_object_get(report, "scopes"), i, s) {
		const char *owner = json_string_value(json_object_get(s, "owner"));
		const json_t *lo = json_object_get(s, "local"), *re = json_object_get(s, "relay");
		long long lc = json_integer_value(json_object_get(lo, "count"));
		long long rc = json_integer_value(json_object_get(re, "count"));

		if (len >= n)
			break;
		len += (size_t)snprintf(out + len, n - len,
					"\n  %s %s/%s: local count %lld hash %s, relay count %lld hash %s (%s by %lld)",
					json_is_true(json_object_get(s, "match")) ? "match   " : "MISMATCH",
					json_string_value(json_object_get(s, "model")), owner ? owner : "shared", lc,
					json_string_value(json_object_get(lo, "hash")), rc,
					json_string_value(json_object_get(re, "hash")),
					lc <= rc ? "behind" : "ahead", lc <= rc ? rc - lc : lc - rc);
	}
}

/* `verify [--repair] --json`; returns the exit status, the report (caller's) in *report. */
static inline int e2e_verify(const char *store, int repair, json_t **report, double *seconds)
{
	struct cli c;
	int st;

	if (repair)
		cli_run(&c, store, 120, "verify", "--repair", "--json");
	else
		cli_run(&c, store, 120, "verify", "--json");
	cr_assert(json_is_object(c.json) && json_is_array(json_object_get(c.json, "scopes")),
		  "`%s` (exit %d) printed no report: %s; stderr: %s", c.cmd, c.status, c.out, c.err);
	cr_assert(json_is_object(json_object_get(c.json, "repaired")), "report without \"repaired\": %s", c.out);
	st = c.status;
	if (seconds)
		*seconds = c.seconds;
	*report = json_incref(c.json);
	cli_free(&c);
	return st;
}

/* verify exits 0 and every scope matches; fails naming the scopes that differ. */
static inline void e2e_assert_verified(const char *store, const char *who)
{
	char text[4096];
	json_t *rep;
	const json_t *s;
	size_t i;
	int st = e2e_verify(store, 0, &rep, NULL);

	e2e_scopes_text(rep, text, sizeof text);
	cr_assert_eq(st, 0, "verify on %s (store %s) exited %d:%s", who, store, st, text);
	cr_assert(json_array_size(json_object_get(rep, "scopes")) > 0, "verify on %s reports no scope", who);
	json_array_foreach(json_object_get(rep, "scopes"), i, s)
		cr_assert(json_is_true(json_object_get(s, "match")), "verify on %s exited 0 but:%s", who, text);
	json_decref(rep);
}

/* The canonical data of a record through `get`; NULL when it exits 1 "not found". */
static inline char *e2e_get(const char *store, const char *model, const char *id)
{
	struct cli c;
	char *v;

	cli_run(&c, store, 60, "get", model, id);
	if (c.status == 1 && strstr(c.err, "not found")) {
		cli_free(&c);
		return NULL;
	}
	cr_assert_eq(c.status, 0, "`%s` exited %d: %s", c.cmd, c.status, c.err);
	c.out[strcspn(c.out, "\n")] = '\0';
	v = strdup(c.out);
	cli_free(&c);
	return v;
}

/* A deterministic canonical UUID for (tag, k). */
static inline void e2e_id(char out[SR_UUID_LEN + 1], unsigned tag, long k)
{
	snprintf(out, SR_UUID_LEN + 1, "%08x-0000-4000-8000-%012ld", tag, k);
}

/* Writes n entries {"record_id":id(tag,k),"data":{"name":"file k","size":k,...}} to path. */
static inline void e2e_entries_file(const char *path, unsigned tag, long first, long n, const char *extra)
{
	FILE *f = fopen(path, "w");
	long k;

	cr_assert(f, "could not write %s: %s", path, strerror(errno));
	for (k = first; k < first + n; k++) {
		char id[SR_UUID_LEN + 1];

		e2e_id(id, tag, k);
		fprintf(f, "{\"record_id\":\"%s\",\"data\":{\"name\":\"file %ld\",\"size\":%ld,\"path\":\"/d/%ld/f%ld.txt\"%s%s}}\n",
			id, k, k * 37, k % 50, k, extra ? "," : "", extra ? extra : "");
	}
	cr_assert(fclose(f) == 0, "could not write %s", path);
}

/* Opens a device's SQLite store behind the library's back (read-only unless write) and prepares
 * sql with text parameters; e2e_store_done closes both. */
static inline sqlite3_stmt *e2e_store_query(const char *store, int write, const char *sql, const char *const *params,
					    int n)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int i;

	cr_assert(sqlite3_open_v2(store, &db, write ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY, NULL) == SQLITE_OK,
		  "open %s: %s", store, sqlite3_errmsg(db));
	sqlite3_busy_timeout(db, write ? 30000 : 10000);
	cr_assert(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s on %s: %s", sql, store, sqlite3_errmsg(db));
	for (i = 0; i < n; i++)
		sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC);
	return st;
}

static inline void e2e_store_done(sqlite3_stmt *st)
{
	sqlite3 *db = sqlite3_db_handle(st);

	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* Imports n entries (e2e_entries_file from first, no extra) through the CLI of the device at
 * store, from dir/entries.jsonl; returns the seconds the import took. */
static inline double e2e_import(struct e2e *e, const char *store, unsigned tag, long first, long n, double timeout)
{
	struct cli c;
	char file[512];
	double s;

	e2e_path(e, file, sizeof file, "entries.jsonl");
	e2e_entries_file(file, tag, first, n, NULL);
	cli_ok(&c, store, timeout, "import", "entry", file);
	s = c.seconds;
	cli_free(&c);
	return s;
}

/* One meta value straight from a device's SQLite store (malloc'd), as any SQLite tool reads it. */
static inline char *e2e_store_meta(const char *store, const char *key)
{
	sqlite3_stmt *st = e2e_store_query(store, 0, "SELECT value FROM meta WHERE key = ?1", &key, 1);
	char *v = NULL;

	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		v = strdup((const char *)sqlite3_column_text(st, 0));
	e2e_store_done(st);
	cr_assert(v, "store %s has no meta \"%s\"", store, key);
	return v;
}

/* Runs SQL with text parameters on a store behind the library's back; returns rows changed. */
static inline int e2e_store_exec(const char *store, const char *sql, const char *const *params, int n)
{
	sqlite3_stmt *st = e2e_store_query(store, 1, sql, params, n);
	sqlite3 *db = sqlite3_db_handle(st);
	int rc = sqlite3_step(st), changed;

	cr_assert(rc == SQLITE_DONE || rc == SQLITE_ROW, "%s on %s: %s", sql, store, sqlite3_errmsg(db));
	changed = sqlite3_changes(db);
	e2e_store_done(st);
	return changed;
}

/* The library's head on the relay, read with a device token. */
static inline long long e2e_relay_head(struct e2e *e, const char *token)
{
	char path[128];
	struct resp p;
	long long head;

	snprintf(path, sizeof path, "/v1/libraries/%s", e->l.id);
	h_http(&p, &e->r, "GET", path, token, NULL);
	cr_assert_eq(p.status, 200, "GET %s: %ld %s", path, p.status, p.body);
	head = e2e_jint(p.json, "head", NULL);
	h_resp_free(&p);
	return head;
}

/* The relay's digest scope (model, owner NULL = shared) for a device token; count and hash. */
static inline void e2e_relay_scope(struct e2e *e, const char *token, const char *model, const char *owner,
				   long long *count, char hash[17])
{
	char path[256];
	struct resp p;
	const json_t *s;
	size_t i;

	*count = -1;
	hash[0] = '\0';
	snprintf(path, sizeof path, "/v1/libraries/%s/digest?model=%s", e->l.id, model);
	h_http(&p, &e->r, "GET", path, token, NULL);
	cr_assert_eq(p.status, 200, "GET %s: %ld %s", path, p.status, p.body);
	json_array_foreach(json_object_get(p.json, "scopes"), i, s) {
		const char *o = json_string_value(json_object_get(s, "owner"));

		if ((!owner && !o) || (owner && o && !strcmp(owner, o))) {
			*count = json_integer_value(json_object_get(s, "count"));
			snprintf(hash, 17, "%s", json_string_value(json_object_get(s, "hash")));
		}
	}
	h_resp_free(&p);
}

#endif
