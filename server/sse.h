/*
 * Event streams: a pull with Accept: text/event-stream (PROTOCOL.md, "Live change feed").
 *
 * The pull handler checks the request as any pull (token, arguments, cursor: a 400, 401 or
 * 410 is answered before the stream starts), reads the first page into the stream's buffer
 * and answers 200 with a libmicrohttpd content reader (sse_read). The reader hands out what
 * is buffered; with nothing buffered it suspends its connection and either parks it as a
 * held poll (longpoll.h: woken by a NOTIFY for its library, or at its next keepalive) or
 * queues the next page on a request worker, which resumes it. So a stream holds no thread
 * while it waits and never reads the database on a libmicrohttpd thread.
 *
 * Ownership: while the connection is suspended, the one who will resume it (longpoll.c or
 * the worker) owns the stream; once resumed, the reader does. Nothing touches it otherwise.
 */
#ifndef SR_SSE_H
#define SR_SSE_H

#include <stdint.h>
#include <sys/types.h>

#include "http.h"

/* Seconds of silence before a keepalive comment, unless the pull names wait. */
#define SSE_KEEPALIVE_S 15

struct sse {
	sr_buf out;       /* event text not yet handed to libmicrohttpd, from off */
	size_t off;
	long long since;  /* the cursor: the last change read (sent, or skipped as the device's own) */
	char since_hlc[SR_HLC_LEN + 1]; /* its HLC, "" when unnamed */
	long long limit;  /* changes per page */
	int include_own;
	uint64_t gen;     /* the library's wake generation, read before the last page */
	int fetch;        /* read a page before waiting: the last one was not at head, or a wake */
	int ending;       /* end the stream once out is sent */
	double keepalive_s, next_keepalive; /* monotonic seconds */
};

/* 1 when r is a GET asking for text/event-stream. */
int sse_wanted(struct req *r);
/* Starts the stream s (its first page already in s->out) for r: fills out with the 200 that
 * send_reply turns into the stream, or with a 429 (the device holds its most polls) or 503
 * (stopping), then frees s. HANDLER_DONE. */
int sse_begin(struct req *r, struct sse *s, struct reply *out);
/* Appends one change event: "id: <seq>", "event: change", its JSON (as a pull page holds it)
 * as data. */
void sse_put_change(sr_buf *ev, const sr_change *ch);
/* libmicrohttpd's content reader for a stream; cls is the struct req. */
ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max);
/* Frees r's stream, if any (request completed). */
void sse_free(struct req *r);

#endif
