"""Answering a worked batch: a reply in each diff comment's thread, one summary, the check run.

Each write is keyed (replies.py), so resuming never writes twice. A thread reply GitHub refuses
for good is answered in the summary instead, so no comment goes unanswered. After a pushed
iteration, the threads it fixed are resolved and their reviewers re-requested (after_push.py,
also keyed). The batch ends `done` with its iteration's status as its outcome, and
`review_responded` says what was done.
"""

from __future__ import annotations

import logging

from gidgethub.abc import GitHubAPI

from bot.reviews import checks, replies, summaries
from bot.reviews.after_push import follow_through
from bot.reviews.engine import EngineStatus
from bot.reviews.events import ReviewResponded
from bot.reviews.intake import waiting_for_review
from bot.reviews.outcomes import NOT_ADDRESSED
from bot.reviews.service import ReviewService
from bot.reviews.states import BatchStatus, Conclusion
from bot.reviews.threads import thread_root
from storage import review_batches, review_comments, review_iterations, review_replies
from storage.pull_requests import PullRequest
from storage.review_batches import Batch, BatchItem
from storage.review_comments import Comment
from storage.review_iterations import Iteration

log = logging.getLogger(__name__)


class BatchWithoutIteration(LookupError):
    """A responding batch has no iteration: the engine's report was never stored."""


def check_conclusion(iteration_status: str, counts: dict[str, int]) -> Conclusion:
    """`success` only when the run completed and every comment got a real outcome."""
    all_answered = counts.get(NOT_ADDRESSED, 0) == 0
    if iteration_status == EngineStatus.COMPLETED and all_answered:
        return Conclusion.SUCCESS
    return Conclusion.NEUTRAL


async def respond(service: ReviewService, gh: GitHubAPI, pr: PullRequest, batch: Batch) -> None:
    db = service.db
    iteration = await review_iterations.iteration_for_batch(db, batch.id)
    if iteration is None:
        raise BatchWithoutIteration(f"batch {batch.id} is responding without an iteration")
    items = await review_batches.batch_items(db, batch.id)
    all_comments = await review_comments.list_comments(db, pr.id)
    by_key = {(c.kind, c.id): c for c in all_comments}
    await _reply_in_threads(service, gh, pr, batch, iteration, items, by_key)
    unthreaded = {
        (reply.comment_kind, reply.comment_id)
        for reply in await review_replies.list_replies(db, pr.id, batch_id=batch.id)
        if reply.kind == "thread" and reply.status == "failed" and reply.comment_kind is not None
    }
    await replies.post_pr_comment(
        service,
        gh,
        pr,
        key=f"summary:{batch.id}",
        kind="summary",
        body=summaries.summary_text(pr, iteration, items, by_key, unthreaded=unthreaded),
        batch_id=batch.id,
        iteration_id=iteration.id,
    )
    counts = summaries.outcome_counts(items)
    check_run_id = await checks.known_check(service, gh, pr, batch)
    if check_run_id is not None:
        await checks.complete(
            gh,
            pr,
            check_run_id,
            conclusion=check_conclusion(iteration.status, counts),
            title=summaries.check_title(
                iteration.status, items, summaries.applied_suggestions(iteration, items)
            ),
            summary=summaries.check_summary(iteration, items, by_key),
            text=None,
            completed_at=checks.github_time(service),
        )
    await follow_through(service, gh, pr, iteration, items, by_key)
    now = service.clock.now()
    await review_batches.set_batch_status(
        db, batch.id, BatchStatus.DONE, now=now, outcome=iteration.status
    )
    responded = ReviewResponded(
        pr=pr.id,
        batch_id=batch.id,
        iteration=iteration.number,
        status=iteration.status,
        outcomes={f"{item.comment_kind}:{item.comment_id}": item.outcome for item in items},
        commit=iteration.commit_sha,
        cost_usd=iteration.cost_usd,
    )
    await service.bus.publish(pr.stream, responded)
    await service.bus.publish(pr.stream, waiting_for_review(pr))
    log.info("%s: batch %d answered (%s): %s", pr.stream, batch.id, iteration.status, dict(counts))
    service.wake()


async def _reply_in_threads(
    service: ReviewService,
    gh: GitHubAPI,
    pr: PullRequest,
    batch: Batch,
    iteration: Iteration,
    items: list[BatchItem],
    by_key: dict[tuple[str, int], Comment],
) -> None:
    """One reply per diff comment with an outcome, in its thread."""
    diff_comments = {c.id: c for (kind, _), c in by_key.items() if kind == "review_comment"}
    stopped_early = iteration.status != EngineStatus.COMPLETED
    for item in items:
        if item.comment_kind != "review_comment" or item.outcome is None:
            continue
        comment = by_key[(item.comment_kind, item.comment_id)]
        body = replies.thread_reply_body(
            item.body or comment.body,
            review_iterations.ItemOutcome(
                item.comment_kind, item.comment_id, item.outcome, item.detail or "", item.commit_sha
            ),
            retry_hint=stopped_early,
        )
        await replies.post_thread_reply(
            service,
            gh,
            pr,
            root_id=thread_root(comment, diff_comments),
            body=body,
            batch_id=batch.id,
            iteration_id=iteration.id,
            comment_kind=item.comment_kind,
            comment_id=item.comment_id,
            outcome=item.outcome,
        )
