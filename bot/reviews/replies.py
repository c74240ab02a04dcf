"""What biagent writes on a pull request, written once: thread replies, summaries, notes.

Every comment biagent writes ends with a hidden marker, `<!-- biagent:KEY -->`, and is
recorded in `review_replies` under the same KEY before it is posted (the intent), with GitHub's
id after. A second attempt with the same KEY (a retry, a redelivery, a restart) finds the row:
posted -> nothing to do; intent only -> the earlier attempt may have reached GitHub before the
process stopped, so the thread or conversation is searched for the marker first, and posted only
if it is not there. The marker is also how biagent recognises its own comments in webhooks.

A write GitHub refuses for good (a 4xx that is not a rate limit: a locked conversation, a body
it will not take) is marked `failed` and the others go on: asking again would change nothing,
and one refused reply must not hold the batch (and the pull request's next batches) back. A 5xx
on the POST goes up (bot/github/manners.py does not repeat a POST blindly): the next attempt
finds the intent and searches for the marker before posting again. Bodies are cut to GitHub's
65,536 characters, with a note saying so.

Thread replies go to the thread's root comment (`POST .../pulls/{n}/comments/{root_id}/replies`):
GitHub threads are flat, and replying to a reply is not supported.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import gidgethub
from gidgethub.abc import GitHubAPI

from bot.github.manners import is_final_refusal
from bot.reviews.states import Answer
from storage import review_comments, review_replies
from storage.pull_requests import PullRequest
from storage.review_comments import NewComment
from storage.review_iterations import ItemOutcome
from storage.review_replies import Reply

if TYPE_CHECKING:
    from bot.reviews.service import ReviewService

log = logging.getLogger(__name__)

MARKER_START = "<!-- biagent:"
_MARKER = re.compile(r"<!-- biagent:(\S+) -->")

OUTCOME_TITLES: dict[str, str] = {
    Answer.FIXED: "Fixed",
    Answer.DECLINED: "Not changed",
    Answer.QUESTION: "Question",
    Answer.NOT_ADDRESSED: "Not addressed",
}


BODY_LIMIT = 65_536  # GitHub refuses a comment body longer than this (422)
CUT_NOTE = "\n\n_(cut short: GitHub takes at most 65,536 characters in a comment)_"


def with_marker(body: str, key: str) -> str:
    marker = f"\n\n{MARKER_START}{key} -->"
    text = body.rstrip()
    if len(text) + len(marker) > BODY_LIMIT:
        text = text[: BODY_LIMIT - len(marker) - len(CUT_NOTE)].rstrip() + CUT_NOTE
    return text + marker


def carries_marker(body: str | None) -> bool:
    return bool(body) and MARKER_START in (body or "")


def marker_key(body: str | None) -> str | None:
    match = _MARKER.search(body or "")
    return match.group(1) if match else None


def quote(body: str, *, lines: int = 2, width: int = 160) -> str:
    kept = [line for line in (body or "").strip().splitlines() if line.strip()][:lines]
    text = "\n".join(f"> {line[:width]}" for line in kept)
    return text or "> (empty comment)"


def short_sha(sha: str | None) -> str:
    return (sha or "")[:7]


def outcome_sentence(outcome: str, detail: str | None, commit_sha: str | None) -> str:
    title = OUTCOME_TITLES.get(outcome, outcome)
    if outcome == Answer.FIXED:
        text = f"**{title}** in {short_sha(commit_sha)}."
        return f"{text} {detail}" if detail else text
    return f"**{title}**: {detail}" if detail else f"**{title}**."


def thread_reply_body(comment_body: str, item: ItemOutcome, *, retry_hint: bool) -> str:
    body = (
        f"{quote(comment_body)}\n\n{outcome_sentence(item.outcome, item.detail, item.commit_sha)}"
    )
    if item.outcome == Answer.NOT_ADDRESSED and retry_hint:
        body += "\n\n`/biagent retry` works this batch again."
    return body


async def post_thread_reply(
    service: ReviewService,
    gh: GitHubAPI,
    pr: PullRequest,
    *,
    root_id: int,
    body: str,
    batch_id: int,
    iteration_id: int,
    comment_kind: str,
    comment_id: int,
    outcome: str,
) -> Reply:
    key = f"reply:{iteration_id}:{comment_kind}:{comment_id}"
    reply, new = await review_replies.record_intent(
        service.db,
        pr_id=pr.id,
        key=key,
        kind="thread",
        body=body,
        now=service.clock.now(),
        batch_id=batch_id,
        iteration_id=iteration_id,
        comment_kind=comment_kind,
        comment_id=comment_id,
        root_id=root_id,
        outcome=outcome,
    )
    listed_at = f"/repos/{pr.repository}/pulls/{pr.number}/comments"
    if await _settled(service, gh, reply, new=new, listed_at=listed_at):
        return reply
    try:
        posted = await gh.post(
            f"/repos/{pr.repository}/pulls/{pr.number}/comments/{root_id}/replies",
            data={"body": with_marker(reply.body, key)},
        )
    except gidgethub.BadRequest as error:
        if int(error.status_code) == 404:  # the thread was deleted meanwhile
            log.info("%s: thread %s is gone; reply not posted", pr.stream, root_id)
            await review_replies.mark_gone(service.db, reply.id, service.clock.now())
            return reply
        if is_final_refusal(error):
            return await _give_up(service, pr, reply, error)
        raise
    await review_replies.mark_posted(service.db, reply.id, int(posted["id"]), service.clock.now())
    await _remember_own_review_comment(service, pr, posted)
    return reply


async def _settled(
    service: ReviewService, gh: GitHubAPI, reply: Reply, *, new: bool, listed_at: str
) -> bool:
    """True when the reply needs no POST: it was posted (or gone) already, or an earlier
    attempt posted it but stopped before recording that (found on GitHub by its marker)."""
    if reply.status != "intent":
        return True
    if new:
        return False
    found = await _find_marked(gh, listed_at, reply.idempotency_key)
    if found is None:
        return False
    await review_replies.mark_posted(service.db, reply.id, found, service.clock.now())
    return True


async def post_pr_comment(
    service: ReviewService,
    gh: GitHubAPI,
    pr: PullRequest,
    *,
    key: str,
    kind: str,
    body: str,
    batch_id: int | None = None,
    iteration_id: int | None = None,
) -> Reply:
    """One comment in the PR conversation, once for `key` (summaries, notes, command answers)."""
    reply, new = await review_replies.record_intent(
        service.db,
        pr_id=pr.id,
        key=key,
        kind=kind,
        body=body,
        now=service.clock.now(),
        batch_id=batch_id,
        iteration_id=iteration_id,
    )
    return await post_recorded_pr_comment(service, gh, pr, reply, new=new)


async def post_recorded_pr_comment(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, reply: Reply, *, new: bool
) -> Reply:
    """Post a conversation comment whose intent is recorded (`new`: recorded just now, so no
    earlier attempt can have posted it), unless it is posted already."""
    listed_at = f"/repos/{pr.repository}/issues/{pr.number}/comments"
    if await _settled(service, gh, reply, new=new, listed_at=listed_at):
        return reply
    try:
        posted = await gh.post(
            listed_at,
            data={"body": with_marker(reply.body, reply.idempotency_key)},
        )
    except gidgethub.BadRequest as error:
        if is_final_refusal(error):
            return await _give_up(service, pr, reply, error)
        raise
    await review_replies.mark_posted(service.db, reply.id, int(posted["id"]), service.clock.now())
    return reply


async def _give_up(
    service: ReviewService, pr: PullRequest, reply: Reply, error: gidgethub.BadRequest
) -> Reply:
    log.warning(
        "%s: GitHub refused %s (%s %s); not posted",
        pr.stream,
        reply.idempotency_key,
        int(error.status_code),
        error,
    )
    await review_replies.mark_failed(service.db, reply.id, service.clock.now())
    return await review_replies.get_reply(service.db, reply.id) or reply


async def react_eyes(gh: GitHubAPI, pr: PullRequest, comment_kind: str, comment_id: int) -> None:
    """An eyes reaction: the comment was picked up. GitHub keeps one per user, so a repeat is
    harmless; a comment deleted meanwhile is skipped."""
    if comment_kind == "review_comment":
        url = f"/repos/{pr.repository}/pulls/comments/{comment_id}/reactions"
    elif comment_kind == "issue_comment":
        url = f"/repos/{pr.repository}/issues/comments/{comment_id}/reactions"
    else:
        return  # a review's body has no reactions
    try:
        await gh.post(url, data={"content": "eyes"})
    except gidgethub.BadRequest as error:
        if int(error.status_code) not in (404, 422):
            raise


async def _find_marked(gh: GitHubAPI, url: str, key: str) -> int | None:
    async for comment in gh.getiter(url + "{?per_page}", {"per_page": 100}):
        if marker_key(comment.get("body")) == key:
            return int(comment["id"])
    return None


async def _remember_own_review_comment(
    service: ReviewService, pr: PullRequest, posted: dict[str, Any]
) -> None:
    """Keep biagent's reply in the thread, so the next run sees the whole conversation."""
    await review_comments.store_comment(
        service.db,
        pr.id,
        review_comment_record(posted, own=True),
        service.clock.now(),
    )


def review_comment_record(comment: dict[str, Any], *, own: bool) -> NewComment:
    user = comment.get("user") or {}
    return NewComment(
        id=int(comment["id"]),
        kind="review_comment",
        review_id=comment.get("pull_request_review_id"),
        in_reply_to_id=comment.get("in_reply_to_id"),
        path=comment.get("path"),
        line=comment.get("line") or comment.get("original_line"),
        start_line=comment.get("start_line"),
        side=comment.get("side"),
        diff_hunk=comment.get("diff_hunk"),
        commit_id=comment.get("commit_id"),
        body=comment.get("body") or "",
        author_login=user.get("login", ""),
        author_type=user.get("type", "User"),
        own=own,
        html_url=comment.get("html_url"),
        created_at=comment.get("created_at") or "",
        updated_at=comment.get("updated_at") or comment.get("created_at") or "",
    )


def issue_comment_record(comment: dict[str, Any], *, own: bool) -> NewComment:
    user = comment.get("user") or {}
    return NewComment(
        id=int(comment["id"]),
        kind="issue_comment",
        body=comment.get("body") or "",
        author_login=user.get("login", ""),
        author_type=user.get("type", "User"),
        own=own,
        html_url=comment.get("html_url"),
        created_at=comment.get("created_at") or "",
        updated_at=comment.get("updated_at") or comment.get("created_at") or "",
    )


def review_body_record(review: dict[str, Any]) -> NewComment:
    user = review.get("user") or {}
    return NewComment(
        id=int(review["id"]),
        kind="review_body",
        review_id=int(review["id"]),
        commit_id=review.get("commit_id"),
        body=review.get("body") or "",
        author_login=user.get("login", ""),
        author_type=user.get("type", "User"),
        own=False,
        html_url=review.get("html_url"),
        created_at=review.get("submitted_at") or "",
        updated_at=review.get("submitted_at") or "",
    )
