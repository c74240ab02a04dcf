"""The seam between the review machinery and the work itself: the `ReviewEngine` protocol.

Everything around a batch (which comments, when, replies, check runs, caps) lives in
bot/reviews/. What happens to the code (check out the PR head in a worktree, run the
review_response agent, commit, push with a lease) is an engine's job. The worker hands an engine
one `ReviewBatch` and gets one `EngineResult` back; docs/reviews.md states the contract.

An engine reports, for each comment, what the agent said, and nothing it did not say: a comment
it has no outcome for is simply left out (the worker answers it "not addressed"). It must not
raise for an expected trouble (budget, rate limit, a failed push): it returns a status instead.
An exception is treated as `failed` with the exception's text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol


class OutcomeKind(enum.StrEnum):
    FIXED = "fixed"  # changed in `commit_sha`
    DECLINED = "declined"  # not changed, for `reason`
    QUESTION = "question"  # needs an answer: `question`


class EngineStatus(enum.StrEnum):
    COMPLETED = "completed"
    BUDGET_STOPPED = "budget_stopped"
    RATE_LIMITED = "rate_limited"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    """One message of a comment's thread, oldest first (biagent's own replies included)."""

    comment_id: int
    author: str
    body: str
    created_at: str
    by_biagent: bool = False


@dataclass(frozen=True, slots=True)
class EarlierAnswer:
    """What biagent answered before in a comment's thread (or to the comment itself), in an
    earlier iteration: the outcome, its text, and the commit it made for a fix."""

    comment_id: int  # the comment that was answered
    iteration: int
    outcome: str  # fixed, declined, question, not_addressed
    detail: str
    commit_sha: str | None = None


@dataclass(frozen=True, slots=True)
class BatchComment:
    """A comment to address. `kind` is `review_comment` (on a line of the diff), `issue_comment`
    (the PR conversation) or `review_body` (the text of a submitted review). `body` is the
    snapshot taken when the batch was picked up; `thread` is the whole thread it belongs to;
    `earlier` what biagent answered in that thread before (a follow-up, a reopened thread)."""

    comment_id: int
    kind: str
    author: str
    body: str
    path: str | None
    line: int | None
    start_line: int | None
    side: str | None
    diff_hunk: str | None
    thread_root_id: int | None
    thread: tuple[ThreadMessage, ...]
    url: str | None = None
    earlier: tuple[EarlierAnswer, ...] = ()


@dataclass(frozen=True, slots=True)
class ReviewBatch:
    batch_id: int
    iteration: int  # 1, 2, ... per pull request
    repository: str  # owner/name
    clone_url: str  # as GitHub reports it (file://... in tests)
    pr_number: int
    pr_title: str
    head_ref: str
    head_sha: str  # the head when the batch was picked up: push with a lease against it
    base_ref: str
    installation_id: int
    comments: tuple[BatchComment, ...]
    repo_config: dict[str, Any] = field(default_factory=dict)  # .github/biagent.yml


@dataclass(frozen=True, slots=True)
class CommentOutcome:
    comment_id: int
    kind: OutcomeKind
    commit_sha: str | None = None  # fixed
    reason: str | None = None  # declined
    question: str | None = None  # question
    note: str | None = None  # optional, any kind: what the agent wants the reviewer to read
    # review_comment, issue_comment or review_body: GitHub numbers reviews and comments apart,
    # so an id alone can name two comments of one batch. None: the id names it alone.
    comment_kind: str | None = None
    # fixed by applying the comment's ```suggestion block as written, without a model
    suggestion: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "comment_id": self.comment_id,
            "kind": str(self.kind),
            "commit_sha": self.commit_sha,
            "reason": self.reason,
            "question": self.question,
            "note": self.note,
            "comment_kind": self.comment_kind,
            "suggestion": self.suggestion,
        }


@dataclass(frozen=True, slots=True)
class EngineResult:
    status: EngineStatus
    outcomes: tuple[CommentOutcome, ...] = ()
    commit_sha: str | None = None  # the commit pushed to head_ref, if any
    tests_summary: str | None = None  # e.g. "42 passed, 1 skipped" or "tests not run: ..."
    cost_usd: float = 0.0
    error: str | None = None  # with FAILED (and a short reason with the other stops)


class ReviewEngine(Protocol):
    async def work(self, batch: ReviewBatch) -> EngineResult:
        """Work the batch: address the comments on the PR branch and report per comment."""
        ...
