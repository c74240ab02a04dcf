"""agent_runs, agent_interruptions and agent_costs: each attempt at a step and what it cost.

A run is one call of `AgentRunner.run_step`; a step that pauses for a clarification and is
resumed later has two runs on the same claude_sessions row. Costs are one row per Messages API
call and are summed per run (step), pipeline and pull request.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database, found
from storage.timestamps import to_text


class RunStatus(enum.StrEnum):
    """How a run stands: `running` until it ends as one of the step outcomes (the stored text)."""

    RUNNING = "running"
    COMPLETED = "completed"
    PAUSED_FOR_CLARIFICATION = "paused_for_clarification"
    BUDGET_STOPPED = "budget_stopped"
    LOOP_STOPPED = "loop_stopped"  # the same tool call, again and again
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class AgentRun:
    id: int
    session_id: int
    agent: str
    stream: str
    status: RunStatus
    reason: str | None
    error: str | None
    turns: int
    cost_usd: float
    started_at: str
    finished_at: str | None


@dataclass(frozen=True, slots=True)
class Interruption:
    id: int
    run_id: int
    turn: int
    reason: str
    tool_use_started: bool
    partial: Any
    created_at: str


@dataclass(frozen=True, slots=True)
class CostTotals:
    calls: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_usd: float


_RUN_COLUMNS = (
    "id, session_id, agent, stream, status, reason, error, turns, cost_usd, started_at, finished_at"
)


def _run(row: Any) -> AgentRun:
    values = list(row)
    values[4] = RunStatus(values[4])
    return AgentRun(*values)


async def start(
    db: Database, *, session_id: int, agent: str, stream: str, now: datetime
) -> AgentRun:
    result = await db.write(
        "INSERT INTO agent_runs (session_id, agent, stream, started_at) VALUES (?, ?, ?, ?)"
        f" RETURNING {_RUN_COLUMNS}",
        (session_id, agent, stream, to_text(now)),
    )
    return _run(result.rows[0])


async def get(db: Database, run_id: int) -> AgentRun | None:
    row = await db.fetchone(f"SELECT {_RUN_COLUMNS} FROM agent_runs WHERE id = ?", (run_id,))
    return None if row is None else _run(row)


async def for_session(db: Database, session_id: int) -> list[AgentRun]:
    rows = await db.fetchall(
        f"SELECT {_RUN_COLUMNS} FROM agent_runs WHERE session_id = ? ORDER BY id", (session_id,)
    )
    return [_run(row) for row in rows]


async def finish(
    db: Database,
    run_id: int,
    *,
    status: RunStatus,
    reason: str | None,
    error: str | None,
    turns: int,
    cost_usd: float,
    now: datetime,
) -> None:
    if status is RunStatus.RUNNING:
        raise ValueError("a run finishes with its outcome, not `running`")
    await db.write(
        """
        UPDATE agent_runs
        SET status = ?, reason = ?, error = ?, turns = ?, cost_usd = ?, finished_at = ?
        WHERE id = ?
        """,
        (status, reason, error, turns, cost_usd, to_text(now), run_id),
    )


async def mark_abandoned(db: Database, *, now: datetime) -> int:
    """At start-up: runs a stopped process left `running` become `interrupted`."""
    result = await db.write(
        """
        UPDATE agent_runs
        SET status = ?, reason = 'the process stopped during the run', finished_at = ?
        WHERE status = ?
        """,
        (RunStatus.INTERRUPTED, to_text(now), RunStatus.RUNNING),
    )
    return result.rowcount


async def record_interruption(
    db: Database,
    *,
    run_id: int,
    turn: int,
    reason: str,
    tool_use_started: bool,
    partial: Any,
    now: datetime,
) -> None:
    await db.write(
        """
        INSERT INTO agent_interruptions
            (run_id, turn, reason, tool_use_started, partial, created_at)
        VALUES (?, ?, ?, ?, ?, ?)
        """,
        (run_id, turn, reason, int(tool_use_started), json.dumps(partial), to_text(now)),
    )


async def interruptions(db: Database, run_id: int) -> list[Interruption]:
    rows = await db.fetchall(
        "SELECT id, run_id, turn, reason, tool_use_started, partial, created_at"
        " FROM agent_interruptions WHERE run_id = ? ORDER BY id",
        (run_id,),
    )
    return [
        Interruption(row[0], row[1], row[2], row[3], bool(row[4]), json.loads(row[5]), row[6])
        for row in rows
    ]


async def record_cost(
    db: Database,
    *,
    run_id: int,
    session_id: int,
    pipeline_id: int | None,
    pr: str | None,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_write_tokens: int,
    cache_read_tokens: int,
    cost_usd: float,
    now: datetime,
) -> None:
    await db.write(
        """
        INSERT INTO agent_costs
            (run_id, session_id, pipeline_id, pr, model, input_tokens, output_tokens,
             cache_write_tokens, cache_read_tokens, cost_usd, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        (
            run_id,
            session_id,
            pipeline_id,
            pr,
            model,
            input_tokens,
            output_tokens,
            cache_write_tokens,
            cache_read_tokens,
            cost_usd,
            to_text(now),
        ),
    )


_TOTALS = """
    SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
           COALESCE(SUM(cache_write_tokens), 0), COALESCE(SUM(cache_read_tokens), 0),
           COALESCE(SUM(cost_usd), 0)
    FROM agent_costs
"""


async def cost_totals(
    db: Database,
    *,
    session_id: int | None = None,
    pipeline_id: int | None = None,
    pr: str | None = None,
) -> CostTotals:
    """Sum of the calls matching the one filter given (step session, pipeline or PR)."""
    filters = {"session_id": session_id, "pipeline_id": pipeline_id, "pr": pr}
    chosen = [(column, value) for column, value in filters.items() if value is not None]
    if len(chosen) != 1:
        raise ValueError("give exactly one of session_id, pipeline_id, pr")
    column, value = chosen[0]
    # An aggregate without GROUP BY always gives its one row.
    row = found(await db.fetchone(f"{_TOTALS} WHERE {column} = ?", (value,)), "cost totals")
    return CostTotals(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), row[5])


@dataclass(frozen=True, slots=True)
class RunningStream:
    """A run streaming now, and the last token frame its stream had before it started."""

    stream: str
    run_id: int
    agent: str
    started_at: str
    seq_before: int


async def running_on(db: Database, streams: Iterable[str]) -> list[RunningStream]:
    """The runs still `running` on `streams` (a browser session's tabs), oldest first."""
    chosen = sorted(set(streams))
    if not chosen:
        return []
    marks = ", ".join("?" for _ in chosen)
    rows = await db.fetchall(
        f"""
        SELECT r.stream, r.id, r.agent, r.started_at,
               (SELECT MAX(t.seq) FROM token_buffer t
                WHERE t.stream = r.stream AND t.created_at < r.started_at)
        FROM agent_runs r
        WHERE r.status = ? AND r.stream IN ({marks})
        ORDER BY r.id
        """,
        (RunStatus.RUNNING, *chosen),
    )
    return [RunningStream(row[0], row[1], row[2], row[3], int(row[4] or 0)) for row in rows]
