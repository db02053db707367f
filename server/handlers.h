/* The endpoint handlers, one file per resource (h_*.c). */
#ifndef SR_HANDLERS_H
#define SR_HANDLERS_H

#include "http.h"

int h_library_create(struct req *r, struct reply *out);
int h_library_get(struct req *r, struct reply *out);
int h_device_enroll(struct req *r, struct reply *out);
int h_device_list(struct req *r, struct reply *out);
int h_device_revoke(struct req *r, struct reply *out);
int h_join_token_rotate(struct req *r, struct reply *out);
int h_join_token_revoke(struct req *r, struct reply *out);
int h_schema_put(struct req *r, struct reply *out);
int h_schema_get(struct req *r, struct reply *out);
int h_changes_push(struct req *r, struct reply *out);
int h_changes_pull(struct req *r, struct reply *out);
/* The next page of r's event stream (sse.h), on a request worker. 0, or -1 with out filled. */
int changes_stream_page(struct req *r, struct reply *out);
int h_ack(struct req *r, struct reply *out);
int h_records(struct req *r, struct reply *out);
int h_digest(struct req *r, struct reply *out);
int h_digest_buckets(struct req *r, struct reply *out);
int h_healthz(struct req *r, struct reply *out);
int h_readyz(struct req *r, struct reply *out);
int h_metrics(struct req *r, struct reply *out);
int h_compact(struct req *r, struct reply *out);

#endif
