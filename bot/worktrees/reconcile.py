"""Start-up reconciliation: make the tables and the disk agree after a crash."""

from __future__ import annotations

import logging
from pathlib import Path

from bot.worktrees.git import list_worktrees, run_git
from bot.worktrees.records import ReconcileReport
from bot.worktrees.sweeps import Sweeps
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.worktrees import WorktreeRepo, WorktreeSession

log = logging.getLogger(__name__)


class Reconciliation(Sweeps):
    """Repairing what a crash left (call `reconcile` once at start-up)."""

    async def reconcile(self) -> ReconcileReport:
        """Make the tables and the disk agree after a crash (call once at start-up).

        A session caught while being created or cleaned is cleaned; one caught in setup is
        marked failed (its worktree is kept; run_setup again). A live worktree missing on disk
        ends its session; a live one found unlocked is locked again and a stale index.lock
        (no git of ours runs yet) is removed. Worktrees and directories no session owns go.
        """
        repaired: list[str] = []
        cleaned: list[str] = []
        now = self.clock.now()
        # Spares are not in the tables; whatever a crash left of them is rebuilt on demand.
        await self._discard_spares()
        for view in await self.list_sessions():
            session = view.session
            if session.status in ("creating", "cleaning"):
                reason = (
                    "interrupted while being created"
                    if session.status == "creating"
                    else "cleanup finished after a restart"
                )
                await self.cleanup_session(session.id, reason, force=True)
                cleaned.append(session.id)
                continue
            missing = [
                row
                for row in view.repos
                if row.status != "removed" and not _is_worktree(Path(row.path))
            ]
            if missing:
                await self.cleanup_session(session.id, "worktree missing on disk", force=True)
                cleaned.append(session.id)
                continue
            if session.held_by is not None:
                # The job that held it died with the process.
                await worktree_store.release_session(self.db, session.id, now=now)
            if session.status == "setting_up" or any(
                r.status == "setup_running" for r in view.repos
            ):
                for row in view.repos:
                    if row.status in ("setup_running", "created"):
                        await worktree_store.update_repo(
                            self.db, row.id, now=now, status="setup_failed"
                        )
                await worktree_store.set_session_status(
                    self.db, session.id, "failed", now=now,
                    error="setup interrupted by a restart; run setup again",
                )  # fmt: skip
                repaired.append(session.id)
            for row in view.repos:
                if row.status != "removed" and await self._relock(row, session):
                    repaired.append(session.id)
        orphans = await self.cleanup_orphans()
        report = ReconcileReport(tuple(dict.fromkeys(repaired)), tuple(cleaned), tuple(orphans))
        if repaired or cleaned or orphans:
            log.info(
                "worktrees reconciled: %d repaired, %d cleaned, %d orphans removed",
                len(report.repaired),
                len(cleaned),
                len(orphans),
            )
        return report

    async def _relock(self, row: WorktreeRepo, session: WorktreeSession) -> bool:
        """Lock the worktree again if it is not, drop a stale index.lock; True if it did."""
        repository = await repository_store.get(self.db, row.repository_id)
        if repository is None:
            return False
        mirror = self.mirror_path(repository)
        changed = False
        async with self._lock(repository):
            entries = {entry.path: entry for entry in await list_worktrees(mirror)}
            entry = entries.get(Path(row.path))
            if entry is not None and not entry.locked:
                reason = f"biagent session {session.id} ({session.owner})"
                await run_git("worktree", "lock", "--reason", reason, row.path, cwd=mirror)
                changed = True
            git_dir = await run_git(
                "rev-parse", "--absolute-git-dir", cwd=Path(row.path), optional_locks=False
            )
            stale = Path(git_dir.stdout.strip()) / "index.lock"
            if stale.exists():
                stale.unlink()
                changed = True
        return changed


def _is_worktree(path: Path) -> bool:
    return (path / ".git").is_file()
