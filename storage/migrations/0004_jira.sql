-- JIRA mirror (docs/design.md, "Syncs JIRA"): tickets, their links both ways, attachment metadata,
-- every sync run, and the per-project sync state (watermark, boundary set, lease).

CREATE TABLE tickets (
    id              TEXT PRIMARY KEY,              -- Jira's issue id (stable across moves)
    key             TEXT NOT NULL UNIQUE,          -- PROJ-123 (changes when an issue moves)
    project         TEXT NOT NULL,
    summary         TEXT NOT NULL,
    description     TEXT,
    status          TEXT,
    status_category TEXT,
    issue_type      TEXT,
    priority        TEXT,
    assignee        TEXT,
    reporter        TEXT,
    resolution      TEXT,
    labels          TEXT NOT NULL DEFAULT '[]',    -- JSON list of strings
    components      TEXT NOT NULL DEFAULT '[]',    -- JSON list of strings
    parent_key      TEXT,
    subtask_keys    TEXT NOT NULL DEFAULT '[]',    -- JSON list of keys
    comments        TEXT NOT NULL DEFAULT '[]',    -- JSON list of {id, author, body, created, updated}
    changelog       TEXT NOT NULL DEFAULT '[]',    -- JSON list of histories, complete
    created_at      TEXT,
    updated_at      TEXT NOT NULL,                 -- Jira's `updated`, ISO UTC
    updated_ms      INTEGER NOT NULL,              -- the same instant in epoch milliseconds
    synced_at       TEXT NOT NULL
);
CREATE INDEX tickets_by_project ON tickets (project, updated_ms);
CREATE INDEX tickets_by_updated ON tickets (updated_ms);
CREATE INDEX tickets_by_status ON tickets (status);

-- Each Jira issue link is stored twice, once from each end, so "related" is one lookup either
-- way; the far end need not be mirrored (it may sit in a project that is not synced).
CREATE TABLE ticket_links (
    ticket_id    TEXT NOT NULL,
    link_id      TEXT NOT NULL,
    direction    TEXT NOT NULL,                    -- outward or inward, seen from ticket_id
    link_type    TEXT NOT NULL,                    -- Blocks
    relation     TEXT NOT NULL,                    -- blocks / is blocked by
    other_id     TEXT NOT NULL,
    other_key    TEXT NOT NULL,
    other_summary TEXT,
    other_status TEXT,
    PRIMARY KEY (ticket_id, link_id)
);
CREATE INDEX ticket_links_by_other ON ticket_links (other_id);

-- Attachment metadata only; the content is proxied from Jira on demand.
CREATE TABLE ticket_attachments (
    id          TEXT PRIMARY KEY,                  -- Jira's attachment id
    ticket_id   TEXT NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    filename    TEXT NOT NULL,
    mime_type   TEXT,
    size        INTEGER,
    author      TEXT,
    created_at  TEXT,
    content_url TEXT NOT NULL
);
CREATE INDEX ticket_attachments_by_ticket ON ticket_attachments (ticket_id);

-- One row per sync run: what it did, how long it took, how it ended.
CREATE TABLE sync_status (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project     TEXT NOT NULL,
    kind        TEXT NOT NULL,                     -- full or incremental
    trigger     TEXT NOT NULL,                     -- schedule, manual, cli, webhook
    status      TEXT NOT NULL,                     -- running, complete, failed
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    seen        INTEGER NOT NULL DEFAULT 0,
    created     INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    deleted     INTEGER NOT NULL DEFAULT 0,
    requests    INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);
CREATE INDEX sync_status_by_project ON sync_status (project, id);

-- Per project: the JQL the state belongs to, the newest `updated` stored (epoch ms) and how far
-- the next incremental query reaches back from it (the overlap, at least the last run's length).
CREATE TABLE sync_cursors (
    project        TEXT PRIMARY KEY,
    jql            TEXT NOT NULL,
    high_water_ms  INTEGER NOT NULL,
    lookback_ms    INTEGER NOT NULL,                -- how far the next run reaches back
    full_synced_at TEXT NOT NULL,
    synced_at      TEXT NOT NULL
);

-- The boundary set: (issue id, updated) already stored inside the overlap window, so the next
-- incremental query, which reaches back by the overlap, skips them instead of storing twice.
CREATE TABLE sync_boundary (
    project    TEXT NOT NULL,
    issue_id   TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (project, issue_id)
);

-- A lease per project: one sync of a project at a time, across processes (server and CLI).
CREATE TABLE sync_leases (
    project    TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
