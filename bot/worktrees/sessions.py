"""Creating sessions: the rows first, then per repository a fetch and a worktree on the
session's branch (a spare moved into place, or `git worktree add --lock`), then setup; and
holding a session while a job uses it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.config import Secret
from bot.worktrees.git import list_worktrees, run_git
from bot.worktrees.mirrors import Mirrors
from bot.worktrees.quotas import Quotas
from bot.worktrees.records import SessionView, WorktreeBusy, WorktreeError, branch_name
from bot.worktrees.setup_runner import Setup
from bot.worktrees.spares import Spares
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.repositories import Repository
from storage.timestamps import from_text
from storage.worktrees import WorktreeRepo, WorktreeSession

log = logging.getLogger(__name__)


class Sessions(Mirrors, Spares, Setup, Quotas):
    """Creating sessions and their worktrees; holding, releasing and showing them."""

    async def create_session(
        self,
        owner: str,
        repositories: Sequence[Repository],
        *,
        stream: str | None = None,
        installation_token: Secret | str | None = None,
        base_ref: str | None = None,
        run_setup: bool = True,
        wait_for_input: bool = True,
        pr_number: int | None = None,
    ) -> SessionView:
        """A worktree of each repository on `biagent/<owner>`, set up; several run in parallel.

        `owner` is a ticket key or `pr-<number>`. `base_ref` (a branch of the remote) defaults
        to each repository's default branch.
        """
        if not repositories:
            raise WorktreeError("a session needs at least one repository")
        session = await self._open_session(owner, repositories, stream)
        try:
            await asyncio.gather(
                *(
                    self._add_worktree(
                        session,
                        repository,
                        installation_token=installation_token,
                        start=None,
                        base_ref=base_ref,
                        push_url=repository.clone_url,
                        push_ref=session.branch,
                        pr_number=pr_number,
                    )
                    for repository in repositories
                )
            )
        except BaseException as error:
            await self._abandon(session, error)
            raise
        return await self._finish_session(session, repositories, run_setup, wait_for_input)

    async def _open_session(
        self, owner: str, repositories: Sequence[Repository], stream: str | None
    ) -> WorktreeSession:
        """Room made in each repository's quota, the session's row written and announced."""
        for repository in repositories:
            await self._make_room(repository)
        session_id = self.new_id()
        session = await worktree_store.create_session(
            self.db,
            session_id=session_id,
            owner=owner,
            branch=branch_name(owner),
            stream=stream or f"worktree:{session_id}",
            now=self.clock.now(),
        )
        await self._publish(
            session,
            "worktree_session_creating",
            {
                "repositories": [repository.full_name for repository in repositories],
                "owner": owner,
                "branch": session.branch,
            },
        )
        return session

    async def _finish_session(
        self,
        session: WorktreeSession,
        repositories: Sequence[Repository],
        run_setup: bool,
        wait_for_input: bool,
    ) -> SessionView:
        """Every worktree made: mark the session created, set it up, refill the spares."""
        await worktree_store.set_session_status(
            self.db, session.id, "created", now=self.clock.now()
        )
        try:
            if run_setup:
                await self.run_setup(session.id, wait_for_input=wait_for_input)
        finally:
            # After the job's own work, so the refill's checkout does not compete with it.
            for repository in repositories:
                self._schedule_refill(repository)
        view = await self.get(session.id)
        assert view is not None
        return view

    async def _abandon(self, session: WorktreeSession, error: BaseException) -> None:
        """A session whose worktrees could not all be made: say why, leave nothing behind."""
        await worktree_store.set_session_status(
            self.db, session.id, "failed", now=self.clock.now(), error=str(error)
        )
        await self._publish(session, "worktree_status", {"status": "failed", "detail": str(error)})
        await self.cleanup_session(session.id, f"creation failed: {error}", force=True)

    async def _add_worktree(
        self,
        session: WorktreeSession,
        repository: Repository,
        *,
        installation_token: Secret | str | None,
        start: str | None,
        base_ref: str | None,
        push_url: str | None,
        push_ref: str | None,
        pr_number: int | None,
        recorded_sha: str | None = None,
        fetch_from: tuple[str, str] | None = None,
    ) -> WorktreeRepo:
        token = await self._token(repository, installation_token)
        path = self.sessions_dir / session.id / repository.slug
        row = await worktree_store.add_repo(
            self.db,
            session_id=session.id,
            repository_id=repository.id,
            path=str(path),
            branch=session.branch,
            port_block=self.port_block,
            first_port=self.port_first,
            push_url=push_url,
            push_ref=push_ref,
            pr_number=pr_number,
            now=self.clock.now(),
        )
        try:
            base_sha, recorded_sha = await self._make_worktree(
                session, repository, path, token, start, base_ref, pr_number, recorded_sha,
                fetch_from,
            )  # fmt: skip
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, path, True)
            await worktree_store.update_repo(
                self.db, row.id, now=self.clock.now(), status="removed", port_base=None
            )
            raise
        await worktree_store.update_repo(
            self.db,
            row.id,
            now=self.clock.now(),
            status="created",
            base_sha=base_sha,
            recorded_sha=recorded_sha,
        )
        await self._publish(
            session,
            "worktree_repo_created",
            {
                "repository": repository.full_name,
                "path": str(path),
                "branch": session.branch,
                "ports": [row.port_base, (row.port_base or 0) + self.port_block - 1],
            },
        )
        fresh_row = await worktree_store.get_repo(self.db, row.id)
        assert fresh_row is not None
        return fresh_row

    async def _make_worktree(
        self,
        session: WorktreeSession,
        repository: Repository,
        path: Path,
        token: Secret | None,
        start: str | None,
        base_ref: str | None,
        pr_number: int | None,
        recorded_sha: str | None,
        fetch_from: tuple[str, str] | None,
    ) -> tuple[str, str | None]:
        """Fetch, then `git worktree add --lock`; returns (base sha, recorded sha)."""
        async with self._lock(repository):
            mirror = await self._ensure_mirror_locked(repository, token)
            if fetch_from is not None:
                url, ref = fetch_from
                start = await self._fetch_pull_request_head(mirror, url, ref, pr_number, token)
                recorded_sha = start
            if start is None:
                fresh = await repository_store.get(self.db, repository.id)
                branch = base_ref or (fresh.default_branch if fresh else None) or "main"
                start = f"refs/remotes/origin/{branch}"
            base = await run_git("rev-parse", "--verify", f"{start}^{{commit}}", cwd=mirror)
            await self._git_worktree_add(
                mirror, repository, session, path, start, move_branch=fetch_from is not None
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
        reason = f"biagent session {session.id} ({session.owner})"
        path.parent.mkdir(parents=True, exist_ok=True)
        if exists.returncode == 0:
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
                await self._move_branch(mirror, session.branch, start)
        if await self._take_spare(mirror, repository, session, path, start, exists.returncode == 0):
            return
        if exists.returncode == 0:
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

    async def _move_branch(self, mirror: Path, branch: str, start: str) -> None:
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

    async def hold(self, session_id: str, holder: str) -> None:
        """Mark the session in use by a job: no cleanup (idle, quota, merge) touches it."""
        if not await worktree_store.hold_session(self.db, session_id, holder, now=self.clock.now()):
            raise WorktreeBusy(f"session {session_id} is held by another job or is gone")

    async def release(self, session_id: str) -> None:
        await worktree_store.release_session(self.db, session_id, now=self.clock.now())

    def session_json(
        self, view: SessionView, names: dict[int, str], *, now: datetime
    ) -> dict[str, Any]:
        """A session as the API shows it: status, size, age, idle time, each worktree."""
        session = view.session
        return {
            "id": session.id,
            "owner": session.owner,
            "branch": session.branch,
            "stream": session.stream,
            "status": session.status,
            "held_by": session.held_by,
            "error": session.error,
            "cleaned_reason": session.cleaned_reason,
            "created_at": session.created_at,
            "last_used_at": session.last_used_at,
            "cleaned_at": session.cleaned_at,
            "age_seconds": round((now - from_text(session.created_at)).total_seconds(), 1),
            "idle_seconds": round((now - from_text(session.last_used_at)).total_seconds(), 1),
            "size_bytes": view.size_bytes,
            "repositories": [
                {
                    **row.as_json(port_count=self.port_block),
                    "repository": names.get(row.repository_id),
                }
                for row in view.repos
            ],
        }
