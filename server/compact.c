/* Compaction: retention of the change log and the tombstones, in small windows. See compact.h. */
#include "compact.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "db.h"
#include "library.h"
#include "log.h"

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t th;
	int started, stop;
	char *conninfo;
	uint64_t removed, purged, passes, skipped;
	int64_t lag;          /* largest head - horizon over the libraries of the last pass */
	uint64_t last_pass_us; /* duration of the last completed pass */
	/* the longest horizon update (retries included) and window removal */
	uint64_t mark_max_us, delete_max_us;
} cs = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int stopping(void)
{
	return __atomic_load_n(&cs.stop, __ATOMIC_RELAXED);
}

static int is_true(const PGresult *res, int row, int col)
{
	return PQgetvalue(res, row, col)[0] == 't';
}

static double mono(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void note_max(uint64_t *slot, double seconds)
{
	uint64_t v = (uint64_t)(seconds * 1e6), cur = __atomic_load_n(slot, __ATOMIC_RELAXED);

	while (v > cur && !__atomic_compare_exchange_n(slot, &cur, v, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* The lowest HLC above h (counter + 1, nil device): purged_before for a tombstone at h. */
static int hlc_above(char out[SR_HLC_LEN + 1], const char *h)
{
	sr_hlc v;

	if (sr_hlc_parse(&v, h, strlen(h)))
		return -1;
	if (v.counter == UINT64_MAX) {
		v.ms++;
		v.counter = 0;
	} else {
		v.counter++;
	}
	snprintf(v.device, sizeof v.device, "00000000-0000-0000-0000-000000000000");
	sr_hlc_format(out, &v);
	return 0;
}

/* What the scan of one batch found: the windows holding something to remove, the highest
 * seq removed (and its HLC), the highest tombstone HLC purged. */
struct batch {
	long long after[COMPACT_BATCH], upto[COMPACT_BATCH];
	int nwin;
	long long top, ncand, ntomb;
	char top_hlc[SR_HLC_LEN + 1], top_tomb[SR_HLC_LEN + 1];
};

/* Scans one window after seq *after into b. 1 when the log goes on past it with old
 * changes, 0 when the walk is over, -1 with out filled. */
static int scan_window(PGconn *c, const char *lib, const char *cutoff, long long *after, struct batch *b,
		       struct reply *out)
{
	char s_after[24], s_limit[24];
	PGresult *scan;
	long long upto = 0;
	int i, n, young = 0;

	snprintf(s_after, sizeof s_after, "%lld", *after);
	snprintf(s_limit, sizeof s_limit, "%d", COMPACT_WINDOW);
	{
		const char *p[4] = {lib, s_after, cutoff, s_limit};
		if (!(scan = db_step(c, ST_COMPACT_SCAN, p, out)))
			return -1;
	}
	n = PQntuples(scan);
	for (i = 0; i < n; i++) {
		int old = is_true(scan, i, 2), sup = is_true(scan, i, 3), tomb = is_true(scan, i, 4);
		const char *hlc = PQgetvalue(scan, i, 1);

		if (!old) {
			young = 1;
			continue;
		}
		if (!sup && !tomb)
			continue;
		b->ncand++;
		upto = atoll(PQgetvalue(scan, i, 0));
		snprintf(b->top_hlc, sizeof b->top_hlc, "%s", hlc);
		if (tomb) {
			b->ntomb++;
			if (strcmp(hlc, b->top_tomb) > 0)
				snprintf(b->top_tomb, sizeof b->top_tomb, "%s", hlc);
		}
	}
	if (upto) {
		b->after[b->nwin] = *after;
		b->upto[b->nwin++] = upto;
		b->top = upto;
	}
	if (n)
		*after = atoll(PQgetvalue(scan, n - 1, 0));
	PQclear(scan);
	return n == COMPACT_WINDOW && !young;
}

/* Moves horizon and purged_before (b's top seq and tombstone). It never queues for the library
 * row behind pushes (pushes would then queue behind it): while a push holds the row it tries
 * again a millisecond later, and only after COMPACT_MARK_PATIENCE_S it waits its turn. */
static int mark(PGconn *c, const char *lib, const struct batch *b, struct reply *out)
{
	char s_top[24], purge[SR_HLC_LEN + 1];
	const char *p[4] = {lib, s_top, b->top_hlc, purge};
	double t0 = mono(), t1;
	PGresult *r;
	int done = 0;

	if (!b->top_tomb[0])
		p[3] = NULL;
	else if (hlc_above(purge, b->top_tomb)) {
		reply_problem(out, 500, "internal", "the log holds an unreadable HLC \"%s\"", b->top_tomb);
		return -1;
	}
	snprintf(s_top, sizeof s_top, "%lld", b->top);
	while (!done) {
		int patient = mono() - t0 < COMPACT_MARK_PATIENCE_S;

		if (!(r = db_step(c, patient ? ST_COMPACT_MARK : ST_COMPACT_MARK_WAIT, p, out)))
			return -1;
		done = PQntuples(r) == 1;
		PQclear(r);
		if (!done) {
			struct timespec ms = {0, 1000000};

			if (!patient) {
				reply_problem(out, 404, "library-not-found", "library %s does not exist", lib);
				return -1;
			}
			nanosleep(&ms, NULL);
		}
	}
	t1 = mono();
	note_max(&cs.mark_max_us, t1 - t0);
	log_debug("library %s: compaction horizon %lld%s%s in %.3f ms", lib, b->top, p[3] ? ", purged_before " : "",
		  p[3] ? p[3] : "", (t1 - t0) * 1e3);
	return 0;
}

/* One batch: up to COMPACT_BATCH windows scanned, one mark, one removal per window. Returns 1
 * when the walk goes on, 0 when it is over, -1 with out filled. */
static int compact_batch(PGconn *c, const char *lib, const char *cutoff, int dry_run, long long *after,
			 struct compact_result *res, struct reply *out)
{
	struct batch b;
	int more = 1, w;

	memset(&b, 0, sizeof b);
	while (more > 0 && b.nwin < COMPACT_BATCH && !stopping())
		more = scan_window(c, lib, cutoff, after, &b, out);
	if (more < 0)
		return -1;
	if (dry_run || !b.nwin) {
		res->changes_removed += dry_run ? b.ncand : 0;
		res->tombstones_purged += dry_run ? b.ntomb : 0;
		return more;
	}
	if (mark(c, lib, &b, out))
		return -1;
	for (w = 0; w < b.nwin; w++) {
		char s_after[24], s_upto[24];
		const char *p[4] = {lib, s_after, s_upto, cutoff};
		double t0 = mono();
		long long removed, purged;
		PGresult *r;

		snprintf(s_after, sizeof s_after, "%lld", b.after[w]);
		snprintf(s_upto, sizeof s_upto, "%lld", b.upto[w]);
		if (!(r = db_step(c, ST_COMPACT_DELETE, p, out)))
			return -1;
		removed = atoll(PQgetvalue(r, 0, 0));
		purged = atoll(PQgetvalue(r, 0, 1));
		PQclear(r);
		note_max(&cs.delete_max_us, mono() - t0);
		log_debug("library %s: compaction window (%s, %s]: removed %lld changes, purged %lld tombstones"
			  " in %.3f ms", lib, s_after, s_upto, removed, purged, (mono() - t0) * 1e3);
		res->changes_removed += removed;
		res->tombstones_purged += purged;
		__atomic_add_fetch(&cs.removed, (uint64_t)removed, __ATOMIC_RELAXED);
		__atomic_add_fetch(&cs.purged, (uint64_t)purged, __ATOMIC_RELAXED);
	}
	return more;
}

int compact_library(PGconn *c, const char *lib, long long retention_s, int dry_run,
		    struct compact_result *res, struct reply *out)
{
	const char *p[1] = {lib};
	char cutoff[64], secs[24];
	struct library l = {0};
	PGresult *r = NULL;
	long long after = 0;
	int locked = 0, rc = -1, more;

	memset(res, 0, sizeof *res);
	if (!(r = db_step(c, ST_COMPACT_LOCK, p, out)))
		goto cleanup;
	locked = is_true(r, 0, 0);
	PQclear(r);
	r = NULL;
	if (!locked) {
		reply_problem(out, 409, "compaction-running",
			      "library %s is being compacted already (by this or another relay); retry later", lib);
		goto cleanup;
	}
	if (library_load(c, lib, 0, &l, out))
		goto cleanup;
	if (retention_s > 0) {
		const char *pc[1] = {secs};

		snprintf(secs, sizeof secs, "%lld", retention_s);
		if (!(r = db_step(c, ST_COMPACT_CUTOFF, pc, out)))
			goto cleanup;
		snprintf(cutoff, sizeof cutoff, "%s", PQgetvalue(r, 0, 0));
		PQclear(r);
		r = NULL;
		do
			more = compact_batch(c, lib, cutoff, dry_run, &after, res, out);
		while (more > 0 && !stopping());
		if (more < 0)
			goto cleanup;
		library_free(&l);
		if (library_load(c, lib, 0, &l, out))
			goto cleanup;
	}
	res->horizon = l.horizon;
	res->head = l.head;
	if (res->changes_removed || res->tombstones_purged)
		log_info("library %s: compaction%s removed %lld changes and purged %lld tombstones"
			 " (retention %lld s); horizon %lld, head %lld", lib, dry_run ? " (dry run)" : "",
			 res->changes_removed, res->tombstones_purged, retention_s, res->horizon, res->head);
	rc = 0;
cleanup:
	if (locked) {
		PQclear(db_exec(c, ST_COMPACT_UNLOCK, p));
	}
	PQclear(r);
	library_free(&l);
	return rc;
}

/* ---- the background pass ---- */

/* One pass over every library, when this relay gets the pass lock. */
static void compact_pass(PGconn *c)
{
	struct reply rep = {0};
	PGresult *r, *libs = NULL;
	double t0 = mono();
	int64_t lag = 0;
	int i;

	r = db_exec(c, ST_COMPACT_PASS_LOCK, NULL);
	if (!db_ok(r) || !is_true(r, 0, 0)) {
		if (db_ok(r))
			__atomic_add_fetch(&cs.skipped, 1, __ATOMIC_RELAXED);
		else
			log_warn("compaction: could not take the pass lock: %s", PQerrorMessage(c));
		PQclear(r);
		return;
	}
	PQclear(r);
	if (!(libs = db_step(c, ST_COMPACT_LIBS, NULL, &rep)))
		goto cleanup;
	for (i = 0; i < PQntuples(libs) && !stopping(); i++) {
		struct compact_result res;

		if (compact_library(c, PQgetvalue(libs, i, 0), cfg.retention_s, 0, &res, &rep) == 0) {
			if (res.head - res.horizon > lag)
				lag = res.head - res.horizon;
		} else if (rep.status != 409) {
			log_warn("compaction of library %s failed: %.*s", PQgetvalue(libs, i, 0), (int)rep.len,
				 rep.body ? rep.body : "");
		}
		free(rep.body);
		memset(&rep, 0, sizeof rep);
	}
	__atomic_store_n(&cs.lag, lag, __ATOMIC_RELAXED);
	__atomic_add_fetch(&cs.passes, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&cs.last_pass_us, (uint64_t)((mono() - t0) * 1e6), __ATOMIC_RELAXED);
cleanup:
	if (rep.body)
		log_warn("compaction pass failed: %.*s", (int)rep.len, rep.body);
	free(rep.body);
	PQclear(libs);
	PQclear(db_exec(c, ST_COMPACT_PASS_UNLOCK, NULL));
}

static void *compact_main(void *arg)
{
	PGconn *c = NULL;
	struct timespec until;

	(void)arg;
	pthread_mutex_lock(&cs.lock);
	while (!cs.stop) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += cfg.compact_interval_s;
		while (!cs.stop && pthread_cond_timedwait(&cs.cond, &cs.lock, &until) == 0)
			;
		if (cs.stop)
			break;
		pthread_mutex_unlock(&cs.lock);
		if (c && PQstatus(c) != CONNECTION_OK) {
			PQfinish(c);
			c = NULL;
		}
		if (!c)
			c = db_connect_prepared(cs.conninfo);
		if (c && cfg.retention_s > 0)
			compact_pass(c);
		pthread_mutex_lock(&cs.lock);
	}
	pthread_mutex_unlock(&cs.lock);
	PQfinish(c);
	return NULL;
}

int compact_start(const char *conninfo)
{
	pthread_condattr_t ca;

	cs.conninfo = strdup(conninfo);
	if (!cs.conninfo)
		return -1;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cs.cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&cs.th, NULL, compact_main, NULL))
		return -1;
	cs.started = 1;
	return 0;
}

void compact_stop(void)
{
	if (!cs.started)
		return;
	pthread_mutex_lock(&cs.lock);
	__atomic_store_n(&cs.stop, 1, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&cs.cond);
	pthread_mutex_unlock(&cs.lock);
	pthread_join(cs.th, NULL);
	cs.started = 0;
	free(cs.conninfo);
	cs.conninfo = NULL;
}

void compact_metrics(sr_buf *b)
{
	sr_buf_printf(b,
		      "# HELP syncrelay_compaction_changes_removed_total Changes removed from the log by compaction.\n"
		      "# TYPE syncrelay_compaction_changes_removed_total counter\n"
		      "syncrelay_compaction_changes_removed_total %llu\n"
		      "# HELP syncrelay_compaction_tombstones_purged_total Tombstones purged from records by compaction.\n"
		      "# TYPE syncrelay_compaction_tombstones_purged_total counter\n"
		      "syncrelay_compaction_tombstones_purged_total %llu\n"
		      "# HELP syncrelay_compaction_passes_total Background compaction passes this relay ran.\n"
		      "# TYPE syncrelay_compaction_passes_total counter\nsyncrelay_compaction_passes_total %llu\n"
		      "# HELP syncrelay_compaction_passes_skipped_total Passes left to another relay holding the lock.\n"
		      "# TYPE syncrelay_compaction_passes_skipped_total counter\n"
		      "syncrelay_compaction_passes_skipped_total %llu\n"
		      "# HELP syncrelay_compaction_horizon_lag Largest head - horizon (seqs still served from the log)"
		      " over the libraries of the last pass.\n"
		      "# TYPE syncrelay_compaction_horizon_lag gauge\nsyncrelay_compaction_horizon_lag %lld\n"
		      "# HELP syncrelay_compaction_last_pass_seconds Duration of the last background pass.\n"
		      "# TYPE syncrelay_compaction_last_pass_seconds gauge\nsyncrelay_compaction_last_pass_seconds %.6f\n"
		      "# HELP syncrelay_compaction_mark_seconds_max Longest horizon update, its retries for a free library row included.\n"
		      "# TYPE syncrelay_compaction_mark_seconds_max gauge\nsyncrelay_compaction_mark_seconds_max %.6f\n"
		      "# HELP syncrelay_compaction_delete_seconds_max Longest window removal (it holds the rows of the tombstones it purges).\n"
		      "# TYPE syncrelay_compaction_delete_seconds_max gauge\nsyncrelay_compaction_delete_seconds_max %.6f\n",
		      (unsigned long long)__atomic_load_n(&cs.removed, __ATOMIC_RELAXED),
		      (unsigned long long)__atomic_load_n(&cs.purged, __ATOMIC_RELAXED),
		      (unsigned long long)__atomic_load_n(&cs.passes, __ATOMIC_RELAXED),
		      (unsigned long long)__atomic_load_n(&cs.skipped, __ATOMIC_RELAXED),
		      (long long)__atomic_load_n(&cs.lag, __ATOMIC_RELAXED),
		      (double)__atomic_load_n(&cs.last_pass_us, __ATOMIC_RELAXED) / 1e6,
		      (double)__atomic_load_n(&cs.mark_max_us, __ATOMIC_RELAXED) / 1e6,
		      (double)__atomic_load_n(&cs.delete_max_us, __ATOMIC_RELAXED) / 1e6);
}
