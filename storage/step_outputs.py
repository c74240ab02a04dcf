"""step_outputs, step_output_history, step_feedback, step_artifacts: what pipeline steps made.

A step has one current output (its agent's report and final text). Feedback moves that output
into the history, raises the step's attempt, and marks the later steps `stale`, all in one
transaction, so a restart after a crash sees either the old attempt or the new one whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage import pipelines
from storage.database import Database, Params
from storage.timestamps import to_text

Statement = tuple[str, Params]


@dataclass(frozen=True, slots=True)
class StepOutput:
    step_id: int
    attempt: int
    text: str
    output: dict[str, Any] | None
    created_at: str


@dataclass(frozen=True, slots=True)
class Artifact:
    id: int
    step_id: int
    pipeline_id: int
    attempt: int
    kind: str
    content: str
    url: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class Feedback:
    id: int
    step_id: int
    attempt: int
    text: str
    given_by: str | None
    created_at: str


def save_output(
    step_id: int, attempt: int, text: str, output: dict[str, Any] | None, *, now: datetime
) -> Statement:
    """The step's current output (replacing one of the same step: a resumed attempt)."""
    return (
        """
        INSERT INTO step_outputs (step_id, attempt, text, output, created_at)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (step_id) DO UPDATE SET attempt = excluded.attempt, text = excluded.text,
            output = excluded.output, created_at = excluded.created_at
        """,
        (step_id, attempt, text, None if output is None else json.dumps(output), to_text(now)),
    )


def add_artifact(
    step_id: int,
    pipeline_id: int,
    attempt: int,
    kind: str,
    content: str,
    *,
    url: str | None = None,
    now: datetime,
) -> Statement:
    return (
        "INSERT INTO step_artifacts (step_id, pipeline_id, attempt, kind, content, url,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (step_id, pipeline_id, attempt, kind, content, url, to_text(now)),
    )


async def outputs_of(db: Database, pipeline_id: int) -> dict[int, StepOutput]:
    """The current output of each step of a pipeline, by step id."""
    rows = await db.fetchall(
        """
        SELECT o.step_id, o.attempt, o.text, o.output, o.created_at
        FROM step_outputs o JOIN pipeline_steps s ON s.id = o.step_id
        WHERE s.pipeline_id = ?
        """,
        (pipeline_id,),
    )
    return {row[0]: _output(row) for row in rows}


def _output(row: Any) -> StepOutput:
    output = None if row[3] is None else json.loads(row[3])
    return StepOutput(row[0], row[1], row[2], output, row[4])


async def history_of(db: Database, step_id: int) -> list[StepOutput]:
    """The outputs a step had before feedback replaced them, oldest first."""
    rows = await db.fetchall(
        "SELECT step_id, attempt, text, output, created_at FROM step_output_history"
        " WHERE step_id = ? ORDER BY attempt, id",
        (step_id,),
    )
    return [_output(row) for row in rows]


async def artifacts_of(db: Database, pipeline_id: int) -> list[Artifact]:
    rows = await db.fetchall(
        "SELECT id, step_id, pipeline_id, attempt, kind, content, url, created_at"
        " FROM step_artifacts WHERE pipeline_id = ? ORDER BY id",
        (pipeline_id,),
    )
    return [Artifact(*row) for row in rows]


async def histories_of(db: Database, pipeline_id: int) -> dict[int, list[StepOutput]]:
    """`history_of` for every step of a pipeline at once, by step id."""
    rows = await db.fetchall(
        "SELECT h.step_id, h.attempt, h.text, h.output, h.created_at FROM step_output_history h"
        " JOIN pipeline_steps s ON s.id = h.step_id WHERE s.pipeline_id = ?"
        " ORDER BY h.step_id, h.attempt, h.id",
        (pipeline_id,),
    )
    found: dict[int, list[StepOutput]] = {}
    for row in rows:
        found.setdefault(row[0], []).append(_output(row))
    return found


async def feedback_by_step(db: Database, pipeline_id: int) -> dict[int, list[Feedback]]:
    """`feedback_of` for every step of a pipeline at once, by step id."""
    rows = await db.fetchall(
        "SELECT f.id, f.step_id, f.attempt, f.text, f.given_by, f.created_at FROM step_feedback f"
        " JOIN pipeline_steps s ON s.id = f.step_id WHERE s.pipeline_id = ? ORDER BY f.id",
        (pipeline_id,),
    )
    found: dict[int, list[Feedback]] = {}
    for row in rows:
        found.setdefault(row[1], []).append(Feedback(*row))
    return found


async def feedback_of(db: Database, step_id: int) -> list[Feedback]:
    rows = await db.fetchall(
        "SELECT id, step_id, attempt, text, given_by, created_at FROM step_feedback"
        " WHERE step_id = ? ORDER BY id",
        (step_id,),
    )
    return [Feedback(*row) for row in rows]


def feedback_restart(
    *,
    pipeline_id: int,
    step_id: int,
    position: int,
    attempt: int,
    text: str,
    given_by: str | None,
    now: datetime,
) -> list[Statement]:
    """Feedback on a step: its output goes to the history, its attempt goes up to
    `attempt + 1` with the feedback recorded for it, it waits to run again (`pending`), and the
    later steps that ran on its output become `stale`."""
    stamp = to_text(now)
    next_attempt = attempt + 1
    return [
        (
            "INSERT INTO step_output_history (step_id, attempt, text, output, created_at,"
            " replaced_at) SELECT step_id, attempt, text, output, created_at, ?"
            " FROM step_outputs WHERE step_id = ?",
            (stamp, step_id),
        ),
        ("DELETE FROM step_outputs WHERE step_id = ?", (step_id,)),
        (
            "INSERT INTO step_feedback (step_id, attempt, text, given_by, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (step_id, next_attempt, text, given_by, stamp),
        ),
        (
            "UPDATE pipeline_steps SET status = 'pending', attempt = ?, session_key = NULL,"
            " error = NULL, approved_by = NULL, approved_at = NULL, approval_note = NULL,"
            " started_at = NULL, finished_at = NULL, updated_at = ? WHERE id = ?",
            (next_attempt, stamp, step_id),
        ),
        pipelines.later_steps_stale(pipeline_id, position, now=now),
    ]
