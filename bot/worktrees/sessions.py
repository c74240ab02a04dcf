"""Creating sessions: the rows first, then per repository a fetch and a worktree on the
session's branch (bot/worktrees/checkout.py), then setup; and holding a session while a job
uses it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from bot.clock import Clock
from bot.config import Secret
from bot.events.bus import EventBus
from bot.worktrees.checkout import WorktreeCheckout, WorktreeSource
from bot.worktrees.events import WorktreeSessionCreating, WorktreeStatus
from bot.worktrees.quotas import Quotas
from bot.worktrees.records import SessionView, WorktreeBusy, WorktreeError, branch_name
from bot.worktrees.removal import Removal
from bot.worktrees.setup_runner import SetupRunner
from bot.worktrees.spares import SparePool
from bot.worktrees.states import ProgressKind, SessionStatus
from bot.worktrees.views import SessionViews
from storage import worktrees as worktree_store
from storage.database import Database
from storage.repositories import Repository
from storage.worktrees import WorktreeSession

log = logging.getLogger(__name__)


class Sessions:
    """Creating sessions and their worktrees; holding and releasing them."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        clock: Clock,
        *,
        views: SessionViews,
        quotas: Quotas,
        checkout: WorktreeCheckout,
        setup: SetupRunner,
        spares: SparePool,
        removal: Removal,
        new_id: Callable[[], str],
    ) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._views = views
        self._quotas = quotas
        self._checkout = checkout
        self._setup = setup
        self._spares = spares
        self._removal = removal
        self._new_id = new_id

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
        session = await self.open_session(owner, repositories, stream)
        try:
            await asyncio.gather(
                *(
                    self._checkout.add_worktree(
                        session,
                        repository,
                        WorktreeSource(
                            push_url=repository.clone_url,
                            push_ref=session.branch,
                            pr_number=pr_number,
                            base_ref=base_ref,
                        ),
                        installation_token=installation_token,
                    )
                    for repository in repositories
                )
            )
        except BaseException as error:
            await self.abandon(session, error)
            raise
        return await self.finish_session(session, repositories, run_setup, wait_for_input)

    async def open_session(
        self, owner: str, repositories: Sequence[Repository], stream: str | None
    ) -> WorktreeSession:
        """Room made in each repository's quota, the session's row written and announced."""
        for repository in repositories:
            await self._quotas.make_room(repository)
        session_id = self._new_id()
        session = await worktree_store.create_session(
            self._db,
            session_id=session_id,
            owner=owner,
            branch=branch_name(owner),
            stream=stream or f"worktree:{session_id}",
            now=self._clock.now(),
            instance_id=self._views.instance_id,
        )
        creating = WorktreeSessionCreating(
            session_id=session.id,
            repositories=[repository.full_name for repository in repositories],
            owner=owner,
            branch=session.branch,
        )
        await self._bus.publish(session.stream, creating)
        return session

    async def finish_session(
        self,
        session: WorktreeSession,
        repositories: Sequence[Repository],
        run_setup: bool,
        wait_for_input: bool,
    ) -> SessionView:
        """Every worktree made: mark the session created, set it up, refill the spares."""
        await worktree_store.set_session_status(
            self._db, session.id, SessionStatus.CREATED, now=self._clock.now()
        )
        try:
            if run_setup:
                await self._setup.run_setup(session.id, wait_for_input=wait_for_input)
        finally:
            # After the job's own work, so the refill's checkout does not compete with it.
            for repository in repositories:
                self._spares.schedule_refill(repository)
        return await self._views.require(session.id)

    async def abandon(self, session: WorktreeSession, error: BaseException) -> None:
        """A session whose worktrees could not all be made: say why, leave nothing behind."""
        await worktree_store.set_session_status(
            self._db, session.id, SessionStatus.FAILED, now=self._clock.now(), error=str(error)
        )
        failed = WorktreeStatus(
            session_id=session.id, status=ProgressKind.FAILED, detail=str(error)
        )
        await self._bus.publish(session.stream, failed)
        await self._removal.cleanup_session(session.id, f"creation failed: {error}", force=True)

    async def hold(self, session_id: str, holder: str) -> None:
        """Mark the session in use by a job: no cleanup (idle, quota, merge) touches it."""
        now = self._clock.now()
        if not await worktree_store.hold_session(self._db, session_id, holder, now=now):
            raise WorktreeBusy(f"session {session_id} is held by another job or is gone")

    async def release(self, session_id: str) -> None:
        await worktree_store.release_session(self._db, session_id, now=self._clock.now())
