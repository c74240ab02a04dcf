"""Pull request worktrees: the head fetched into the mirror and its sha recorded, the push
leased on that sha, following a head someone else moved, and putting a worktree back.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bot.clock import Clock
from bot.config import Secret
from bot.gitops.runner import GitError, run_git
from bot.worktrees.checkout import WorktreeCheckout, WorktreeSource
from bot.worktrees.files import tracked_changes
from bot.worktrees.mirrors import Mirrors
from bot.worktrees.records import (
    FollowResult,
    PushRejected,
    PushResult,
    SessionView,
    WorktreeBusy,
    WorktreeError,
)
from bot.worktrees.sessions import Sessions
from bot.worktrees.states import SessionStatus
from bot.worktrees.views import SessionViews
from storage import worktrees as worktree_store
from storage.database import Database
from storage.repositories import Repository
from storage.worktrees import WorktreeRepo, WorktreeSession

log = logging.getLogger(__name__)


class PullRequestSessions:
    """Checking out, pushing and following pull requests."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        views: SessionViews,
        mirrors: Mirrors,
        sessions: Sessions,
        checkout: WorktreeCheckout,
    ) -> None:
        self._db = db
        self._clock = clock
        self._views = views
        self._mirrors = mirrors
        self._sessions = sessions
        self._checkout = checkout

    async def checkout_pull_request(
        self,
        repository: Repository,
        *,
        pr_number: int,
        head_ref: str,
        head_sha: str | None = None,
        clone_url: str | None = None,
        installation_token: Secret | str | None = None,
        stream: str | None = None,
        run_setup: bool = True,
        wait_for_input: bool = True,
    ) -> SessionView:
        """A worktree of a PR's head, fetched (never cloned) into the mirror; its sha recorded.

        `clone_url` is the head repository's (a fork's) URL, the base repository's by default;
        `push` later updates `head_ref` there with a lease on the recorded sha. A live session of
        the same PR is reused: fetched again and moved to the new head when it has no work of
        its own.
        """
        owner = f"pr-{pr_number}"
        head_url = clone_url or repository.clone_url
        for existing in await worktree_store.live_sessions_for_owner(
            self._db, owner, instance_id=self._views.instance_id
        ):
            repos = await worktree_store.repos_of_session(self._db, existing.id)
            mine = [repo for repo in repos if repo.repository_id == repository.id]
            if mine and existing.status not in (SessionStatus.FAILED, SessionStatus.CLEANING):
                await self._refresh_pull_request(
                    existing, repository, mine[0], head_url, head_ref, installation_token
                )
                return await self._views.require(existing.id)
        session = await self._sessions.open_session(owner, [repository], stream)
        source = WorktreeSource(
            push_url=head_url,
            push_ref=head_ref,
            pr_number=pr_number,
            fetch_from=(head_url, head_ref),
        )
        try:
            row = await self._checkout.add_worktree(
                session, repository, source, installation_token=installation_token
            )
        except BaseException as error:
            await self._sessions.abandon(session, error)
            raise
        if head_sha and row.recorded_sha != head_sha:
            log.info(
                "%s#%d: head moved from %s to %s since the event; using the fetched one",
                repository.full_name,
                pr_number,
                head_sha[:12],
                (row.recorded_sha or "?")[:12],
            )
        return await self._sessions.finish_session(session, [repository], run_setup, wait_for_input)

    async def _refresh_pull_request(
        self,
        session: WorktreeSession,
        repository: Repository,
        row: WorktreeRepo,
        head_url: str,
        head_ref: str,
        installation_token: Secret | str | None,
    ) -> None:
        fetched = await self._mirrors.fetch_pull_request(
            repository, head_url, head_ref, row.pr_number, installation_token
        )
        if fetched == row.recorded_sha:
            await worktree_store.touch_session(self._db, session.id, now=self._clock.now())
            return
        worktree = Path(row.path)
        head = (await run_git("rev-parse", "HEAD", cwd=worktree)).stdout.strip()
        dirty = await tracked_changes(worktree)
        if head != row.recorded_sha or dirty:
            raise WorktreeBusy(
                f"{repository.full_name}#{row.pr_number}: the PR head moved to {fetched[:12]}"
                " while the worktree has work of its own; clean the session first"
            )
        # Our own branch in our own worktree, with nothing of ours on it: follow the new head.
        await run_git("reset", "--quiet", "--hard", fetched, cwd=worktree)
        await worktree_store.update_repo(
            self._db, row.id, now=self._clock.now(), recorded_sha=fetched, push_url=head_url
        )
        await worktree_store.touch_session(self._db, session.id, now=self._clock.now())

    async def push(
        self,
        session_id: str,
        *,
        repository_id: int | None = None,
        installation_token: Secret | str | None = None,
    ) -> PushResult:
        """Push the worktree's HEAD to its remote branch, leased on the recorded sha.

        `--force-with-lease=<ref>:<recorded sha>` refuses when someone else pushed since the
        sha was recorded (a new ref expects it absent); the new sha is recorded on success.
        """
        row, repository = await self._session_row(
            session_id, repository_id, "name the repository to push"
        )
        if row.push_url is None or row.push_ref is None:
            raise WorktreeError(f"{repository.full_name}: this worktree has nowhere to push")
        token = await self._mirrors.token(repository, installation_token)
        worktree = Path(row.path)
        head = (await run_git("rev-parse", "HEAD", cwd=worktree)).stdout.strip()
        if head == row.recorded_sha:
            return PushResult(head, row.push_ref, False)
        remote_ref = f"refs/heads/{row.push_ref}"
        lease = f"--force-with-lease={remote_ref}:{row.recorded_sha or ''}"
        async with self._mirrors.lock(repository):
            try:
                await run_git(
                    "push", "--quiet", "--porcelain", lease, row.push_url, f"HEAD:{remote_ref}",
                    cwd=worktree, token=token,
                )  # fmt: skip
            except GitError as error:
                raise PushRejected(
                    f"{repository.full_name}: push to {row.push_ref} refused:"
                    f" {error.stderr.strip()}"
                ) from error
        await worktree_store.update_repo(self._db, row.id, now=self._clock.now(), recorded_sha=head)
        await worktree_store.touch_session(self._db, session_id, now=self._clock.now())
        return PushResult(head, row.push_ref, True)

    async def _session_row(
        self, session_id: str, repository_id: int | None, ask: str = "name the repository"
    ) -> tuple[WorktreeRepo, Repository]:
        """The session's worktree of `repository_id` (or its only one), and its repository."""
        view = await self._views.require(session_id)
        rows = [r for r in view.repos if repository_id in (None, r.repository_id)]
        if len(rows) != 1:
            raise WorktreeError(f"{ask} (the session has several)")
        return rows[0], await self._views.repository_of(rows[0])

    async def _pull_request_row(
        self, session_id: str, repository_id: int | None
    ) -> tuple[WorktreeRepo, Repository, str, str]:
        """The PR checkout's row and repository, with its push URL and branch."""
        row, repository = await self._session_row(session_id, repository_id)
        if row.push_url is None or row.push_ref is None or row.pr_number is None:
            raise WorktreeError(f"{repository.full_name}: this worktree is not a PR checkout")
        return row, repository, row.push_url, row.push_ref

    async def follow_pull_request(
        self,
        session_id: str,
        *,
        repository_id: int | None = None,
        installation_token: Secret | str | None = None,
    ) -> FollowResult:
        """The PR branch moved under us (a push was refused): fetch its new head and replay our
        commits (recorded sha..HEAD) on top of it, so their commits stay and ours follow.

        When the replay conflicts it is aborted and the worktree is reset to the new head (our
        commits dropped, nothing of theirs touched): the caller starts its work over there. The
        new head becomes the recorded sha, the lease of the next `push`. Commit first: a
        worktree with uncommitted changes is refused by git's rebase.
        """
        row, repository, push_url, push_ref = await self._pull_request_row(
            session_id, repository_id
        )
        fetched = await self._mirrors.fetch_pull_request(
            repository, push_url, push_ref, row.pr_number, installation_token
        )
        if fetched == row.recorded_sha:
            return FollowResult(fetched, moved=False, rebased=False, conflicted=False)
        worktree = Path(row.path)
        rebased = False
        if row.recorded_sha:
            rebased = await _replay(worktree, row.recorded_sha, fetched, repository, row)
        if not rebased:
            await _reset_worktree(worktree, fetched)
        await worktree_store.update_repo(
            self._db, row.id, now=self._clock.now(), recorded_sha=fetched
        )
        await worktree_store.touch_session(self._db, session_id, now=self._clock.now())
        return FollowResult(fetched, moved=True, rebased=rebased, conflicted=not rebased)

    async def discard_changes(self, session_id: str, *, repository_id: int | None = None) -> str:
        """Put a PR worktree back on its recorded sha (edits and unpushed commits dropped), so a
        failed job leaves nothing that blocks the next checkout of the PR; returns that sha."""
        row, repository, _, _ = await self._pull_request_row(session_id, repository_id)
        if row.recorded_sha is None:
            raise WorktreeError(f"{repository.full_name}: this PR checkout has no recorded head")
        await _reset_worktree(Path(row.path), row.recorded_sha)
        await worktree_store.touch_session(self._db, session_id, now=self._clock.now())
        return row.recorded_sha

    async def attach_pull_request(
        self, session_id: str, repository_id: int, pr_number: int
    ) -> None:
        """Tie a ticket session's worktree to the PR opened from it: its merge cleans it."""
        for row in await worktree_store.repos_of_session(self._db, session_id):
            if row.repository_id == repository_id:
                await worktree_store.update_repo(
                    self._db, row.id, now=self._clock.now(), pr_number=pr_number
                )


async def _replay(
    worktree: Path, recorded_sha: str, fetched: str, repository: Repository, row: WorktreeRepo
) -> bool:
    """Rebase our commits (recorded sha..HEAD) onto `fetched`; False (aborted) on a conflict."""
    replay = await run_git(
        "rebase", "--quiet", "--onto", fetched, recorded_sha, cwd=worktree, check=False
    )
    if replay.returncode == 0:
        return True
    log.info(
        "%s#%s: our commits do not replay onto %s: starting over there (%s)",
        repository.full_name,
        row.pr_number,
        fetched[:12],
        replay.stderr.strip()[-300:],
    )
    await run_git("rebase", "--abort", cwd=worktree, check=False)
    return False


async def _reset_worktree(worktree: Path, sha: str) -> None:
    # Untracked files go too, ignored ones (a set-up .venv, node_modules) stay.
    await run_git("reset", "--quiet", "--hard", sha, cwd=worktree)
    await run_git("clean", "--quiet", "-fd", cwd=worktree)
