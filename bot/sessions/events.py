"""The message types of browser sessions (docs/design.md, Events; docs/sessions.md).

Both go only to the WebSockets that named their session, so they are not kept in the event
log: like `token` frames, their envelope carries `"id": null`, and their stream is the
session's own, `session:<id>`. On connecting, a socket is sent them directly; an offline event
recorded while a page is connected goes out as a transient frame on that private stream, which
the bus gives only to the session's own sockets (bot/events/bus.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import msgspec

from bot.events.message import Event
from bot.sessions.tabs import Tab
from storage.timestamps import to_text


class SessionRestored(Event):
    """A WebSocket named its browser session: its tabs, UI state and unread offline events
    (sent before them)."""

    type_name: ClassVar[str] = "session_restored"
    concern: ClassVar[str] = "sessions"
    session_id: str
    tabs: list[Tab]
    ui_state: dict[str, Any]
    unread: int


class OfflineEvent(Event):
    """An event that mattered to the session while none of its pages followed its stream: sent
    at once to its connected pages, and on each connection, oldest first, until acknowledged
    (`event` is the envelope as published)."""

    type_name: ClassVar[str] = "offline_event"
    concern: ClassVar[str] = "sessions"
    session_id: str
    offline_id: int
    unread: int
    recorded_at: str
    event: dict[str, Any]


def session_stream(session_id: str) -> str:
    return f"session:{session_id}"


class _Envelope(msgspec.Struct):
    id: None
    type: str
    stream: str
    ts: str
    data: Event


def frame(session_id: str, event: Event, now: datetime) -> bytes:
    """The event as the one socket gets it: the bus's envelope, without an id."""
    envelope = _Envelope(None, event.type_name, session_stream(session_id), to_text(now), event)
    return msgspec.json.encode(envelope)
