"""Following the event log of a database other instances write to (docs/database.md, Events
across instances).

On PostgreSQL several instances publish into one events table. Each instance's bus fans out
what it reads here, never what it has just committed itself: its own commits, the
`biagent_events` notices of every instance's commits (LISTEN, on a connection of its own) and a
periodic poll all only ring a bell, and one reader reads the rows after the last id it fanned
out, in id order. So an event reaches this instance's subscribers once, whichever instance
published it, and the ids they see only grow: the writers take the event log's lock before
drawing ids (storage/dialect.py), so an id is committed before any higher one is drawn.

The poll is the safety net for a notice lost with the listening connection: that connection
is made again after a pause, and a new one reads what it missed as it starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.clock import Clock
from storage import events as event_store
from storage.database import Database, DatabaseError
from storage.events import RawEvent

log = logging.getLogger(__name__)

PAGE = 500
POLL_S = 5.0
RETRY_S = 1.0


class LogFollower:
    """Reads the events after `last_id` whenever rung, and hands each to `deliver` in order."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        deliver: Callable[[RawEvent], None],
        *,
        last_id: int,
        poll_s: float = POLL_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self.db = db
        self.clock = clock
        self.deliver = deliver
        self.last_id = last_id
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.listening = asyncio.Event()  # set while the LISTEN connection is up
        self.connections = 0  # LISTEN connections made: a reconnect counts one more
        self._bell = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def ring(self) -> None:
        """Something may have been committed: read the log soon."""
        self._bell.set()

    async def delivered(self, event_id: int) -> None:
        """Return once the event `event_id` (committed) has been handed to `deliver`."""
        if event_id <= self.last_id:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((event_id, waiter))
        self.ring()
        await waiter

    async def run(self) -> None:
        """Read, listen and poll until cancelled."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read_when_rung(), name="events-reader")
                tasks.create_task(self._listen(), name="events-listener")
                tasks.create_task(self._poll(), name="events-poll")
        finally:
            for _, waiter in self._waiters:
                waiter.cancel()
            self._waiters.clear()

    async def read_new(self) -> int:
        """Deliver every event committed after `last_id`, oldest first; returns how many."""
        delivered = 0
        while True:
            page = await event_store.raw_since(self.db, self.last_id, limit=PAGE)
            for event in page:
                self.last_id = event.id
                self.deliver(event)
            delivered += len(page)
            self._wake_waiters()
            if len(page) < PAGE:
                return delivered

    def _wake_waiters(self) -> None:
        waiting = []
        for event_id, waiter in self._waiters:
            if event_id <= self.last_id:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((event_id, waiter))
        self._waiters = waiting

    async def _read_when_rung(self) -> None:
        while True:
            await self._bell.wait()
            self._bell.clear()
            try:
                await self.read_new()
            except Exception:  # last_id did not pass what was not delivered: read again
                log.exception("reading the event log failed; again in %gs", self.retry_s)
                await self.clock.sleep(self.retry_s)
                self._bell.set()

    async def _listen(self) -> None:
        while True:
            try:
                async with self.db.listen(event_store.NOTICE_CHANNEL) as notices:
                    self.connections += 1
                    self.listening.set()
                    self.ring()  # what committed while no connection listened
                    async for _ in notices:
                        self.ring()
            except (DatabaseError, OSError) as lost:
                log.warning("listening for events: %s; again in %gs", lost, self.retry_s)
            finally:
                self.listening.clear()
            await self.clock.sleep(self.retry_s)

    async def _poll(self) -> None:
        while True:
            await self.clock.sleep(self.poll_s)
            self.ring()
