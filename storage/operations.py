"""Figures for operators, read across the aggregates when they are asked for (GET /metrics).

Read-only, one GROUP BY or MIN per figure over indexed columns, so a scrape costs a few
milliseconds however long the service has run; nothing here is kept in memory between scrapes,
so nothing can drift from the database. Which states count as pending is the domain's to say
(bot/metrics.py passes them in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.database import Database


@dataclass(frozen=True, slots=True)
class StatusCount:
    status: str
    count: int
    oldest_at: str | None = None  # when the oldest of them started, where that is known


@dataclass(frozen=True, slots=True)
class AgentRunCount:
    agent: str
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class JiraSyncState:
    project: str
    last_complete_at: str | None  # when the last complete run finished
    last_status: str | None  # the newest finished run's status: complete or failed
    failures: int


async def ping(db: Database) -> bool:
    """The cheapest question the database can answer (readiness)."""
    return await db.fetchval("SELECT 1") == 1


async def oldest_due_delivery(db: Database, *, now_text: str) -> str | None:
    """When the delivery that has waited longest for the dispatcher became due, if any."""
    found = await db.fetchval(
        """
        SELECT MIN(next_attempt_at) FROM deliveries
        WHERE status IN ('pending', 'failed') AND next_attempt_at <= ?
        """,
        (now_text,),
    )
    return None if found is None else str(found)


async def review_batches_by_status(db: Database, statuses: Sequence[str]) -> list[StatusCount]:
    """The review batches in the given states, with their first comment's time."""
    if not statuses:
        return []
    marks = ", ".join("?" for _ in statuses)
    rows = await db.fetchall(
        f"""
        SELECT status, COUNT(*), MIN(first_comment_at) FROM review_batches
        WHERE status IN ({marks})
        GROUP BY status
        """,
        tuple(statuses),
    )
    return [StatusCount(row[0], row[1], row[2]) for row in rows]


async def agent_runs_by_status(db: Database) -> list[AgentRunCount]:
    rows = await db.fetchall(
        "SELECT agent, status, COUNT(*) FROM agent_runs GROUP BY agent, status"
    )
    return [AgentRunCount(row[0], row[1], row[2]) for row in rows]


async def agent_dollars(db: Database) -> dict[str, float]:
    """Dollars spent per agent, from the cost of every API call (a running step's too)."""
    rows = await db.fetchall(
        """
        SELECT r.agent, SUM(c.cost_usd) FROM agent_costs c
        JOIN agent_runs r ON r.id = c.run_id
        GROUP BY r.agent
        """
    )
    return {row[0]: float(row[1] or 0.0) for row in rows}


async def jira_sync_states(db: Database) -> list[JiraSyncState]:
    rows = await db.fetchall(
        """
        SELECT s.project,
               MAX(CASE WHEN s.status = 'complete' THEN s.finished_at END),
               (SELECT latest.status FROM sync_status latest
                WHERE latest.project = s.project AND latest.status <> 'running'
                ORDER BY latest.id DESC LIMIT 1),
               SUM(CASE WHEN s.status = 'failed' THEN 1 ELSE 0 END)
        FROM sync_status s
        GROUP BY s.project
        """
    )
    return [JiraSyncState(row[0], row[1], row[2], int(row[3] or 0)) for row in rows]


async def pipelines_by_status(db: Database) -> list[StatusCount]:
    rows = await db.fetchall("SELECT status, COUNT(*) FROM pipelines GROUP BY status")
    return [StatusCount(row[0], row[1]) for row in rows]
