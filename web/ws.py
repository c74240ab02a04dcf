"""GET /ws: the live event stream, resumable by event id (docs/design.md, Events).

Protocol (JSON text frames). The server's own messages carry `control`, events carry `type`:

- server -> `{"control": "hello", "epoch": E, "last_id": N}` on connect.
- client -> `{"action": "subscribe", "streams": ["pr:octo/repo#12"] | "*", "since": N, "epoch": E}`
  (or the same as query parameters: `/ws?streams=a,b&since=N&epoch=E`). The server replays
  every kept event after N of those streams, in order, sends `{"control": "live", "last_id": N}`
  and then live events, with no gap and no duplicate at the seam.
- When N cannot be served (the epoch differs: the database was reset; N is older than the
  history kept; N is ahead of the newest id) the server sends
  `{"control": "resync_required", "reason": ..., "epoch": E, "last_id": N}` and nothing else:
  the client reloads its state and subscribes again from `last_id`.
- A client too slow to keep up is closed with code 4008; it resumes from its last id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from bot.events.bus import EventBus, Subscription
from storage import events as event_store
from web.keys import SERVICES

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

CLOSE_SLOW_CONSUMER = 4008
REPLAY_PAGE = 500
HEARTBEAT_S = 25.0


class ResyncRequired(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _streams(value: Any) -> frozenset[str] | None:
    if value in (None, "", "*", ["*"]):
        return None
    if isinstance(value, str):
        value = [part for part in value.split(",") if part]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("streams must be a list of stream names or '*'")
    return frozenset(value)


def _since(value: Any) -> int | None:
    """An event id: a whole number (JSON integer or digits), or nothing."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is not int:
        raise ValueError("since must be a whole number (an event id)")
    if value < 0:
        raise ValueError("since must not be negative")
    return value


async def check_resumable(bus: EventBus, since: int, epoch: str | None) -> None:
    if epoch is not None and epoch != bus.epoch:
        raise ResyncRequired("epoch_changed")
    if since > bus.last_id:
        raise ResyncRequired("unknown_id")
    if since < await event_store.history_floor(bus.db):
        raise ResyncRequired("history_pruned")


async def _stream(
    ws: web.WebSocketResponse, bus: EventBus, streams: frozenset[str] | None, since: int | None
) -> None:
    def overflowed(_: Subscription) -> None:
        asyncio.get_running_loop().create_task(_close_slow(ws))

    subscription = bus.subscribe(streams, on_overflow=overflowed)
    try:
        last_sent = bus.last_id if since is None else since
        if since is not None:
            while True:
                page = await event_store.read_since(
                    bus.db, last_sent, streams=streams, limit=REPLAY_PAGE
                )
                for stored in page:
                    await ws.send_str(json.dumps(stored.envelope(), separators=(",", ":")))
                    last_sent = stored.id
                if len(page) < REPLAY_PAGE:
                    break
        await ws.send_json({"control": "live", "last_id": last_sent})
        while not ws.closed:
            frames = await subscription.next_batch()
            if subscription.overflowed:
                return
            for frame in frames:
                if frame.id is not None:
                    if frame.id <= last_sent:
                        continue
                    last_sent = frame.id
                await ws.send_frame(frame.utf8, WSMsgType.TEXT)
    finally:
        bus.unsubscribe(subscription)


async def _close_slow(ws: web.WebSocketResponse) -> None:
    try:
        await asyncio.wait_for(
            ws.close(code=CLOSE_SLOW_CONSUMER, message=b"too slow: resume from your last id"), 5
        )
    except (TimeoutError, ConnectionError):
        log.info("slow WebSocket client did not take its close frame; dropped")


class _Connection:
    """One client's WebSocket: its subscription (the task streaming to it) and its commands."""

    def __init__(self, ws: web.WebSocketResponse, bus: EventBus) -> None:
        self.ws = ws
        self.bus = bus
        self.sender: asyncio.Task[None] | None = None

    async def subscribe(self, spec: dict[str, Any]) -> None:
        bus = self.bus
        try:
            streams = _streams(spec.get("streams"))
            since = _since(spec.get("since"))
            epoch = spec.get("epoch") or None
            if epoch is not None and not isinstance(epoch, str):
                raise ValueError("epoch must be a string")
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
        await self.stop_sending(ConnectionError)
        self.sender = asyncio.create_task(_stream(self.ws, bus, streams, since))

    async def command(self, text: str) -> None:
        try:
            command = json.loads(text)
        except ValueError:
            await self.ws.send_json({"control": "error", "message": "frames must be JSON"})
            return
        if not isinstance(command, dict):
            await self.ws.send_json({"control": "error", "message": "frames must be objects"})
        elif command.get("action") == "subscribe":
            await self.subscribe(command)
        elif command.get("action") == "ping":
            await self.ws.send_json({"control": "pong", "last_id": self.bus.last_id})
        else:
            await self.ws.send_json({"control": "error", "message": "unknown action"})

    async def stop_sending(self, *ignored: type[BaseException]) -> None:
        if self.sender is not None:
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, *ignored):
                await self.sender


@routes.get("/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    bus = request.app[SERVICES].bus
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=64 * 1024)
    await ws.prepare(request)
    await ws.send_json({"control": "hello", "epoch": bus.epoch, "last_id": bus.last_id})
    connection = _Connection(ws, bus)
    try:
        if "streams" in request.query or "since" in request.query:
            await connection.subscribe(dict(request.query))
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await connection.command(message.data)
    finally:
        await connection.stop_sending(ConnectionError, RuntimeError)
    return ws
