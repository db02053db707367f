/*
 * The push transaction. A batch is validated whole, then written set-based: one lock of
 * the library row, one read of duplicate HLCs, one read of the records it touches, then
 * one INSERT of the changes, one upsert of the records that win last-writer-wins, one
 * upsert each of the scope and bucket digests, and the head update with its NOTIFY.
 *
 * Seqs are assigned in commit order per library: the library row is locked FOR UPDATE
 * before head is read, and the lock is held until COMMIT, so a second push to the same
 * library reads head only after the first committed. A change therefore never commits
 * with a seq below one already visible, and a reader paging by seq cannot skip it.
 */
#ifndef SR_PUSH_H
#define SR_PUSH_H

#include <jansson.h>

#include "http.h"

void push_run(const char *lib, const char *dev, const json_t *body, struct reply *out);

#endif
