"""clarifications: questions agents asked people, and their answers.

The tool_use id ties a question to the model's `request_clarification` call, so the answer
becomes that call's tool result when the step resumes.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database, found
from storage.timestamps import to_text


class ClarificationStatus(enum.StrEnum):
    """A question is `open` until a person answers it, once."""

    OPEN = "open"
    ANSWERED = "answered"


@dataclass(frozen=True, slots=True)
class Clarification:
    id: int
    session_id: int
    tool_use_id: str
    stream: str
    question: str
    choices: list[str] | None
    status: ClarificationStatus
    answer: str | None
    answered_by: str | None
    created_at: str
    answered_at: str | None
    step_id: int | None = None  # the pipeline step that asked, when a pipeline's agent did

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "stream": self.stream,
            "question": self.question,
            "choices": self.choices,
            "status": self.status,
            "answer": self.answer,
            "answered_by": self.answered_by,
            "created_at": self.created_at,
            "answered_at": self.answered_at,
            "step_id": self.step_id,
        }


_COLUMNS = (
    "id, session_id, tool_use_id, stream, question, choices, status, answer, answered_by,"
    " created_at, answered_at, step_id"
)


def _clarification(row: Any) -> Clarification:
    values = list(row)
    values[5] = None if values[5] is None else json.loads(values[5])
    values[6] = ClarificationStatus(values[6])
    return Clarification(*values)


async def ask(
    db: Database,
    *,
    session_id: int,
    tool_use_id: str,
    stream: str,
    question: str,
    choices: list[str] | None,
    now: datetime,
) -> tuple[Clarification, bool]:
    """Store the question; returns it and whether it is new (False when asked before)."""
    result = await db.write(
        """
        INSERT INTO clarifications
            (session_id, tool_use_id, stream, question, choices, created_at, step_id)
        VALUES (?, ?, ?, ?, ?, ?, (SELECT step_id FROM claude_sessions WHERE id = ?))
        ON CONFLICT (session_id, tool_use_id) DO NOTHING
        """,
        (
            session_id,
            tool_use_id,
            stream,
            question,
            None if choices is None else json.dumps(choices),
            to_text(now),
            session_id,
        ),
    )
    stored = found(await find(db, session_id, tool_use_id), f"the question of {tool_use_id}")
    return stored, result.rowcount == 1


async def find(db: Database, session_id: int, tool_use_id: str) -> Clarification | None:
    row = await db.fetchone(
        f"SELECT {_COLUMNS} FROM clarifications WHERE session_id = ? AND tool_use_id = ?",
        (session_id, tool_use_id),
    )
    return None if row is None else _clarification(row)


async def get(db: Database, clarification_id: int) -> Clarification | None:
    row = await db.fetchone(
        f"SELECT {_COLUMNS} FROM clarifications WHERE id = ?", (clarification_id,)
    )
    return None if row is None else _clarification(row)


async def answer(
    db: Database, clarification_id: int, *, answer: str, answered_by: str | None, now: datetime
) -> bool:
    """Record the answer; False when the question is unknown or already answered."""
    result = await db.write(
        """
        UPDATE clarifications SET status = ?, answer = ?, answered_by = ?, answered_at = ?
        WHERE id = ? AND status = ?
        """,
        (
            ClarificationStatus.ANSWERED,
            answer,
            answered_by,
            to_text(now),
            clarification_id,
            ClarificationStatus.OPEN,
        ),
    )
    return result.rowcount == 1


async def listed(
    db: Database, *, status: str | None = None, limit: int = 200
) -> list[Clarification]:
    """The newest questions, all or those with `status` (a ClarificationStatus's text)."""
    if status is None:
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM clarifications ORDER BY id DESC LIMIT ?", (limit,)
        )
    else:
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM clarifications WHERE status = ? ORDER BY id DESC LIMIT ?",
            (status, limit),
        )
    return [_clarification(row) for row in rows]


async def for_pipeline(db: Database, pipeline_id: int) -> list[Clarification]:
    """The questions a pipeline's steps asked, oldest first."""
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM clarifications WHERE step_id IN"
        " (SELECT id FROM pipeline_steps WHERE pipeline_id = ?) ORDER BY id",
        (pipeline_id,),
    )
    return [_clarification(row) for row in rows]
