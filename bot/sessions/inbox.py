"""A session's offline events as the person sees them: unread, in order, acknowledged, expired.

The recorder (bot/sessions/recorder.py) writes them; this reads them back for the WebSocket's
`offline_event` frames and the API, takes acknowledgements (up to an id, or a list of ids) and
prunes what expired (OFFLINE_EVENTS_TTL) for the housekeeping job. An expired event is never
shown, pruned yet or not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bot.clock import Clock
from storage import offline_events
from storage.database import Database
from storage.offline_events import OfflineEventRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Unread:
    events: list[OfflineEventRow]
    count: int


@dataclass(frozen=True, slots=True)
class Inbox:
    db: Database
    clock: Clock
    cap: int  # OFFLINE_EVENTS_PER_SESSION: no session holds more

    async def unread(self, session_id: str) -> Unread:
        now = self.clock.now()
        events = await offline_events.unread(self.db, session_id, now=now, limit=self.cap)
        count = await offline_events.count_unread(self.db, session_id, now=now)
        return Unread(events, count)

    async def acknowledge(
        self, session_id: str, *, up_to: int | None = None, ids: Sequence[int] = ()
    ) -> int:
        """Forget the offline events the person has seen; returns how many went."""
        gone = 0
        if up_to is not None:
            gone += await offline_events.acknowledge_up_to(self.db, session_id, up_to)
        if ids:
            gone += await offline_events.acknowledge_ids(self.db, session_id, ids)
        return gone

    async def count(self, session_id: str) -> int:
        return await offline_events.count_unread(self.db, session_id, now=self.clock.now())

    async def prune(self) -> int:
        removed = await offline_events.prune_expired(self.db, now=self.clock.now())
        if removed:
            log.info("pruned %d expired offline events", removed)
        return removed
