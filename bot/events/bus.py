"""The event bus: publish(stream, event) -> the events table -> every matching subscriber.

An event is a typed Struct (`bot.events.message.Event`) declared next to the code that emits it;
its class names the envelope's `type` and its fields are the `data`.

An event is stored first and fanned out from the database's post-commit callback, so
subscribers see events strictly in id order and only once they are committed: a WebSocket that
replays from the table and then follows the live queue never sees a gap. `token` frames are the
exception (docs/design.md, Events): they are many and short-lived, so `publish_transient` fans them
out without an id and the token buffer (agents) keeps them instead.

On a database other instances share (PostgreSQL), the bus fans out only what it reads back
from the log (bot/events/follower.py): its own commits ring the reader like every other
instance's notices do, so local and remote events reach subscribers by one path, in id order,
each once.

Each subscriber has a bounded queue; one that falls behind is marked overflowed and told
through its callback, and its owner closes it (it can resume from its last id).

A stream named `session:<id>` is private: its transient frames (a browser session's offline
events, told live to its connected pages) reach only a subscription that lists it in `also`,
never one that follows every stream, nor one that merely asks for it by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from bot.clock import Clock, SystemClock
from bot.events.follower import LogFollower
from bot.events.message import Event, encode
from storage import events as event_store
from storage import meta
from storage.database import Database, Params, WriteResult, inserted_id
from storage.events import RawEvent
from storage.timestamps import to_text

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 2000
PRIVATE_PREFIX = "session:"
TOKEN_STREAMS_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class Frame:
    """One event as subscribers get it: its id (None for transient frames) and its JSON text,
    also UTF-8 encoded once for every WebSocket that sends it (`utf8`). A token frame carries
    its per-stream `seq` too, so a sender can drop what a catch-up already covered."""

    id: int | None
    stream: str
    type: str
    text: str
    seq: int | None = None
    utf8: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "utf8", self.text.encode("utf-8"))


@dataclass(eq=False)
class Subscription:
    streams: frozenset[str] | None
    maxsize: int
    on_overflow: Callable[[Subscription], None] | None = None
    also: frozenset[str] = frozenset()  # private streams this subscriber is let into
    frames: list[Frame] = field(default_factory=list)
    overflowed: bool = False
    _waiter: asyncio.Future[None] | None = None

    def matches(self, stream: str) -> bool:
        if stream.startswith(PRIVATE_PREFIX):
            return stream in self.also
        return self.streams is None or stream in self.streams

    def offer(self, frame: Frame) -> None:
        if self.overflowed:
            return
        if len(self.frames) >= self.maxsize:
            self.overflowed = True
            self.frames.clear()
            if self.on_overflow is not None:
                self.on_overflow(self)
        else:
            self.frames.append(frame)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_batch(self) -> list[Frame]:
        """Wait for frames and take all that are queued (empty once overflowed)."""
        while not self.frames and not self.overflowed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        taken, self.frames = self.frames, []
        return taken


class EventBus:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        follow_clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        # The follower's pauses (poll, reconnect) are the process's own housekeeping, not the
        # domain's time: a test that moves or watches `clock` does not see them.
        self.follow_clock = follow_clock or SystemClock()
        self.queue_size = queue_size
        self.epoch = ""
        self.last_id = 0
        self._subscriptions: set[Subscription] = set()
        self._stored_listeners: list[Callable[[Frame], None]] = []
        self.follower: LogFollower | None = None  # on a shared database: the one fan-out path
        self._following: asyncio.Task[None] | None = None
        self.token_seqs = TokenSeqs()

    async def start(self) -> None:
        """Load (or create, on a new database) the epoch and the newest event id; on a shared
        database, start following the log (every instance's events)."""
        self.epoch = await meta.set_value_once(self.db, "epoch", uuid.uuid4().hex)
        self.last_id = await event_store.last_id(self.db)
        if self.db.shared:
            self.follower = LogFollower(
                self.db, self.follow_clock, self._read_back, last_id=self.last_id
            )
            self._following = asyncio.create_task(self.follower.run(), name="events-follower")
            self._following.add_done_callback(_report_end)

    async def stop(self) -> None:
        """Stop following the log (nothing to stop on a database only this process writes)."""
        if self._following is not None:
            self._following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._following
            self._following = None

    async def newest_id(self) -> int:
        """The newest id in the log: `last_id` on a database only this process writes; on a
        shared one, another instance's event may be committed and not yet fanned out here (a
        client resuming from it on this instance is not ahead of the log)."""
        if self.follower is None:
            return self.last_id
        return max(self.last_id, await event_store.last_id(self.db))

    async def publish(
        self,
        stream: str,
        event: Event,
        *,
        together_with: Sequence[tuple[str, Params]] = (),
        once_key: str | None = None,
    ) -> int | None:
        """Store an event and fan it out once committed; returns its id.

        `together_with` statements commit atomically with the event, so a state change and the
        event that announces it are both there or both not, whatever crash comes between.
        With `once_key`, an event already published under that key is not published again
        (a handler run twice for one delivery): the statements commit, nothing is fanned out,
        and None is returned.
        """
        if once_key is not None:
            return await self._publish_once(stream, event, together_with, once_key)
        type_name, data_text = event.type_name, encode(event).decode("utf-8")
        ts = to_text(self.clock.now())

        def fan_out(result: WriteResult) -> None:
            if self.follower is not None:
                self.follower.ring()
            else:
                self._stored(inserted_id(result), stream, type_name, ts, data_text)

        results = await self.db.write_many(
            [*together_with, (event_store.INSERT_EVENT, (stream, type_name, ts, data_text))],
            after_commit=lambda results: fan_out(results[-1]),
        )
        return await self._fanned_out(inserted_id(results[-1]))

    async def _publish_once(
        self,
        stream: str,
        event: Event,
        together_with: Sequence[tuple[str, Params]],
        once_key: str,
    ) -> int | None:
        type_name, data_text = event.type_name, encode(event).decode("utf-8")
        ts = to_text(self.clock.now())

        def fan_out(results: list[WriteResult]) -> None:
            if self.follower is not None:
                self.follower.ring()
            elif results[-2].rows:  # not published under this key before
                self._stored(inserted_id(results[-2]), stream, type_name, ts, data_text)

        results = await self.db.write_many(
            [
                *together_with,
                (event_store.INSERT_EVENT_ONCE, (stream, type_name, ts, data_text, once_key)),
                (event_store.KEEP_KEY, (once_key, once_key)),
            ],
            after_commit=fan_out,
        )
        return await self._fanned_out(inserted_id(results[-2])) if results[-2].rows else None

    async def _fanned_out(self, event_id: int) -> int:
        """`event_id` once this instance's subscribers have it (as when it is fanned out
        straight from the commit): whoever publishes and then reads `last_id` finds it there."""
        following, follower = self._following, self.follower
        if following is not None and not following.done() and follower is not None:
            await follower.delivered(event_id)
        return event_id

    def _read_back(self, event: RawEvent) -> None:
        self._stored(event.id, event.stream, event.type, event.ts, event.data)

    def _stored(self, event_id: int, stream: str, type_name: str, ts: str, data: str) -> None:
        """Fan out an event just committed under `event_id`."""
        self.last_id = max(self.last_id, event_id)
        text = event_store.envelope_text(event_id, stream, type_name, ts, data)
        frame = Frame(event_id, stream, type_name, text)
        for listener in self._stored_listeners:
            listener(frame)
        self._offer(frame)

    def on_stored(self, listener: Callable[[Frame], None]) -> Callable[[], None]:
        """Call `listener` with each event once it is committed (transient frames never): a
        bell for an in-process follower of the log (the offline recorder), which reads the log
        itself. It must be quick and not raise. Unlike a subscription it has no queue to
        overflow and is not a client (`subscriber_count`). Returns what removes it."""
        self._stored_listeners.append(listener)
        return lambda: self._stored_listeners.remove(listener)

    def publish_transient(self, stream: str, event: Event, *, seq: int | None = None) -> None:
        """Fan out a frame that is not stored in events (token frames, numbered by `seq`)."""
        self._offer(self.transient_frame(stream, event, seq=seq))

    def transient_frame(self, stream: str, event: Event, *, seq: int | None = None) -> Frame:
        """The envelope of a message that has no event id (`"id": null`), not fanned out:
        for one client only (a catch-up), or for publish_transient."""
        type_name, data_text = event.type_name, encode(event).decode("utf-8")
        text = (
            f'{{"id":null,"type":{json.dumps(type_name)},"stream":{json.dumps(stream)},'
            f'"ts":"{to_text(self.clock.now())}","data":{data_text}}}'
        )
        return Frame(None, stream, type_name, text, seq)

    def wants(self, stream: str) -> bool:
        """Whether any subscriber here would get a frame of `stream`."""
        return any(subscription.matches(stream) for subscription in self._subscriptions)

    def _offer(self, frame: Frame) -> None:
        for subscription in tuple(self._subscriptions):
            if subscription.matches(frame.stream):
                subscription.offer(frame)

    def subscribe(
        self,
        streams: Iterable[str] | None = None,
        *,
        on_overflow: Callable[[Subscription], None] | None = None,
        maxsize: int | None = None,
        also: Iterable[str] = (),
    ) -> Subscription:
        """Frames of `streams` (None: every stream but the private ones) and of the private
        streams in `also`."""
        subscription = Subscription(
            None if streams is None else frozenset(streams),
            maxsize or self.queue_size,
            on_overflow,
            frozenset(also),
        )
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    async def prune(self, keep: int) -> int:
        """Keep the newest `keep` events; older ones can no longer be resumed from."""
        floor = self.last_id - keep
        if floor <= await event_store.history_floor(self.db):
            return 0
        removed = await event_store.prune_through(self.db, floor)
        if removed:
            log.info("pruned %d events up to id %d", removed, floor)
        return removed


class TokenSeqs:
    """The last token seq of each stream this process produced or relayed
    (bot/agents/token_relay.py): a coalescer claims its seq before committing the frame, so the
    relay never sends a stream's own frames back. The oldest streams are forgotten past
    `kept`."""

    def __init__(self, kept: int = TOKEN_STREAMS_KEPT) -> None:
        self.kept = kept
        self._last: OrderedDict[str, int] = OrderedDict()

    def seen(self, stream: str, seq: int) -> None:
        self._last[stream] = max(seq, self._last.get(stream, 0))
        self._last.move_to_end(stream)
        while len(self._last) > self.kept:
            self._last.popitem(last=False)

    def last(self, stream: str) -> int | None:
        return self._last.get(stream)

    def streams(self) -> list[str]:
        return list(self._last)

    def forget(self, stream: str) -> None:
        self._last.pop(stream, None)

    def __len__(self) -> int:
        return len(self._last)


def _report_end(following: asyncio.Task[None]) -> None:
    """A follower that ends other than by `stop` leaves this instance deaf to the log: said."""
    if not following.cancelled() and following.exception() is not None:
        log.error("following the event log stopped", exc_info=following.exception())
