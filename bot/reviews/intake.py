"""What every review webhook handler shares: where a delivery arrived, who wrote it, the gather.

`arrival()` is each handler's prelude: the review service, the delivery's installation client
and the pull request biagent already knows (None when it does not watch it yet). The circuit
breakers (`is_own`, `is_bot`, `bot_allowed`), who may instruct biagent (`may_command`, with one
polite `refuse` per person), which comments are worth working, and `gather`, which puts
comments into the pull request's gathering batch and opens its queued check run (a new comment
in a thread taking the place of one a reopening put back), live here so the handlers in on_*.py
read as the decisions they make.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gidgethub import sansio
from gidgethub.abc import GitHubAPI

from bot.concerns import HandlerContext
from bot.reviews import checks, replies
from bot.reviews.commands import mentions, parse_commands
from bot.reviews.events import ReviewReceived, WaitingForReview
from bot.reviews.service import ReviewService
from bot.reviews.threads import thread_root
from storage import pull_requests, review_batches, review_comments
from storage.pull_requests import PullRequest, Subscription
from storage.review_comments import NewComment

log = logging.getLogger(__name__)

OPENED_BY_BIAGENT = "opened_by_biagent"


@dataclass(frozen=True, slots=True)
class Arrival:
    """Where a review webhook landed: the service, the installation's client, the repository,
    and the pull request as biagent knows it (None: it does not watch it yet)."""

    service: ReviewService
    gh: GitHubAPI
    installation_id: int
    repository: dict[str, Any]
    pr: PullRequest | None


def pr_number(payload: dict[str, Any]) -> int | None:
    """The pull request a payload is about: its `pull_request`, or an issue that is one."""
    pull_request = payload.get("pull_request")
    if isinstance(pull_request, dict) and "number" in pull_request:
        return int(pull_request["number"])
    issue = payload.get("issue")
    if isinstance(issue, dict) and "pull_request" in issue and "number" in issue:
        return int(issue["number"])
    return None


async def arrival(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> Arrival | None:
    """The handlers' prelude; None when reviews are off or the delivery names no installation
    (every GitHub App delivery does)."""
    service = context.services.reviews
    installation_id = context.delivery.installation_id
    if service is None or gh is None or installation_id is None:
        return None
    repository = event.data["repository"]
    number = pr_number(event.data)
    pr = None
    if number is not None:
        pr = await pull_requests.find_pull_request(service.db, repository["full_name"], number)
    return Arrival(service, gh, installation_id, repository, pr)


# -- who wrote it -----------------------------------------------------------------------------


def is_own(service: ReviewService, item: dict[str, Any]) -> bool:
    """biagent's own comment or review: its bot login, its hidden marker, or its app."""
    user = item.get("user") or {}
    bot_login = service.bot_login
    if bot_login and str(user.get("login", "")).lower() == bot_login.lower():
        return True
    if replies.carries_marker(item.get("body")):
        return True
    via_app = item.get("performed_via_github_app") or {}
    return service.app_id is not None and via_app.get("id") == service.app_id


def is_bot(user: dict[str, Any]) -> bool:
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


def is_biagent(service: ReviewService, login: str) -> bool:
    return service.bot_login is not None and login.lower() == service.bot_login.lower()


async def bot_allowed(service: ReviewService, gh: GitHubAPI, pr: PullRequest, login: str) -> bool:
    rules = await service.rules(gh, pr.repository)
    return login.lower() in rules.allowed_bots


async def blocked_bot(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, user: dict[str, Any]
) -> bool:
    """Another bot that `.github/biagent.yml` does not allow: it never feeds a batch."""
    login = str(user.get("login", ""))
    return is_bot(user) and not await bot_allowed(service, gh, pr, login)


def is_request(service: ReviewService, comment: dict[str, Any]) -> bool:
    """A command or an @-mention: someone asks biagent in."""
    body = comment.get("body") or ""
    return not is_own(service, comment) and (
        bool(parse_commands(body)) or mentions(body, service.slug)
    )


async def may_command(service: ReviewService, gh: GitHubAPI, pr: PullRequest, login: str) -> bool:
    rules = await service.rules(gh, pr.repository)
    if rules.commands_from is not None and login.lower() not in rules.commands_from:
        return False
    return await service.can_write(gh, pr.repository, login)


async def refuse(service: ReviewService, gh: GitHubAPI, pr: PullRequest, login: str) -> None:
    """One polite refusal per person and pull request, however often they ask."""
    await replies.post_pr_comment(
        service,
        gh,
        pr,
        key=f"refusal:{pr.id}:{login.lower()}",
        kind="refusal",
        body=(
            f"@{login} thanks for asking! biagent only takes instructions from people with "
            "write access to this repository, so it will not act on this. A maintainer can "
            "ask on your behalf."
        ),
    )


# -- the pull request -------------------------------------------------------------------------


def pr_state(pr_json: dict[str, Any]) -> str:
    state = str(pr_json.get("state", "open"))
    if state == "closed" and (pr_json.get("merged") or pr_json.get("merged_at")):
        return "merged"
    return state


async def upsert_pr(
    service: ReviewService,
    pr_json: dict[str, Any],
    repository: dict[str, Any],
    installation: int,
    *,
    ours: bool = False,
) -> PullRequest:
    """Store the pull request as GitHub sent it; biagent's own (its bot login is the author,
    or `ours`: a pipeline opened it) are watched from here on."""
    head = pr_json.get("head") or {}
    base = pr_json.get("base") or {}
    head_repo = head.get("repo") or repository
    pr = await pull_requests.upsert_pull_request(
        service.db,
        repository=repository["full_name"],
        number=int(pr_json["number"]),
        installation_id=installation,
        github_id=pr_json.get("id"),
        title=pr_json.get("title") or "",
        author_login=(pr_json.get("user") or {}).get("login", ""),
        clone_url=head_repo.get("clone_url") or repository.get("clone_url") or "",
        head_ref=head.get("ref") or "",
        head_sha=head.get("sha") or "",
        base_ref=base.get("ref") or "",
        state=pr_state(pr_json),
        now=service.clock.now(),
    )
    ours = ours or is_biagent(service, pr.author_login)
    if ours and await pull_requests.subscribe(
        service.db, pr.id, reason=OPENED_BY_BIAGENT, requested_by=None, now=service.clock.now()
    ):
        await service.bus.publish(pr.stream, waiting_for_review(pr))
    return pr


async def asked_in_pr(
    arrived: Arrival, item: dict[str, Any], event: sansio.Event
) -> PullRequest | None:
    """The pull request biagent watches, or the one `item` (a comment or a review) asks it
    into (stored now, read from GitHub when the payload lacks it); None when neither."""
    if arrived.pr is not None:
        return arrived.pr
    number = pr_number(event.data)
    if number is None or not is_request(arrived.service, item):
        return None
    pr_json = event.data.get("pull_request")
    if not isinstance(pr_json, dict):  # an issue_comment names its pull request by number
        full_name = arrived.repository["full_name"]
        pr_json = await arrived.gh.getitem(f"/repos/{full_name}/pulls/{number}")
    return await upsert_pr(arrived.service, pr_json, arrived.repository, arrived.installation_id)


def waiting_for_review(pr: PullRequest) -> WaitingForReview:
    return WaitingForReview(pr=pr.id, number=pr.number, repository=pr.repository)


async def subscribe_on_request(
    service: ReviewService, pr: PullRequest, requested_by: str
) -> Subscription | None:
    """Watch a pull request someone with write access asked biagent into."""
    await pull_requests.subscribe(
        service.db, pr.id, reason="requested", requested_by=requested_by, now=service.clock.now()
    )
    return await pull_requests.get_subscription(service.db, pr.id)


# -- what is worked ---------------------------------------------------------------------------


async def worth_working(
    service: ReviewService,
    pr: PullRequest,
    subscription: Subscription,
    record: NewComment,
    mentioned: bool,
) -> bool:
    """Diff comments on biagent's own PRs, and anything that @-mentions it, are worked; on
    other watched PRs so are replies in threads biagent already takes part in."""
    if mentioned:
        return True
    if record.kind != "review_comment":
        return False
    if subscription.reason == OPENED_BY_BIAGENT:
        return True
    comments = {
        c.id: c
        for c in await review_comments.list_comments(service.db, pr.id)
        if c.kind == "review_comment"
    }
    stored = comments.get(record.id)
    if stored is None:
        return False
    root = thread_root(stored, comments)
    return any(c.own and thread_root(c, comments) == root for c in comments.values())


async def gather(
    service: ReviewService,
    gh: GitHubAPI,
    pr: PullRequest,
    items: list[tuple[str, int]],
    *,
    trigger: str = "comments",
    again: bool = False,
) -> review_batches.Batch | None:
    """Put comments into the pull request's gathering batch (`again`: even a version worked
    before); a new one gets its queued check run, and the scheduler is woken for its due time."""
    rules = await service.rules(gh, pr.repository)
    if not again:
        for kind, comment_id in items:
            if kind == "review_comment":
                await replace_reopened(service, pr, comment_id)
    batch, added = await review_batches.gather(
        service.db,
        pr.id,
        items,
        now=service.clock.now(),
        debounce_s=rules.debounce_s,
        max_wait_s=rules.max_wait_s,
        trigger=trigger,
        again=again,
    )
    if batch is None or not added:
        return batch
    count = len(await review_batches.batch_items(service.db, batch.id))
    received = ReviewReceived(pr=pr.id, batch_id=batch.id, comments=count, due_at=batch.due_at)
    await service.bus.publish(pr.stream, received)
    if batch.check_run_id is None and pr.head_sha and not pr.paused:
        await checks.open_check(
            service,
            gh,
            pr,
            batch_id=batch.id,
            head_sha=pr.head_sha,
            title="Gathering review comments",
            summary=(
                "biagent has the review comments and starts once reviewers pause "
                f"(due {batch.due_at[:19]}Z, sooner when a review is submitted)."
            ),
        )
    service.wake()
    return batch


async def gathered_in_thread(
    service: ReviewService, pr: PullRequest, comment_id: int
) -> list[review_batches.BatchItem]:
    """The gathering batch's diff comments in the thread of `comment_id` (itself aside)."""
    pending = await review_batches.gathering_batch(service.db, pr.id)
    if pending is None:
        return []
    comments = {
        c.id: c
        for c in await review_comments.list_comments(service.db, pr.id)
        if c.kind == "review_comment"
    }
    stored = comments.get(comment_id)
    if stored is None:
        return []
    root = thread_root(stored, comments)
    return [
        item
        for item in await review_batches.batch_items(service.db, pending.id)
        if item.comment_kind == "review_comment"
        and item.comment_id != comment_id
        and item.comment_id in comments
        and thread_root(comments[item.comment_id], comments) == root
    ]


async def replace_reopened(service: ReviewService, pr: PullRequest, comment_id: int) -> None:
    """A new comment in a thread takes the place of one a reopening put back into the gathering
    batch (a version worked before): the new one is worked with the whole thread and what
    biagent answered there, so the thread gets one answer, not two."""
    for item in await gathered_in_thread(service, pr, comment_id):
        if await review_batches.worked_before(
            service.db,
            item.comment_kind,
            item.comment_id,
            item.comment_version,
            besides_batch=item.batch_id,
        ):
            await review_batches.leave_gathering_batch(
                service.db, item.batch_id, item.comment_kind, item.comment_id
            )
