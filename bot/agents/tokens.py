"""Token coalescing: streamed text becomes `token` frames, kept in the token buffer for catch-up.

The model streams text a few characters at a time. A `TokenCoalescer` gathers them and emits one
frame per interval (or once enough text is waiting, or at the end of a block): the frame gets
the stream's next `seq`, is stored in token_buffer with an expiry, then published with
`bus.publish_transient(stream, Token(seq=n, text=..., block=first))`. Storing first means any
`seq` a client has seen can be caught up from.

The frames of one content block (a text block of a turn) also build that block's snapshot
(`BlockSnapshots`, storage/token_blocks.py): every SNAPSHOT_EVERY_S of the coalescer's clock,
and at the block's end, the frames since the last merge are merged into it, in the commit of
the frame that made the merge due. A resuming WebSocket client is sent the snapshot and the
frames after it (`block_catchups`), so its catch-up costs the same however long the stream ran.
`token_catchup` is the older catch-up by frames, `GET /api/streams/{stream}/tokens?after=N`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from bot.agents.events import SnapshotText, TailText, Token, TokenBlockCatchup
from bot.clock import Clock
from bot.config import DEFAULT_SETTINGS
from bot.events.bus import EventBus
from storage import token_blocks, token_buffer
from storage.database import Database
from storage.token_blocks import BlockState, Statement, StoredBlock

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.1
DEFAULT_MAX_CHARS = 2000
DEFAULT_TTL_S = DEFAULT_SETTINGS.token_buffer_ttl
# How often a running block's new frames are merged into its snapshot: a resuming client gets
# at most this much of the block as separate frames (the tail), whatever the block's length.
SNAPSHOT_EVERY_S = 0.5


class TokenSequence:
    """Per-stream frame numbers, one counter per stream for the whole process, so that two
    steps streaming to one stream never hand out the same number. Starts after the highest
    seq the stream reached, so numbers keep growing across restarts and after frames expire."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._last: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def next(self, stream: str) -> int:
        async with self.numbered(stream) as seq:
            return seq

    @contextlib.asynccontextmanager
    async def numbered(self, stream: str) -> AsyncIterator[int]:
        """The stream's next seq, held until the block ends: the frame is stored and published
        before the next one is numbered, so the stored frames of a stream are always a prefix
        of its numbers and are published in order (what a catch-up's seam relies on)."""
        lock = self._locks.setdefault(stream, asyncio.Lock())
        async with lock:
            if stream not in self._last:
                self._last[stream] = max(
                    await token_buffer.last_seq(self.db, stream),
                    await token_blocks.last_seq(self.db, stream),
                )
            self._last[stream] += 1
            yield self._last[stream]


@dataclass
class _OpenBlock:
    first_seq: int
    merged_at: float  # the clock's monotonic time of the block's start or last merge
    last_seq: int = 0
    unmerged: list[str] = field(default_factory=list)


class BlockSnapshots:
    """One stream's open content block: which statements each frame commits with (the block
    started, the frame joined its tail, or the tail merged into the snapshot)."""

    def __init__(self, clock: Clock, stream: str, *, every_s: float, ttl_s: float) -> None:
        self.clock = clock
        self.stream = stream
        self.every_s = every_s
        self.ttl_s = ttl_s
        self._open: _OpenBlock | None = None

    @property
    def first_seq(self) -> int | None:
        return None if self._open is None else self._open.first_seq

    def took(self, seq: int, text: str) -> list[Statement]:
        """Frame `seq` (its `text`) is being stored: the block statements to commit with it."""
        now, moment = self.clock.now(), self.clock.monotonic()
        expires_at = now + timedelta(seconds=self.ttl_s)
        statements = []
        block = self._open
        if block is None:
            block = self._open = _OpenBlock(seq, moment)
            statements.append(token_blocks.start(self.stream, seq, now=now, expires_at=expires_at))
        block.last_seq = seq
        block.unmerged.append(text)
        if moment - block.merged_at >= self.every_s:
            statements.append(self._merge(BlockState.RUNNING))
        elif seq != block.first_seq:
            statements.append(token_blocks.advance(self.stream, block.first_seq, seq))
        return statements

    def end(self, state: BlockState) -> list[Statement]:
        """The block ended (completed) or broke (interrupted): its final merge (nothing when
        no block is open)."""
        if self._open is None:
            return []
        statement = self._merge(state)
        self._open = None
        return [statement]

    def _merge(self, state: BlockState) -> Statement:
        block = self._open
        assert block is not None
        now = self.clock.now()
        statement = token_blocks.merge(
            self.stream,
            block.first_seq,
            "".join(block.unmerged),
            through_seq=block.last_seq,
            state=state,
            now=now,
            expires_at=now + timedelta(seconds=self.ttl_s),
        )
        block.unmerged, block.merged_at = [], self.clock.monotonic()
        return statement


class TokenCoalescer:
    def __init__(
        self,
        sequence: TokenSequence,
        bus: EventBus,
        clock: Clock,
        stream: str,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_chars: int = DEFAULT_MAX_CHARS,
        ttl_s: float = DEFAULT_TTL_S,
        snapshot_every_s: float = SNAPSHOT_EVERY_S,
    ) -> None:
        self.sequence = sequence
        self.db = sequence.db
        self.bus = bus
        self.clock = clock
        self.stream = stream
        self.interval_s = interval_s
        self.max_chars = max_chars
        self.ttl_s = ttl_s
        self.blocks = BlockSnapshots(clock, stream, every_s=snapshot_every_s, ttl_s=ttl_s)
        self._pending: list[str] = []
        self._pending_chars = 0
        self._first_pending_at: float | None = None

    async def add(self, text: str) -> None:
        """Take a piece of streamed text; emits a frame when the interval or size is reached."""
        if not text:
            return
        if self._first_pending_at is None:
            self._first_pending_at = self.clock.monotonic()
        self._pending.append(text)
        self._pending_chars += len(text)
        waited = self.clock.monotonic() - self._first_pending_at
        if waited >= self.interval_s or self._pending_chars >= self.max_chars:
            await self.flush()

    async def flush(self) -> int | None:
        """Emit what is waiting as one frame; returns its seq (None when nothing waited)."""
        return await self._emit(None)

    async def end_block(self, state: BlockState = BlockState.COMPLETED) -> None:
        """The content block ended (completed) or broke upstream (interrupted): what waits is
        sent, and the block's tail merged with its state. Nothing happens when none is open."""
        if self._pending:
            await self._emit(state)
            return
        statements = self.blocks.end(state)
        if statements:
            await self.db.write_many(statements)

    async def _emit(self, ending: BlockState | None) -> int | None:
        if not self._pending:
            return None
        text = "".join(self._pending)
        self._pending, self._pending_chars, self._first_pending_at = [], 0, None
        async with self.sequence.numbered(self.stream) as seq:
            now = self.clock.now()
            expires_at = now + timedelta(seconds=self.ttl_s)
            frame = token_buffer.append_statement(
                self.stream, seq, text, now=now, expires_at=expires_at
            )
            statements = [frame, *self.blocks.took(seq, text)]
            block = self.blocks.first_seq
            if ending is not None:
                statements.extend(self.blocks.end(ending))
            self.bus.token_seqs.seen(self.stream, seq)  # before its notice: not relayed back
            await self.db.write_many(statements)
            self.bus.publish_transient(self.stream, Token(seq=seq, text=text, block=block), seq=seq)
        return seq


async def mark_cut_streams(db: Database, clock: Clock) -> int:
    """At start-up, before any step streams: the blocks a stopped process left running broke
    upstream, so they are marked interrupted (never shown as running or completed)."""
    cut = await token_blocks.mark_abandoned(db, now=clock.now())
    if cut:
        log.warning("%d token stream(s) were cut off by a stop: shown as interrupted", cut)
    return cut


async def block_catchups(
    db: Database, clock: Clock, streams: Iterable[str] | None
) -> list[TokenBlockCatchup]:
    """What a resuming client is sent per stream: the latest unexpired block of each of
    `streams` whatever its state (with None: every running block), snapshot and tail."""
    found = await token_blocks.catchups(db, streams, now=clock.now())
    return [catchup_of(block) for block in found]


def catchup_of(block: StoredBlock) -> TokenBlockCatchup:
    return TokenBlockCatchup(
        stream=block.stream,
        block=block.first_seq,
        state=block.state,
        snapshot=SnapshotText(through_seq=block.snapshot_seq, text=block.snapshot),
        tail=[TailText(seq=frame.seq, text=frame.text) for frame in block.tail],
        last_seq=block.last_seq,
    )


@dataclass(frozen=True, slots=True)
class TokenCatchup:
    """The `token_catchup` of the HTTP route: text of frames from_seq..last_seq (0, 0 when
    none), and the stream's latest block (its first seq, state and last seq) when one is kept."""

    stream: str
    from_seq: int
    last_seq: int
    text: str
    frames: int
    block: StoredBlock | None = None

    def data(self) -> dict[str, object]:
        return {
            "stream": self.stream,
            "from_seq": self.from_seq,
            "last_seq": self.last_seq,
            "text": self.text,
        }

    def block_json(self) -> dict[str, object] | None:
        if self.block is None:
            return None
        block = self.block
        return {"first_seq": block.first_seq, "state": block.state, "last_seq": block.last_seq}


async def token_catchup(db: Database, clock: Clock, stream: str, after_seq: int) -> TokenCatchup:
    """What a client that last saw `after_seq` missed. from_seq > after_seq + 1 means the
    frames in between expired: the client shows the text as incomplete."""
    frames = await token_buffer.after(db, stream, after_seq, now=clock.now())
    block = await token_blocks.latest(db, stream, now=clock.now())
    if not frames:
        return TokenCatchup(stream, 0, after_seq, "", 0, block)
    return TokenCatchup(
        stream,
        frames[0].seq,
        frames[-1].seq,
        "".join(frame.text for frame in frames),
        len(frames),
        block,
    )
