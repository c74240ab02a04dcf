"""One review batch in one worktree: the agent, the commit, the tests, the push with a lease.

`AgentReviewEngine` (agent_engine.py) checks out the PR head and holds the worktree; an
`AgentRun` then commits and pushes the reviewers' ```suggestion blocks (suggestion_run.py: no
model), and when comments remain, runs the review_response agent on them, commits what it
changed (with the batch's trailer), runs the tests on that commit, and pushes with
`--force-with-lease` against the recorded sha. A refused push means someone else pushed: their
head is fetched and our commit replayed on top of it, or, when that conflicts, the agent starts
over on their head. Expected trouble ends the run with `RunStopped`, the worktree already put
back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from typing import TYPE_CHECKING, Any

from bot.agents.loop import AgentContext, StepResult
from bot.config import Secret
from bot.gitops.runner import run_git
from bot.isolation import sandbox
from bot.pipelines.context import pipeline_context_of
from bot.reviews.agent_texts import (
    TRAILER,
    comment_outcomes,
    commit_message,
    reported_entries,
    status_of,
    summarize_tests,
    task_text,
)
from bot.reviews.engine import EngineResult, EngineStatus, ReviewBatch
from bot.reviews.suggestion_run import SuggestionStep, applied_ids
from bot.worktrees.files import NOT_COMMITTED
from bot.worktrees.manager import PushRejected, SessionView
from storage import review_iterations as reviews
from storage.repositories import Repository
from storage.worktrees import WorktreeRepo

if TYPE_CHECKING:
    from bot.reviews.agent_engine import AgentReviewEngine

log = logging.getLogger(__name__)

AGENT = "review_response"
_SHA = re.compile(r"[0-9a-f]{7,40}")


class RunStopped(Exception):
    """Expected trouble: the run ends with this result (the worktree already put back)."""

    def __init__(self, result: EngineResult) -> None:
        super().__init__(result.error)
        self.result = result


class AgentRun:
    """One batch in one worktree: the agent, the commit, the tests, the push."""

    def __init__(
        self,
        engine: AgentReviewEngine,
        batch: ReviewBatch,
        repository: Repository,
        view: SessionView,
        token: Secret,
        stream: str,
    ) -> None:
        self.engine = engine
        self.worktrees = engine.worktrees
        self.batch = batch
        self.repository = repository
        self.session_id = view.id
        self.worktree = view.path_of(repository.id)
        self.token = token
        self.stream = stream
        self.cost_usd = 0.0
        # comment id -> why its suggestion block was not applied (told to the agent)
        self.suggestion_notes: dict[int, str] = {}

    async def row(self) -> WorktreeRepo:
        view = await self.worktrees.get(self.session_id)
        if view is None:  # held by this run, so only a forced cleanup removes it
            raise self.stopped(f"worktree {self.session_id} was removed during the run")
        return next(row for row in view.repos if row.repository_id == self.repository.id)

    def stopped(self, why: str) -> RunStopped:
        return RunStopped(EngineResult(EngineStatus.FAILED, cost_usd=self.cost_usd, error=why))

    async def work(self) -> EngineResult:
        """The batch's suggestions first (suggestion_run.py), then the agent on the rest."""
        await self.stand_on_recorded_head()
        test_command = await self.test_command()
        done = await SuggestionStep(self, test_command).apply()
        settled = {("review_comment", comment_id) for comment_id in done.settled}
        rest = tuple(c for c in self.batch.comments if (c.kind, c.comment_id) not in settled)
        if not rest:
            return done.result()
        self.batch = dataclasses.replace(self.batch, comments=rest)
        self.suggestion_notes = done.handed
        try:
            return done.merged(await self.work_agent(test_command))
        except RunStopped as stop:
            return done.merged(stop.result)
        except Exception as error:
            if not done.settled:
                raise
            # The suggestions are pushed: their outcomes are kept whatever befell the agent.
            log.exception("%s: the agent failed after the suggestions were pushed", self.stream)
            with contextlib.suppress(Exception):
                await self.discard()
            why = f"{type(error).__name__}: {error}"
            return done.merged(EngineResult(EngineStatus.FAILED, cost_usd=self.cost_usd, error=why))

    async def work_agent(self, test_command: str | None) -> EngineResult:
        for attempt in range(1, self.engine.restarts + 2):
            start_sha = (await self.row()).recorded_sha
            if start_sha is None:
                raise self.stopped("the worktree has no recorded head to push against")
            step = await self.run_agent(attempt, test_command, start_sha)
            status, stop_reason = status_of(step)
            entries = reported_entries(step.output)
            if entries is None:
                await self.discard()
                why = stop_reason or "the agent finished without calling report_output"
                return EngineResult(status, cost_usd=self.cost_usd, error=why)
            summary = (step.output or {}).get("summary")
            if not await self.commit(entries, summary) and not await self.pushed_before(start_sha):
                return EngineResult(
                    status,
                    comment_outcomes(entries, None),
                    tests_summary="no changes, tests not run",
                    cost_usd=self.cost_usd,
                    error=stop_reason,
                )
            tests = await self.run_tests(test_command)
            pushed = await self.push(test_command)
            if pushed is None:
                continue  # our commit conflicts with theirs: start over on their head
            sha, rebased_tests = pushed
            return EngineResult(
                status,
                comment_outcomes(entries, sha),
                commit_sha=sha,
                tests_summary=rebased_tests or tests,
                cost_usd=self.cost_usd,
                error=stop_reason,
            )
        return EngineResult(
            EngineStatus.FAILED,
            cost_usd=self.cost_usd,
            error="the branch moved and our changes conflicted with the new commits each time",
        )

    # -- the agent ------------------------------------------------------------------------

    async def run_agent(self, attempt: int, test_command: str | None, start_sha: str) -> StepResult:
        batch = self.batch
        # A PR a pipeline opened: the agent reads its ticket and approved plan too.
        pipeline = await pipeline_context_of(self.engine.db, batch.repository, batch.pr_number)
        context = AgentContext(
            # Same batch, same worktree, same attempt after a restart: the conversation goes on.
            session_key=(
                f"review:{batch.repository}#{batch.pr_number}:batch-{batch.batch_id}"
                f":{self.session_id}:{attempt}"
            ),
            worktree=self.worktree,
            task=task_text(
                batch,
                test_command,
                start_sha,
                restarted=attempt > 1,
                pipeline=pipeline,
                history=await self.earlier_commits(),
                suggestion_notes=self.suggestion_notes,
            ),
            stream=self.stream,
            repository_context=f"Test command: {test_command or 'unknown'}",
            pr=f"{batch.repository}#{batch.pr_number}",
            # Its ports and caches, and the database, the app's key and other worktrees hidden.
            sandbox=await self.worktrees.command_sandbox(await self.row()),
        )
        step = await self.engine.agents.run_step(AGENT, context)
        self.cost_usd += step.cost_usd
        return step

    async def earlier_commits(self) -> dict[str, str]:
        """For a follow-up: each commit biagent made for an earlier answer in one of the
        batch's threads, as the branch has it (its files, and the commits on top of it since)."""
        history = {}
        shas = {a.commit_sha for c in self.batch.comments for a in c.earlier if a.commit_sha}
        for sha in sorted(sha for sha in shas if _SHA.fullmatch(sha)):
            shown = await run_git(
                "show", "--stat", "--format=%h %s", sha, cwd=self.worktree, check=False
            )
            if shown.returncode != 0:
                continue  # not on this branch any more (a force push): nothing to tell
            since = await self.git("log", "--format=%h %s", f"{sha}..HEAD", check=False)
            history[sha] = "\n".join([shown.stdout.strip(), "Commits since:", since or "(none)"])
        return history

    async def test_command(self) -> str | None:
        configured = self.batch.repo_config.get("test")
        if isinstance(configured, str) and configured.strip():
            return configured.strip()
        try:
            plan = self.worktrees.detector.detect(
                self.worktree,
                repository=self.repository.full_name,
                answered_setup=self.repository.setup_command,
                answered_test=self.repository.test_command,
            )
        except ValueError as error:
            log.warning("%s: no test command: %s", self.stream, error)
            return None
        return plan.test_command

    # -- git --------------------------------------------------------------------------------

    async def git(self, *args: str, check: bool = True) -> str:
        output = await run_git(*args, cwd=self.worktree, check=check)
        return output.stdout.strip()

    async def commit(self, entries: list[dict[str, Any]], summary: Any) -> bool:
        """Commit what the agent changed; False when it changed nothing."""
        await self.git("add", "--all", "--", ".", *NOT_COMMITTED)
        staged = await run_git(
            "diff", "--cached", "--quiet", "--no-ext-diff", cwd=self.worktree, check=False
        )
        if staged.returncode == 0:
            return False
        message = commit_message(self.batch, entries, summary if isinstance(summary, str) else "")
        await self.git("commit", "--quiet", "--no-verify", "-m", message)
        return True

    async def pushed_before(self, start_sha: str) -> bool:
        """This batch's commit is already the head (pushed before a restart cut the run)."""
        head = await self.git("rev-parse", "HEAD")
        return head != start_sha or await self.made_by_this_batch(head)

    async def made_by_this_batch(self, commit: str, *, suggestions: bool = False) -> bool:
        """`commit` is this batch's agent commit (or, `suggestions`, its suggestion commit)."""
        message = await self.git("log", "-1", "--format=%B", commit)
        mine = f"{TRAILER}: {self.batch.batch_id}" in message.splitlines()
        return mine and (applied_ids(message, self.batch.batch_id) is not None) == suggestions

    async def stand_on_recorded_head(self) -> None:
        """Start from the head the lease names. A new PR worktree starts there; a reused one can
        hold what a stopped run left on top of it: this batch's own unpushed commit (a stop
        between commit and push) is kept, anything else is dropped."""
        recorded = (await self.row()).recorded_sha
        head = await self.git("rev-parse", "HEAD")
        if head == recorded or await self.made_by_this_batch(head):
            return
        if await self.made_by_this_batch(head, suggestions=True):
            return
        log.warning(
            "%s: worktree stood at %s, not on the recorded head %s: reset",
            self.stream,
            head[:12],
            (recorded or "?")[:12],
        )
        await self.discard()

    async def discard(self) -> None:
        await self.worktrees.discard_changes(self.session_id, repository_id=self.repository.id)

    async def push(self, test_command: str | None) -> tuple[str, str | None] | None:
        """Push with the lease; on a moved branch replay onto it and push again. Returns the
        pushed sha and, after a replay, the tests run on it; None to start over."""
        tests_after_replay = None
        for _ in range(self.engine.push_attempts):
            head = await self.git("rev-parse", "HEAD")
            await reviews.note_pushed_commit(self.engine.db, self.batch.batch_id, head)
            try:
                pushed = await self.worktrees.push(
                    self.session_id,
                    repository_id=self.repository.id,
                    installation_token=self.token,
                )
            except PushRejected as refused:
                follow = await self.worktrees.follow_pull_request(
                    self.session_id, repository_id=self.repository.id, installation_token=self.token
                )
                if not follow.moved:
                    await self.discard()
                    raise self.stopped(str(refused)) from refused
                log.info(
                    "%s: the branch moved to %s during the run: %s",
                    self.stream,
                    follow.head_sha[:12],
                    "our commit replayed on top" if follow.rebased else "starting over there",
                )
                if follow.conflicted:
                    return None
                tests_after_replay = await self.run_tests(test_command)
                continue
            return pushed.sha, tests_after_replay
        await self.discard()
        raise self.stopped(f"the branch kept moving: {self.engine.push_attempts} pushes refused")

    # -- tests ------------------------------------------------------------------------------

    async def run_tests(self, test_command: str | None) -> str:
        if not test_command:
            return "no test command known (set `test:` in .github/biagent.yml)"
        row = await self.row()
        writable, hidden = await self.worktrees.sandbox_paths(row)
        result = await sandbox.run_command(
            test_command,
            self.worktree,
            timeout_s=self.engine.test_timeout_s,
            env=self.worktrees.environment(row),
            network=False,
            writable_paths=writable,
            hidden_paths=hidden,
            readonly_paths=self.worktrees.toolchain_paths(hidden),
            isolation=self.worktrees.isolation,
        )
        return summarize_tests(test_command, result)
