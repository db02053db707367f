/* Shared pull pages: see pagememo.h. */
#include "pagememo.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "syncrelay_codec.h"

#define NSLOTS 256

struct slot {
	char lib[SR_UUID_LEN + 1];
	uint64_t gen;
	long long since, limit;
	double made;
	struct page_snap *snap;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot slots[NSLOTS];
static unsigned long long hits;

static struct slot *slot_of(const char *lib)
{
	return &slots[sr_fnv1a64(lib, strlen(lib)) % NSLOTS];
}

/* Drops a reference; lock held or not, the last one frees. */
static void unref(struct page_snap *s)
{
	if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		PQclear(s->res);
		free(s);
	}
}

struct page_snap *pagememo_new(PGresult *res, const struct library *l)
{
	struct page_snap *s = calloc(1, sizeof *s);

	if (!s) {
		PQclear(res);
		return NULL;
	}
	s->res = res;
	s->l.head = l->head;
	s->l.horizon = l->horizon;
	memcpy(s->l.horizon_hlc, l->horizon_hlc, sizeof s->l.horizon_hlc);
	s->l.schema_version = l->schema_version;
	s->refs = 1;
	return s;
}

struct page_snap *pagememo_get(const char *lib, uint64_t gen, long long since, long long limit)
{
	struct slot *sl = slot_of(lib);
	struct page_snap *s = NULL;
	double now = now_mono();

	pthread_mutex_lock(&lock);
	if (sl->snap && sl->gen == gen && sl->since == since && sl->limit == limit && !strcmp(sl->lib, lib) &&
	    now - sl->made < PAGEMEMO_TTL_S) {
		s = sl->snap;
		__atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
		hits++;
	}
	pthread_mutex_unlock(&lock);
	return s;
}

void pagememo_put(const char *lib, uint64_t gen, long long since, long long limit, struct page_snap *s)
{
	struct slot *sl = slot_of(lib);
	struct page_snap *old;

	__atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_lock(&lock);
	old = sl->snap;
	memcpy(sl->lib, lib, sizeof sl->lib - 1);
	sl->lib[sizeof sl->lib - 1] = '\0';
	sl->gen = gen;
	sl->since = since;
	sl->limit = limit;
	sl->made = now_mono();
	sl->snap = s;
	pthread_mutex_unlock(&lock);
	unref(old);
}

void pagememo_forget(const char *lib)
{
	struct slot *sl = slot_of(lib);
	struct page_snap *old = NULL;

	pthread_mutex_lock(&lock);
	if (sl->snap && !strcmp(sl->lib, lib)) {
		old = sl->snap;
		sl->snap = NULL;
	}
	pthread_mutex_unlock(&lock);
	unref(old);
}

unsigned long long pagememo_hits(void)
{
	unsigned long long n;

	pthread_mutex_lock(&lock);
	n = hits;
	pthread_mutex_unlock(&lock);
	return n;
}

void pagememo_release(struct page_snap *s)
{
	unref(s);
}

void pagememo_clear(void)
{
	int i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < NSLOTS; i++) {
		unref(slots[i].snap);
		slots[i].snap = NULL;
	}
	pthread_mutex_unlock(&lock);
}
