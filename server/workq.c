/* Request workers with per-library lanes, taken in turn. See workq.h. */
#include "workq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define NSLOTS 1024

struct job {
	struct req *r;
	workq_fn fn;
	struct job *next;
};

struct lane {
	char name[SR_UUID_LEN + 8];
	struct job *head, *tail;
	int running, cap;
	int ready; /* on the ready ring */
	struct lane *ready_next;
	struct lane *next; /* hash chain */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct lane *table[NSLOTS];
static struct lane *ready_head, *ready_tail; /* lanes with queued jobs and room to run */
static pthread_t *threads;
static int nthreads, per_lane_, pending, stopping;

static struct lane *lane_get(const char *name)
{
	unsigned h = (unsigned)(sr_fnv1a64(name, strlen(name)) % NSLOTS);
	struct lane *l;

	for (l = table[h]; l; l = l->next)
		if (!strcmp(l->name, name))
			return l;
	l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	snprintf(l->name, sizeof l->name, "%s", name);
	l->cap = per_lane_;
	l->next = table[h];
	table[h] = l;
	return l;
}

/* Puts l at the tail of the ready ring when it has work and room; lock held. */
static void ready_push(struct lane *l)
{
	if (l->ready || !l->head || l->running >= l->cap)
		return;
	l->ready = 1;
	l->ready_next = NULL;
	if (ready_tail)
		ready_tail->ready_next = l;
	else
		ready_head = l;
	ready_tail = l;
	pthread_cond_signal(&cond);
}

static void *run(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	for (;;) {
		struct lane *l;
		struct job *j;

		while (!ready_head && !(stopping && !pending))
			pthread_cond_wait(&cond, &lock);
		if (!ready_head)
			break;
		l = ready_head;
		ready_head = l->ready_next;
		if (!ready_head)
			ready_tail = NULL;
		l->ready = 0;
		j = l->head;
		l->head = j->next;
		if (!l->head)
			l->tail = NULL;
		l->running++;
		/* the lane goes to the back of the ring: other libraries come first */
		ready_push(l);
		pthread_mutex_unlock(&lock);
		j->fn(j->r);
		free(j);
		pthread_mutex_lock(&lock);
		l->running--;
		pending--;
		ready_push(l);
		if (stopping && !pending)
			pthread_cond_broadcast(&cond);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int workq_start(int nworkers, int per_lane)
{
	int i;

	threads = calloc((size_t)nworkers, sizeof *threads);
	if (!threads)
		return -1;
	nthreads = nworkers;
	per_lane_ = per_lane;
	for (i = 0; i < nworkers; i++)
		if (pthread_create(&threads[i], NULL, run, NULL)) {
			log_error("could not start request worker %d", i);
			return -1;
		}
	return 0;
}

int workq_submit(const char *name, struct req *r, workq_fn fn)
{
	struct job *j = calloc(1, sizeof *j);
	struct lane *l;
	int rc = -1;

	if (!j)
		return -1;
	j->r = r;
	j->fn = fn;
	pthread_mutex_lock(&lock);
	l = stopping && !nthreads ? NULL : lane_get(name);
	if (l) {
		if (l->tail)
			l->tail->next = j;
		else
			l->head = j;
		l->tail = j;
		pending++;
		ready_push(l);
		rc = 0;
	}
	pthread_mutex_unlock(&lock);
	if (rc)
		free(j);
	return rc;
}

int workq_pending(void)
{
	int n;

	pthread_mutex_lock(&lock);
	n = pending;
	pthread_mutex_unlock(&lock);
	return n;
}

void workq_stop(void)
{
	int i;

	pthread_mutex_lock(&lock);
	stopping = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	for (i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	free(threads);
	threads = NULL;
	nthreads = 0;
}
