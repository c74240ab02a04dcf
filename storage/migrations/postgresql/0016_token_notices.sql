-- PostgreSQL form of ../0016_token_notices.sql (docs/database.md, Tokens across instances).
-- Every token frame stored in token_buffer sends `<stream> <seq>` on the `biagent_tokens`
-- channel when its transaction commits (never before, never for a rollback), and a block that
-- stops running sends `<stream> <last seq> ended` after its frames' notices: each instance
-- LISTENs there and relays to its own subscribers the frames of streams another instance
-- produces, and forgets a stream once its block ended (bot/agents/token_relay.py).
CREATE FUNCTION biagent_token_notice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('biagent_tokens', NEW.stream || ' ' || NEW.seq::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER token_buffer_notice AFTER INSERT ON token_buffer
    FOR EACH ROW EXECUTE FUNCTION biagent_token_notice();

CREATE FUNCTION biagent_token_block_notice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('biagent_tokens', NEW.stream || ' ' || NEW.last_seq::text || ' ended');
    RETURN NULL;
END
$$;

CREATE TRIGGER token_blocks_notice AFTER UPDATE OF state ON token_blocks
    FOR EACH ROW WHEN (OLD.state = 'running' AND NEW.state <> 'running')
    EXECUTE FUNCTION biagent_token_block_notice();
