"""token_blocks: the latest content block of each token stream, merged into a snapshot.

A reconnecting client is sent, per stream, the block's snapshot (the text of its frames
first_seq..snapshot_seq, merged every few hundred milliseconds by the coalescer,
bot/agents/tokens.py) and its tail (the token_buffer frames after snapshot_seq), read together
in one statement so the two always fit. The statements that change a block are returned as
(sql, params) so the coalescer commits them with the frame they go with.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database, Params
from storage.timestamps import to_text

Statement = tuple[str, Params]
IN_CHUNK = 500  # streams per query: far below SQLite's bound-parameter limit


class BlockState(enum.StrEnum):
    """How a block's stream stands. `interrupted`: it broke upstream (the stream, the API, a
    cancel, a stopped process) and is never shown as completed."""

    RUNNING = "running"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class TailFrame:
    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """A block as a reconnecting client gets it: snapshot then tail, through `last_seq`."""

    stream: str
    first_seq: int
    state: BlockState
    snapshot_seq: int
    snapshot: str
    tail: tuple[TailFrame, ...]

    @property
    def last_seq(self) -> int:
        return self.tail[-1].seq if self.tail else self.snapshot_seq

    @property
    def text(self) -> str:
        return self.snapshot + "".join(frame.text for frame in self.tail)


def start(stream: str, seq: int, *, now: datetime, expires_at: datetime) -> Statement:
    """A new block from frame `seq` on: it replaces the stream's previous block."""
    return (
        """
        INSERT INTO token_blocks (stream, first_seq, last_seq, snapshot_seq, snapshot, state,
                                  started_at, updated_at, expires_at)
        VALUES (?, ?, ?, ?, '', ?, ?, ?, ?)
        ON CONFLICT (stream) DO UPDATE SET
            first_seq = excluded.first_seq, last_seq = excluded.last_seq,
            snapshot_seq = excluded.snapshot_seq, snapshot = '', state = excluded.state,
            started_at = excluded.started_at, updated_at = excluded.updated_at,
            expires_at = excluded.expires_at
        """,
        (stream, seq, seq, seq - 1, BlockState.RUNNING, to_text(now), to_text(now),
         to_text(expires_at)),
    )  # fmt: skip


def advance(stream: str, first_seq: int, seq: int) -> Statement:
    """Frame `seq` of the block joined its tail."""
    return (
        "UPDATE token_blocks SET last_seq = ? WHERE stream = ? AND first_seq = ?",
        (seq, stream, first_seq),
    )


def merge(
    stream: str,
    first_seq: int,
    text: str,
    *,
    through_seq: int,
    state: BlockState,
    now: datetime,
    expires_at: datetime,
) -> Statement:
    """The tail through `through_seq` (its text, `text`) merged into the snapshot; the block
    stays running or ends with `state`, and lives `expires_at` more."""
    return (
        """
        UPDATE token_blocks
        SET snapshot = snapshot || ?, snapshot_seq = ?, last_seq = ?, state = ?, updated_at = ?,
            expires_at = ?
        WHERE stream = ? AND first_seq = ?
        """,
        (text, through_seq, through_seq, state, to_text(now), to_text(expires_at), stream,
         first_seq),
    )  # fmt: skip


_CATCHUP = """
    SELECT b.stream, b.first_seq, b.state, b.snapshot_seq, b.snapshot, f.seq, f.text
    FROM token_blocks b LEFT JOIN token_buffer f ON f.stream = b.stream AND f.seq > b.snapshot_seq
    WHERE b.expires_at > ? AND {which}
    ORDER BY b.stream, f.seq
"""


async def catchups(
    db: Database, streams: Iterable[str] | None, *, now: datetime, running_limit: int = 100
) -> list[StoredBlock]:
    """The unexpired latest block of each of `streams`, whatever its state; with None, the
    running blocks of every stream (the `running_limit` most recently updated)."""
    if streams is None:
        which = "b.stream IN (SELECT stream FROM token_blocks WHERE state = ? AND expires_at > ?"
        which += " ORDER BY updated_at DESC LIMIT ?)"
        params: tuple[object, ...] = (BlockState.RUNNING, to_text(now), running_limit)
        return _blocks(await db.fetchall(_CATCHUP.format(which=which), (to_text(now), *params)))
    wanted = sorted(set(streams))
    found: list[StoredBlock] = []
    for start_at in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start_at : start_at + IN_CHUNK]
        which = f"b.stream IN ({', '.join('?' * len(chunk))})"
        rows = await db.fetchall(_CATCHUP.format(which=which), (to_text(now), *chunk))
        found.extend(_blocks(rows))
    return found


def _blocks(rows: Iterable[Sequence[Any]]) -> list[StoredBlock]:
    """Rows of _CATCHUP (a block's columns, then one of its tail frames or NULLs) as blocks."""
    blocks: list[StoredBlock] = []
    tail: list[TailFrame] = []
    current: Sequence[Any] | None = None
    for row in rows:
        if current is None or row[0] != current[0]:
            if current is not None:
                blocks.append(_block(current, tail))
            current, tail = row, []
        if row[5] is not None:
            tail.append(TailFrame(int(row[5]), str(row[6])))
    if current is not None:
        blocks.append(_block(current, tail))
    return blocks


def _block(row: Sequence[Any], tail: list[TailFrame]) -> StoredBlock:
    stream, first_seq, state, snapshot_seq, snapshot = row[:5]
    return StoredBlock(
        stream, int(first_seq), BlockState(state), int(snapshot_seq), snapshot, tuple(tail)
    )


async def latest(db: Database, stream: str, *, now: datetime) -> StoredBlock | None:
    found = await catchups(db, [stream], now=now)
    return found[0] if found else None


async def last_seq(db: Database, stream: str) -> int:
    """The highest seq the stream's blocks reached (0 when it never had one)."""
    value = await db.fetchval("SELECT last_seq FROM token_blocks WHERE stream = ?", (stream,))
    return int(value or 0)


_CUT = """
    UPDATE token_blocks
    SET snapshot = snapshot || ?, snapshot_seq = ?, last_seq = ?, state = ?, updated_at = ?
    WHERE stream = ? AND first_seq = ?
"""


async def mark_abandoned(db: Database, *, now: datetime) -> int:
    """At start-up: blocks a stopped process left running broke upstream, so they become
    interrupted, their tail merged into the snapshot (its frames are still in token_buffer)."""
    running = await db.fetchall(
        "SELECT stream, first_seq, last_seq FROM token_blocks WHERE state = ?",
        (BlockState.RUNNING,),
    )
    if not running:
        return 0
    unexpired = {
        block.stream: block for block in await catchups(db, [row[0] for row in running], now=now)
    }
    statements = []
    for stream, first_seq, last_seq in running:
        block = unexpired.get(stream)
        tail_text = "" if block is None else "".join(frame.text for frame in block.tail)
        through = last_seq if block is None else max(last_seq, block.last_seq)
        params = (tail_text, through, through, BlockState.INTERRUPTED, to_text(now))
        statements.append((_CUT, (*params, stream, first_seq)))
    await db.write_many(statements)
    return len(statements)


async def prune_expired(db: Database, *, now: datetime) -> int:
    """Expired blocks lose their text; the row stays as the stream's numbering mark."""
    result = await db.write(
        "UPDATE token_blocks SET snapshot = '', snapshot_seq = last_seq"
        " WHERE expires_at <= ? AND (snapshot <> '' OR snapshot_seq <> last_seq)",
        (to_text(now),),
    )
    return result.rowcount
