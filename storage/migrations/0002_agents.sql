-- The agent runtime: conversations, runs, tool calls, file changes, costs, token frames,
-- clarifications (docs/design.md, Events and Storage; docs/agents.md).

-- One conversation of an agent step, keyed by its owner's session key
-- ('pipeline:12/step:3', 'pr:octo/repo#12/batch:5'). Its messages live in
-- claude_session_messages, one row each, appended only.
CREATE TABLE claude_sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_key TEXT NOT NULL UNIQUE,
    agent       TEXT NOT NULL,
    model       TEXT NOT NULL,
    pipeline_id INTEGER,
    step_id     INTEGER,
    pr          TEXT,
    status      TEXT NOT NULL DEFAULT 'running',
    final_text  TEXT,
    output      TEXT,                           -- JSON the agent reported, or NULL
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX claude_sessions_by_pipeline ON claude_sessions (pipeline_id, id);

CREATE TABLE claude_session_messages (
    session_id INTEGER NOT NULL REFERENCES claude_sessions (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,                -- 0, 1, 2... in conversation order
    role       TEXT NOT NULL,                   -- 'user' or 'assistant'
    content    TEXT NOT NULL,                   -- JSON: a string or a list of content blocks
    created_at TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);

-- One call of run_step: an attempt at a step, with how it ended.
CREATE TABLE agent_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  INTEGER NOT NULL REFERENCES claude_sessions (id) ON DELETE CASCADE,
    agent       TEXT NOT NULL,
    stream      TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'running',
    -- running, completed, paused_for_clarification, budget_stopped, failed, interrupted
    reason      TEXT,
    error       TEXT,
    turns       INTEGER NOT NULL DEFAULT 0,
    cost_usd    REAL NOT NULL DEFAULT 0,
    started_at  TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX agent_runs_by_session ON agent_runs (session_id, id);
CREATE INDEX agent_runs_by_status ON agent_runs (status);

-- A streamed turn that broke before its end: kept, never executed, never replayed as is.
CREATE TABLE agent_interruptions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id           INTEGER NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    turn             INTEGER NOT NULL,
    reason           TEXT NOT NULL,
    tool_use_started INTEGER NOT NULL DEFAULT 0,
    partial          TEXT NOT NULL,             -- JSON of the content received so far
    created_at       TEXT NOT NULL
);

CREATE TABLE tool_calls (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    session_id  INTEGER NOT NULL REFERENCES claude_sessions (id) ON DELETE CASCADE,
    tool_use_id TEXT NOT NULL,                  -- the model's id for the call
    tool        TEXT NOT NULL,
    arguments   TEXT NOT NULL,                  -- JSON
    status      TEXT NOT NULL DEFAULT 'started',  -- started, completed
    result      TEXT,
    is_error    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    duration_ms REAL,
    started_at  TEXT NOT NULL,
    completed_at TEXT,
    UNIQUE (session_id, tool_use_id)
);
CREATE INDEX tool_calls_by_run ON tool_calls (run_id, id);

CREATE TABLE file_changes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       INTEGER NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    tool_call_id INTEGER REFERENCES tool_calls (id) ON DELETE SET NULL,
    path         TEXT NOT NULL,                 -- relative to the worktree
    change_type  TEXT NOT NULL,                 -- created, modified, deleted
    diff         TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX file_changes_by_run ON file_changes (run_id, id);

-- One row per Messages API call, with what it cost (price table in the agents file).
CREATE TABLE agent_costs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id             INTEGER NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    session_id         INTEGER NOT NULL REFERENCES claude_sessions (id) ON DELETE CASCADE,
    pipeline_id        INTEGER,
    pr                 TEXT,
    model              TEXT NOT NULL,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cache_read_tokens  INTEGER NOT NULL,
    cost_usd           REAL NOT NULL,
    created_at         TEXT NOT NULL
);
CREATE INDEX agent_costs_by_run ON agent_costs (run_id);
CREATE INDEX agent_costs_by_pipeline ON agent_costs (pipeline_id);
CREATE INDEX agent_costs_by_pr ON agent_costs (pr);

-- Coalesced token frames, numbered per stream, kept until expires_at for catch-up.
CREATE TABLE token_buffer (
    stream     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    text       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (stream, seq)
);
CREATE INDEX token_buffer_expiry ON token_buffer (expires_at);

-- A question an agent asked a person; its step waits for the answer.
CREATE TABLE clarifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  INTEGER NOT NULL REFERENCES claude_sessions (id) ON DELETE CASCADE,
    tool_use_id TEXT NOT NULL,
    stream      TEXT NOT NULL,
    question    TEXT NOT NULL,
    choices     TEXT,                           -- JSON list or NULL
    status      TEXT NOT NULL DEFAULT 'open',   -- open, answered
    answer      TEXT,
    answered_by TEXT,
    created_at  TEXT NOT NULL,
    answered_at TEXT,
    UNIQUE (session_id, tool_use_id)
);
CREATE INDEX clarifications_by_status ON clarifications (status, id);
