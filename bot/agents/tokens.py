"""Token coalescing: streamed text becomes `token` frames, kept in the token buffer for catch-up.

The model streams text a few characters at a time. A `TokenCoalescer` gathers them and emits one
frame per interval (or once enough text is waiting, or at the end of a block): the frame gets
the stream's next `seq`, is stored in token_buffer with an expiry, then published with
`bus.publish_transient(stream, Token(seq=n, text=...))`. Storing first means any
`seq` a client has seen can be caught up from. `token_catchup` is what a reconnecting client
gets: the text of every kept frame after its last seq (GET /api/streams/{stream}/tokens?after=N).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from bot.agents.events import Token
from bot.clock import Clock
from bot.config import DEFAULT_SETTINGS
from bot.events.bus import EventBus
from storage import token_buffer
from storage.database import Database

DEFAULT_INTERVAL_S = 0.1
DEFAULT_MAX_CHARS = 2000
DEFAULT_TTL_S = DEFAULT_SETTINGS.token_buffer_ttl


class TokenSequence:
    """Per-stream frame numbers, one counter per stream for the whole process, so that two
    steps streaming to one stream never hand out the same number. Starts after the highest
    seq kept, so numbers keep growing across restarts."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._last: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def next(self, stream: str) -> int:
        async with self._lock:
            if stream not in self._last:
                self._last[stream] = await token_buffer.last_seq(self.db, stream)
            self._last[stream] += 1
            return self._last[stream]


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
    ) -> None:
        self.sequence = sequence
        self.db = sequence.db
        self.bus = bus
        self.clock = clock
        self.stream = stream
        self.interval_s = interval_s
        self.max_chars = max_chars
        self.ttl_s = ttl_s
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
        if not self._pending:
            return None
        text = "".join(self._pending)
        self._pending, self._pending_chars, self._first_pending_at = [], 0, None
        seq = await self.sequence.next(self.stream)
        now = self.clock.now()
        await token_buffer.append(
            self.db, self.stream, seq, text, now=now, expires_at=now + timedelta(seconds=self.ttl_s)
        )
        self.bus.publish_transient(self.stream, Token(seq=seq, text=text))
        return seq


@dataclass(frozen=True, slots=True)
class TokenCatchup:
    """The `token_catchup` message: text of frames from_seq..last_seq (0, 0 when none)."""

    stream: str
    from_seq: int
    last_seq: int
    text: str
    frames: int

    def data(self) -> dict[str, object]:
        return {
            "stream": self.stream,
            "from_seq": self.from_seq,
            "last_seq": self.last_seq,
            "text": self.text,
        }


async def token_catchup(db: Database, clock: Clock, stream: str, after_seq: int) -> TokenCatchup:
    """What a client that last saw `after_seq` missed. from_seq > after_seq + 1 means the
    frames in between expired: the client shows the text as incomplete."""
    frames = await token_buffer.after(db, stream, after_seq, now=clock.now())
    if not frames:
        return TokenCatchup(stream, 0, after_seq, "", 0)
    return TokenCatchup(
        stream, frames[0].seq, frames[-1].seq, "".join(frame.text for frame in frames), len(frames)
    )
