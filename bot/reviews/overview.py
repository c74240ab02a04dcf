"""Read models of review response for the API and the status page (no GitHub calls)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage import reviews
from storage.database import Database
from storage.reviews import PullRequest
from storage.timestamps import from_text


async def pull_request_row(db: Database, pr: PullRequest, now: datetime) -> dict[str, Any]:
    """One watched PR with its pending batch (and seconds until it is due) and its spend."""
    subscription = await reviews.get_subscription(db, pr.id)
    pending = await reviews.gathering_batch(db, pr.id)
    last = await reviews.latest_batch(db, pr.id)
    row = pr.as_json()
    row["watched_because"] = subscription.reason if subscription else None
    row["cost_usd"] = round(await reviews.pr_cost(db, pr.id), 4)
    row["pending_batch"] = None
    if pending is not None:
        count = len(await reviews.batch_items(db, pending.id))
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
    found = await reviews.list_watched_pull_requests(db, open_only=open_only)
    return [await pull_request_row(db, pr, now) for pr in found]


async def pull_request_detail(db: Database, pr: PullRequest, now: datetime) -> dict[str, Any]:
    detail = await pull_request_row(db, pr, now)
    batches = []
    for batch in await reviews.list_batches(db, pr.id):
        batches.append(
            {
                **batch.as_json(),
                "items": [item.as_json() for item in await reviews.batch_items(db, batch.id)],
            }
        )
    detail["batches"] = batches
    detail["iterations"] = [i.as_json() for i in await reviews.list_iterations(db, pr.id)]
    detail["replies"] = [r.as_json() for r in await reviews.list_replies(db, pr.id)]
    detail["reviewers"] = [s.as_json() for s in await reviews.reviewer_states(db, pr.id)]
    detail["comments"] = [c.as_json() for c in await reviews.list_comments(db, pr.id)]
    return detail
