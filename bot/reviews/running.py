"""Running a batch: the engine gets the batch, and its report is stored before anything is posted.

One iteration per batch. `build_review_batch` hands the engine each comment with its whole
thread (the snapshot taken at pick-up, so later edits go to the next batch) and what biagent
answered in that thread in earlier iterations (a follow-up, a reopened thread); the report is
stored with one checked outcome per comment (outcomes.py). A restart here runs the engine again
for the same iteration (the real engine pushes with a lease, so a second push cannot overwrite
anything).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from gidgethub.abc import GitHubAPI

from bot.reviews.engine import (
    BatchComment,
    EarlierAnswer,
    EngineResult,
    EngineStatus,
    ReviewBatch,
    ThreadMessage,
)
from bot.reviews.outcomes import check_outcomes
from bot.reviews.service import ReviewService
from bot.reviews.threads import thread_root
from storage import pull_requests, review_batches, review_comments, review_iterations
from storage.pull_requests import PullRequest
from storage.review_batches import Batch, BatchItem
from storage.review_comments import Comment

log = logging.getLogger(__name__)


async def run_engine(service: ReviewService, gh: GitHubAPI, pr: PullRequest, batch: Batch) -> None:
    """Run the engine once for the batch's iteration and store its checked report."""
    db = service.db
    head_sha = batch.head_sha or pr.head_sha  # claim() recorded it when the batch was picked up
    iteration = await review_iterations.start_iteration(
        db, batch, head_sha=head_sha, now=service.clock.now()
    )
    rules = await service.rules(gh, pr.repository)
    review_batch = await build_review_batch(
        service, pr, batch, iteration.number, rules.for_engine()
    )
    result = await _engine_result(service, pr, review_batch)
    outcomes, strays = check_outcomes(review_batch, result)
    report = [outcome.as_json() for outcome in result.outcomes]
    await review_iterations.record_engine_report(
        db,
        iteration_id=iteration.id,
        batch_id=batch.id,
        status=str(result.status),
        commit_sha=result.commit_sha,
        tests_summary=result.tests_summary,
        cost_usd=result.cost_usd,
        error=result.error or (f"outcomes for unknown comments: {strays}" if strays else None),
        report=report,
        outcomes=outcomes,
        now=service.clock.now(),
    )
    if result.commit_sha:
        await pull_requests.count_biagent_commit(db, pr.id, result.commit_sha, service.clock.now())


async def _engine_result(
    service: ReviewService, pr: PullRequest, review_batch: ReviewBatch
) -> EngineResult:
    """The engine's result; an engine that raises has failed with the exception's text."""
    if service.engine is None:
        return EngineResult(EngineStatus.FAILED, error="no review engine is configured")
    try:
        return await service.engine.work(review_batch)
    except Exception as error:
        log.exception("%s: the engine failed on batch %d", pr.stream, review_batch.batch_id)
        return EngineResult(EngineStatus.FAILED, error=f"{type(error).__name__}: {error}")


async def build_review_batch(
    service: ReviewService,
    pr: PullRequest,
    batch: Batch,
    iteration_number: int,
    repo_config: dict[str, Any],
) -> ReviewBatch:
    """What the engine is handed: each comment of the batch with its place and whole thread."""
    items = await review_batches.batch_items(service.db, batch.id)
    all_comments = await review_comments.list_comments(service.db, pr.id)
    diff_comments = {c.id: c for c in all_comments if c.kind == "review_comment"}
    by_key = {(c.kind, c.id): c for c in all_comments}
    before = await review_iterations.answered_before(service.db, pr.id, before_batch=batch.id)
    comments = tuple(
        with_earlier_answers(
            batch_comment(item, by_key[(item.comment_kind, item.comment_id)], diff_comments),
            before,
        )
        for item in items
    )
    return ReviewBatch(
        batch_id=batch.id,
        iteration=iteration_number,
        repository=pr.repository,
        clone_url=pr.clone_url,
        pr_number=pr.number,
        pr_title=pr.title,
        head_ref=pr.head_ref,
        head_sha=batch.head_sha or pr.head_sha,
        base_ref=pr.base_ref,
        installation_id=pr.installation_id,
        comments=comments,
        repo_config=repo_config,
    )


def batch_comment(
    item: BatchItem, comment: Comment, diff_comments: dict[int, Comment]
) -> BatchComment:
    """One comment for the engine: the body snapshotted at pick-up, and for a diff comment its
    whole thread, oldest first (the snapshot in place of the comment's own current body)."""
    body = item.body if item.body is not None else comment.body
    if comment.kind == "review_comment":
        root_id: int | None = thread_root(comment, diff_comments)
        thread = tuple(
            sorted(
                (
                    ThreadMessage(
                        other.id,
                        other.author_login,
                        body if other.id == comment.id else other.body,
                        other.created_at,
                        other.own,
                    )
                    for other in diff_comments.values()
                    if thread_root(other, diff_comments) == root_id and not other.deleted
                ),
                key=lambda message: (message.created_at, message.comment_id),
            )
        )
    else:
        root_id = None
        thread = (ThreadMessage(comment.id, comment.author_login, body, comment.created_at),)
    return BatchComment(
        comment_id=comment.id,
        kind=comment.kind,
        author=comment.author_login,
        body=body,
        path=comment.path,
        line=comment.line,
        start_line=comment.start_line,
        side=comment.side,
        diff_hunk=comment.diff_hunk,
        thread_root_id=root_id,
        thread=thread,
        url=comment.html_url,
    )


def with_earlier_answers(
    comment: BatchComment, before: list[review_iterations.AnsweredBefore]
) -> BatchComment:
    """The comment with what biagent answered earlier in its thread (a diff comment) or to the
    comment itself (a conversation comment, a review's body), oldest first."""
    if comment.kind == "review_comment":
        in_thread = {message.comment_id for message in comment.thread} | {comment.comment_id}
        mine = [
            a for a in before if a.comment_kind == "review_comment" and a.comment_id in in_thread
        ]
    else:
        mine = [
            a
            for a in before
            if (a.comment_kind, a.comment_id) == (comment.kind, comment.comment_id)
        ]
    if not mine:
        return comment
    earlier = tuple(
        EarlierAnswer(a.comment_id, a.iteration, a.outcome, a.detail, a.commit_sha) for a in mine
    )
    return dataclasses.replace(comment, earlier=earlier)
