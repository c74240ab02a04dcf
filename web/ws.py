"""GET /ws: the live event stream, resumable by event id (docs/design.md, Events).

Protocol (JSON text frames). The server's own messages carry `control`, events carry `type`:

- server -> `{"control": "hello", "epoch": E, "last_id": N}` on connect.
- client -> `{"action": "subscribe", "streams": ["pr:octo/repo#12"] | "*", "since": N, "epoch": E}`
  (or the same as query parameters: `/ws?streams=a,b&since=N&epoch=E`). The server replays
  every kept event after N of those streams, in order, then the token catch-up and the state of
  each followed object (web/ws_catchup.py), sends `{"control": "live", "last_id": N}` and then
  live events, with no gap and no duplicate at the seam.
- A subscribe may name the page's browser session: `"session": ID` (or `?session=ID`). The first
  time, the server sends `session_restored` and then each unread `offline_event`, oldest first,
  before the replay; while the socket is open the session is online for its streams
  (bot/sessions/socket.py), and an offline event recorded meanwhile (on a stream of its tabs
  this socket does not follow) is sent to it live as `offline_event`. A session that is not
  this token's gets an error and nothing is subscribed.
- When N cannot be served (the epoch differs: the database was reset; N is older than the
  history kept; N is ahead of the newest id) the server sends
  `{"control": "resync_required", "reason": ..., "epoch": E, "last_id": N}` and nothing else:
  the client reloads its state and subscribes again from `last_id`.
- A client too slow to keep up is closed with code 4008; it resumes from its last id.
- A client that takes no frame for WS_SEND_TIMEOUT (or answers no ping within the heartbeat) is
  disconnected: its transport is aborted, since a close would wait for it to read what is
  queued, keeping the socket and those frames for as long as it does not (`_Outbox`).

Frames are decoded by web/bodies.py's one decoder: a frame that is not JSON text (malformed, a
lone UTF-16 surrogate) closes the socket with 1007, one nested deeper than its limit with 1008;
a frame of the wrong shape gets `{"control": "error", "message": ...}` and the socket stays. An
error after the upgrade closes with 1011: an HTTP 500 cannot be answered into a WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable
from typing import Annotated, Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web
from multidict import MultiMapping

from bot.events.bus import EventBus, Subscription
from bot.sessions.book import SessionNotFound
from bot.sessions.events import session_stream
from bot.sessions.socket import NamedAnother, SessionSocket
from storage import events as event_store
from web.bodies import BadJson, TooDeep, decode_json, field_problem
from web.errors import DB_INT_MAX, whole_number
from web.keys import SERVICES, SESSIONS
from web.ws_catchup import Covered, send_catchup

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

CLOSE_SLOW_CONSUMER = 4008
REPLAY_PAGE = 500
HEARTBEAT_S = 25.0


class ResyncRequired(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Frame(msgspec.Struct):
    """A client's frame, or the same fields as query parameters of `/ws`."""

    action: str = ""
    streams: list[str] | str | None = None
    since: Annotated[int, msgspec.Meta(ge=0, le=DB_INT_MAX)] | str | None = None
    epoch: str | None = None
    session: Annotated[str, msgspec.Meta(max_length=64)] | None = None  # a browser session's id

    @classmethod
    def of_query(cls, query: MultiMapping[str]) -> Frame:
        return cls(
            "subscribe",
            query.get("streams"),
            query.get("since"),
            query.get("epoch"),
            query.get("session"),
        )


def _streams(value: list[str] | str | None) -> frozenset[str] | None:
    if value is None or value in ("", "*") or value == ["*"]:
        return None
    if isinstance(value, str):
        return frozenset(part for part in value.split(",") if part)
    return frozenset(value)


def _since(value: int | str | None) -> int | None:
    """An event id: a whole number (JSON integer or digits), or nothing."""
    if value is None or value == "":
        return None
    number = whole_number(value) if isinstance(value, str) else value
    if number is None or number > DB_INT_MAX:
        raise ValueError("since must be a whole number (an event id)")
    return number


async def check_resumable(bus: EventBus, since: int, epoch: str | None) -> None:
    if epoch is not None and epoch != bus.epoch:
        raise ResyncRequired("epoch_changed")
    if since > bus.last_id and since > await bus.newest_id():  # resumed on another instance
        raise ResyncRequired("unknown_id")
    if since < await event_store.history_floor(bus.db):
        raise ResyncRequired("history_pruned")


class _Outbox:
    """What is sent to one client: each send (or command answered) within `timeout` seconds,
    else the client is dropped."""

    def __init__(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, timeout: float
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.timeout = timeout

    async def within(self, work: Awaitable[object]) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await work
        except TimeoutError:
            self.drop(f"took no frame for {self.timeout:g}s")
            raise ConnectionResetError("WebSocket client dropped") from None

    async def send(self, utf8: bytes) -> None:
        await self.within(self.ws.send_frame(utf8, WSMsgType.TEXT))

    async def close(self, code: int, message: bytes) -> None:
        """Close with `code`; a client that does not take the close frame in time is dropped."""
        with contextlib.suppress(ConnectionError):
            await self.within(self.ws.close(code=code, message=message))

    def drop(self, why: str) -> None:
        log.info("WebSocket client %s: disconnected", why)
        if self.transport is not None:
            self.transport.abort()

    def release(self) -> None:
        """At the end: a transport still holding frames the client never read is aborted."""
        if self.transport is not None and self.transport.get_write_buffer_size():
            self.drop(f"left {self.transport.get_write_buffer_size()} bytes unread")


def _text(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


async def _stream(
    outbox: _Outbox,
    bus: EventBus,
    subscription: Subscription,
    streams: frozenset[str] | None,
    since: int | None,
) -> None:
    """Replay, catch-up, `live`, then the subscription's frames (taken before the replay)."""
    try:
        last_sent = bus.last_id if since is None else since
        covered = Covered()
        if since is not None:
            while True:
                page = await event_store.envelopes_since(
                    bus.db, last_sent, streams=streams, limit=REPLAY_PAGE
                )
                for event_id, envelope in page:
                    await outbox.send(envelope.encode("utf-8"))
                    last_sent = event_id
                if len(page) < REPLAY_PAGE:
                    break
            covered = await send_catchup(outbox.send, bus, streams)
        await outbox.send(_text({"control": "live", "last_id": last_sent}))
        while not outbox.ws.closed:
            frames = await subscription.next_batch()
            if subscription.overflowed:
                return
            for frame in frames:
                if frame.id is not None:
                    if frame.id <= last_sent:
                        continue
                    last_sent = frame.id
                elif covered.already_sent(frame):
                    continue
                await outbox.send(frame.utf8)
    finally:
        bus.unsubscribe(subscription)


class _Connection:
    """One client's WebSocket: its subscription (the task streaming to it) and its commands."""

    def __init__(
        self, outbox: _Outbox, bus: EventBus, session: SessionSocket | None = None
    ) -> None:
        self.outbox = outbox
        self.ws = outbox.ws
        self.bus = bus
        self.sender: asyncio.Task[None] | None = None
        self.subscription: Subscription | None = None
        self.session = session  # the tie to a browser session, when sessions are on

    async def serve(self, query: MultiMapping[str]) -> None:
        bus = self.bus
        await self.outbox.send(
            _text({"control": "hello", "epoch": bus.epoch, "last_id": bus.last_id})
        )
        if "streams" in query or "since" in query or "session" in query:
            await self.outbox.within(self.subscribe(Frame.of_query(query)))
        async for message in self.ws:
            if message.type == WSMsgType.TEXT:
                await self.outbox.within(self.command(message.data))

    async def subscribe(self, frame: Frame) -> None:
        bus = self.bus
        try:
            streams = _streams(frame.streams)
            since = _since(frame.since)
            epoch = frame.epoch or None
            if since is not None:
                await check_resumable(bus, since, epoch)
        except ValueError as error:
            await self.ws.send_json({"control": "error", "message": str(error)})
            return
        except ResyncRequired as resync:
            await self.ws.send_json(
                {
                    "control": "resync_required",
                    "reason": resync.reason,
                    "epoch": bus.epoch,
                    "last_id": bus.last_id,
                }
            )
            return
        await self.stop_sending()
        # Subscribed before the session's frames are sent: an offline event recorded while
        # they are (on a stream this socket does not follow) is told live after the replay.
        subscription = self.listen(streams, frame.session)
        if not await self.name_session(frame.session, streams):
            await self.stop_sending()
            return
        self.sender = asyncio.create_task(self.send(subscription, streams, since))

    def listen(self, streams: frozenset[str] | None, named: str | None) -> Subscription:
        """The socket's subscription: its streams, and its browser session's private stream
        (the offline events recorded while it is connected, bot/sessions/recorder.py)."""
        outbox = self.outbox

        def overflowed(_: Subscription) -> None:
            message = b"too slow: resume from your last id"
            asyncio.get_running_loop().create_task(outbox.close(CLOSE_SLOW_CONSUMER, message))

        chosen = named or (self.session.session_id if self.session is not None else None)
        also = () if self.session is None or chosen is None else (session_stream(chosen),)
        self.subscription = self.bus.subscribe(streams, on_overflow=overflowed, also=also)
        return self.subscription

    async def name_session(self, named: str | None, streams: frozenset[str] | None) -> bool:
        """The session hook of a subscribe: the socket's browser session restored on it the
        first time it is named, its streams followed (bot/sessions/socket.py). False when the
        frame named a session that is not this token's."""
        if self.session is None:
            return True
        chosen = named or self.session.session_id
        if chosen is None:
            return True
        try:
            await self.session.name(chosen, streams, self.outbox.send)
        except (SessionNotFound, NamedAnother) as error:
            await self.ws.send_json({"control": "error", "message": str(error)})
            return False
        return True

    async def send(
        self, subscription: Subscription, streams: frozenset[str] | None, since: int | None
    ) -> None:
        try:
            await _stream(self.outbox, self.bus, subscription, streams, since)
        except ConnectionError:
            log.debug("WebSocket client went away while being sent to")
        except Exception:
            log.exception("WebSocket stream failed; closing with 1011")
            await self.outbox.close(WSCloseCode.INTERNAL_ERROR, b"internal error")

    async def command(self, text: str) -> None:
        try:  # surrogatepass: a surrogate in the text reaches the decoder, which refuses it
            frame = decode_json(text.encode("utf-8", "surrogatepass"), Frame)
        except BadJson as refused:
            await self.refuse(refused)
            return
        except msgspec.ValidationError as error:
            problem = field_problem(error) or f"frames must be JSON objects: {error}"
            await self.ws.send_json({"control": "error", "message": problem})
            return
        if frame.action == "subscribe":
            await self.subscribe(frame)
        elif frame.action == "ping":
            await self.ws.send_json({"control": "pong", "last_id": self.bus.last_id})
        else:
            await self.ws.send_json({"control": "error", "message": "unknown action"})

    async def refuse(self, refused: BadJson) -> None:
        """Close on a frame that is not JSON text (1007) or nests too deep (1008)."""
        too_deep = isinstance(refused, TooDeep)
        code = WSCloseCode.POLICY_VIOLATION if too_deep else WSCloseCode.INVALID_TEXT
        reason = f"the frame {refused}".encode("ascii", "replace")[:123]  # RFC 6455's limit
        await self.ws.close(code=code, message=reason)

    async def stop_sending(self) -> None:
        if self.sender is not None:
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sender
            self.sender = None
        if self.subscription is not None:  # a task cancelled before it ran never unsubscribed
            self.bus.unsubscribe(self.subscription)
            self.subscription = None


@routes.get("/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    services = request.app[SERVICES]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=64 * 1024)
    await ws.prepare(request)
    outbox = _Outbox(ws, request.transport, services.settings.ws_send_timeout)
    sessions = request.app.get(SESSIONS)
    session = sessions.socket() if sessions is not None else None
    connection = _Connection(outbox, services.bus, session)
    try:
        await connection.serve(request.query)
    except ConnectionError:
        log.debug("WebSocket client went away")
    except Exception:
        # The connection is upgraded: an HTTP 500 written now would be garbage to the client.
        log.exception("WebSocket handler failed; closing with 1011")
        await outbox.close(WSCloseCode.INTERNAL_ERROR, b"internal error")
    finally:
        await connection.stop_sending()
        if session is not None:
            session.close()
        outbox.release()
    return ws
