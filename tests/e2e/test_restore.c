/*
 * No write is ever lost when the relay's database goes back in time: three devices sync, the
 * database is dumped, they write on, the dump is restored, a fourth device writes past the old
 * head, and then every device syncs. All four must end digest-equal on the last-writer-wins
 * union of every write any of them made, which this test keeps as its own model. Also: the
 * repair rules (never revert to an older version, never remove without proof).
 */
#include <criterion/criterion.h>

#include "cli.h"

#define TAG_E 0xe0 /* entries: tag + device index */
#define TAG_S 0x5c /* shared content identities */
#define NDEV 4

/* The model: the last write of every record, in the order the test made them. Each write is a
 * separate CLI run after the one before, so its HLC is larger: the order is last-writer-wins. */
struct want {
	char model[24];
	char id[SR_UUID_LEN + 1];
	char data[128]; /* "" for deleted */
};

static struct want wants[2048];
static int nwants;

static void model_set(const char *model, const char *id, const char *data)
{
	int i;

	for (i = 0; i < nwants; i++)
		if (!strcmp(wants[i].model, model) && !strcmp(wants[i].id, id))
			break;
	cr_assert(i < (int)(sizeof wants / sizeof *wants));
	if (i == nwants)
		nwants++;
	snprintf(wants[i].model, sizeof wants[i].model, "%s", model);
	snprintf(wants[i].id, sizeof wants[i].id, "%s", id);
	snprintf(wants[i].data, sizeof wants[i].data, "%s", data ? data : "");
}

static void put(const char *store, const char *model, unsigned tag, long k, const char *data)
{
	char id[SR_UUID_LEN + 1];

	e2e_id(id, tag, k % 1000000);
	cli_do(store, 60, "put", model, id, data);
	model_set(model, id, data);
}

static void del(const char *store, const char *model, unsigned tag, long k)
{
	char id[SR_UUID_LEN + 1];

	e2e_id(id, tag, k % 1000000);
	cli_do(store, 60, "delete", model, id);
	model_set(model, id, NULL);
}

/* Runs a command-line program and fails the test with its output when it fails. */
static void run_tool(const char *cmd)
{
	char line[4096];
	FILE *p = popen(cmd, "r");
	sr_buf b = {0};
	int st;

	cr_assert(p, "could not run %s", cmd);
	while (fgets(line, sizeof line, p))
		sr_buf_puts(&b, line);
	st = pclose(p);
	cr_assert_eq(st, 0, "%s failed (%d): %s", cmd, st, b.p ? b.p : "");
	sr_buf_free(&b);
}

/* Differences between a store and the model, as text; "" when none. */
static void store_vs_model(const char *store, char *out, size_t n)
{
	size_t len = 0;
	int i, bad = 0;

	out[0] = '\0';
	for (i = 0; i < nwants; i++) {
		const char *p[2] = {wants[i].model, wants[i].id};
		sqlite3_stmt *st = e2e_store_query(store, 0, "SELECT deleted, data FROM records WHERE model = ?1 AND record_id = ?2",
						   p, 2);
		const char *have = NULL;
		int live = 0;

		if (sqlite3_step(st) == SQLITE_ROW) {
			live = !sqlite3_column_int(st, 0);
			have = (const char *)sqlite3_column_text(st, 1);
		}
		if (wants[i].data[0] ? !(live && have && !strcmp(have, wants[i].data)) : live) {
			if (bad++ < 5 && len < n)
				len += (size_t)snprintf(out + len, n - len, " %s %s: has %s, want %s;", wants[i].model,
							wants[i].id, live ? (have ? have : "?") : "(deleted/absent)",
							wants[i].data[0] ? wants[i].data : "(deleted)");
		}
		e2e_store_done(st);
	}
	if (bad && len < n)
		snprintf(out + len, n - len, " %d of %d records differ", bad, nwants);
}

static void sync_all(char stores[NDEV][512], int n)
{
	int i;

	for (i = 0; i < n; i++)
		e2e_sync(stores[i], 120);
}

Test(restore, a_relay_restored_from_a_dump_loses_nothing, .timeout = 600)
{
	struct e2e e;
	char st[NDEV][512], dump[600], cmd[2048], diff[2048], data[96], *tok;
	const char *names[NDEV] = {"A", "B", "C", "D"};
	long long h1, h2, head;
	int i, round, port;
	long k;

	nwants = 0;
	e2e_start(&e);
	for (i = 0; i < 3; i++) {
		e2e_enroll(&e, names[i], st[i], sizeof st[i]);
		if (i == 0)
			e2e_schema(&e, st[0]);
	}
	/* before the dump: 30 entries each, shared records written by two devices */
	for (i = 0; i < 3; i++)
		for (k = 0; k < 30; k++) {
			snprintf(data, sizeof data, "{\"name\":\"%s-%ld-v1\"}", names[i], k);
			put(st[i], "entry", TAG_E + (unsigned)i, k, data);
		}
	for (k = 0; k < 10; k++)
		put(st[0], "content_identity", TAG_S, k, "{\"by\":\"A-v1\"}");
	sync_all(st, 3);
	for (k = 0; k < 5; k++)
		put(st[1], "content_identity", TAG_S, k, "{\"by\":\"B-v1\"}");
	sync_all(st, 3);
	sync_all(st, 3);
	tok = e2e_store_meta(st[0], "token");
	h1 = e2e_relay_head(&e, tok);
	e2e_path(&e, dump, sizeof dump, "relay.dump");
	snprintf(cmd, sizeof cmd, "pg_dump -Fc -f '%s' -d '%s' 2>&1", dump, e.r.db);
	run_tool(cmd);

	/* after the dump: updates, deletes and new records by every device, device-owned and shared */
	for (i = 0; i < 3; i++) {
		for (k = 0; k < 10; k++) {
			snprintf(data, sizeof data, "{\"name\":\"%s-%ld-v2\"}", names[i], k);
			put(st[i], "entry", TAG_E + (unsigned)i, k, data);
		}
		for (k = 10; k < 15; k++)
			del(st[i], "entry", TAG_E + (unsigned)i, k);
		for (k = 30; k < 40; k++) {
			snprintf(data, sizeof data, "{\"name\":\"%s-%ld-v1\"}", names[i], k);
			put(st[i], "entry", TAG_E + (unsigned)i, k, data);
		}
		e2e_sync(st[i], 120);
	}
	for (k = 5; k < 10; k++)
		put(st[2], "content_identity", TAG_S, k, "{\"by\":\"C-v2\"}");
	del(st[0], "content_identity", TAG_S, 0);
	put(st[1], "content_identity", TAG_S, 1, "{\"by\":\"B-v2\"}");
	sync_all(st, 3);
	sync_all(st, 3);
	h2 = e2e_relay_head(&e, tok);
	cr_assert_gt(h2, h1);

	/* the relay's database goes back to the dump, on the same address */
	port = e.r.port;
	cr_assert_eq(h_relay_stop(&e.r), 0, "syncrelayd did not exit cleanly; see %s", e.r.log);
	snprintf(cmd, sizeof cmd, "pg_restore --clean --if-exists --single-transaction -d '%s' '%s' 2>&1", e.r.db, dump);
	run_tool(cmd);
	{
		char listen[64], db[512];
		const char *env[2] = {listen, NULL};

		snprintf(listen, sizeof listen, "SYNCRELAY_LISTEN=127.0.0.1:%d", port);
		snprintf(db, sizeof db, "%s", e.r.db);
		h_relay_start(&e.r, db, env);
	}
	cr_assert_eq(e2e_relay_head(&e, tok), h1, "the restore did not take the relay back to head %lld", h1);

	/* a fourth device, fresh, writes until head passes the lost head */
	e2e_enroll(&e, names[3], st[3], sizeof st[3]);
	for (k = 0; e2e_relay_head(&e, tok) <= h2 + 5; k++) {
		snprintf(data, sizeof data, "{\"name\":\"D-%ld-v1\"}", k);
		put(st[3], "entry", TAG_E + 3, k, data);
		if (k % 10 == 9)
			e2e_sync(st[3], 120);
	}
	e2e_sync(st[3], 120);
	head = e2e_relay_head(&e, tok);
	cr_log_info("restore: H1 %lld, H2 %lld, head after D %lld, %d records in the model", h1, h2, head, nwants);

	/* every device syncs; the devices whose history the relay lost resync and push back what
	 * they wrote; rounds until all agree with the model, with a deadline */
	for (round = 0; round < 4; round++) {
		int bad = 0;

		sync_all(st, NDEV);
		for (i = 0; i < NDEV; i++) {
			store_vs_model(st[i], diff, sizeof diff);
			bad += diff[0] != '\0';
		}
		if (!bad)
			break;
	}
	for (i = 0; i < NDEV; i++) {
		json_t *s;

		store_vs_model(st[i], diff, sizeof diff);
		cr_assert_str_empty(diff, "after %d sync rounds, device %s (store %s) differs from the last-writer-wins"
					  " union of every write:%s", round + 1, names[i], st[i], diff);
		e2e_assert_verified(st[i], names[i]);
		s = e2e_status(st[i]);
		cr_assert_eq(e2e_jint(s, "outbox", NULL), 0, "%s's outbox is not empty after the rounds", names[i]);
		json_decref(s);
	}
	cr_log_info("restore: converged on the model after %d round(s), head %lld", round + 1,
		    e2e_relay_head(&e, tok));
	free(tok);
	e2e_finish(&e);
}

/* The repair rules, each reported by verify --json: a local version newer than the relay's is
 * never replaced; a local record the relay does not list, without a tombstone or purge point,
 * is never removed; this device's own such records go back to the relay. */
Test(restore, repair_never_reverts_or_removes_without_proof, .timeout = 300)
{
	struct e2e e;
	char a[512], b[512], id[SR_UUID_LEN + 1], hlc[SR_HLC_LEN + 1], *dev_a, *dev_b, *got;
	const char *p[4];
	json_t *rep;
	const json_t *s;
	size_t i;
	int st, behind = 0;

	e2e_start_two(&e, a, b, sizeof a);
	dev_a = e2e_store_meta(a, "device_id");
	dev_b = e2e_store_meta(b, "device_id");
	e2e_id(id, TAG_S, 1);
	cli_do(a, 60, "put", "content_identity", id, "{\"v\":1}");
	e2e_id(id, TAG_E, 1);
	cli_do(a, 60, "put", "entry", id, "{\"name\":\"a1\"}");
	e2e_sync(a, 60);
	e2e_sync(b, 60);
	e2e_assert_verified(b, "B");

	/* B holds A's shared record at a newer version than the relay (as after a relay restore) */
	h_hlc(hlc, h_now_ms() + 1000, 0, dev_a);
	e2e_id(id, TAG_S, 1);
	p[0] = hlc;
	p[1] = id;
	cr_assert_eq(e2e_store_exec(b, "UPDATE records SET hlc = ?1, data = '{\"v\":2}'"
				       " WHERE model = 'content_identity' AND record_id = ?2", p, 2), 1);
	/* ... one of A's entries the relay does not list at all, without a tombstone ... */
	e2e_id(id, TAG_E, 2);
	h_hlc(hlc, h_now_ms() - 500, 0, dev_a);
	p[0] = id;
	p[1] = dev_a;
	p[2] = hlc;
	cr_assert_eq(e2e_store_exec(b, "INSERT INTO records (model, record_id, owner, hlc, deleted, data)"
				       " VALUES ('entry', ?1, ?2, ?3, 0, '{\"name\":\"only on B\"}')", p, 3), 1);
	/* ... and one of its own the relay lost (not in its outbox) */
	e2e_id(id, TAG_E + 1, 1);
	h_hlc(hlc, h_now_ms() - 400, 0, dev_b);
	p[0] = id;
	p[1] = dev_b;
	p[2] = hlc;
	cr_assert_eq(e2e_store_exec(b, "INSERT INTO records (model, record_id, owner, hlc, deleted, data)"
				       " VALUES ('entry', ?1, ?2, ?3, 0, '{\"name\":\"B lost by the relay\"}')", p, 3), 1);

	st = e2e_verify(b, 1, &rep, NULL);
	cr_assert_eq(st, 1, "verify --repair should report the relay behind (exit 1), got %d: %s", st,
		     json_dumps(rep, 0));
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(rep, "repaired"), "removed")), 0,
		     "repair removed a record without proof: %s", json_dumps(rep, 0));
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(rep, "repaired"), "kept")), 2,
		     "repair should keep the newer shared record and the unlisted entry: %s", json_dumps(rep, 0));
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(rep, "repaired"), "repushed")), 1,
		     "repair should push B's own lost record back: %s", json_dumps(rep, 0));
	json_array_foreach(json_object_get(rep, "scopes"), i, s) {
		if (json_is_false(json_object_get(s, "match")))
			cr_assert(json_is_true(json_object_get(s, "relay_behind")), "a mismatched scope is not relay_behind: %s",
				  json_dumps(rep, 0));
		behind += json_is_true(json_object_get(s, "relay_behind"));
	}
	cr_assert_eq(behind, 2, "want content_identity/shared and entry/A relay_behind: %s", json_dumps(rep, 0));
	json_decref(rep);

	e2e_id(id, TAG_S, 1);
	got = e2e_get(b, "content_identity", id);
	cr_assert(got && !strcmp(got, "{\"v\":2}"), "B's newer shared record was reverted: %s", got ? got : "(absent)");
	free(got);
	e2e_id(id, TAG_E, 2);
	got = e2e_get(b, "entry", id);
	cr_assert(got && strstr(got, "only on B"), "B's unlisted entry was removed: %s", got ? got : "(absent)");
	free(got);
	/* B's own record reached the relay and A */
	e2e_sync(a, 60);
	e2e_id(id, TAG_E + 1, 1);
	got = e2e_get(a, "entry", id);
	cr_assert(got && strstr(got, "B lost by the relay"), "B's own record did not reach A: %s", got ? got : "(absent)");
	free(got);
	free(dev_a);
	free(dev_b);
	e2e_finish(&e);
}
