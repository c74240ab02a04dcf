"""pipelines and pipeline_steps: a ticket's run through its cycle type's phases.

The engine (bot/pipelines/) is a state machine over these rows: each change of a pipeline's or a
step's status is a statement here, committed together with the event that announces it
(`EventBus.publish(..., together_with=[...])`), before any side effect. A pipeline copies its
cycle type's phases into its steps when the cycle type is set, so later edits of the cycle type
never change a pipeline already under way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.cycle_types import CycleType, PhaseDefinition
from storage.database import Database, Params
from storage.timestamps import to_text

Statement = tuple[str, Params]


@dataclass(frozen=True, slots=True)
class Pipeline:
    id: int
    ticket_key: str
    cycle_type: str | None
    cycle_reason: str | None
    status: str
    repositories: tuple[str, ...]
    branch: str | None
    worktree_session_id: str | None
    trigger: str
    max_cost_usd: float | None
    cost_usd: float
    error_kind: str | None
    error_message: str | None
    error_phase: str | None
    error_detail: dict[str, Any] | None
    created_by: str | None
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None


@dataclass(frozen=True, slots=True)
class Step:
    id: int
    pipeline_id: int
    position: int
    phase: str
    agent: str
    prompt_template: str
    tools: tuple[str, ...] | None
    gate: str
    artifact_kind: str | None
    max_cost_usd: float | None
    time_limit_s: int | None
    status: str
    attempt: int
    session_key: str | None
    cost_usd: float
    error: str | None
    approved_by: str | None
    approved_at: str | None
    approval_note: str | None
    started_at: str | None
    finished_at: str | None


_PIPELINE_COLUMNS = (
    "id, ticket_key, cycle_type, cycle_reason, status, repositories, branch,"
    " worktree_session_id, trigger, max_cost_usd, cost_usd, error_kind, error_message,"
    " error_phase, error_detail, created_by, created_at, updated_at, started_at, finished_at"
)
_STEP_COLUMNS = (
    "id, pipeline_id, position, phase, agent, prompt_template, tools, gate, artifact_kind,"
    " max_cost_usd, time_limit_s, status, attempt, session_key, cost_usd, error, approved_by,"
    " approved_at, approval_note, started_at, finished_at"
)


def _pipeline(row: Any) -> Pipeline:
    values = list(row)
    values[5] = tuple(json.loads(values[5]))
    values[14] = None if values[14] is None else json.loads(values[14])
    return Pipeline(*values)


def _step(row: Any) -> Step:
    values = list(row)
    values[6] = None if values[6] is None else tuple(json.loads(values[6]))
    return Step(*values)


async def create_pipeline(
    db: Database,
    *,
    ticket_key: str,
    repositories: Sequence[str],
    trigger: str,
    created_by: str | None,
    now: datetime,
) -> Pipeline:
    """A new pipeline in status `created`, with no cycle type and no steps yet."""
    stamp = to_text(now)
    result = await db.write(
        "INSERT INTO pipelines (ticket_key, status, repositories, trigger, created_by,"
        " created_at, updated_at) VALUES (?, 'created', ?, ?, ?, ?, ?)"
        f" RETURNING {_PIPELINE_COLUMNS}",
        (ticket_key, json.dumps(list(repositories)), trigger, created_by, stamp, stamp),
    )
    return _pipeline(result.rows[0])


async def set_cycle_type(
    db: Database,
    pipeline_id: int,
    cycle_type: CycleType,
    *,
    reason: str,
    max_cost_usd: float | None,
    now: datetime,
    keep_done_triage: bool = False,
) -> list[Step]:
    """Choose the pipeline's cycle type and copy its phases into steps. Before the start the
    earlier steps are dropped; `keep_done_triage` keeps a completed triage step (the triage agent
    chose the type) and adds the cycle type's other phases after it."""
    stamp = to_text(now)
    async with db.transaction() as connection:
        phases = list(cycle_type.phases)
        position = 0
        if keep_done_triage:
            phases = [p for p in phases if p.phase.name != "triage"]
            position = 1
        else:
            await connection.execute(
                "DELETE FROM pipeline_steps WHERE pipeline_id = ?", (pipeline_id,)
            )
        await connection.execute(
            "UPDATE pipelines SET cycle_type = ?, cycle_reason = ?, max_cost_usd = ?,"
            " updated_at = ? WHERE id = ?",
            (cycle_type.name, reason, max_cost_usd, stamp, pipeline_id),
        )
        for offset, cycle_phase in enumerate(phases, start=1):
            cap = cycle_phase.max_cost_usd
            await connection.execute(
                _INSERT_STEP,
                _step_params(
                    pipeline_id,
                    position + offset,
                    cycle_phase.phase,
                    gate=cycle_phase.gate,
                    max_cost_usd=cap if cap is not None else cycle_type.step_max_cost_usd,
                    time_limit_s=cycle_phase.time_limit_s,
                    stamp=stamp,
                ),
            )
    return await list_steps(db, pipeline_id)


async def add_triage_step(
    db: Database, pipeline_id: int, triage: PhaseDefinition, *, reason: str, now: datetime
) -> None:
    """The one step of a pipeline whose cycle type the triage agent is to decide."""
    stamp = to_text(now)
    await db.write_many(
        [
            ("DELETE FROM pipeline_steps WHERE pipeline_id = ?", (pipeline_id,)),
            (
                "UPDATE pipelines SET cycle_reason = ?, updated_at = ? WHERE id = ?",
                (reason, stamp, pipeline_id),
            ),
            (
                _INSERT_STEP,
                _step_params(
                    pipeline_id,
                    1,
                    triage,
                    gate=triage.gate,
                    max_cost_usd=triage.max_cost_usd,
                    time_limit_s=triage.time_limit_s,
                    stamp=stamp,
                ),
            ),
        ]
    )


_INSERT_STEP = """
    INSERT INTO pipeline_steps (pipeline_id, position, phase, agent, prompt_template, tools,
                                gate, artifact_kind, max_cost_usd, time_limit_s, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def _step_params(
    pipeline_id: int,
    position: int,
    phase: PhaseDefinition,
    *,
    gate: str,
    max_cost_usd: float | None,
    time_limit_s: int | None,
    stamp: str,
) -> tuple[object, ...]:
    tools = None if phase.tools is None else json.dumps(list(phase.tools))
    return (
        pipeline_id, position, phase.name, phase.agent, phase.prompt_template, tools, gate,
        phase.artifact_kind, max_cost_usd, time_limit_s, stamp,
    )  # fmt: skip


async def get_pipeline(db: Database, pipeline_id: int) -> Pipeline | None:
    row = await db.fetchone(
        f"SELECT {_PIPELINE_COLUMNS} FROM pipelines WHERE id = ?", (pipeline_id,)
    )
    return None if row is None else _pipeline(row)


async def list_pipelines(
    db: Database,
    *,
    statuses: Sequence[str] = (),
    ticket_key: str | None = None,
    limit: int = 200,
) -> list[Pipeline]:
    """Newest first, filtered by status (any of) and ticket when given."""
    where: list[str] = ["1 = 1"]
    params: list[object] = []
    if statuses:
        where.append(f"status IN ({', '.join('?' for _ in statuses)})")
        params.extend(statuses)
    if ticket_key is not None:
        where.append("ticket_key = ?")
        params.append(ticket_key)
    rows = await db.fetchall(
        f"SELECT {_PIPELINE_COLUMNS} FROM pipelines WHERE {' AND '.join(where)}"
        " ORDER BY id DESC LIMIT ?",
        (*params, limit),
    )
    return [_pipeline(row) for row in rows]


async def list_steps(db: Database, pipeline_id: int) -> list[Step]:
    rows = await db.fetchall(
        f"SELECT {_STEP_COLUMNS} FROM pipeline_steps WHERE pipeline_id = ? ORDER BY position",
        (pipeline_id,),
    )
    return [_step(row) for row in rows]


async def get_step(db: Database, step_id: int) -> Step | None:
    row = await db.fetchone(f"SELECT {_STEP_COLUMNS} FROM pipeline_steps WHERE id = ?", (step_id,))
    return None if row is None else _step(row)


async def steps_at_gate(db: Database, *, gate: str, status: str, limit: int = 100) -> list[Step]:
    """Steps of any pipeline that carry `gate` and stand in `status`, oldest first: the plans
    waiting for a person's approval, for the status page."""
    rows = await db.fetchall(
        f"SELECT {_STEP_COLUMNS} FROM pipeline_steps WHERE gate = ? AND status = ?"
        " ORDER BY id LIMIT ?",
        (gate, status, limit),
    )
    return [_step(row) for row in rows]


def pipeline_status(
    pipeline_id: int,
    status: str,
    *,
    now: datetime,
    finished: bool = False,
    only_from: str | None = None,
) -> Statement:
    """Set a pipeline's status (and its finish time when it ended); started_at is kept from
    the first time it ran. With `only_from`, only a pipeline still in that status changes (the
    engine's own transitions do not undo a pause or a cancel a person committed meanwhile)."""
    stamp = to_text(now)
    return (
        "UPDATE pipelines SET status = ?, updated_at = ?,"
        " started_at = CASE WHEN ? = 'running' THEN COALESCE(started_at, ?) ELSE started_at END,"
        " finished_at = CASE WHEN ? = 1 THEN ? ELSE NULL END"
        " WHERE id = ? AND status = COALESCE(?, status)",
        (status, stamp, status, stamp, int(finished), stamp, pipeline_id, only_from),
    )


def pipeline_failure(
    pipeline_id: int,
    *,
    kind: str,
    message: str,
    phase: str | None,
    detail: dict[str, Any],
    now: datetime,
) -> Statement:
    """Mark a running pipeline failed with what a person needs to act: the phase, the kind,
    the detail (the last tool call, a log excerpt). Only the engine's running task fails one."""
    stamp = to_text(now)
    return (
        "UPDATE pipelines SET status = 'failed', error_kind = ?, error_message = ?,"
        " error_phase = ?, error_detail = ?, updated_at = ?, finished_at = ?"
        " WHERE id = ? AND status = 'running'",
        (kind, message, phase, json.dumps(detail), stamp, stamp, pipeline_id),
    )


def clear_failure(pipeline_id: int) -> Statement:
    return (
        "UPDATE pipelines SET error_kind = NULL, error_message = NULL, error_phase = NULL,"
        " error_detail = NULL, finished_at = NULL WHERE id = ?",
        (pipeline_id,),
    )


def set_max_cost(pipeline_id: int, max_cost_usd: float) -> Statement:
    """A person raised (or set) the pipeline's dollar cap."""
    return ("UPDATE pipelines SET max_cost_usd = ? WHERE id = ?", (max_cost_usd, pipeline_id))


def set_failed_steps_max_cost(pipeline_id: int, max_cost_usd: float) -> Statement:
    """A person raised the cap of the step that failed (its spend counts its whole stored
    conversation, so a step stopped by its cap needs a higher one to go on)."""
    return (
        "UPDATE pipeline_steps SET max_cost_usd = ? WHERE pipeline_id = ? AND status = 'failed'",
        (max_cost_usd, pipeline_id),
    )


def later_steps_stale(pipeline_id: int, position: int, *, now: datetime) -> Statement:
    """The steps after `position` that ran become `stale`: each runs again as a new attempt
    (a fresh conversation), and an approval it had is void (a rerun plan is approved again)."""
    return (
        "UPDATE pipeline_steps SET status = 'stale', attempt = attempt + 1, session_key = NULL,"
        " error = NULL, approved_by = NULL, approved_at = NULL, approval_note = NULL,"
        " started_at = NULL, finished_at = NULL, updated_at = ?"
        " WHERE pipeline_id = ? AND position > ? AND status NOT IN ('pending', 'stale')",
        (to_text(now), pipeline_id, position),
    )


def step_status(
    step_id: int,
    status: str,
    *,
    now: datetime,
    error: str | None = None,
    session_key: str | None = None,
) -> Statement:
    """Set a step's status; `running` stamps its start, an end state its finish."""
    stamp = to_text(now)
    ended = status in ("completed", "failed", "waiting_for_approval")
    return (
        "UPDATE pipeline_steps SET status = ?, error = ?, updated_at = ?,"
        " session_key = COALESCE(?, session_key),"
        " started_at = CASE WHEN ? = 'running' THEN COALESCE(started_at, ?) ELSE started_at END,"
        " finished_at = CASE WHEN ? = 1 THEN ? ELSE finished_at END WHERE id = ?",
        (status, error, stamp, session_key, status, stamp, int(ended), stamp, step_id),
    )


def add_cost(pipeline_id: int, step_id: int, cost_usd: float) -> list[Statement]:
    return [
        ("UPDATE pipelines SET cost_usd = cost_usd + ? WHERE id = ?", (cost_usd, pipeline_id)),
        ("UPDATE pipeline_steps SET cost_usd = cost_usd + ? WHERE id = ?", (cost_usd, step_id)),
    ]


def approval(step_id: int, *, by: str, note: str | None, now: datetime) -> Statement:
    stamp = to_text(now)
    return (
        "UPDATE pipeline_steps SET status = 'completed', approved_by = ?, approved_at = ?,"
        " approval_note = ?, updated_at = ? WHERE id = ?",
        (by, stamp, note, stamp, step_id),
    )


def set_branch(pipeline_id: int, branch: str, worktree_session_id: str | None) -> Statement:
    return (
        "UPDATE pipelines SET branch = ?, worktree_session_id = ? WHERE id = ?",
        (branch, worktree_session_id, pipeline_id),
    )


@dataclass(frozen=True, slots=True)
class PipelinePullRequest:
    pipeline_id: int
    repository: str
    number: int
    url: str
    draft: bool
    state: str


def record_pull_request(
    pipeline_id: int, repository: str, number: int, url: str, *, draft: bool, now: datetime
) -> Statement:
    return (
        "INSERT INTO pipeline_pull_requests (pipeline_id, repository, number, url, draft,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (repository, number) DO NOTHING",
        (pipeline_id, repository, number, url, int(draft), to_text(now)),
    )


def pull_request_state(repository: str, number: int, state: str) -> Statement:
    return (
        "UPDATE pipeline_pull_requests SET state = ? WHERE repository = ? AND number = ?",
        (state, repository, number),
    )


async def pull_requests_of(db: Database, pipeline_id: int) -> list[PipelinePullRequest]:
    rows = await db.fetchall(
        "SELECT pipeline_id, repository, number, url, draft, state FROM pipeline_pull_requests"
        " WHERE pipeline_id = ? ORDER BY created_at, repository",
        (pipeline_id,),
    )
    return [
        PipelinePullRequest(row[0], row[1], row[2], row[3], bool(row[4]), row[5]) for row in rows
    ]


async def pipeline_of_pull_request(
    db: Database, repository: str, number: int
) -> PipelinePullRequest | None:
    row = await db.fetchone(
        "SELECT pipeline_id, repository, number, url, draft, state FROM pipeline_pull_requests"
        " WHERE repository = ? AND number = ?",
        (repository, number),
    )
    if row is None:
        return None
    return PipelinePullRequest(row[0], row[1], row[2], row[3], bool(row[4]), row[5])
