"""What the review caps count: engine runs and their cost, per pull request and installation.

Read-only sums over `review_iterations` for bot/reviews/caps.py, the pull request overview and
the costs page.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class ReviewSpend:
    """What a pull request's review runs cost, as the engine reported it (what the caps count)."""

    pr_id: int
    repository: str
    number: int
    installation_id: int
    runs: int
    cost_usd: float


async def by_pull_request(db: Database, *, limit: int = 100) -> list[ReviewSpend]:
    """The `limit` pull requests whose review runs cost most, costliest first."""
    rows = await db.fetchall(
        """
        SELECT p.id, p.repository, p.number, p.installation_id, COUNT(*), SUM(i.cost_usd)
        FROM review_iterations i JOIN pull_requests p ON p.id = i.pr_id
        GROUP BY p.id, p.repository, p.number, p.installation_id
        ORDER BY 6 DESC, p.id LIMIT ?
        """,
        (limit,),
    )
    return [
        ReviewSpend(row[0], row[1], row[2], row[3], int(row[4]), float(row[5] or 0.0))
        for row in rows
    ]
