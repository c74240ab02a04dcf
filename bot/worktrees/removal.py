"""Removing a session's worktrees: unlock, remove, prune, and delete the branch where safe."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from bot.clock import Clock
from bot.events.bus import EventBus
from bot.gitops.runner import run_git
from bot.gitops.worktree_list import list_worktrees
from bot.worktrees.events import WorktreeSessionCleaned
from bot.worktrees.layout import WorktreeLayout
from bot.worktrees.mirrors import Mirrors
from bot.worktrees.states import RepoStatus, SessionStatus
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.database import Database
from storage.repositories import Repository

log = logging.getLogger(__name__)


class Removal:
    """Removing sessions and their worktrees and branches."""

    def __init__(
        self, db: Database, bus: EventBus, clock: Clock, layout: WorktreeLayout, mirrors: Mirrors
    ) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._layout = layout
        self._mirrors = mirrors

    async def cleanup_session(
        self,
        session_id: str,
        reason: str,
        *,
        force_delete_branch: bool = False,
        force: bool = False,
    ) -> bool:
        """Remove the session's worktrees, delete branches where safe, prune; False if held.

        A branch is deleted when `force_delete_branch` (its PR merged) or when every commit on
        it is also on a remote branch; otherwise it is kept and the removal says so.
        """
        session = await worktree_store.get_session(self._db, session_id)
        if session is None or session.status == SessionStatus.CLEANED:
            return False
        if session.held_by is not None and not force:
            log.info(
                "session %s is held by %s; not cleaned (%s)", session_id, session.held_by, reason
            )
            return False
        await worktree_store.set_session_status(
            self._db, session_id, SessionStatus.CLEANING, now=self._clock.now(), error=session.error
        )
        freed = 0
        kept_branches = []
        for row in await worktree_store.repos_of_session(self._db, session_id):
            if row.status == RepoStatus.REMOVED:
                continue
            repository = await repository_store.get(self._db, row.repository_id)
            if repository is None:
                continue
            freed += row.size_bytes or 0
            if not await self.remove_worktree(
                repository, Path(row.path), row.branch, force_delete_branch=force_delete_branch
            ):
                kept_branches.append(f"{repository.full_name}:{row.branch}")
        await asyncio.to_thread(shutil.rmtree, self._layout.sessions_dir / session_id, True)
        await worktree_store.mark_session_cleaned(
            self._db, session_id, reason=reason, now=self._clock.now()
        )
        cleaned = WorktreeSessionCleaned(
            session_id=session.id, reason=reason, freed_bytes=freed, kept_branches=kept_branches
        )
        await self._bus.publish(session.stream, cleaned)
        log.info("session %s cleaned (%s)", session_id, reason)
        return True

    async def remove_worktree(
        self, repository: Repository, path: Path, branch: str, *, force_delete_branch: bool
    ) -> bool:
        """Unlock, remove and prune one worktree; True when its branch was deleted too."""
        mirror = self._layout.mirror_path(repository)
        if not (mirror / "HEAD").is_file():
            await asyncio.to_thread(shutil.rmtree, path, True)
            return True
        async with self._mirrors.lock(repository):
            listed = {entry.path: entry for entry in await list_worktrees(mirror)}
            entry = listed.get(path)
            if entry is not None:
                if entry.locked:
                    await run_git("worktree", "unlock", str(path), cwd=mirror, check=False)
                if not entry.prunable:
                    await run_git(
                        "worktree", "remove", "--force", str(path), cwd=mirror, check=False
                    )
            await asyncio.to_thread(shutil.rmtree, path, True)
            await run_git("worktree", "prune", cwd=mirror)
            return await _delete_branch(mirror, branch, force_delete_branch)


async def _delete_branch(mirror: Path, branch: str, force: bool) -> bool:
    ref = f"refs/heads/{branch}"
    exists = await run_git("rev-parse", "--verify", "--quiet", ref, cwd=mirror, check=False)
    if exists.returncode != 0:
        return True
    still_used = [e for e in await list_worktrees(mirror) if e.branch == ref]
    if still_used:
        return False
    if not force:
        containing = await run_git(
            "for-each-ref", "--contains", ref, "--format=%(refname)", "refs/remotes/",
            cwd=mirror,
        )  # fmt: skip
        if not containing.stdout.strip():
            log.info("%s: %s has commits found on no remote branch; kept", mirror.name, branch)
            return False
    await run_git("branch", "--quiet", "-D", branch, cwd=mirror)
    return True
