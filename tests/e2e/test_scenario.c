/*
 * End-to-end: the reference scenario (PROTOCOL.md section 8), driven through the syncrelay CLI
 * against a real relay and PostgreSQL, as a user would run it.
 *
 * Device A indexes a directory tree (`syncrelay index`, which also declares the reference
 * schema) while device B runs `sync --watch` and nothing else. B must end with exactly A's
 * entries, content identities and links, and so must device C, which enrolls once indexing is
 * done and runs one `sync`. Then files change, appear and vanish; A re-indexes (only the
 * differences are written; a second run writes nothing) and B and C follow. Every wait has a
 * deadline and fails naming what differs, by how much, and where the stores and logs are.
 *
 * SYNCRELAY_BIG=1 also runs the scenario at 20,000 files in about 450 directories and prints
 * the index time, B's convergence time and C's join time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
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

#define TOP_DIRS 5 /* directories directly under the tree's root */

/* ---- B's background `sync --watch`: never left behind by a failing test ---- */

static pid_t watch_pid;

static void kill_watch(void)
{
	if (watch_pid > 0) {
		kill(watch_pid, SIGKILL);
		waitpid(watch_pid, NULL, 0);
		watch_pid = 0;
	}
}

TestSuite(scenario, .fini = kill_watch);

/* ---- running the CLI ---- */

struct run {
	int status;    /* exit status, 128+signal when killed by one */
	char *out;     /* stdout, never NULL */
	char *err;     /* stderr, never NULL */
	json_t *json;  /* stdout parsed, or NULL */
	double seconds;
	char cmd[1024];
};

static char io_dir[256]; /* where the last command's stdout and stderr are kept */

static void run_free(struct run *o)
{
	free(o->out);
	free(o->err);
	json_decref(o->json);
	memset(o, 0, sizeof *o);
}

static void sleep_s(double s)
{
	struct timespec t;

	t.tv_sec = (time_t)s;
	t.tv_nsec = (long)((s - (double)t.tv_sec) * 1e9);
	nanosleep(&t, NULL);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, got;

	if (!f)
		return strdup("");
	do {
		if (cap - len < 4096) {
			char *p = realloc(buf, cap + 65536);
			cr_assert(p, "out of memory");
			buf = p;
			cap += 65536;
		}
		got = fread(buf + len, 1, cap - len - 1, f);
		len += got;
	} while (got > 0);
	fclose(f);
	if (!buf)
		return strdup("");
	buf[len] = '\0';
	return buf;
}

/* The last lines of a log, for a diagnosis. */
static char *log_tail(const char *path, size_t max)
{
	char *all = slurp(path), *tail;
	size_t len = strlen(all);

	tail = strdup(len > max ? all + len - max : all);
	free(all);
	return tail;
}

static int exit_code(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Forks `syncrelay --store STORE ARGS…`, stdout to out and stderr to err (the same file when
 * equal; append selects O_APPEND over O_TRUNC). */
static pid_t cli_start(const char *store, const char *const *args, const char *out, const char *err, int append)
{
	const char *argv[64];
	int n = 0, flags = O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC);
	int fo, fe, in;
	pid_t pid;

	argv[n++] = "syncrelay";
	argv[n++] = "--store";
	argv[n++] = store;
	for (; *args; args++) {
		cr_assert(n < 63, "too many arguments");
		argv[n++] = *args;
	}
	argv[n] = NULL;
	/* opened before the fork: the child only dups and execs */
	fo = open(out, flags, 0644);
	fe = strcmp(out, err) ? open(err, flags, 0644) : fo;
	in = open("/dev/null", O_RDONLY);
	cr_assert(fo >= 0 && fe >= 0 && in >= 0, "could not open %s / %s: %s", out, err, strerror(errno));
	pid = fork();
	cr_assert(pid >= 0, "fork failed: %s", strerror(errno));
	if (pid == 0) {
		/* a test that dies must not leave a CLI running */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(in, 0);
		dup2(fo, 1);
		dup2(fe, 2);
		execv(SYNCRELAY_CLI_PATH, (char *const *)argv);
		_exit(127);
	}
	close(in);
	close(fo);
	if (fe != fo)
		close(fe);
	return pid;
}

static void run_cliv(struct run *o, const char *store, double timeout, const char *const *args)
{
	char out[300], err[300];
	double t0 = h_mono();
	size_t len;
	int st, i;
	pid_t pid;

	memset(o, 0, sizeof *o);
	len = (size_t)snprintf(o->cmd, sizeof o->cmd, "syncrelay --store %s", store);
	for (i = 0; args[i] && len < sizeof o->cmd; i++)
		len += (size_t)snprintf(o->cmd + len, sizeof o->cmd - len, " %s", args[i]);
	snprintf(out, sizeof out, "%s/last.out", io_dir);
	snprintf(err, sizeof err, "%s/last.err", io_dir);
	pid = cli_start(store, args, out, err, 0);
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (h_mono() - t0 > timeout) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			cr_assert_fail("`%s` did not finish within %.0f s", o->cmd, timeout);
		}
		sleep_s(0.002);
	}
	o->seconds = h_mono() - t0;
	o->status = exit_code(st);
	o->out = slurp(out);
	o->err = slurp(err);
	o->json = json_loads(o->out, JSON_DISABLE_EOF_CHECK, NULL);
}

#define RUN(o, store, timeout, ...) run_cliv((o), (store), (timeout), (const char *const[]){__VA_ARGS__, NULL})

#define RUN_OK(o, store, timeout, ...)                                                                      \
	do {                                                                                                \
		RUN((o), (store), (timeout), __VA_ARGS__);                                                  \
		cr_assert_eq((o)->status, 0, "`%s` exited %d; stderr: %s; stdout: %.500s", (o)->cmd,        \
			     (o)->status, (o)->err, (o)->out);                                              \
	} while (0)

/* ---- the tree ---- */

struct tree {
	char root[300];
	int ndirs, nfiles;
	int top_level; /* entries directly under the root */
	char (*dir)[256]; /* relative path of each directory */
};

static int dir_parent(int i)
{
	return i < TOP_DIRS ? -1 : (i - TOP_DIRS) / 2;
}

/* Directory of file k: one of the directories, or (index ndirs) the root itself. */
static int file_dir(const struct tree *t, int k)
{
	return k % (t->ndirs + 1);
}

static void file_path(const struct tree *t, int k, char *out, size_t n)
{
	int d = file_dir(t, k);

	if (d == t->ndirs)
		snprintf(out, n, "%s/f%05d.txt", t->root, k);
	else
		snprintf(out, n, "%s/%s/f%05d.txt", t->root, t->dir[d], k);
}

/* The bytes of file k: every 10th file repeats the bytes of the file 9 before it, so those
 * pairs share one content identity. */
static size_t file_content(int k, char *buf, size_t n)
{
	int src = k % 10 == 9 ? k - 9 : k, i, pad = (src * 7) % 300;
	size_t len = (size_t)snprintf(buf, n, "file %d of the reference scenario\n", src);

	for (i = 0; i < pad && len + 1 < n; i++)
		buf[len++] = (char)('a' + (src + i) % 26);
	buf[len] = '\0';
	return len;
}

static void write_bytes(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	cr_assert(fd >= 0, "could not create %s: %s", path, strerror(errno));
	cr_assert(write(fd, data, len) == (ssize_t)len, "could not write %s: %s", path, strerror(errno));
	cr_assert(close(fd) == 0, "could not write %s", path);
}

static void tree_build(struct tree *t, const char *root, int ndirs, int nfiles)
{
	char path[700], buf[512];
	int i, k;

	memset(t, 0, sizeof *t);
	snprintf(t->root, sizeof t->root, "%s", root);
	t->ndirs = ndirs;
	t->nfiles = nfiles;
	t->dir = calloc((size_t)ndirs, sizeof *t->dir);
	cr_assert(t->dir, "out of memory");
	cr_assert(mkdir(root, 0755) == 0, "mkdir %s: %s", root, strerror(errno));
	for (i = 0; i < ndirs; i++) {
		int p = dir_parent(i);

		if (p < 0)
			snprintf(t->dir[i], sizeof t->dir[i], "d%03d", i);
		else {
			cr_assert(strlen(t->dir[p]) + 6 < sizeof t->dir[i], "tree too deep");
			memcpy(t->dir[i], t->dir[p], strlen(t->dir[p]) + 1);
			snprintf(t->dir[i] + strlen(t->dir[i]), sizeof t->dir[i] - strlen(t->dir[i]), "/d%03d", i);
		}
		snprintf(path, sizeof path, "%s/%s", root, t->dir[i]);
		cr_assert(mkdir(path, 0755) == 0, "mkdir %s: %s", path, strerror(errno));
	}
	t->top_level = ndirs < TOP_DIRS ? ndirs : TOP_DIRS;
	for (k = 0; k < nfiles; k++) {
		size_t len = file_content(k, buf, sizeof buf);

		file_path(t, k, path, sizeof path);
		write_bytes(path, buf, len);
		t->top_level += file_dir(t, k) == ndirs;
	}
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_tree(const char *path)
{
	nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

/* ---- the world of one scenario ---- */

struct world {
	struct relay r;
	struct lib l;
	struct tree t;
	char dir[256];
	char a[300], b[300], c[300]; /* the three devices' stores */
	char blog[300];              /* B's `sync --watch` output */
};

static long long jint(const json_t *j, const char *a, const char *b)
{
	const json_t *v = json_object_get(j, a);

	if (b)
		v = json_object_get(v, b);
	return json_integer_value(v);
}

static long long jref(const json_t *s, const char *key, const char *what)
{
	return json_integer_value(json_object_get(json_object_get(json_object_get(s, "refs"), key), what));
}

static json_t *status_of(const char *store)
{
	struct run o;
	json_t *j;

	RUN_OK(&o, store, 60, "--json", "status");
	cr_assert(json_is_object(o.json), "`%s` printed no JSON object: %s", o.cmd, o.out);
	j = json_incref(o.json);
	run_free(&o);
	return j;
}

static long long relay_head(struct world *w)
{
	char path[128];
	struct resp p;
	long long head;

	snprintf(path, sizeof path, "/v1/libraries/%s", w->l.id);
	h_http(&p, &w->r, "GET", path, H_ADMIN, NULL);
	cr_assert_eq(p.status, 200, "GET %s: %ld %s", path, p.status, p.body);
	head = json_integer_value(json_object_get(p.json, "head"));
	h_resp_free(&p);
	return head;
}

static const char *const models[] = {"location", "entry", "content_identity"};
static const char *const refkeys[] = {"entry.content_id", "entry.parent_id"};
#define NMODELS (sizeof models / sizeof *models)
#define NREFS (sizeof refkeys / sizeof *refkeys)

/* 1 when y holds what x holds: live records per model, set references per field, none of
 * y's unresolved, and y's cursor at the relay's head. */
static int same_state(const json_t *x, const json_t *y, long long head)
{
	size_t i;

	for (i = 0; i < NMODELS; i++)
		if (!json_is_integer(json_object_get(json_object_get(y, "records"), models[i])) ||
		    jint(x, "records", models[i]) != jint(y, "records", models[i]))
			return 0;
	for (i = 0; i < NREFS; i++)
		if (jref(x, refkeys[i], "set") != jref(y, refkeys[i], "set"))
			return 0;
	return jint(y, "unresolved", NULL) == 0 && jint(y, "cursor", NULL) == head;
}

/* What differs between A (x) and device `who` (y), with where to look. */
static void diagnose(char *out, size_t n, const struct world *w, const json_t *x, const json_t *y,
		     const char *who, const char *store, long long head)
{
	size_t len = 0, i;

#define ADD(...)                                                                                 \
	do {                                                                                     \
		if (len < n)                                                                     \
			len += (size_t)snprintf(out + len, n - len, __VA_ARGS__);                \
	} while (0)
	out[0] = '\0';
	for (i = 0; i < NMODELS; i++) {
		long long a = jint(x, "records", models[i]), b = jint(y, "records", models[i]);

		ADD("\n  %-16s A %lld, %s %lld (%s)", models[i], a, who, b, a == b ? "equal" : "DIFFERENT");
		if (a != b)
			ADD(": %s %s by %lld", who, b < a ? "behind" : "ahead", b < a ? a - b : b - a);
	}
	for (i = 0; i < NREFS; i++)
		ADD("\n  refs %-16s set on A %lld (unresolved %lld), on %s %lld (unresolved %lld)", refkeys[i],
		    jref(x, refkeys[i], "set"), jref(x, refkeys[i], "unresolved"), who, jref(y, refkeys[i], "set"),
		    jref(y, refkeys[i], "unresolved"));
	ADD("\n  %s: state %s, cursor %lld, head seen %lld, relay head %lld (%lld behind), unresolved %lld, outbox %lld",
	    who, json_string_value(json_object_get(y, "state")), jint(y, "cursor", NULL), jint(y, "head", NULL), head,
	    head - jint(y, "cursor", NULL), jint(y, "unresolved", NULL), jint(y, "outbox", NULL));
	ADD("\n  A: outbox %lld, cursor %lld, unresolved %lld", jint(x, "outbox", NULL), jint(x, "cursor", NULL),
	    jint(x, "unresolved", NULL));
	ADD("\n  stores: A %s, %s %s; B's watch log %s; relay log %s; tree %s", w->a, who, store, w->blog, w->r.log,
	    w->t.root);
#undef ADD
}

/* Polls `status --json` of store every ~200 ms until it holds what A holds (x); with a watcher
 * pid, fails at once if it exits. Returns the h_mono() time it was seen converged. */
static double wait_converged(struct world *w, const json_t *x, const char *who, const char *store, pid_t watcher,
			     double deadline_s)
{
	double deadline = h_mono() + deadline_s;
	char why[4096];

	for (;;) {
		long long head = relay_head(w);
		double t = h_mono(), now;
		json_t *y = status_of(store);
		int st;

		now = h_mono();

		if (same_state(x, y, head)) {
			json_decref(y);
			return now;
		}
		if (watcher > 0 && waitpid(watcher, &st, WNOHANG) == watcher) {
			char *tail = log_tail(w->blog, 2000);

			watch_pid = 0;
			diagnose(why, sizeof why, w, x, y, who, store, head);
			cr_assert_fail("%s's `sync --watch` exited with status %d before converging:%s\n  its log ends:\n%s",
				       who, exit_code(st), why, tail);
		}
		if (now > deadline) {
			diagnose(why, sizeof why, w, x, y, who, store, head);
			cr_assert_fail("%s did not converge to A within %.0f s:%s", who, deadline_s, why);
		}
		json_decref(y);
		/* every 200 ms, or as long as status itself took, so polling does not crowd out the device */
		sleep_s(now - t > 0.2 ? now - t : 0.2);
	}
}

/* Asserts y holds what x holds, now. */
static void assert_same_now(struct world *w, const json_t *x, const char *who, const char *store)
{
	long long head = relay_head(w);
	json_t *y = status_of(store);
	char why[4096];

	if (!same_state(x, y, head)) {
		diagnose(why, sizeof why, w, x, y, who, store, head);
		cr_assert_fail("%s does not hold what A holds after one sync:%s", who, why);
	}
	json_decref(y);
}

/* One `sync` of a device (output appended to DIR/WHO-sync.log); when it does not finish in
 * time, fails with what the device holds against A and whether it is still moving. */
static double sync_once(struct world *w, const json_t *x, const char *who, const char *store, double timeout)
{
	char log[300], why[4096];
	double t0 = h_mono();
	pid_t pid;
	int st;

	snprintf(log, sizeof log, "%s/%s-sync.log", w->dir, who);
	pid = cli_start(store, (const char *const[]){"sync", NULL}, log, log, 1);
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (h_mono() - t0 > timeout) {
			long long head = relay_head(w), before, after;
			json_t *y = status_of(store);

			before = jint(y, "records", "entry") + jint(y, "records", "content_identity");
			json_decref(y);
			sleep_s(2);
			y = status_of(store);
			after = jint(y, "records", "entry") + jint(y, "records", "content_identity");
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			diagnose(why, sizeof why, w, x, y, who, store, head);
			cr_assert_fail("`syncrelay --store %s sync` did not finish within %.0f s (its live entries and"
				       " content identities went from %lld to %lld in the last 2 s); its output is in %s:%s",
				       store, timeout, before, after, log, why);
		}
		sleep_s(0.002);
	}
	cr_assert_eq(exit_code(st), 0, "`syncrelay --store %s sync` exited %d; its output (%s) ends:\n%s", store,
		     exit_code(st), log, log_tail(log, 2000));
	return h_mono() - t0;
}

/* ---- links, read straight from the SQLite replicas ---- */

struct links {
	char **row; /* "record_id content_id" or "record_id -" */
	size_t n, cap, set;
};

static void links_read(const char *store, struct links *l)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc;

	memset(l, 0, sizeof *l);
	cr_assert(sqlite3_open_v2(store, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK, "open %s: %s", store,
		  sqlite3_errmsg(db));
	sqlite3_busy_timeout(db, 30000);
	cr_assert(sqlite3_prepare_v2(db,
				     "SELECT record_id, json_extract(data, '$.content_id') FROM records"
				     " WHERE model = 'entry' AND deleted = 0 ORDER BY record_id",
				     -1, &st, NULL) == SQLITE_OK,
		  "%s: %s", store, sqlite3_errmsg(db));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		const char *cid = (const char *)sqlite3_column_text(st, 1);
		char *row;

		if (l->n == l->cap) {
			size_t cap = l->cap ? 2 * l->cap : 4096;
			char **p = realloc(l->row, cap * sizeof *p);
			cr_assert(p, "out of memory");
			l->row = p;
			l->cap = cap;
		}
		cr_assert(asprintf(&row, "%s %s", id ? id : "(null)", cid ? cid : "-") > 0, "out of memory");
		l->row[l->n++] = row;
		l->set += cid != NULL;
	}
	cr_assert_eq(rc, SQLITE_DONE, "reading %s: %s", store, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void links_free(struct links *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->row[i]);
	free(l->row);
	memset(l, 0, sizeof *l);
}

/* Every live entry on `who` has the same content_id (or none) as on A, row by row. */
static void assert_links_equal(const char *a, const char *other, const char *who)
{
	struct links x, y;
	size_t i, diff = 0, first = (size_t)-1;

	links_read(a, &x);
	links_read(other, &y);
	for (i = 0; i < x.n && i < y.n; i++)
		if (strcmp(x.row[i], y.row[i])) {
			diff++;
			if (first == (size_t)-1)
				first = i;
		}
	cr_assert(x.n == y.n && diff == 0,
		  "entry links differ between A (%s: %zu live entries, %zu linked) and %s (%s: %zu, %zu linked):"
		  " %zu of the common rows differ%s%s%s%s",
		  a, x.n, x.set, who, other, y.n, y.set, diff, diff ? "; first at row " : "",
		  diff ? x.row[first] : "", diff ? " on A vs " : "", diff ? y.row[first] : "");
	links_free(&x);
	links_free(&y);
}

/* `verify --json` exits 0 and every scope (of each reference model) matches the relay. */
static void assert_verified(const char *store, const char *who)
{
	char text[4096] = "";
	size_t i, len = 0, k;
	const json_t *s;
	int seen[NMODELS] = {0}, all = 1;
	struct run o;

	RUN(&o, store, 300, "--json", "verify");
	cr_assert(json_is_object(o.json) && json_is_array(json_object_get(o.json, "scopes")),
		  "`%s` (exit %d) printed no report: %s; stderr: %s", o.cmd, o.status, o.out, o.err);
	json_array_foreach(json_object_get(o.json, "scopes"), i, s) {
		const char *model = json_string_value(json_object_get(s, "model"));
		const char *owner = json_string_value(json_object_get(s, "owner"));
		const json_t *lo = json_object_get(s, "local"), *re = json_object_get(s, "relay");
		int match = json_is_true(json_object_get(s, "match"));

		all &= match;
		for (k = 0; k < NMODELS; k++)
			seen[k] |= model && !strcmp(model, models[k]);
		if (len < sizeof text)
			len += (size_t)snprintf(text + len, sizeof text - len,
						"\n  %s %s/%s: local count %lld hash %s, relay count %lld hash %s",
						match ? "match   " : "MISMATCH", model, owner ? owner : "shared",
						jint(lo, "count", NULL), json_string_value(json_object_get(lo, "hash")),
						jint(re, "count", NULL), json_string_value(json_object_get(re, "hash")));
	}
	cr_assert_eq(o.status, 0, "verify on %s (store %s) exited %d:%s\nstderr: %s", who, store, o.status, text, o.err);
	cr_assert(all, "verify on %s exited 0 but not every scope matches:%s", who, text);
	for (k = 0; k < NMODELS; k++)
		cr_assert(seen[k], "verify on %s reports no %s scope:%s", who, models[k], text);
	run_free(&o);
}

static void enroll(struct world *w, const char *store, const char *name)
{
	struct run o;

	RUN_OK(&o, store, 120, "enroll", "--relay", w->r.url, "--library", w->l.id, "--join-token", w->l.join,
	       "--name", name);
	run_free(&o);
}

/* `index --json TREE` on A; the printed report (caller's) in *report. */
static double index_tree(struct world *w, json_t **report, double timeout)
{
	struct run o;
	double s;

	RUN_OK(&o, w->a, timeout, "--json", "index", w->t.root);
	cr_assert(json_is_object(o.json), "`%s` printed no JSON object: %s", o.cmd, o.out);
	cr_assert(json_is_integer(json_object_get(o.json, "written")) &&
		  json_is_integer(json_object_get(o.json, "deleted")) &&
		  json_is_integer(json_object_get(o.json, "entries")) &&
		  json_is_integer(json_object_get(o.json, "files")) &&
		  json_is_string(json_object_get(o.json, "location_id")),
		  "index report lacks a member: %s", o.out);
	*report = json_incref(o.json);
	s = o.seconds;
	run_free(&o);
	return s;
}

/* A's own figures, against what the tree holds. */
static void assert_a_holds(const json_t *sa, long long entries, long long identities, long long linked,
			   long long parented, const char *store)
{
	char *text = json_dumps(sa, JSON_COMPACT);

	cr_assert_eq(jint(sa, "records", "location"), 1, "A (%s) should hold 1 location: %s", store, text);
	cr_assert_eq(jint(sa, "records", "entry"), entries, "A (%s) should hold %lld entries: %s", store, entries, text);
	cr_assert_eq(jint(sa, "records", "content_identity"), identities,
		     "A (%s) should hold %lld content identities: %s", store, identities, text);
	cr_assert_eq(jref(sa, "entry.content_id", "set"), linked, "A (%s) should have %lld linked files: %s", store,
		     linked, text);
	cr_assert_eq(jref(sa, "entry.parent_id", "set"), parented, "A (%s) should have %lld entries with a parent: %s",
		     store, parented, text);
	cr_assert_eq(jint(sa, "unresolved", NULL), 0, "A (%s) has unresolved references: %s", store, text);
	cr_assert_eq(jint(sa, "outbox", NULL), 0, "A (%s) has not pushed everything after index: %s", store, text);
	free(text);
}

/* The tree changes: 3 files get new bytes (and a new size), 5 files appear (4 with new bytes,
 * 1 a copy of file 0) and 4 files are deleted. */
static const int changed[3] = {1, 502, 1003};
static const int removed[4] = {4, 105, 206, 307};

static void tree_change(struct tree *t)
{
	char path[700], buf[600];
	size_t len;
	int i;

	for (i = 0; i < 3; i++) {
		len = file_content(changed[i], buf, sizeof buf - 32);
		len += (size_t)snprintf(buf + len, sizeof buf - len, "changed after the first index\n");
		file_path(t, changed[i], path, sizeof path);
		write_bytes(path, buf, len);
	}
	for (i = 0; i < 5; i++) {
		int d = (i * 7 + 3) % t->ndirs;

		snprintf(path, sizeof path, "%s/%s/new%d.txt", t->root, t->dir[d], i);
		if (i < 4) {
			len = (size_t)snprintf(buf, sizeof buf, "new file %d, added after the first index\n", i);
			write_bytes(path, buf, len);
		} else {
			len = file_content(0, buf, sizeof buf);
			write_bytes(path, buf, len);
		}
	}
	for (i = 0; i < 4; i++) {
		file_path(t, removed[i], path, sizeof path);
		cr_assert(unlink(path) == 0, "unlink %s: %s", path, strerror(errno));
	}
}

static void report(const char *label, const char *what, double seconds)
{
	cr_log_info("scenario %s: %s %.2f s", label, what, seconds);
	fprintf(stderr, "scenario %s: %s %.2f s\n", label, what, seconds);
}

static void scenario(int ndirs, int nfiles, double watch_timeout, double deadline, const char *label)
{
	char timeout_arg[32], tree_dir[300];
	long long entries, identities, parented;
	double t0, t_index, t_b, t_enroll, t_sync, t1;
	json_t *rep, *sa;
	struct world w;
	int st;

	memset(&w, 0, sizeof w);
	h_relay_start(&w.r, NULL, NULL);
	h_library(&w.r, &w.l);
	snprintf(w.dir, sizeof w.dir, "/tmp/syncrelay-scenario-XXXXXX");
	cr_assert(mkdtemp(w.dir), "mkdtemp failed: %s", strerror(errno));
	snprintf(io_dir, sizeof io_dir, "%s", w.dir);
	snprintf(w.a, sizeof w.a, "%s/A.db", w.dir);
	snprintf(w.b, sizeof w.b, "%s/B.db", w.dir);
	snprintf(w.c, sizeof w.c, "%s/C.db", w.dir);
	snprintf(w.blog, sizeof w.blog, "%s/B-watch.log", w.dir);
	snprintf(tree_dir, sizeof tree_dir, "%s/tree", w.dir);
	tree_build(&w.t, tree_dir, ndirs, nfiles);
	entries = ndirs + nfiles;
	identities = nfiles - nfiles / 10;
	parented = entries - w.t.top_level;
	cr_log_info("scenario %s: relay %s, work directory %s", label, w.r.url, w.dir);

	/* A and B enroll into a library without a schema; B watches, doing nothing else */
	enroll(&w, w.a, "A");
	enroll(&w, w.b, "B");
	snprintf(timeout_arg, sizeof timeout_arg, "%.0f", watch_timeout);
	atexit(kill_watch);
	watch_pid = cli_start(w.b, (const char *const[]){"sync", "--watch", "--timeout", timeout_arg, NULL}, w.blog,
			      w.blog, 1);

	/* A indexes: the schema (index declares it), the location, entries, then content and links */
	t0 = h_mono();
	t_index = index_tree(&w, &rep, deadline);
	cr_assert_eq(jint(rep, "entries", NULL), entries, "index report: %s", json_dumps(rep, 0));
	cr_assert_eq(jint(rep, "files", NULL), nfiles, "index report: %s", json_dumps(rep, 0));
	cr_assert_gt(jint(rep, "written", NULL), entries, "index report: %s", json_dumps(rep, 0));
	cr_assert_eq(jint(rep, "deleted", NULL), 0, "index report: %s", json_dumps(rep, 0));
	json_decref(rep);
	report(label, "index (A)", t_index);
	sa = status_of(w.a);
	assert_a_holds(sa, entries, identities, nfiles, parented, w.a);

	/* B converges by watching alone */
	t_b = wait_converged(&w, sa, "B", w.b, watch_pid, deadline) - t0;
	report(label, "B converged after index start", t_b);
	assert_links_equal(w.a, w.b, "B");
	assert_verified(w.b, "B");
	assert_verified(w.a, "A");

	/* C enrolls after indexing and runs one sync */
	t1 = h_mono();
	enroll(&w, w.c, "C");
	t_enroll = h_mono() - t1;
	t_sync = sync_once(&w, sa, "C", w.c, deadline);
	assert_same_now(&w, sa, "C", w.c);
	assert_links_equal(w.a, w.c, "C");
	assert_verified(w.c, "C");
	json_decref(sa);
	report(label, "C joined (enroll + one sync)", t_enroll + t_sync);

	/* the tree changes; re-index writes only the differences, then nothing */
	tree_change(&w.t);
	t0 = h_mono();
	t_index = index_tree(&w, &rep, deadline);
	cr_assert_eq(jint(rep, "entries", NULL), entries + 5 - 4, "re-index report: %s", json_dumps(rep, 0));
	cr_assert_eq(jint(rep, "files", NULL), nfiles + 5 - 4, "re-index report: %s", json_dumps(rep, 0));
	cr_assert_gt(jint(rep, "written", NULL), 0, "re-index after changes wrote nothing: %s", json_dumps(rep, 0));
	cr_assert_eq(jint(rep, "deleted", NULL), 4, "re-index after deleting 4 files: %s", json_dumps(rep, 0));
	json_decref(rep);
	index_tree(&w, &rep, deadline);
	cr_assert(jint(rep, "written", NULL) == 0 && jint(rep, "deleted", NULL) == 0,
		  "a second index of an unchanged tree should write and delete nothing: %s", json_dumps(rep, 0));
	json_decref(rep);
	sa = status_of(w.a);
	/* old contents stay as content identities; 3 changed and 4 new bytes add 7 */
	assert_a_holds(sa, entries + 1, identities + 7, nfiles + 1, parented + 1, w.a);

	t_b = wait_converged(&w, sa, "B", w.b, watch_pid, deadline) - t0;
	assert_links_equal(w.a, w.b, "B");
	assert_verified(w.b, "B");
	assert_verified(w.a, "A");
	t_sync = sync_once(&w, sa, "C", w.c, deadline);
	assert_same_now(&w, sa, "C", w.c);
	assert_links_equal(w.a, w.c, "C");
	assert_verified(w.c, "C");
	json_decref(sa);
	report(label, "re-index (A)", t_index);
	report(label, "B converged after re-index start (incl. the no-op second index)", t_b);
	report(label, "C caught up (one sync)", t_sync);

	/* B stops cleanly on SIGTERM */
	t1 = h_mono();
	kill(watch_pid, SIGTERM);
	while (waitpid(watch_pid, &st, WNOHANG) == 0) {
		cr_assert(h_mono() - t1 < 30, "B's `sync --watch` did not exit within 30 s of SIGTERM; log %s", w.blog);
		sleep_s(0.01);
	}
	watch_pid = 0;
	cr_assert_eq(exit_code(st), 0, "B's `sync --watch` exited %d on SIGTERM; its log %s ends:\n%s", exit_code(st),
		     w.blog, log_tail(w.blog, 2000));

	cr_assert_eq(h_relay_stop(&w.r), 0, "syncrelayd did not exit cleanly; see %s", w.r.log);
	free(w.t.dir);
	/* only a passing run gets here: a failing one keeps its stores, logs and tree */
	rm_tree(w.dir);
}

Test(scenario, index_2000_files_watcher_and_late_joiner_converge, .timeout = 900)
{
	scenario(45, 2000, 300, 120, "2,000 files");
}

Test(scenario, index_20000_files_big, .timeout = 3000)
{
	const char *big = getenv("SYNCRELAY_BIG");

	if (!big || strcmp(big, "1"))
		cr_skip_test("set SYNCRELAY_BIG=1 to run the 20,000-file scenario");
	scenario(450, 20000, 2400, 900, "20,000 files");
}
