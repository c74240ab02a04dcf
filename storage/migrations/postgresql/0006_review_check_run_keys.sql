-- PostgreSQL form of ../0006_review_check_run_keys.sql (the same tables, columns and indexes; docs/database.md).
-- Review response: a check run's idempotency key (its `external_id`), stored before it is created.
--
-- `check_run_key` is the external_id of the last check run begun for a batch, `<batch>.<n>`.
-- While `check_run_sha` is set and `check_run_id` is not, that check run is being created: the
-- POST may have reached GitHub before an error or a stop, so the next attempt looks for the key
-- on the commit before creating it again (bot/reviews/checks.py).
ALTER TABLE review_batches ADD COLUMN check_run_key TEXT;
