"""The message types the review concern emits (docs/design.md, Events; bot.events.message).

Each is published on the pull request's stream (`pr:<owner>/<repo>#<number>`) by the router
(a review or comment arrived) or the worker (a batch was answered).
"""

from __future__ import annotations

from typing import ClassVar

from bot.events.message import Event


class WaitingForReview(Event):
    """A pull request waits for its reviewers."""

    type_name: ClassVar[str] = "waiting_for_review"
    concern: ClassVar[str] = "reviews"
    pr: int
    number: int
    repository: str


class ReviewReceived(Event):
    """Review comments were gathered into a batch."""

    type_name: ClassVar[str] = "review_received"
    concern: ClassVar[str] = "reviews"
    pr: int
    batch_id: int
    comments: int
    due_at: str | None = None


class ReviewResponded(Event):
    """biagent answered a batch: replies posted, fixes pushed."""

    type_name: ClassVar[str] = "review_responded"
    concern: ClassVar[str] = "reviews"
    pr: int
    batch_id: int
    # "<comment kind>:<comment id>" -> its outcome (fixed, declined, ...; None: not answered)
    outcomes: dict[str, str | None]
    commit: str | None = None
    cost_usd: float | None = None
    iteration: int | None = None
    status: str | None = None


class PrApproved(Event):
    """A reviewer approved the pull request."""

    type_name: ClassVar[str] = "pr_approved"
    concern: ClassVar[str] = "reviews"
    pr: int
    reviewer: str


class ChangesRequested(Event):
    """A reviewer requested changes."""

    type_name: ClassVar[str] = "changes_requested"
    concern: ClassVar[str] = "reviews"
    pr: int
    reviewer: str
    batch_id: int | None = None
