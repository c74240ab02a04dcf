-- Ticket pipelines (docs/pipelines.md): a JIRA ticket becomes an ordered list of agent steps.
--
-- Cycle types and their phases are data, seeded here and edited through the API: the engine
-- reads them from these tables, never from a Python list. A pipeline copies its cycle type's
-- phases into pipeline_steps when it is created, so editing a cycle type later never changes a
-- pipeline that already runs. Every state change of a pipeline or step is a committed row before
-- its side effect: the engine is a state machine over these rows, and start-up resumes from them.

-- A kind of work (spike, backend, ...) and its dollar caps (NULL: the settings' defaults).
CREATE TABLE cycle_types (
    name              TEXT PRIMARY KEY,
    description       TEXT NOT NULL DEFAULT '',
    max_cost_usd      REAL,                       -- per pipeline
    step_max_cost_usd REAL,                       -- per step, when the phase sets none
    updated_at        TEXT NOT NULL
);

-- A phase: which agent runs it, with which prompt, tools, gate and limits.
CREATE TABLE phase_definitions (
    name            TEXT PRIMARY KEY,             -- triage, plan, implement, ...
    agent           TEXT NOT NULL,                -- a name in bot/agents/agents.yml
    prompt_template TEXT NOT NULL,                -- str.format fields: see docs/pipelines.md
    tools           TEXT,                         -- JSON list; NULL: the agent's own tools
    gate            TEXT NOT NULL DEFAULT 'none', -- none, plan_approval, risk_acknowledgement
    artifact_kind   TEXT,                         -- plan, risk_report, test_results, ...
    max_cost_usd    REAL,                         -- NULL: the cycle type's step cap
    time_limit_s    INTEGER,                      -- NULL: no limit beyond the agent's turns
    updated_at      TEXT NOT NULL
);

-- The ordered phases of each cycle type; a cycle type may override a phase's gate and limits.
CREATE TABLE cycle_phase_config (
    cycle_type   TEXT NOT NULL REFERENCES cycle_types (name) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    phase        TEXT NOT NULL REFERENCES phase_definitions (name),
    gate         TEXT,                            -- NULL: the phase's own gate
    max_cost_usd REAL,
    time_limit_s INTEGER,
    PRIMARY KEY (cycle_type, position),
    UNIQUE (cycle_type, phase)
);

-- Detection rules, tried in position order before the triage agent: the first rule whose every
-- non-NULL condition holds picks the cycle type (words match the summary, case-insensitively).
CREATE TABLE cycle_rules (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    position     INTEGER NOT NULL,
    cycle_type   TEXT NOT NULL REFERENCES cycle_types (name) ON DELETE CASCADE,
    issue_type   TEXT,
    label        TEXT,
    component    TEXT,
    summary_word TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX cycle_rules_by_position ON cycle_rules (position, id);

CREATE TABLE pipelines (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_key          TEXT NOT NULL,
    cycle_type          TEXT,                      -- NULL until detected or chosen
    cycle_reason        TEXT,                      -- why: the rule, the triage agent, a person
    status              TEXT NOT NULL,             -- created, running, paused, waiting_for_*, ...
    repositories        TEXT NOT NULL DEFAULT '[]', -- JSON list of owner/name
    branch              TEXT,                      -- biagent/<TICKET>-<slug>
    worktree_session_id TEXT,
    trigger             TEXT NOT NULL,             -- api, page, label, comment
    max_cost_usd        REAL,                      -- NULL: the cycle type's, else the settings'
    cost_usd            REAL NOT NULL DEFAULT 0,
    error_kind          TEXT,                      -- budget, loop, agent, setup, github, ...
    error_message       TEXT,
    error_phase         TEXT,
    error_detail        TEXT,                      -- JSON: last tool call, log excerpt
    created_by          TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    started_at          TEXT,
    finished_at         TEXT
);
CREATE INDEX pipelines_by_status ON pipelines (status, id);
CREATE INDEX pipelines_by_ticket ON pipelines (ticket_key, id);

-- One row per phase of a pipeline, copied from its cycle type at creation.
CREATE TABLE pipeline_steps (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_id    INTEGER NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    phase          TEXT NOT NULL,
    agent          TEXT NOT NULL,
    prompt_template TEXT NOT NULL,
    tools          TEXT,                           -- JSON list or NULL
    gate           TEXT NOT NULL DEFAULT 'none',
    artifact_kind  TEXT,
    max_cost_usd   REAL,
    time_limit_s   INTEGER,
    status         TEXT NOT NULL DEFAULT 'pending', -- pending, running, waiting_for_*, ...
    attempt        INTEGER NOT NULL DEFAULT 1,
    session_key    TEXT,                           -- the agent conversation of this attempt
    cost_usd       REAL NOT NULL DEFAULT 0,
    error          TEXT,
    approved_by    TEXT,
    approved_at    TEXT,
    approval_note  TEXT,
    started_at     TEXT,
    finished_at    TEXT,
    updated_at     TEXT NOT NULL,
    UNIQUE (pipeline_id, position)
);
CREATE INDEX pipeline_steps_by_status ON pipeline_steps (status, pipeline_id);

-- The current output of a step (its agent's report and text); older attempts' outputs move to
-- step_output_history when a person gives feedback.
CREATE TABLE step_outputs (
    step_id    INTEGER PRIMARY KEY REFERENCES pipeline_steps (id) ON DELETE CASCADE,
    attempt    INTEGER NOT NULL,
    text       TEXT NOT NULL DEFAULT '',
    output     TEXT,                               -- JSON the agent reported, or NULL
    created_at TEXT NOT NULL
);

CREATE TABLE step_output_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    step_id    INTEGER NOT NULL REFERENCES pipeline_steps (id) ON DELETE CASCADE,
    attempt    INTEGER NOT NULL,
    text       TEXT NOT NULL DEFAULT '',
    output     TEXT,
    created_at TEXT NOT NULL,
    replaced_at TEXT NOT NULL
);
CREATE INDEX step_output_history_by_step ON step_output_history (step_id, attempt);

CREATE TABLE step_feedback (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    step_id    INTEGER NOT NULL REFERENCES pipeline_steps (id) ON DELETE CASCADE,
    attempt    INTEGER NOT NULL,                   -- the attempt the feedback asks for
    text       TEXT NOT NULL,
    given_by   TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX step_feedback_by_step ON step_feedback (step_id, id);

-- What a step produced for people and later steps: the plan, the risk report, test results,
-- spike notes, the PR link.
CREATE TABLE step_artifacts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    step_id     INTEGER NOT NULL REFERENCES pipeline_steps (id) ON DELETE CASCADE,
    pipeline_id INTEGER NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    content     TEXT NOT NULL DEFAULT '',
    url         TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX step_artifacts_by_pipeline ON step_artifacts (pipeline_id, id);

-- Risk cards: a high one blocks the next phase until a person acknowledges it.
CREATE TABLE risks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_id     INTEGER NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    step_id         INTEGER REFERENCES pipeline_steps (id) ON DELETE SET NULL,
    title           TEXT NOT NULL,
    severity        TEXT NOT NULL CHECK (severity IN ('high', 'medium', 'low')),
    detail          TEXT NOT NULL DEFAULT '',
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    note            TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX risks_by_pipeline ON risks (pipeline_id, id);

-- The pull requests a pipeline opened (one per repository): review response watches them, and
-- their merge completes the pipeline, their closing unmerged cancels it.
CREATE TABLE pipeline_pull_requests (
    pipeline_id INTEGER NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    repository  TEXT NOT NULL,
    number      INTEGER NOT NULL,
    url         TEXT NOT NULL,
    draft       INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL DEFAULT 'open',        -- open, merged, closed
    created_at  TEXT NOT NULL,
    PRIMARY KEY (repository, number)
);
CREATE INDEX pipeline_pull_requests_by_pipeline ON pipeline_pull_requests (pipeline_id);

-- A clarification asked by a pipeline step links to it (reviews' have no step).
ALTER TABLE clarifications ADD COLUMN step_id INTEGER;

-- The seed: five cycle types, their phases, and detection rules a team will want to edit.
INSERT INTO cycle_types (name, description, updated_at) VALUES
    ('spike', 'Research a question and report; no code change.', '2026-12-03T00:00:00Z'),
    ('backend', 'A change to services, APIs or data.', '2026-12-03T00:00:00Z'),
    ('frontend', 'A change to the user interface.', '2026-12-03T00:00:00Z'),
    ('fullstack', 'A change across the interface and the services.', '2026-12-03T00:00:00Z'),
    ('oncall_bug', 'A production bug: reproduce with a failing test, then fix.',
     '2026-12-03T00:00:00Z');

INSERT INTO phase_definitions
    (name, agent, prompt_template, gate, artifact_kind, updated_at) VALUES
    ('triage', 'triage',
     'Triage ticket {ticket_key}: {summary}

{description}',
     'none', NULL, '2026-12-03T00:00:00Z'),
    ('research', 'researcher',
     'Research what ticket {ticket_key} asks: {summary}

{description}

{earlier_outputs}',
     'none', NULL, '2026-12-03T00:00:00Z'),
    ('report', 'researcher',
     'Write the spike report for {ticket_key} from the research so far.

{earlier_outputs}',
     'none', 'spike_notes', '2026-12-03T00:00:00Z'),
    ('plan', 'planner',
     'Plan the change ticket {ticket_key} asks for: {summary}

{description}

{earlier_outputs}',
     'plan_approval', 'plan', '2026-12-03T00:00:00Z'),
    ('risk', 'risk',
     'Review the approved plan for {ticket_key} for risks.

{earlier_outputs}',
     'risk_acknowledgement', 'risk_report', '2026-12-03T00:00:00Z'),
    ('implement', 'implementer',
     'Implement the approved plan for {ticket_key}: {summary}

{earlier_outputs}',
     'none', NULL, '2026-12-03T00:00:00Z'),
    ('reproduce', 'implementer',
     'Reproduce the bug of {ticket_key} with a failing test first; do not fix it yet.

{description}

{earlier_outputs}',
     'none', NULL, '2026-12-03T00:00:00Z'),
    ('fix', 'implementer',
     'Fix the bug of {ticket_key} so the failing test passes.

{earlier_outputs}',
     'none', NULL, '2026-12-03T00:00:00Z'),
    ('test', 'tester',
     'Run and extend the tests for the change of {ticket_key}.

{earlier_outputs}',
     'none', 'test_results', '2026-12-03T00:00:00Z'),
    ('self_review', 'reviewer',
     'Review the change for {ticket_key} as a careful colleague would.

{earlier_outputs}',
     'none', NULL, '2026-12-03T00:00:00Z'),
    ('pull_request', 'pr_author',
     'Write the pull request title and body for {ticket_key}: {summary}

{earlier_outputs}',
     'none', 'pr_link', '2026-12-03T00:00:00Z');

INSERT INTO cycle_phase_config (cycle_type, position, phase) VALUES
    ('spike', 1, 'triage'), ('spike', 2, 'research'), ('spike', 3, 'report'),
    ('backend', 1, 'triage'), ('backend', 2, 'plan'), ('backend', 3, 'risk'),
    ('backend', 4, 'implement'), ('backend', 5, 'test'), ('backend', 6, 'self_review'),
    ('backend', 7, 'pull_request'),
    ('frontend', 1, 'triage'), ('frontend', 2, 'plan'), ('frontend', 3, 'risk'),
    ('frontend', 4, 'implement'), ('frontend', 5, 'test'), ('frontend', 6, 'self_review'),
    ('frontend', 7, 'pull_request'),
    ('fullstack', 1, 'triage'), ('fullstack', 2, 'plan'), ('fullstack', 3, 'risk'),
    ('fullstack', 4, 'implement'), ('fullstack', 5, 'test'), ('fullstack', 6, 'self_review'),
    ('fullstack', 7, 'pull_request'),
    ('oncall_bug', 1, 'triage'), ('oncall_bug', 2, 'reproduce'), ('oncall_bug', 3, 'fix'),
    ('oncall_bug', 4, 'test'), ('oncall_bug', 5, 'pull_request');

INSERT INTO cycle_rules (position, cycle_type, issue_type, label, summary_word, created_at) VALUES
    (1, 'oncall_bug', NULL, 'oncall', NULL, '2026-12-03T00:00:00Z'),
    (2, 'oncall_bug', 'Bug', 'production', NULL, '2026-12-03T00:00:00Z'),
    (3, 'spike', 'Spike', NULL, NULL, '2026-12-03T00:00:00Z'),
    (4, 'spike', NULL, 'spike', NULL, '2026-12-03T00:00:00Z'),
    (5, 'frontend', NULL, 'frontend', NULL, '2026-12-03T00:00:00Z'),
    (6, 'backend', NULL, 'backend', NULL, '2026-12-03T00:00:00Z');
