/* Library-wide helpers of the public API: sr_free for what the library returns, and the
 * library's version. */
#include <stdlib.h>

#include "syncrelay.h"

#ifndef SYNCRELAY_VERSION
#define SYNCRELAY_VERSION "unknown"
#endif

void sr_free(void *p)
{
	free(p);
}

const char *sr_version(void)
{
	return SYNCRELAY_VERSION;
}
