"""Setting a worktree up: the plan (`.github/biagent.yml`, a person's answer, or detection),
asking a person when detection is unsure (bot/worktrees/setup_questions.py), stored files copied
in, and the setup command run under bot/isolation/sandbox.py with its output streamed as
`worktree_status` events.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from bot.clock import Clock
from bot.events.bus import EventBus
from bot.isolation import sandbox
from bot.worktrees import disk
from bot.worktrees.events import WorktreeSessionReady, WorktreeSetupStarted, WorktreeStatus
from bot.worktrees.files import copy_stored_files, tracked_changes
from bot.worktrees.layout import WorktreeLayout
from bot.worktrees.records import SessionView, WorktreeError, WorktreeSetupError, stamp
from bot.worktrees.scope import CommandScopes
from bot.worktrees.setup_detector import RepositoryConfigError, SetupDetector, SetupPlan
from bot.worktrees.setup_questions import SetupQuestions
from bot.worktrees.spares import SparePool
from bot.worktrees.states import ProgressKind, RepoStatus, SessionStatus, SetupOutcome
from bot.worktrees.views import SessionViews
from storage import worktrees as worktree_store
from storage.database import Database
from storage.repositories import Repository
from storage.worktrees import WorktreeRepo, WorktreeSession

log = logging.getLogger(__name__)

STATUS_BATCH_LINES = 20


@dataclass(frozen=True, slots=True)
class SetupLimits:
    timeout_s: float
    output_cap_bytes: int
    isolation: sandbox.Isolation


@dataclass
class _StatusStream:
    """Setup output lines, published as worktree_status events in small batches."""

    bus: EventBus
    session: WorktreeSession
    repository: Repository
    lines: list[str] = field(default_factory=list)

    async def line(self, text: str) -> None:
        self.lines.append(text)
        if len(self.lines) >= STATUS_BATCH_LINES:
            await self.flush()

    async def flush(self) -> None:
        if not self.lines:
            return
        detail, self.lines = "\n".join(self.lines), []
        await self.bus.publish(
            self.session.stream,
            WorktreeStatus(
                session_id=self.session.id,
                status=ProgressKind.SETUP_OUTPUT,
                repository=self.repository.full_name,
                detail=detail,
            ),
        )


class SetupRunner:
    """Running setup in a session's worktrees."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        clock: Clock,
        *,
        layout: WorktreeLayout,
        views: SessionViews,
        detector: SetupDetector,
        questions: SetupQuestions,
        scopes: CommandScopes,
        spares: SparePool,
        limits: SetupLimits,
    ) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._layout = layout
        self._views = views
        self._detector = detector
        self._questions = questions
        self._scopes = scopes
        self._spares = spares
        self._limits = limits

    async def run_setup(self, session_id: str, *, wait_for_input: bool = True) -> SessionView:
        """Set up every worktree of the session that is not ready; raises on a failed setup."""
        session = await worktree_store.get_session(self._db, session_id)
        if session is None:
            raise WorktreeError(f"no session {session_id}")
        await self._set_status(session_id, SessionStatus.SETTING_UP)
        rows = [
            row
            for row in await worktree_store.repos_of_session(self._db, session_id)
            if row.status not in (RepoStatus.READY, RepoStatus.REMOVED)
        ]
        outcomes = await asyncio.gather(
            *(self._setup_one(session, row, wait_for_input) for row in rows),
            return_exceptions=True,
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            message = "; ".join(str(failure) for failure in failures)
            await self._set_status(session_id, SessionStatus.FAILED, error=message)
            first = failures[0]
            if isinstance(first, WorktreeError):
                raise first
            raise WorktreeSetupError(message) from first
        if SetupOutcome.NEEDS_INPUT in outcomes:
            await self._set_status(session_id, SessionStatus.NEEDS_INPUT)
        else:
            await self._set_status(session_id, SessionStatus.READY)
            every = await worktree_store.repos_of_session(self._db, session_id)
            paths = [row.path for row in every if row.status != RepoStatus.REMOVED]
            await self._bus.publish(
                session.stream, WorktreeSessionReady(session_id=session.id, paths=paths)
            )
        return await self._views.require(session_id)

    async def _set_status(
        self, session_id: str, status: SessionStatus, *, error: str | None = None
    ) -> None:
        await worktree_store.set_session_status(
            self._db, session_id, status, now=self._clock.now(), error=error
        )

    async def _plan(self, repository: Repository, worktree: Path) -> SetupPlan:
        return await asyncio.to_thread(
            self._detector.detect,
            worktree,
            repository=repository.full_name,
            answered_setup=repository.setup_command,
            answered_test=repository.test_command,
        )

    async def _settled_plan(
        self, session: WorktreeSession, row: WorktreeRepo, wait: bool
    ) -> tuple[Repository, SetupPlan] | None:
        """The repository (as answered) and a confident plan; None while a person is asked."""
        repository = await self._views.repository_of(row)
        try:
            plan = await self._plan(repository, Path(row.path))
        except RepositoryConfigError as error:
            await self._fail_setup(session, row, repository, str(error), None, None)
            raise WorktreeSetupError(f"{repository.full_name}: {error}") from error
        while not plan.confident:
            if not await self._questions.ask(session, row, repository, plan, wait):
                return None
            repository = await self._views.repository_of(row)
            plan = await self._plan(repository, Path(row.path))
        return repository, plan

    async def _setup_one(
        self, session: WorktreeSession, row: WorktreeRepo, wait: bool
    ) -> SetupOutcome:
        settled = await self._settled_plan(session, row, wait)
        if settled is None:
            return SetupOutcome.NEEDS_INPUT
        repository, plan = settled
        worktree = Path(row.path)
        command = plan.setup_command
        await worktree_store.update_repo(
            self._db,
            row.id,
            now=self._clock.now(),
            status=RepoStatus.SETUP_RUNNING,
            setup_command=command,
        )
        store = self._layout.store_path(repository)
        for note in await copy_stored_files(repository.full_name, store, worktree, plan.copy_files):
            await self._progress(session, repository, ProgressKind.COPY_FILES, note)
        started = WorktreeSetupStarted(
            session_id=session.id,
            repository=repository.full_name,
            command=command or "",
            source=plan.source,
            test_command=plan.test_command,
        )
        await self._bus.publish(session.stream, started)
        result = None
        if command is not None:
            result = await self._run_command(session, row, repository, command)
        await self._record_ready(session, row, repository, result)
        return SetupOutcome.READY

    async def _run_command(
        self, session: WorktreeSession, row: WorktreeRepo, repository: Repository, command: str
    ) -> sandbox.SandboxResult:
        """Run the setup command in the sandbox; raise (after recording why) unless it succeeded
        without touching tracked files."""
        scope = await self._scopes.command_sandbox(row, install=True)  # fills the caches
        output = _StatusStream(self._bus, session, repository)
        result = await sandbox.run_command(
            command,
            Path(row.path),
            timeout_s=self._limits.timeout_s,
            output_cap_bytes=self._limits.output_cap_bytes,
            env=scope.env,
            writable_paths=scope.writable_paths,
            hidden_paths=scope.hidden_paths,
            readonly_paths=scope.readonly_paths,
            on_line=output.line,
            isolation=self._limits.isolation,
        )
        await output.flush()
        message = None
        if not result.ok:
            why = (
                f"timed out after {self._limits.timeout_s:.0f}s"
                if result.timed_out
                else f"exited {result.exit_code}"
            )
            message = f"{repository.full_name}: setup `{command}` {why}"
        elif changed := await tracked_changes(Path(row.path)):
            message = (
                f"{repository.full_name}: setup changed tracked files, which would end up in"
                f" the agent's commits: {', '.join(changed[:20])}"
            )
        if message is not None:
            await self._fail_setup(session, row, repository, message, result, command)
            raise WorktreeSetupError(message)
        return result

    async def _record_ready(
        self,
        session: WorktreeSession,
        row: WorktreeRepo,
        repository: Repository,
        result: sandbox.SandboxResult | None,
    ) -> None:
        # Nothing ran: a spare's size measured at refill still holds.
        size = self._spares.taken_size(row.path) if result is None else None
        if size is None:
            size = await asyncio.to_thread(disk.allocated_bytes, Path(row.path))
        await worktree_store.update_repo(
            self._db,
            row.id,
            now=self._clock.now(),
            status=RepoStatus.READY,
            **self._result_columns(result),
            size_bytes=size,
            size_measured_at=stamp(self._clock),
        )
        detail = f"ready, {disk.human_size(size)} on disk"
        await self._progress(session, repository, ProgressKind.SETUP_DONE, detail)

    def _result_columns(self, result: sandbox.SandboxResult | None) -> dict[str, object]:
        return {
            "setup_exit_code": None if result is None else result.exit_code,
            "setup_output": (
                None if result is None else result.output[-self._limits.output_cap_bytes :]
            ),
            "setup_seconds": None if result is None else round(result.duration_s, 3),
        }

    async def _fail_setup(
        self,
        session: WorktreeSession,
        row: WorktreeRepo,
        repository: Repository,
        message: str,
        result: sandbox.SandboxResult | None,
        command: str | None,
    ) -> None:
        log.error("session %s: %s", session.id, message)
        await worktree_store.update_repo(
            self._db,
            row.id,
            now=self._clock.now(),
            status=RepoStatus.SETUP_FAILED,
            setup_command=command,
            **self._result_columns(result),
        )
        await self._progress(session, repository, ProgressKind.SETUP_FAILED, message)

    async def _progress(
        self, session: WorktreeSession, repository: Repository, kind: ProgressKind, detail: str
    ) -> None:
        progress = WorktreeStatus(
            session_id=session.id, status=kind, repository=repository.full_name, detail=detail
        )
        await self._bus.publish(session.stream, progress)
