/*
 * Per-device request rate limit: a token bucket per device (SYNCRELAY_RATE_PER_S tokens a
 * second, up to SYNCRELAY_RATE_BURST), consulted after authentication. One entry per device
 * that has made a request since the relay started; guarded by one mutex.
 */
#include "ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"

#define NSLOTS 4096

struct bucket {
	char dev[SR_UUID_LEN + 1];
	double tokens, at;
	struct bucket *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct bucket *table[NSLOTS];

int ratelimit_take(const char *dev, double now)
{
	unsigned h = (unsigned)(sr_fnv1a64(dev, strlen(dev)) % NSLOTS);
	double rate = (double)cfg.rate_per_s, burst = (double)cfg.rate_burst;
	struct bucket *b;
	int wait = 0;

	pthread_mutex_lock(&lock);
	for (b = table[h]; b; b = b->next)
		if (!strcmp(b->dev, dev))
			break;
	if (!b && (b = calloc(1, sizeof *b))) {
		snprintf(b->dev, sizeof b->dev, "%s", dev);
		b->tokens = burst;
		b->at = now;
		b->next = table[h];
		table[h] = b;
	}
	if (b) {
		b->tokens += (now - b->at) * rate;
		if (b->tokens > burst)
			b->tokens = burst;
		b->at = now;
		if (b->tokens >= 1)
			b->tokens -= 1;
		else
			wait = (int)ceil((1 - b->tokens) / rate);
	}
	pthread_mutex_unlock(&lock);
	return wait;
}
