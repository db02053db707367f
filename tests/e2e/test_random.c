/*
 * Randomized convergence: five devices (the real library, each on its own store) make random
 * writes, updates, deletes and references across shared and device-owned models, sync at random
 * moments, one of them offline for a while, with relay restarts among them. All must end
 * digest-equal with the relay, with no unresolved reference whose target exists, and holding
 * for every record the version with the highest HLC any device wrote (the test keeps that
 * model from each store's own row after each write). The seed is printed; SYNCRELAY_SEED
 * replays one, SYNCRELAY_RANDOM_RUNS runs more.
 */
#include <criterion/criterion.h>

#include "cli.h"
#include "syncrelay.h"

#define NDEV 5
#define NREC 60 /* record ids per device (entries) and shared (content identities) */

struct want {
	char hlc[SR_HLC_LEN + 1];
	char data[160]; /* "" deleted */
};

/* model[d][k]: entry k of device d (d < NDEV), model[NDEV][k]: content identity k */
static struct want model[NDEV + 1][NREC];

static void rid(char out[SR_UUID_LEN + 1], int owner, int k)
{
	e2e_id(out, 0x7000u + (unsigned)owner, k);
}

/* The HLC and data the store at path now holds for (m, id); "" when absent. */
static void stored(const char *path, const char *m, const char *id, char hlc[SR_HLC_LEN + 1], char *data, size_t n)
{
	const char *p[2] = {m, id};
	sqlite3_stmt *st = e2e_store_query(path, 0, "SELECT hlc, deleted, data FROM records WHERE model = ?1 AND record_id = ?2",
					   p, 2);

	hlc[0] = data[0] = '\0';
	if (sqlite3_step(st) == SQLITE_ROW) {
		snprintf(hlc, SR_HLC_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 0));
		if (!sqlite3_column_int(st, 1))
			snprintf(data, n, "%s", (const char *)sqlite3_column_text(st, 2));
	}
	e2e_store_done(st);
}

static void remember(const char *path, int owner, int k)
{
	char id[SR_UUID_LEN + 1], hlc[SR_HLC_LEN + 1], data[160];
	struct want *w = &model[owner][k];

	rid(id, owner, k);
	stored(path, owner == NDEV ? "content_identity" : "entry", id, hlc, data, sizeof data);
	cr_assert(hlc[0], "a local write of %s left no row in %s", id, path);
	if (strcmp(hlc, w->hlc) > 0) {
		memcpy(w->hlc, hlc, sizeof w->hlc);
		snprintf(w->data, sizeof w->data, "%s", data);
	}
}

/* One random write by device d. */
static void random_write(sr_client *c, const char *path, int d, unsigned *rs, long op)
{
	char id[SR_UUID_LEN + 1], ref[SR_UUID_LEN + 1], data[160];
	int shared = rand_r(rs) % 4 == 0, owner = shared ? NDEV : d, k = rand_r(rs) % NREC;
	int del = rand_r(rs) % 6 == 0, rc;

	rid(id, owner, k);
	if (del) {
		rc = sr_client_delete(c, shared ? "content_identity" : "entry", id);
	} else if (shared) {
		snprintf(data, sizeof data, "{\"by\":%d,\"op\":%ld}", d, op);
		rc = sr_client_put(c, "content_identity", id, data);
	} else {
		/* a parent among this device's entries and a content identity, often not there yet */
		char parent[SR_UUID_LEN + 1];

		rid(parent, d, rand_r(rs) % NREC);
		rid(ref, NDEV, rand_r(rs) % NREC);
		snprintf(data, sizeof data, "{\"content_id\":\"%s\",\"op\":%ld,\"parent_id\":\"%s\"}", ref, op, parent);
		rc = sr_client_put(c, "entry", id, data);
	}
	cr_assert_eq(rc, 0, "device %d write %ld: %s", d, op, sr_client_errmsg(c));
	remember(path, owner, k);
}

static int sync_ok(sr_client *c)
{
	sr_sync_opts o = SR_SYNC_OPTS_INIT;

	return sr_client_sync(c, &o);
}

static void one_run(unsigned seed, long ops)
{
	struct e2e e;
	char path[NDEV][512], listen[64], db[512], id[SR_UUID_LEN + 1], hlc[SR_HLC_LEN + 1], data[160];
	const char *env[4] = {listen, "SYNCRELAY_RATE_PER_S=100000", "SYNCRELAY_RATE_BURST=100000", NULL};
	sr_client *c[NDEV];
	unsigned rs = seed;
	int d, k, round, restarts = 0, offline = 2;
	long op;

	cr_log_info("random: seed %u, %ld operations (SYNCRELAY_SEED=%u replays)", seed, ops, seed);
	memset(model, 0, sizeof model);
	e2e_start(&e);
	snprintf(db, sizeof db, "%s", e.r.db);
	snprintf(listen, sizeof listen, "SYNCRELAY_LISTEN=127.0.0.1:%d", e.r.port);
	cr_assert_eq(h_relay_stop(&e.r), 0);
	h_relay_start(&e.r, db, env);
	for (d = 0; d < NDEV; d++) {
		char name[8];

		snprintf(name, sizeof name, "D%d", d);
		e2e_enroll(&e, name, path[d], sizeof path[d]);
		if (d == 0)
			e2e_schema(&e, path[0]);
		cr_assert_eq(sr_client_open(&c[d], path[d]), 0, "open %s", path[d]);
	}
	for (op = 0; op < ops; op++) {
		d = rand_r(&rs) % NDEV;
		random_write(c[d], path[d], d, &rs, op);
		/* device 2 is offline through the middle third: it writes, never syncs */
		if (rand_r(&rs) % 8 == 0 && !(d == offline && op > ops / 3 && op < 2 * ops / 3)) {
			int rc = sync_ok(c[d]);
			cr_assert_eq(rc, 0, "seed %u op %ld: device %d sync: %s", seed, op, d, sr_client_errmsg(c[d]));
		}
		if (op > 0 && op % (ops / 4) == 0) {
			/* a relay restart (SIGTERM) among the writes */
			cr_assert_eq(h_relay_stop(&e.r), 0, "relay did not stop cleanly; see %s", e.r.log);
			h_relay_start(&e.r, db, env);
			restarts++;
		}
	}
	/* everyone syncs until all match the relay, with a deadline of rounds */
	for (round = 0; round < 6; round++) {
		int all = 1;

		for (d = 0; d < NDEV; d++)
			cr_assert_eq(sync_ok(c[d]), 0, "seed %u: final sync of device %d: %s", seed, d, sr_client_errmsg(c[d]));
		for (d = 0; d < NDEV; d++) {
			char *rep = NULL;
			int rc = sr_client_verify(c[d], &rep, 0);

			all &= rc == 0;
			free(rep);
		}
		if (all)
			break;
	}
	for (d = 0; d < NDEV; d++) {
		char *rep = NULL, *st = NULL;
		json_t *j;
		int rc = sr_client_verify(c[d], &rep, 0);

		cr_assert_eq(rc, 0, "seed %u: device %d (store %s) still differs from the relay after %d rounds: %s", seed, d,
			     path[d], round, rep ? rep : sr_client_errmsg(c[d]));
		free(rep);
		cr_assert_eq(sr_client_status(c[d], &st), 0);
		j = json_loads(st, 0, NULL);
		free(st);
		/* a reference is unresolved only when its target truly does not exist (deleted or
		 * never written): count those from the model and compare */
		cr_assert(json_is_integer(json_object_get(j, "unresolved")), "status without unresolved");
		json_decref(j);
		for (k = 0; k <= NDEV; k++) {
			int i;

			for (i = 0; i < NREC; i++) {
				const struct want *w = &model[k][i];

				if (!w->hlc[0])
					continue;
				rid(id, k, i);
				stored(path[d], k == NDEV ? "content_identity" : "entry", id, hlc, data, sizeof data);
				cr_assert_str_eq(hlc, w->hlc, "seed %u: device %d holds %s at %s, the newest write is %s", seed, d,
						 id, hlc, w->hlc);
				cr_assert_str_eq(data, w->data, "seed %u: device %d holds %s as \"%s\", want \"%s\"", seed, d, id,
						 data, w->data);
			}
		}
	}
	/* references: every live entry's link resolves iff its target is live in the model */
	{
		long long want_unres = 0, got;
		char *st = NULL;
		json_t *j;

		for (d = 0; d < NDEV; d++)
			for (k = 0; k < NREC; k++) {
				json_t *dj;
				const char *t;
				int i;

				if (!model[d][k].data[0])
					continue;
				dj = json_loads(model[d][k].data, 0, NULL);
				t = json_string_value(json_object_get(dj, "content_id"));
				for (i = 0; t && i < NREC; i++) {
					rid(id, NDEV, i);
					if (!strcmp(id, t)) {
						want_unres += !model[NDEV][i].data[0];
						break;
					}
				}
				t = json_string_value(json_object_get(dj, "parent_id"));
				for (i = 0; t && i < NREC; i++) {
					rid(id, d, i);
					if (!strcmp(id, t)) {
						want_unres += !model[d][i].data[0];
						break;
					}
				}
				json_decref(dj);
			}
		for (d = 0; d < NDEV; d++) {
			cr_assert_eq(sr_client_status(c[d], &st), 0);
			j = json_loads(st, 0, NULL);
			got = json_integer_value(json_object_get(j, "unresolved"));
			cr_assert_eq(got, want_unres, "seed %u: device %d reports %lld unresolved references; %lld targets are"
						      " truly absent", seed, d, got, want_unres);
			json_decref(j);
			free(st);
		}
	}
	cr_log_info("random: seed %u converged after %d final round(s), %d relay restarts", seed, round + 1, restarts);
	for (d = 0; d < NDEV; d++)
		sr_client_free(c[d]);
	e2e_finish(&e);
}

Test(random, five_devices_converge_on_the_newest_writes, .timeout = 900)
{
	const char *s = getenv("SYNCRELAY_SEED"), *n = getenv("SYNCRELAY_RANDOM_RUNS");
	unsigned seed = s ? (unsigned)strtoul(s, NULL, 10) : (unsigned)(h_now_ms() % 1000000);
	int runs = s ? 1 : n ? atoi(n) : 2, i;

	for (i = 0; i < runs; i++)
		one_run(seed + (unsigned)i * 7919u, 1200);
}
