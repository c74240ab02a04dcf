-- Review response beyond replies (issue 14): what biagent does on GitHub after a pushed
-- iteration besides writing comments, keyed so it is done once, as review_replies are:
-- resolving each thread the push fixed (GraphQL `resolveReviewThread`) and re-requesting
-- review from the reviewers whose comments it fixed. The intent is committed before the call
-- to GitHub, its end after; a kill in between finds the intent and looks before acting again.
CREATE TABLE review_actions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    pr_id            INTEGER NOT NULL REFERENCES pull_requests (id) ON DELETE CASCADE,
    iteration_id     INTEGER NOT NULL REFERENCES review_iterations (id) ON DELETE CASCADE,
    idempotency_key  TEXT NOT NULL UNIQUE,             -- resolve:<iteration>:<root>, rerequest:<iteration>
    kind             TEXT NOT NULL,                    -- resolve_thread, rerequest_review
    target           TEXT NOT NULL,                    -- the thread's root comment id; the logins, comma separated
    status           TEXT NOT NULL DEFAULT 'intent',   -- intent, done, skipped, failed
    detail           TEXT,                             -- the thread's node id; why skipped or failed
    created_at       TEXT NOT NULL,
    finished_at      TEXT
);
CREATE INDEX review_actions_by_pr ON review_actions (pr_id, id);
