"""Spare worktrees: checked out ahead of time so that a new session is ready at once.

Writing thousands of files is most of the cost of a new worktree. A spare is a worktree
checked out ahead of time (detached, locked) at the default branch's tip; a new session
moves it into place and switches it to its branch, which rewrites only the files that
differ. It is refilled in the background after each hand-out; when none is ready a
session falls back to a plain `git worktree add`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from bot.gitops.runner import GitError, run_git
from bot.gitops.worktree_list import list_worktrees
from bot.tasks import stop_tasks
from bot.worktrees import disk
from bot.worktrees.layout import WorktreeLayout
from bot.worktrees.mirrors import Mirrors
from bot.worktrees.records import lock_reason
from storage import repositories as repository_store
from storage.database import Database
from storage.repositories import Repository
from storage.worktrees import WorktreeSession

log = logging.getLogger(__name__)


class SparePool:
    """Taking, refilling and discarding spare worktrees (`WORKTREE_SPARES` per repository)."""

    def __init__(
        self,
        db: Database,
        layout: WorktreeLayout,
        mirrors: Mirrors,
        *,
        per_repository: int,
        new_id: Callable[[], str],
    ) -> None:
        self._db = db
        self._layout = layout
        self._mirrors = mirrors
        self._per_repository = per_repository
        self._new_id = new_id
        self._ready: dict[int, list[tuple[Path, str]]] = {}  # (path, checked-out sha)
        self._sizes: dict[str, int] = {}  # measured in the background at refill
        self._taken_sizes: dict[str, int | None] = {}  # by the path a spare was moved to
        self._refills: dict[int, asyncio.Task[None]] = {}
        self._refill_locks: dict[int, asyncio.Lock] = {}

    async def take(
        self,
        mirror: Path,
        repository: Repository,
        session: WorktreeSession,
        path: Path,
        start: str,
        branch_exists: bool,
    ) -> bool:
        """Move a ready spare to `path` on the session's branch (mirror lock held)."""
        ready = self._ready.get(repository.id)
        if not ready:
            return False
        spare, spare_sha = ready.pop(0)
        try:
            await _move_spare(mirror, spare, spare_sha, session, path, start, branch_exists)
        except GitError as error:
            log.warning("%s: spare unusable (%s); adding a worktree", repository.full_name, error)
            for leftover in (spare, path):
                await _force_remove(mirror, leftover)
                await asyncio.to_thread(shutil.rmtree, leftover, True)
            await run_git("worktree", "prune", cwd=mirror, check=False)
            return False
        self._taken_sizes[str(path)] = self._sizes.pop(str(spare), None)
        return True

    def taken_size(self, path: str) -> int | None:
        """The size measured of the spare moved to `path` (once; None if it was no spare)."""
        return self._taken_sizes.pop(path, None)

    def schedule_refill(self, repository: Repository) -> None:
        if self._per_repository <= 0:
            return
        running = self._refills.get(repository.id)
        if running is None or running.done():
            self._refills[repository.id] = asyncio.create_task(
                self._refill_logged(repository), name=f"worktree-spare-{repository.slug}"
            )

    async def _refill_logged(self, repository: Repository) -> None:
        try:
            await self.prepare_spares(repository)
        except Exception:
            log.exception("%s: spare worktree not prepared", repository.full_name)

    async def prepare_spares(self, repository: Repository) -> int:
        """Check spares out until the repository has its count ready; returns how many."""
        ready = self._ready.setdefault(repository.id, [])
        refill_lock = self._refill_locks.setdefault(repository.id, asyncio.Lock())
        async with refill_lock:
            while len(ready) < self._per_repository:
                await self._add_spare(repository, ready)
        return len(ready)

    async def spares_ready(self, repository: Repository) -> int:
        """Wait for the background refill (if one runs), then make sure spares are ready."""
        running = self._refills.get(repository.id)
        if running is not None:
            await asyncio.shield(running)
        return await self.prepare_spares(repository)

    async def _add_spare(self, repository: Repository, ready: list[tuple[Path, str]]) -> None:
        mirror = self._layout.mirror_path(repository)
        path = self._layout.spares_dir / repository.slug / self._new_id()
        path.parent.mkdir(parents=True, exist_ok=True)
        async with self._mirrors.lock(repository):
            fresh = await repository_store.get(self._db, repository.id) or repository
            start = f"refs/remotes/origin/{fresh.default_branch or 'main'}"
            # Registered without files under the lock; the slow checkout runs outside it,
            # in the spare's own index, so it never delays another job's git operations.
            await run_git(
                "worktree", "add", "--quiet", "--no-checkout", "--detach", "--lock",
                "--reason", "biagent spare", str(path), start, cwd=mirror,
            )  # fmt: skip
        await run_git("reset", "--quiet", "--hard", cwd=path)
        sha = (await run_git("rev-parse", "HEAD", cwd=path)).stdout.strip()
        self._sizes[str(path)] = await asyncio.to_thread(disk.allocated_bytes, path)
        ready.append((path, sha))

    async def discard(self, repository: Repository | None = None) -> None:
        """Remove spare worktrees (all of them, or one repository's)."""
        for current in await repository_store.list_all(self._db):
            if repository is not None and current.id != repository.id:
                continue
            self._ready.pop(current.id, None)
            mirror = self._layout.mirror_path(current)
            spare_root = self._layout.spares_dir / current.slug
            if (mirror / "HEAD").is_file():
                async with self._mirrors.lock(current):
                    for entry in await list_worktrees(mirror):
                        if entry.path.parent == spare_root:
                            await _force_remove(mirror, entry.path)
                    await run_git("worktree", "prune", cwd=mirror, check=False)
            await asyncio.to_thread(shutil.rmtree, spare_root, True)

    async def stop_refill(self, repository: Repository) -> None:
        """Cancel the repository's background refill, if one runs (it is being forgotten)."""
        running = self._refills.pop(repository.id, None)
        if running is not None:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running

    async def close(self) -> None:
        """Stop background spare refills (the app's shutdown)."""
        await stop_tasks(list(self._refills.values()))
        self._refills.clear()


async def _move_spare(
    mirror: Path,
    spare: Path,
    spare_sha: str,
    session: WorktreeSession,
    path: Path,
    start: str,
    branch_exists: bool,
) -> None:
    """Move the spare worktree to `path`, locked for the session, on the session's branch."""
    reason = lock_reason(session)
    start_sha = (await run_git("rev-parse", f"{start}^{{commit}}", cwd=mirror)).stdout
    await run_git("worktree", "unlock", str(spare), cwd=mirror)
    await run_git("worktree", "move", str(spare), str(path), cwd=mirror)
    await run_git("worktree", "lock", "--reason", reason, str(path), cwd=mirror)
    if branch_exists:
        await run_git("switch", "--quiet", session.branch, cwd=path)
    elif start_sha.strip() == spare_sha:
        # Same commit: what `switch -c` would do, without re-reading every file.
        await run_git("branch", "--no-track", session.branch, spare_sha, cwd=mirror)
        await run_git("symbolic-ref", "HEAD", f"refs/heads/{session.branch}", cwd=path)
    else:
        await run_git("switch", "--quiet", "--no-track", "-c", session.branch, start, cwd=path)


async def _force_remove(mirror: Path, worktree: Path) -> None:
    await run_git("worktree", "unlock", str(worktree), cwd=mirror, check=False)
    await run_git("worktree", "remove", "--force", str(worktree), cwd=mirror, check=False)
