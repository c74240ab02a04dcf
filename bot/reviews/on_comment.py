"""Comments for the review concern: `pull_request_review_comment` and `issue_comment` on a PR.

Commands and @-mentions (written at once or added by an edit) from people with write access
ask biagent in (others get one polite refusal); on watched pull requests, comments feed the
gathering batch, keyed by id: an edit makes a new version, a deletion leaves the batch.
biagent's own comments are kept as thread context only, and other bots' are ignored unless
`.github/biagent.yml` allows them. A diff comment that came with an approving review is never
worked, whichever of the two webhooks arrives first.
"""

from __future__ import annotations

import logging
from typing import Any

import gidgethub
from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.concerns import HandlerContext
from bot.reviews import control, replies
from bot.reviews.commands import mentions, parse_commands
from bot.reviews.intake import (
    Arrival,
    arrival,
    asked_in_pr,
    blocked_bot,
    gather,
    is_own,
    may_command,
    refuse,
    subscribe_on_request,
    worth_working,
)
from bot.reviews.service import ReviewService
from storage import pull_requests, review_comments, review_states
from storage.pull_requests import PullRequest
from storage.review_comments import NewComment

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("pull_request_review_comment")
async def on_review_comment(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    arrived = await arrival(event, gh, context)
    if arrived is None:
        return
    comment = event.data["comment"]
    pr = await asked_in_pr(arrived, comment, event)
    if pr is None:
        return
    record = replies.review_comment_record(comment, own=is_own(arrived.service, comment))
    await take_comment(arrived, pr, comment, record, event.data.get("action", ""))


@router.register("issue_comment")
async def on_issue_comment(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    arrived = await arrival(event, gh, context)
    issue = event.data.get("issue") or {}
    if arrived is None or "pull_request" not in issue:
        return
    comment = event.data["comment"]
    pr = await asked_in_pr(arrived, comment, event)
    if pr is None:
        return
    record = replies.issue_comment_record(comment, own=is_own(arrived.service, comment))
    await take_comment(arrived, pr, comment, record, event.data.get("action", ""))


async def take_comment(
    arrived: Arrival,
    pr: PullRequest,
    comment_json: dict[str, Any],
    record: NewComment,
    action: str,
) -> None:
    """A comment (or a review's body) on a pull request: commands run, biagent is asked in,
    or the comment is stored and, when worth it, gathered."""
    service, gh = arrived.service, arrived.gh
    db, now = service.db, service.clock.now()
    subscription = await pull_requests.get_subscription(db, pr.id)
    if record.own:
        if subscription is not None and action != "deleted":
            await review_comments.store_comment(db, pr.id, record, now)  # thread context only
        return
    if await blocked_bot(service, gh, pr, comment_json.get("user") or {}):
        return
    if action == "deleted":
        await review_comments.mark_comment_deleted(db, record.kind, record.id)
        return
    commands = parse_commands(record.body) if action == "created" else []
    mentioned = mentions(record.body, service.slug)
    # A mention asks biagent to act, whether it was written at once or added by an edit.
    if commands or mentioned:
        if not await may_command(service, gh, pr, record.author_login):
            await refuse(service, gh, pr, record.author_login)
            return
        if subscription is None:
            subscription = await subscribe_on_request(service, pr, record.author_login)
    if commands:
        for position, command in enumerate(commands):
            await control.run_command(
                service,
                gh,
                pr,
                command,
                author=record.author_login,
                source_key=f"{record.kind}:{record.id}",
                position=position,
            )
        return  # a command is an instruction to biagent, not review feedback
    if subscription is None:
        return
    await review_comments.store_comment(db, pr.id, record, now)
    if not await worth_working(service, pr, subscription, record, mentioned):
        return
    if record.review_id is not None and await in_approving_review(
        service, gh, pr, record.review_id
    ):
        log.info("%s: comment %d is part of an approval: not worked", pr.stream, record.id)
        return
    await gather(service, gh, pr, [(record.kind, record.id)])


async def in_approving_review(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, review_id: int
) -> bool:
    """Whether a diff comment came with an approving review. GitHub sends an approval's inline
    comments as their own webhooks, in no set order against the review's: whichever comes
    first, they must not start a run the approval already ruled out. GitHub is asked when the
    review is not known here yet (the comment came first)."""
    if await review_states.is_approving_review(service.db, pr.id, review_id):
        return True
    state = service.review_state_of.get((pr.repository, review_id))
    if state is None:
        try:
            review = await gh.getitem(
                f"/repos/{pr.repository}/pulls/{pr.number}/reviews/{review_id}"
            )
        except gidgethub.BadRequest as error:
            if int(error.status_code) == 404:
                return False
            raise
        state = str(review.get("state", "")).upper()
        if state != "PENDING":  # a submitted review's state is fixed
            service.review_state_of[(pr.repository, review_id)] = state
    return state == "APPROVED"
