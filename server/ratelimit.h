/* Per-device request rate limit (token buckets). */
#ifndef SR_RATELIMIT_H
#define SR_RATELIMIT_H

/* Takes one request from dev's bucket at monotonic time now: 0 when allowed, else the
 * seconds (at least 1) until the next request would be. */
int ratelimit_take(const char *dev, double now);

#endif
