"""Reviews for the review concern: `pull_request_review` by action, `pull_request_review_thread`.

- `submitted`: the reviewer's state is recorded and the pull request's recomputed; `approved`
  drops pending work (the approval's own inline comments are never worked, on_comment.py);
  `changes_requested` gathers the review's unresolved comments; any other review gathers what
  is worth working on its own; and a submitted review closes the batch at once (gathering.py
  says what, purely).
- `edited`: a review body already gathered is gathered again in its new version.
- `dismissed`: the dismissed review no longer counts toward the pull request's state.
- `pull_request_review_thread`: resolved threads are not gathered by a later review; a thread
  biagent answered that a person reopens (`unresolved`) is worked again.
"""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.concerns import HandlerContext
from bot.reviews import replies
from bot.reviews.commands import mentions, parse_commands
from bot.reviews.events import ChangesRequested, PrApproved
from bot.reviews.gathering import (
    SubmittedComment,
    overall_review_state,
    reopened_thread_comment,
    review_gathering,
    takes_every_comment,
)
from bot.reviews.intake import (
    Arrival,
    arrival,
    asked_in_pr,
    blocked_bot,
    gather,
    gathered_in_thread,
    is_own,
    may_command,
    refuse,
    subscribe_on_request,
    waiting_for_review,
    worth_working,
)
from bot.reviews.on_comment import take_comment
from bot.reviews.service import ReviewService
from bot.reviews.states import BatchStatus, OverallReviewState, ReviewState
from bot.reviews.unworked import conclude_unworked
from storage import (
    pull_requests,
    review_batches,
    review_comments,
    review_standing,
    review_states,
)
from storage.pull_requests import PullRequest, Subscription
from storage.review_comments import NewComment

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("pull_request_review", action="dismissed")
async def on_review_dismissed(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    arrived = await arrival(event, gh, context)
    review = event.data["review"]
    if arrived is None or arrived.pr is None or is_own(arrived.service, review):
        return
    await review_states.dismiss_review(arrived.service.db, arrived.pr.id, int(review["id"]))
    await recompute_review_state(arrived.service, arrived.pr)


@router.register("pull_request_review", action="edited")
async def on_review_edited(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    arrived = await arrival(event, gh, context)
    review = event.data["review"]
    if arrived is None or arrived.pr is None or is_own(arrived.service, review):
        return
    service, pr = arrived.service, arrived.pr
    if await blocked_bot(service, arrived.gh, pr, review.get("user") or {}):
        return
    record = replies.review_body_record(review)
    if await review_comments.get_comment(service.db, "review_body", record.id) is not None:
        await review_comments.store_comment(service.db, pr.id, record, service.clock.now())
        await gather(service, arrived.gh, pr, [("review_body", record.id)])


@router.register("pull_request_review", action="submitted")
async def on_review_submitted(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    arrived = await arrival(event, gh, context)
    if arrived is None:
        return
    service, review = arrived.service, event.data["review"]
    pr = await asked_in_pr(arrived, review, event)
    if pr is None:
        return
    if is_own(service, review) or await blocked_bot(
        service, arrived.gh, pr, review.get("user") or {}
    ):
        return
    reviewer = str((review.get("user") or {}).get("login", ""))
    state = str(review.get("state", "")).lower()
    current = await review_states.record_reviewer_state(
        service.db,
        pr.id,
        reviewer=reviewer,
        state=state,
        review_id=int(review["id"]),
        submitted_at=review.get("submitted_at") or "",
    )
    await recompute_review_state(service, pr)
    record = replies.review_body_record(review)
    subscription, body, mentioned = await _review_subscription(arrived, pr, review, record)
    if subscription is None:
        return
    if state == ReviewState.APPROVED:
        if current:  # an older approval arriving late does not drop newer work
            await _on_approved(service, arrived.gh, pr, reviewer, int(review["id"]))
        return
    await _gather_review(arrived, pr, subscription, record, state, body=body, mentioned=mentioned)


async def _review_subscription(
    arrived: Arrival, pr: PullRequest, review: dict[str, Any], record: NewComment
) -> tuple[Subscription | None, str, bool]:
    """Run the review body's commands, let a mention from someone who may ask biagent in, and
    return the pull request's watch with the body and mention left to gather."""
    service, gh, reviewer = arrived.service, arrived.gh, record.author_login
    body = record.body.strip()
    mentioned = mentions(body, service.slug)
    if body and parse_commands(body):
        await take_comment(arrived, pr, review, record, "created")
        body, mentioned = "", False
    subscription = await pull_requests.get_subscription(service.db, pr.id)
    if mentioned and not await may_command(service, gh, pr, reviewer):
        await refuse(service, gh, pr, reviewer)
        mentioned = False
    elif mentioned and subscription is None:
        subscription = await subscribe_on_request(service, pr, reviewer)
    return subscription, body, mentioned


async def _gather_review(
    arrived: Arrival,
    pr: PullRequest,
    subscription: Subscription,
    record: NewComment,
    state: str,
    *,
    body: str,
    mentioned: bool,
) -> None:
    service, gh, review_id = arrived.service, arrived.gh, record.id
    db, now = service.db, service.clock.now()
    comments = await _submitted_comments(arrived, pr, subscription, state, review_id)
    gathering = review_gathering(
        state, review_id=review_id, body=body, mentioned=mentioned, comments=comments
    )
    if ("review_body", review_id) in gathering.items:
        await review_comments.store_comment(db, pr.id, record, now)
    batch = None
    if gathering.items:
        batch = await gather(service, gh, pr, list(gathering.items), trigger="review")
    if gathering.closes_batch:
        closed = await review_batches.close_gathering_batch(db, pr.id, now=now, review_id=review_id)
        batch = closed or batch
    if state == ReviewState.CHANGES_REQUESTED:
        requested = ChangesRequested(
            pr=pr.id, reviewer=record.author_login, batch_id=batch.id if batch else None
        )
        await service.bus.publish(pr.stream, requested)
    service.wake()


async def _submitted_comments(
    arrived: Arrival, pr: PullRequest, subscription: Subscription, state: str, review_id: int
) -> list[SubmittedComment]:
    """The review's diff comments, each stored (biagent's own and blocked bots' aside) and
    judged; whether one is worth working on its own is asked only when the state leaves it
    open."""
    service, gh = arrived.service, arrived.gh
    url = f"/repos/{pr.repository}/pulls/{pr.number}/reviews/{review_id}/comments{{?per_page}}"
    listed = [comment async for comment in gh.getiter(url, {"per_page": 100})]
    found = []
    for comment in listed:
        if is_own(service, comment) or await blocked_bot(
            service, gh, pr, comment.get("user") or {}
        ):
            found.append(SubmittedComment(int(comment["id"]), answerable=False))
            continue
        record = replies.review_comment_record(comment, own=False)
        stored, _ = await review_comments.store_comment(
            service.db, pr.id, record, service.clock.now()
        )
        answerable = not (stored.resolved or stored.deleted)
        worth = False
        if answerable and not takes_every_comment(state):
            mentioned = mentions(stored.body, service.slug) and await may_command(
                service, gh, pr, stored.author_login
            )
            worth = await worth_working(service, pr, subscription, record, mentioned)
        found.append(SubmittedComment(stored.id, answerable=answerable, worth_working=worth))
    return found


async def _on_approved(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, reviewer: str, review_id: int
) -> None:
    """Approved: no run; pending work is dropped with a note saying so."""
    db = service.db
    await service.bus.publish(pr.stream, PrApproved(pr=pr.id, reviewer=reviewer))
    pending = await review_batches.gathering_batch(db, pr.id)
    if pending is None:
        return
    count = len(await review_batches.batch_items(db, pending.id))
    await conclude_unworked(
        service, gh, pr, pending, status=BatchStatus.DROPPED, note=f"approved by @{reviewer}"
    )
    if count:
        await replies.post_pr_comment(
            service,
            gh,
            pr,
            key=f"note:approved:{review_id}",
            kind="note",
            body=(
                f"@{reviewer} approved this pull request, so biagent dropped the {count} "
                "review comment(s) it had not started on. `/biagent retry` works them anyway."
            ),
            batch_id=pending.id,
        )


async def recompute_review_state(service: ReviewService, pr: PullRequest) -> OverallReviewState:
    reviewer_states = await review_states.reviewer_states(service.db, pr.id)
    overall = overall_review_state(s.state for s in reviewer_states)
    if overall != pr.review_state:
        await pull_requests.set_review_state(service.db, pr.id, overall, service.clock.now())
        if overall == OverallReviewState.WAITING and await pull_requests.get_subscription(
            service.db, pr.id
        ):
            await service.bus.publish(pr.stream, waiting_for_review(pr))
    return overall


@router.register("pull_request_review_thread")
async def on_review_thread(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    arrived = await arrival(event, gh, context)
    if arrived is None or arrived.pr is None:
        return
    thread = event.data.get("thread") or {}
    ids = [int(c["id"]) for c in thread.get("comments") or [] if "id" in c]
    reopened = event.data.get("action") == "unresolved"
    await review_comments.set_thread_resolved(arrived.service.db, arrived.pr.id, ids, not reopened)
    if reopened:
        await _work_reopened_thread(arrived, arrived.pr, ids, event.data.get("sender") or {})


async def _work_reopened_thread(
    arrived: Arrival, pr: PullRequest, ids: list[int], sender: dict[str, Any]
) -> None:
    """A person reopened a thread biagent answered: its last word from a person is worked
    again, with the whole thread and what biagent answered before (running.py)."""
    service, gh = arrived.service, arrived.gh
    if is_own(service, {"user": sender}) or await blocked_bot(service, gh, pr, sender):
        return
    if await pull_requests.get_subscription(service.db, pr.id) is None:
        return
    comments = {
        c.id: c
        for c in await review_comments.list_comments(service.db, pr.id)
        if c.kind == "review_comment"
    }
    last = reopened_thread_comment(comments, ids)
    if last is None or await gathered_in_thread(service, pr, last):
        return  # a newer comment of the thread is gathered already: it is worked with all of it
    if not await review_standing.answered_and_idle(service.db, "review_comment", last):
        return  # not answered yet: it is gathered or being worked, and answered then, once
    log.info("%s: thread of %d reopened by @%s", pr.stream, last, sender.get("login"))
    await gather(service, gh, pr, [("review_comment", last)], trigger="reopened", again=True)
