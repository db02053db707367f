/*
 * Request workers: the database work of every request runs here, off libmicrohttpd's
 * threads, so that a wait on one library's row lock can starve neither other libraries,
 * nor health checks, nor the resumption of held polls.
 *
 * A complete request is submitted to a lane named by its library (or one shared lane for
 * requests that name none); its connection stays suspended meanwhile.
 * Workers take lanes in turn (round robin over lanes with work), and at most
 * SYNCRELAY_WORKERS_PER_LIBRARY requests of one library run at once, so a library with eight
 * pushers holds at most that many workers and database connections; the others serve the
 * rest. A job resumes its connection when it is done.
 */
#ifndef SR_WORKQ_H
#define SR_WORKQ_H

#include "http.h"

typedef void (*workq_fn)(struct req *r);

/* Starts nworkers threads; each lane runs at most per_lane jobs at once. 0 on success. */
int workq_start(int nworkers, int per_lane);
/* Queues fn(r) on lane (a library id, "" for the shared lane). 0, or -1 when out of memory
 * or stopping (the caller answers itself). */
int workq_submit(const char *lane, struct req *r, workq_fn fn);
/* Runs what is queued, then joins the workers. */
void workq_stop(void);
/* Jobs queued or running. */
int workq_pending(void);

#endif
