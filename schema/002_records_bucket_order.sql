-- The bucket index led by (library_id, model) competed with the primary key for lookups by
-- (model, record_id); with stale statistics the planner chose it and filtered a whole library
-- per pushed record. Led by bucket, it serves only bucket pages.
DROP INDEX records_bucket;
CREATE INDEX records_bucket ON records (library_id, bucket, model, owner, record_id);
