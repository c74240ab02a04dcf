"""The offline recorder: follows the event log and keeps, for each session no page of which saw
an event live, the events that matter to it (docs/sessions.md, Offline events).

It reads the log itself (`events`), from a cursor kept in `meta`: the bus only rings a bell
when a notable event is committed (`EventBus.on_stored`). Each batch's offline events, the
per-session cap and the cursor's new place commit in one transaction, so an event committed
just before a crash is recorded at the next start (nothing is connected then: every session is
offline), and none is recorded twice. However many events come while a batch is written, the
next batch reads them all from the cursor. Instances sharing a PostgreSQL database record one
at a time (`Database.exclusive`), each going on from the cursor as the others left it, so an
event is recorded once, not once per instance (nor again after it was acknowledged).

A session with a page connected (whose socket follows other streams than the event's) is told
at once: each offline event recorded for it goes, once committed, to its sockets as an
`offline_event` frame on its private stream (`session:<id>`, bot/events/bus.py), so the page
shows the notification without waiting for its next connection. Told or not, it stays unread
until acknowledged; the page shows an offline id once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from bot.clock import Clock
from bot.events.bus import EventBus, Frame
from bot.sessions.events import OfflineEvent, session_stream
from bot.sessions.notable import NOTABLE_TYPES, group_tabs, sessions_to_tell
from bot.sessions.presence import Presence
from bot.sessions.tabs import Tab, TabKind
from storage import events as event_log
from storage import offline_events
from storage import sessions as session_rows
from storage.database import Database
from storage.events import StoredEvent
from storage.offline_events import NewOfflineEvent

log = logging.getLogger(__name__)

PAGE = 500
RETRY_S = 5.0


@dataclass
class OfflineRecorder:
    db: Database
    bus: EventBus
    clock: Clock
    presence: Presence
    owner: str
    ttl_s: float
    cap: int
    cursor: int = 0
    _bell: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _unlisten: Callable[[], None] | None = None

    async def start(self) -> None:
        """Listen, then record what the log holds past the cursor (a crash's leftovers)."""
        self._unlisten = self.bus.on_stored(self._ring)
        self.cursor = await offline_events.cursor(self.db, start_at=self.bus.last_id)
        await self.catch_up()

    def stop(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None

    def _ring(self, frame: Frame) -> None:
        if frame.type in NOTABLE_TYPES:
            self._bell.set()

    async def run(self) -> None:
        """Record as notable events are published, until cancelled."""
        while True:
            await self._bell.wait()
            self._bell.clear()
            try:
                await self.catch_up()
            except Exception:  # the cursor did not move: the same events are read again
                log.exception("recording offline events failed; retried in %gs", RETRY_S)
                await self.clock.sleep(RETRY_S)
                self._bell.set()

    async def catch_up(self) -> int:
        """Record every notable event committed since the cursor; returns how many rows."""
        async with self._lock, self.db.exclusive("offline-recorder") as ours:
            if not ours:  # another instance records; its bus hears of the same events
                return 0
            # Another instance may have recorded since: go on from where the log's cursor is.
            self.cursor = await offline_events.cursor(self.db, start_at=self.bus.last_id)
            through, recorded = self.bus.last_id, 0
            while self.cursor < through:
                page = await event_log.read_types_between(
                    self.db, self.cursor, through, NOTABLE_TYPES, limit=PAGE
                )
                reached = page[-1].id if len(page) == PAGE else through
                rows = await self._offline_rows(page)
                now = self.clock.now()
                await offline_events.record(
                    self.db,
                    rows,
                    through=reached,
                    cap=self.cap,
                    now=now,
                    expires_at=now + timedelta(seconds=self.ttl_s),
                )
                self.cursor, recorded = reached, recorded + len(rows)
                await self._tell_connected(rows)
            return recorded

    async def _tell_connected(self, rows: list[NewOfflineEvent]) -> None:
        """Send the offline events just recorded to the sessions that have a page connected."""
        for session_id in sorted({row.session_id for row in rows}):
            if not self.presence.is_connected(session_id):
                continue
            new = {row.event_id for row in rows if row.session_id == session_id}
            now = self.clock.now()
            unread = await offline_events.unread(self.db, session_id, now=now, limit=self.cap)
            count = len(unread)
            for row in unread:
                if row.event.id in new:
                    told = OfflineEvent(
                        session_id=session_id,
                        offline_id=row.id,
                        unread=count,
                        recorded_at=row.recorded_at,
                        event=row.event.envelope(),
                    )
                    self.bus.publish_transient(session_stream(session_id), told)

    async def _offline_rows(self, page: list[StoredEvent]) -> list[NewOfflineEvent]:
        if not page:
            return []
        followed = await session_rows.followed_tabs(self.db, self.owner)
        tabs = group_tabs(
            (row.session_id, Tab(TabKind(row.kind), row.ref or None)) for row in followed
        )
        rows: list[NewOfflineEvent] = []
        for event in page:
            told = sessions_to_tell(event.stream, event.data, tabs, self.presence.sees_live)
            data_json = json.dumps(event.data, separators=(",", ":"))
            rows.extend(
                NewOfflineEvent(session_id, event.id, event.stream, event.type, event.ts, data_json)
                for session_id in told
            )
        return rows
