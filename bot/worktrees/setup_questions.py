"""Asking a person how a repository is set up when detection is unsure, and waking the setups
that wait for the answer (one question per repository at a time, however many sessions ask)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.clock import Clock
from bot.events.bus import EventBus
from bot.worktrees.events import PipelineNeedsInput, UserInputRequest
from bot.worktrees.setup_detector import SetupPlan
from bot.worktrees.states import RepoStatus, SessionStatus
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.database import Database
from storage.repositories import Repository
from storage.worktrees import WorktreeRepo, WorktreeSession


class SetupQuestions:
    """The open questions about setup, and the setups waiting for their answers."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        clock: Clock,
        *,
        input_timeout_s: float,
        new_id: Callable[[], str],
    ) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._input_timeout_s = input_timeout_s
        self._new_id = new_id
        self._answers: dict[int, asyncio.Event] = {}  # by repository id

    async def answer_setup(
        self,
        repository_id: int,
        *,
        setup_command: str | None,
        test_command: str | None = None,
        answered_by: str,
    ) -> list[str]:
        """Store a person's answer for the repository and wake the setups waiting for it."""
        await repository_store.record_answer(
            self._db,
            repository_id,
            setup_command=setup_command,
            test_command=test_command,
            answered_by=answered_by,
            now=self._clock.now(),
        )
        answered = await worktree_store.answer_input_requests(
            self._db,
            repository_id,
            answer=setup_command if setup_command is not None else "",
            now=self._clock.now(),
        )
        waiter = self._answers.pop(repository_id, None)
        if waiter is not None:
            waiter.set()
        return answered

    async def ask(
        self,
        session: WorktreeSession,
        row: WorktreeRepo,
        repository: Repository,
        plan: SetupPlan,
        wait: bool,
    ) -> bool:
        """Ask a person how to set the repository up; True once answered (when waiting)."""
        pending = await worktree_store.pending_input_requests(self._db, repository.id)
        waiter = self._answers.setdefault(repository.id, asyncio.Event())
        if not pending:
            await self._publish_question(session, repository, plan)
        await worktree_store.update_repo(
            self._db, row.id, now=self._clock.now(), status=RepoStatus.NEEDS_INPUT
        )
        await worktree_store.set_session_status(
            self._db, session.id, SessionStatus.NEEDS_INPUT, now=self._clock.now()
        )
        if not wait:
            return False
        try:
            await asyncio.wait_for(waiter.wait(), self._input_timeout_s)
        except TimeoutError:
            return False
        return True

    async def _publish_question(
        self, session: WorktreeSession, repository: Repository, plan: SetupPlan
    ) -> None:
        question = plan.question or f"How is {repository.full_name} set up?"
        request = await worktree_store.add_input_request(
            self._db,
            request_id=self._new_id(),
            repository_id=repository.id,
            session_id=session.id,
            question=question,
            choices=list(plan.choices),
            now=self._clock.now(),
        )
        needs_input = PipelineNeedsInput(
            session_id=session.id,
            question=question,
            request_id=request.id,
            repository=repository.full_name,
            choices=list(plan.choices),
        )
        await self._bus.publish(session.stream, needs_input)
        input_request = UserInputRequest(
            request_id=request.id,
            question=question,
            choices=list(plan.choices),
            repository=repository.full_name,
            repository_id=repository.id,
            session_id=session.id,
            answer_url=f"/api/repositories/{repository.id}/answers",
        )
        await self._bus.publish(session.stream, input_request)
