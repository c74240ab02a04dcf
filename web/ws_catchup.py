"""What a resuming WebSocket client gets after the replay, before `live` (web/ws.py).

1. One `token_catchup` per followed stream with a kept token block (with `"*"`: per stream with
   a running one): the block's merged snapshot and the frames after it, with its state
   (running, completed, interrupted; bot/agents/tokens.py). The subscription was taken before
   the replay and a stream's frames are stored before they are published, so every frame is in
   the catch-up or in the live queue, maybe both: `Covered` drops the live token frames the
   catch-up already carried (seq at or below its `last_seq`), so there is no gap and no
   duplicate at the seam.
2. One `state` per followed stream that names a pipeline or a pull request (bot/followed.py):
   the object as it is now, so a resumed page is never stale.

Both are typed messages with `"id": null`, like token frames: not kept in the event log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.agents.tokens import block_catchups
from bot.events.bus import EventBus, Frame
from bot.followed import states_of

Send = Callable[[bytes], Awaitable[None]]


class Covered:
    """The seq through which each stream's tokens were sent in a catch-up."""

    def __init__(self, through: dict[str, int] | None = None) -> None:
        self.through = through or {}

    def already_sent(self, frame: Frame) -> bool:
        """A live token frame the catch-up carried (the client would drop it too)."""
        if frame.seq is None:
            return False
        return frame.seq <= self.through.get(frame.stream, 0)


async def send_catchup(send: Send, bus: EventBus, streams: frozenset[str] | None) -> Covered:
    """Send the token catch-up and the followed objects' states; returns what was covered."""
    blocks = await block_catchups(bus.db, bus.clock, streams)
    for block in blocks:
        await send(bus.transient_frame(block.stream, block).utf8)
    if streams:
        as_of = bus.last_id  # read before the rows: the state holds at least this much
        for stream, state in await states_of(bus.db, streams, as_of=as_of, now=bus.clock.now()):
            await send(bus.transient_frame(stream, state).utf8)
    return Covered({block.stream: block.last_seq for block in blocks})
