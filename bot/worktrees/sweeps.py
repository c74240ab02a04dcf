"""The scheduled sweep and what it removes: sessions of merged or closed pull requests (their
state decides, bot/worktrees/cleanup.py), idle sessions, orphans no session owns.

Each instance sweeps its own disk: the sessions it removes are its own (bot/worktrees/views.py),
and an orphan is what no live session of any instance names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from datetime import timedelta
from pathlib import Path

from bot.clock import Clock
from bot.gitops.worktree_list import list_worktrees
from bot.worktrees.cleanup import PullRequestLookup, PullRequestState, decide_cleanup
from bot.worktrees.layout import WorktreeLayout
from bot.worktrees.quotas import Quotas
from bot.worktrees.records import SessionView
from bot.worktrees.removal import Removal
from bot.worktrees.states import SessionStatus
from bot.worktrees.views import SessionViews
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.database import Database
from storage.timestamps import from_text

log = logging.getLogger(__name__)


class Sweeper:
    """Cleaning what has ended: merged or closed pull requests, idle sessions, orphans."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        layout: WorktreeLayout,
        views: SessionViews,
        removal: Removal,
        quotas: Quotas,
        pull_request_state: PullRequestLookup | None,
        idle_ttl_s: float,
    ) -> None:
        self._db = db
        self._clock = clock
        self._layout = layout
        self._views = views
        self._removal = removal
        self._quotas = quotas
        self._pull_request_state = pull_request_state
        self._idle_ttl_s = idle_ttl_s

    async def cleanup_for_pull_request(
        self, full_name: str, pr_number: int, state: PullRequestState
    ) -> list[str]:
        """The PR's state decides (squash merges included); returns the sessions cleaned."""
        decision = decide_cleanup(state)
        repository = await repository_store.get_by_name(self._db, full_name)
        if repository is None or not decision.remove_worktree:
            return []
        cleaned = []
        rows = await worktree_store.live_repos_for_pull_request(
            self._db, repository.id, pr_number, instance_id=self._views.instance_id
        )
        for session_id in dict.fromkeys(row.session_id for row in rows):
            if await self._removal.cleanup_session(
                session_id,
                f"{decision.reason} ({full_name}#{pr_number})",
                force_delete_branch=decision.force_delete_branch,
            ):
                cleaned.append(session_id)
        return cleaned

    async def check_and_cleanup_merged(self) -> list[str]:
        """Scheduled: ask GitHub about every PR a live worktree belongs to; clean the ended."""
        if self._pull_request_state is None:
            return []
        cleaned: list[str] = []
        seen: set[tuple[int, int]] = set()
        for row in await worktree_store.live_repos(self._db, instance_id=self._views.instance_id):
            if row.pr_number is None or (row.repository_id, row.pr_number) in seen:
                continue
            seen.add((row.repository_id, row.pr_number))
            repository = await repository_store.get(self._db, row.repository_id)
            if repository is None:
                continue
            try:
                state = await self._pull_request_state(repository, row.pr_number)
            except Exception as error:
                log.warning("%s#%d: state unknown (%s)", repository.full_name, row.pr_number, error)
                continue
            if state is not None:
                cleaned += await self.cleanup_for_pull_request(
                    repository.full_name, row.pr_number, state
                )
        return cleaned

    async def cleanup_idle(self) -> list[str]:
        """Clean sessions unused for longer than their repositories' idle TTL (never held)."""
        now = self._clock.now()
        cleaned = []
        for view in await self._views.list_sessions():
            if view.session.held_by is not None or view.status in (
                SessionStatus.CREATING,
                SessionStatus.CLEANING,
            ):
                continue
            idle = now - from_text(view.session.last_used_at)
            if idle > timedelta(seconds=await self._idle_ttl_of(view)):
                hours = idle.total_seconds() / 3600
                if await self._removal.cleanup_session(view.id, f"idle for {hours:.1f} h"):
                    cleaned.append(view.id)
        return cleaned

    async def _idle_ttl_of(self, view: SessionView) -> float:
        """The shortest idle TTL among the session's repositories, or the default."""
        ttls = []
        for row in view.repos:
            repository = await repository_store.get(self._db, row.repository_id)
            if repository is not None and repository.idle_ttl_seconds is not None:
                ttls.append(float(repository.idle_ttl_seconds))
        return min(ttls) if ttls else self._idle_ttl_s

    async def cleanup_orphans(self) -> list[str]:
        """Remove worktree directories and git worktrees that no live session owns."""
        # Any instance's: on another machine its paths are not here anyway, and two instances
        # given one WORKTREE_ROOT by mistake must not remove each other's worktrees.
        live_paths = {Path(row.path) for row in await worktree_store.live_repos(self._db)}
        live_sessions = {view.id for view in await self._views.list_sessions(anywhere=True)}
        removed = await self._orphaned_git_worktrees(live_paths)
        removed += await self._orphaned_directories(live_paths, live_sessions)
        mirrors_dir = self._layout.mirrors_dir
        for partial in sorted(mirrors_dir.glob("*.partial")) if mirrors_dir.is_dir() else []:
            await asyncio.to_thread(shutil.rmtree, partial, True)
            removed.append(partial)
        for path in removed:
            log.info("orphan removed: %s", path)
        return [str(path) for path in removed]

    async def _orphaned_git_worktrees(self, live_paths: set[Path]) -> list[Path]:
        removed = []
        for repository in await repository_store.list_all(self._db):
            mirror = self._layout.mirror_path(repository)
            if not (mirror / "HEAD").is_file():
                continue
            for entry in await list_worktrees(mirror):
                if entry.path in live_paths or not entry.path.is_relative_to(
                    self._layout.sessions_dir
                ):
                    continue
                branch = (entry.branch or "").removeprefix("refs/heads/")
                await self._removal.remove_worktree(
                    repository, entry.path, branch, force_delete_branch=False
                )
                removed.append(entry.path)
        return removed

    async def _orphaned_directories(
        self, live_paths: set[Path], live_sessions: set[str]
    ) -> list[Path]:
        sessions_dir = self._layout.sessions_dir
        if not sessions_dir.is_dir():
            return []
        removed = []
        for session_dir in sorted(sessions_dir.iterdir()):
            if session_dir.name not in live_sessions:
                await asyncio.to_thread(_remove_path, session_dir)
                removed.append(session_dir)
                continue
            for child in sorted(session_dir.iterdir()):
                if child not in live_paths:
                    await asyncio.to_thread(_remove_path, child)
                    removed.append(child)
        return removed

    async def sweep_once(self) -> dict[str, list[str]]:
        """One scheduled pass: merged/closed PRs, idle sessions, sizes, orphans."""
        report = {
            "merged": await self.check_and_cleanup_merged(),
            "idle": await self.cleanup_idle(),
        }
        await self._quotas.measure()
        report["orphans"] = await self.cleanup_orphans()
        return report


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
