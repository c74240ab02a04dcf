"""The agent cost ledger (agent_costs) summed by UTC day, pipeline, pull request and source,
for the costs page. Read-only; every model call is one ledger row, so each sum counts a call
once. Days are the first ten characters of the stored UTC time (storage/timestamps.py), a
grouping SQLite and PostgreSQL both read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.database import Database


@dataclass(frozen=True, slots=True)
class Spend:
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cost_usd: float

    def plus(self, other: Spend) -> Spend:
        return Spend(
            self.calls + other.calls,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cost_usd + other.cost_usd,
        )


NOTHING = Spend(0, 0, 0, 0, 0.0)

_SUMS = (
    "COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
    " COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cost_usd), 0)"
)


def _spend(row: Any, first: int) -> Spend:
    return Spend(
        int(row[first]),
        int(row[first + 1]),
        int(row[first + 2]),
        int(row[first + 3]),
        float(row[first + 4]),
    )


async def total(db: Database) -> Spend:
    row = await db.fetchone(f"SELECT {_SUMS} FROM agent_costs")
    return NOTHING if row is None else _spend(row, 0)


async def by_day(db: Database, *, limit: int = 90) -> list[tuple[str, Spend]]:
    """The newest `limit` UTC days with any spend, newest first."""
    rows = await db.fetchall(
        f"SELECT SUBSTR(created_at, 1, 10) AS day, {_SUMS} FROM agent_costs"
        " GROUP BY day ORDER BY day DESC LIMIT ?",
        (limit,),
    )
    return [(row[0], _spend(row, 1)) for row in rows]


async def by_pipeline(db: Database, *, limit: int = 100) -> list[tuple[int, Spend]]:
    """The newest `limit` pipelines with any spend, newest first."""
    rows = await db.fetchall(
        f"SELECT pipeline_id, {_SUMS} FROM agent_costs WHERE pipeline_id IS NOT NULL"
        " GROUP BY pipeline_id ORDER BY pipeline_id DESC LIMIT ?",
        (limit,),
    )
    return [(int(row[0]), _spend(row, 1)) for row in rows]


async def by_pull_request(db: Database, *, limit: int = 100) -> list[tuple[str, Spend]]:
    """The `limit` costliest pull requests (`owner/name#number`), costliest first."""
    rows = await db.fetchall(
        f"SELECT pr, {_SUMS} FROM agent_costs WHERE pr IS NOT NULL"
        " GROUP BY pr ORDER BY 6 DESC, pr LIMIT ?",
        (limit,),
    )
    return [(str(row[0]), _spend(row, 1)) for row in rows]


async def by_source(db: Database) -> list[tuple[int | None, str | None, Spend]]:
    """Every (pipeline, pull request) pair the ledger has calls for, each with its sum: what
    the installation totals are made of, each call in exactly one pair."""
    rows = await db.fetchall(
        f"SELECT pipeline_id, pr, {_SUMS} FROM agent_costs GROUP BY pipeline_id, pr"
    )
    return [(row[0], row[1], _spend(row, 2)) for row in rows]
