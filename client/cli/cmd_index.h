/* `syncrelay index DIR`: the reference scenario's indexer. */
#ifndef SR_CMD_INDEX_H
#define SR_CMD_INDEX_H

#include "syncrelay.h"
#include "syncrelay_codec.h"

/* Indexes dir into the store's library; prints a summary. Returns the exit status. */
int cmd_index(sr_client *c, const char *dir, int json, int progress);

#endif
