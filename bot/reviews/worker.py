"""Working one batch: pick it up, run the engine, answer every comment, complete the check run.

A batch moves gathering -> running -> responding -> done (states.py), and each step is stored
before the next begins, so a restart resumes where the work stopped:

- pick-up (gathering, here): the rules, the caps and the pull request's state decide whether it
  runs (unworked.py when it does not); the head sha is read fresh from GitHub, the comment
  bodies are snapshotted (later edits go to the next batch), an eyes reaction marks each
  comment, the check run goes in progress;
- running (running.py): the engine works the batch and its checked report is stored;
- responding (responding.py): replies, the summary, the check run completed;
- given up (`give_up`, after the scheduler's last attempt): `failed`, its check run neutral.
"""

from __future__ import annotations

import logging

from gidgethub.abc import GitHubAPI

from bot.reviews import checks, replies, summaries
from bot.reviews.caps import cap_reached
from bot.reviews.responding import respond
from bot.reviews.running import run_engine
from bot.reviews.service import ReviewService
from bot.reviews.states import BatchStatus
from bot.reviews.unworked import conclude_unworked, pause_for_cap
from storage import pull_requests, review_batches, review_iterations
from storage.database import Database
from storage.pull_requests import PullRequest
from storage.review_batches import Batch

log = logging.getLogger(__name__)


class BatchWithoutPullRequest(LookupError):
    """A batch whose pull request row is gone (the schema's foreign key forbids it)."""


async def pull_request_of(db: Database, batch: Batch) -> PullRequest:
    pr = await pull_requests.get_pull_request(db, batch.pr_id)
    if pr is None:
        raise BatchWithoutPullRequest(f"batch {batch.id}: pull request {batch.pr_id} is gone")
    return pr


async def work(service: ReviewService, batch_id: int) -> None:
    db = service.db
    batch = await review_batches.get_batch(db, batch_id)
    if batch is None:
        return
    pr = await pull_request_of(db, batch)
    gh = service.client(pr.installation_id)
    if batch.status == BatchStatus.GATHERING:
        picked = await _pick_up(service, gh, pr, batch)
        if picked is None:
            return
        batch = picked
        pr = await pull_requests.get_pull_request(db, batch.pr_id) or pr
    if batch.status == BatchStatus.RUNNING and batch.check_run_id is None:
        # Picked up, but opening its check run failed (a 5xx, a stop): open it, once.
        await _open_running_check(
            service, gh, pr, batch, len(await review_batches.batch_items(db, batch.id))
        )
        batch = await review_batches.get_batch(db, batch_id) or batch
    if batch.status == BatchStatus.RUNNING:
        await run_engine(service, gh, pr, batch)
        batch = await review_batches.get_batch(db, batch_id) or batch
    if batch.status == BatchStatus.RESPONDING:
        await respond(service, gh, pr, batch)


# -- pick-up ----------------------------------------------------------------------------------


async def _pick_up(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, batch: Batch
) -> Batch | None:
    db, now = service.db, service.clock.now()
    items = await review_batches.batch_items(db, batch.id)
    if not await _may_run(service, gh, pr, batch, has_items=bool(items)):
        return None
    head_sha = await _fresh_head(service, gh, pr, batch)
    if head_sha is None:
        return None
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


async def _may_run(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, batch: Batch, *, has_items: bool
) -> bool:
    """Whether the batch is worked now; when not, it is concluded (or parked) with why."""
    dropped, skipped = BatchStatus.DROPPED, BatchStatus.SKIPPED
    if not has_items:
        await conclude_unworked(
            service, gh, pr, batch, status=dropped, note="nothing left to address"
        )
        return False
    if pr.state != "open":
        await conclude_unworked(
            service, gh, pr, batch, status=dropped, note=f"the pull request is {pr.state}"
        )
        return False
    rules = await service.rules(gh, pr.repository)
    if not rules.enabled:
        await conclude_unworked(
            service, gh, pr, batch, status=skipped, note="reviews are off in .github/biagent.yml"
        )
        return False
    reason = await cap_reached(service.db, pr, rules, service.clock.now())
    if reason is not None:
        await pause_for_cap(service, gh, pr, batch, reason)
        return False
    if service.engine is None:
        await conclude_unworked(
            service,
            gh,
            pr,
            batch,
            status=skipped,
            note="no review engine is configured on this biagent instance",
        )
        return False
    return True


async def _fresh_head(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, batch: Batch
) -> str | None:
    """The pull request's head as GitHub has it now; None (the batch dropped) when it closed."""
    db, now = service.db, service.clock.now()
    fresh = await gh.getitem(f"/repos/{pr.repository}/pulls/{pr.number}")
    head_sha = str(fresh["head"]["sha"])
    if fresh.get("state") != "open":
        state = "merged" if fresh.get("merged") else "closed"
        await pull_requests.set_state(db, pr.id, state, now)
        await conclude_unworked(
            service,
            gh,
            pr,
            batch,
            status=BatchStatus.DROPPED,
            note=f"the pull request is {state}",
        )
        return None
    if head_sha != pr.head_sha:
        own = await review_iterations.is_biagent_commit(db, pr.id, head_sha)
        await pull_requests.set_head(db, pr.id, head_sha, pushed_by_biagent=own, now=now)
    return head_sha


async def _open_running_check(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, batch: Batch, count: int
) -> None:
    """Open (once: checks.open_check adopts one an earlier attempt created) the check run of a
    batch being worked, on the commit it is worked on, and mark it in progress."""
    check_run_id = await checks.open_check(
        service,
        gh,
        pr,
        batch_id=batch.id,
        head_sha=batch.head_sha or pr.head_sha,
        title=f"{summaries.counted(count, 'comment')} to address",
        summary="biagent is about to work these review comments.",
    )
    await _mark_working(service, gh, pr, check_run_id, count)


async def _mark_working(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, check_run_id: int, count: int
) -> None:
    await checks.mark_in_progress(
        gh,
        pr,
        check_run_id,
        title=f"Working {summaries.counted(count, 'review comment')}",
        summary="biagent is addressing the review comments on this commit.",
        started_at=checks.github_time(service),
    )


async def give_up(service: ReviewService, batch_id: int, *, why: str) -> None:
    """The scheduler's last attempt at a running or responding batch failed: it ends `failed`
    (stored first, so the pull request's next batch is free to run whatever GitHub does next)
    and its check run concludes neutral. `/biagent retry` or Re-run works it again."""
    db = service.db
    batch = await review_batches.get_batch(db, batch_id)
    if batch is None or batch.status not in (BatchStatus.RUNNING, BatchStatus.RESPONDING):
        return
    pr = await pull_request_of(db, batch)
    failed = BatchStatus.FAILED
    await review_batches.set_batch_status(
        db, batch.id, failed, now=service.clock.now(), outcome=failed, note=why
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
