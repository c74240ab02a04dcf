"""One worktree of a session: its row written first, the mirror fetched, then the worktree
added on the session's branch (a spare moved into place, or `git worktree add --lock`) and
announced with its block of ports."""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from bot.clock import Clock
from bot.config import Secret
from bot.events.bus import EventBus
from bot.gitops.runner import run_git
from bot.gitops.worktree_list import list_worktrees
from bot.worktrees.events import WorktreeRepoCreated
from bot.worktrees.layout import WorktreeLayout
from bot.worktrees.mirrors import Mirrors
from bot.worktrees.records import WorktreeBusy, WorktreeError, lock_reason
from bot.worktrees.spares import SparePool
from bot.worktrees.states import RepoStatus
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.database import Database
from storage.repositories import Repository
from storage.worktrees import WorktreeRepo, WorktreeSession

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorktreeSource:
    """Where a new worktree starts and where it pushes to."""

    push_url: str | None
    push_ref: str | None
    pr_number: int | None = None
    base_ref: str | None = None  # a branch of the remote; the default branch when None
    fetch_from: tuple[str, str] | None = None  # (url, branch): a pull request's head


@dataclass(frozen=True, slots=True)
class PortBlocks:
    first: int
    size: int


class WorktreeCheckout:
    """Adding one repository's worktree to a session."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        clock: Clock,
        *,
        layout: WorktreeLayout,
        mirrors: Mirrors,
        spares: SparePool,
        ports: PortBlocks,
    ) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._layout = layout
        self._mirrors = mirrors
        self._spares = spares
        self._ports = ports

    async def add_worktree(
        self,
        session: WorktreeSession,
        repository: Repository,
        source: WorktreeSource,
        *,
        installation_token: Secret | str | None,
    ) -> WorktreeRepo:
        """The worktree made and recorded; on any failure its row is marked removed."""
        token = await self._mirrors.token(repository, installation_token)
        path = self._layout.worktree_path(session.id, repository)
        row = await worktree_store.add_repo(
            self._db,
            session_id=session.id,
            repository_id=repository.id,
            path=str(path),
            branch=session.branch,
            port_block=self._ports.size,
            first_port=self._ports.first,
            push_url=source.push_url,
            push_ref=source.push_ref,
            pr_number=source.pr_number,
            now=self._clock.now(),
        )
        try:
            base_sha, recorded_sha = await self._make_worktree(
                session, repository, path, token, source
            )
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, path, True)
            await worktree_store.update_repo(
                self._db, row.id, now=self._clock.now(), status=RepoStatus.REMOVED, port_base=None
            )
            raise
        await worktree_store.update_repo(
            self._db,
            row.id,
            now=self._clock.now(),
            status=RepoStatus.CREATED,
            base_sha=base_sha,
            recorded_sha=recorded_sha,
        )
        created = WorktreeRepoCreated(
            session_id=session.id,
            repository=repository.full_name,
            path=str(path),
            branch=session.branch,
            ports=[row.port_base, (row.port_base or 0) + self._ports.size - 1],
        )
        await self._bus.publish(session.stream, created)
        fresh_row = await worktree_store.get_repo(self._db, row.id)
        if fresh_row is None:
            raise WorktreeError(f"{path}: its worktree row vanished while it was created")
        return fresh_row

    async def _make_worktree(
        self,
        session: WorktreeSession,
        repository: Repository,
        path: Path,
        token: Secret | None,
        source: WorktreeSource,
    ) -> tuple[str, str | None]:
        """Fetch, then add the worktree; returns (base sha, recorded sha: a PR head's)."""
        recorded_sha = None
        async with self._mirrors.lock(repository):
            mirror = await self._mirrors.ensure_locked(repository, token)
            if source.fetch_from is not None:
                url, ref = source.fetch_from
                start = await self._mirrors.fetch_pull_request_head(
                    mirror, url, ref, source.pr_number, token
                )
                recorded_sha = start
            else:
                fresh = await repository_store.get(self._db, repository.id)
                default = fresh.default_branch if fresh else None
                start = f"refs/remotes/origin/{source.base_ref or default or 'main'}"
            base = await run_git("rev-parse", "--verify", f"{start}^{{commit}}", cwd=mirror)
            await self._git_worktree_add(
                mirror, repository, session, path, start, move_branch=source.fetch_from is not None
            )
        return base.stdout.strip(), recorded_sha

    async def _git_worktree_add(
        self,
        mirror: Path,
        repository: Repository,
        session: WorktreeSession,
        path: Path,
        start: str,
        *,
        move_branch: bool = False,
    ) -> None:
        """Add the worktree on the session's branch. An existing branch is continued, or with
        `move_branch` (a pull request's checkout) moved to `start` first."""
        branch_ref = f"refs/heads/{session.branch}"
        exists = await run_git(
            "rev-parse", "--verify", "--quiet", branch_ref, cwd=mirror, check=False
        )
        branch_exists = exists.returncode == 0
        path.parent.mkdir(parents=True, exist_ok=True)
        if branch_exists:
            in_use = [
                entry
                for entry in await list_worktrees(mirror)
                if entry.branch == branch_ref and entry.path.exists()
            ]
            if in_use:
                raise WorktreeBusy(
                    f"{session.branch} is checked out in {in_use[0].path}; one job per branch"
                )
            if move_branch:
                await _move_branch(mirror, session.branch, start)
        if await self._spares.take(mirror, repository, session, path, start, branch_exists):
            return
        reason = lock_reason(session)
        if branch_exists:
            # The branch survives from an earlier job of the same owner: continue its work.
            await run_git(
                "worktree", "add", "--quiet", "--lock", "--reason", reason, str(path),
                session.branch, cwd=mirror,
            )  # fmt: skip
        else:
            await run_git(
                "worktree", "add", "--quiet", "--lock", "--reason", reason, "--no-track",
                "-b", session.branch, str(path), start, cwd=mirror,
            )  # fmt: skip


async def _move_branch(mirror: Path, branch: str, start: str) -> None:
    """Point a branch no worktree has checked out at `start`.

    A pull request's session must start from the head just fetched, because that sha is
    the lease of its push: a branch kept from an earlier session (its unpushed commits on
    an older head) pushed with a lease on the new head would replace the commits in
    between. `git branch --force` refuses a branch checked out anywhere, and the caller
    has made sure none is. The old tip is logged: its objects stay in the mirror.
    """
    old_tip = (await run_git("rev-parse", f"refs/heads/{branch}", cwd=mirror)).stdout.strip()
    new_tip = (await run_git("rev-parse", f"{start}^{{commit}}", cwd=mirror)).stdout.strip()
    if old_tip == new_tip:
        return
    log.info("%s: %s moved from %s to the fetched head %s", mirror.name, branch,
             old_tip[:12], new_tip[:12])  # fmt: skip
    await run_git("branch", "--quiet", "--force", "--no-track", branch, new_tip, cwd=mirror)
