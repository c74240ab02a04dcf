-- Worktree isolation: registered repositories, their setup answers, and the worktree sessions
-- agent jobs run in (one git worktree per repository per session, over a cached mirror).

-- A repository biagent may check out. clone_url is the one GitHub reports (never built from a
-- host name) and never carries credentials: the installation token goes to git per command.
CREATE TABLE repositories (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    full_name        TEXT NOT NULL UNIQUE,      -- owner/name
    clone_url        TEXT NOT NULL,
    default_branch   TEXT,                      -- NULL: learnt from the remote's HEAD
    installation_id  INTEGER,                   -- the installation whose token fetches it
    setup_command    TEXT,                      -- a person's answer, used when detection is unsure
    test_command     TEXT,
    answered_by      TEXT,
    answered_at      TEXT,
    quota_bytes      INTEGER,                   -- NULL: the WORKTREE_QUOTA_GB default
    idle_ttl_seconds INTEGER,                   -- NULL: the WORKTREE_IDLE_TTL default
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);

-- Which repositories a JIRA ticket's work touches (a multi-repo ticket lists several).
CREATE TABLE ticket_repositories (
    ticket_key    TEXT NOT NULL,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    PRIMARY KEY (ticket_key, repository_id)
);

-- One job's set of worktrees, all on the branch biagent/<owner>.
CREATE TABLE worktree_sessions (
    id             TEXT PRIMARY KEY,
    owner          TEXT NOT NULL,               -- a ticket key or pr-<number>
    branch         TEXT NOT NULL,
    stream         TEXT NOT NULL,               -- where its events go
    status         TEXT NOT NULL,               -- creating, created, setting_up, needs_input,
                                                -- ready, failed, cleaning, cleaned
    held_by        TEXT,                        -- the job using it now: never cleaned while held
    error          TEXT,
    cleaned_reason TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    last_used_at   TEXT NOT NULL,
    cleaned_at     TEXT
);
CREATE INDEX worktree_sessions_by_status ON worktree_sessions (status);
CREATE INDEX worktree_sessions_by_owner ON worktree_sessions (owner);

-- One repository's worktree inside a session. The row is written before `git worktree add`,
-- so a crash between the two leaves a row that start-up reconciliation can repair.
CREATE TABLE worktree_repos (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      TEXT NOT NULL REFERENCES worktree_sessions (id) ON DELETE CASCADE,
    repository_id   INTEGER NOT NULL REFERENCES repositories (id),
    path            TEXT NOT NULL UNIQUE,
    branch          TEXT NOT NULL,
    base_sha        TEXT,
    status          TEXT NOT NULL,              -- creating, created, setup_running, ready,
                                                -- needs_input, setup_failed, removed
    push_url        TEXT,                       -- where `push` goes (a fork's clone_url for a PR)
    push_ref        TEXT,                       -- the remote branch it updates
    recorded_sha    TEXT,                       -- the remote tip last seen: the push lease
    pr_number       INTEGER,                    -- the pull request whose merge ends it
    port_base       INTEGER UNIQUE,             -- first of its block of ports; NULL once removed
    setup_command   TEXT,
    setup_exit_code INTEGER,
    setup_output    TEXT,                       -- the capped tail of the setup output
    setup_seconds   REAL,
    size_bytes      INTEGER,
    size_measured_at TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX worktree_repos_by_session ON worktree_repos (session_id);
CREATE INDEX worktree_repos_by_pr ON worktree_repos (repository_id, pr_number);

-- Questions setup asked a person; the answer lands on the repository row.
CREATE TABLE worktree_input_requests (
    id            TEXT PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    session_id    TEXT REFERENCES worktree_sessions (id) ON DELETE SET NULL,
    question      TEXT NOT NULL,
    choices       TEXT NOT NULL,                -- JSON list of suggested answers
    status        TEXT NOT NULL,                -- pending or answered
    answer        TEXT,
    created_at    TEXT NOT NULL,
    answered_at   TEXT
);
CREATE INDEX worktree_input_requests_by_repository
    ON worktree_input_requests (repository_id, status);
