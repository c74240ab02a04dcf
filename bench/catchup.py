"""Catch-up of a reconnecting WebSocket client: snapshot + tail beside replaying every delta.

What it measures (issue 11, "Must show"): a client follows `--streams` (20) agent streams on
`/ws` (the streams of 20 pipelines), goes away, and while it is away N tokens are streamed
over those streams and `--events` (10,000) events are published on them. It reconnects and
resumes from its last id.
Figures: the time from the start of its reconnect until it is current (the `live` control
frame, after the replay of the events, one `token_catchup` per stream and the `state`
frames) and the bytes it was sent, beside a baseline that replays every delta.

Method:

- Each size N (`--sizes`, default 10,000 and 100,000 tokens) gets a fresh SQLite file and the
  real app (`web.app.create_app`) served on a loopback port by aiohttp's AppRunner, in this
  process. The load goes through the real code paths: one `TokenCoalescer` per stream (frames
  of 100 ms, stored in token_buffer, snapshots merged every 500 ms into token_blocks) and
  `bus.publish` for the events. The model's pace is simulated: each stream has its own
  clock advancing 20 ms per token (50 tokens/s), so the frames and merges are those of a
  real stream; the streams and the publisher run concurrently, sharing the group commit.
  A stream's text comes in content blocks of `--block-tokens` (300) tokens, as a turn's
  text block does; when the client comes back every stream is in a running block (200
  tokens into it at the default sizes), as an agent still streaming is.
- The baseline server (another loopback port, same process, same database) answers the same
  subscribe with the same event replay, then every token frame the client missed, each as its
  own `token` frame (what the client would get by replaying the token buffer's deltas: the
  frames it would have received live), then `live`; each frame sent within the send timeout,
  as /ws sends.
- The client is aiohttp's WebSocket client. Each reconnect checks what it got: every missed
  event once, in order; from us, per stream, a catch-up whose text is the running block's
  exactly; from the baseline, per stream, the whole text streamed. `--rounds` (7) reconnects
  per server and size, in alternating rounds with every size's servers up at once (so the
  machine's load falls on all alike), after a warm-up round; medians are reported.

`bytes` counts the payload of the frames received (UTF-8), the WebSocket framing aside.
`flatness` is our time at the largest size over our time at the smallest (target: within
20% of 1, and the same for bytes); `catchup_ms` is ours at the largest size (target:
< 250 ms). Run: `.venv/bin/python -m bench.catchup` (`--help` for sizes); the last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from bench.common import (
    BENCH_API_TOKEN,
    emit_result,
    free_port,
    print_table,
    scratch_directory,
    serve_app,
)

TARGET_MS = 250.0
TARGET_FLATNESS = 0.2  # within 20% of 1
LIVE = '{"control":"live"'  # both servers send it compact
SEND_TIMEOUT_S = 10.0  # WS_SEND_TIMEOUT's default
TOKEN_S = 0.02  # a stream's pace: 50 tokens/s
WORDS = ("the ", "change ", "keeps ", "tests ", "green; ", "next ", "I ", "edit ", "app.py ")


class StreamClock:
    """One stream's simulated time: it moves only as the stream's tokens arrive."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.elapsed = 0.0

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


@dataclass
class World:
    """One size: the app, the baseline beside it, and what the client must end up with."""

    url: str
    baseline_url: str
    streams: list[str]
    since: int = 0
    missed_events: int = 0
    running_text: dict[str, str] = field(default_factory=dict)
    whole_text: dict[str, str] = field(default_factory=dict)


@dataclass
class Reconnect:
    ms: float  # from the start of the reconnect to `live`
    bytes: int
    frames: int
    tokens_ms: float  # from the first frame after the replayed events to `live`
    tokens_bytes: int  # of those frames: token catch-up and state, or token deltas


# -- the servers ------------------------------------------------------------------------------


async def start_baseline(services: Any, port: int) -> web.AppRunner:
    """The same replay of events, then every missed token frame as its own frame."""
    from bot.agents.events import Token
    from storage import events as event_store
    from storage import token_buffer

    bus = services.bus

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        subscribe = json.loads((await ws.receive()).data)
        streams, last = frozenset(subscribe["streams"]), int(subscribe["since"])

        async def send(text: str) -> None:  # as /ws sends: each frame within the send timeout
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await ws.send_frame(text.encode("utf-8"), WSMsgType.TEXT)

        while page := await event_store.envelopes_since(bus.db, last, streams=streams, limit=500):
            for event_id, envelope in page:
                await send(envelope)
                last = event_id
        for stream in sorted(streams):
            after = 0
            while frames := await token_buffer.after(bus.db, stream, after, now=bus.clock.now()):
                for frame in frames:
                    token = Token(seq=frame.seq, text=frame.text)
                    await send(bus.transient_frame(stream, token, seq=frame.seq).text)
                    after = frame.seq
        await send(json.dumps({"control": "live", "last_id": last}, separators=(",", ":")))
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/ws", websocket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


# -- the load while the client is away ---------------------------------------------------------


async def stream_tokens(
    services: Any, world: World, stream: str, tokens: int, block_tokens: int
) -> None:
    from bot.agents.tokens import TokenCoalescer, TokenSequence
    from storage.token_blocks import BlockState

    clock = StreamClock(datetime.now(UTC))
    coalescer = TokenCoalescer(TokenSequence(services.db), services.bus, clock, stream)
    whole: list[str] = []
    block: list[str] = []
    for n in range(tokens):
        word = WORDS[n % len(WORDS)]
        whole.append(word)
        block.append(word)
        await coalescer.add(word)
        clock.elapsed += TOKEN_S
        if len(block) == block_tokens and n < tokens - 1:  # the last block stays running
            await coalescer.end_block(BlockState.COMPLETED)
            block = []
    await coalescer.flush()  # what the last interval gathered; the block stays running
    world.whole_text[stream] = "".join(whole)
    world.running_text[stream] = "".join(block)


async def publish_events(services: Any, world: World, count: int) -> None:
    from bot.agents.events import ToolCallStarted

    for n in range(count):
        stream = world.streams[n % len(world.streams)]
        arguments = {"command": f"pytest -q tests/test_module_{n % 97}.py -k case_{n}"}
        event = ToolCallStarted(call_id=n, tool="bash", arguments=arguments, run_id=1, agent="dev")
        await services.bus.publish(stream, event)


async def load(services: Any, world: World, tokens: int, events: int, block_tokens: int) -> float:
    started = time.perf_counter()
    per_stream = tokens // len(world.streams)
    work = [stream_tokens(services, world, s, per_stream, block_tokens) for s in world.streams]
    await asyncio.gather(publish_events(services, world, events), *work)
    world.missed_events = events
    return time.perf_counter() - started


# -- the client --------------------------------------------------------------------------------


async def reconnect(
    session: aiohttp.ClientSession, url: str, world: World
) -> tuple[Reconnect, list[str]]:
    """Resume from the last id; time and bytes until `live`, and the frames received."""
    subscribe = {"action": "subscribe", "streams": world.streams, "since": world.since}
    received: list[str] = []
    started = time.perf_counter()
    after_events: float | None = None
    async with session.ws_connect(url, params={"token": BENCH_API_TOKEN}) as ws:
        await ws.send_str(json.dumps(subscribe))
        async for message in ws:
            received.append(message.data)
            if after_events is None and message.data.startswith(('{"id":null', LIVE)):
                after_events = time.perf_counter()
            if message.data.startswith(LIVE):
                break
        ended = time.perf_counter()
    payload = sum(len(text.encode("utf-8")) for text in received)
    tokens_ms = (ended - (after_events or ended)) * 1000
    tokens_bytes = sum(
        len(text.encode("utf-8")) for text in received if text.startswith('{"id":null')
    )
    figures = Reconnect((ended - started) * 1000, payload, len(received), tokens_ms, tokens_bytes)
    return figures, received


def check(received: list[str], world: World, *, ours: bool) -> None:
    """Every missed event once and in order, and each stream's text as it must be."""
    frames = [json.loads(text) for text in received]
    ids = [frame["id"] for frame in frames if frame.get("id") is not None]
    if len(ids) != world.missed_events or ids != sorted(set(ids)):
        raise AssertionError(f"{len(ids)} of {world.missed_events} events, or not in order")
    texts: dict[str, str] = {}
    for frame in frames:
        if frame.get("type") == "token_catchup":
            data = frame["data"]
            tail = "".join(piece["text"] for piece in data["tail"])
            texts[frame["stream"]] = data["snapshot"]["text"] + tail
        elif frame.get("type") == "token":
            texts[frame["stream"]] = texts.get(frame["stream"], "") + frame["data"]["text"]
    wanted = world.running_text if ours else world.whole_text
    for stream in world.streams:
        if texts.get(stream) != wanted[stream]:
            raise AssertionError(f"{stream}: the caught-up text is not the streamed text")


async def away(session: aiohttp.ClientSession, world: World) -> None:
    """The client's first visit: subscribe, note the last id, leave."""
    async with session.ws_connect(world.url, params={"token": BENCH_API_TOKEN}) as ws:
        hello = json.loads((await ws.receive()).data)
        world.since = hello["last_id"]
        await ws.send_str(json.dumps({"action": "subscribe", "streams": world.streams}))
        while not (await ws.receive()).data.startswith(LIVE):
            pass


# -- one size ----------------------------------------------------------------------------------


@dataclass
class SizeResult:
    tokens: int
    load_s: float
    ours: list[Reconnect]
    baseline: list[Reconnect]

    def median(self, which: str, figure: str) -> float:
        runs: list[Reconnect] = getattr(self, which)
        return float(statistics.median(getattr(run, figure) for run in runs))


async def make_pipelines(services: Any, count: int) -> list[int]:
    """The followed streams are pipelines', so the resume ends with their `state` frames."""
    from storage import pipelines

    made = []
    for n in range(count):
        pipeline = await pipelines.create_pipeline(
            services.db,
            ticket_key=f"BENCH-{n + 1}",
            repositories=["octo/repo"],
            trigger="api",
            created_by=None,
            now=datetime.now(UTC),
        )
        made.append(pipeline.id)
    return made


@contextlib.asynccontextmanager
async def size_world(workdir: Path, streams: int) -> AsyncIterator[tuple[World, Any]]:
    port, baseline_port = free_port(), free_port()
    from web.keys import SERVICES

    runner, app = await serve_app(workdir, port)
    services = app[SERVICES]
    baseline = await start_baseline(services, baseline_port)
    names = [f"pipeline:{pipeline_id}" for pipeline_id in await make_pipelines(services, streams)]
    world = World(f"http://127.0.0.1:{port}/ws", f"http://127.0.0.1:{baseline_port}/ws", names)
    try:
        yield world, services
    finally:
        await baseline.cleanup()
        await runner.cleanup()


async def prepare_size(
    args: argparse.Namespace, tokens: int, workdir: Path, stack: contextlib.AsyncExitStack
) -> tuple[World, float]:
    """A size's servers, the client's first visit, and the load while it is away."""
    workdir.mkdir()
    world, services = await stack.enter_async_context(size_world(workdir, args.streams))
    async with aiohttp.ClientSession() as session:
        await away(session, world)
    load_s = await load(services, world, tokens, args.events, args.block_tokens)
    return world, load_s


async def measure(args: argparse.Namespace, workdir: Path) -> list[SizeResult]:
    """Every size's servers stay up and are measured in alternating rounds (ours, then the
    baseline, size after size), so the machine's load falls on all of them alike."""
    async with contextlib.AsyncExitStack() as stack:
        worlds: list[World] = []
        results: list[SizeResult] = []
        for tokens in args.sizes:
            print(f"== {tokens:,} tokens over {args.streams} streams, {args.events:,} events")
            world, load_s = await prepare_size(args, tokens, workdir / f"tokens-{tokens}", stack)
            worlds.append(world)
            results.append(SizeResult(tokens, load_s, [], []))
        async with aiohttp.ClientSession() as session:
            for round_number in range(args.rounds + 1):  # the first round warms up
                for world, result in zip(worlds, results, strict=True):
                    got, received = await reconnect(session, world.url, world)
                    check(received, world, ours=True)
                    replayed, received = await reconnect(session, world.baseline_url, world)
                    check(received, world, ours=False)
                    if round_number:
                        result.ours.append(got)
                        result.baseline.append(replayed)
    return results


# -- the report --------------------------------------------------------------------------------


def report(results: list[SizeResult], args: argparse.Namespace) -> dict[str, Any]:
    small, large = results[0], results[-1]
    rows: list[list[Any]] = [
        ["", "load s", "ours ms", "(tokens)", "ours KB", "replay ms", "(tokens)", "replay KB"]
    ]
    for result in results:
        rows.append(
            [
                f"{result.tokens:,} tokens",
                round(result.load_s, 1),
                round(result.median("ours", "ms"), 1),
                round(result.median("ours", "tokens_ms"), 1),
                round(result.median("ours", "bytes") / 1024, 1),
                round(result.median("baseline", "ms"), 1),
                round(result.median("baseline", "tokens_ms"), 1),
                round(result.median("baseline", "bytes") / 1024, 1),
            ]
        )
    print(
        f"\ncatch-up after {args.events:,} events over {args.streams} streams"
        f" (median of {args.rounds} reconnects each):"
    )
    print_table(rows)
    print("  (tokens): the part after the replayed events: token catch-up and state, or deltas")
    catchup_ms = large.median("ours", "ms")
    flatness = catchup_ms / small.median("ours", "ms")
    bytes_flatness = large.median("ours", "bytes") / small.median("ours", "bytes")
    ok = (
        catchup_ms < TARGET_MS
        and abs(flatness - 1) <= TARGET_FLATNESS
        and abs(bytes_flatness - 1) <= TARGET_FLATNESS
    )
    return {
        "bench": "catchup",
        "tokens": large.tokens,
        "events": args.events,
        "streams": args.streams,
        "catchup_ms": round(catchup_ms, 1),
        "replay_ms": round(large.median("baseline", "ms"), 1),
        "bytes": int(large.median("ours", "bytes")),
        "replay_bytes": int(large.median("baseline", "bytes")),
        "bytes_ratio_vs_replay": round(
            large.median("ours", "bytes") / large.median("baseline", "bytes"), 3
        ),
        "time_ratio_vs_replay": round(catchup_ms / large.median("baseline", "ms"), 3),
        "flatness": round(flatness, 3),
        "bytes_flatness": round(bytes_flatness, 3),
        "small_tokens": small.tokens,
        "small_catchup_ms": round(small.median("ours", "ms"), 1),
        "tokens_part_ms": round(large.median("ours", "tokens_ms"), 2),
        "replay_tokens_part_ms": round(large.median("baseline", "tokens_ms"), 2),
        "tokens_part_bytes": int(large.median("ours", "tokens_bytes")),
        "replay_tokens_part_bytes": int(large.median("baseline", "tokens_bytes")),
        "tokens_part_flatness": round(
            large.median("ours", "tokens_ms") / small.median("ours", "tokens_ms"), 3
        ),
        "target_ms": TARGET_MS,
        "ok": ok,
    }


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    with scratch_directory("biagent-catchup-", keep=args.keep) as workdir:
        results = await measure(args, workdir)
    return report(results, args)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.catchup", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 100_000], help="tokens streamed away"
    )
    parser.add_argument("--streams", type=int, default=20, help="agent streams followed")
    parser.add_argument("--events", type=int, default=10_000, help="events published away")
    parser.add_argument("--block-tokens", type=int, default=300, help="tokens per text block")
    parser.add_argument("--rounds", type=int, default=7, help="measured reconnects per server")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = asyncio.run(run_bench(args))
    emit_result(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
