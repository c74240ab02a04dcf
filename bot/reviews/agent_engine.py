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

Steps 2-4 are agent_run.py; what the agent is told and what its report means, agent_texts.py.
Expected trouble (budget, rate limit, a failed setup, a branch that keeps moving) is returned as
a status, never raised; a run that pushes nothing leaves the worktree back on the recorded sha,
so the next batch of the PR checks out cleanly. Called again for the same batch after a restart,
the agent's stored conversation continues (same session key), and a commit already pushed for
the batch is recognised by its `Biagent-Batch` trailer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gidgethub.abc import GitHubAPI

from bot.agents.runner import AgentRunner
from bot.config import Secret
from bot.github.connection import GitHubConnection
from bot.reviews.agent_run import AgentRun, RunStopped
from bot.reviews.engine import EngineResult, EngineStatus, ReviewBatch
from bot.worktrees.manager import (
    SessionView,
    WorktreeBusy,
    WorktreeManager,
    WorktreeSetupError,
)
from storage import repositories as repository_store
from storage.database import Database
from storage.repositories import Repository

log = logging.getLogger(__name__)

DEFAULT_TEST_TIMEOUT_S = 900.0

GitHubClient = Callable[[int], GitHubAPI]  # installation id -> its installation client
TokenFor = Callable[[int], Awaitable[Secret]]  # installation id -> its installation token


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
        run = AgentRun(self, batch, repository, view, token, stream)
        try:
            return await run.work()
        except RunStopped as stop:
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

        async def checkout() -> SessionView:
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

        try:
            return await checkout()
        except (WorktreeBusy, WorktreeSetupError) as error:
            removed = await self._remove_pr_sessions(batch, repository, str(error))
            if isinstance(error, WorktreeSetupError) or not removed:
                raise
        return await checkout()

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


def build_agent_review_engine(
    *,
    db: Database,
    agents: AgentRunner,
    worktrees: WorktreeManager,
    github: GitHubConnection,
    github_client: GitHubClient,
) -> AgentReviewEngine:
    """The engine as the app factory wires it: installation tokens from the GitHub App's
    cache (a fresh one per git command when it nears expiry), the polite clients for REST."""

    async def token_for(installation_id: int) -> Secret:
        return (await github.require().installation_token(installation_id)).token

    return AgentReviewEngine(
        db=db,
        agents=agents,
        worktrees=worktrees,
        github_client=github_client,
        installation_token=token_for,
    )
