-- Browser sessions: what a person had open, and what happened while no page of theirs was
-- connected (docs/sessions.md; beside token_buffer and claude_sessions of 0002).

-- One browser session, made at login (its own cookie) and owned by the API token it was made
-- with: `owner` is derived from the token's digest, so a rotated token leaves its sessions
-- unreachable. `ui_state` is the page's own JSON object (filters, collapsed panels, the
-- selected step), size-capped by the API.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,              -- random, URL-safe
    owner        TEXT NOT NULL,
    ui_state     TEXT NOT NULL DEFAULT '{}',
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);
CREATE INDEX sessions_by_owner ON sessions (owner, last_seen_at);

-- A session's open tabs, in order: kind is pipeline, pr, ticket or dashboard; ref names the
-- object ('12', 'octo/repo#3', 'ACME-7'; '' for the dashboard).
CREATE TABLE session_tabs (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    ref        TEXT NOT NULL,
    PRIMARY KEY (session_id, position)
);

-- An event that mattered to a session while no socket of it followed the event's stream: a
-- copy of the envelope (the event log is pruned sooner), kept until acknowledged, until
-- expires_at (OFFLINE_EVENTS_TTL), or until OFFLINE_EVENTS_PER_SESSION newer ones push it out.
CREATE TABLE offline_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    event_id    INTEGER NOT NULL,
    stream      TEXT NOT NULL,
    type        TEXT NOT NULL,
    ts          TEXT NOT NULL,
    data        TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    UNIQUE (session_id, event_id)
);
CREATE INDEX offline_events_by_session ON offline_events (session_id, id);
CREATE INDEX offline_events_expiry ON offline_events (expires_at);
