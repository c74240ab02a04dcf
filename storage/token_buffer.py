"""token_buffer: coalesced token frames per stream, kept until they expire (docs/design.md, Events).

Token frames are not stored in `events` (they are many); a reconnecting client asks for the
frames after the last `seq` it saw, and gets them while they are still kept. Over the
WebSocket it gets the merged snapshot of the stream's latest block instead
(storage/token_blocks.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.database import Database, Params
from storage.timestamps import to_text


@dataclass(frozen=True, slots=True)
class TokenFrame:
    stream: str
    seq: int
    text: str
    created_at: str


async def last_seq(db: Database, stream: str) -> int:
    value = await db.fetchval("SELECT MAX(seq) FROM token_buffer WHERE stream = ?", (stream,))
    return int(value or 0)


def append_statement(
    stream: str, seq: int, text: str, *, now: datetime, expires_at: datetime
) -> tuple[str, Params]:
    """The frame's INSERT, for a caller that commits it together with other statements."""
    return (
        "INSERT INTO token_buffer (stream, seq, text, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (stream, seq, text, to_text(now), to_text(expires_at)),
    )


async def append(
    db: Database, stream: str, seq: int, text: str, *, now: datetime, expires_at: datetime
) -> None:
    await db.write(*append_statement(stream, seq, text, now=now, expires_at=expires_at))


async def after(
    db: Database, stream: str, after_seq: int, *, now: datetime, limit: int = 10_000
) -> list[TokenFrame]:
    """Unexpired frames of `stream` with seq above `after_seq`, in order."""
    rows = await db.fetchall(
        """
        SELECT stream, seq, text, created_at FROM token_buffer
        WHERE stream = ? AND seq > ? AND expires_at > ?
        ORDER BY seq LIMIT ?
        """,
        (stream, after_seq, to_text(now), limit),
    )
    return [TokenFrame(*row) for row in rows]


async def prune_expired(db: Database, *, now: datetime) -> int:
    result = await db.write("DELETE FROM token_buffer WHERE expires_at <= ?", (to_text(now),))
    return result.rowcount
