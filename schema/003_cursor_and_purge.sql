-- Cursors name the change at their seq, and compaction needs to say what it removed:
-- horizon_hlc is the HLC of the change at seq = horizon (kept here once that change is
-- compacted away, so a cursor at exactly the horizon can still be checked); purged_before
-- is an HLC below which tombstones may have been purged from records (NULL: none ever).
ALTER TABLE libraries ADD COLUMN horizon_hlc text COLLATE "C";
ALTER TABLE libraries ADD COLUMN purged_before text COLLATE "C";
