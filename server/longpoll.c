/*
 * Held long-polls: per-library wake generations and waiter lists, guarded by one mutex.
 * Suspend and resume both happen under that mutex, so a wake can never resume a
 * connection before it was suspended. See poll.h for the protocol.
 */
#include "longpoll.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define NSLOTS 1024

struct slot {
	char lib[SR_UUID_LEN + 1];
	uint64_t gen;
	struct req *waiters;
	struct req *streams; /* open event streams, waiting or not */
	struct slot *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot *table[NSLOTS];
static int held; /* long-polls waiting plus streams open */
static int stopping;

/* Finds or creates the library's slot; lock held. NULL only when out of memory. */
static struct slot *slot_get(const char *lib)
{
	unsigned h = (unsigned)(sr_fnv1a64(lib, strlen(lib)) % NSLOTS);
	struct slot *s;

	for (s = table[h]; s; s = s->next)
		if (!strcmp(s->lib, lib))
			return s;
	s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	memcpy(s->lib, lib, sizeof s->lib);
	s->next = table[h];
	table[h] = s;
	return s;
}

static void unlink_waiter(struct req *r)
{
	struct slot *s = r->poll_slot;

	if (r->poll_prev)
		r->poll_prev->poll_next = r->poll_next;
	else
		s->waiters = r->poll_next;
	if (r->poll_next)
		r->poll_next->poll_prev = r->poll_prev;
	r->poll_prev = r->poll_next = NULL;
	r->poll_slot = NULL;
	if (!r->stream_slot)
		held--; /* a stream is counted while it is open */
}

static void resume(struct req *r, int state)
{
	unlink_waiter(r);
	r->poll_state = state;
	http_resume(r);
}

uint64_t poll_gen(const char *lib)
{
	struct slot *s;
	uint64_t g = 0;

	pthread_mutex_lock(&lock);
	s = slot_get(lib);
	if (s)
		g = s->gen;
	pthread_mutex_unlock(&lock);
	return g;
}

/* How many polls and streams r's device holds in s (its library's slot); lock held. A
 * waiting stream is on both lists and counted once. */
static int device_polls(const struct slot *s, const struct req *r)
{
	const struct req *w;
	int n = 0;

	for (w = s->waiters; w; w = w->poll_next)
		n += !w->stream_slot && !strcmp(w->auth.device_id, r->auth.device_id);
	for (w = s->streams; w; w = w->stream_next)
		n += !strcmp(w->auth.device_id, r->auth.device_id);
	return n;
}

int poll_hold(struct req *r, const char *lib, uint64_t gen, double deadline)
{
	struct slot *s;
	int ok = 0;

	pthread_mutex_lock(&lock);
	s = slot_get(lib);
	if (stopping || !s || (!r->stream_slot && device_polls(s, r) >= cfg.max_polls_per_device))
		ok = -1;
	else if (s->gen == gen) {
		r->poll_slot = s;
		r->poll_prev = NULL;
		r->poll_next = s->waiters;
		if (s->waiters)
			s->waiters->poll_prev = r;
		s->waiters = r;
		r->poll_state = POLL_HELD;
		r->poll_deadline = deadline;
		if (!r->stream_slot)
			held++;
		http_suspend(r);
		ok = 1;
	}
	pthread_mutex_unlock(&lock);
	return ok;
}

static void wake_slot(struct slot *s)
{
	s->gen++;
	while (s->waiters)
		resume(s->waiters, POLL_WOKEN);
}

void poll_wake(const char *lib)
{
	unsigned h = (unsigned)(sr_fnv1a64(lib, strlen(lib)) % NSLOTS);
	struct slot *s;

	pthread_mutex_lock(&lock);
	for (s = table[h]; s; s = s->next)
		if (!strcmp(s->lib, lib))
			wake_slot(s);
	pthread_mutex_unlock(&lock);
}

void poll_wake_all(void)
{
	struct slot *s;
	int i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < NSLOTS; i++)
		for (s = table[i]; s; s = s->next)
			wake_slot(s);
	pthread_mutex_unlock(&lock);
}

void poll_expire(double now)
{
	struct slot *s;
	struct req *r, *next;
	int i;

	pthread_mutex_lock(&lock);
	for (i = 0; held > 0 && i < NSLOTS; i++)
		for (s = table[i]; s; s = s->next)
			for (r = s->waiters; r; r = next) {
				next = r->poll_next;
				if (r->poll_deadline <= now)
					resume(r, POLL_EXPIRED);
			}
	pthread_mutex_unlock(&lock);
}

int poll_stream_open(struct req *r, const char *lib)
{
	struct slot *s;
	int rc = 0;

	pthread_mutex_lock(&lock);
	s = slot_get(lib);
	if (stopping || !s)
		rc = -1;
	else if (device_polls(s, r) >= cfg.max_polls_per_device)
		rc = -2;
	else {
		r->stream_slot = s;
		r->stream_prev = NULL;
		r->stream_next = s->streams;
		if (s->streams)
			s->streams->stream_prev = r;
		s->streams = r;
		held++;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

void poll_cancel(struct req *r)
{
	pthread_mutex_lock(&lock);
	if (r->poll_slot)
		unlink_waiter(r);
	if (r->stream_slot) {
		struct slot *s = r->stream_slot;

		if (r->stream_prev)
			r->stream_prev->stream_next = r->stream_next;
		else
			s->streams = r->stream_next;
		if (r->stream_next)
			r->stream_next->stream_prev = r->stream_prev;
		r->stream_prev = r->stream_next = NULL;
		r->stream_slot = NULL;
		held--;
	}
	pthread_mutex_unlock(&lock);
}

int poll_stopping(void)
{
	int n;

	pthread_mutex_lock(&lock);
	n = stopping;
	pthread_mutex_unlock(&lock);
	return n;
}

void poll_shutdown(void)
{
	struct slot *s;
	int i;

	pthread_mutex_lock(&lock);
	stopping = 1;
	for (i = 0; i < NSLOTS; i++)
		for (s = table[i]; s; s = s->next)
			while (s->waiters)
				resume(s->waiters, POLL_EXPIRED);
	pthread_mutex_unlock(&lock);
}

int poll_held(void)
{
	int n;

	pthread_mutex_lock(&lock);
	n = held;
	pthread_mutex_unlock(&lock);
	return n;
}
