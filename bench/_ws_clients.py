"""The fanout bench's WebSocket clients: a child process of raw subscribers, and its handle.

A library for bench/fanout.py (the leading underscore keeps it out of `make bench`). The child
(`python -m bench.fanout --clients-for URL`) opens `--clients` raw asyncio protocols speaking
just enough RFC 6455 (handshake, unmasked server frames, masked pong and subscribe frames): a
full client library per socket would make the clients, not the server, the bottleneck. Each
subscribes to every stream and times each event from the publisher's CLOCK_MONOTONIC stamp.
The child says "ready" on its stdout, then "ack N" whenever every client has every event up to
N, and answers "reset", "report" and "quit" from its stdin. `ClientProcess` is the parent's
side of that conversation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import sys
import time

from bench.common import LatencySummary, python_module, raise_open_files_limit

_SEQ_AND_TIME = re.compile(rb"seq=(\d+) sent_ns=(\d+)")


class _Fleet:
    """What all clients of one child process have received."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.live = 0
        self.received: dict[int, int] = {}
        self.watermark = 0
        self.latencies_ns: list[int] = []
        self.frames = 0
        self.closed: list[str] = []
        self.all_live = asyncio.Event()

    def got_event(self, seq: int, latency_ns: int) -> None:
        self.frames += 1
        self.latencies_ns.append(latency_ns)
        count = self.received.get(seq, 0) + 1
        self.received[seq] = count
        if count == self.clients and seq == self.watermark + 1:
            while self.received.get(self.watermark + 1) == self.clients:
                self.watermark += 1
                del self.received[self.watermark]
            _say(f"ack {self.watermark}")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked single-frame message, as a client must send (RFC 6455, 5.3)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    else:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return header + mask + masked


class _WebSocketClient(asyncio.Protocol):
    """One subscriber: upgrade, subscribe to every stream, then count and time events."""

    def __init__(self, fleet: _Fleet, host: str, port: int, path: str) -> None:
        self.fleet = fleet
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n\r\n"
        ).encode()
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fleet.closed.append(f"connection lost: {exc}")

    def data_received(self, data: bytes) -> None:
        now_ns = time.monotonic_ns()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"upgrade refused: {bytes(buffer[:200])!r}")
            del buffer[: end + 4]
            self.upgraded = True
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            opcode = buffer[offset] & 0x0F
            length = buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                if size - offset < 4:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                start = offset + 4
            elif length == 127:
                if size - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                start = offset + 10
            end = start + length
            if end > size:
                break
            payload = bytes(buffer[start:end])
            offset = end
            if opcode == 0x1:
                self._text(payload, now_ns)
            elif opcode == 0x9:
                assert self.transport is not None
                self.transport.write(_client_frame(0xA, payload))
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                self.fleet.closed.append(f"closed by the server with code {code}")
        del buffer[:offset]

    def _text(self, payload: bytes, now_ns: int) -> None:
        found = _SEQ_AND_TIME.search(payload)
        if found is not None:
            self.fleet.got_event(int(found.group(1)), now_ns - int(found.group(2)))
            return
        control = json.loads(payload).get("control")
        assert self.transport is not None
        if control == "hello":
            subscribe = json.dumps({"action": "subscribe", "streams": "*"}).encode()
            self.transport.write(_client_frame(0x1, subscribe))
        elif control == "live":
            self.fleet.live += 1
            if self.fleet.live == self.fleet.clients:
                self.fleet.all_live.set()


async def run_clients(url: str, clients: int) -> None:
    """The child process: connect `clients`, report `ready`, then acks; answer commands."""
    raise_open_files_limit(clients + 256)
    match = re.fullmatch(r"ws://([^:/]+):(\d+)(/.*)", url)
    assert match is not None, url
    host, port, path = match.group(1), int(match.group(2)), match.group(3)
    loop = asyncio.get_running_loop()
    fleet = _Fleet(clients)
    connecting = asyncio.Semaphore(64)

    async def connect() -> None:
        async with connecting:
            await loop.create_connection(
                lambda: _WebSocketClient(fleet, host, port, path), host, port
            )

    await asyncio.gather(*(connect() for _ in range(clients)))
    await asyncio.wait_for(fleet.all_live.wait(), 60)
    _say("ready")
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while command := (await reader.readline()).decode().strip():
        if command == "reset":
            fleet.latencies_ns = []
            fleet.frames = 0
            _say("reset")
        elif command == "report":
            latencies_s = [value / 1e9 for value in fleet.latencies_ns]
            summary = LatencySummary.of_seconds(latencies_s)
            report = {
                "frames": fleet.frames,
                "p50_ms": summary.p50_ms,
                "p90_ms": summary.p90_ms,
                "p99_ms": summary.p99_ms,
                "max_ms": summary.max_ms,
                "closed": fleet.closed[:5],
                "closed_count": len(fleet.closed),
            }
            _say("report " + json.dumps(report))
        elif command == "quit":
            break


# -- the parent's side ----------------------------------------------------------------------


class ClientProcess:
    """The child process holding the clients of one server, and its ack watermark."""

    def __init__(self, name: str, url: str, clients: int) -> None:
        self.name = name
        self.url = url
        self.clients = clients
        self.watermark = 0
        self.advanced = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None
        self.replies: asyncio.Queue[str] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *python_module(
                "bench.fanout", "--clients-for", self.url, "--clients", str(self.clients)
            ),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        self._reader = asyncio.create_task(self._read())
        ready = await asyncio.wait_for(self.replies.get(), 90)
        if ready != "ready":
            raise RuntimeError(f"{self.name} clients did not start: {ready!r}")

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := (await self.process.stdout.readline()).decode().strip():
            if line.startswith("ack "):
                self.watermark = int(line[4:])
                self.advanced.set()
            else:
                await self.replies.put(line)
        await self.replies.put("exited")

    async def ask(self, command: str) -> str:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return await asyncio.wait_for(self.replies.get(), 60)

    async def wait_for(self, seq: int, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.watermark < seq:
            self.advanced.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: clients stuck at event {self.watermark}/{seq}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.advanced.wait(), remaining)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self.ask("quit")
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()
