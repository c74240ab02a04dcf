"""claude_sessions: an agent step's conversation, appended message by message.

The PipelineSession (bot/agents/sessions.py) reads and appends through here. Messages are
stored one row each and never rewritten, which is what keeps the prompt-cache prefix stable and
lets a killed step continue from exactly what the model already saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.agent_runs import RunStatus
from storage.database import Database
from storage.timestamps import to_text


class SessionVanished(LookupError):
    """A session stored a moment ago is gone (deleted meanwhile)."""


@dataclass(frozen=True, slots=True)
class ClaudeSession:
    id: int
    session_key: str
    agent: str
    model: str
    pipeline_id: int | None
    step_id: int | None
    pr: str | None
    status: RunStatus
    final_text: str | None
    output: Any
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    role: str
    content: Any


_COLUMNS = (
    "id, session_key, agent, model, pipeline_id, step_id, pr, status, final_text, output,"
    " created_at, updated_at"
)


def _session(row: Any) -> ClaudeSession:
    values = list(row)
    values[7] = RunStatus(values[7])
    values[9] = None if values[9] is None else json.loads(values[9])
    return ClaudeSession(*values)


async def find(db: Database, session_key: str) -> ClaudeSession | None:
    row = await db.fetchone(
        f"SELECT {_COLUMNS} FROM claude_sessions WHERE session_key = ?", (session_key,)
    )
    return None if row is None else _session(row)


async def create(
    db: Database,
    *,
    session_key: str,
    agent: str,
    model: str,
    pipeline_id: int | None,
    step_id: int | None,
    pr: str | None,
    now: datetime,
) -> ClaudeSession:
    """Create the session (or keep the existing one with that key) and return it."""
    stamp = to_text(now)
    await db.write(
        """
        INSERT INTO claude_sessions
            (session_key, agent, model, pipeline_id, step_id, pr, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (session_key) DO NOTHING
        """,
        (session_key, agent, model, pipeline_id, step_id, pr, stamp, stamp),
    )
    found = await find(db, session_key)
    if found is None:
        raise SessionVanished(session_key)
    return found


async def messages(db: Database, session_id: int) -> list[StoredMessage]:
    rows = await db.fetchall(
        "SELECT seq, role, content FROM claude_session_messages WHERE session_id = ? ORDER BY seq",
        (session_id,),
    )
    return [StoredMessage(row[0], row[1], json.loads(row[2])) for row in rows]


async def append(
    db: Database, session_id: int, seq: int, role: str, content: Any, *, now: datetime
) -> None:
    """Append one message at position `seq` (fails if that position is taken)."""
    stamp = to_text(now)
    await db.write_many(
        [
            (
                "INSERT INTO claude_session_messages (session_id, seq, role, content, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (session_id, seq, role, json.dumps(content, separators=(",", ":")), stamp),
            ),
            ("UPDATE claude_sessions SET updated_at = ? WHERE id = ?", (stamp, session_id)),
        ]
    )


async def finish(
    db: Database,
    session_id: int,
    *,
    status: RunStatus,
    final_text: str | None,
    output: Any,
    now: datetime,
) -> None:
    await db.write(
        """
        UPDATE claude_sessions
        SET status = ?, final_text = COALESCE(?, final_text),
            output = COALESCE(?, output), updated_at = ?
        WHERE id = ?
        """,
        (
            status,
            final_text,
            None if output is None else json.dumps(output),
            to_text(now),
            session_id,
        ),
    )


async def completed_in_pipeline(db: Database, pipeline_id: int) -> list[ClaudeSession]:
    """The pipeline's finished steps, oldest first: the context later steps start from."""
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM claude_sessions WHERE pipeline_id = ? AND status = ? ORDER BY id",
        (pipeline_id, RunStatus.COMPLETED),
    )
    return [_session(row) for row in rows]
