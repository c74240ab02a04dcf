"""The browser sessions' parts, built once for the app (web/composition.py, `sessions`).

`Sessions` holds the collaborators the routes, the WebSocket and the housekeeping job use:
the book of the token's sessions, each session's inbox of offline events, the presence of
connected sockets, the recorder that fills the inboxes and the restorer (docs/sessions.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from bot.clock import Clock
from bot.config import Settings
from bot.events.bus import EventBus
from bot.sessions.book import SessionBook, owner_of
from bot.sessions.inbox import Inbox
from bot.sessions.presence import Presence
from bot.sessions.recorder import OfflineRecorder
from bot.sessions.restore import Restorer
from bot.sessions.socket import SessionSocket
from storage import sessions as session_rows
from storage.database import Database

log = logging.getLogger(__name__)

# As long as the session cookie lives (web/session_cookie.py): unseen longer, no browser has it.
SESSION_IDLE_S = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class Sessions:
    book: SessionBook
    inbox: Inbox
    presence: Presence
    recorder: OfflineRecorder
    restorer: Restorer

    def socket(self) -> SessionSocket:
        """The tie of a new WebSocket to the session it will name."""
        return SessionSocket(
            book=self.book, inbox=self.inbox, presence=self.presence, clock=self.book.clock
        )

    async def prune(self) -> None:
        """Housekeeping: expired offline events, and sessions no one can reach any more
        (another token's, or unseen for longer than their cookie lives)."""
        await self.inbox.prune()
        unseen_since = self.book.clock.now() - timedelta(seconds=SESSION_IDLE_S)
        removed = await session_rows.prune(self.book.db, self.book.owner, unseen_since=unseen_since)
        if removed:
            log.info("forgot %d sessions of another token or long unseen", removed)


def build_sessions(
    settings: Settings, *, db: Database, bus: EventBus, clock: Clock, token_digest: str
) -> Sessions:
    owner = owner_of(token_digest)
    book = SessionBook(db=db, clock=clock, owner=owner)
    inbox = Inbox(db=db, clock=clock, cap=settings.offline_events_per_session)
    presence = Presence()
    recorder = OfflineRecorder(
        db=db,
        bus=bus,
        clock=clock,
        presence=presence,
        owner=owner,
        ttl_s=settings.offline_events_ttl,
        cap=settings.offline_events_per_session,
    )
    restorer = Restorer(db=db, clock=clock, bus=bus, book=book, inbox=inbox)
    return Sessions(book, inbox, presence, recorder, restorer)
