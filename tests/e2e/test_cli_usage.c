/*
 * The CLI as a person expects: help, per-command help and --version work anywhere without a
 * store and create nothing; an unknown command is a usage error; a failed enroll leaves no
 * store behind; `sync --watch` started while the relay is down waits for it and then syncs.
 */
#include "cli.h"

/* Runs the CLI with exactly these arguments (no --store) in directory dir, with
 * SYNCRELAY_STORE unset; waits at most 20 s. */
static void bare_run(struct cli *o, const char *dir, const char *const *args)
{
	char log[600];
	int n = 0, i, st, fd;
	const char **argv;
	sr_buf b = {0};
	pid_t pid;
	double deadline = h_mono() + 20;
	FILE *f;

	memset(o, 0, sizeof *o);
	snprintf(log, sizeof log, "%s/.out", dir);
	while (args[n])
		n++;
	argv = calloc((size_t)n + 2, sizeof *argv);
	cr_assert(argv);
	argv[0] = "syncrelay";
	for (i = 0; i < n; i++)
		argv[1 + i] = args[i];
	snprintf(o->cmd, sizeof o->cmd, "syncrelay");
	for (i = 0; i < n; i++)
		snprintf(o->cmd + strlen(o->cmd), sizeof o->cmd - strlen(o->cmd), " %s", args[i]);
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (chdir(dir))
			_exit(126);
		unsetenv("SYNCRELAY_STORE");
		dup2(fd, 1);
		dup2(fd, 2);
		execv(SYNCRELAY_CLI_PATH, (char *const *)argv);
		_exit(127);
	}
	close(fd);
	free(argv);
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (h_mono() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			cr_assert_fail("`%s` did not exit within 20 s", o->cmd);
		}
		cli_sleep(0.005);
	}
	o->status = cli_exit_status(st);
	f = fopen(log, "r");
	cr_assert(f);
	for (;;) {
		char buf[4096];
		size_t got = fread(buf, 1, sizeof buf, f);
		if (!got)
			break;
		sr_buf_put(&b, buf, got);
	}
	fclose(f);
	unlink(log);
	sr_buf_putc(&b, '\0');
	o->out = sr_buf_steal(&b);
	o->err = strdup("");
}

#define bare(o, dir, ...) bare_run((o), (dir), (const char *const[]){__VA_ARGS__, NULL})

/* The number of entries in dir other than . and .. */
static int dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	cr_assert(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void expect(const char *dir, int status, const char *needle, const char *const *args)
{
	struct cli o;

	bare_run(&o, dir, args);
	cr_assert_eq(o.status, status, "`%s` exited %d, expected %d; output: %s", o.cmd, o.status, status, o.out);
	cr_assert(strstr(o.out, needle), "`%s` printed no \"%s\"; output: %s", o.cmd, needle, o.out);
	cr_assert_eq(dir_entries(dir), 0, "`%s` created a file in its working directory", o.cmd);
	cli_free(&o);
}

#define EXPECT(dir, status, needle, ...) expect((dir), (status), (needle), (const char *const[]){__VA_ARGS__, NULL})

Test(cli_usage, help_and_version_need_no_store)
{
	char dir[] = "/tmp/syncrelay-cli-XXXXXX";

	cr_assert(mkdtemp(dir));
	EXPECT(dir, 0, "commands:", "--help");
	EXPECT(dir, 0, "commands:", "-h");
	EXPECT(dir, 0, "commands:", "help");
	EXPECT(dir, 0, "sync [--watch]", "help", "sync");
	EXPECT(dir, 0, "usage: syncrelay [--store PATH] [--json] index DIR", "index", "--help");
	EXPECT(dir, 0, "enroll --relay URL", "enroll", "--help");
	EXPECT(dir, 0, "MODEL RECORD_ID JSON", "put", "a", "b", "--help");
	EXPECT(dir, 0, "syncrelay 0.", "--version");
	EXPECT(dir, 2, "unknown command \"frobnicate\"", "frobnicate");
	EXPECT(dir, 1, "no command \"frobnicate\"", "help", "frobnicate");
	EXPECT(dir, 2, "commands:", "--json");
	EXPECT(dir, 1, "no store: give --store PATH", "status");
	EXPECT(dir, 1, "no store at", "--store", "absent.db", "status");
	rmdir(dir);
}

Test(cli_usage, store_errors_keep_sqlite_reason)
{
	char dir[] = "/tmp/syncrelay-cli-XXXXXX", bad[600], missing[600];
	struct cli c;
	FILE *f;

	cr_assert(mkdtemp(dir));
	snprintf(bad, sizeof bad, "%s/bad.db", dir);
	snprintf(missing, sizeof missing, "%s/no/such/dir/x.db", dir);
	f = fopen(bad, "w");
	cr_assert(f);
	fputs("this is not an SQLite database, but it is long enough to have a header page\n", f);
	fclose(f);
	cli_run(&c, bad, 20, "status");
	cr_assert_eq(c.status, 1);
	cr_assert(strstr(c.err, "file is not a database") && strstr(c.err, bad), "%s", c.err);
	cr_assert_eq(strchr(c.err, '\n'), c.err + strlen(c.err) - 1, "not one line: %s", c.err);
	cli_free(&c);
	cli_run(&c, missing, 20, "enroll", "--relay", "http://127.0.0.1:9", "--library",
		"00000000-0000-4000-8000-000000000000", "--join-token", "x");
	cr_assert_eq(c.status, 1);
	cr_assert(strstr(c.err, "unable to open database file"), "%s", c.err);
	cli_free(&c);
	unlink(bad);
	rmdir(dir);
}

Test(cli_usage, failed_enroll_leaves_no_store)
{
	struct e2e e;
	struct cli c;
	char store[512];

	e2e_start(&e);
	e2e_path(&e, store, sizeof store, "F.db");
	cli_run(&c, store, 60, "enroll", "--relay", e.r.url, "--library", e.l.id, "--join-token", "not-the-token");
	cr_assert_eq(c.status, 1, "enroll with a wrong join token exited %d; stderr: %s", c.status, c.err);
	cr_assert(strstr(c.err, "401") || strstr(c.err, "403"), "enroll's error names no refusal: %s", c.err);
	cr_assert_eq(strchr(c.err, '\n'), c.err + strlen(c.err) - 1, "enroll's error is not one line: %s", c.err);
	cr_assert_eq(access(store, F_OK), -1, "a failed enroll left %s behind", store);
	cli_free(&c);
	cli_run(&c, store, 60, "status");
	cr_assert_eq(c.status, 1);
	cr_assert(strstr(c.err, "no store at"), "status after a failed enroll: %s", c.err);
	cli_free(&c);
	/* and a good enroll afterwards works on the same path */
	cli_ok(&c, store, 60, "enroll", "--relay", e.r.url, "--library", e.l.id, "--join-token", e.l.join);
	cli_free(&c);
	cr_assert_eq(access(store, F_OK), 0);
	e2e_finish(&e);
}

Test(cli_usage, watch_waits_for_a_relay_that_is_down)
{
	struct e2e e;
	struct relay r2;
	char store[512], log[600], listen[64], envl[96];
	const char *env[2] = {envl, NULL};
	long long head = 0;
	double deadline;
	pid_t pid;
	int st;

	e2e_start(&e);
	e2e_enroll(&e, "W", store, sizeof store);
	e2e_schema(&e, store);
	cli_do(store, 30, "put", "location", "8f0d5c1e-2b7a-4c3d-9e4f-5a6b7c8d9e0f", "{\"name\":\"w\"}");
	snprintf(listen, sizeof listen, "127.0.0.1:%d", e.r.port);
	cr_assert_eq(h_relay_stop(&e.r), 0);
	e2e_path(&e, log, sizeof log, "watch.log");
	pid = cli_spawn(store, log, "sync", "--watch", "--timeout", "120");
	/* the watch must still be running, and say it waits, while the relay is down */
	deadline = h_mono() + 60;
	for (;;) {
		char *text = NULL;
		FILE *f = fopen(log, "r");
		sr_buf b = {0};
		char buf[4096];
		size_t got;

		cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "sync --watch exited while the relay was down; see %s", log);
		if (f) {
			while ((got = fread(buf, 1, sizeof buf, f)))
				sr_buf_put(&b, buf, got);
			fclose(f);
			sr_buf_putc(&b, '\0');
			text = b.p;
		}
		if (text && strstr(text, "waiting for the relay")) {
			free(text);
			break;
		}
		free(text);
		cr_assert(h_mono() < deadline, "sync --watch did not say it waits within 60 s; see %s", log);
		cli_sleep(0.05);
	}
	snprintf(envl, sizeof envl, "SYNCRELAY_LISTEN=%s", listen);
	h_relay_start(&r2, e.r.db, env);
	e.r = r2;
	deadline = h_mono() + 60;
	while ((head = h_lib_head(&e.r, &e.l)) < 1) {
		cr_assert(h_mono() < deadline, "the watch did not push its change within 60 s of the relay coming up; see %s", log);
		cli_sleep(0.05);
	}
	cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "sync --watch exited; see %s", log);
	kill(pid, SIGTERM);
	cr_assert_eq(cli_wait(pid, 30, "sync --watch after SIGTERM", log), 0, "sync --watch exited non-zero; see %s", log);
	e2e_finish(&e);
}
