"""One WebSocket's tie to its browser session: named once, followed while it is open.

When a socket names its session (the subscribe frame's `session`, or the session cookie), it
is sent `session_restored` and then every unread offline event, oldest first, each with the
unread count; from then on the presence knows the session sees the socket's streams live, so
the recorder stops recording their events for it. A later subscribe only updates the streams.
When the socket closes the session is offline again (for those streams).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from bot.clock import Clock
from bot.sessions.book import SessionBook
from bot.sessions.events import OfflineEvent, SessionRestored, frame
from bot.sessions.inbox import Inbox
from bot.sessions.presence import Presence

Send = Callable[[bytes], Awaitable[None]]


class NamedAnother(ValueError):
    """A socket that named one session cannot name another."""


class SessionSocket:
    def __init__(
        self, *, book: SessionBook, inbox: Inbox, presence: Presence, clock: Clock
    ) -> None:
        self.book = book
        self.inbox = inbox
        self.presence = presence
        self.clock = clock
        self.session_id: str | None = None

    async def name(self, session_id: str, streams: Iterable[str] | None, send: Send) -> None:
        """The socket belongs to `session_id` (SessionNotFound when it is not this token's)
        and follows `streams` (None: all). The first time, the session is restored on it."""
        if self.session_id is not None:
            if session_id != self.session_id:
                raise NamedAnother(f"this socket belongs to session {self.session_id!r}")
            self.presence.follow(self, session_id, streams)
            return
        await self.book.seen(session_id)
        session = await self.book.find(session_id)
        self.session_id = session_id
        # Online before the unread are read: what is recorded after the read, it sees live.
        self.presence.follow(self, session_id, streams)
        unread = await self.inbox.unread(session_id)
        tabs = await self.book.tabs(session_id)
        now = self.clock.now()
        restored = SessionRestored(
            session_id=session_id, tabs=tabs, ui_state=session.ui_state, unread=unread.count
        )
        await send(frame(session_id, restored, now))
        for row in unread.events:
            offline = OfflineEvent(
                session_id=session_id,
                offline_id=row.id,
                unread=unread.count,
                recorded_at=row.recorded_at,
                event=row.event.envelope(),
            )
            await send(frame(session_id, offline, now))

    def follow(self, streams: Iterable[str] | None) -> None:
        """A new subscribe of a socket that named its session already."""
        if self.session_id is not None:
            self.presence.follow(self, self.session_id, streams)

    def close(self) -> None:
        self.presence.leave(self)
