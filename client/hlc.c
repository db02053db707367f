/* Hybrid logical clock: the update rules of the HLC paper over (ms, counter). */
#include "hlc.h"

#include <string.h>
#include <time.h>

uint64_t hlc_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void hlc_tick(struct hlc_clock *k, uint64_t now_ms, char out[SR_HLC_LEN + 1])
{
	sr_hlc h;

	if (now_ms > k->ms) {
		k->ms = now_ms;
		k->counter = 0;
	} else {
		k->counter++;
	}
	h.ms = k->ms;
	h.counter = k->counter;
	memcpy(h.device, k->device, sizeof h.device);
	sr_hlc_format(out, &h);
}

void hlc_recv(struct hlc_clock *k, uint64_t now_ms, const sr_hlc *m)
{
	uint64_t l = k->ms;

	if (m->ms > l)
		l = m->ms;
	if (now_ms > l)
		l = now_ms;
	if (l == k->ms && l == m->ms)
		k->counter = (k->counter > m->counter ? k->counter : m->counter) + 1;
	else if (l == k->ms)
		k->counter++;
	else if (l == m->ms)
		k->counter = m->counter + 1;
	else
		k->counter = 0;
	k->ms = l;
}
