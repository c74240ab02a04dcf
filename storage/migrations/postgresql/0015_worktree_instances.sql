-- Local disk across instances (issue 13): mirrors and worktrees stay on the disk of the
-- instance that made them, so each worktree session records that instance
-- (BIAGENT_INSTANCE_ID). An instance reconciles, sweeps, reuses and counts against its quotas
-- only its own sessions; another instance's session is absent on its disk, and a job moved
-- here makes its worktrees anew. NULL: made before this column, adopted by the first instance
-- that reconciles its worktrees (there was one process per database until then).
ALTER TABLE worktree_sessions ADD COLUMN instance_id TEXT;
CREATE INDEX worktree_sessions_by_instance ON worktree_sessions (instance_id, status);
