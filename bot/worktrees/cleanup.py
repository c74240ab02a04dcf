"""When a worktree may go: decided from its pull request's state, never from commit ancestry.

A squash or rebase merge leaves the branch's commits unreachable from the base branch, so
"is the tip an ancestor of main?" says no for most merged pull requests; GitHub's own
`merged` flag is the answer. The PR closed webhook and the scheduled sweep both ask
`decide_cleanup`; the sweep learns the state from GitHub's REST API through
`github_pull_request_state`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from storage.repositories import Repository


@dataclass(frozen=True, slots=True)
class PullRequestState:
    merged: bool
    closed: bool

    @classmethod
    def from_github(cls, pull_request: dict[str, Any]) -> PullRequestState:
        """From a pull request object (webhook payload or GET /repos/{o}/{r}/pulls/{n})."""
        merged = bool(pull_request.get("merged")) or pull_request.get("merged_at") is not None
        return cls(merged=merged, closed=pull_request.get("state") == "closed" or merged)


@dataclass(frozen=True, slots=True)
class CleanupDecision:
    remove_worktree: bool
    force_delete_branch: bool  # the work landed: delete the branch even if no ref contains it
    reason: str


def decide_cleanup(state: PullRequestState) -> CleanupDecision:
    if state.merged:
        return CleanupDecision(True, True, "pull request merged")
    if state.closed:
        # The pushed commits stay on the remote; the local branch goes only if nothing is lost.
        return CleanupDecision(True, False, "pull request closed without merge")
    return CleanupDecision(False, False, "pull request open")


PullRequestLookup = Callable[[Repository, int], Awaitable[PullRequestState | None]]


def github_pull_request_state(github: Any) -> PullRequestLookup:
    """A lookup for the scheduled sweep through the GitHub App's connection (a
    `bot.github.connection.GitHubConnection`): unknown (None) while no App is configured."""

    async def lookup(repository: Repository, number: int) -> PullRequestState | None:
        if github.app is None or repository.installation_id is None:
            return None
        client = github.app.client(repository.installation_id)
        pull_request = await client.getitem(f"/repos/{repository.full_name}/pulls/{number}")
        return PullRequestState.from_github(pull_request)

    return lookup
