-- PostgreSQL form of ../0014_event_notices.sql (docs/database.md, Events across instances).
-- Every event row, however it is inserted, sends its id on the `biagent_events` channel when
-- its transaction commits (never before, never for a rollback): each instance LISTENs there
-- and reads the rows after the last id it fanned out. The ids are commit-ordered because the
-- writer takes an advisory lock before it inserts events (storage/dialect.py, EVENTS_LOCK).
CREATE FUNCTION biagent_event_notice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('biagent_events', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notice AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION biagent_event_notice();
