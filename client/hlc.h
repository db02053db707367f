/* Hybrid logical clock (Kulkarni et al.): local events and the receive rule. */
#ifndef SR_CLIENT_HLC_H
#define SR_CLIENT_HLC_H

#include <stdint.h>

#include "syncrelay_codec.h"

struct hlc_clock {
	uint64_t ms;      /* l: the largest physical time seen */
	uint64_t counter; /* c */
	char device[SR_UUID_LEN + 1];
};

/* A local or send event at wall time now_ms: l' = max(l, now); c' = l' == l ? c + 1 : 0.
 * Writes the new HLC text into out. */
void hlc_tick(struct hlc_clock *k, uint64_t now_ms, char out[SR_HLC_LEN + 1]);
/* A receive event of remote at wall time now_ms: l' = max(l, remote.l, now); c' follows
 * the paper's rules. The remote text itself is never rewritten. */
void hlc_recv(struct hlc_clock *k, uint64_t now_ms, const sr_hlc *remote);
uint64_t hlc_wall_ms(void);

#endif
