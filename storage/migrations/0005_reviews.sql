-- Review response (issue 5): pull requests biagent watches, the review comments they get,
-- debounced batches of comments, one iteration per engine run, replies posted (with an
-- idempotency key written before the POST), per-reviewer review state.

CREATE TABLE pull_requests (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    repository           TEXT NOT NULL,                -- owner/name
    number               INTEGER NOT NULL,
    installation_id      INTEGER NOT NULL,
    github_id            INTEGER,
    title                TEXT NOT NULL DEFAULT '',
    author_login         TEXT NOT NULL DEFAULT '',
    clone_url            TEXT NOT NULL DEFAULT '',
    head_ref             TEXT NOT NULL DEFAULT '',
    head_sha             TEXT NOT NULL DEFAULT '',
    base_ref             TEXT NOT NULL DEFAULT '',
    state                TEXT NOT NULL DEFAULT 'open',  -- open, closed, merged
    review_state         TEXT NOT NULL DEFAULT 'waiting', -- waiting, changes_requested, approved
    paused               INTEGER NOT NULL DEFAULT 0,
    pause_reason         TEXT,
    pause_count          INTEGER NOT NULL DEFAULT 0,
    caps_reset_at        TEXT,                          -- `/biagent resume` after a cap
    consecutive_commits  INTEGER NOT NULL DEFAULT 0,    -- biagent commits since a person pushed
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    UNIQUE (repository, number)
);

-- Why biagent listens to a pull request: it opened it, or a person with write access asked.
CREATE TABLE webhook_subscriptions (
    pr_id        INTEGER PRIMARY KEY REFERENCES pull_requests (id) ON DELETE CASCADE,
    reason       TEXT NOT NULL,                         -- opened_by_biagent, requested
    requested_by TEXT,
    created_at   TEXT NOT NULL
);

-- Every comment seen on a watched pull request, keyed by GitHub's id. `kind` is
-- review_comment (a diff comment), issue_comment (the conversation) or review_body (the text
-- of a submitted review; its id is the review's id). `version` grows on each real edit.
CREATE TABLE review_comments (
    id              INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    pr_id           INTEGER NOT NULL REFERENCES pull_requests (id) ON DELETE CASCADE,
    review_id       INTEGER,
    in_reply_to_id  INTEGER,
    path            TEXT,
    line            INTEGER,
    start_line      INTEGER,
    side            TEXT,
    diff_hunk       TEXT,
    commit_id       TEXT,
    body            TEXT NOT NULL DEFAULT '',
    author_login    TEXT NOT NULL DEFAULT '',
    author_type     TEXT NOT NULL DEFAULT 'User',
    own             INTEGER NOT NULL DEFAULT 0,         -- written by biagent
    html_url        TEXT,
    version         INTEGER NOT NULL DEFAULT 1,
    deleted         INTEGER NOT NULL DEFAULT 0,
    resolved        INTEGER NOT NULL DEFAULT 0,         -- its thread was resolved
    created_at      TEXT NOT NULL,                      -- GitHub's
    updated_at      TEXT NOT NULL,                      -- GitHub's
    seen_at         TEXT NOT NULL,                      -- ours
    PRIMARY KEY (kind, id)
);
CREATE INDEX review_comments_by_pr ON review_comments (pr_id, created_at);

-- A batch gathers comments for one run. At most one batch per pull request is gathering.
-- status: gathering, running, responding, done, dropped, paused, skipped.
CREATE TABLE review_batches (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    pr_id            INTEGER NOT NULL REFERENCES pull_requests (id) ON DELETE CASCADE,
    status           TEXT NOT NULL DEFAULT 'gathering',
    trigger          TEXT NOT NULL DEFAULT 'comments', -- comments, review, command, retry
    retry_of         INTEGER REFERENCES review_batches (id),
    first_comment_at TEXT NOT NULL,
    last_comment_at  TEXT NOT NULL,
    due_at           TEXT NOT NULL,
    closed_by_review INTEGER,                           -- review id that closed it
    head_sha         TEXT,                              -- head when the batch was picked up
    check_run_id     INTEGER,
    check_run_sha    TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,        -- responding retries
    outcome          TEXT,                              -- completed, budget_stopped, ...
    note             TEXT,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT
);
CREATE UNIQUE INDEX review_batches_one_gathering ON review_batches (pr_id)
    WHERE status = 'gathering';
CREATE INDEX review_batches_due ON review_batches (status, due_at);

-- Which comment version is in which batch: whatever events bring it, a comment version joins
-- one batch (a retry batch copies them on purpose). `body` is the snapshot taken when the batch is picked up.
CREATE TABLE review_batch_items (
    batch_id        INTEGER NOT NULL REFERENCES review_batches (id) ON DELETE CASCADE,
    comment_kind    TEXT NOT NULL,
    comment_id      INTEGER NOT NULL,
    comment_version INTEGER NOT NULL,
    body            TEXT,
    outcome         TEXT,              -- fixed, declined, question, not_addressed
    detail          TEXT,
    commit_sha      TEXT,
    added_at        TEXT NOT NULL,
    PRIMARY KEY (batch_id, comment_kind, comment_id)
);
-- Not UNIQUE: a retry puts the same versions in a new batch on purpose. Events add a version
-- only when no batch holds it yet (storage/review_batches.py, inside one transaction).
CREATE INDEX review_batch_items_by_comment
    ON review_batch_items (comment_kind, comment_id, comment_version);

-- One engine run of a batch. The engine's report is stored before any reply is posted.
CREATE TABLE review_iterations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    pr_id          INTEGER NOT NULL REFERENCES pull_requests (id) ON DELETE CASCADE,
    batch_id       INTEGER NOT NULL REFERENCES review_batches (id) ON DELETE CASCADE,
    number         INTEGER NOT NULL,                    -- 1, 2, ... per pull request
    head_sha       TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'running',     -- running, completed, budget_stopped,
                                                        -- rate_limited, failed
    commit_sha     TEXT,
    tests_summary  TEXT,
    cost_usd       REAL NOT NULL DEFAULT 0,
    error          TEXT,
    report         TEXT,                                -- the engine's outcomes, JSON
    started_at     TEXT NOT NULL,
    finished_at    TEXT,
    UNIQUE (batch_id),
    UNIQUE (pr_id, number)
);

-- Everything biagent writes on GitHub, keyed so it is written once: the intent is committed
-- before the POST, GitHub's id after. A thread reply is also unique per (iteration, comment).
CREATE TABLE review_replies (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    pr_id             INTEGER NOT NULL REFERENCES pull_requests (id) ON DELETE CASCADE,
    idempotency_key   TEXT NOT NULL UNIQUE,
    kind              TEXT NOT NULL,          -- thread, summary, command, refusal, pause, note
    batch_id          INTEGER,
    iteration_id      INTEGER,
    comment_kind      TEXT,
    comment_id        INTEGER,
    root_id           INTEGER,
    outcome           TEXT,
    body              TEXT NOT NULL,
    github_id         INTEGER,
    status            TEXT NOT NULL DEFAULT 'intent',  -- intent, posted, gone
    created_at        TEXT NOT NULL,
    posted_at         TEXT
);
CREATE UNIQUE INDEX review_replies_one_per_comment
    ON review_replies (iteration_id, comment_kind, comment_id) WHERE kind = 'thread';
CREATE INDEX review_replies_by_pr ON review_replies (pr_id, id);

-- The latest review of each reviewer on a pull request.
CREATE TABLE review_states (
    pr_id          INTEGER NOT NULL REFERENCES pull_requests (id) ON DELETE CASCADE,
    reviewer_login TEXT NOT NULL,
    state          TEXT NOT NULL,         -- approved, changes_requested, commented, dismissed
    review_id      INTEGER NOT NULL,
    submitted_at   TEXT NOT NULL,
    PRIMARY KEY (pr_id, reviewer_login)
);
