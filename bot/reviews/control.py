"""What the slash commands do, once commands.py has read them and the author may run them.

Each command is answered with one comment in the PR conversation, keyed by the comment and
the command's position in it (`command:<kind>:<comment>:<n>`). The key is recorded before the
command runs, and its answer stored before it is posted: a delivery retried because the answer's
POST failed finds the stored answer and only posts it, so `/biagent retry` never runs twice. (A
stop inside the handler itself, before its answer is stored, runs it again: the handlers are
safe to repeat on the state they left.) Commands are read from new comments only, so a
comment's first version is the one that runs.

Pause, resume and retry are also offered on the status page (`POST
/api/pull-requests/{id}/pause|resume|retry`): `pause`, `resume` and `retry` below are what
both the commands and those routes call, and say whether they changed anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gidgethub.abc import GitHubAPI

from bot.reviews import checks, replies, unworked
from bot.reviews.commands import Command, help_text
from bot.reviews.service import ReviewService
from bot.reviews.states import BatchStatus
from storage import pull_requests, review_batches, review_costs, review_iterations, review_replies
from storage.pull_requests import PullRequest
from storage.timestamps import from_text

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a control action did, in words; `changed` is False when the pull request's state
    did not allow it and nothing was done."""

    text: str
    changed: bool = True


async def run_command(
    service: ReviewService,
    gh: GitHubAPI,
    pr: PullRequest,
    command: Command,
    *,
    author: str,
    source_key: str,
    position: int,
) -> None:
    recorded, new = await review_replies.record_intent(
        service.db,
        pr_id=pr.id,
        key=f"command:{source_key}:{position}",
        kind="command",
        body="",
        now=service.clock.now(),
    )
    if recorded.status == "intent" and not recorded.body:
        handler = _HANDLERS.get(command.name) if command.known else None
        if handler is None:
            answer = f"I don't know `/biagent {command.name}`.\n\n{help_text()}"
        else:
            answer = await handler(service, gh, pr, author)
        log.info("%s: /biagent %s by %s", pr.stream, command.name, author)
        await review_replies.set_intent_body(service.db, recorded.id, f"@{author} {answer}")
        recorded = await review_replies.get_reply(service.db, recorded.id) or recorded
    else:
        log.info("%s: /biagent %s by %s already ran", pr.stream, command.name, author)
    await replies.post_recorded_pr_comment(service, gh, pr, recorded, new=new)


async def _help(service: ReviewService, gh: GitHubAPI, pr: PullRequest, author: str) -> str:
    return help_text()


async def _address(service: ReviewService, gh: GitHubAPI, pr: PullRequest, author: str) -> str:
    if pr.paused:
        return "biagent is paused on this pull request; `/biagent resume` first."
    pending = await review_batches.close_gathering_batch(
        service.db, pr.id, now=service.clock.now(), review_id=None
    )
    if pending is None:
        return "there are no pending review comments to work."
    count = len(await review_batches.batch_items(service.db, pending.id))
    service.wake()
    return f"working the {count} pending review comment(s) now."


async def pause(service: ReviewService, gh: GitHubAPI, pr: PullRequest, *, by: str) -> Answer:
    """Stop working review comments on `pr`; pending ones are kept. `by` names who asked."""
    now = service.clock.now()
    if await pull_requests.pause(service.db, pr.id, f"paused by {by}", now) is None:
        return Answer("biagent was already paused here.", changed=False)
    pending = await review_batches.gathering_batch(service.db, pr.id)
    if pending is not None and (
        pending.check_run_id is not None or pending.check_run_creating is not None
    ):
        await unworked.finish_pending_check(
            service, gh, pr, pending, title="Paused", why=f"paused by {by}"
        )
    return Answer("paused. Pending review comments are kept; `/biagent resume` to go on.")


async def resume(service: ReviewService, pr: PullRequest) -> Answer:
    """Go on after a pause or a cap (the caps count afresh from now)."""
    if not await pull_requests.resume(service.db, pr.id, service.clock.now()):
        return Answer("biagent was not paused here.", changed=False)
    service.wake()
    pending = await review_batches.gathering_batch(service.db, pr.id)
    if pending is None:
        return Answer("resumed.")
    return Answer("resumed; the pending review comments will be worked now.")


async def retry(service: ReviewService, pr: PullRequest) -> Answer:
    """Work the comments of the last batch again, as a new batch."""
    if pr.paused:
        return Answer(
            "biagent is paused on this pull request; `/biagent resume` first.", changed=False
        )
    last = await review_batches.latest_batch(service.db, pr.id)
    if last is None:
        return Answer("there is no earlier batch to retry.", changed=False)
    if last.status in (BatchStatus.RUNNING, BatchStatus.RESPONDING):
        return Answer(
            "a batch is being worked right now; retry once it is answered.", changed=False
        )
    retried = await review_batches.copy_for_retry(service.db, last.id, now=service.clock.now())
    if retried is None or not await review_batches.batch_items(service.db, retried.id):
        return Answer("the last batch has no comments left to work.", changed=False)
    service.wake()
    return Answer(f"working the comments of batch {last.id} again.")


async def _pause(service: ReviewService, gh: GitHubAPI, pr: PullRequest, author: str) -> str:
    return (await pause(service, gh, pr, by=f"@{author}")).text


async def _resume(service: ReviewService, gh: GitHubAPI, pr: PullRequest, author: str) -> str:
    return (await resume(service, pr)).text


async def _retry(service: ReviewService, gh: GitHubAPI, pr: PullRequest, author: str) -> str:
    return (await retry(service, pr)).text


async def _ignore(service: ReviewService, gh: GitHubAPI, pr: PullRequest, author: str) -> str:
    dropped = await review_batches.drop_gathering(
        service.db, pr.id, note=f"ignored by @{author}", now=service.clock.now()
    )
    if dropped is None:
        return "there are no pending review comments to drop."
    await checks.conclude_neutral(
        service,
        gh,
        pr,
        dropped,
        title=f"Dropped by @{author}",
        summary="The pending review comments were dropped with `/biagent ignore`.",
    )
    count = len(await review_batches.batch_items(service.db, dropped.id))
    return f"dropped the {count} pending review comment(s)."


async def _status(service: ReviewService, gh: GitHubAPI, pr: PullRequest, author: str) -> str:
    lines = [f"review state: {pr.review_state.replace('_', ' ')}"]
    if pr.paused:
        lines.append(f"paused ({pr.pause_reason})")
    pending = await review_batches.gathering_batch(service.db, pr.id)
    if pending is not None:
        count = len(await review_batches.batch_items(service.db, pending.id))
        wait = (from_text(pending.due_at) - service.clock.now()).total_seconds()
        when = "now" if wait <= 0 else f"in {wait:.0f}s"
        lines.append(f"{count} pending comment(s), to be worked {when}")
    last = await review_batches.latest_batch(service.db, pr.id)
    if last is not None:
        lines.append(f"last batch: #{last.id}, {last.status} ({last.outcome or 'no outcome'})")
    cost = await review_costs.pr_cost(service.db, pr.id)
    lines.append(f"spent: ${cost:.2f}")
    return "here is where things stand:\n\n" + "\n".join(f"- {line}" for line in lines)


async def _cost(service: ReviewService, gh: GitHubAPI, pr: PullRequest, author: str) -> str:
    iterations = await review_iterations.list_iterations(service.db, pr.id)
    total = sum(iteration.cost_usd for iteration in iterations)
    return f"biagent has spent ${total:.2f} on this pull request over {len(iterations)} run(s)."


_HANDLERS = {
    "help": _help,
    "address": _address,
    "pause": _pause,
    "resume": _resume,
    "retry": _retry,
    "status": _status,
    "ignore": _ignore,
    "cost": _cost,
}
