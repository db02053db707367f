/*
 * Held long-polls.
 *
 * A pull with wait>0 that finds nothing reads its library's wake generation *before* its
 * query, then asks poll_hold() to park the request. poll_hold() refuses (the caller queries
 * again) when the generation moved meanwhile, so a change that committed between the
 * query and the hold is never slept through. A parked request is a suspended
 * libmicrohttpd connection: it holds no thread. It is resumed by poll_wake() (a NOTIFY for
 * its library, from any relay on the database), by poll_expire() when its deadline passes,
 * or by poll_shutdown(). On resume the pull handler runs again and answers.
 *
 * An event stream (sse.h) is held the same way each time it has nothing to send, with its
 * next keepalive as the deadline; on resume its content reader runs instead of the handler.
 * A stream counts against its device's polls (and in poll_held()) from poll_stream_open()
 * until the request completes (poll_cancel()), not only while it waits.
 */
#ifndef SR_LONGPOLL_H
#define SR_LONGPOLL_H

#include <stdint.h>

#include "http.h"

enum { POLL_NONE = 0, POLL_HELD = 1, POLL_WOKEN = 2, POLL_EXPIRED = 3 };

uint64_t poll_gen(const char *lib);
/* 1 when r is now parked (the handler returns HANDLER_SUSPEND); 0 when the generation
 * moved past gen (query again); -1 when the relay is stopping or r's device already holds
 * SYNCRELAY_MAX_POLLS_PER_DEVICE polls in this library (answer now). An open stream is not
 * refused for the cap: it was counted when it opened. */
int poll_hold(struct req *r, const char *lib, uint64_t gen, double deadline);
/* Registers r as an open event stream of lib: 0; -1 when the relay is stopping; -2 when r's
 * device already holds SYNCRELAY_MAX_POLLS_PER_DEVICE polls and streams in lib. */
int poll_stream_open(struct req *r, const char *lib);
/* 1 once poll_shutdown() ran: streams end. */
int poll_stopping(void);
void poll_wake(const char *lib);
void poll_wake_all(void);
void poll_expire(double now);
/* Takes r off its waiter list and, for a stream, off the open streams (request completed). */
void poll_cancel(struct req *r);
/* Resumes every held request and refuses new holds. */
void poll_shutdown(void);
/* Long-polls held plus event streams open. */
int poll_held(void);

#endif
