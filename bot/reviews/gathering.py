"""What a submitted review means for the pull request's batch, and for its review state, and
which comment a reopened thread puts back into it (pure).

The handler (on_review.py) looks up what needs GitHub or the database (is a comment biagent's,
resolved, worth working on its own); these functions decide from that alone, so the rules are
tested without a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bot.reviews.states import OverallReviewState, ReviewState
from bot.reviews.threads import thread_root
from storage.review_comments import Comment


@dataclass(frozen=True, slots=True)
class SubmittedComment:
    """A diff comment submitted with a review, as the handler found it."""

    comment_id: int
    answerable: bool  # a person's (or an allowed bot's), neither resolved nor deleted
    worth_working: bool = False  # on its own (intake.worth_working); asked only when it counts


@dataclass(frozen=True, slots=True)
class ReviewGathering:
    items: tuple[tuple[str, int], ...]  # (comment kind, id) for the gathering batch
    closes_batch: bool  # the batch is due at once


def takes_every_comment(state: str) -> bool:
    """Changes requested: every answerable comment of the review is worked, asked or not."""
    return state == ReviewState.CHANGES_REQUESTED


def review_gathering(
    state: str,
    *,
    review_id: int,
    body: str,
    mentioned: bool,
    comments: Sequence[SubmittedComment],
) -> ReviewGathering:
    """The comments a submitted review puts into the batch, and whether it closes the batch.

    `body` is the review's text (empty when it held only commands), `mentioned` whether it
    asks biagent by name (from someone who may)."""
    every = takes_every_comment(state)
    items = [
        ("review_comment", comment.comment_id)
        for comment in comments
        if comment.answerable and (every or comment.worth_working)
    ]
    if body and (every or mentioned):
        items.append(("review_body", review_id))
    # A submitted review is GitHub's own batch boundary: the batch is due at once. Except a
    # "single comment": GitHub wraps each one in a commented review of its own with no body,
    # and closing on those would work every single comment alone, never a debounced batch.
    single_comment = state == ReviewState.COMMENTED and not body and len(comments) <= 1
    return ReviewGathering(tuple(items), closes_batch=not single_comment)


def overall_review_state(reviewer_states: Iterable[str]) -> OverallReviewState:
    """One reviewer asking for changes outweighs approvals; no verdict yet is waiting."""
    states = set(reviewer_states)
    if ReviewState.CHANGES_REQUESTED in states:
        return OverallReviewState.CHANGES_REQUESTED
    if ReviewState.APPROVED in states:
        return OverallReviewState.APPROVED
    return OverallReviewState.WAITING


def reopened_thread_comment(
    comments: Mapping[int, Comment], thread_ids: Iterable[int]
) -> int | None:
    """The comment worked again when a thread is reopened: its last one by a person (deleted
    ones aside), when biagent has answered in that thread; None otherwise."""
    by_id = dict(comments)
    known = [by_id[i] for i in thread_ids if i in by_id]
    if not known:
        return None
    root = thread_root(known[0], by_id)
    thread = [c for c in by_id.values() if thread_root(c, by_id) == root and not c.deleted]
    if not any(c.own for c in thread):
        return None
    people = [c for c in thread if not c.own]
    if not people:
        return None
    return max(people, key=lambda c: (c.created_at, c.id)).id
