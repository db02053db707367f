/*
 * Clock skew is a delay, never a loss: a device whose clock runs 10 minutes ahead (libfaketime,
 * from Debian's faketime package) writes while `sync --watch` runs through several verify
 * periods. The relay refuses its changes for clock-skew until its own clock reaches them; they
 * must wait in the outbox, survive every periodic repair, never land in rejected, and then
 * reach the other device.
 */
#include <criterion/criterion.h>

#include "cli.h"

#define FAKETIME_LIB "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
#define AHEAD_S 600
#define SKEW_LIMIT_MS 588000 /* the relay takes the device's stamps about 12 s after they were made */
#define NWRITES 20

/* The CLI runs under the moved clock while set; monotonic clocks stay real so timeouts hold. */
static void clock_ahead(int on)
{
	static char asan[512];

	if (on) {
		/* under AddressSanitizer the preloaded library comes first, which ASan checks */
		if (!asan[0]) {
			const char *o = getenv("ASAN_OPTIONS");
			snprintf(asan, sizeof asan, "%s%sverify_asan_link_order=0", o ? o : "", o && *o ? ":" : "");
			setenv("ASAN_OPTIONS", asan, 1);
		}
		setenv("LD_PRELOAD", FAKETIME_LIB, 1);
		setenv("FAKETIME", "+" "600" "s", 1);
		setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1", 1);
		setenv("FAKETIME_DONT_RESET", "1", 1);
	} else {
		unsetenv("LD_PRELOAD");
		unsetenv("FAKETIME");
	}
}

Test(skew, a_device_ten_minutes_ahead_loses_nothing, .timeout = 300)
{
	struct e2e e;
	char a[512], b[512], id[SR_UUID_LEN + 1], data[64], log[600], *got;
	const char *env[2] = {"SYNCRELAY_MAX_SKEW_MS=" "588000", NULL};
	double t0, waited = -1;
	json_t *s;
	pid_t watch;
	int k, missing;

	if (access(FAKETIME_LIB, R_OK) != 0)
		cr_skip_test("libfaketime is not installed (%s): the skew test needs Debian's faketime package",
			     FAKETIME_LIB);
	memset(&e, 0, sizeof e);
	h_relay_start(&e.r, NULL, env);
	h_library(&e.r, &e.l);
	snprintf(e.dir, sizeof e.dir, "/tmp/syncrelay-e2e-XXXXXX");
	cr_assert(mkdtemp(e.dir));
	e2e_path(&e, log, sizeof log, "schema.json");
	e2e_write_file(log, E2E_SCHEMA);
	e2e_enroll(&e, "A", a, sizeof a);
	e2e_schema(&e, a);
	e2e_enroll(&e, "B", b, sizeof b);

	/* A writes with its clock 10 minutes ahead, then watches with a verify every 2 s */
	clock_ahead(1);
	t0 = h_mono();
	for (k = 0; k < NWRITES; k++) {
		e2e_id(id, 0x5e, k);
		snprintf(data, sizeof data, "{\"n\":%d}", k);
		cli_do(a, 60, "put", "entry", id, data);
	}
	e2e_path(&e, log, sizeof log, "A-watch.log");
	watch = cli_spawn(a, log, "sync", "--watch", "--timeout", "22", "--verify-every", "2");
	clock_ahead(0);

	/* while the relay refuses, the changes wait in A's outbox and nothing is rejected */
	for (;;) {
		long long out, rej;

		s = e2e_status(a);
		out = e2e_jint(s, "outbox", NULL);
		rej = (long long)json_array_size(json_object_get(s, "rejected"));
		cr_assert_eq(rej, 0, "a change refused for clock-skew landed in rejected: %s", json_dumps(s, 0));
		if (out == 0) {
			waited = h_mono() - t0;
			json_decref(s);
			break;
		}
		cr_assert_leq(out, NWRITES, "A's outbox holds %lld changes, it wrote %d: %s", out, NWRITES,
			      json_dumps(s, 0));
		if (json_is_integer(json_object_get(s, "clock_offset_ms")))
			cr_assert(llabs(e2e_jint(s, "clock_offset_ms", NULL) - AHEAD_S * 1000) < 5000,
				  "A measured its clock offset as %lld ms, it is %d s", e2e_jint(s, "clock_offset_ms", NULL),
				  AHEAD_S);
		json_decref(s);
		cr_assert_lt(h_mono() - t0, 40, "A's %d skewed changes were still not accepted after 40 s", NWRITES);
		cli_sleep(0.5);
	}
	/* the relay took them only once its clock reached their stamps, so verify ran meanwhile */
	cr_assert_gt(waited, (AHEAD_S * 1000 - SKEW_LIMIT_MS) / 1000.0 - 3,
		     "the skewed changes were accepted after %.1f s: sooner than the relay's limit allows", waited);
	cr_assert_eq(cli_wait(watch, 60, "A's sync --watch", log), 0, "A's watch failed; see %s", log);

	/* every write reaches B */
	e2e_sync(b, 60);
	for (k = 0, missing = 0; k < NWRITES; k++) {
		e2e_id(id, 0x5e, k);
		snprintf(data, sizeof data, "{\"n\":%d}", k);
		got = e2e_get(b, "entry", id);
		missing += !got || strcmp(got, data);
		free(got);
		e2e_id(id, 0x5e, k);
		got = e2e_get(a, "entry", id);
		cr_assert(got && !strcmp(got, data), "A lost its own write %s: %s", id, got ? got : "(absent)");
		free(got);
	}
	cr_assert_eq(missing, 0, "B received %d of A's %d writes", NWRITES - missing, NWRITES);

	/* A's clock is right again: its next write is still stamped at its clock's high point,
	 * and it is delayed or taken, never lost */
	e2e_id(id, 0x5e, 1000);
	cli_do(a, 60, "put", "entry", id, "{\"after\":\"fixed\"}");
	e2e_sync(a, 60);
	s = e2e_status(a);
	cr_assert_eq(e2e_jint(s, "outbox", NULL), 0, "A's write after the clock fix is still waiting: %s", json_dumps(s, 0));
	cr_assert_eq(json_array_size(json_object_get(s, "rejected")), 0, "%s", json_dumps(s, 0));
	cr_assert(llabs(e2e_jint(s, "clock_offset_ms", NULL)) < 5000, "A's clock offset after the fix: %s",
		  json_dumps(s, 0));
	json_decref(s);
	e2e_sync(b, 60);
	got = e2e_get(b, "entry", id);
	cr_assert(got && strstr(got, "fixed"), "B lacks A's write made after the clock fix: %s", got ? got : "(absent)");
	free(got);
	e2e_assert_verified(a, "A");
	e2e_assert_verified(b, "B");
	cr_log_info("skew: %d writes 600 s ahead waited %.1f s in the outbox, then all reached B", NWRITES, waited);
	e2e_finish(&e);
}

/* The CLI says when the device clock is past the relay's limit. */
Test(skew, status_warns_when_the_clock_is_past_the_limit, .timeout = 120)
{
	struct e2e e;
	char a[512], id[SR_UUID_LEN + 1];
	struct cli c;
	json_t *s;

	if (access(FAKETIME_LIB, R_OK) != 0)
		cr_skip_test("libfaketime is not installed (%s)", FAKETIME_LIB);
	e2e_start(&e);
	e2e_enroll(&e, "A", a, sizeof a);
	e2e_schema(&e, a);
	clock_ahead(1);
	e2e_id(id, 0x5f, 1);
	cli_do(a, 60, "put", "entry", id, "{\"n\":1}");
	cli_ok(&c, a, 60, "sync");
	clock_ahead(0);
	cr_assert(strstr(c.err, "clock is") && strstr(c.err, "ahead of the relay"), "sync gave no clock warning: %s",
		  c.err);
	cli_free(&c);
	cli_ok(&c, a, 60, "status");
	cr_assert(strstr(c.err, "ahead of the relay"), "status gave no clock warning: %s", c.err);
	cli_free(&c);
	s = e2e_status(a);
	cr_assert_eq(e2e_jint(s, "outbox", NULL), 1, "the skewed change should wait in the outbox: %s", json_dumps(s, 0));
	cr_assert_eq(e2e_jint(s, "max_skew_ms", NULL), 300000, "%s", json_dumps(s, 0));
	json_decref(s);
	e2e_finish(&e);
}
