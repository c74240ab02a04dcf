"""sessions and session_tabs: a browser session, its open tabs and its UI state (docs/sessions.md).

Every read and write names the session's owner (derived from the API token's digest), so a
session made with another token is not there for this one. bot/sessions/ decides what the rows
mean; here they are plain text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database
from storage.timestamps import to_text


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: str
    ui_state: dict[str, Any]
    created_at: str
    updated_at: str
    last_seen_at: str


@dataclass(frozen=True, slots=True)
class TabRow:
    kind: str
    ref: str


@dataclass(frozen=True, slots=True)
class FollowedTab:
    """One tab of one session, for deciding who an event matters to."""

    session_id: str
    kind: str
    ref: str


_COLUMNS = "id, ui_state, created_at, updated_at, last_seen_at"


def _session(row: Any) -> SessionRow:
    return SessionRow(row[0], json.loads(row[1]), row[2], row[3], row[4])


async def create(db: Database, session_id: str, owner: str, *, now: datetime) -> SessionRow:
    at = to_text(now)
    result = await db.write(
        f"""
        INSERT INTO sessions (id, owner, created_at, updated_at, last_seen_at)
        VALUES (?, ?, ?, ?, ?)
        RETURNING {_COLUMNS}
        """,
        (session_id, owner, at, at, at),
    )
    return _session(result.rows[0])


async def get(db: Database, session_id: str, owner: str) -> SessionRow | None:
    row = await db.fetchone(
        f"SELECT {_COLUMNS} FROM sessions WHERE id = ? AND owner = ?", (session_id, owner)
    )
    return None if row is None else _session(row)


async def touch(db: Database, session_id: str, owner: str, *, now: datetime) -> bool:
    """Mark the session seen now; False when it is not this owner's."""
    result = await db.write(
        "UPDATE sessions SET last_seen_at = ? WHERE id = ? AND owner = ?",
        (to_text(now), session_id, owner),
    )
    return result.rowcount == 1


async def tabs(db: Database, session_id: str) -> list[TabRow]:
    rows = await db.fetchall(
        "SELECT kind, ref FROM session_tabs WHERE session_id = ? ORDER BY position",
        (session_id,),
    )
    return [TabRow(row[0], row[1]) for row in rows]


_OWNED = "EXISTS (SELECT 1 FROM sessions WHERE id = ? AND owner = ?)"


async def replace_tabs(
    db: Database, session_id: str, owner: str, new_tabs: Sequence[TabRow], *, now: datetime
) -> bool:
    """Replace the session's tabs with `new_tabs`, in that order, atomically; False when the
    session is not this owner's (nothing changes then)."""
    owned = (session_id, owner)
    statements: list[tuple[str, Any]] = [
        ("UPDATE sessions SET updated_at = ? WHERE id = ? AND owner = ?", (to_text(now), *owned)),
        (f"DELETE FROM session_tabs WHERE session_id = ? AND {_OWNED}", (session_id, *owned)),
    ]
    statements.extend(
        (
            "INSERT INTO session_tabs (session_id, position, kind, ref)"
            f" SELECT ?, ?, ?, ? WHERE {_OWNED}",
            (session_id, position, tab.kind, tab.ref, *owned),
        )
        for position, tab in enumerate(new_tabs)
    )
    results = await db.write_many(statements)
    return results[0].rowcount == 1


async def set_ui_state(
    db: Database, session_id: str, owner: str, ui_state_json: str, *, now: datetime
) -> bool:
    result = await db.write(
        "UPDATE sessions SET ui_state = ?, updated_at = ? WHERE id = ? AND owner = ?",
        (ui_state_json, to_text(now), session_id, owner),
    )
    return result.rowcount == 1


async def ui_state_text(db: Database, session_id: str, owner: str) -> str | None:
    """The session's UI state as stored (JSON text), for a compare-and-set; None if not owned."""
    value = await db.fetchval(
        "SELECT ui_state FROM sessions WHERE id = ? AND owner = ?", (session_id, owner)
    )
    return None if value is None else str(value)


async def replace_ui_state(
    db: Database,
    session_id: str,
    owner: str,
    *,
    expected_json: str,
    ui_state_json: str,
    now: datetime,
) -> bool:
    """Set the UI state only if it is still `expected_json` (compare-and-set: a writer on any
    instance that changed it in between makes this one read again); True when set."""
    result = await db.write(
        "UPDATE sessions SET ui_state = ?, updated_at = ?"
        " WHERE id = ? AND owner = ? AND ui_state = ?",
        (ui_state_json, to_text(now), session_id, owner, expected_json),
    )
    return result.rowcount == 1


async def followed_tabs(db: Database, owner: str) -> list[FollowedTab]:
    """Every tab of every session of `owner`."""
    rows = await db.fetchall(
        """
        SELECT t.session_id, t.kind, t.ref
        FROM session_tabs t JOIN sessions s ON s.id = t.session_id
        WHERE s.owner = ?
        ORDER BY t.session_id, t.position
        """,
        (owner,),
    )
    return [FollowedTab(row[0], row[1], row[2]) for row in rows]


async def prune(db: Database, owner: str, *, unseen_since: datetime) -> int:
    """Forget the sessions no one can reach any more: another token's (rotated away), and
    those not seen since `unseen_since` (their cookie has expired). Tabs and offline events
    go with them."""
    result = await db.write(
        "DELETE FROM sessions WHERE owner <> ? OR last_seen_at < ?",
        (owner, to_text(unseen_since)),
    )
    return result.rowcount
