/*
 * Unit tests of libsyncrelay's device-side logic, no network: the hybrid logical clock
 * (tick, receive rule, restart), last-writer-wins apply with tombstones, pending references
 * resolved in every arrival order, and the digest arithmetic (PROTOCOL.md sections 2, 4, 5).
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hlc.h"
#include "internal.h"
#include "store.h"

#define DEV_A "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
#define DEV_B "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
#define LIB "5d6e7f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5"
#define PARENT "11111111-1111-4111-8111-111111111111"
#define CHILD "22222222-2222-4222-8222-222222222222"
#define CONTENT "33333333-3333-4333-8333-333333333333"
#define OTHER "44444444-4444-4444-8444-444444444444"

/* The reference-scenario models, as the relay's schema answer carries them. */
#define MODELS                                                                                      \
	"[{\"name\":\"location\",\"kind\":\"device_owned\"},"                                       \
	"{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":["                                  \
	"{\"field\":\"content_id\",\"model\":\"content_identity\"},"                                \
	"{\"field\":\"parent_id\",\"model\":\"entry\"}]},"                                          \
	"{\"name\":\"content_identity\",\"kind\":\"shared\"}]"

/* ---- helpers ---- */

static void hlc_text(char out[SR_HLC_LEN + 1], uint64_t ms, uint64_t counter, const char *dev)
{
	sr_hlc h = {.ms = ms, .counter = counter};

	snprintf(h.device, sizeof h.device, "%s", dev);
	sr_hlc_format(out, &h);
}

static struct hlc_clock clock_at(uint64_t ms, uint64_t counter)
{
	struct hlc_clock k = {.ms = ms, .counter = counter};

	snprintf(k.device, sizeof k.device, "%s", DEV_A);
	return k;
}

static sr_hlc remote(uint64_t ms, uint64_t counter)
{
	sr_hlc h = {.ms = ms, .counter = counter};

	snprintf(h.device, sizeof h.device, "%s", DEV_B);
	return h;
}

/* (ms, counter) order, the part of an HLC's order the clock owns */
static int pair_cmp(uint64_t ams, uint64_t ac, uint64_t bms, uint64_t bc)
{
	if (ams != bms)
		return ams < bms ? -1 : 1;
	return ac < bc ? -1 : ac > bc;
}

/* An in-memory client with the reference schema loaded, as after an enrollment. */
static sr_client *mem_client(void)
{
	sr_client *c = NULL;

	cr_assert_eq(sr_client_open(&c, ":memory:"), 0, "sr_client_open(\":memory:\")");
	cr_assert_eq(store_meta_set(c->st, "schema_models", MODELS), 0);
	cr_assert_eq(store_meta_set_int(c->st, "schema_version", 1), 0);
	cr_assert_eq(client_load_schema(c), 0, "%s", sr_client_errmsg(c));
	cr_assert_not_null(sm_find(&c->schema, "entry"));
	return c;
}

static struct srec mkrec(const char *model, const char *id, const char *owner, const char *hlc, const char *data)
{
	struct srec r;

	memset(&r, 0, sizeof r);
	snprintf(r.model, sizeof r.model, "%s", model);
	snprintf(r.record_id, sizeof r.record_id, "%s", id);
	snprintf(r.owner, sizeof r.owner, "%s", owner);
	snprintf(r.hlc, sizeof r.hlc, "%s", hlc);
	r.deleted = data == NULL;
	r.data = data ? strdup(data) : NULL;
	return r;
}

/* Applies one record state outside the sync path and returns client_apply's answer. */
static int apply(sr_client *c, const char *model, const char *id, const char *owner, const char *hlc,
		 const char *data, int force)
{
	struct srec r = mkrec(model, id, owner, hlc, data);
	int rc = client_apply(c, &r, force);

	srec_clear(&r);
	cr_assert_geq(rc, 0, "client_apply(%s %s) failed: %s", model, id, store_errmsg(c->st));
	return rc;
}

/* The stored row: 1 found (hlc, data, deleted filled), 0 absent. */
static int row(sr_client *c, const char *model, const char *id, struct srec *out)
{
	int found = store_record_get(c->st, model, id, out);

	cr_assert_geq(found, 0, "store_record_get: %s", store_errmsg(c->st));
	return found;
}

static int count_cb(void *arg, int ncol, const char *const *vals)
{
	*(long *)arg = vals[0] ? atol(vals[0]) : 0;
	return 0;
}

static long pending_count(sr_client *c)
{
	long n = -1;

	cr_assert_eq(store_query(c->st, "SELECT count(*) FROM pending_refs", NULL, 0, count_cb, &n), 0);
	return n;
}

/* ---- HLC: local events ---- */

Test(hlc, tick_takes_the_wall_clock_when_it_advances)
{
	struct hlc_clock k = clock_at(1000, 5);
	char out[SR_HLC_LEN + 1], want[SR_HLC_LEN + 1];

	hlc_tick(&k, 2000, out);
	cr_assert_eq(k.ms, 2000);
	cr_assert_eq(k.counter, 0, "the counter resets when wall time advances");
	hlc_text(want, 2000, 0, DEV_A);
	cr_assert_str_eq(out, want);
	cr_assert_eq(sr_hlc_parse(NULL, out, strlen(out)), 0, "tick writes a valid HLC: %s", out);
}

Test(hlc, tick_counts_when_the_wall_clock_stands_still)
{
	struct hlc_clock k = clock_at(0, 0);
	char prev[SR_HLC_LEN + 1], out[SR_HLC_LEN + 1];
	int i;

	hlc_tick(&k, 5000, prev);
	for (i = 1; i <= 100; i++) {
		hlc_tick(&k, 5000, out);
		cr_assert_eq(k.ms, 5000);
		cr_assert_eq(k.counter, (uint64_t)i);
		cr_assert_gt(sr_hlc_cmp(out, prev), 0, "tick %d: %s not after %s", i, out, prev);
		memcpy(prev, out, sizeof prev);
	}
}

Test(hlc, tick_is_monotonic_when_the_wall_clock_goes_back)
{
	struct hlc_clock k = clock_at(0, 0);
	char prev[SR_HLC_LEN + 1], out[SR_HLC_LEN + 1];
	const uint64_t walls[] = {10000, 9000, 9000, 1, 10000, 10001, 500, 10001, 20000};
	size_t i;

	hlc_tick(&k, walls[0], prev);
	for (i = 1; i < sizeof walls / sizeof walls[0]; i++) {
		uint64_t before_ms = k.ms, before_c = k.counter;

		hlc_tick(&k, walls[i], out);
		cr_assert_gt(sr_hlc_cmp(out, prev), 0, "wall %llu: %s not after %s", (unsigned long long)walls[i], out,
			     prev);
		if (walls[i] <= before_ms) {
			cr_assert_eq(k.ms, before_ms, "the clock never goes back (wall %llu)", (unsigned long long)walls[i]);
			cr_assert_eq(k.counter, before_c + 1);
		} else {
			cr_assert_eq(k.ms, walls[i]);
			cr_assert_eq(k.counter, 0);
		}
		memcpy(prev, out, sizeof prev);
	}
	cr_assert_eq(k.ms, 20000);
}

/* ---- HLC: the receive rule, each case of the paper ---- */

/* Receives m at wall now and checks l', c' and that the clock passed both inputs. */
static void recv_case(uint64_t l, uint64_t c, uint64_t now, uint64_t mms, uint64_t mc, uint64_t want_l,
		      uint64_t want_c, const char *what)
{
	struct hlc_clock k = clock_at(l, c);
	sr_hlc m = remote(mms, mc);
	char after[SR_HLC_LEN + 1], local[SR_HLC_LEN + 1], rem[SR_HLC_LEN + 1];

	hlc_recv(&k, now, &m);
	cr_assert_eq(k.ms, want_l, "%s: l' = %llu, want %llu", what, (unsigned long long)k.ms,
		     (unsigned long long)want_l);
	cr_assert_eq(k.counter, want_c, "%s: c' = %llu, want %llu", what, (unsigned long long)k.counter,
		     (unsigned long long)want_c);
	cr_assert_str_eq(k.device, DEV_A, "%s: the clock keeps its own device", what);
	cr_assert_gt(pair_cmp(k.ms, k.counter, l, c), 0, "%s: not after the previous local clock", what);
	cr_assert_gt(pair_cmp(k.ms, k.counter, mms, mc), 0, "%s: not after the remote HLC", what);
	/* and so, as text, whatever the devices */
	hlc_text(after, k.ms, k.counter, DEV_A);
	hlc_text(local, l, c, DEV_A);
	sr_hlc_format(rem, &m);
	cr_assert_gt(sr_hlc_cmp(after, local), 0, "%s", what);
	cr_assert_gt(sr_hlc_cmp(after, rem), 0, "%s: %s not after %s", what, after, rem);
	/* the remote itself is left alone */
	cr_assert_eq(m.ms, mms);
	cr_assert_eq(m.counter, mc);
}

Test(hlc, recv_remote_ahead)
{
	/* l' = l.m > l, pt: c' = c.m + 1 */
	recv_case(1000, 9, 1500, 2000, 3, 2000, 4, "remote ahead");
	recv_case(1000, 0, 1000, 1001, 0, 1001, 1, "remote ahead by 1 ms");
}

Test(hlc, recv_local_ahead)
{
	/* l' = l > l.m, pt: c' = c + 1 */
	recv_case(3000, 4, 2000, 2500, 77, 3000, 5, "local ahead");
	recv_case(3000, 4, 3000, 2999, 77, 3000, 5, "local ahead, wall equal to local");
}

Test(hlc, recv_equal)
{
	/* l' = l = l.m >= pt: c' = max(c, c.m) + 1 */
	recv_case(4000, 2, 3000, 4000, 8, 4000, 9, "equal, remote counter larger");
	recv_case(4000, 8, 3000, 4000, 2, 4000, 9, "equal, local counter larger");
	recv_case(4000, 5, 4000, 4000, 5, 4000, 6, "equal, wall equal too");
}

Test(hlc, recv_wall_ahead)
{
	/* l' = pt > l, l.m: c' = 0 */
	recv_case(1000, 7, 5000, 2000, 9, 5000, 0, "wall ahead of both");
	recv_case(1000, 7, 5000, 1000, 9, 5000, 0, "wall ahead of both, equal l and l.m");
}

Test(hlc, ticks_after_a_recv_follow_the_remote)
{
	struct hlc_clock k = clock_at(1000, 0);
	sr_hlc m = remote(900000, 41);
	char rem[SR_HLC_LEN + 1], out[SR_HLC_LEN + 1];

	/* a device whose wall clock lags the author's still stamps later writes after it */
	hlc_recv(&k, 1200, &m);
	sr_hlc_format(rem, &m);
	hlc_tick(&k, 1300, out);
	cr_assert_gt(sr_hlc_cmp(out, rem), 0, "%s after receiving %s", out, rem);
	cr_assert_eq(k.ms, 900000);
	cr_assert_eq(k.counter, 43);
}

/* ---- HLC: persisted across a restart ---- */

struct tmpstore {
	char path[64];
};

static void tmpstore_make(struct tmpstore *t)
{
	int fd;

	snprintf(t->path, sizeof t->path, "/tmp/sr-unit-client-XXXXXX");
	fd = mkstemp(t->path);
	cr_assert_geq(fd, 0, "mkstemp");
	close(fd);
}

static void tmpstore_remove(struct tmpstore *t)
{
	char p[80];

	unlink(t->path);
	snprintf(p, sizeof p, "%s-wal", t->path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", t->path);
	unlink(p);
}

static void hlc_of(sr_client *c, const char *model, const char *id, char out[SR_HLC_LEN + 1])
{
	struct srec r;

	cr_assert_eq(row(c, model, id, &r), 1, "%s %s is not stored", model, id);
	memcpy(out, r.hlc, SR_HLC_LEN + 1);
	srec_clear(&r);
}

Test(hlc, clock_survives_a_restart_when_the_wall_clock_is_earlier)
{
	struct tmpstore t;
	struct store *st;
	sr_client *c;
	char err[256], h1[SR_HLC_LEN + 1], h2[SR_HLC_LEN + 1], persisted[SR_HLC_LEN + 1];
	/* the clock last ran an hour ahead of today's wall clock (it went back since) */
	uint64_t ahead = hlc_wall_ms() + 3600000;
	sr_hlc p;

	tmpstore_make(&t);
	cr_assert_eq(store_open(&st, t.path, err, sizeof err), 0, "%s", err);
	/* an enrolled device, as enroll leaves it, whose clock was saved at (ahead, 7) */
	cr_assert_eq(store_meta_set(st, "device_id", DEV_A), 0);
	cr_assert_eq(store_meta_set(st, "library_id", LIB), 0);
	cr_assert_eq(store_meta_set(st, "token", "device-token"), 0);
	cr_assert_eq(store_meta_set(st, "relay", "http://127.0.0.1:9"), 0);
	cr_assert_eq(store_meta_set(st, "schema_models", MODELS), 0);
	cr_assert_eq(store_meta_set_int(st, "schema_version", 1), 0);
	cr_assert_eq(store_meta_set_int(st, "hlc_ms", (int64_t)ahead), 0);
	cr_assert_eq(store_meta_set_int(st, "hlc_counter", 7), 0);
	store_close(st);
	hlc_text(persisted, ahead, 7, DEV_A);

	cr_assert_eq(sr_client_open(&c, t.path), 0);
	cr_assert_eq(c->clk.ms, ahead, "the clock is loaded from the store");
	cr_assert_eq(c->clk.counter, 7);
	cr_assert_str_eq(c->clk.device, DEV_A);
	cr_assert_eq(sr_client_put(c, "content_identity", CONTENT, "{\"v\":1}"), 0, "%s", sr_client_errmsg(c));
	hlc_of(c, "content_identity", CONTENT, h1);
	cr_assert_gt(sr_hlc_cmp(h1, persisted), 0, "first write after restart %s is not after the saved clock %s", h1,
		     persisted);
	cr_assert_eq(sr_hlc_parse(&p, h1, strlen(h1)), 0);
	cr_assert_eq(p.ms, ahead, "the earlier wall clock does not pull the HLC back");
	cr_assert_eq(p.counter, 8);
	sr_client_free(c);

	/* the write saved the clock: a second restart goes on from it */
	cr_assert_eq(sr_client_open(&c, t.path), 0);
	cr_assert_eq(c->clk.ms, ahead);
	cr_assert_eq(c->clk.counter, 8, "the clock after the write was saved with it");
	cr_assert_eq(sr_client_put(c, "content_identity", CONTENT, "{\"v\":2}"), 0, "%s", sr_client_errmsg(c));
	hlc_of(c, "content_identity", CONTENT, h2);
	cr_assert_gt(sr_hlc_cmp(h2, h1), 0, "%s not after %s", h2, h1);
	sr_client_free(c);
	tmpstore_remove(&t);
}

/* Two handles on one store (two processes, in life): each write takes the stored clock when it
 * is ahead, so neither stamps what the other already used. */
Test(hlc, two_handles_on_one_store_never_stamp_alike)
{
	struct tmpstore t;
	struct store *st;
	sr_client *c1, *c2;
	char err[256], h1[SR_HLC_LEN + 1], h2[SR_HLC_LEN + 1];
	uint64_t ahead = hlc_wall_ms() + 100000;

	tmpstore_make(&t);
	cr_assert_eq(store_open(&st, t.path, err, sizeof err), 0, "%s", err);
	cr_assert_eq(store_meta_set(st, "device_id", DEV_A), 0);
	cr_assert_eq(store_meta_set(st, "token", "device-token"), 0);
	cr_assert_eq(store_meta_set(st, "schema_models", MODELS), 0);
	/* a clock ahead of the wall, as after receiving from a fast device: ticks only count */
	cr_assert_eq(store_meta_set_int(st, "hlc_ms", (int64_t)ahead), 0);
	cr_assert_eq(store_meta_set_int(st, "hlc_counter", 5), 0);
	store_close(st);
	cr_assert_eq(sr_client_open(&c1, t.path), 0);
	cr_assert_eq(sr_client_open(&c2, t.path), 0);
	cr_assert_eq(sr_client_put(c2, "content_identity", CONTENT, "{\"by\":2}"), 0, "%s", sr_client_errmsg(c2));
	cr_assert_eq(sr_client_put(c1, "content_identity", OTHER, "{\"by\":1}"), 0, "%s", sr_client_errmsg(c1));
	hlc_of(c2, "content_identity", CONTENT, h2);
	hlc_of(c1, "content_identity", OTHER, h1);
	cr_assert_gt(sr_hlc_cmp(h1, h2), 0, "the second handle stamped %s, not after the first's %s", h1, h2);
	sr_client_free(c1);
	sr_client_free(c2);
	tmpstore_remove(&t);
}

Test(hlc, local_writes_are_stamped_in_order_and_queued_with_their_hlc)
{
	struct tmpstore t;
	struct store *st;
	sr_client *c;
	char err[256], prev[SR_HLC_LEN + 1] = "", h[SR_HLC_LEN + 1], id[SR_UUID_LEN + 1];
	sr_change ch[64];
	int i, n = 0;
	int64_t ids[64];

	tmpstore_make(&t);
	cr_assert_eq(store_open(&st, t.path, err, sizeof err), 0, "%s", err);
	cr_assert_eq(store_meta_set(st, "device_id", DEV_A), 0);
	cr_assert_eq(store_meta_set(st, "token", "device-token"), 0);
	cr_assert_eq(store_meta_set(st, "schema_models", MODELS), 0);
	store_close(st);
	cr_assert_eq(sr_client_open(&c, t.path), 0);
	for (i = 0; i < 50; i++) {
		snprintf(id, sizeof id, "55555555-5555-4555-8555-%012d", i);
		cr_assert_eq(sr_client_put(c, "entry", id, "{\"n\":1}"), 0, "%s", sr_client_errmsg(c));
		hlc_of(c, "entry", id, h);
		cr_assert_gt(sr_hlc_cmp(h, prev), 0, "write %d: %s not after %s", i, h, prev);
		memcpy(prev, h, sizeof prev);
	}
	cr_assert_eq(store_outbox_count(c->st), 50);
	cr_assert_eq(store_outbox_peek(c->st, 64, ch, ids, &n), 0);
	cr_assert_eq(n, 50);
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof id, "55555555-5555-4555-8555-%012d", i);
		hlc_of(c, "entry", id, h);
		cr_assert_str_eq(ch[i].hlc, h, "outbox change %d carries the record's HLC", i);
		cr_assert_str_eq(ch[i].data, "{\"n\":1}");
		sr_change_clear(&ch[i]);
	}
	/* a model the schema lacks is refused and leaves nothing behind */
	cr_assert_eq(sr_client_put(c, "tag", OTHER, "{}"), SR_EUNKNOWNMODEL);
	cr_assert_eq(store_outbox_count(c->st), 50);
	sr_client_free(c);
	tmpstore_remove(&t);
}

/* ---- last-writer-wins apply ---- */

Test(apply, newer_hlc_replaces_older_does_not)
{
	sr_client *c = mem_client();
	char h1[SR_HLC_LEN + 1], h2[SR_HLC_LEN + 1], h0[SR_HLC_LEN + 1];
	struct srec r;

	hlc_text(h0, 1000, 0, DEV_B);
	hlc_text(h1, 2000, 0, DEV_A);
	hlc_text(h2, 2000, 1, DEV_A);
	cr_assert_eq(apply(c, "content_identity", CONTENT, "", h1, "{\"v\":1}", 0), 1, "a new record is applied");
	cr_assert_eq(apply(c, "content_identity", CONTENT, "", h2, "{\"v\":2}", 0), 1, "newer HLC replaces");
	cr_assert_eq(row(c, "content_identity", CONTENT, &r), 1);
	cr_assert_str_eq(r.data, "{\"v\":2}");
	cr_assert_str_eq(r.hlc, h2, "the received HLC is kept byte for byte");
	srec_clear(&r);
	cr_assert_eq(apply(c, "content_identity", CONTENT, "", h0, "{\"v\":0}", 0), 0, "older HLC is kept out");
	cr_assert_eq(apply(c, "content_identity", CONTENT, "", h1, "{\"v\":1}", 0), 0, "older HLC is kept out");
	cr_assert_eq(row(c, "content_identity", CONTENT, &r), 1);
	cr_assert_str_eq(r.data, "{\"v\":2}");
	cr_assert_str_eq(r.hlc, h2);
	srec_clear(&r);
	sr_client_free(c);
}

Test(apply, equal_hlc_replaces_only_when_forced)
{
	sr_client *c = mem_client();
	char h[SR_HLC_LEN + 1];
	struct srec r;

	hlc_text(h, 3000, 2, DEV_B);
	cr_assert_eq(apply(c, "content_identity", CONTENT, "", h, "{\"v\":\"relay\"}", 0), 1);
	cr_assert_eq(apply(c, "content_identity", CONTENT, "", h, "{\"v\":\"other\"}", 0), 0,
		     "an equal HLC does not replace (re-pulls are no-ops)");
	cr_assert_eq(row(c, "content_identity", CONTENT, &r), 1);
	cr_assert_str_eq(r.data, "{\"v\":\"relay\"}");
	srec_clear(&r);
	/* repair: the relay's copy wins over a damaged one with the same version */
	cr_assert_eq(apply(c, "content_identity", CONTENT, "", h, "{\"v\":\"repaired\"}", 1), 1);
	cr_assert_eq(row(c, "content_identity", CONTENT, &r), 1);
	cr_assert_str_eq(r.data, "{\"v\":\"repaired\"}");
	cr_assert_str_eq(r.hlc, h);
	srec_clear(&r);
	sr_client_free(c);
}

Test(apply, hlc_order_is_bytewise_across_devices)
{
	sr_client *c = mem_client();
	char ha[SR_HLC_LEN + 1], hb[SR_HLC_LEN + 1];
	char *got = NULL;

	/* same ms and counter: the device UUID decides, the same way on every replica */
	hlc_text(ha, 5000, 0, DEV_A);
	hlc_text(hb, 5000, 0, DEV_B);
	cr_assert_lt(sr_hlc_cmp(ha, hb), 0);
	cr_assert_eq(apply(c, "content_identity", CONTENT, "", hb, "{\"w\":\"b\"}", 0), 1);
	cr_assert_eq(apply(c, "content_identity", CONTENT, "", ha, "{\"w\":\"a\"}", 0), 0);
	cr_assert_eq(sr_client_get(c, &got, "content_identity", CONTENT), 0);
	cr_assert_str_eq(got, "{\"w\":\"b\"}");
	free(got);
	sr_client_free(c);
}

Test(apply, tombstones_follow_last_writer_wins)
{
	sr_client *c = mem_client();
	char h1[SR_HLC_LEN + 1], h2[SR_HLC_LEN + 1], h3[SR_HLC_LEN + 1], h4[SR_HLC_LEN + 1];
	char *got = NULL;
	struct srec r;

	hlc_text(h1, 1000, 0, DEV_A);
	hlc_text(h2, 2000, 0, DEV_A);
	hlc_text(h3, 1500, 0, DEV_B);
	hlc_text(h4, 3000, 0, DEV_B);
	cr_assert_eq(apply(c, "entry", PARENT, DEV_A, h1, "{\"name\":\"a\"}", 0), 1);
	cr_assert_eq(apply(c, "entry", PARENT, DEV_A, h2, NULL, 0), 1, "a newer delete applies");
	cr_assert_eq(sr_client_get(c, &got, "entry", PARENT), SR_ENOTFOUND, "a deleted record is not found");
	cr_assert_null(got);
	cr_assert_eq(row(c, "entry", PARENT, &r), 1, "the tombstone is kept");
	cr_assert(r.deleted);
	cr_assert_null(r.data);
	cr_assert_str_eq(r.hlc, h2);
	srec_clear(&r);
	cr_assert_eq(apply(c, "entry", PARENT, DEV_A, h3, "{\"name\":\"late\"}", 0), 0,
		     "an older upsert does not resurrect a deleted record");
	cr_assert_eq(sr_client_get(c, &got, "entry", PARENT), SR_ENOTFOUND);
	cr_assert_eq(apply(c, "entry", PARENT, DEV_A, h4, "{\"name\":\"again\"}", 0), 1, "a newer upsert does");
	cr_assert_eq(sr_client_get(c, &got, "entry", PARENT), 0);
	cr_assert_str_eq(got, "{\"name\":\"again\"}");
	free(got);
	/* a delete arriving before any upsert keeps later, older upserts out */
	cr_assert_eq(apply(c, "entry", OTHER, DEV_A, h2, NULL, 0), 1);
	cr_assert_eq(apply(c, "entry", OTHER, DEV_A, h1, "{\"name\":\"old\"}", 0), 0);
	cr_assert_eq(sr_client_get(c, &got, "entry", OTHER), SR_ENOTFOUND);
	sr_client_free(c);
}

/* ---- pending references ---- */

struct link_event {
	char record_id[SR_UUID_LEN + 1];
	char field[32];
	char target[SR_UUID_LEN + 1];
	int resolved;
};

struct links {
	struct link_event ev[32];
	int n;
};

static void on_link(void *arg, const char *model, const char *record_id, const char *field, const char *target,
		    int resolved)
{
	struct links *l = arg;

	cr_assert_str_eq(model, "entry", "only entries hold references here");
	cr_assert_lt(l->n, 32);
	snprintf(l->ev[l->n].record_id, sizeof l->ev[l->n].record_id, "%s", record_id);
	snprintf(l->ev[l->n].field, sizeof l->ev[l->n].field, "%s", field);
	snprintf(l->ev[l->n].target, sizeof l->ev[l->n].target, "%s", target);
	l->ev[l->n].resolved = resolved;
	l->n++;
}

static int events(const struct links *l, const char *record_id, const char *field, const char *target, int resolved)
{
	int i, n = 0;

	for (i = 0; i < l->n; i++)
		n += !strcmp(l->ev[i].record_id, record_id) && !strcmp(l->ev[i].field, field) &&
		     !strcmp(l->ev[i].target, target) && l->ev[i].resolved == resolved;
	return n;
}

static json_t *status_of(sr_client *c)
{
	char *text = NULL;
	json_t *j;

	cr_assert_eq(sr_client_status(c, &text), 0, "%s", sr_client_errmsg(c));
	j = json_loads(text, 0, NULL);
	cr_assert_not_null(j, "status is not JSON: %s", text);
	free(text);
	return j;
}

static long long ref_fig(const json_t *status, const char *key, const char *what)
{
	return json_integer_value(json_object_get(json_object_get(json_object_get(status, "refs"), key), what));
}

enum { R_PARENT, R_CHILD, R_CONTENT };

static void apply_one(sr_client *c, int which)
{
	char h[SR_HLC_LEN + 1];

	hlc_text(h, 7000 + (uint64_t)which, 0, DEV_A);
	if (which == R_PARENT)
		cr_assert_eq(apply(c, "entry", PARENT, DEV_A, h, "{\"name\":\"dir\"}", 0), 1);
	else if (which == R_CHILD)
		cr_assert_eq(apply(c, "entry", CHILD, DEV_A, h,
				   "{\"content_id\":\"" CONTENT "\",\"name\":\"f.txt\",\"parent_id\":\"" PARENT "\"}", 0),
			     1);
	else
		cr_assert_eq(apply(c, "content_identity", CONTENT, "", h, "{\"hash\":\"abc\"}", 0), 1);
}

Test(refs, every_arrival_order_resolves_each_link_once)
{
	static const int perms[6][3] = {
		{R_PARENT, R_CHILD, R_CONTENT}, {R_PARENT, R_CONTENT, R_CHILD}, {R_CHILD, R_PARENT, R_CONTENT},
		{R_CHILD, R_CONTENT, R_PARENT}, {R_CONTENT, R_PARENT, R_CHILD}, {R_CONTENT, R_CHILD, R_PARENT},
	};
	static const char *const names[3] = {"parent", "child", "content_identity"};
	int p, i;

	for (p = 0; p < 6; p++) {
		sr_client *c = mem_client();
		struct links l = {0};
		int pos[3], parent_late, content_late;
		char order[80];
		json_t *s;

		for (i = 0; i < 3; i++)
			pos[perms[p][i]] = i;
		snprintf(order, sizeof order, "%s, %s, %s", names[perms[p][0]], names[perms[p][1]], names[perms[p][2]]);
		parent_late = pos[R_PARENT] > pos[R_CHILD];
		content_late = pos[R_CONTENT] > pos[R_CHILD];
		sr_client_on_link(c, on_link, &l);

		for (i = 0; i < 3; i++) {
			apply_one(c, perms[p][i]);
			if (perms[p][i] == R_CHILD) {
				/* the child is applied at once, whatever is missing */
				char *got = NULL;

				cr_assert_eq(sr_client_get(c, &got, "entry", CHILD), 0, "[%s] child not applied", order);
				cr_assert(strstr(got, "\"content_id\":\"" CONTENT "\""), "[%s] link dropped: %s", order, got);
				free(got);
				cr_assert_eq(pending_count(c), parent_late + content_late,
					     "[%s] pending right after the child", order);
			}
		}
		cr_assert_eq(pending_count(c), 0, "[%s] pending references remain", order);
		cr_assert_eq(events(&l, CHILD, "parent_id", PARENT, 0), parent_late,
			     "[%s] parent_id reported pending %d times", order, events(&l, CHILD, "parent_id", PARENT, 0));
		cr_assert_eq(events(&l, CHILD, "parent_id", PARENT, 1), parent_late,
			     "[%s] parent_id reported resolved %d times", order, events(&l, CHILD, "parent_id", PARENT, 1));
		cr_assert_eq(events(&l, CHILD, "content_id", CONTENT, 0), content_late,
			     "[%s] content_id reported pending %d times", order,
			     events(&l, CHILD, "content_id", CONTENT, 0));
		cr_assert_eq(events(&l, CHILD, "content_id", CONTENT, 1), content_late,
			     "[%s] content_id reported resolved %d times", order,
			     events(&l, CHILD, "content_id", CONTENT, 1));
		cr_assert_eq(l.n, 2 * (parent_late + content_late), "[%s] %d link events, want %d", order, l.n,
			     2 * (parent_late + content_late));
		/* a pending report always comes before its resolution */
		for (i = 0; i < l.n; i++)
			if (l.ev[i].resolved) {
				int k, seen = 0;
				for (k = 0; k < i; k++)
					seen |= !l.ev[k].resolved && !strcmp(l.ev[k].field, l.ev[i].field);
				cr_assert(seen, "[%s] %s resolved before it was reported pending", order, l.ev[i].field);
			}

		s = status_of(c);
		cr_assert_eq(json_integer_value(json_object_get(s, "unresolved")), 0, "[%s]", order);
		cr_assert_eq(ref_fig(s, "entry.content_id", "set"), 1, "[%s]", order);
		cr_assert_eq(ref_fig(s, "entry.content_id", "unresolved"), 0, "[%s]", order);
		cr_assert_eq(ref_fig(s, "entry.parent_id", "set"), 1, "[%s]", order);
		cr_assert_eq(ref_fig(s, "entry.parent_id", "unresolved"), 0, "[%s]", order);
		json_decref(s);
		sr_client_free(c);
	}
}

Test(refs, status_counts_unresolved_while_targets_are_missing)
{
	sr_client *c = mem_client();
	json_t *s;

	apply_one(c, R_CHILD);
	s = status_of(c);
	cr_assert_eq(json_integer_value(json_object_get(s, "unresolved")), 2);
	cr_assert_eq(ref_fig(s, "entry.content_id", "unresolved"), 1);
	cr_assert_eq(ref_fig(s, "entry.parent_id", "unresolved"), 1);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(s, "records"), "entry")), 1);
	json_decref(s);
	apply_one(c, R_CONTENT);
	s = status_of(c);
	cr_assert_eq(json_integer_value(json_object_get(s, "unresolved")), 1);
	cr_assert_eq(ref_fig(s, "entry.content_id", "unresolved"), 0);
	json_decref(s);
	sr_client_free(c);
}

Test(refs, a_newer_version_replaces_the_pending_links)
{
	sr_client *c = mem_client();
	struct links l = {0};
	char h1[SR_HLC_LEN + 1], h2[SR_HLC_LEN + 1], h3[SR_HLC_LEN + 1], hp[SR_HLC_LEN + 1];

	sr_client_on_link(c, on_link, &l);
	hlc_text(h1, 1000, 0, DEV_A);
	hlc_text(h2, 2000, 0, DEV_A);
	hlc_text(h3, 500, 0, DEV_A);
	hlc_text(hp, 100, 0, DEV_A);
	cr_assert_eq(apply(c, "entry", CHILD, DEV_A, h1, "{\"parent_id\":\"" PARENT "\"}", 0), 1);
	cr_assert_eq(pending_count(c), 1);
	/* moved to another parent, also missing: only the new link waits */
	cr_assert_eq(apply(c, "entry", CHILD, DEV_A, h2, "{\"parent_id\":\"" OTHER "\"}", 0), 1);
	cr_assert_eq(pending_count(c), 1);
	/* an older version arriving late changes nothing, not even the pending links */
	cr_assert_eq(apply(c, "entry", CHILD, DEV_A, h3, "{\"parent_id\":\"" PARENT "\"}", 0), 0);
	cr_assert_eq(pending_count(c), 1);
	cr_assert_eq(apply(c, "entry", PARENT, DEV_A, hp, "{\"name\":\"old parent\"}", 0), 1);
	cr_assert_eq(events(&l, CHILD, "parent_id", PARENT, 1), 0, "a link the child no longer holds resolved");
	cr_assert_eq(pending_count(c), 1);
	cr_assert_eq(apply(c, "entry", OTHER, DEV_A, hp, "{\"name\":\"new parent\"}", 0), 1);
	cr_assert_eq(events(&l, CHILD, "parent_id", OTHER, 1), 1);
	cr_assert_eq(pending_count(c), 0);
	sr_client_free(c);
}

Test(refs, a_deleted_record_leaves_no_pending_link)
{
	sr_client *c = mem_client();
	struct links l = {0};
	char h1[SR_HLC_LEN + 1], h2[SR_HLC_LEN + 1];

	sr_client_on_link(c, on_link, &l);
	hlc_text(h1, 1000, 0, DEV_A);
	hlc_text(h2, 2000, 0, DEV_A);
	cr_assert_eq(apply(c, "entry", CHILD, DEV_A, h1, "{\"content_id\":\"" CONTENT "\"}", 0), 1);
	cr_assert_eq(pending_count(c), 1);
	cr_assert_eq(apply(c, "entry", CHILD, DEV_A, h2, NULL, 0), 1);
	cr_assert_eq(pending_count(c), 0, "a tombstone holds no references");
	apply_one(c, R_CONTENT);
	cr_assert_eq(events(&l, CHILD, "content_id", CONTENT, 1), 0, "a deleted record's link resolved");
	sr_client_free(c);
}

/* ---- digest arithmetic ---- */

/* FNV-1a 64, written here independently of the codec */
static uint64_t fnv_ref(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static const struct {
	const char *id, *hlc, *data, *hash;
	unsigned bucket;
} vec[3] = {
	/* expected values computed outside this code base (Python) */
	{"11111111-1111-4111-8111-111111111111", "0000018f2b3c4d5e-0000000000000000-" DEV_A,
	 "{\"name\":\"a.txt\",\"size\":1}", "5759fa9f3de1fd35", 35},
	{"22222222-2222-4222-8222-222222222222", "0000018f2b3c4d5e-0000000000000001-" DEV_A,
	 "{\"name\":\"b.txt\",\"parent_id\":\"11111111-1111-4111-8111-111111111111\"}", "6d9f45f311797d37", 1},
	{"33333333-3333-4333-8333-333333333333", "0000018f2b3c4d5f-0000000000000000-" DEV_A,
	 "{\"name\":\"caf\xc3\xa9\",\"size\":3.5}", "d98c47bc75a45e68", 43},
};
#define VEC_XOR "e34af8d0593cde6a"

Test(digest, fnv1a64_known_vectors)
{
	cr_assert_eq(sr_fnv1a64("", 0), 0xcbf29ce484222325ULL);
	cr_assert_eq(sr_fnv1a64("a", 1), 0xaf63dc4c8601ec8cULL);
	cr_assert_eq(sr_fnv1a64("foobar", 6), 0x85944171f73967e8ULL);
	cr_assert_eq(fnv_ref("foobar", 6), 0x85944171f73967e8ULL);
}

Test(digest, record_hash_bucket_and_scope_xor)
{
	uint64_t x = 0, xref = 0;
	char hex[17], cat[512];
	int i;

	for (i = 0; i < 3; i++) {
		uint64_t h = sr_record_hash("entry", vec[i].id, vec[i].hlc, vec[i].data);
		int n = snprintf(cat, sizeof cat, "entry\n%s\n%s\n%s", vec[i].id, vec[i].hlc, vec[i].data);

		sr_hash_hex(hex, h);
		cr_assert_str_eq(hex, vec[i].hash, "record_hash of %s", vec[i].id);
		cr_assert_eq(h, sr_fnv1a64(cat, (size_t)n), "record_hash is fnv1a64 over the joined text");
		cr_assert_eq(h, fnv_ref(cat, (size_t)n));
		cr_assert_eq(sr_bucket(vec[i].id), vec[i].bucket, "bucket of %s", vec[i].id);
		cr_assert_eq(sr_bucket(vec[i].id), fnv_ref(vec[i].id, strlen(vec[i].id)) % 256);
		x ^= h;
		xref ^= fnv_ref(cat, (size_t)n);
	}
	sr_hash_hex(hex, x);
	cr_assert_str_eq(hex, VEC_XOR, "scope hash = XOR of record hashes");
	cr_assert_eq(x, xref);
	/* the aggregate is kept incrementally: removing a record XORs it out again */
	x ^= sr_record_hash("entry", vec[1].id, vec[1].hlc, vec[1].data);
	cr_assert_eq(x, sr_record_hash("entry", vec[0].id, vec[0].hlc, vec[0].data) ^
			       sr_record_hash("entry", vec[2].id, vec[2].hlc, vec[2].data));
	/* the empty scope */
	sr_hash_hex(hex, 0);
	cr_assert_str_eq(hex, "0000000000000000");
}

/* The digest of one scope as verify computes it from the replica's rows: live records only. */
struct scope_sum {
	long long count;
	uint64_t hash;
	uint64_t bucket[SR_BUCKETS];
};

static int sum_row(void *arg, const struct srec *r)
{
	struct scope_sum *s = arg;
	uint64_t h;

	if (r->deleted)
		return 0;
	h = sr_record_hash(r->model, r->record_id, r->hlc, r->data);
	s->count++;
	s->hash ^= h;
	s->bucket[sr_bucket(r->record_id)] ^= h;
	return 0;
}

Test(digest, replica_rows_give_the_known_digest)
{
	sr_client *c = mem_client();
	struct scope_sum s = {0};
	char hex[17], h[SR_HLC_LEN + 1];
	json_t *d;
	char *canon;
	int i;

	/* data as it arrives over the wire (any key order): stored as its canonical text */
	d = json_loads("{\"size\":3.5,\"name\":\"caf\xc3\xa9\"}", 0, NULL);
	canon = sr_canonical(d);
	cr_assert_str_eq(canon, vec[2].data);
	free(canon);
	json_decref(d);
	for (i = 0; i < 3; i++)
		cr_assert_eq(apply(c, "entry", vec[i].id, DEV_A, vec[i].hlc, vec[i].data, 0), 1);
	/* a tombstone does not count */
	hlc_text(h, 1, 0, DEV_A);
	cr_assert_eq(apply(c, "entry", OTHER, DEV_A, h, NULL, 0), 1);
	cr_assert_eq(store_records_each(c->st, "entry", DEV_A, -1, sum_row, &s), 0);
	sr_hash_hex(hex, s.hash);
	cr_assert_eq(s.count, 3);
	cr_assert_str_eq(hex, VEC_XOR);
	cr_assert_eq(s.bucket[35], 0x5759fa9f3de1fd35ULL);
	cr_assert_eq(s.bucket[1], 0x6d9f45f311797d37ULL);
	cr_assert_eq(s.bucket[43], 0xd98c47bc75a45e68ULL);
	/* one bucket alone, as repair walks it */
	memset(&s, 0, sizeof s);
	cr_assert_eq(store_records_each(c->st, "entry", DEV_A, 43, sum_row, &s), 0);
	cr_assert_eq(s.count, 1);
	cr_assert_eq(s.hash, 0xd98c47bc75a45e68ULL);
	sr_client_free(c);
}

/* ---- rejected changes: kept until the user retries or drops them ---- */

static long outbox_n(sr_client *c)
{
	return (long)store_outbox_count(c->st);
}

Test(rejected, a_refused_change_moves_aside_and_back_only_on_request)
{
	sr_client *c = mem_client();
	char h1[SR_HLC_LEN + 1], h2[SR_HLC_LEN + 1];
	sr_change ch[4];
	int64_t ids[4];
	int n, k;
	struct srec r;

	hlc_text(h1, 1000, 0, DEV_A);
	hlc_text(h2, 1001, 0, DEV_A);
	apply(c, "entry", CHILD, DEV_A, h1, "{\"v\":1}", 0);
	cr_assert_eq(store_outbox_add(c->st, h1, "entry", CHILD, 0, "{\"v\":1}"), 0);
	cr_assert_eq(store_outbox_add(c->st, h2, "entry", PARENT, 0, "{\"v\":2}"), 0);
	cr_assert_eq(store_outbox_peek(c->st, 4, ch, ids, &n), 0);
	cr_assert_eq(n, 2);
	for (k = 0; k < n; k++)
		sr_change_clear(&ch[k]);
	cr_assert_eq(store_outbox_reject(c->st, ids[0], 409, "not-owner", "owned by another device"), 0);
	cr_assert_eq(outbox_n(c), 1);
	cr_assert_eq(store_rejected_count(c->st), 1);
	cr_assert_eq(store_rejected_has(c->st, "entry", h1), 1);
	cr_assert_eq(store_rejected_has(c->st, "entry", h2), 0);
	/* retry: back at the end of the outbox, out of rejected */
	cr_assert_eq(store_rejected_retry(c->st, 0, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(outbox_n(c), 2);
	cr_assert_eq(store_rejected_count(c->st), 0);
	cr_assert_eq(store_outbox_peek(c->st, 4, ch, ids, &n), 0);
	cr_assert_str_eq(ch[1].hlc, h1, "a retried change goes to the end of the outbox");
	for (k = 0; k < n; k++)
		sr_change_clear(&ch[k]);
	/* drop: the replica row still showing the dropped change gives way */
	cr_assert_eq(store_outbox_reject(c->st, ids[1], 409, "not-owner", "again"), 0);
	cr_assert_eq(store_rejected_drop(c->st, 7777, &n), 0);
	cr_assert_eq(n, 0, "dropping an unknown id dropped %d", n);
	cr_assert_eq(store_rejected_drop(c->st, 0, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(store_rejected_count(c->st), 0);
	cr_assert_eq(row(c, "entry", CHILD, &r), 0, "the row showing the dropped change is still there");
	sr_client_free(c);
}

Test(rejected, own_hlc_names_this_device_only)
{
	sr_client *c = mem_client();
	char h[SR_HLC_LEN + 1];

	snprintf(c->device, sizeof c->device, "%s", DEV_A);
	hlc_text(h, 5, 0, DEV_A);
	cr_assert(client_own_hlc(c, h));
	hlc_text(h, 5, 0, DEV_B);
	cr_assert(!client_own_hlc(c, h));
	cr_assert(!client_own_hlc(c, "short"));
	sr_client_free(c);
}
