"""The events table: the bus's log, read back by id for the WebSocket's resume."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from storage.database import Database


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    stream: str
    type: str
    ts: str
    data: dict[str, Any]

    def envelope(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "stream": self.stream,
            "ts": self.ts,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class RawEvent:
    """An event as stored, its data left as JSON text (for a fan-out that sends it on as is)."""

    id: int
    stream: str
    type: str
    ts: str
    data: str


# The channel a shared database (PostgreSQL) sends each committed event's id on
# (storage/migrations/postgresql/0014_event_notices.sql).
NOTICE_CHANNEL = "biagent_events"

INSERT_EVENT = "INSERT INTO events (stream, type, ts, data) VALUES (?, ?, ?, ?) RETURNING id"
# The same, unless an event was published before under the key (the fifth parameter); then
# KEEP_KEY records the new event's id under it, and does nothing when the key was there: its
# guard keeps it from reading last_insert_rowid() then (lastval() on PostgreSQL, which a
# connection that has inserted nothing yet cannot answer). Two instances publishing under one
# key are serialised by the event log's lock (storage/dialect.py), so the second sees the key.
INSERT_EVENT_ONCE = (
    "INSERT INTO events (stream, type, ts, data) SELECT ?, ?, ?, ?"
    " WHERE NOT EXISTS (SELECT 1 FROM event_keys WHERE key = ?) RETURNING id"
)
KEEP_KEY = (
    "INSERT INTO event_keys (key, event_id) SELECT ?, last_insert_rowid()"
    " WHERE NOT EXISTS (SELECT 1 FROM event_keys WHERE key = ?) ON CONFLICT (key) DO NOTHING"
)


def _event(row: Any) -> StoredEvent:
    return StoredEvent(row[0], row[1], row[2], row[3], json.loads(row[4]))


async def read_since(
    db: Database, since_id: int, *, streams: Iterable[str] | None = None, limit: int = 1000
) -> list[StoredEvent]:
    """Events after `since_id`, oldest first; all streams when `streams` is None."""
    return [_event(row) for row in await _rows_since(db, since_id, streams, limit)]


async def envelopes_since(
    db: Database, since_id: int, *, streams: Iterable[str] | None = None, limit: int = 1000
) -> list[tuple[int, str]]:
    """The same events as (id, envelope JSON text), their data left as stored: a replay
    sends them as the live fan-out sent them, without decoding and encoding each again."""
    return [
        (row[0], envelope_text(row[0], row[1], row[2], row[3], row[4]))
        for row in await _rows_since(db, since_id, streams, limit)
    ]


async def raw_since(db: Database, since_id: int, *, limit: int = 1000) -> list[RawEvent]:
    """Every stream's events after `since_id`, oldest first, their data as stored."""
    return [RawEvent(*row) for row in await _rows_since(db, since_id, None, limit)]


def envelope_text(event_id: int, stream: str, type_name: str, ts: str, data: str) -> str:
    """An event's envelope as JSON text, around its data's JSON text."""
    return (
        f'{{"id":{event_id},"type":{json.dumps(type_name)},'
        f'"stream":{json.dumps(stream)},"ts":"{ts}","data":{data}}}'
    )


async def _rows_since(
    db: Database, since_id: int, streams: Iterable[str] | None, limit: int
) -> list[Any]:
    chosen = None if streams is None else sorted(set(streams))
    if chosen is None:
        return await db.fetchall(
            "SELECT id, stream, type, ts, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (since_id, limit),
        )
    if not chosen:
        return []  # no stream: no event (and `IN ()` is SQLite's alone)
    marks = ", ".join("?" for _ in chosen)
    return await db.fetchall(
        f"SELECT id, stream, type, ts, data FROM events"
        f" WHERE id > ? AND stream IN ({marks}) ORDER BY id LIMIT ?",
        (since_id, *chosen, limit),
    )


async def read_types_between(
    db: Database, after_id: int, through_id: int, types: Iterable[str], *, limit: int = 1000
) -> list[StoredEvent]:
    """Events of the given types with ids in (after_id, through_id], oldest first."""
    chosen = sorted(set(types))
    if not chosen:
        return []
    marks = ", ".join("?" for _ in chosen)
    rows = await db.fetchall(
        f"SELECT id, stream, type, ts, data FROM events"
        f" WHERE id > ? AND id <= ? AND type IN ({marks}) ORDER BY id LIMIT ?",
        (after_id, through_id, *chosen, limit),
    )
    return [_event(row) for row in rows]


async def history_floor(db: Database) -> int:
    """Every event with an id above this one is still kept (0 until the first prune)."""
    value = await db.fetchval("SELECT value FROM meta WHERE key = 'events_floor'")
    return int(value or 0)


async def last_id(db: Database) -> int:
    """The newest event id assigned (the floor once everything older was pruned)."""
    newest = await db.fetchval("SELECT MAX(id) FROM events")
    return max(int(newest or 0), await history_floor(db))


async def prune_through(db: Database, floor_id: int) -> int:
    """Forget events with ids up to `floor_id`; resuming from below it then needs a reload."""
    results = await db.write_many(
        [
            ("DELETE FROM events WHERE id <= ?", (floor_id,)),
            ("DELETE FROM event_keys WHERE event_id <= ?", (floor_id,)),
            (
                "INSERT INTO meta (key, value) VALUES ('events_floor', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(floor_id),),
            ),
        ]
    )
    return results[0].rowcount
