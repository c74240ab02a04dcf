"""WebSocket fan-out: 500 live clients, one publisher, against a bare aiohttp broadcast loop.

What it measures (issue 2, "Must show"; docs/design.md, Events): `--clients` WebSocket clients
subscribed to every stream of `/ws` (token as `?token=`, `{"action": "subscribe", "streams":
"*"}`, then `{"control": "live"}`), while one publisher calls `bus.publish("bench",
"worktree_status", ...)` on the running app: each event is stored in the events table
(group commit) and fanned out to every client by the app's own per-client sender tasks. Each
event carries its sequence number and the publisher's CLOCK_MONOTONIC time, which is
system-wide on Linux, so a client in another process measures publish-to-receive latency
directly.

The baseline is a bare aiohttp WebSocket server in the same process that, for each message,
runs `for ws in sockets: await ws.send_str(text)` with the same envelope: no storage, no
subscriptions, no per-client queue.

Method, on a 2-core machine:

- This process runs both servers (ours through `web.app.create_app` with a fresh SQLite file,
  on its own loopback port; the bare one on another) and the publisher, on one event loop:
  the publisher shares the loop with the bus, as features do in the service.
- The clients run in one child process per server (`python -m bench.fanout --clients-for
  URL`), so the server process gets one core and the clients the other. They are raw asyncio
  protocols speaking just enough RFC 6455 (handshake, unmasked server frames, masked pong and
  subscribe frames): a full client library per socket would make the 500 clients, not the
  server, the bottleneck. The child tells the parent over its stdout when every client has
  every event up to N ("ack N").
- The publisher keeps at most `--window` events not yet received by every client: enough to
  keep the server busy all the time (so events/s is its capacity), few enough that no queue
  grows (so the latency is that of a loaded server, not of a backlog). The two servers are
  measured in alternating rounds after a warm-up.

`per_s` is event deliveries per second (events x clients that got them), `ratio` ours/bare.
Target: ratio >= 0.6 and p99 publish-to-receive < 100 ms. Run:
`.venv/bin/python -m bench.fanout` (`--help` for sizes); the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from bench.common import (
    BENCH_API_TOKEN,
    LatencySummary,
    emit_result,
    free_port,
    print_table,
    python_module,
    raise_open_files_limit,
    scratch_directory,
    serve_app,
)
from bot.worktrees.events import WorktreeStatus
from bot.worktrees.states import ProgressKind

TARGET_RATIO = 0.6
TARGET_P99_MS = 100.0
STREAM = "bench"
_SEQ_AND_TIME = re.compile(rb"seq=(\d+) sent_ns=(\d+)")


# -- the clients (child process) -------------------------------------------------------------


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


# -- the servers and the publisher (this process) --------------------------------------------


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


Publish = Callable[[int], Awaitable[None]]


def envelope_data(seq: int) -> WorktreeStatus:
    """The event: a valid worktree_status whose detail carries the seq and send time."""
    return WorktreeStatus(
        session_id="bench",
        status=ProgressKind.SETUP_OUTPUT,
        detail=f"seq={seq} sent_ns={time.monotonic_ns()}",
    )


async def start_ours(workdir: Path, port: int) -> tuple[web.AppRunner, Publish]:
    from web.keys import SERVICES

    runner, app = await serve_app(workdir, port, backlog=1024)
    bus = app[SERVICES].bus

    async def publish(seq: int) -> None:
        await bus.publish(STREAM, envelope_data(seq))

    return runner, publish


async def start_bare(port: int) -> tuple[web.AppRunner, Publish]:
    """The baseline: keep every subscribed socket, send each message to all of them."""
    sockets: list[web.WebSocketResponse] = []
    counter = 0

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"control": "hello"}))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT and '"subscribe"' in message.data:
                    sockets.append(ws)
                    await ws.send_str(json.dumps({"control": "live"}))
        finally:
            with contextlib.suppress(ValueError):
                sockets.remove(ws)
        return ws

    async def publish(seq: int) -> None:
        nonlocal counter
        counter += 1
        data = msgspec.json.encode(envelope_data(seq)).decode()
        text = (
            f'{{"id":{counter},"type":"worktree_status","stream":"{STREAM}",'
            f'"ts":"2026-01-01T00:00:00.000000Z","data":{data}}}'
        )
        for ws in tuple(sockets):
            await ws.send_str(text)

    app = web.Application()
    app.router.add_get("/ws", websocket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    return runner, publish


@dataclass
class Measured:
    events: int = 0
    frames: int = 0
    elapsed_s: float = 0.0
    server_cpu_s: float = 0.0
    report: dict[str, Any] | None = None  # the clients' figures over all measured rounds

    @property
    def per_s(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s else 0.0


async def publish_window(
    publish: Publish, clients: ClientProcess, *, first_seq: int, events: int, window: int
) -> float:
    """Publish `events` keeping at most `window` not yet received by all; seconds taken."""
    started = time.perf_counter()
    for seq in range(first_seq, first_seq + events):
        if seq - clients.watermark > window:
            await clients.wait_for(seq - window, timeout_s=30)
        await publish(seq)
    await clients.wait_for(first_seq + events - 1, timeout_s=30)
    return time.perf_counter() - started


async def run_bench(args: argparse.Namespace) -> dict[str, object]:
    raise_open_files_limit(2 * args.clients + 512)
    with scratch_directory("biagent-bench-fanout-", keep=args.keep) as workdir:
        return await measure(args, workdir)


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    ours_port, bare_port = free_port(), free_port()
    ours_runner, ours_publish = await start_ours(workdir, ours_port)
    bare_runner, bare_publish = await start_bare(bare_port)
    targets = {
        "bare": (
            bare_publish,
            ClientProcess("bare", f"ws://127.0.0.1:{bare_port}/ws", args.clients),
        ),
        "ours": (
            ours_publish,
            ClientProcess(
                "biagent", f"ws://127.0.0.1:{ours_port}/ws?token={BENCH_API_TOKEN}", args.clients
            ),
        ),
    }
    measured = {name: Measured() for name in targets}
    per_round = max(1, args.events // args.rounds)
    print(
        f"fanout: {args.clients} WebSocket clients per server, {per_round * args.rounds} events"
        f" per server in {args.rounds} alternating rounds, at most {args.window} events in"
        f" flight, after {args.warmup} warm-up events"
    )
    next_seq = dict.fromkeys(targets, 1)
    try:
        for _, clients in targets.values():
            await clients.start()
        for round_number in range(-1, args.rounds):
            count = args.warmup if round_number < 0 else per_round
            for name, (publish, clients) in targets.items():
                cpu_before = time.process_time()
                elapsed = await publish_window(
                    publish, clients, first_seq=next_seq[name], events=count, window=args.window
                )
                cpu_used = time.process_time() - cpu_before
                next_seq[name] += count
                report = json.loads((await clients.ask("report")).removeprefix("report "))
                if round_number < 0:
                    await clients.ask("reset")  # the warm-up does not count
                    continue
                figures = measured[name]
                figures.events += count
                figures.frames = int(report["frames"])  # the clients count since the reset
                figures.elapsed_s += elapsed
                figures.server_cpu_s += cpu_used
                figures.report = report
    finally:
        for _, clients in targets.values():
            await clients.stop()
        await ours_runner.cleanup()
        await bare_runner.cleanup()

    def latency(name: str, key: str) -> float:
        report = measured[name].report
        return float(report[key]) if report else float("nan")

    ours_figures, bare_figures = measured["ours"], measured["bare"]
    ratio = ours_figures.per_s / bare_figures.per_s if bare_figures.per_s else 0.0
    ours_p99 = latency("ours", "p99_ms")
    complete = all(figures.frames == figures.events * args.clients for figures in measured.values())
    closed = int((ours_figures.report or {}).get("closed_count", 0))
    ok = ratio >= TARGET_RATIO and ours_p99 < TARGET_P99_MS and complete

    print()
    print_table(
        [
            (
                "server",
                "deliveries/s",
                "events/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "CPU µs/delivery",
            ),
            *(
                (
                    label,
                    f"{figures.per_s:.0f}",
                    f"{figures.events_per_s:.1f}",
                    latency(name, "p50_ms"),
                    latency(name, "p90_ms"),
                    latency(name, "p99_ms"),
                    latency(name, "max_ms"),
                    f"{figures.server_cpu_s / figures.frames * 1e6:.1f}" if figures.frames else "-",
                )
                for name, label, figures in (
                    ("bare", "bare aiohttp broadcast", bare_figures),
                    ("ours", "biagent bus + /ws", ours_figures),
                )
            ),
        ]
    )
    print()
    print(f"  ratio ours/bare deliveries/s: {ratio:.2f} (target >= {TARGET_RATIO})")
    print(f"  biagent p99 publish-to-receive: {ours_p99} ms (target < {TARGET_P99_MS} ms)")
    print(
        f"  every client got every event: {'yes' if complete else 'NO'};"
        f" connections closed by biagent: {closed}"
    )
    print("  (CPU: of this process, which runs the servers and the publisher)")
    return {
        "bench": "fanout",
        "ratio": round(ratio, 3),
        "target": TARGET_RATIO,
        "p50_ms": latency("ours", "p50_ms"),
        "p99_ms": ours_p99,
        "target_p99_ms": TARGET_P99_MS,
        "per_s": round(ours_figures.per_s, 1),
        "events_per_s": round(ours_figures.events_per_s, 1),
        "bare_per_s": round(bare_figures.per_s, 1),
        "bare_p99_ms": latency("bare", "p99_ms"),
        "clients": args.clients,
        "events": ours_figures.events,
        "window": args.window,
        "complete": complete,
        "ok": ok,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--clients", type=int, default=500, help="WebSocket clients per server")
    parser.add_argument("--events", type=int, default=600, help="measured events per server")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured events per server")
    parser.add_argument(
        "--window", type=int, default=4, help="events in flight (not yet received by all)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--clients-for", metavar="URL", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.clients_for is not None:
        asyncio.run(run_clients(args.clients_for, args.clients))
        return 0
    figures = asyncio.run(run_bench(args))
    emit_result(figures)
    # A missed speed target is reported in the JSON; a lost event is a failure.
    return 0 if figures["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
