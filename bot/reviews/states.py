"""The states a review's pieces move through, as the database stores them (same text values).

A batch: gathering -> running -> responding -> done, or dropped / skipped (never worked) or
failed (given up). A reviewer's latest review and the pull request's overall review state.
The conclusions biagent gives its `biagent/review` check run: never `failure`, so its own
trouble never blocks a merge (checks.py). What biagent does after a pushed iteration besides
replying (resolving threads, re-requesting review), and where each such action stands.
"""

from __future__ import annotations

import enum


class BatchStatus(enum.StrEnum):
    GATHERING = "gathering"  # comments still come in; due at `due_at`
    RUNNING = "running"  # picked up: the engine works it
    RESPONDING = "responding"  # the engine's report is stored; replies are being posted
    DONE = "done"  # answered
    DROPPED = "dropped"  # not worked: approved, closed, nothing left
    SKIPPED = "skipped"  # not worked: reviews off, no engine configured
    FAILED = "failed"  # given up after the scheduler's last attempt

    @property
    def in_progress(self) -> bool:
        """Pending or being worked: nothing to re-run yet, nothing to retry."""
        return self in (BatchStatus.GATHERING, BatchStatus.RUNNING, BatchStatus.RESPONDING)


class Answer(enum.StrEnum):
    """What biagent answered one comment of a batch (a batch item's stored outcome): the
    engine's outcome kinds (engine.OutcomeKind) and `not_addressed` when it has none."""

    FIXED = "fixed"
    DECLINED = "declined"
    QUESTION = "question"
    NOT_ADDRESSED = "not_addressed"


class ReviewState(enum.StrEnum):
    """A submitted review's state, as the `pull_request_review` webhook spells it."""

    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    COMMENTED = "commented"
    DISMISSED = "dismissed"


class OverallReviewState(enum.StrEnum):
    """A pull request's review state, from its reviewers' latest reviews."""

    WAITING = "waiting"
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"


class Conclusion(enum.StrEnum):
    """The conclusions biagent gives its check run."""

    SUCCESS = "success"
    NEUTRAL = "neutral"


class ActionKind(enum.StrEnum):
    """What biagent does after a pushed iteration besides replying (after_push.py)."""

    RESOLVE_THREAD = "resolve_thread"  # GraphQL resolveReviewThread on a thread it fixed
    REREQUEST_REVIEW = "rerequest_review"  # POST .../requested_reviewers for those it answered


class ActionStatus(enum.StrEnum):
    """A review action's state: the intent is stored before the call to GitHub."""

    INTENT = "intent"
    DONE = "done"
    SKIPPED = "skipped"  # nothing to do after all (the thread is gone)
    FAILED = "failed"  # GitHub refused it for good
