-- Work claimed once (issue 13): which instance works a row and until when its lease holds.
-- A claim sets both; the instance renews `lease_until` while it works (the heartbeat) and
-- clears it when done. A row whose lease has passed is another instance's to take over: its
-- claimer died mid-job (docs/database.md, Work claimed once).
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN lease_until TEXT;
ALTER TABLE review_batches ADD COLUMN claimed_by TEXT;
ALTER TABLE review_batches ADD COLUMN lease_until TEXT;
ALTER TABLE pipelines ADD COLUMN claimed_by TEXT;
ALTER TABLE pipelines ADD COLUMN lease_until TEXT;
-- The heartbeat renews every row an instance holds, by instance.
CREATE INDEX deliveries_by_claimer ON deliveries (claimed_by, lease_until);
CREATE INDEX review_batches_by_claimer ON review_batches (claimed_by, lease_until);
CREATE INDEX pipelines_by_claimer ON pipelines (claimed_by, lease_until);
