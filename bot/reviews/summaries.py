"""What a worked batch says on GitHub: the summary comment and the check run's title and table.

Pure text from the stored iteration and batch items (the worker posts it, replies.py writes it
once); one row per comment (its author and words as code spans, so a summary posted each
iteration notifies nobody and links no issue): its outcome, by whom (a reviewer's suggestion
applied as written, or the agent) and what it cost (a suggestion nothing; the agent's run
shared by the comments it was given), then the commit, the tests and the cost of the run.
Which comments were applied as suggestions is read from the engine's stored report
(`suggestion` on its outcome) for the comments whose checked outcome is `fixed`.
"""

from __future__ import annotations

import re

from bot.reviews import checks, replies
from bot.reviews.engine import EngineStatus
from bot.reviews.states import Answer
from storage.pull_requests import PullRequest
from storage.review_batches import BatchItem
from storage.review_comments import Comment
from storage.review_iterations import Iteration


def outcome_counts(items: list[BatchItem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        answer = item.outcome or Answer.NOT_ADDRESSED
        counts[answer] = counts.get(answer, 0) + 1
    return counts


def counted(number: int, noun: str) -> str:
    """`1 comment`, `3 comments`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def check_title(
    status: str, items: list[BatchItem], suggested: set[tuple[str, int]] | None = None
) -> str:
    parts = _parts(items, suggested or set())
    head = _STATUS_HEADS.get(status, status)
    return f"{head}: {', '.join(parts) or 'nothing'}"


def suggestion_keys(iteration: Iteration) -> set[tuple[str, int]]:
    """The comments the engine settled from their suggestion block, without a model."""
    keys: set[tuple[str, int]] = set()
    for entry in iteration.report or []:
        if isinstance(entry, dict) and entry.get("suggestion"):
            keys.add((entry.get("comment_kind") or "review_comment", int(entry["comment_id"])))
    return keys


def applied_suggestions(iteration: Iteration, items: list[BatchItem]) -> set[tuple[str, int]]:
    """The comments fixed by applying their suggestion block (no model)."""
    keys = suggestion_keys(iteration)
    return {
        (item.comment_kind, item.comment_id)
        for item in items
        if item.outcome == Answer.FIXED and (item.comment_kind, item.comment_id) in keys
    }


def _parts(items: list[BatchItem], suggested: set[tuple[str, int]]) -> list[str]:
    """`2 applied as suggestions, 1 fixed, 1 questions`: the counts, suggestions apart."""
    counts = outcome_counts(items)
    counts[Answer.FIXED] = counts.get(Answer.FIXED, 0) - len(suggested)
    parts = [f"{counts[key]} {label}" for key, label in _LABELS if counts.get(key)]
    if suggested:
        noun = "suggestion" if len(suggested) == 1 else "suggestions"
        parts.insert(0, f"{len(suggested)} applied as {noun}")
    return parts


_STATUS_HEADS: dict[str, str] = {
    EngineStatus.COMPLETED: "Answered",
    EngineStatus.BUDGET_STOPPED: "Stopped at the budget",
    EngineStatus.RATE_LIMITED: "Stopped: rate-limited",
    EngineStatus.FAILED: "Failed",
}
_LABELS = (
    (Answer.FIXED, "fixed"),
    (Answer.DECLINED, "not changed"),
    (Answer.QUESTION, "questions"),
    (Answer.NOT_ADDRESSED, "not addressed"),
)


def _where(comment: Comment) -> str:
    if comment.kind == "review_comment":
        return f"`{comment.path}:{comment.line}`" if comment.line else f"`{comment.path}`"
    return "review" if comment.kind == "review_body" else "conversation"


def _run_lines(iteration: Iteration) -> list[str]:
    lines = []
    if iteration.commit_sha:
        lines.append(f"Commit: {iteration.commit_sha[:7]}")
    lines.append(f"Tests: {iteration.tests_summary or 'not reported'}")
    lines.append(f"Cost: ${iteration.cost_usd:.2f}")
    if iteration.status != EngineStatus.COMPLETED:
        why = iteration.error or iteration.status.replace("_", " ")
        lines.append(f"The run stopped early ({why}). `/biagent retry` works this batch again.")
    return lines


_FENCED = re.compile(
    r"^ {0,3}(`{3,}|~{3,})[ \t]*(\w*)[^\n]*\n.*?(?:^ {0,3}\1[ \t\r]*$|\Z)", re.M | re.S
)


def _said(body: str) -> str:
    """A comment's words for a table cell: its code blocks (a suggestion's too) named, not
    quoted, so no fence opens inside the table."""
    named = _FENCED.sub(lambda m: "(suggestion)" if m[2] == "suggestion" else "(code)", body)
    return named.replace("`", "'")


def _inert(text: str) -> str:
    """Text as a code span: an `@login` in it notifies nobody, a `#123` links nothing (every
    iteration's summary would otherwise ping each commenter and everyone they mentioned)."""
    words = " ".join(text.replace("`", "'").split())
    return f"`{words}`" if words else ""


def _who_said(login: str, body: str) -> str:
    """The comment cell: its author and the start of its words, both inert."""
    return f"{_inert('@' + login)}: {_inert(_said(body)[:80])}"


def _rows(
    iteration: Iteration, items: list[BatchItem], by_key: dict[tuple[str, int], Comment]
) -> list[tuple[str, ...]]:
    """One row per comment: what it said, where, its outcome, by whom, its cost, the detail."""
    suggested = applied_suggestions(iteration, items)
    by_suggestion = suggestion_keys(iteration)
    agent_items = len([i for i in items if (i.comment_kind, i.comment_id) not in by_suggestion])
    share = iteration.cost_usd / agent_items if agent_items else 0.0
    agent_cost = f"${share:.2f}" + (f" (1/{agent_items} of the run)" if agent_items > 1 else "")
    rows: list[tuple[str, ...]] = []
    for item in items:
        key = (item.comment_kind, item.comment_id)
        comment = by_key[key]
        detail = item.detail or ""
        if item.outcome == Answer.FIXED:
            detail = f"{(item.commit_sha or '')[:7]} {detail}".strip()
        title = replies.OUTCOME_TITLES.get(item.outcome or "", item.outcome or "?")
        rows.append(
            (
                _who_said(comment.author_login, item.body or comment.body),
                _where(comment),
                "Applied suggestion" if key in suggested else title,
                "suggestion" if key in by_suggestion else "agent",
                "$0.00" if key in by_suggestion else agent_cost,
                detail,
            )
        )
    return rows


def check_summary(
    iteration: Iteration,
    items: list[BatchItem],
    by_key: dict[tuple[str, int], Comment],
) -> str:
    table = checks.outcomes_table(_rows(iteration, items, by_key))
    return table + "\n\n" + "  \n".join(_run_lines(iteration))


def summary_text(
    pr: PullRequest,
    iteration: Iteration,
    items: list[BatchItem],
    by_key: dict[tuple[str, int], Comment],
    *,
    unthreaded: set[tuple[str, int | None]] | None = None,
) -> str:
    """`unthreaded`: diff comments whose thread reply GitHub refused; answered here instead."""
    parts = _parts(items, applied_suggestions(iteration, items))
    lines = [
        f"biagent worked {counted(len(items), 'review comment')} "
        f"(iteration {iteration.number}): {', '.join(parts)}.",
        "",
        checks.outcomes_table(_rows(iteration, items, by_key)),
        "",
        *_run_lines(iteration),
    ]
    refused = unthreaded or set()
    answered_here = [
        item
        for item in items
        if item.comment_kind != "review_comment" or (item.comment_kind, item.comment_id) in refused
    ]
    if answered_here:
        lines.append("")
        for item in answered_here:
            comment = by_key[(item.comment_kind, item.comment_id)]
            if item.comment_kind == "review_comment":
                where = _where(comment)
                lines.append(f"@{comment.author_login} wrote on {where} (no reply in its thread):")
            else:
                lines.append(f"@{comment.author_login} wrote:")
            lines.append(replies.quote(item.body or comment.body))
            lines.append("")
            lines.append(replies.outcome_sentence(item.outcome or "", item.detail, item.commit_sha))
            lines.append("")
    return "\n".join(lines).rstrip()
