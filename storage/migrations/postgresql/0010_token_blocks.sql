-- PostgreSQL form of ../0010_token_blocks.sql (the same tables, columns and indexes; docs/database.md).
-- The latest streamed content block of each token stream, merged: what a reconnecting client is
-- sent instead of every frame (issue 11, token catch-up by snapshot). `snapshot` is the text of
-- the block's frames first_seq..snapshot_seq; the frames after snapshot_seq (the tail) are read
-- from token_buffer. One row per stream: a new block replaces the previous one. When a block
-- expires its text is emptied but the row stays, so `last_seq` keeps the stream's numbering
-- from going back once every frame has been pruned.
CREATE TABLE token_blocks (
    stream       TEXT PRIMARY KEY,
    first_seq    BIGINT NOT NULL,
    last_seq     BIGINT NOT NULL,
    snapshot_seq BIGINT NOT NULL,
    snapshot     TEXT NOT NULL,
    state        TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX token_blocks_expiry ON token_blocks (expires_at);
