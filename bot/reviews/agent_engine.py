"""The review engine: a batch worked by the review_response agent in a worktree of the PR head.

This is the `ReviewEngine` (engine.py) production uses when both the GitHub App and the agents
are configured (web/app.py). For one batch:

1. the pull request is read from GitHub for the clone URLs of its base and head repositories
   (as GitHub reports them: a fork, GitHub Enterprise Server, a `file://` bare repository in
   tests); the head is fetched into the repository's mirror (fetch, never clone) and checked out
   in the PR's worktree (bot/worktrees/), which records its sha: the lease of the push;
2. the review_response agent (bot/agents/) gets every comment (path, line, diff hunk, the
   whole thread) and the repository's test command, edits the worktree, runs the tests, and
   reports one outcome per comment through report_output (agents.yml states its schema);
3. what changed is committed with a message listing what was addressed, the test command runs
   once more on that commit (the line reviewers read is measured, not taken from the model),
   the commit is noted as biagent's own (so the `synchronize` it causes is ignored by the
   router's circuit breaker) and pushed with `--force-with-lease` against the recorded sha;
4. a refused push means someone else pushed: their head is fetched and our commit replayed on
   top of it (their commits kept, ours after), or, when that conflicts, the agent starts over
   on their head (once, by default); never a plain force push.

Expected trouble (budget, rate limit, a failed setup, a branch that keeps moving) is returned as
a status, never raised; a run that pushes nothing leaves the worktree back on the recorded sha,
so the next batch of the PR checks out cleanly. Called again for the same batch after a restart,
the agent's stored conversation continues (same session key), and a commit already pushed for
the batch is recognised by its `Biagent-Batch` trailer.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.agents.loop import AgentContext, StepResult
from bot.agents.runner import AgentRunner
from bot.config import Secret
from bot.github.app import GitHubApp
from bot.gitops.runner import run_git
from bot.isolation import sandbox
from bot.reviews.engine import (
    BatchComment,
    CommentOutcome,
    EngineResult,
    EngineStatus,
    OutcomeKind,
    ReviewBatch,
)
from bot.worktrees.manager import (
    PushRejected,
    SessionView,
    WorktreeBusy,
    WorktreeManager,
    WorktreeSetupError,
)
from storage import repositories as repository_store
from storage import review_iterations as reviews
from storage.database import Database
from storage.repositories import Repository
from storage.worktrees import WorktreeRepo

log = logging.getLogger(__name__)

AGENT = "review_response"
DEFAULT_TEST_TIMEOUT_S = 900.0
TRAILER = "Biagent-Batch"
# What tools leave in a worktree that is also their HOME; never part of a review commit.
NOT_COMMITTED = (
    ":(exclude,glob).cache/**",
    ":(exclude,glob).local/**",
    ":(exclude,glob).config/**",
    ":(exclude,glob).npm/**",
    ":(exclude,glob)**/__pycache__/**",
    ":(exclude,glob)**/.pytest_cache/**",
    ":(exclude,glob).*_history",
)
_TEST_COUNTS = re.compile(
    r"\b\d+ (passed|failed|errors?|skipped|tests?|examples?|specs?)\b|^(ok|OK|FAILED)\b|^Ran \d+"
)

GitHubClient = Callable[[int], Any]  # installation id -> a gidgethub client
TokenFor = Callable[[int], Awaitable[Secret]]  # installation id -> its installation token


class _Stop(Exception):
    """Expected trouble: the run ends with this result (the worktree already put back)."""

    def __init__(self, result: EngineResult) -> None:
        super().__init__(result.error)
        self.result = result


@dataclass
class AgentReviewEngine:
    db: Database
    agents: AgentRunner
    worktrees: WorktreeManager
    github_client: GitHubClient
    installation_token: TokenFor
    test_timeout_s: float = DEFAULT_TEST_TIMEOUT_S
    restarts: int = 1  # fresh starts on their head when our commit does not replay onto it
    push_attempts: int = 3  # pushes refused because the branch moved, before giving up

    async def work(self, batch: ReviewBatch) -> EngineResult:
        stream = f"pr:{batch.repository}#{batch.pr_number}"
        token = await self.installation_token(batch.installation_id)
        pull = await self.github_client(batch.installation_id).getitem(
            f"/repos/{batch.repository}/pulls/{batch.pr_number}"
        )
        head = pull.get("head") or {}
        if not head.get("repo"):
            return EngineResult(
                EngineStatus.FAILED, error="the head repository of the pull request is gone"
            )
        base_repo = (pull.get("base") or {}).get("repo") or {}
        repository = await repository_store.upsert(
            self.db,
            full_name=batch.repository,
            clone_url=base_repo.get("clone_url") or batch.clone_url,
            default_branch=base_repo.get("default_branch"),
            installation_id=batch.installation_id,
            now=self.worktrees.clock.now(),
        )
        head_url = head["repo"].get("clone_url") or batch.clone_url
        head_ref = head.get("ref") or batch.head_ref
        try:
            view = await self._checkout(batch, repository, head_url, head_ref, token, stream)
        except WorktreeSetupError as error:
            return EngineResult(EngineStatus.FAILED, error=f"worktree setup failed: {error}")
        holder = f"review:{batch.repository}#{batch.pr_number}"
        await self.worktrees.hold(view.id, holder)
        run = _Run(self, batch, repository, view, token, stream)
        try:
            return await run.work()
        except _Stop as stop:
            return stop.result
        except Exception:
            # Put the worktree back so the next batch does not start from half-done edits (a
            # crash, unlike an exception, keeps them: the restarted run continues its work).
            with contextlib.suppress(Exception):
                await run.discard()
            raise
        finally:
            await self.worktrees.release(view.id)

    async def _checkout(
        self,
        batch: ReviewBatch,
        repository: Repository,
        head_url: str,
        head_ref: str,
        token: Secret,
        stream: str,
    ) -> SessionView:
        """The PR's worktree on its current head; a worktree left unusable by an earlier run
        (work of its own on a moved head, a failed setup) is removed and made anew."""
        for attempt in (1, 2):
            try:
                return await self.worktrees.checkout_pull_request(
                    repository,
                    pr_number=batch.pr_number,
                    head_ref=head_ref,
                    head_sha=batch.head_sha,
                    clone_url=head_url,
                    installation_token=token,
                    stream=stream,
                    wait_for_input=False,
                )
            except (WorktreeBusy, WorktreeSetupError) as error:
                removed = await self._remove_pr_sessions(batch, repository, str(error))
                if attempt == 2 or isinstance(error, WorktreeSetupError) or not removed:
                    raise
        raise AssertionError("unreachable")

    async def _remove_pr_sessions(
        self, batch: ReviewBatch, repository: Repository, why: str
    ) -> bool:
        removed = False
        for view in await self.worktrees.list_sessions():
            mine = any(row.repository_id == repository.id for row in view.repos)
            if view.session.owner == f"pr-{batch.pr_number}" and mine:
                log.info("%s#%d: removing worktree %s: %s", batch.repository, batch.pr_number,
                         view.id, why)  # fmt: skip
                removed |= await self.worktrees.cleanup_session(
                    view.id, f"unusable for review batch {batch.batch_id}: {why}", force=True
                )
        return removed


class _Run:
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

    async def row(self) -> WorktreeRepo:
        view = await self.worktrees.get(self.session_id)
        assert view is not None
        return next(row for row in view.repos if row.repository_id == self.repository.id)

    async def work(self) -> EngineResult:
        await self.stand_on_recorded_head()
        test_command = await self.test_command()
        for attempt in range(1, self.engine.restarts + 2):
            start_sha = (await self.row()).recorded_sha
            assert start_sha is not None
            step = await self.run_agent(attempt, test_command, start_sha)
            status, stop_reason = _status_of(step)
            entries = _reported(step.output)
            if entries is None:
                await self.discard()
                why = stop_reason or "the agent finished without calling report_output"
                return EngineResult(status, cost_usd=self.cost_usd, error=why)
            summary = (step.output or {}).get("summary")
            if not await self.commit(entries, summary) and not await self.pushed_before(start_sha):
                return EngineResult(
                    status,
                    _outcomes(entries, None),
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
                _outcomes(entries, sha),
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
        context = AgentContext(
            # Same batch, same worktree, same attempt after a restart: the conversation goes on.
            session_key=(
                f"review:{batch.repository}#{batch.pr_number}:batch-{batch.batch_id}"
                f":{self.session_id}:{attempt}"
            ),
            worktree=self.worktree,
            task=task_text(batch, test_command, start_sha, restarted=attempt > 1),
            stream=self.stream,
            repository_context=f"Test command: {test_command or 'unknown'}",
            pr=f"{batch.repository}#{batch.pr_number}",
            # Its ports and caches, and the database, the app's key and other worktrees hidden.
            sandbox=await self.worktrees.command_sandbox(await self.row()),
        )
        step = await self.engine.agents.run_step(AGENT, context)
        self.cost_usd += step.cost_usd
        return step

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

    async def made_by_this_batch(self, commit: str) -> bool:
        message = await self.git("log", "-1", "--format=%B", commit)
        return f"{TRAILER}: {self.batch.batch_id}" in message.splitlines()

    async def stand_on_recorded_head(self) -> None:
        """Start from the head the lease names. A new PR worktree starts there; a reused one can
        hold what a stopped run left on top of it: this batch's own unpushed commit (a stop
        between commit and push) is kept, anything else is dropped."""
        recorded = (await self.row()).recorded_sha
        head = await self.git("rev-parse", "HEAD")
        if head == recorded or await self.made_by_this_batch(head):
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
                    raise _Stop(
                        EngineResult(
                            EngineStatus.FAILED, cost_usd=self.cost_usd, error=str(refused)
                        )
                    ) from refused
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
        raise _Stop(
            EngineResult(
                EngineStatus.FAILED,
                cost_usd=self.cost_usd,
                error=f"the branch kept moving: {self.engine.push_attempts} pushes refused",
            )
        )

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


# -- pure helpers -----------------------------------------------------------------------------


def _status_of(step: StepResult) -> tuple[EngineStatus, str | None]:
    """The engine status for the agent's, and a short reason when it stopped early."""
    if step.status == "completed":
        return EngineStatus.COMPLETED, None
    if step.status == "budget_stopped":
        return EngineStatus.BUDGET_STOPPED, step.reason or "the agent's budget ran out"
    error = step.error or step.reason or step.status
    if "RateLimitError" in error or "rate_limit_error" in error:
        return EngineStatus.RATE_LIMITED, error
    if step.status == "paused_for_clarification":
        error = "the agent asked a person instead of answering with a question outcome"
    return EngineStatus.FAILED, error


def _reported(output: Any) -> list[dict[str, Any]] | None:
    if not isinstance(output, dict) or not isinstance(output.get("outcomes"), list):
        return None
    return [entry for entry in output["outcomes"] if isinstance(entry, dict)]


# The kinds of comment a batch holds, as the agent may name them in its report.
COMMENT_KINDS = ("review_comment", "issue_comment", "review_body")


def _outcomes(entries: list[dict[str, Any]], commit_sha: str | None) -> tuple[CommentOutcome, ...]:
    """What the agent said, as the contract's outcomes; `fixed` means in the pushed commit."""
    outcomes = []
    for entry in entries:
        try:
            comment_id = int(entry["comment_id"])
            kind = OutcomeKind(entry["outcome"])
        except (KeyError, TypeError, ValueError):
            continue
        explanation = str(entry.get("explanation") or "").strip() or None
        # Which comment of that id (a review body and a diff comment can share one).
        comment_kind = entry.get("comment_kind")
        if comment_kind not in COMMENT_KINDS:
            comment_kind = None
        if kind is OutcomeKind.FIXED:
            said = {"commit_sha": commit_sha, "note": explanation}
        elif kind is OutcomeKind.DECLINED:
            said = {"reason": explanation}
        else:
            said = {"question": explanation}
        outcomes.append(CommentOutcome(comment_id, kind, comment_kind=comment_kind, **said))
    return tuple(outcomes)


def _first_line(text: str, limit: int = 72) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 3].rstrip() + "..."


def _where(comment: BatchComment) -> str:
    if comment.path:
        return f"{comment.path}:{comment.line}" if comment.line else comment.path
    return "review" if comment.kind == "review_body" else "conversation"


def commit_message(batch: ReviewBatch, entries: list[dict[str, Any]], summary: str) -> str:
    """Subject, the agent's summary, one line per comment addressed, the batch trailer."""
    fixed = {int(e["comment_id"]) for e in entries if e.get("outcome") == "fixed"}
    addressed = [comment for comment in batch.comments if comment.comment_id in fixed]
    subject = f"Address review comments on #{batch.pr_number}"
    lines = [subject, ""]
    if summary.strip():
        lines += [summary.strip(), ""]
    lines.append("Addressed:" if addressed else "No comment reported fixed.")
    for comment in addressed:
        lines.append(f"- {_where(comment)}: {_first_line(comment.body)} (@{comment.author})")
    lines += ["", f"{TRAILER}: {batch.batch_id}"]
    return "\n".join(lines)


def summarize_tests(command: str, result: sandbox.SandboxResult) -> str:
    """One line: the command, passed/failed, and its own summary line (e.g. `3 passed`)."""
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    counts = [line for line in lines if _TEST_COUNTS.search(line)]
    detail = (counts or lines or [""])[-1].strip("= ")[:160]
    if result.timed_out:
        verdict = "timed out"
    elif result.ok:
        verdict = "passed"
    else:
        verdict = f"FAILED (exit {result.exit_code})"
    return f"`{command}` {verdict}" + (f": {detail}" if detail else "")


def task_text(
    batch: ReviewBatch, test_command: str | None, head_sha: str, *, restarted: bool = False
) -> str:
    """The agent's task: the pull request, every comment with its place and whole thread."""
    lines = [
        f"Pull request #{batch.pr_number} in {batch.repository}: {batch.pr_title}",
        f"Branch {batch.head_ref} (into {batch.base_ref}), checked out at {head_sha[:12]} in"
        " your working directory.",
        "",
        f"Address these {len(batch.comments)} review comment(s). Report exactly one outcome for"
        " each comment id below.",
    ]
    if restarted:
        lines += [
            "",
            "Note: the branch moved while an earlier attempt worked on these comments, and that"
            " work conflicted with the new commits. Start again from the current files.",
        ]
    for comment in batch.comments:
        lines += [
            "",
            f"## Comment {comment.comment_id} ({comment.kind}) by @{comment.author}"
            f" ({_where(comment)})",
        ]
        if comment.kind == "review_body":
            lines.append("(the text of a submitted review)")
        elif comment.kind == "issue_comment":
            lines.append("(a comment in the pull request's conversation)")
        lines += ["", _quote(comment.body)]
        if comment.diff_hunk:
            lines += ["", "Diff hunk:", "```diff", comment.diff_hunk.rstrip(), "```"]
        earlier = [
            message for message in comment.thread if message.comment_id != comment.comment_id
        ]
        if earlier:
            lines += ["", "Whole thread, oldest first:"]
            for message in comment.thread:
                who = f"@{message.author}" + (" (biagent)" if message.by_biagent else "")
                mark = " <- this comment" if message.comment_id == comment.comment_id else ""
                lines.append(f"- {who}{mark}:")
                lines.append(_quote(message.body, prefix="  > "))
    lines += [
        "",
        "Tests: "
        + (
            f"run `{test_command}` with bash after your edits."
            if test_command
            else "no test command is known for this repository; say so in your summary."
        ),
        "Do not commit: biagent commits your changes and pushes them.",
        "Finish with report_output.",
    ]
    return "\n".join(lines)


def _quote(text: str, *, prefix: str = "> ") -> str:
    return "\n".join(prefix + line for line in (text.strip() or "(empty)").splitlines())


def build_agent_review_engine(
    *,
    db: Database,
    agents: AgentRunner,
    worktrees: WorktreeManager,
    github: GitHubApp,
    github_client: GitHubClient,
) -> AgentReviewEngine:
    """The engine as the app factory wires it: installation tokens from the GitHub App's
    cache (a fresh one per git command when it nears expiry), the polite clients for REST."""

    async def token_for(installation_id: int) -> Secret:
        return (await github.installation_token(installation_id)).token

    return AgentReviewEngine(
        db=db,
        agents=agents,
        worktrees=worktrees,
        github_client=github_client,
        installation_token=token_for,
    )
