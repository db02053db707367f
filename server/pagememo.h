/*
 * Shared pull pages. One push wakes every poll held on its library, and each woken poll
 * would read the same page (same cursor, same limit) in its own snapshot: 10,000 polls made
 * 10,000 identical queries and took seconds to answer. The first reader of a page keeps its
 * rows here; the others take them.
 *
 * A kept page is as good as a fresh read when the library's wake generation (longpoll.h) has
 * not moved since its reader read that generation, before its snapshot began: every change
 * notified by then is in it, and the log below head never changes. It is only taken while
 * the LISTEN connection is up (without it the generation does not move) and for at most
 * PAGEMEMO_TTL_S, which bounds how late a compaction's new horizon is seen. One page per
 * library slot; guarded by one mutex, pages are refcounted (a PGresult is read-only).
 */
#ifndef SR_PAGEMEMO_H
#define SR_PAGEMEMO_H

#include <stdint.h>

#include <libpq-fe.h>

#include "library.h"

#define PAGEMEMO_TTL_S 1.0

struct page_snap {
	PGresult *res;     /* the pull query's rows, from the cursor's own */
	struct library l;  /* head, horizon, schema version of the same snapshot (no schema) */
	int refs;
};

/* The kept page of lib for (gen, since, limit), with a reference; NULL when none. */
struct page_snap *pagememo_get(const char *lib, uint64_t gen, long long since, long long limit);
/* A new page owning res (and l's scalars), with one reference for the caller. NULL on OOM
 * (res is then cleared). */
struct page_snap *pagememo_new(PGresult *res, const struct library *l);
/* Keeps s for lib under (gen, since, limit), taking a reference of its own. */
void pagememo_put(const char *lib, uint64_t gen, long long since, long long limit, struct page_snap *s);
void pagememo_release(struct page_snap *s);
/* Forgets lib's page: a push on this relay committed (its pusher may pull at once, before
 * the NOTIFY moved the generation). */
void pagememo_forget(const char *lib);
/* Pages served from here since the start, for /metrics. */
unsigned long long pagememo_hits(void);
/* Drops every kept page (shutdown). */
void pagememo_clear(void);

#endif
