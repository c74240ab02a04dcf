-- The service foundation: instance metadata, installations, the delivery log and events.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE installations (
    id            INTEGER PRIMARY KEY,          -- GitHub's installation id
    account_login TEXT NOT NULL,
    account_type  TEXT NOT NULL,
    target_type   TEXT,
    suspended     INTEGER NOT NULL DEFAULT 0,
    deleted       INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE installation_repositories (
    id              INTEGER PRIMARY KEY,        -- GitHub's repository id
    installation_id INTEGER NOT NULL REFERENCES installations (id) ON DELETE CASCADE,
    full_name       TEXT NOT NULL,
    private         INTEGER NOT NULL DEFAULT 0,
    added_at        TEXT NOT NULL
);
CREATE INDEX installation_repositories_by_installation
    ON installation_repositories (installation_id);

-- Every accepted webhook delivery, GitHub's and JIRA's, committed before the 202.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    source          TEXT NOT NULL,              -- 'github' or 'jira'
    delivery_id     TEXT NOT NULL,              -- X-GitHub-Delivery / X-Atlassian-Webhook-Identifier
    event           TEXT NOT NULL,
    action          TEXT,
    installation_id INTEGER,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',  -- pending, processing, done, failed, dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    received_at     TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    finished_at     TEXT,
    UNIQUE (source, delivery_id)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);

-- One row per (delivery, concern): a concern that failed is retried alone.
CREATE TABLE delivery_results (
    delivery_pk INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    concern     TEXT NOT NULL,
    status      TEXT NOT NULL,                  -- done or failed
    error       TEXT,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (delivery_pk, concern)
);

-- The event log behind the bus and the WebSocket's resume.
CREATE TABLE events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    type   TEXT NOT NULL,
    ts     TEXT NOT NULL,
    data   TEXT NOT NULL
);
CREATE INDEX events_by_stream ON events (stream, id);
