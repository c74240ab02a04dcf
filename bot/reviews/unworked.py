"""Batches that are not worked now: dropped or skipped with why, or parked by a paused PR.

Each concludes the batch's queued check run neutral (biagent's own trouble never blocks a
merge), so no check is left queued: a dropped or skipped batch ends here; a batch parked by a
cap stays gathering and is worked after `/biagent resume`.
"""

from __future__ import annotations

import logging

from gidgethub.abc import GitHubAPI

from bot.reviews import checks, replies
from bot.reviews.service import ReviewService
from bot.reviews.states import BatchStatus, Conclusion
from storage import pull_requests, review_batches, review_replies
from storage.pull_requests import PullRequest
from storage.review_batches import Batch

log = logging.getLogger(__name__)


async def conclude_unworked(
    service: ReviewService,
    gh: GitHubAPI,
    pr: PullRequest,
    batch: Batch,
    *,
    status: BatchStatus,
    note: str,
) -> None:
    """A batch that will not be worked (dropped or skipped): recorded with why, its check run
    concluded neutral."""
    db = service.db
    await review_batches.set_batch_status(
        db, batch.id, status, now=service.clock.now(), outcome=status, note=note
    )
    await checks.conclude_neutral(
        service,
        gh,
        pr,
        batch,
        title=f"{status.capitalize()}: {note}"[:250],
        summary=f"biagent did not work this batch: {note}.",
    )
    log.info("%s: batch %d %s: %s", pr.stream, batch.id, status, note)


async def pause_for_cap(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, batch: Batch, reason: str
) -> None:
    """A cap is reached: pause the PR (one comment saying why and how to resume). The batch is
    kept gathering and is worked after `/biagent resume`; its check run concludes neutral.

    The pause is stored last: a paused PR's batches are not due, so nothing would come back to
    a check or a comment left undone. Until then every attempt (the scheduler retries a batch
    that fails at pick-up) concludes the check and posts the comment, each written once: the
    comment's key is the pause's number, `pause:<pr>:<n>`."""
    db, now = service.db, service.clock.now()
    pause_number = pr.pause_count + 1
    key = f"pause:{pr.id}:{pause_number}"
    first_attempt = not await review_replies.reply_exists(db, key)
    if batch.check_run_id is not None or batch.check_run_creating is not None or first_attempt:
        await finish_pending_check(service, gh, pr, batch, title="Paused", why=f"paused: {reason}")
    await replies.post_pr_comment(
        service,
        gh,
        pr,
        key=key,
        kind="pause",
        body=(
            f"biagent paused itself on this pull request: {reason}.\n\n"
            "The pending review comments are kept. Comment `/biagent resume` to go on "
            "(the per-pull-request caps then count afresh)."
        ),
        batch_id=batch.id,
    )
    await review_batches.park(db, batch.id, note=f"paused: {reason}")
    await pull_requests.pause(db, pr.id, f"cap reached: {reason}", now)


async def finish_pending_check(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, batch: Batch, *, title: str, why: str
) -> None:
    """Conclude (neutral) the queued check run of a batch that stays pending; a new one is
    opened when the batch is worked later."""
    if batch.check_run_id is None:
        # Stored at once (or adopted, if an earlier attempt created it): if completing it
        # fails, the next attempt completes this one.
        check_run_id = await checks.open_check(
            service,
            gh,
            pr,
            batch_id=batch.id,
            head_sha=pr.head_sha,
            title=title,
            summary=why,
        )
    else:
        check_run_id = batch.check_run_id
    await checks.complete(
        gh,
        pr,
        check_run_id,
        conclusion=Conclusion.NEUTRAL,
        title=f"{title}: {why}"[:250],
        summary=f"biagent is not working these comments now: {why}.",
        text=None,
        completed_at=checks.github_time(service),
    )
    await review_batches.set_check_run(service.db, batch.id, None, None)
