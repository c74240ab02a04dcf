"""Read models of review response for the API and the status page (no GitHub calls)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage import (
    pull_requests,
    review_actions,
    review_batches,
    review_comments,
    review_costs,
    review_iterations,
    review_replies,
    review_states,
)
from storage.database import Database
from storage.pull_requests import PullRequest
from storage.timestamps import from_text


async def pull_request_row(db: Database, pr: PullRequest, now: datetime) -> dict[str, Any]:
    """One watched PR with its pending batch (and seconds until it is due) and its spend."""
    subscription = await pull_requests.get_subscription(db, pr.id)
    pending = await review_batches.gathering_batch(db, pr.id)
    last = await review_batches.latest_batch(db, pr.id)
    row = pr.as_json()
    row["watched_because"] = subscription.reason if subscription else None
    row["cost_usd"] = round(await review_costs.pr_cost(db, pr.id), 4)
    row["pending_batch"] = None
    if pending is not None:
        count = len(await review_batches.batch_items(db, pending.id))
        row["pending_batch"] = {
            **pending.as_json(),
            "comments": count,
            "seconds_left": max(0.0, (from_text(pending.due_at) - now).total_seconds()),
        }
    row["last_batch"] = None if last is None else last.as_json()
    return row


async def list_pull_requests(
    db: Database, now: datetime, *, open_only: bool
) -> list[dict[str, Any]]:
    found = await pull_requests.list_watched_pull_requests(db, open_only=open_only)
    return [await pull_request_row(db, pr, now) for pr in found]


async def pull_request_detail(db: Database, pr: PullRequest, now: datetime) -> dict[str, Any]:
    detail = await pull_request_row(db, pr, now)
    batches = []
    for batch in await review_batches.list_batches(db, pr.id):
        batches.append(
            {
                **batch.as_json(),
                "items": [
                    item.as_json() for item in await review_batches.batch_items(db, batch.id)
                ],
            }
        )
    detail["batches"] = batches
    detail["iterations"] = [i.as_json() for i in await review_iterations.list_iterations(db, pr.id)]
    detail["replies"] = [r.as_json() for r in await review_replies.list_replies(db, pr.id)]
    detail["actions"] = [a.as_json() for a in await review_actions.list_actions(db, pr.id)]
    detail["reviewers"] = [s.as_json() for s in await review_states.reviewer_states(db, pr.id)]
    detail["comments"] = [c.as_json() for c in await review_comments.list_comments(db, pr.id)]
    return detail
