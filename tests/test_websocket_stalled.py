"""A WebSocket client that stops reading is disconnected and its queued frames freed (web/ws.py):
aborted, not closed, since a close waits for the client to read what is queued."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.agents.events import Token
from bot.events.bus import EventBus
from tests.conftest import AppClient, StartApp
from tests.helpers import API_TOKEN, make_settings
from tests.worktree_helpers import wait_until
from web.keys import SERVICES


async def stalled_client(client: AppClient) -> socket.socket:
    """A WebSocket subscribed to every stream, with a tiny receive buffer, that never reads past
    the handshake."""
    assert client.server.port is not None
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", client.server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    handshake = (
        f"GET /ws?token={API_TOKEN}&streams=* HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await asyncio.get_running_loop().sock_sendall(sock, handshake.encode())
    return sock


def server_connections(client: AppClient) -> list[Any]:
    runner = client.server.runner
    assert runner is not None and runner.server is not None
    return runner.server.connections


def open_connections(client: AppClient) -> int:
    return len(server_connections(client))


def bytes_waiting_to_be_sent(client: AppClient) -> int:
    """What the server holds for its one client beyond the kernel's buffers."""
    (connection,) = server_connections(client)
    return int(connection.transport.get_write_buffer_size()) if connection.transport else 0


@dataclass(frozen=True, slots=True)
class Stalled:
    client: AppClient
    bus: EventBus
    sock: socket.socket

    async def dropped(self) -> None:
        await wait_until(lambda: open_connections(self.client) == 0, what="the client dropped")
        assert self.bus.subscriber_count == 0


@pytest.fixture
async def stalled(start_app: StartApp, tmp_path: Path) -> AsyncIterator[Stalled]:
    """The app with a 0.5 s send timeout, and a client subscribed that never reads."""
    client = await start_app(make_settings(tmp_path, ws_send_timeout=0.5))
    bus = client.app[SERVICES].bus
    sock = await stalled_client(client)
    await wait_until(lambda: bus.subscriber_count == 1, what="the subscription")
    yield Stalled(client, bus, sock)
    sock.close()


async def test_a_client_that_takes_no_frame_within_the_send_timeout_is_disconnected(
    stalled: Stalled,
) -> None:
    for seq in range(300):  # 19 MB: more than the socket buffers hold
        stalled.bus.publish_transient("pr:octo/repo#1", Token(seq=seq, text="x" * 65536))
    await stalled.dropped()


async def test_a_client_too_slow_to_take_its_close_frame_is_disconnected(
    stalled: Stalled,
) -> None:
    for seq in range(100):  # 6.5 MB: the sends block once the socket buffers are full
        stalled.bus.publish_transient("pr:octo/repo#1", Token(seq=seq, text="x" * 65536))
    await wait_until(
        lambda: bytes_waiting_to_be_sent(stalled.client), what="the socket buffers full"
    )
    for seq in range(stalled.bus.queue_size + 1):  # then its queue overflows: closed with 4008
        stalled.bus.publish_transient("pr:octo/repo#1", Token(seq=seq, text="x"))
    await stalled.dropped()
