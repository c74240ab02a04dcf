"""Webhook intake: signed deliveries/s and ack latency, against a bare aiohttp 202 handler.

What it measures (issue 2, "Must show"; docs/design.md, Data flow of a webhook): `--deliveries`
signed POSTs to `/webhooks/github` from `--senders` concurrent senders (keep-alive
connections, one aiohttp client session in this process), each with its own
X-GitHub-Delivery and a real GitHub payload from tests/fixtures (by default a
`pull_request_review_comment` "created" body, 30 KB). A sender waits for the answer before
sending again, so the figures are throughput and ack latency at that concurrency.

The two servers, each a subprocess on its own loopback port, started before and stopped after:

- ours: `python -m bot` as `make run` starts it (INFO logging with its access log, to a file),
  with a fresh SQLite file in a temporary directory, GITHUB_WEBHOOK_SECRET and
  BIAGENT_API_TOKEN set and nothing else configured. Every accepted delivery is verified,
  committed before its 202 (group commit) and worked by the dispatcher in the background on the
  same core while the load runs, as in production.
- bare: an aiohttp app with one handler that reads the body and answers 202, nothing else
  (no signature check, no storage, no access log): the ceiling for this client on this machine.

Both are measured in the same run, in alternating rounds (bare, ours, bare, ours, ...) after a
warm-up of each, so drift of the machine hits both alike. After each round of ours the bench
waits (GET /api/deliveries) until the dispatcher has worked the burst off, so that its
background work does not slow the next bare round; that time is reported too. On a 2-core
machine the client takes about one core and the server the other. `ratio` is ours/bare
throughput; the server CPU per delivery (all threads, from /proc) is shown beside it. At the
end the server is stopped and the bench counts the deliveries in the SQLite file: every 202
must be a stored row.

Target: ratio >= 0.5 and p99 < 25 ms at 50 senders. Run: `.venv/bin/python -m bench.webhooks`
(`--help` for sizes). The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.common import (
    BENCH_API_TOKEN,
    BENCH_WEBHOOK_SECRET,
    LatencySummary,
    ServerProcess,
    alternating_rounds,
    bench_environment,
    emit_result,
    fixture_bytes,
    free_port,
    print_table,
    python_module,
    raise_open_files_limit,
    ratio_of,
    running,
    scratch_directory,
    sign,
)

TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0
DEFAULT_PAYLOAD = "github/pull_request_review_comment/created.payload.json"


@dataclass
class Measured:
    """What one target did over all its measured rounds."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    server_cpu_s: float = 0.0
    sent: int = 0

    @property
    def per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def cpu_us_per_delivery(self) -> float:
        return self.server_cpu_s / self.sent * 1e6 if self.sent else 0.0


async def send_burst(
    session: aiohttp.ClientSession,
    url: str,
    *,
    body: bytes,
    event: str,
    id_prefix: str,
    count: int,
    senders: int,
    into: Measured | None,
) -> None:
    """`count` deliveries from `senders` concurrent senders; figures go `into` (None: warm-up)."""
    headers_base = {
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": sign(body),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
    }
    issued = 0
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def sender() -> None:
        nonlocal issued
        while issued < count:
            number = issued
            issued += 1
            headers = {**headers_base, "X-GitHub-Delivery": f"{id_prefix}-{number}"}
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
            latencies.append(time.perf_counter() - started)
            statuses[response.status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    elapsed = time.perf_counter() - started
    if into is not None:
        into.latencies_s.extend(latencies)
        into.statuses.update(statuses)
        into.elapsed_s += elapsed
        into.sent += count


async def wait_until_dispatched(
    session: aiohttp.ClientSession, base: str, *, timeout_s: float
) -> tuple[float, dict[str, int]]:
    """Poll GET /api/deliveries until nothing is pending or processing; (seconds, counts)."""
    started = time.perf_counter()
    while True:
        async with session.get(
            f"{base}/api/deliveries",
            params={"limit": "1"},
            headers={"Authorization": f"Bearer {BENCH_API_TOKEN}"},
        ) as response:
            counts: dict[str, int] = (await response.json())["counts"]
        waited = time.perf_counter() - started
        if counts.get("pending", 0) + counts.get("processing", 0) == 0 or waited > timeout_s:
            return waited, counts
        await asyncio.sleep(0.05)


def count_stored(db_path: Path, id_prefix: str) -> tuple[int, dict[str, int]]:
    """Deliveries stored under the bench's ids, and the whole log by status (read-only)."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as connection:
        stored = connection.execute(
            "SELECT COUNT(*) FROM deliveries WHERE source = 'github' AND delivery_id LIKE ?",
            (f"{id_prefix}-%",),
        ).fetchone()[0]
        by_status = dict(
            connection.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
        )
    return int(stored), {str(key): int(value) for key, value in by_status.items()}


def serve_bare(port: int) -> None:
    """The baseline server: read the body, answer 202 (run in its own process)."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=26 * 1024 * 1024)
    app.router.add_post("/webhooks/github", accept)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def run_bench(args: argparse.Namespace) -> dict[str, object]:
    with scratch_directory("biagent-bench-webhooks-", keep=args.keep) as workdir:
        return await measure(args, workdir)


Targets = dict[str, tuple[ServerProcess, str]]  # "bare" and "ours": the server, its base URL


@dataclass(frozen=True, slots=True)
class Load:
    """What every round sends: one fixture body as one event, under ids with this prefix."""

    body: bytes
    event: str
    id_prefix: str


@dataclass
class Run:
    """What the rounds did: each target's figures, and what ours was sent and took to drain."""

    measured: dict[str, Measured]
    sent_to_ours: int = 0
    drain_s: float = 0.0


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    load = Load(
        fixture_bytes(args.payload), Path(args.payload).parent.name, f"bench-{int(time.time())}"
    )
    db_path = workdir / "biagent.db"
    targets = servers(workdir, db_path)
    run = Run({name: Measured() for name in targets})
    per_round = max(1, args.deliveries // args.rounds)
    print(
        f"webhooks: {per_round * args.rounds} deliveries of {load.event} ({len(load.body)} bytes)"
        f" per server from {args.senders} concurrent senders, {args.rounds} rounds each,"
        f" after {args.warmup} warm-up deliveries"
    )
    bare, ours = targets["bare"][0], targets["ours"][0]
    with running(bare, ours):
        for server, base in targets.values():
            await server.wait_healthy(f"{base}/healthz")
        await run_rounds(args, targets, load, run, per_round=per_round)
        ours.stop()
    stored, by_status = count_stored(db_path, load.id_prefix)
    verdict = Verdict.of(run, stored, by_status)
    print_report(verdict)
    return figures_of(verdict, args, payload_bytes=len(load.body))


def servers(workdir: Path, db_path: Path) -> Targets:
    """Ours (`python -m bot` on a fresh SQLite file) and the bare 202 server, not started."""
    ours_port, bare_port = free_port(), free_port()
    ours = ServerProcess(
        "biagent",
        python_module("bot"),
        env=bench_environment(
            {
                "HOST": "127.0.0.1",
                "PORT": str(ours_port),
                "DATABASE_URL": f"sqlite:///{db_path}",
                "GITHUB_WEBHOOK_SECRET": BENCH_WEBHOOK_SECRET,
                "BIAGENT_API_TOKEN": BENCH_API_TOKEN,
                "WORKTREE_ROOT": str(workdir / "worktrees"),
            }
        ),
        log_path=workdir / "biagent.log",
    )
    bare = ServerProcess(
        "bare aiohttp",
        python_module("bench.webhooks", "--serve-bare", str(bare_port)),
        env=bench_environment({}),
        log_path=workdir / "bare.log",
    )
    return {
        "bare": (bare, f"http://127.0.0.1:{bare_port}"),
        "ours": (ours, f"http://127.0.0.1:{ours_port}"),
    }


async def run_rounds(
    args: argparse.Namespace, targets: Targets, load: Load, run: Run, *, per_round: int
) -> None:
    """The warm-up (connections opened, code paths and caches warm), then the measured
    rounds, each server in turn; after each round ours' dispatcher drains."""
    sessions = {
        name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.senders))
        for name in targets
    }
    try:
        for this_round in alternating_rounds(args.rounds, warmup=args.warmup, per_round=per_round):
            for name, (server, base) in targets.items():
                cpu_before = server.cpu_seconds()
                await send_burst(
                    sessions[name],
                    f"{base}/webhooks/github",
                    body=load.body,
                    event=load.event,
                    id_prefix=f"{load.id_prefix}-r{this_round.number}",
                    count=this_round.count,
                    senders=args.senders,
                    into=None if this_round.warmup else run.measured[name],
                )
                if not this_round.warmup:
                    run.measured[name].server_cpu_s += server.cpu_seconds() - cpu_before
            run.sent_to_ours += this_round.count
            # The dispatcher works the burst off in the background; let it finish, so that it
            # does not eat the CPU of the next bare round.
            waited, _ = await wait_until_dispatched(
                sessions["ours"], targets["ours"][1], timeout_s=args.drain_timeout
            )
            if not this_round.warmup:
                run.drain_s += waited
    finally:
        for session in sessions.values():
            await session.close()


@dataclass(frozen=True)
class Verdict:
    """The two servers' figures side by side, what the SQLite file held, and the targets."""

    ours: Measured
    bare: Measured
    ours_latency: LatencySummary
    bare_latency: LatencySummary
    ratio: float
    all_accepted: bool  # every delivery to ours answered 202
    stored: int
    expected_stored: int
    by_status: dict[str, int]
    drain_s: float

    @classmethod
    def of(cls, run: Run, stored: int, by_status: dict[str, int]) -> Verdict:
        ours, bare = run.measured["ours"], run.measured["bare"]
        return cls(
            ours,
            bare,
            LatencySummary.of_seconds(ours.latencies_s),
            LatencySummary.of_seconds(bare.latencies_s),
            ratio_of(ours.per_s, bare.per_s),
            ours.statuses == Counter({202: ours.sent}),
            stored,
            run.sent_to_ours,
            by_status,
            run.drain_s,
        )

    @property
    def durable(self) -> bool:
        return self.stored == self.expected_stored

    @property
    def ok(self) -> bool:
        return (
            self.ratio >= TARGET_RATIO
            and self.ours_latency.p99_ms < TARGET_P99_MS
            and self.durable
            and self.all_accepted
        )


def print_report(verdict: Verdict) -> None:
    print()
    print_table(
        [
            (
                "server",
                "deliveries/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "server CPU µs/delivery",
                "statuses",
            ),
            *(
                (
                    name,
                    f"{figures.per_s:.0f}",
                    latency.p50_ms,
                    latency.p90_ms,
                    latency.p99_ms,
                    latency.max_ms,
                    f"{figures.cpu_us_per_delivery:.0f}",
                    " ".join(f"{code}x{n}" for code, n in sorted(figures.statuses.items())),
                )
                for name, figures, latency in (
                    ("bare aiohttp 202", verdict.bare, verdict.bare_latency),
                    ("biagent", verdict.ours, verdict.ours_latency),
                )
            ),
        ]
    )
    print()
    print(f"  ratio ours/bare throughput: {verdict.ratio:.2f} (target >= {TARGET_RATIO})")
    print(
        f"  biagent p99 ack latency:    {verdict.ours_latency.p99_ms} ms"
        f" (target < {TARGET_P99_MS} ms)"
    )
    print(
        f"  durably stored:             {verdict.stored}/{verdict.expected_stored} deliveries"
        f" in the SQLite file after shutdown ({'all' if verdict.durable else 'MISSING SOME'});"
        f" by status: {verdict.by_status}"
    )
    print(
        f"  dispatcher:                 worked the rest of each burst off within"
        f" {verdict.drain_s:.1f} s in all after the last ack"
    )


def figures_of(
    verdict: Verdict, args: argparse.Namespace, *, payload_bytes: int
) -> dict[str, object]:
    """The bench's last line."""
    return {
        "bench": "webhooks",
        "ratio": round(verdict.ratio, 3),
        "target": TARGET_RATIO,
        "p50_ms": verdict.ours_latency.p50_ms,
        "p99_ms": verdict.ours_latency.p99_ms,
        "target_p99_ms": TARGET_P99_MS,
        "per_s": round(verdict.ours.per_s, 1),
        "bare_per_s": round(verdict.bare.per_s, 1),
        "bare_p99_ms": verdict.bare_latency.p99_ms,
        "senders": args.senders,
        "deliveries": verdict.ours.sent,
        "payload_bytes": payload_bytes,
        "stored": verdict.stored,
        "expected_stored": verdict.expected_stored,
        "all_accepted": verdict.all_accepted,
        "processed": verdict.by_status.get("done", 0),
        "drain_s": round(verdict.drain_s, 2),
        "ok": verdict.ok,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhooks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--deliveries", type=int, default=6000, help="measured, per server")
    parser.add_argument("--senders", type=int, default=50, help="concurrent senders")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured, per server")
    parser.add_argument(
        "--payload", default=DEFAULT_PAYLOAD, help="fixture under tests/fixtures (event = folder)"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=30.0, help="seconds to wait for the dispatcher"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_bare is not None:
        serve_bare(args.serve_bare)
        return 0
    raise_open_files_limit(4096)
    figures = asyncio.run(run_bench(args))
    emit_result(figures)
    # A missed speed target is reported in the JSON; a lost delivery is a failure.
    correct = figures["stored"] == figures["expected_stored"] and figures["all_accepted"]
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
