-- PostgreSQL form of ../0008_event_keys.sql (the same tables, columns and indexes; docs/database.md).
-- An event published "once" (EventBus.publish once_key=...): a handler that runs again for the
-- same delivery, after a kill between its commit and the delivery's `done`, finds its key here
-- and publishes nothing the second time.
CREATE TABLE event_keys (
    key      TEXT PRIMARY KEY,
    event_id BIGINT NOT NULL
);

-- A pipeline's page reads the questions its steps asked (storage/clarifications.for_pipeline).
CREATE INDEX clarifications_by_step ON clarifications (step_id) WHERE step_id IS NOT NULL;
