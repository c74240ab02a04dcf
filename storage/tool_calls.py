"""tool_calls and file_changes: what an agent did in its worktree, call by call.

A call is inserted `started` before it runs and updated `completed` with its result; a step that
resumes after a crash reuses the completed result of a call the model already asked for instead
of running it twice (the id of the call is the model's tool_use id).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database
from storage.timestamps import to_text


class ToolCallStatus(enum.StrEnum):
    """A call is `started` before it runs and `completed` (with its result) after."""

    STARTED = "started"
    COMPLETED = "completed"


class ChangeType(enum.StrEnum):
    """What a tool call did to a path of the worktree."""

    CREATED = "created"
    MODIFIED = "modified"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: int
    run_id: int
    session_id: int
    tool_use_id: str
    tool: str
    arguments: Any
    status: ToolCallStatus
    result: str | None
    is_error: bool
    error: str | None
    duration_ms: float | None
    started_at: str
    completed_at: str | None


@dataclass(frozen=True, slots=True)
class FileChange:
    id: int
    run_id: int
    tool_call_id: int | None
    path: str
    change_type: ChangeType
    diff: str
    created_at: str


_CALL_COLUMNS = (
    "id, run_id, session_id, tool_use_id, tool, arguments, status, result, is_error, error,"
    " duration_ms, started_at, completed_at"
)


def _call(row: Any) -> ToolCall:
    values = list(row)
    values[5] = json.loads(values[5])
    values[6] = ToolCallStatus(values[6])
    values[8] = bool(values[8])
    return ToolCall(*values)


async def start(
    db: Database,
    *,
    run_id: int,
    session_id: int,
    tool_use_id: str,
    tool: str,
    arguments: Any,
    now: datetime,
) -> int:
    """Record a call about to run; returns its id (the existing id if the model's id repeats)."""
    result = await db.write(
        """
        INSERT INTO tool_calls (run_id, session_id, tool_use_id, tool, arguments, started_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (session_id, tool_use_id) DO UPDATE
            SET run_id = excluded.run_id, started_at = excluded.started_at
        RETURNING id
        """,
        (run_id, session_id, tool_use_id, tool, json.dumps(arguments), to_text(now)),
    )
    return int(result.rows[0][0])


async def complete(
    db: Database,
    call_id: int,
    *,
    result: str,
    is_error: bool,
    error: str | None,
    duration_ms: float,
    now: datetime,
) -> None:
    await db.write(
        """
        UPDATE tool_calls
        SET status = ?, result = ?, is_error = ?, error = ?, duration_ms = ?, completed_at = ?
        WHERE id = ?
        """,
        (
            ToolCallStatus.COMPLETED,
            result,
            int(is_error),
            error,
            duration_ms,
            to_text(now),
            call_id,
        ),
    )


async def find(db: Database, session_id: int, tool_use_id: str) -> ToolCall | None:
    row = await db.fetchone(
        f"SELECT {_CALL_COLUMNS} FROM tool_calls WHERE session_id = ? AND tool_use_id = ?",
        (session_id, tool_use_id),
    )
    return None if row is None else _call(row)


async def for_run(db: Database, run_id: int) -> list[ToolCall]:
    rows = await db.fetchall(
        f"SELECT {_CALL_COLUMNS} FROM tool_calls WHERE run_id = ? ORDER BY id", (run_id,)
    )
    return [_call(row) for row in rows]


async def for_session(db: Database, session_id: int) -> list[ToolCall]:
    rows = await db.fetchall(
        f"SELECT {_CALL_COLUMNS} FROM tool_calls WHERE session_id = ? ORDER BY id",
        (session_id,),
    )
    return [_call(row) for row in rows]


async def record_file_change(
    db: Database,
    *,
    run_id: int,
    tool_call_id: int | None,
    path: str,
    change_type: ChangeType,
    diff: str,
    now: datetime,
) -> int:
    result = await db.write(
        """
        INSERT INTO file_changes (run_id, tool_call_id, path, change_type, diff, created_at)
        VALUES (?, ?, ?, ?, ?, ?)
        RETURNING id
        """,
        (run_id, tool_call_id, path, change_type, diff, to_text(now)),
    )
    return int(result.rows[0][0])


async def file_changes(db: Database, run_id: int) -> list[FileChange]:
    rows = await db.fetchall(
        "SELECT id, run_id, tool_call_id, path, change_type, diff, created_at"
        " FROM file_changes WHERE run_id = ? ORDER BY id",
        (run_id,),
    )
    return [
        FileChange(row[0], row[1], row[2], row[3], ChangeType(row[4]), row[5], row[6])
        for row in rows
    ]
