"""After a pushed iteration: the threads it fixed are resolved, their reviewers re-requested.

The one hook every pushed iteration goes through (responding.py calls `follow_through` once the
replies, the summary and the check run are written, whether an agent or something else made the
commit). What is done is decided purely from the batch's answers (`threads_to_resolve`,
`reviewers_to_rerequest`); each action is then done once (storage/review_actions.py: the
intent is stored before the call, its end after):

- a thread is resolved (GraphQL `resolveReviewThread`, review_threads.py) when every comment
  of the batch in it was answered `fixed` and its reply is posted; never one declined, asked
  about or left unanswered, nor one where a newer comment waits in another batch (gathering or
  being worked: its answer belongs in an open thread). A thread found resolved already (an
  earlier attempt, the reviewer) is left as it is. `reviews.resolve_threads: false` in
  `.github/biagent.yml` turns it off;
- once per iteration, the people whose comments it fixed are re-requested
  (`POST .../pulls/{n}/requested_reviewers`): never biagent, another bot, the pull request's
  author, or a reviewer whose latest review approves. GitHub refuses the whole request (422)
  when one of them is no collaborator: each is then asked for alone, under its own key. After
  a kill between the intent and the answer, the pull request's requested reviewers are read
  first, and the POST made only if they are not all there. `reviews.rerequest_review: false`
  turns it off.

A refusal GitHub will not change its mind about (a GraphQL NOT_FOUND or FORBIDDEN, a 4xx that
is no rate limit: `is_final_graphql_refusal`, `is_final_refusal`) is stored as `failed`,
logged, and the batch goes on; anything else (a 5xx, a proxy's HTML page, an empty body,
RATE_LIMITED, "Something went wrong", a secondary rate limit) goes up and the scheduler tries
again, where the intent stored first keeps each action once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import gidgethub
from gidgethub.abc import GitHubAPI

from bot.github.manners import is_final_graphql_refusal, is_final_refusal
from bot.reviews import review_threads
from bot.reviews.service import ReviewService
from bot.reviews.states import ActionKind, ActionStatus, Answer, ReviewState
from bot.reviews.threads import thread_root
from storage import (
    review_actions,
    review_comments,
    review_replies,
    review_standing,
    review_states,
)
from storage.pull_requests import PullRequest
from storage.review_actions import Action
from storage.review_batches import BatchItem
from storage.review_comments import Comment
from storage.review_iterations import Iteration

log = logging.getLogger(__name__)

REVIEW_KINDS = ("review_comment", "review_body")  # parts of a review: their authors reviewed


def threads_to_resolve(
    items: Iterable[BatchItem],
    diff_comments: Mapping[int, Comment],
    posted: set[tuple[str, int]],
) -> dict[int, set[int]]:
    """Root id -> the batch's comment ids in that thread, for each thread where every comment
    of the batch was fixed and answered (its reply in `posted`)."""
    by_id = dict(diff_comments)
    threads: dict[int, set[int]] = {}
    unsettled: set[int] = set()
    for item in items:
        comment = by_id.get(item.comment_id)
        if item.comment_kind != "review_comment" or comment is None:
            continue
        root = thread_root(comment, by_id)
        threads.setdefault(root, set()).add(item.comment_id)
        if item.outcome != Answer.FIXED or (item.comment_kind, item.comment_id) not in posted:
            unsettled.add(root)
    return {root: ids for root, ids in threads.items() if root not in unsettled}


def reviewers_to_rerequest(
    items: Iterable[BatchItem],
    comments: Mapping[tuple[str, int], Comment],
    latest_states: Mapping[str, str],
    *,
    never: Iterable[str],
) -> list[str]:
    """The people whose comments the iteration fixed, who may be asked to review again: not
    bots, not those in `never` (biagent, the author), not those whose latest review approves.
    A conversation comment's author counts only when they reviewed the pull request."""
    excluded = {login.lower() for login in never if login}
    states = {login.lower(): state for login, state in latest_states.items()}
    chosen: dict[str, str] = {}
    for item in items:
        comment = comments.get((item.comment_kind, item.comment_id))
        if item.outcome != Answer.FIXED or comment is None:
            continue
        login = comment.author_login
        key = login.lower()
        if not login or key in excluded or key in chosen:
            continue
        if comment.author_type == "Bot" or key.endswith("[bot]"):
            continue
        state = states.get(key)
        if state == ReviewState.APPROVED:
            continue
        if comment.kind not in REVIEW_KINDS and state is None:
            continue
        chosen[key] = login
    return sorted(chosen.values(), key=str.lower)


async def follow_through(
    service: ReviewService,
    gh: GitHubAPI,
    pr: PullRequest,
    iteration: Iteration,
    items: list[BatchItem],
    by_key: Mapping[tuple[str, int], Comment],
) -> None:
    """Resolve the threads a pushed iteration fixed and re-request their reviewers, once."""
    if iteration.commit_sha is None:
        return
    rules = await service.rules(gh, pr.repository)
    if rules.resolve_threads:
        replies = await review_replies.list_replies(service.db, pr.id, batch_id=iteration.batch_id)
        posted = {
            (reply.comment_kind, reply.comment_id)
            for reply in replies
            if reply.kind == "thread"
            and reply.status == "posted"
            and reply.comment_kind is not None
            and reply.comment_id is not None
        }
        diff_comments = {c.id: c for (kind, _), c in by_key.items() if kind == "review_comment"}
        roots = threads_to_resolve(items, diff_comments, posted)
        await _resolve(
            service, gh, pr, iteration, await _not_waiting(service, pr, iteration, roots)
        )
    if rules.rerequest_review:
        states = await review_states.reviewer_states(service.db, pr.id)
        logins = reviewers_to_rerequest(
            items,
            by_key,
            {state.reviewer_login: state.state for state in states},
            never=[service.bot_login or "", pr.author_login],
        )
        if logins:
            await _rerequest(service, gh, pr, iteration, logins)


async def _not_waiting(
    service: ReviewService, pr: PullRequest, iteration: Iteration, roots: dict[int, set[int]]
) -> dict[int, set[int]]:
    """The threads of `roots` where no newer comment waits in another batch (gathering or
    being worked): resolving those would hide the question the next batch answers."""
    waiting = await review_standing.waiting_elsewhere(
        service.db, pr.id, besides_batch=iteration.batch_id
    )
    if not waiting or not roots:
        return roots
    every = {
        c.id: c
        for c in await review_comments.list_comments(service.db, pr.id)
        if c.kind == "review_comment"
    }
    held = {thread_root(every[i], every) for i in waiting if i in every}
    return {root: ids for root, ids in roots.items() if root not in held}


async def _resolve(
    service: ReviewService,
    gh: GitHubAPI,
    pr: PullRequest,
    iteration: Iteration,
    roots: Mapping[int, set[int]],
) -> None:
    pending: list[tuple[Action, set[int]]] = []
    for root, ids in sorted(roots.items()):
        action, _ = await review_actions.record_intent(
            service.db,
            pr_id=pr.id,
            iteration_id=iteration.id,
            key=f"resolve:{iteration.id}:{root}",
            kind=ActionKind.RESOLVE_THREAD,
            target=str(root),
            now=service.clock.now(),
        )
        if action.status == ActionStatus.INTENT:
            pending.append((action, {root, *ids}))
    if not pending:
        return
    try:
        threads = await review_threads.list_threads(gh, pr)
    except gidgethub.GraphQLException as error:
        if not is_final_graphql_refusal(error):
            raise  # a proxy's page, a rate limit, "Something went wrong": tried again
        for action, _ in pending:
            await _failed(service, pr, action, f"the review threads could not be read: {error}")
        return
    for action, ids in pending:
        await _resolve_one(service, gh, pr, action, review_threads.thread_holding(threads, ids))


async def _resolve_one(
    service: ReviewService,
    gh: GitHubAPI,
    pr: PullRequest,
    action: Action,
    thread: review_threads.ThreadNode | None,
) -> None:
    db, now = service.db, service.clock.now()
    if thread is None:
        await review_actions.finish(
            db, action.id, ActionStatus.SKIPPED, now=now, detail="GitHub lists no such thread"
        )
        return
    if not thread.resolved:
        try:
            await review_threads.resolve_thread(gh, thread.node_id)
        except gidgethub.GraphQLException as error:
            if not is_final_graphql_refusal(error):
                raise
            await _failed(service, pr, action, f"{thread.node_id}: {error}")
            return
        log.info("%s: thread %s resolved (%s)", pr.stream, action.target, thread.node_id)
    await review_comments.set_thread_resolved(db, pr.id, [int(action.target)], True)
    await review_actions.finish(db, action.id, ActionStatus.DONE, now=now, detail=thread.node_id)


async def _rerequest(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, iteration: Iteration, logins: list[str]
) -> None:
    db = service.db
    action, new = await review_actions.record_intent(
        db,
        pr_id=pr.id,
        iteration_id=iteration.id,
        key=f"rerequest:{iteration.id}",
        kind=ActionKind.REREQUEST_REVIEW,
        target=",".join(logins),
        now=service.clock.now(),
    )
    if action.status != ActionStatus.INTENT:
        return
    recorded = action.target.split(",")  # a second attempt asks for whom the first one did
    url = f"/repos/{pr.repository}/pulls/{pr.number}/requested_reviewers"
    if not new and await _all_requested(gh, url, recorded):
        await review_actions.finish(db, action.id, ActionStatus.DONE, now=service.clock.now())
        return
    try:
        await gh.post(url, data={"reviewers": recorded})
    except gidgethub.BadRequest as error:
        if int(error.status_code) == 422 and len(recorded) > 1:
            await _rerequest_each(service, gh, pr, action, url, recorded)
            return
        if is_final_refusal(error):
            await _failed(service, pr, action, f"{int(error.status_code)} {error}")
            return
        raise
    log.info("%s: review re-requested from %s", pr.stream, ", ".join(recorded))
    await review_actions.finish(db, action.id, ActionStatus.DONE, now=service.clock.now())


async def _rerequest_each(
    service: ReviewService,
    gh: GitHubAPI,
    pr: PullRequest,
    whole: Action,
    url: str,
    logins: list[str],
) -> None:
    """GitHub refused the whole request (422: one of them is not a collaborator any more): each
    login is asked for alone, each under its own key, so the others are still re-requested."""
    db = service.db
    requested: list[str] = []
    for login in logins:
        action, new = await review_actions.record_intent(
            db,
            pr_id=pr.id,
            iteration_id=whole.iteration_id,
            key=f"{whole.idempotency_key}:{login.lower()}",
            kind=ActionKind.REREQUEST_REVIEW,
            target=login,
            now=service.clock.now(),
        )
        if action.status == ActionStatus.INTENT:
            await _rerequest_one(service, gh, pr, action, url, new=new)
            action = await review_actions.get_action(db, action.id)
        if action.status == ActionStatus.DONE:
            requested.append(login)
    status = ActionStatus.DONE if requested else ActionStatus.FAILED
    detail = f"422 for all at once; requested one at a time: {', '.join(requested) or 'none'}"
    await review_actions.finish(db, whole.id, status, now=service.clock.now(), detail=detail)


async def _rerequest_one(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, action: Action, url: str, *, new: bool
) -> None:
    if not new and await _all_requested(gh, url, [action.target]):
        await review_actions.finish(
            service.db, action.id, ActionStatus.DONE, now=service.clock.now()
        )
        return
    try:
        await gh.post(url, data={"reviewers": [action.target]})
    except gidgethub.BadRequest as error:
        if is_final_refusal(error):
            await _failed(service, pr, action, f"{int(error.status_code)} {error}")
            return
        raise
    log.info("%s: review re-requested from %s", pr.stream, action.target)
    await review_actions.finish(service.db, action.id, ActionStatus.DONE, now=service.clock.now())


async def _all_requested(gh: GitHubAPI, url: str, logins: list[str]) -> bool:
    """Whether an earlier attempt's POST reached GitHub: they are all requested already."""
    requested = await gh.getitem(url)
    found = {str(user.get("login", "")).lower() for user in requested.get("users") or []}
    return all(login.lower() in found for login in logins)


async def _failed(service: ReviewService, pr: PullRequest, action: Action, why: str) -> None:
    log.warning("%s: %s %s refused: %s", pr.stream, action.kind, action.target, why)
    await review_actions.finish(
        service.db, action.id, ActionStatus.FAILED, now=service.clock.now(), detail=why[:500]
    )
