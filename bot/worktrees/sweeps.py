"""The scheduled sweep and what it removes: sessions of merged or closed pull requests (their
state decides, bot/worktrees/cleanup.py), idle sessions, orphans no session owns; and
forgetting a repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from datetime import timedelta
from pathlib import Path

from bot.worktrees.cleanup import PullRequestState, decide_cleanup
from bot.worktrees.git import list_worktrees
from bot.worktrees.quotas import Quotas
from bot.worktrees.records import WorktreeBusy
from bot.worktrees.spares import Spares
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.repositories import Repository
from storage.timestamps import from_text

log = logging.getLogger(__name__)


class Sweeps(Spares, Quotas):
    """Cleaning what has ended: merged or closed pull requests, idle sessions, orphans."""

    async def cleanup_for_pull_request(
        self, full_name: str, pr_number: int, state: PullRequestState
    ) -> list[str]:
        """The PR's state decides (squash merges included); returns the sessions cleaned."""
        decision = decide_cleanup(state)
        repository = await repository_store.get_by_name(self.db, full_name)
        if repository is None or not decision.remove_worktree:
            return []
        cleaned = []
        rows = await worktree_store.live_repos_for_pull_request(self.db, repository.id, pr_number)
        for session_id in dict.fromkeys(row.session_id for row in rows):
            if await self.cleanup_session(
                session_id,
                f"{decision.reason} ({full_name}#{pr_number})",
                force_delete_branch=decision.force_delete_branch,
            ):
                cleaned.append(session_id)
        return cleaned

    async def check_and_cleanup_merged(self) -> list[str]:
        """Scheduled: ask GitHub about every PR a live worktree belongs to; clean the ended."""
        if self.pull_request_state is None:
            return []
        cleaned: list[str] = []
        seen: set[tuple[int, int]] = set()
        for row in await worktree_store.live_repos(self.db):
            if row.pr_number is None or (row.repository_id, row.pr_number) in seen:
                continue
            seen.add((row.repository_id, row.pr_number))
            repository = await repository_store.get(self.db, row.repository_id)
            if repository is None:
                continue
            try:
                state = await self.pull_request_state(repository, row.pr_number)
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
        now = self.clock.now()
        cleaned = []
        for view in await self.list_sessions():
            if view.session.held_by is not None or view.status in ("creating", "cleaning"):
                continue
            ttls = []
            for row in view.repos:
                repository = await repository_store.get(self.db, row.repository_id)
                if repository is not None and repository.idle_ttl_seconds is not None:
                    ttls.append(float(repository.idle_ttl_seconds))
            ttl = min(ttls) if ttls else self.default_idle_ttl_s
            idle = now - from_text(view.session.last_used_at)
            if idle > timedelta(seconds=ttl):
                hours = idle.total_seconds() / 3600
                if await self.cleanup_session(view.id, f"idle for {hours:.1f} h"):
                    cleaned.append(view.id)
        return cleaned

    async def cleanup_orphans(self) -> list[str]:
        """Remove worktree directories and git worktrees that no live session owns."""
        live_paths = {Path(row.path) for row in await worktree_store.live_repos(self.db)}
        live_sessions = {view.id for view in await self.list_sessions()}
        removed: list[str] = []
        for repository in await repository_store.list_all(self.db):
            mirror = self.mirror_path(repository)
            if not (mirror / "HEAD").is_file():
                continue
            for entry in await list_worktrees(mirror):
                path = entry.path
                if path in live_paths or not path.is_relative_to(self.sessions_dir):
                    continue
                await self._remove_worktree(
                    repository, entry.path, (entry.branch or "").removeprefix("refs/heads/"),
                    force_delete_branch=False,
                )  # fmt: skip
                removed.append(str(entry.path))
        if self.sessions_dir.is_dir():
            for session_dir in sorted(self.sessions_dir.iterdir()):
                if session_dir.name in live_sessions:
                    for child in sorted(session_dir.iterdir()):
                        if child not in live_paths:
                            await asyncio.to_thread(_remove_path, child)
                            removed.append(str(child))
                    continue
                await asyncio.to_thread(_remove_path, session_dir)
                removed.append(str(session_dir))
        for partial in (
            sorted(self.mirrors_dir.glob("*.partial")) if self.mirrors_dir.is_dir() else []
        ):
            await asyncio.to_thread(shutil.rmtree, partial, True)
            removed.append(str(partial))
        for path in removed:
            log.info("orphan removed: %s", path)
        return removed

    async def sweep(self) -> dict[str, list[str]]:
        """The scheduled pass: merged/closed PRs, idle sessions, sizes, orphans."""
        report = {
            "merged": await self.check_and_cleanup_merged(),
            "idle": await self.cleanup_idle(),
        }
        await self.measure()
        report["orphans"] = await self.cleanup_orphans()
        return report

    async def run_sweeps(self, interval_s: float) -> None:
        """Sweep forever on the injected clock (a task of the app's lifecycle)."""
        while True:
            await self.clock.sleep(interval_s)
            try:
                await self.sweep()
            except Exception:
                log.exception("worktree sweep failed")

    async def forget_repository(self, repository: Repository, *, force: bool = False) -> None:
        """Before unregistering: clean its sessions (only when `force` if any), its mirror and
        its package caches."""
        live = [
            view
            for view in await self.list_sessions()
            if any(r.repository_id == repository.id and r.status != "removed" for r in view.repos)
        ]
        if live and not force:
            raise WorktreeBusy(
                f"{repository.full_name} has {len(live)} live worktree session(s);"
                " delete them first or force"
            )
        for view in live:
            await self.cleanup_session(view.id, f"{repository.full_name} unregistered", force=True)
        running = self._refills.pop(repository.id, None)
        if running is not None:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running
        await self._discard_spares(repository)
        async with self._lock(repository):
            await asyncio.to_thread(shutil.rmtree, self.mirror_path(repository), True)
        await asyncio.to_thread(shutil.rmtree, self.cache_path(repository.id), True)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
