"""What the review caps count: engine runs and their cost, per pull request and installation.

Read-only sums over `review_iterations` for bot/reviews/caps.py and the pull request overview.
"""

from __future__ import annotations

from datetime import datetime

from storage.database import Database
from storage.timestamps import to_text


async def runs_since(db: Database, pr_id: int, since: datetime) -> int:
    return int(
        await db.fetchval(
            "SELECT COUNT(*) FROM review_iterations WHERE pr_id = ? AND started_at >= ?",
            (pr_id, to_text(since)),
        )
    )


async def pr_cost(db: Database, pr_id: int, *, since: datetime | None = None) -> float:
    if since is None:
        value = await db.fetchval(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM review_iterations WHERE pr_id = ?", (pr_id,)
        )
    else:
        value = await db.fetchval(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM review_iterations"
            " WHERE pr_id = ? AND started_at >= ?",
            (pr_id, to_text(since)),
        )
    return float(value or 0.0)


async def installation_cost(db: Database, installation_id: int, *, since: datetime) -> float:
    value = await db.fetchval(
        """
        SELECT COALESCE(SUM(i.cost_usd), 0)
        FROM review_iterations i JOIN pull_requests p ON p.id = i.pr_id
        WHERE p.installation_id = ? AND i.started_at >= ?
        """,
        (installation_id, to_text(since)),
    )
    return float(value or 0.0)
