"""Working one batch: pick it up, run the engine, answer every comment, complete the check run.

A batch moves gathering -> running -> responding -> done, and each step is stored before the
next begins, so a restart resumes where the work stopped:

- pick-up (gathering): the rules, the caps and the pull request's state decide whether it runs;
  the head sha is read fresh from GitHub, the comment bodies are snapshotted (later edits go to
  the next batch), an eyes reaction marks each comment, the check run goes in progress;
- running: one iteration per batch; the engine gets the batch and its report is stored with
  one checked outcome per comment (outcomes.py) before anything is posted. A restart here runs
  the engine again for the same iteration (the real engine pushes with a lease, so a second
  push cannot overwrite anything);
- responding: one reply per diff comment in its thread, one summary comment, the check run
  completed; each write is keyed (replies.py), so resuming never writes twice. A thread reply
  GitHub refuses for good is answered in the summary instead, so no comment goes unanswered;
- given up (`give_up`, after the scheduler's last attempt): `failed`, its check run neutral.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.reviews import checks, replies, summaries
from bot.reviews.caps import cap_reached
from bot.reviews.engine import (
    BatchComment,
    EngineResult,
    EngineStatus,
    ReviewBatch,
    ThreadMessage,
)
from bot.reviews.outcomes import check_outcomes
from bot.reviews.service import ReviewService
from storage import (
    pull_requests,
    review_batches,
    review_comments,
    review_iterations,
    review_replies,
)
from storage.pull_requests import PullRequest
from storage.review_batches import Batch
from storage.review_comments import Comment

log = logging.getLogger(__name__)


async def work(service: ReviewService, batch_id: int) -> None:
    db = service.db
    batch = await review_batches.get_batch(db, batch_id)
    if batch is None:
        return
    pr = await pull_requests.get_pull_request(db, batch.pr_id)
    assert pr is not None
    gh = service.client(pr.installation_id)
    if batch.status == "gathering":
        picked = await _pick_up(service, gh, pr, batch)
        if picked is None:
            return
        batch = picked
        pr = await pull_requests.get_pull_request(db, batch.pr_id) or pr
    if batch.status == "running" and batch.check_run_id is None:
        # Picked up, but opening its check run failed (a 5xx, a stop): open it, once.
        await _open_running_check(
            service, gh, pr, batch, len(await review_batches.batch_items(db, batch.id))
        )
        batch = await review_batches.get_batch(db, batch_id) or batch
    if batch.status == "running":
        await _run_engine(service, gh, pr, batch)
        batch = await review_batches.get_batch(db, batch_id) or batch
    if batch.status == "responding":
        await _respond(service, gh, pr, batch)


# -- pick-up ----------------------------------------------------------------------------------


async def _pick_up(service: ReviewService, gh: Any, pr: PullRequest, batch: Batch) -> Batch | None:
    db, now = service.db, service.clock.now()
    items = await review_batches.batch_items(db, batch.id)
    if not items:
        await conclude_unworked(
            service, gh, pr, batch, status="dropped", note="nothing left to address"
        )
        return None
    if pr.state != "open":
        await conclude_unworked(
            service, gh, pr, batch, status="dropped", note=f"the pull request is {pr.state}"
        )
        return None
    rules = await service.rules(gh, pr.repository)
    if not rules.enabled:
        await conclude_unworked(
            service, gh, pr, batch, status="skipped", note="reviews are off in .github/biagent.yml"
        )
        return None
    reason = await cap_reached(db, pr, rules, now)
    if reason is not None:
        await pause_for_cap(service, gh, pr, batch, reason)
        return None
    if service.engine is None:
        await conclude_unworked(
            service,
            gh,
            pr,
            batch,
            status="skipped",
            note="no review engine is configured on this biagent instance",
        )
        return None
    fresh = await gh.getitem(f"/repos/{pr.repository}/pulls/{pr.number}")
    head_sha = fresh["head"]["sha"]
    if fresh.get("state") != "open":
        state = "merged" if fresh.get("merged") else "closed"
        await pull_requests.set_state(db, pr.id, state, now)
        await conclude_unworked(
            service, gh, pr, batch, status="dropped", note=f"the pull request is {state}"
        )
        return None
    if head_sha != pr.head_sha:
        own = await review_iterations.is_biagent_commit(db, pr.id, head_sha)
        await pull_requests.set_head(db, pr.id, head_sha, pushed_by_biagent=own, now=now)
    claimed = await review_batches.claim(db, batch.id, head_sha=head_sha, now=now)
    if claimed is None:
        return None
    log.info(
        "%s: batch %d picked up (%d comments) at %s", pr.stream, batch.id, len(items), head_sha
    )
    for item in items:
        await replies.react_eyes(gh, pr, item.comment_kind, item.comment_id)
    check_run_id = claimed.check_run_id
    if check_run_id is not None and claimed.check_run_sha != head_sha:
        # The head moved while comments gathered: the queued check stays on the old commit.
        await checks.supersede(service, gh, pr, check_run_id, head_sha)
        check_run_id = None
    if check_run_id is None:
        await _open_running_check(service, gh, pr, claimed, len(items))
    else:
        await _mark_working(service, gh, pr, check_run_id, len(items))
    return await review_batches.get_batch(db, batch.id)


async def _open_running_check(
    service: ReviewService, gh: Any, pr: PullRequest, batch: Batch, count: int
) -> None:
    """Open (once: checks.open_check adopts one an earlier attempt created) the check run of a
    batch being worked, on the commit it is worked on, and mark it in progress."""
    assert batch.head_sha is not None
    check_run_id = await checks.open_check(
        service,
        gh,
        pr,
        batch_id=batch.id,
        head_sha=batch.head_sha,
        title=f"{summaries.counted(count, 'comment')} to address",
        summary="biagent is about to work these review comments.",
    )
    await _mark_working(service, gh, pr, check_run_id, count)


async def _mark_working(
    service: ReviewService, gh: Any, pr: PullRequest, check_run_id: int, count: int
) -> None:
    await checks.mark_in_progress(
        gh,
        pr,
        check_run_id,
        title=f"Working {summaries.counted(count, 'review comment')}",
        summary="biagent is addressing the review comments on this commit.",
        started_at=checks.github_time(service),
    )


async def conclude_unworked(
    service: ReviewService,
    gh: Any,
    pr: PullRequest,
    batch: Batch,
    *,
    status: str,
    note: str,
) -> None:
    """A batch that will not be worked: recorded with why, its check run concluded neutral."""
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
    service: ReviewService, gh: Any, pr: PullRequest, batch: Batch, reason: str
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
    service: ReviewService, gh: Any, pr: PullRequest, batch: Batch, *, title: str, why: str
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
        conclusion="neutral",
        title=f"{title}: {why}"[:250],
        summary=f"biagent is not working these comments now: {why}.",
        text=None,
        completed_at=checks.github_time(service),
    )
    await review_batches.set_check_run(service.db, batch.id, None, None)


# -- the engine -------------------------------------------------------------------------------


async def _run_engine(service: ReviewService, gh: Any, pr: PullRequest, batch: Batch) -> None:
    db = service.db
    assert batch.head_sha is not None
    iteration = await review_iterations.start_iteration(
        db, batch, head_sha=batch.head_sha, now=service.clock.now()
    )
    rules = await service.rules(gh, pr.repository)
    review_batch = await build_review_batch(
        service, pr, batch, iteration.number, rules.for_engine()
    )
    if service.engine is None:
        result = EngineResult(EngineStatus.FAILED, error="no review engine is configured")
    else:
        try:
            result = await service.engine.work(review_batch)
        except Exception as error:
            log.exception("%s: the engine failed on batch %d", pr.stream, batch.id)
            result = EngineResult(EngineStatus.FAILED, error=f"{type(error).__name__}: {error}")
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


def thread_root(comment: Comment, by_id: dict[int, Comment]) -> int:
    root, seen = comment, {comment.id}
    while root.in_reply_to_id is not None and root.in_reply_to_id not in seen:
        seen.add(root.in_reply_to_id)
        parent = by_id.get(root.in_reply_to_id)
        if parent is None:
            return root.in_reply_to_id
        root = parent
    return root.id


async def build_review_batch(
    service: ReviewService,
    pr: PullRequest,
    batch: Batch,
    iteration_number: int,
    repo_config: dict[str, Any],
) -> ReviewBatch:
    items = await review_batches.batch_items(service.db, batch.id)
    all_comments = await review_comments.list_comments(service.db, pr.id)
    diff_comments = {c.id: c for c in all_comments if c.kind == "review_comment"}
    by_key = {(c.kind, c.id): c for c in all_comments}
    comments = []
    for item in items:
        comment = by_key[(item.comment_kind, item.comment_id)]
        body = item.body if item.body is not None else comment.body
        if comment.kind == "review_comment":
            root_id = thread_root(comment, diff_comments)
            thread = tuple(
                ThreadMessage(
                    other.id,
                    other.author_login,
                    item.body if other.id == comment.id and item.body is not None else other.body,
                    other.created_at,
                    other.own,
                )
                for other in diff_comments.values()
                if thread_root(other, diff_comments) == root_id and not other.deleted
            )
            thread = tuple(sorted(thread, key=lambda m: (m.created_at, m.comment_id)))
        else:
            root_id = None
            thread = (ThreadMessage(comment.id, comment.author_login, body, comment.created_at),)
        comments.append(
            BatchComment(
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
        comments=tuple(comments),
        repo_config=repo_config,
    )


# -- responding -------------------------------------------------------------------------------


async def _respond(service: ReviewService, gh: Any, pr: PullRequest, batch: Batch) -> None:
    db = service.db
    iteration = await review_iterations.iteration_for_batch(db, batch.id)
    assert iteration is not None
    items = await review_batches.batch_items(db, batch.id)
    all_comments = await review_comments.list_comments(db, pr.id)
    diff_comments = {c.id: c for c in all_comments if c.kind == "review_comment"}
    by_key = {(c.kind, c.id): c for c in all_comments}
    stopped_early = iteration.status != "completed"
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
    counts = summaries.outcome_counts(items)
    unthreaded = {
        (reply.comment_kind, reply.comment_id)
        for reply in await review_replies.list_replies(db, pr.id, batch_id=batch.id)
        if reply.kind == "thread" and reply.status == "failed"
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
    check_run_id = await checks.known_check(service, gh, pr, batch)
    if check_run_id is not None:
        all_answered = counts.get("not_addressed", 0) == 0
        conclusion = "success" if iteration.status == "completed" and all_answered else "neutral"
        await checks.complete(
            gh,
            pr,
            check_run_id,
            conclusion=conclusion,
            title=summaries.check_title(iteration.status, counts),
            summary=summaries.check_summary(iteration, items, by_key),
            text=None,
            completed_at=checks.github_time(service),
        )
    now = service.clock.now()
    await review_batches.set_batch_status(db, batch.id, "done", now=now, outcome=iteration.status)
    await service.bus.publish(
        pr.stream,
        "review_responded",
        {
            "pr": pr.id,
            "batch_id": batch.id,
            "iteration": iteration.number,
            "status": iteration.status,
            "outcomes": {f"{item.comment_kind}:{item.comment_id}": item.outcome for item in items},
            "commit": iteration.commit_sha,
            "cost_usd": iteration.cost_usd,
        },
    )
    await service.bus.publish(
        pr.stream,
        "waiting_for_review",
        {"pr": pr.id, "number": pr.number, "repository": pr.repository},
    )
    log.info("%s: batch %d answered (%s): %s", pr.stream, batch.id, iteration.status, dict(counts))
    service.wake()


async def give_up(service: ReviewService, batch_id: int, *, why: str) -> None:
    """The scheduler's last attempt at a running or responding batch failed: it ends `failed`
    (stored first, so the pull request's next batch is free to run whatever GitHub does next)
    and its check run concludes neutral. `/biagent retry` or Re-run works it again."""
    db = service.db
    batch = await review_batches.get_batch(db, batch_id)
    if batch is None or batch.status not in ("running", "responding"):
        return
    pr = await pull_requests.get_pull_request(db, batch.pr_id)
    assert pr is not None
    await review_batches.set_batch_status(
        db, batch.id, "failed", now=service.clock.now(), outcome="failed", note=why
    )
    log.error("%s: batch %d given up: %s", pr.stream, batch.id, why)
    gh = service.client(pr.installation_id)
    try:
        await checks.conclude_neutral(
            service,
            gh,
            pr,
            batch,
            title="Failed: biagent could not finish answering these comments",
            summary=(
                f"biagent gave up on this batch after repeated errors ({why}). "
                "`/biagent retry` or Re-run works it again."
            ),
        )
    except Exception:
        log.exception("%s: batch %d: its check run could not be concluded", pr.stream, batch.id)
    service.wake()
