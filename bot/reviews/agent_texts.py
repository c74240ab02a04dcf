"""What the review agent is told and what it tells back (pure): the task, its report as the
engine contract's outcomes and status, the commit message, and the one line about the tests.

agent_run.py drives one batch with these; they need no worktree and no server to test.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.agents.failures import FailureKind
from bot.agents.loop import StepResult
from bot.isolation import sandbox
from bot.reviews.engine import (
    BatchComment,
    CommentOutcome,
    EngineStatus,
    OutcomeKind,
    ReviewBatch,
)

TRAILER = "Biagent-Batch"
_TEST_COUNTS = re.compile(
    r"\b\d+ (passed|failed|errors?|skipped|tests?|examples?|specs?)\b|^(ok|OK|FAILED)\b|^Ran \d+"
)


def status_of(step: StepResult) -> tuple[EngineStatus, str | None]:
    """The engine status for the agent's, and a short reason when it stopped early."""
    if step.status == "completed":
        return EngineStatus.COMPLETED, None
    if step.status == "budget_stopped":
        return EngineStatus.BUDGET_STOPPED, step.reason or "the agent's budget ran out"
    error = step.error or step.reason or step.status
    if step.failure is FailureKind.RATE_LIMITED:
        return EngineStatus.RATE_LIMITED, error
    if step.status == "paused_for_clarification":
        error = "the agent asked a person instead of answering with a question outcome"
    return EngineStatus.FAILED, error


def reported_entries(output: Any) -> list[dict[str, Any]] | None:
    if not isinstance(output, dict) or not isinstance(output.get("outcomes"), list):
        return None
    return [entry for entry in output["outcomes"] if isinstance(entry, dict)]


# The kinds of comment a batch holds, as the agent may name them in its report.
COMMENT_KINDS = ("review_comment", "issue_comment", "review_body")


def comment_outcomes(
    entries: list[dict[str, Any]], commit_sha: str | None
) -> tuple[CommentOutcome, ...]:
    """What the agent said, as the contract's outcomes; `fixed` means in the pushed commit."""
    outcomes = []
    for entry in entries:
        try:
            comment_id = int(entry["comment_id"])
            kind = OutcomeKind(entry["outcome"])
        except (KeyError, TypeError, ValueError):
            continue
        explanation = str(entry.get("explanation") or "").strip() or None
        # Which comment of that id (a review body and a diff comment can share one).
        comment_kind = entry.get("comment_kind")
        if comment_kind not in COMMENT_KINDS:
            comment_kind = None
        fixed, declined = kind is OutcomeKind.FIXED, kind is OutcomeKind.DECLINED
        outcomes.append(
            CommentOutcome(
                comment_id,
                kind,
                commit_sha=commit_sha if fixed else None,
                note=explanation if fixed else None,
                reason=explanation if declined else None,
                question=explanation if not (fixed or declined) else None,
                comment_kind=comment_kind,
            )
        )
    return tuple(outcomes)


def _first_line(text: str, limit: int = 72) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 3].rstrip() + "..."


def _where(comment: BatchComment) -> str:
    if comment.path:
        return f"{comment.path}:{comment.line}" if comment.line else comment.path
    return "review" if comment.kind == "review_body" else "conversation"


def commit_message(batch: ReviewBatch, entries: list[dict[str, Any]], summary: str) -> str:
    """Subject, the agent's summary, one line per comment addressed, the batch trailer."""
    fixed = {int(e["comment_id"]) for e in entries if e.get("outcome") == "fixed"}
    addressed = [comment for comment in batch.comments if comment.comment_id in fixed]
    subject = f"Address review comments on #{batch.pr_number}"
    lines = [subject, ""]
    if summary.strip():
        lines += [summary.strip(), ""]
    lines.append("Addressed:" if addressed else "No comment reported fixed.")
    for comment in addressed:
        lines.append(f"- {_where(comment)}: {_first_line(comment.body)} (@{comment.author})")
    lines += ["", f"{TRAILER}: {batch.batch_id}"]
    return "\n".join(lines)


def summarize_tests(command: str, result: sandbox.SandboxResult) -> str:
    """One line: the command, passed/failed, and its own summary line (e.g. `3 passed`)."""
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    counts = [line for line in lines if _TEST_COUNTS.search(line)]
    detail = (counts or lines or [""])[-1].strip("= ")[:160]
    if result.timed_out:
        verdict = "timed out"
    elif result.ok:
        verdict = "passed"
    else:
        verdict = f"FAILED (exit {result.exit_code})"
    return f"`{command}` {verdict}" + (f": {detail}" if detail else "")


def task_text(
    batch: ReviewBatch,
    test_command: str | None,
    head_sha: str,
    *,
    restarted: bool = False,
    pipeline: str | None = None,
    history: Mapping[str, str] | None = None,
    suggestion_notes: Mapping[int, str] | None = None,
) -> str:
    """The agent's task: the pull request, every comment with its place, whole thread and
    biagent's earlier answers there; `pipeline` is what bot/pipelines/context.py says of the
    pipeline that opened the PR; `history` what the branch says of each earlier commit (its
    files and the commits since, agent_run.py); `suggestion_notes`, per comment id, why its
    suggestion block was not applied as written."""
    lines = [
        f"Pull request #{batch.pr_number} in {batch.repository}: {batch.pr_title}",
        f"Branch {batch.head_ref} (into {batch.base_ref}), checked out at {head_sha[:12]} in"
        " your working directory.",
        "",
    ]
    if pipeline:
        lines += [pipeline.strip(), "", "## The review", ""]
    lines += [
        f"Address these {len(batch.comments)} review comment(s). Report exactly one outcome for"
        " each comment id below.",
    ]
    if restarted:
        lines += [
            "",
            "Note: the branch moved while an earlier attempt worked on these comments, and that"
            " work conflicted with the new commits. Start again from the current files.",
        ]
    notes = suggestion_notes or {}
    for comment in batch.comments:
        lines += _comment_lines(comment)
        lines += _earlier_lines(comment, history or {})
        if comment.kind == "review_comment" and comment.comment_id in notes:
            lines += [
                "",
                "Its ```suggestion block was NOT applied: "
                f"{notes[comment.comment_id]}. Do not paste it over whatever is there now: make"
                " the change it asks for where it belongs in the current files, or report why"
                " not.",
            ]
    lines += [
        "",
        "Tests: "
        + (
            f"run `{test_command}` with bash after your edits."
            if test_command
            else "no test command is known for this repository; say so in your summary."
        ),
        "Do not commit: biagent commits your changes and pushes them.",
        "Finish with report_output.",
    ]
    return "\n".join(lines)


def _comment_lines(comment: BatchComment) -> list[str]:
    """One comment of the task: where it is, what it says, its diff hunk and whole thread."""
    lines = [
        "",
        f"## Comment {comment.comment_id} ({comment.kind}) by @{comment.author}"
        f" ({_where(comment)})",
    ]
    if comment.kind == "review_body":
        lines.append("(the text of a submitted review)")
    elif comment.kind == "issue_comment":
        lines.append("(a comment in the pull request's conversation)")
    lines += ["", _quote(comment.body)]
    if comment.diff_hunk:
        lines += ["", "Diff hunk:", "```diff", comment.diff_hunk.rstrip(), "```"]
    if any(message.comment_id != comment.comment_id for message in comment.thread):
        lines += ["", "Whole thread, oldest first:"]
        for message in comment.thread:
            who = f"@{message.author}" + (" (biagent)" if message.by_biagent else "")
            mark = " <- this comment" if message.comment_id == comment.comment_id else ""
            lines.append(f"- {who}{mark}:")
            lines.append(_quote(message.body, prefix="  > "))
    return lines


_HIDDEN_MARKER = re.compile(r"\s*<!-- biagent:\S+ -->")


def _quote(text: str, *, prefix: str = "> ") -> str:
    text = _HIDDEN_MARKER.sub("", text).strip()  # the key on biagent's own replies
    return "\n".join(prefix + line for line in (text or "(empty)").splitlines())


def _earlier_lines(comment: BatchComment, history: Mapping[str, str]) -> list[str]:
    """A follow-up: what biagent answered before in this thread, the commit it made, what
    the branch did since, and what the reviewer's newest message asks of it now."""
    if not comment.earlier:
        return []
    lines = ["", "You answered in this thread before:"]
    for answer in comment.earlier:
        said = f" {answer.detail}" if answer.detail else ""
        commit = f" in commit {answer.commit_sha[:12]}" if answer.commit_sha else ""
        lines.append(
            f"- iteration {answer.iteration}, comment {answer.comment_id}:"
            f" {answer.outcome}{commit}.{said}"
        )
    for sha in dict.fromkeys(a.commit_sha for a in comment.earlier if a.commit_sha):
        if history.get(sha):
            lines += ["", f"What commit {sha[:12]} changed, and the branch since:", history[sha]]
    lines.append("")
    if any(answer.comment_id == comment.comment_id for answer in comment.earlier):
        lines.append(
            "This comment was answered then, and it is back for work: its thread was reopened"
            " (or a retry was asked for), so that answer did not settle it. Look again at what"
            " was asked."
        )
    else:
        lines.append(
            "This comment follows up on that answer: do what it asks now (it may ask to undo"
            " or redo your earlier change), and answer it in this thread."
        )
    return lines
