"""The `biagent/review` check run on the head commit: queued, in progress, completed.

Queued when a batch starts gathering (reviewers see biagent has their comments and when it will
start), in progress while the engine works, completed with a table of outcomes per comment,
the tests and the cost. The conclusion is `success` when every comment got a real outcome and
`neutral` otherwise (skipped, paused, rate-limited, budget-stopped, failed, or some comment not
addressed): biagent never blocks a merge by its own trouble, so it never concludes `failure`.
A Re-run button (`requested_action` "rerun") and GitHub's own Re-run (`rerequested`) retry.

Never two check runs for one: GitHub can answer a 5xx (or time out) after it created the check
run, and bot/github/manners.py does not repeat such a POST. So each check run gets a key, its
`external_id` (`<batch>.<n>`, storage/review_batches.py `begin_check_run`), recorded with the
commit before the POST and followed by the id after it. An attempt that finds a key recorded
but no id (the POST failed, or the process stopped) first lists the commit's `biagent/review`
check runs (`GET .../commits/{sha}/check-runs`) and adopts the one carrying that key; only if
none does is it created, as replies.py does with a comment's hidden marker.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from gidgethub.abc import GitHubAPI

from bot.reviews.states import Conclusion
from storage import review_batches
from storage.pull_requests import PullRequest
from storage.review_batches import Batch
from storage.timestamps import to_text

if TYPE_CHECKING:
    from bot.reviews.service import ReviewService

log = logging.getLogger(__name__)

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
    service: ReviewService,
    gh: GitHubAPI,
    pr: PullRequest,
    *,
    batch_id: int,
    head_sha: str,
    title: str,
    summary: str,
) -> int:
    """The batch's queued check run on `head_sha`, created once and stored as the batch's.

    A check run an earlier attempt was creating is looked for first: found on this commit, it
    is adopted; found on a commit the batch no longer works on, it is concluded (superseded)
    and a new one opened here; not found, it is created (on this commit, with the same key)."""
    db = service.db
    batch = await review_batches.get_batch(db, batch_id)
    creating = batch.check_run_creating if batch is not None else None
    key = None
    if creating is not None:
        earlier_key, earlier_sha = creating
        found = await find_check(gh, pr, earlier_sha, earlier_key)
        if found is not None and earlier_sha == head_sha:
            log.info("%s: check run %s (%d) was created already", pr.stream, earlier_key, found)
            await review_batches.set_check_run(db, batch_id, found, head_sha)
            return found
        if found is not None:
            await supersede(service, gh, pr, found, head_sha)
        elif earlier_sha == head_sha:
            key = earlier_key  # the earlier POST did not create it
    if key is None:
        key = await review_batches.begin_check_run(db, batch_id, head_sha)
    created = await gh.post(
        f"/repos/{pr.repository}/check-runs",
        data={
            "name": CHECK_NAME,
            "head_sha": head_sha,
            "status": "queued",
            "external_id": key,
            "output": _output(title, summary),
        },
    )
    check_run_id = int(created["id"])
    await review_batches.set_check_run(db, batch_id, check_run_id, head_sha)
    return check_run_id


async def known_check(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, batch: Batch
) -> int | None:
    """The batch's check run id, if it has one: stored, or created by an attempt that stopped
    before storing it (found on GitHub by its key, and stored now)."""
    if batch.check_run_id is not None:
        return batch.check_run_id
    creating = batch.check_run_creating
    if creating is None:
        return None
    key, sha = creating
    found = await find_check(gh, pr, sha, key)
    await review_batches.set_check_run(
        service.db, batch.id, found, sha if found is not None else None
    )
    return found


async def find_check(gh: GitHubAPI, pr: PullRequest, head_sha: str, key: str) -> int | None:
    """The id of the `biagent/review` check run on `head_sha` whose external_id is `key`."""
    url = f"/repos/{pr.repository}/commits/{head_sha}/check-runs{{?check_name,filter,per_page}}"
    url_vars: dict[str, str | int] = {"check_name": CHECK_NAME, "filter": "all", "per_page": 100}
    async for check_run in gh.getiter(url, url_vars, iterable_key="check_runs"):
        if check_run.get("name") == CHECK_NAME and check_run.get("external_id") == key:
            return int(check_run["id"])
    return None


def github_time(service: ReviewService) -> str:
    """Now, as GitHub writes times: whole seconds, UTC."""
    return to_text(service.clock.now())[:19] + "Z"


async def supersede(
    service: ReviewService, gh: GitHubAPI, pr: PullRequest, check_run_id: int, head_sha: str
) -> None:
    """A check run left on a commit the branch moved away from: concluded neutral, pointing at
    the commit the comments are worked on now."""
    await complete(
        gh,
        pr,
        check_run_id,
        conclusion=Conclusion.NEUTRAL,
        title="Superseded: the branch moved",
        summary=f"These comments are worked on {head_sha[:7]}.",
        text=None,
        completed_at=github_time(service),
    )


async def conclude_neutral(
    service: ReviewService,
    gh: GitHubAPI,
    pr: PullRequest,
    batch: Batch,
    *,
    title: str,
    summary: str,
) -> None:
    """The batch's check run, if it has one (stored or found by its key), concluded neutral:
    biagent's own trouble never blocks a merge."""
    check_run_id = await known_check(service, gh, pr, batch)
    if check_run_id is not None:
        await complete(
            gh,
            pr,
            check_run_id,
            conclusion=Conclusion.NEUTRAL,
            title=title,
            summary=summary,
            text=None,
            completed_at=github_time(service),
        )


async def mark_in_progress(
    gh: GitHubAPI, pr: PullRequest, check_run_id: int, *, title: str, summary: str, started_at: str
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
    gh: GitHubAPI,
    pr: PullRequest,
    check_run_id: int,
    *,
    conclusion: Conclusion,
    title: str,
    summary: str,
    text: str | None,
    completed_at: str,
) -> None:
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


def outcomes_table(rows: list[tuple[str, ...]]) -> str:
    """Markdown table of (comment, where, outcome, by, cost, detail)."""
    lines = [
        "| comment | where | outcome | by | cost | detail |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for comment, where, outcome, by, cost, detail in rows:
        lines.append(
            f"| {_cell(comment)} | {_cell(where)} | {outcome} | {by} | {cost} | {_cell(detail)} |"
        )
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join((text or "").replace("|", "\\|").split())[:200]
