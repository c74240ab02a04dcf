"""Which sessions have a page connected now, and which streams each such socket follows.

In memory only: a socket lives in this process, and after a restart no socket is connected,
so every session starts offline. The WebSocket (web/ws.py) registers a socket when it names its
session and says which streams it subscribed to; the offline recorder asks whether a session
sees a stream live before it records an event for it.
"""

from __future__ import annotations

from collections.abc import Iterable


class Presence:
    def __init__(self) -> None:
        # socket key -> (session id, the streams it follows; None: every stream)
        self._sockets: dict[object, tuple[str, frozenset[str] | None]] = {}

    def follow(self, socket: object, session_id: str, streams: Iterable[str] | None) -> None:
        """`socket` belongs to `session_id` and is subscribed to `streams` (None: all)."""
        self._sockets[socket] = (session_id, None if streams is None else frozenset(streams))

    def leave(self, socket: object) -> None:
        self._sockets.pop(socket, None)

    def sees_live(self, session_id: str, stream: str) -> bool:
        return any(
            owner == session_id and (streams is None or stream in streams)
            for owner, streams in self._sockets.values()
        )

    def is_connected(self, session_id: str) -> bool:
        return any(owner == session_id for owner, _ in self._sockets.values())
