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
  URL`, bench/_ws_clients.py), so the server process gets one core and the clients the
  other. They are raw asyncio protocols speaking just enough RFC 6455 (handshake, unmasked
  server frames, masked pong and subscribe frames): a full client library per socket would
  make the 500 clients, not the server, the bottleneck. The child tells the parent over its
  stdout when every client has every event up to N ("ack N").
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
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from bench._ws_clients import ClientProcess, run_clients
from bench.common import (
    BENCH_API_TOKEN,
    alternating_rounds,
    emit_result,
    free_port,
    print_table,
    raise_open_files_limit,
    ratio_of,
    scratch_directory,
    serve_app,
)
from bot.worktrees.events import WorktreeStatus
from bot.worktrees.states import ProgressKind

TARGET_RATIO = 0.6
TARGET_P99_MS = 100.0
STREAM = "bench"

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

    def add_round(
        self, events: int, report: dict[str, Any], *, elapsed_s: float, cpu_s: float
    ) -> None:
        self.events += events
        self.frames = int(report["frames"])  # the clients count since the reset
        self.elapsed_s += elapsed_s
        self.server_cpu_s += cpu_s
        self.report = report

    def latency(self, key: str) -> float:
        """One of the clients' latency figures (`p99_ms`...); NaN before any round."""
        return float(self.report[key]) if self.report else float("nan")


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


Targets = dict[str, tuple[Publish, ClientProcess]]


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    ours_port, bare_port = free_port(), free_port()
    ours_runner, ours_publish = await start_ours(workdir, ours_port)
    bare_runner, bare_publish = await start_bare(bare_port)
    targets: Targets = {
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
    try:
        for _, clients in targets.values():
            await clients.start()
        await run_rounds(args, targets, measured, per_round=per_round)
    finally:
        for _, clients in targets.values():
            await clients.stop()
        await ours_runner.cleanup()
        await bare_runner.cleanup()
    verdict = Verdict.of(measured["ours"], measured["bare"], clients=args.clients)
    print_report(verdict)
    return figures_of(verdict, args)


async def run_rounds(
    args: argparse.Namespace, targets: Targets, measured: dict[str, Measured], *, per_round: int
) -> None:
    """The warm-up, then the measured rounds, each server in turn with the same events."""
    next_seq = dict.fromkeys(targets, 1)
    for this_round in alternating_rounds(args.rounds, warmup=args.warmup, per_round=per_round):
        for name, (publish, clients) in targets.items():
            cpu_before = time.process_time()
            elapsed = await publish_window(
                publish,
                clients,
                first_seq=next_seq[name],
                events=this_round.count,
                window=args.window,
            )
            cpu_used = time.process_time() - cpu_before
            next_seq[name] += this_round.count
            report = json.loads((await clients.ask("report")).removeprefix("report "))
            if this_round.warmup:
                await clients.ask("reset")  # the warm-up does not count
                continue
            measured[name].add_round(this_round.count, report, elapsed_s=elapsed, cpu_s=cpu_used)


@dataclass(frozen=True)
class Verdict:
    """The two servers' figures side by side, and whether ours meets the targets."""

    ours: Measured
    bare: Measured
    ratio: float
    complete: bool  # every client got every event, from both servers
    closed: int  # connections biagent closed

    @classmethod
    def of(cls, ours: Measured, bare: Measured, *, clients: int) -> Verdict:
        return cls(
            ours,
            bare,
            ratio_of(ours.per_s, bare.per_s),
            all(figures.frames == figures.events * clients for figures in (bare, ours)),
            int((ours.report or {}).get("closed_count", 0)),
        )

    @property
    def ok(self) -> bool:
        return (
            self.ratio >= TARGET_RATIO
            and self.ours.latency("p99_ms") < TARGET_P99_MS
            and self.complete
        )


def print_report(verdict: Verdict) -> None:
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
                    figures.latency("p50_ms"),
                    figures.latency("p90_ms"),
                    figures.latency("p99_ms"),
                    figures.latency("max_ms"),
                    f"{figures.server_cpu_s / figures.frames * 1e6:.1f}" if figures.frames else "-",
                )
                for label, figures in (
                    ("bare aiohttp broadcast", verdict.bare),
                    ("biagent bus + /ws", verdict.ours),
                )
            ),
        ]
    )
    print()
    print(f"  ratio ours/bare deliveries/s: {verdict.ratio:.2f} (target >= {TARGET_RATIO})")
    print(
        f"  biagent p99 publish-to-receive: {verdict.ours.latency('p99_ms')} ms"
        f" (target < {TARGET_P99_MS} ms)"
    )
    print(
        f"  every client got every event: {'yes' if verdict.complete else 'NO'};"
        f" connections closed by biagent: {verdict.closed}"
    )
    print("  (CPU: of this process, which runs the servers and the publisher)")


def figures_of(verdict: Verdict, args: argparse.Namespace) -> dict[str, object]:
    """The bench's last line."""
    ours, bare = verdict.ours, verdict.bare
    return {
        "bench": "fanout",
        "ratio": round(verdict.ratio, 3),
        "target": TARGET_RATIO,
        "p50_ms": ours.latency("p50_ms"),
        "p99_ms": ours.latency("p99_ms"),
        "target_p99_ms": TARGET_P99_MS,
        "per_s": round(ours.per_s, 1),
        "events_per_s": round(ours.events_per_s, 1),
        "bare_per_s": round(bare.per_s, 1),
        "bare_p99_ms": bare.latency("p99_ms"),
        "clients": args.clients,
        "events": ours.events,
        "window": args.window,
        "complete": verdict.complete,
        "ok": verdict.ok,
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
