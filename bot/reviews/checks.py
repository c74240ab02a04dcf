"""The `biagent/review` check run on the head commit: queued, in progress, completed.

Queued when a batch starts gathering (reviewers see biagent has their comments and when it will
start), in progress while the engine works, completed with a table of outcomes per comment,
the tests and the cost. The conclusion is `success` when every comment got a real outcome and
`neutral` otherwise (skipped, paused, rate-limited, budget-stopped, failed, or some comment not
addressed): biagent never blocks a merge by its own trouble, so it never concludes `failure`.
A Re-run button (`requested_action` "rerun") and GitHub's own Re-run (`rerequested`) retry.
"""

from __future__ import annotations

from typing import Any

from storage.pull_requests import PullRequest

CHECK_NAME = "biagent/review"
RERUN_ACTION = {
    "label": "Re-run",
    "description": "Work these review comments again",
    "identifier": "rerun",
}
SUMMARY_LIMIT = 60_000  # GitHub caps output.summary and output.text at 65535 characters


def _output(title: str, summary: str, text: str | None = None) -> dict[str, Any]:
    output = {"title": title[:250], "summary": summary[:SUMMARY_LIMIT]}
    if text:
        output["text"] = text[:SUMMARY_LIMIT]
    return output


async def open_check(
    gh: Any, pr: PullRequest, *, batch_id: int, head_sha: str, title: str, summary: str
) -> int:
    created = await gh.post(
        f"/repos/{pr.repository}/check-runs",
        data={
            "name": CHECK_NAME,
            "head_sha": head_sha,
            "status": "queued",
            "external_id": str(batch_id),
            "output": _output(title, summary),
        },
    )
    return int(created["id"])


async def mark_in_progress(
    gh: Any, pr: PullRequest, check_run_id: int, *, title: str, summary: str, started_at: str
) -> None:
    await gh.patch(
        f"/repos/{pr.repository}/check-runs/{check_run_id}",
        data={
            "status": "in_progress",
            "started_at": started_at,
            "output": _output(title, summary),
        },
    )


async def complete(
    gh: Any,
    pr: PullRequest,
    check_run_id: int,
    *,
    conclusion: str,
    title: str,
    summary: str,
    text: str | None,
    completed_at: str,
) -> None:
    assert conclusion in ("success", "neutral", "skipped", "cancelled"), conclusion
    await gh.patch(
        f"/repos/{pr.repository}/check-runs/{check_run_id}",
        data={
            "status": "completed",
            "conclusion": conclusion,
            "completed_at": completed_at,
            "output": _output(title, summary, text),
            "actions": [RERUN_ACTION],
        },
    )


def outcomes_table(rows: list[tuple[str, str, str, str]]) -> str:
    """Markdown table of (comment, where, outcome, detail)."""
    lines = ["| comment | where | outcome | detail |", "| --- | --- | --- | --- |"]
    for comment, where, outcome, detail in rows:
        lines.append(f"| {_cell(comment)} | {_cell(where)} | {outcome} | {_cell(detail)} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join((text or "").replace("|", "\\|").split())[:200]
