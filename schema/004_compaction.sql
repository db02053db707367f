-- Compaction (issue 10) measures a change's age by when the relay accepted it, not by its
-- HLC: an offline device's late push carries old HLCs but is news to every other device,
-- and retention promises that a device offline for less than it still catches up from the
-- log. Changes that exist already count as accepted when this migration runs (kept longest).
ALTER TABLE changes ADD COLUMN accepted_at timestamptz NOT NULL DEFAULT now();
