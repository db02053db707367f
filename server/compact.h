/*
 * Compaction: the change log and the tombstones stop growing without bound.
 *
 * Age is the time the relay accepted a change (changes.accepted_at), so a device offline for
 * less than the retention always catches up from the log. Compaction walks a library's log
 * by seq in windows of COMPACT_WINDOW changes. In each window it removes the changes older
 * than the retention that no longer carry their record's current version (superseded by a
 * newer HLC, or left by a record purged earlier), and purges the tombstones older than the
 * retention from records together with their own change. Digests do not move: tombstones
 * are not in them and live records stay. Each run walks from the start of the log to the
 * first change younger than the retention, so it costs about one read per live record.
 *
 * A batch of up to COMPACT_BATCH windows is a few autocommit statements, none of which
 * waits on a push or makes a push wait for more than a single-row update:
 *   1. scan: a read of each window (no locks);
 *   2. mark: one UPDATE of the library row moves horizon up to the highest seq to be
 *      removed (horizon_hlc = that change's HLC, read in 1) and purged_before above the
 *      highest tombstone HLC to be purged. It takes the row with SKIP LOCKED and tries again
 *      a millisecond later while a push holds it, so it never joins the queue of pushes (a
 *      push behind it would wait for the push ahead of it too); after
 *      COMPACT_MARK_PATIENCE_S of a row never free it waits its turn once;
 *   3. delete, per window: removes what 1 found, bounded by the horizon and purge point now
 *      committed (so the contract holds even if a push changed a record between 1 and 3); a
 *      record row that a push holds is skipped (SKIP LOCKED), left for the next pass. The
 *      rows it takes are tombstones older than the retention, which pushes rarely touch.
 * The contract with pulls and clients: every change with seq > horizon is still in the log,
 * and every purged tombstone has hlc < purged_before; both are committed before anything
 * they cover is removed, and only ever move up. A pull that reads the horizon and the
 * changes in one snapshot is therefore always exact, and so is a device that reads
 * purged_before after the last records page it compares with.
 *
 * One relay compacts at a time: a background pass holds a session advisory lock, and each
 * library is compacted under a lock of its own (so an operator's POST .../compact and a
 * background pass never run on one library at once).
 */
#ifndef SR_COMPACT_H
#define SR_COMPACT_H

#include <libpq-fe.h>

#include "http.h"
#include "syncrelay_codec.h"

#define COMPACT_WINDOW 500        /* changes read per window */
#define COMPACT_BATCH 10          /* windows per horizon update */
#define COMPACT_MARK_PATIENCE_S 5 /* how long the horizon update waits for a free library row */

struct compact_result {
	long long changes_removed;   /* changes removed from the log (counted only, dry_run) */
	long long tombstones_purged; /* tombstones purged from records */
	long long horizon, head;     /* the library's after the run */
};

/* Compacts library lib now on c (an idle connection with the statements prepared), removing
 * what is older than retention_s seconds (0: nothing); dry_run only counts. 0, or -1 with out
 * filled: 404 library-not-found, 409 compaction-running (another relay or request holds this
 * library), database problems. */
int compact_library(PGconn *c, const char *lib, long long retention_s, int dry_run,
		    struct compact_result *res, struct reply *out);

/* The background thread: a pass over every library each cfg.compact_interval_s seconds,
 * on one relay at a time. compact_stop() ends it (the window in progress finishes). */
int compact_start(const char *conninfo);
void compact_stop(void);

/* Appends the compaction metrics to a /metrics text. */
void compact_metrics(sr_buf *b);

#endif
