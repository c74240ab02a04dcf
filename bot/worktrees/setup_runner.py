"""Setting a worktree up: the plan (`.github/biagent.yml`, a person's answer, or detection),
asking a person when detection is unsure, stored files copied in, and the setup command run
under bot/sandbox.py with its output streamed as `worktree_status` events.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from bot import sandbox
from bot.worktrees import disk
from bot.worktrees.core import stamp
from bot.worktrees.git import run_git
from bot.worktrees.records import SessionView, WorktreeError, WorktreeSetupError
from bot.worktrees.scope import CommandScope
from bot.worktrees.setup_detector import RepositoryConfigError, SetupPlan
from storage import repositories as repository_store
from storage import worktrees as worktree_store
from storage.repositories import Repository
from storage.worktrees import WorktreeRepo, WorktreeSession

log = logging.getLogger(__name__)

STATUS_BATCH_LINES = 20


@dataclass
class _StatusStream:
    """Setup output lines, published as worktree_status events in small batches."""

    manager: Setup
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
        await self.manager._publish(
            self.session,
            "worktree_status",
            {"status": "setup_output", "repository": self.repository.full_name, "detail": detail},
        )


class Setup(CommandScope):
    """Running setup in a session's worktrees, and the questions it asks."""

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
            self.db,
            repository_id,
            setup_command=setup_command,
            test_command=test_command,
            answered_by=answered_by,
            now=self.clock.now(),
        )
        answered = await worktree_store.answer_input_requests(
            self.db,
            repository_id,
            answer=setup_command if setup_command is not None else "",
            now=self.clock.now(),
        )
        waiter = self._answers.pop(repository_id, None)
        if waiter is not None:
            waiter.set()
        return answered

    async def run_setup(self, session_id: str, *, wait_for_input: bool = True) -> SessionView:
        """Set up every worktree of the session that is not ready; raises on a failed setup."""
        session = await worktree_store.get_session(self.db, session_id)
        if session is None:
            raise WorktreeError(f"no session {session_id}")
        await worktree_store.set_session_status(
            self.db, session_id, "setting_up", now=self.clock.now()
        )
        rows = [
            row
            for row in await worktree_store.repos_of_session(self.db, session_id)
            if row.status not in ("ready", "removed")
        ]
        outcomes = await asyncio.gather(
            *(self._setup_one(session, row, wait_for_input) for row in rows),
            return_exceptions=True,
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        waiting = any(outcome == "needs_input" for outcome in outcomes)
        now = self.clock.now()
        if failures:
            message = "; ".join(str(failure) for failure in failures)
            await worktree_store.set_session_status(
                self.db, session_id, "failed", now=now, error=message
            )
            first = failures[0]
            if isinstance(first, WorktreeError):
                raise first
            raise WorktreeSetupError(message) from first
        if waiting:
            await worktree_store.set_session_status(self.db, session_id, "needs_input", now=now)
        else:
            await worktree_store.set_session_status(self.db, session_id, "ready", now=now)
            every = await worktree_store.repos_of_session(self.db, session_id)
            await self._publish(
                session,
                "worktree_session_ready",
                {"paths": [row.path for row in every if row.status != "removed"]},
            )
        view = await self.get(session_id)
        assert view is not None
        return view

    async def _plan(self, repository: Repository, worktree: Path) -> SetupPlan:
        return await asyncio.to_thread(
            self.detector.detect,
            worktree,
            repository=repository.full_name,
            answered_setup=repository.setup_command,
            answered_test=repository.test_command,
        )

    async def _setup_one(self, session: WorktreeSession, row: WorktreeRepo, wait: bool) -> str:
        repository = await repository_store.get(self.db, row.repository_id)
        assert repository is not None
        worktree = Path(row.path)
        try:
            plan = await self._plan(repository, worktree)
        except RepositoryConfigError as error:
            await self._fail_setup(session, row, repository, str(error), None, None)
            raise WorktreeSetupError(f"{repository.full_name}: {error}") from error
        while not plan.confident:
            if not await self._ask(session, row, repository, plan, wait):
                return "needs_input"
            repository = await repository_store.get(self.db, row.repository_id)
            assert repository is not None
            plan = await self._plan(repository, worktree)
        await worktree_store.update_repo(
            self.db,
            row.id,
            now=self.clock.now(),
            status="setup_running",
            setup_command=plan.setup_command,
        )
        notes = await self._copy_stored_files(repository, worktree, plan.copy_files)
        for note in notes:
            await self._publish(
                session,
                "worktree_status",
                {"status": "copy_files", "repository": repository.full_name, "detail": note},
            )
        command = plan.setup_command
        await self._publish(
            session,
            "worktree_setup_started",
            {
                "repository": repository.full_name,
                "command": command or "",
                "source": plan.source,
                "test_command": plan.test_command,
            },
        )
        if command is None:
            result = None
        else:
            scope = await self.command_sandbox(row, install=True)  # fills the caches
            output = _StatusStream(self, session, repository)
            result = await sandbox.run_command(
                command,
                worktree,
                timeout_s=self.setup_timeout_s,
                output_cap_bytes=self.output_cap_bytes,
                env=scope.env,
                writable_paths=scope.writable_paths,
                hidden_paths=scope.hidden_paths,
                readonly_paths=scope.readonly_paths,
                on_line=output.line,
                isolation=self.isolation,
            )
            await output.flush()
            if not result.ok:
                why = (
                    f"timed out after {self.setup_timeout_s:.0f}s"
                    if result.timed_out
                    else f"exited {result.exit_code}"
                )
                message = f"{repository.full_name}: setup `{command}` {why}"
                await self._fail_setup(session, row, repository, message, result, command)
                raise WorktreeSetupError(message)
        changed = [] if command is None else await self._tracked_changes(worktree)
        if changed:
            message = (
                f"{repository.full_name}: setup changed tracked files, which would end up in"
                f" the agent's commits: {', '.join(changed[:20])}"
            )
            await self._fail_setup(session, row, repository, message, result, command)
            raise WorktreeSetupError(message)
        size = self._taken_sizes.pop(row.path, None) if command is None else None
        if size is None:
            size = await asyncio.to_thread(disk.allocated_bytes, worktree)
        await worktree_store.update_repo(
            self.db,
            row.id,
            now=self.clock.now(),
            status="ready",
            setup_exit_code=None if result is None else result.exit_code,
            setup_output=None if result is None else result.output[-self.output_cap_bytes :],
            setup_seconds=None if result is None else round(result.duration_s, 3),
            size_bytes=size,
            size_measured_at=stamp(self.clock),
        )
        await self._publish(
            session,
            "worktree_status",
            {
                "status": "setup_done",
                "repository": repository.full_name,
                "detail": f"ready, {disk.human_size(size)} on disk",
            },
        )
        return "ready"

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
            self.db,
            row.id,
            now=self.clock.now(),
            status="setup_failed",
            setup_command=command,
            setup_exit_code=None if result is None else result.exit_code,
            setup_output=None if result is None else result.output[-self.output_cap_bytes :],
            setup_seconds=None if result is None else round(result.duration_s, 3),
        )
        await self._publish(
            session,
            "worktree_status",
            {"status": "setup_failed", "repository": repository.full_name, "detail": message},
        )

    async def _ask(
        self,
        session: WorktreeSession,
        row: WorktreeRepo,
        repository: Repository,
        plan: SetupPlan,
        wait: bool,
    ) -> bool:
        """Ask a person how to set the repository up; True once answered (when waiting)."""
        question = plan.question or f"How is {repository.full_name} set up?"
        pending = await worktree_store.pending_input_requests(self.db, repository.id)
        waiter = self._answers.setdefault(repository.id, asyncio.Event())
        if not pending:
            request = await worktree_store.add_input_request(
                self.db,
                request_id=self.new_id(),
                repository_id=repository.id,
                session_id=session.id,
                question=question,
                choices=list(plan.choices),
                now=self.clock.now(),
            )
            await self._publish(
                session,
                "pipeline_needs_input",
                {
                    "question": question,
                    "request_id": request.id,
                    "repository": repository.full_name,
                    "choices": list(plan.choices),
                },
            )
            await self.bus.publish(
                session.stream,
                "user_input_request",
                {
                    "request_id": request.id,
                    "question": question,
                    "choices": list(plan.choices),
                    "repository": repository.full_name,
                    "repository_id": repository.id,
                    "session_id": session.id,
                    "answer_url": f"/api/repositories/{repository.id}/answers",
                },
            )
        await worktree_store.update_repo(
            self.db, row.id, now=self.clock.now(), status="needs_input"
        )
        await worktree_store.set_session_status(
            self.db, session.id, "needs_input", now=self.clock.now()
        )
        if not wait:
            return False
        try:
            await asyncio.wait_for(waiter.wait(), self.input_timeout_s)
        except TimeoutError:
            return False
        return True

    async def _copy_stored_files(
        self, repository: Repository, worktree: Path, names: Sequence[str]
    ) -> list[str]:
        """Copy listed gitignored files from the repository's store; refuse tracked paths."""
        notes = []
        store = self.store_path(repository)
        for name in names:
            relative = PurePosixPath(name)
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                raise WorktreeSetupError(f"{repository.full_name}: copy_files entry {name!r}")
            ignored = await run_git(
                "check-ignore", "--quiet", str(relative), cwd=worktree, check=False
            )
            if ignored.returncode != 0:
                raise WorktreeSetupError(
                    f"{repository.full_name}: copy_files lists {name}, which is not gitignored;"
                    " only ignored files are copied in"
                )
            source = store / relative
            if not source.is_file():
                notes.append(f"{name}: not in the store ({source}); skipped")
                continue
            target = worktree / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(shutil.copy2, source, target)
            notes.append(f"{name}: copied from the store")
        return notes

    async def _tracked_changes(self, worktree: Path) -> list[str]:
        status = await run_git(
            "status", "--porcelain", "--untracked-files=no", cwd=worktree, optional_locks=False
        )
        return [line[3:] for line in status.stdout.splitlines() if line.strip()]
