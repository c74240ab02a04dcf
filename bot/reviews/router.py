"""The review concern's webhook handlers: which comments reach a batch, and review states.

- `pull_request`: biagent's own pull requests are watched from `opened`; `synchronize` moves
  the head (a push by biagent itself is recognised and does not count as a person's push);
  `closed` drops pending work.
- `pull_request_review_comment` and `issue_comment` (on a PR): commands and @-mentions (written
  at once or added by an edit) from people with write access (others get one polite refusal);
  on watched PRs, comments feed the PR's gathering batch, keyed by id (edits make a new
  version, deletions leave the batch).
- `pull_request_review`: state per reviewer; `approved` drops pending work (and the approval's
  own inline comments, whichever webhook comes first, are never worked), `changes_requested`
  gathers the review's unresolved threads, and any submitted review closes the batch at once.
- `pull_request_review_thread`: resolved threads are not gathered by a later review.
- `check_run` `rerequested` / `requested_action`: Re-run of a `biagent/review` check.

Circuit breakers: biagent's own comments (its bot login, its app id, or the hidden marker) and
other bots (unless `.github/biagent.yml` allows them) never feed a batch.
"""

from __future__ import annotations

import logging
from typing import Any

import gidgethub
from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.dispatcher import HandlerContext
from bot.reviews import checks, control, replies, worker
from bot.reviews.commands import mentions, parse_commands
from bot.reviews.service import ReviewService
from storage import pull_requests, review_batches, review_comments, review_iterations, review_states
from storage.pull_requests import PullRequest, Subscription
from storage.review_comments import NewComment

log = logging.getLogger(__name__)

router = routing.Router()


def _service(context: HandlerContext) -> ReviewService | None:
    return getattr(context.services, "reviews", None)


# -- identification ---------------------------------------------------------------------------


def _is_own(service: ReviewService, item: dict[str, Any]) -> bool:
    user = item.get("user") or {}
    bot_login = service.bot_login
    if bot_login and str(user.get("login", "")).lower() == bot_login.lower():
        return True
    if replies.carries_marker(item.get("body")):
        return True
    via_app = item.get("performed_via_github_app") or {}
    return service.app_id is not None and via_app.get("id") == service.app_id


def _is_bot(user: dict[str, Any]) -> bool:
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


async def _bot_allowed(service: ReviewService, gh: Any, pr: PullRequest, login: str) -> bool:
    rules = await service.rules(gh, pr.repository)
    return login.lower() in rules.allowed_bots


def _pr_state(pr_json: dict[str, Any]) -> str:
    state = str(pr_json.get("state", "open"))
    if state == "closed" and (pr_json.get("merged") or pr_json.get("merged_at")):
        return "merged"
    return state


async def _upsert_pr(
    service: ReviewService, pr_json: dict[str, Any], repository: dict[str, Any], installation: int
) -> PullRequest:
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
        state=_pr_state(pr_json),
        now=service.clock.now(),
    )
    if service.bot_login and pr.author_login.lower() == service.bot_login.lower():
        if await pull_requests.subscribe(
            service.db,
            pr.id,
            reason="opened_by_biagent",
            requested_by=None,
            now=service.clock.now(),
        ):
            await service.bus.publish(
                pr.stream,
                "waiting_for_review",
                {"pr": pr.id, "number": pr.number, "repository": pr.repository},
            )
    return pr


def _installation(payload: dict[str, Any]) -> int | None:
    installation = payload.get("installation")
    return installation.get("id") if isinstance(installation, dict) else None


# -- pull_request -----------------------------------------------------------------------------


@router.register("pull_request", action="opened")
@router.register("pull_request", action="reopened")
@router.register("pull_request", action="ready_for_review")
@router.register("pull_request", action="edited")
async def on_pull_request_opened(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    service = _service(context)
    installation = _installation(event.data)
    if service is None or installation is None:
        return
    existing = await pull_requests.find_pull_request(
        service.db, event.data["repository"]["full_name"], int(event.data["pull_request"]["number"])
    )
    author = (event.data["pull_request"].get("user") or {}).get("login", "")
    if existing is None and (not service.bot_login or author.lower() != service.bot_login.lower()):
        return  # not biagent's and nobody asked for it
    await _upsert_pr(service, event.data["pull_request"], event.data["repository"], installation)


@router.register("pull_request", action="synchronize")
async def on_pull_request_synchronize(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    service = _service(context)
    if service is None:
        return
    pr = await pull_requests.find_pull_request(
        service.db, event.data["repository"]["full_name"], int(event.data["pull_request"]["number"])
    )
    if pr is None:
        return
    after = event.data.get("after") or event.data["pull_request"]["head"]["sha"]
    sender = str((event.data.get("sender") or {}).get("login", ""))
    own = (service.bot_login is not None and sender.lower() == service.bot_login.lower()) or (
        await review_iterations.is_biagent_commit(service.db, pr.id, after)
    )
    await pull_requests.set_head(
        service.db, pr.id, after, pushed_by_biagent=own, now=service.clock.now()
    )
    if own:
        log.info("%s: synchronize by biagent's own push %s: ignored", pr.stream, after[:7])
    else:
        log.info("%s: %s pushed %s", pr.stream, sender, after[:7])


@router.register("pull_request", action="closed")
async def on_pull_request_closed(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    service = _service(context)
    if service is None:
        return
    pr = await pull_requests.find_pull_request(
        service.db, event.data["repository"]["full_name"], int(event.data["pull_request"]["number"])
    )
    if pr is None:
        return
    state = "merged" if event.data["pull_request"].get("merged") else "closed"
    await pull_requests.set_state(service.db, pr.id, state, service.clock.now())
    pending = await review_batches.gathering_batch(service.db, pr.id)
    if pending is not None:  # its queued check run is concluded too, not left queued
        await worker.conclude_unworked(
            service,
            service.client(pr.installation_id),
            pr,
            pending,
            status="dropped",
            note=f"the pull request was {state}",
        )


# -- comments ---------------------------------------------------------------------------------


@router.register("pull_request_review_comment")
async def on_review_comment(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    service = _service(context)
    installation = _installation(event.data)
    if service is None or installation is None:
        return
    pr_json = event.data["pull_request"]
    pr = await pull_requests.find_pull_request(
        service.db, event.data["repository"]["full_name"], int(pr_json["number"])
    )
    comment = event.data["comment"]
    if pr is None:
        if not _is_request(service, comment):
            return
        pr = await _upsert_pr(service, pr_json, event.data["repository"], installation)
    await _intake(
        service,
        pr,
        comment,
        replies.review_comment_record(comment, own=_is_own(service, comment)),
        event.data.get("action", ""),
    )


@router.register("issue_comment")
async def on_issue_comment(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    service = _service(context)
    installation = _installation(event.data)
    issue = event.data.get("issue") or {}
    if service is None or installation is None or "pull_request" not in issue:
        return
    repository = event.data["repository"]
    pr = await pull_requests.find_pull_request(
        service.db, repository["full_name"], int(issue["number"])
    )
    comment = event.data["comment"]
    if pr is None:
        if not _is_request(service, comment):
            return
        gh = service.client(installation)
        pr_json = await gh.getitem(f"/repos/{repository['full_name']}/pulls/{issue['number']}")
        pr = await _upsert_pr(service, pr_json, repository, installation)
    await _intake(
        service,
        pr,
        comment,
        replies.issue_comment_record(comment, own=_is_own(service, comment)),
        event.data.get("action", ""),
    )


def _is_request(service: ReviewService, comment: dict[str, Any]) -> bool:
    body = comment.get("body") or ""
    return not _is_own(service, comment) and (
        bool(parse_commands(body)) or mentions(body, service.slug)
    )


async def _intake(
    service: ReviewService,
    pr: PullRequest,
    comment_json: dict[str, Any],
    record: NewComment,
    action: str,
) -> None:
    db, now = service.db, service.clock.now()
    subscription = await pull_requests.get_subscription(db, pr.id)
    if record.own:
        if subscription is not None and action != "deleted":
            await review_comments.store_comment(db, pr.id, record, now)  # thread context only
        return
    gh = service.client(pr.installation_id)
    user = comment_json.get("user") or {}
    if _is_bot(user) and not await _bot_allowed(service, gh, pr, record.author_login):
        return
    if action == "deleted":
        await review_comments.mark_comment_deleted(db, record.kind, record.id)
        return
    commands = parse_commands(record.body) if action == "created" else []
    mentioned = mentions(record.body, service.slug)
    # A mention asks biagent to act, whether it was written at once or added by an edit.
    if commands or mentioned:
        if not await _may_command(service, gh, pr, record.author_login):
            await _refuse(service, gh, pr, record.author_login)
            return
        if subscription is None:
            await pull_requests.subscribe(
                db, pr.id, reason="requested", requested_by=record.author_login, now=now
            )
            subscription = await pull_requests.get_subscription(db, pr.id)
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
    if not await _worth_working(service, pr, subscription, record, mentioned):
        return
    if record.review_id is not None and await _in_approving_review(
        service, gh, pr, record.review_id
    ):
        log.info("%s: comment %d is part of an approval: not worked", pr.stream, record.id)
        return
    await _gather(service, gh, pr, [(record.kind, record.id)])


async def _in_approving_review(
    service: ReviewService, gh: Any, pr: PullRequest, review_id: int
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


async def _may_command(service: ReviewService, gh: Any, pr: PullRequest, login: str) -> bool:
    rules = await service.rules(gh, pr.repository)
    if rules.commands_from is not None and login.lower() not in rules.commands_from:
        return False
    return await service.can_write(gh, pr.repository, login)


async def _refuse(service: ReviewService, gh: Any, pr: PullRequest, login: str) -> None:
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


async def _worth_working(
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
    if subscription.reason == "opened_by_biagent":
        return True
    comments = {
        c.id: c
        for c in await review_comments.list_comments(service.db, pr.id)
        if c.kind == "review_comment"
    }
    stored = comments.get(record.id)
    if stored is None:
        return False
    root = worker.thread_root(stored, comments)
    return any(c.own and worker.thread_root(c, comments) == root for c in comments.values())


async def _gather(
    service: ReviewService,
    gh: Any,
    pr: PullRequest,
    items: list[tuple[str, int]],
    *,
    trigger: str = "comments",
) -> review_batches.Batch | None:
    rules = await service.rules(gh, pr.repository)
    batch, added = await review_batches.gather(
        service.db,
        pr.id,
        items,
        now=service.clock.now(),
        debounce_s=rules.debounce_s,
        max_wait_s=rules.max_wait_s,
        trigger=trigger,
    )
    if batch is None or not added:
        return batch
    count = len(await review_batches.batch_items(service.db, batch.id))
    await service.bus.publish(
        pr.stream,
        "review_received",
        {"pr": pr.id, "batch_id": batch.id, "comments": count, "due_at": batch.due_at},
    )
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


# -- reviews ----------------------------------------------------------------------------------


@router.register("pull_request_review")
async def on_review(event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext) -> None:
    service = _service(context)
    installation = _installation(event.data)
    if service is None or installation is None:
        return
    review = event.data["review"]
    action = event.data.get("action", "")
    pr = await pull_requests.find_pull_request(
        service.db,
        event.data["repository"]["full_name"],
        int(event.data["pull_request"]["number"]),
    )
    if pr is None:
        if action != "submitted" or not _is_request(service, review):
            return
        pr = await _upsert_pr(
            service, event.data["pull_request"], event.data["repository"], installation
        )
    if _is_own(service, review):
        return
    db, now = service.db, service.clock.now()
    gh = service.client(pr.installation_id)
    reviewer = str((review.get("user") or {}).get("login", ""))
    if action == "dismissed":
        await review_states.dismiss_review(db, pr.id, int(review["id"]))
        await _recompute_review_state(service, pr)
        return
    if _is_bot(review.get("user") or {}) and not await _bot_allowed(service, gh, pr, reviewer):
        return
    record = replies.review_body_record(review)
    if action == "edited":
        if await review_comments.get_comment(db, "review_body", record.id) is not None:
            await review_comments.store_comment(db, pr.id, record, now)
            await _gather(service, gh, pr, [("review_body", record.id)])
        return
    if action != "submitted":
        return
    state = str(review.get("state", "")).lower()
    current = await review_states.record_reviewer_state(
        db,
        pr.id,
        reviewer=reviewer,
        state=state,
        review_id=int(review["id"]),
        submitted_at=review.get("submitted_at") or "",
    )
    await _recompute_review_state(service, pr)
    body = record.body.strip()
    mentioned = mentions(body, service.slug)
    if body and parse_commands(body):
        await _intake(service, pr, review, record, "created")
        body, mentioned = "", False
    subscription = await pull_requests.get_subscription(db, pr.id)
    if mentioned and not await _may_command(service, gh, pr, reviewer):
        await _refuse(service, gh, pr, reviewer)
        if subscription is None:
            return
        mentioned = False
    if subscription is None and mentioned:
        await pull_requests.subscribe(db, pr.id, reason="requested", requested_by=reviewer, now=now)
        subscription = await pull_requests.get_subscription(db, pr.id)
    if subscription is None:
        return
    if state == "approved":
        if current:  # an older approval arriving late does not drop newer work
            await _on_approved(service, gh, pr, reviewer, int(review["id"]))
        return
    items: list[tuple[str, int]] = []
    review_comment_list = await _review_comments(gh, pr, int(review["id"]))
    for comment in review_comment_list:
        if _is_own(service, comment) or (
            _is_bot(comment.get("user") or {})
            and not await _bot_allowed(service, gh, pr, comment["user"]["login"])
        ):
            continue
        stored, _ = await review_comments.store_comment(
            db, pr.id, replies.review_comment_record(comment, own=False), now
        )
        if stored.resolved or stored.deleted:
            continue
        wanted = state == "changes_requested" or await _worth_working(
            service,
            pr,
            subscription,
            replies.review_comment_record(comment, own=False),
            mentions(stored.body, service.slug)
            and await _may_command(service, gh, pr, stored.author_login),
        )
        if wanted:
            items.append(("review_comment", stored.id))
    if body and (state == "changes_requested" or mentioned):
        await review_comments.store_comment(db, pr.id, record, now)
        items.append(("review_body", record.id))
    batch = await _gather(service, gh, pr, items, trigger="review") if items else None
    # A submitted review is GitHub's own batch boundary: the batch is due at once. Except a
    # "single comment": GitHub wraps each one in a commented review of its own with no body,
    # and closing on those would work every single comment alone, never a debounced batch.
    single_comment = state == "commented" and not body and len(review_comment_list) <= 1
    if not single_comment:
        closed = await review_batches.close_gathering_batch(
            db, pr.id, now=now, review_id=int(review["id"])
        )
        batch = closed or batch
    if state == "changes_requested":
        data: dict[str, Any] = {"pr": pr.id, "reviewer": reviewer}
        if batch is not None:
            data["batch_id"] = batch.id
        await service.bus.publish(pr.stream, "changes_requested", data)
    service.wake()


async def _review_comments(gh: Any, pr: PullRequest, review_id: int) -> list[dict[str, Any]]:
    url = f"/repos/{pr.repository}/pulls/{pr.number}/reviews/{review_id}/comments{{?per_page}}"
    return [comment async for comment in gh.getiter(url, {"per_page": 100})]


async def _on_approved(
    service: ReviewService, gh: Any, pr: PullRequest, reviewer: str, review_id: int
) -> None:
    """Approved: no run; pending work is dropped with a note saying so."""
    db = service.db
    await service.bus.publish(pr.stream, "pr_approved", {"pr": pr.id, "reviewer": reviewer})
    pending = await review_batches.gathering_batch(db, pr.id)
    if pending is None:
        return
    count = len(await review_batches.batch_items(db, pending.id))
    await worker.conclude_unworked(
        service, gh, pr, pending, status="dropped", note=f"approved by @{reviewer}"
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


async def _recompute_review_state(service: ReviewService, pr: PullRequest) -> str:
    states = {s.state for s in await review_states.reviewer_states(service.db, pr.id)}
    if "changes_requested" in states:
        overall = "changes_requested"
    elif "approved" in states:
        overall = "approved"
    else:
        overall = "waiting"
    if overall != pr.review_state:
        await pull_requests.set_review_state(service.db, pr.id, overall, service.clock.now())
        if overall == "waiting" and await pull_requests.get_subscription(service.db, pr.id):
            await service.bus.publish(
                pr.stream,
                "waiting_for_review",
                {"pr": pr.id, "number": pr.number, "repository": pr.repository},
            )
    return overall


@router.register("pull_request_review_thread")
async def on_review_thread(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    service = _service(context)
    if service is None:
        return
    pr = await pull_requests.find_pull_request(
        service.db,
        event.data["repository"]["full_name"],
        int(event.data["pull_request"]["number"]),
    )
    if pr is None:
        return
    thread = event.data.get("thread") or {}
    ids = [int(c["id"]) for c in thread.get("comments") or [] if "id" in c]
    await review_comments.set_thread_resolved(
        service.db, pr.id, ids, event.data.get("action") == "resolved"
    )


# -- check runs -------------------------------------------------------------------------------


@router.register("check_run", action="rerequested")
@router.register("check_run", action="requested_action")
async def on_check_run_rerun(
    event: sansio.Event, gh: GitHubAPI | None, context: HandlerContext
) -> None:
    service = _service(context)
    if service is None:
        return
    check_run = event.data["check_run"]
    if check_run.get("name") != checks.CHECK_NAME:
        return
    app = check_run.get("app") or {}
    if service.app_id is not None and app.get("id") not in (None, service.app_id):
        return
    if event.data.get("action") == "requested_action":
        identifier = (event.data.get("requested_action") or {}).get("identifier")
        if identifier != checks.RERUN_ACTION["identifier"]:
            return
    batch = await review_batches.batch_for_check_run(service.db, int(check_run["id"]))
    if batch is None:
        return
    if batch.status in ("gathering", "running", "responding"):
        return  # still pending or being worked: nothing to re-run yet
    retried = await review_batches.copy_for_retry(service.db, batch.id, now=service.clock.now())
    if retried is not None:
        log.info("batch %d: re-run requested; batch %d is due now", batch.id, retried.id)
        service.wake()
