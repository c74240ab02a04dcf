"""Housekeeping: the event log, the token buffer and the browser sessions kept to their size
(a periodic job).

The app factory registers `Housekeeping.prune` on the one scheduler (bot/scheduling.py) every
PRUNE_EVERY_S. The prunings fail separately: one that raises does not skip the others. Expired
token frames are deleted; expired token blocks lose their text (their row keeps the stream's
numbering, storage/token_blocks.py). The sessions' own pruning (expired offline events, sessions
no one can reach) is theirs (bot/sessions/service.py); housekeeping only runs it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from bot.clock import Clock
from bot.events.bus import EventBus
from storage import token_blocks, token_buffer
from storage.database import Database

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 600.0


class Prunes(Protocol):
    async def prune(self) -> None: ...


class Housekeeping:
    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        clock: Clock,
        events_kept: int,
        sessions: Prunes | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.events_kept = events_kept
        self.sessions = sessions

    async def prune(self) -> None:
        try:
            await self.bus.prune(self.events_kept)
        except Exception:
            log.exception("event pruning failed")
        try:
            await token_buffer.prune_expired(self.db, now=self.clock.now())
        except Exception:
            log.exception("token buffer pruning failed")
        try:
            await token_blocks.prune_expired(self.db, now=self.clock.now())
        except Exception:
            log.exception("token block pruning failed")
        if self.sessions is not None:
            try:
                await self.sessions.prune()
            except Exception:
                log.exception("session pruning failed")
