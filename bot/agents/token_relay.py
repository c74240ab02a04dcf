"""Live `token` frames across instances (docs/database.md, Tokens across instances).

On PostgreSQL an agent's frames are stored in token_buffer by the instance that runs it, and a
trigger (migration 0016) sends `<stream> <seq>` on `biagent_tokens` when each commits. Every
instance LISTENs there; for a stream some other instance produces, it reads the frames after
the last seq it relayed (token_buffer, in seq order) and publishes them to its own subscribers
with `publish_transient`. The bus's `TokenSeqs` holds the last seq per stream, claimed by a
local coalescer before its commit, so an instance never relays its own frames and never
relays one twice. A stream nobody here subscribes to is not read: its seq is only noted (a
subscriber that comes later gets the catch-up first, web/ws_catchup.py). A block that stops
running sends `<stream> <last seq> ended` after its frames' notices: the stream is forgotten
then, unless a new block of it already started. A lost LISTEN connection is made again after
a pause, and reads then what committed meanwhile for the streams it knows.
"""

from __future__ import annotations

import asyncio
import logging

from bot.agents.events import Token
from bot.clock import Clock
from bot.events.bus import EventBus
from storage import token_buffer
from storage.database import Database, DatabaseError

log = logging.getLogger(__name__)

NOTICE_CHANNEL = "biagent_tokens"
RETRY_S = 1.0


class TokenRelay:
    """Relays other instances' token frames to this instance's subscribers, once each."""

    def __init__(self, db: Database, bus: EventBus, clock: Clock, *, retry_s: float = RETRY_S):
        self.db = db
        self.bus = bus
        self.clock = clock
        self.retry_s = retry_s
        self.listening = asyncio.Event()  # set while the LISTEN connection is up
        self.connections = 0
        self.relayed = 0  # frames published here for another instance
        self._blocks: dict[str, int] = {}  # stream -> first seq of its block, as last read

    async def run(self) -> None:
        """Listen and relay until cancelled."""
        while True:
            try:
                async with self.db.listen(NOTICE_CHANNEL) as notices:
                    self.connections += 1
                    self.listening.set()
                    if self.connections > 1:
                        await self._missed()
                    async for payload in notices:
                        await self._notice(payload)
            except (DatabaseError, OSError) as lost:
                log.warning("listening for tokens: %s; again in %gs", lost, self.retry_s)
            finally:
                self.listening.clear()
            await self.clock.sleep(self.retry_s)

    async def _notice(self, payload: str) -> None:
        stream, seq, ended = parse_notice(payload)
        if stream is None:
            return
        try:
            if ended:
                await self.ended(stream, seq)
            else:
                await self.relay(stream, seq)
        except DatabaseError:  # the seq did not move: the next notice reads these again
            log.exception("relaying the tokens of %s failed", stream)

    async def _missed(self) -> None:
        """On a new connection: the frames committed while none listened, of every stream
        known here that a subscriber follows."""
        seqs = self.bus.token_seqs
        for stream in seqs.streams():
            known = seqs.last(stream)
            if known is not None and self.bus.wants(stream):
                await self._notice(f"{stream} {known + 1}")

    async def relay(self, stream: str, seq: int) -> None:
        """Frame `seq` of `stream` was committed: publish here what this instance lacks."""
        seqs = self.bus.token_seqs
        known = seqs.last(stream)
        if known is not None and seq <= known:  # produced here, or relayed already
            return
        if not self.bus.wants(stream):
            seqs.seen(stream, seq)
            return
        frames = await token_buffer.after(
            self.db, stream, seq - 1 if known is None else known, now=self.clock.now()
        )
        first_seq = await self.db.fetchval(
            "SELECT first_seq FROM token_blocks WHERE stream = ?", (stream,)
        )
        self._publish(stream, frames, None if first_seq is None else int(first_seq))
        if len(self._blocks) > seqs.kept:  # streams the bus forgot (their producer stopped)
            self._blocks = {key: n for key, n in self._blocks.items() if seqs.last(key)}

    async def ended(self, stream: str, last_seq: int) -> None:
        """The block of `stream` through `last_seq` stopped running (its frames' notices came
        before this one): relay what is missing, then forget the stream unless a new block
        started meanwhile (a later seq already claimed or relayed)."""
        known = self.bus.token_seqs.last(stream)
        if known is None:
            return
        if known < last_seq:
            await self.relay(stream, last_seq)
        if self.bus.token_seqs.last(stream) == last_seq:
            self.bus.token_seqs.forget(stream)
            self._blocks.pop(stream, None)

    def _publish(
        self, stream: str, frames: list[token_buffer.TokenFrame], first_seq: int | None
    ) -> None:
        seqs = self.bus.token_seqs
        for frame in frames:
            known = seqs.last(stream)
            if known is not None and frame.seq <= known:  # published meanwhile
                continue
            if first_seq is not None and frame.seq >= first_seq:
                self._blocks[stream] = first_seq
            token = Token(seq=frame.seq, text=frame.text, block=self._blocks.get(stream))
            seqs.seen(stream, frame.seq)
            self.bus.publish_transient(stream, token, seq=frame.seq)
            self.relayed += 1


def parse_notice(payload: str) -> tuple[str | None, int, bool]:
    """`<stream> <seq>` or `<stream> <seq> ended`: the stream (None when malformed), the seq,
    and whether the block ended."""
    head, _, last = payload.rpartition(" ")
    ended = last == "ended"
    if ended:
        head, _, last = head.rpartition(" ")
    if not head or not last.isdigit():
        return None, 0, False
    return head, int(last), ended
