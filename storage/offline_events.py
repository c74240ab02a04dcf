"""offline_events: what happened to a session's streams while none of its pages was connected.

The recorder (bot/sessions/recorder.py) follows the event log from a cursor kept in `meta`;
each batch's rows, the per-session cap and the cursor's new place commit together, so an event
is recorded once whatever crash comes between. Rows are read back in id order (the order the
events were published) until acknowledged or expired.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage import meta
from storage.database import Database
from storage.events import StoredEvent
from storage.timestamps import to_text

CURSOR_KEY = "offline_events_cursor"


@dataclass(frozen=True, slots=True)
class NewOfflineEvent:
    session_id: str
    event_id: int
    stream: str
    type: str
    ts: str
    data_json: str


@dataclass(frozen=True, slots=True)
class OfflineEventRow:
    id: int
    session_id: str
    event: StoredEvent  # the event as it was published on the bus
    recorded_at: str


async def cursor(db: Database, *, start_at: int) -> int:
    """The id of the last event the recorder has gone through; `start_at` on a database
    where it has never run (events before it are not anyone's offline events)."""
    kept = await meta.get_value(db, CURSOR_KEY)
    if kept is None:
        kept = await meta.set_value_once(db, CURSOR_KEY, str(start_at))
    return int(kept)


_INSERT = """
    INSERT INTO offline_events
        (session_id, event_id, stream, type, ts, data, recorded_at, expires_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (session_id, event_id) DO NOTHING
"""
# Everything at or below the (cap + 1)-th newest row of the session goes.
_TRIM = """
    DELETE FROM offline_events
    WHERE session_id = ? AND id <= (
        SELECT id FROM offline_events WHERE session_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?
    )
"""
_MOVE_CURSOR = """
    INSERT INTO meta (key, value) VALUES (?, ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""


def _identity(item: NewOfflineEvent) -> tuple[str, int, str, str, str]:
    return (item.session_id, item.event_id, item.stream, item.type, item.ts)


async def record(
    db: Database,
    new_events: Sequence[NewOfflineEvent],
    *,
    through: int,
    cap: int,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Store `new_events`, keep each session's newest `cap`, and move the cursor to `through`,
    in one transaction."""
    recorded, expiry = to_text(now), to_text(expires_at)
    statements: list[tuple[str, Any]] = [
        (_INSERT, (*_identity(item), item.data_json, recorded, expiry)) for item in new_events
    ]
    for session_id in sorted({item.session_id for item in new_events}):
        statements.append((_TRIM, (session_id, session_id, cap)))
    statements.append((_MOVE_CURSOR, (CURSOR_KEY, str(through))))
    await db.write_many(statements)


_COLUMNS = "id, session_id, event_id, stream, type, ts, data, recorded_at"


def _row(row: Any) -> OfflineEventRow:
    published = StoredEvent(row[2], row[3], row[4], row[5], json.loads(row[6]))
    return OfflineEventRow(row[0], row[1], published, row[7])


async def unread(
    db: Database, session_id: str, *, now: datetime, limit: int
) -> list[OfflineEventRow]:
    """The session's unacknowledged, unexpired offline events, oldest first."""
    rows = await db.fetchall(
        f"""
        SELECT {_COLUMNS} FROM offline_events
        WHERE session_id = ? AND expires_at > ?
        ORDER BY id LIMIT ?
        """,
        (session_id, to_text(now), limit),
    )
    return [_row(row) for row in rows]


async def count_unread(db: Database, session_id: str, *, now: datetime) -> int:
    value = await db.fetchval(
        "SELECT COUNT(*) FROM offline_events WHERE session_id = ? AND expires_at > ?",
        (session_id, to_text(now)),
    )
    return int(value or 0)


async def acknowledge_up_to(db: Database, session_id: str, up_to: int) -> int:
    result = await db.write(
        "DELETE FROM offline_events WHERE session_id = ? AND id <= ?", (session_id, up_to)
    )
    return result.rowcount


async def acknowledge_ids(db: Database, session_id: str, ids: Iterable[int]) -> int:
    chosen = sorted(set(ids))
    if not chosen:
        return 0
    marks = ", ".join("?" for _ in chosen)
    result = await db.write(
        f"DELETE FROM offline_events WHERE session_id = ? AND id IN ({marks})",
        (session_id, *chosen),
    )
    return result.rowcount


async def prune_expired(db: Database, *, now: datetime) -> int:
    result = await db.write("DELETE FROM offline_events WHERE expires_at <= ?", (to_text(now),))
    return result.rowcount
