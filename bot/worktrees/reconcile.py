"""Start-up reconciliation: make the tables and the disk agree after a crash."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from bot.clock import Clock
from bot.gitops.runner import run_git
from bot.gitops.worktree_list import list_worktrees
from bot.isolation.git_jail import finish_interrupted_git_jail
from bot.worktrees.layout import WorktreeLayout
from bot.worktrees.mirrors import Mirrors
from bot.worktrees.records import ReconcileReport, SessionView, lock_reason
from bot.worktrees.removal import Removal
from bot.worktrees.spares import SparePool
from bot.worktrees.states import RepoStatus, SessionStatus
from bot.worktrees.sweeps import Sweeper
from bot.worktrees.views import SessionViews
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.database import Database
from storage.worktrees import WorktreeRepo, WorktreeSession

log = logging.getLogger(__name__)


class Reconciler:
    """Repairing what a crash left (call `reconcile` once at start-up)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        layout: WorktreeLayout,
        views: SessionViews,
        mirrors: Mirrors,
        removal: Removal,
        spares: SparePool,
        sweeper: Sweeper,
    ) -> None:
        self._db = db
        self._clock = clock
        self._layout = layout
        self._views = views
        self._mirrors = mirrors
        self._removal = removal
        self._spares = spares
        self._sweeper = sweeper

    async def reconcile(self) -> ReconcileReport:
        """Make the tables and the disk agree after a crash (call once at start-up); never
        raises for one broken session or a deleted mirror (logged, the rest goes on).

        A session caught while being created or cleaned is cleaned; one caught in setup is
        marked failed (its worktree is kept; run_setup again). A live worktree missing on disk
        ends its session; a live one found unlocked is locked again, a sandboxed command's git
        jail the crash left is finished (its commit kept, HEAD attached again) and a stale
        index.lock (no git of ours runs yet) is removed. Worktrees and directories no session
        owns go.
        """
        repaired: list[str] = []
        cleaned: list[str] = []
        now = self._clock.now()
        # Spares are not in the tables; whatever a crash left of them is rebuilt on demand.
        await self._spares.discard()
        await self._adopt_what_is_here()
        for view in await self._views.list_sessions():
            try:
                await self._reconcile_session(view, now, repaired, cleaned)
            except Exception:
                # One broken session must not stop the service from starting: log, go on.
                log.exception("session %s: not reconciled", view.session.id)
        try:
            orphans = await self._sweeper.cleanup_orphans()
        except Exception:
            log.exception("orphaned worktrees not cleaned")
            orphans = []
        report = ReconcileReport(tuple(dict.fromkeys(repaired)), tuple(cleaned), tuple(orphans))
        if repaired or cleaned or orphans:
            log.info(
                "worktrees reconciled: %d repaired, %d cleaned, %d orphans removed",
                len(report.repaired),
                len(cleaned),
                len(orphans),
            )
        return report

    async def _adopt_what_is_here(self) -> None:
        """Sessions whose directory is on this disk are this instance's, whatever instance
        they name: this disk's own from before a restart (the identity is new at each start
        unless BIAGENT_INSTANCE_ID is set), or from before sessions recorded their instance.
        Those from before with no directory anywhere are taken too, and ended below."""
        sessions_dir, mine = self._layout.sessions_dir, self._views.instance_id
        here = {path.name for path in sessions_dir.iterdir()} if sessions_dir.is_dir() else set()
        adopted = [
            view.id
            for view in await self._views.list_sessions(anywhere=True)
            if view.session.instance_id != mine
            and (view.id in here or view.session.instance_id is None)
        ]
        if adopted:
            await worktree_store.move_sessions(self._db, adopted, mine)
            log.info(
                "worktrees: %d sessions found on this disk are instance %s's", len(adopted), mine
            )

    async def _reconcile_session(
        self, view: SessionView, now: datetime, repaired: list[str], cleaned: list[str]
    ) -> None:
        session = view.session
        if session.status in (SessionStatus.CREATING, SessionStatus.CLEANING):
            reason = (
                "interrupted while being created"
                if session.status == SessionStatus.CREATING
                else "cleanup finished after a restart"
            )
            await self._removal.cleanup_session(session.id, reason, force=True)
            cleaned.append(session.id)
            return
        missing = [
            row
            for row in view.repos
            if row.status != RepoStatus.REMOVED and not await self._present(row)
        ]
        if missing:
            await self._removal.cleanup_session(session.id, "worktree missing on disk", force=True)
            cleaned.append(session.id)
            return
        if session.held_by is not None:
            # The job that held it died with the process.
            await worktree_store.release_session(self._db, session.id, now=now)
        if session.status == SessionStatus.SETTING_UP or any(
            r.status == RepoStatus.SETUP_RUNNING for r in view.repos
        ):
            for row in view.repos:
                if row.status in (RepoStatus.SETUP_RUNNING, RepoStatus.CREATED):
                    await worktree_store.update_repo(
                        self._db, row.id, now=now, status=RepoStatus.SETUP_FAILED
                    )
            await worktree_store.set_session_status(
                self._db, session.id, SessionStatus.FAILED, now=now,
                error="setup interrupted by a restart; run setup again",
            )  # fmt: skip
            repaired.append(session.id)
        for row in view.repos:
            if row.status != RepoStatus.REMOVED and await self._relock(row, session):
                repaired.append(session.id)

    async def _relock(self, row: WorktreeRepo, session: WorktreeSession) -> bool:
        """Lock the worktree again if it is not, finish a git jail a crash left
        (bot/isolation/git_jail.py), drop a stale index.lock; True if it did any."""
        repository = await repository_store.get(self._db, row.repository_id)
        if repository is None:
            return False
        mirror = self._layout.mirror_path(repository)
        changed = False
        async with self._mirrors.lock(repository):
            entries = {entry.path: entry for entry in await list_worktrees(mirror)}
            entry = entries.get(Path(row.path))
            if entry is not None and not entry.locked:
                reason = lock_reason(session)
                await run_git("worktree", "lock", "--reason", reason, row.path, cwd=mirror)
                changed = True
            if await finish_interrupted_git_jail(Path(row.path)):
                log.info("%s: an interrupted sandbox git jail was finished", row.path)
                changed = True
            git_dir = await run_git(
                "rev-parse", "--absolute-git-dir", cwd=Path(row.path), optional_locks=False,
                check=False,
            )  # fmt: skip
            stale = Path(git_dir.stdout.strip()) / "index.lock"
            if git_dir.returncode == 0 and stale.exists():
                stale.unlink()
                changed = True
        return changed

    async def _present(self, row: WorktreeRepo) -> bool:
        """The worktree is on disk with its git dir, and its repository's mirror is there."""
        repository = await repository_store.get(self._db, row.repository_id)
        if repository is None or not (self._layout.mirror_path(repository) / "HEAD").is_file():
            return False
        return _is_worktree(Path(row.path))


def _is_worktree(path: Path) -> bool:
    """A linked worktree whose `.git` file names a git dir that still exists."""
    dot_git = path / ".git"
    try:
        if dot_git.is_symlink() or not dot_git.is_file():
            return False
        text = dot_git.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    if not text.startswith("gitdir:"):
        return False
    git_dir = path / text.removeprefix("gitdir:").strip()
    return (git_dir / "HEAD").is_file()
