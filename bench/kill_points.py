"""Kill points: `kill -9` the real server at random moments of webhook bursts, restart it, and
count what became of every delivery (issue 12, "The project checks itself").

What (docs/design.md, Data flow of a webhook; Storage: "a killed process must lose nothing"):
`--senders` (20) concurrent senders post signed GitHub deliveries to `python -m bot` in bursts
(`--burst` 200 deliveries every `--period` 0.5 s), each with its own X-GitHub-Delivery (a UUID
from a seeded generator) and the body of a real payload from tests/fixtures/github, in turn:
`ping`, `pull_request_review_comment` (a no-op of the reviews concern without a GitHub App),
`installation` created and `installation_repositories` added, the last two rewritten to an
installation and a repository of their own, so that what their handler writes is counted per
delivery. The server has a fresh SQLite file, GITHUB_WEBHOOK_SECRET and BIAGENT_API_TOKEN and
nothing else configured. At `--kills` (20) random moments, seeded by `--seed` (a delay after
the server answered /healthz, uniform up to `--max-uptime` 2 s), it gets SIGKILL and is started
again at once on the same database and port; the senders carry on. A failed request
(connection refused or reset, a 5xx, a timeout) is sent again with the same delivery id and
body, as GitHub's redelivery does (bench/_github_senders.py); a 2xx acknowledges a delivery.
After the last kill the senders go on for one more random moment and stop; the last server
works its backlog off (GET /api/deliveries until nothing is pending, processing or failed) and
is stopped with SIGTERM. The bench then reads the SQLite file and counts, of the acknowledged:

- lost: not in the delivery log;
- doubled: worked twice, seen two ways. Done twice: more than one `delivery_processed` event
  with status done (it commits with the `done` mark). Announced twice: more than one
  `installation_updated` event on the delivery's own installation stream; the handler writes
  it in a commit of its own before the `done` mark, so a handler that ran to its end twice
  shows (its rows are upserts and look the same after two runs: the event is what counts);
- unworked: done, yet the handler's installation, repository or announcement is missing;
- stuck: stored but not `done` or `dead` once the server settled;
- reworked (not a defect): claimed more than once (`attempts` > 1), that is caught mid-work by
  a kill and resumed by the next run (at-least-once, by design).

Against: first, on a database of its own, the same server, senders and mix without a kill and
without pauses (`--baseline` 2000 deliveries): deliveries per second end to end (from the first
sent to the last worked) beside the same figure over the kill phase, restarts included.

Target: lost = 0, doubled = 0, stuck = 0 (and unworked = 0) over 20 kill points. Run:
`.venv/bin/python -m bench.kill_points` (`--help` for the options); the last line is one JSON
object with the figures; the exit status is non-zero when a target is missed (that is a bug).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import random
import signal
import sqlite3
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench._github_senders import Delivery, Senders, Sending
from bench.common import (
    BENCH_API_TOKEN,
    BENCH_WEBHOOK_SECRET,
    ServerProcess,
    bench_environment,
    emit_result,
    fixture_bytes,
    free_port,
    python_module,
    raise_open_files_limit,
    scratch_directory,
)

FINAL_STATUSES = frozenset({"done", "dead"})
UNSETTLED_STATUSES = ("pending", "processing", "failed")
INSTALLATION_BASE = 70_000_000
REPOSITORY_BASE = 80_000_000


class Payloads:
    """The mix of real payloads, in turn; each delivery gets its own id (and installation)."""

    def __init__(self, id_seed: str) -> None:
        self._ids = random.Random(id_seed)
        self._ping = fixture_bytes("github/ping/payload.json")
        self._comment = fixture_bytes("github/pull_request_review_comment/created.payload.json")
        self._installation = json.loads(fixture_bytes("github/installation/created.payload.json"))
        self._added = json.loads(
            fixture_bytes("github/installation_repositories/added.payload.json")
        )

    def delivery(self, number: int) -> Delivery:
        delivery_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        kind = number % 4
        if kind == 0:
            return Delivery(delivery_id, "ping", self._ping)
        if kind == 1:
            return Delivery(delivery_id, "pull_request_review_comment", self._comment)
        installation_id, repository_id = INSTALLATION_BASE + number, REPOSITORY_BASE + number
        repository = {
            "id": repository_id,
            "name": f"kp{number}",
            "full_name": f"octo/kp{number}",
            "private": False,
        }
        if kind == 2:
            event, payload = "installation", copy.deepcopy(self._installation)
            payload["repositories"] = [repository]
        else:
            event, payload = "installation_repositories", copy.deepcopy(self._added)
            payload["repositories_added"] = [repository]
            payload["repositories_removed"] = []
        payload["installation"]["id"] = installation_id
        body = json.dumps(payload).encode("utf-8")
        return Delivery(delivery_id, event, body, installation_id, repository_id)


class Incarnations:
    """`python -m bot` on one database and port, started again after each kill; each run
    logs to a file of its own."""

    def __init__(self, workdir: Path, label: str) -> None:
        self.workdir = workdir
        self.label = label
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db_path = workdir / f"{label}.db"
        self.logs: list[Path] = []
        self.current: ServerProcess | None = None
        self.env = bench_environment(
            {
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "DATABASE_URL": f"sqlite:///{self.db_path}",
                "GITHUB_WEBHOOK_SECRET": BENCH_WEBHOOK_SECRET,
                "BIAGENT_API_TOKEN": BENCH_API_TOKEN,
                "WORKTREE_ROOT": str(workdir / "worktrees"),
                # Counting relies on every event of the run still being in the table.
                "EVENTS_KEPT": "100000000",
            }
        )

    async def start(self) -> None:
        log_path = self.workdir / f"{self.label}.{len(self.logs) + 1}.log"
        self.logs.append(log_path)
        server = ServerProcess(
            f"biagent ({self.label} run {len(self.logs)})",
            python_module("bot"),
            env=self.env,
            log_path=log_path,
        )
        server.start()
        self.current = server
        await server.wait_healthy(f"{self.base}/healthz", timeout_s=60.0)

    def kill(self) -> None:
        assert self.current is not None and self.current.process is not None
        self.current.process.send_signal(signal.SIGKILL)
        self.current.process.wait()

    def stop(self) -> int | None:
        return None if self.current is None else self.current.stop(timeout_s=30.0)

    def error_lines(self) -> int:
        """ERROR and CRITICAL lines and tracebacks in every run's log."""
        count = 0
        for log_path in self.logs:
            text = log_path.read_text(encoding="utf-8", errors="replace")
            for line in text.splitlines():
                if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                    count += 1
        return count


async def wait_settled(base: str, *, timeout_s: float) -> tuple[float, dict[str, int]]:
    """Poll GET /api/deliveries until nothing is pending, processing or failed (due again)."""
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {BENCH_API_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            async with session.get(f"{base}/api/deliveries", params={"limit": "1"}) as reply:
                counts: dict[str, int] = (await reply.json())["counts"]
            waited = time.perf_counter() - started
            if sum(counts.get(s, 0) for s in UNSETTLED_STATUSES) == 0 or waited > timeout_s:
                return waited, counts
            await asyncio.sleep(0.1)


@dataclass(frozen=True, slots=True)
class StoredLog:
    """What the database holds after the run, keyed for the tally."""

    rows: dict[str, tuple[int, str, int]]  # delivery id -> (pk, status, attempts)
    done_events: Counter[int]  # delivery pk -> delivery_processed events with status done
    announcements: Counter[str]  # stream -> installation_updated events
    installations: set[int]
    repositories: dict[int, int]  # repository id -> installation id


def _counted(connection: sqlite3.Connection, query: str) -> Counter[Any]:
    """The (key, count) rows of a GROUP BY query, as a Counter."""
    return Counter({key: int(count) for key, count in connection.execute(query)})


def read_stored(db_path: Path) -> StoredLog:
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as connection:
        rows = {
            str(delivery_id): (int(pk), str(status), int(attempts))
            for pk, delivery_id, status, attempts in connection.execute(
                "SELECT id, delivery_id, status, attempts FROM deliveries WHERE source = 'github'"
            )
        }
        done_events = _counted(
            connection,
            "SELECT json_extract(data, '$.delivery_pk'), COUNT(*) FROM events"
            " WHERE type = 'delivery_processed' AND json_extract(data, '$.status') = 'done'"
            " GROUP BY 1",
        )
        announcements = _counted(
            connection,
            "SELECT stream, COUNT(*) FROM events WHERE type = 'installation_updated'"
            " GROUP BY stream",
        )
        installations = {int(row[0]) for row in connection.execute("SELECT id FROM installations")}
        repositories = {
            int(repo_id): int(installation_id)
            for repo_id, installation_id in connection.execute(
                "SELECT id, installation_id FROM installation_repositories"
            )
        }
    return StoredLog(rows, done_events, announcements, installations, repositories)


@dataclass(frozen=True, slots=True)
class Tally:
    acknowledged: int
    lost: int
    done_twice: int
    announced_twice: int
    doubled: int
    unworked: int
    stuck: int
    reworked: int
    statuses: dict[str, int]

    @property
    def clean(self) -> bool:
        return self.lost == self.doubled == self.unworked == self.stuck == 0


def tally(stored: StoredLog, sending: Sending) -> Tally:
    lost = done_twice = announced_twice = doubled = unworked = stuck = reworked = 0
    statuses: Counter[str] = Counter()
    for delivery_id in sending.acknowledged:
        row = stored.rows.get(delivery_id)
        if row is None:
            lost += 1
            continue
        pk, status, attempts = row
        statuses[status] += 1
        stuck += status not in FINAL_STATUSES
        reworked += attempts > 1
        done = stored.done_events[pk]
        delivery = sending.sent[delivery_id]
        announced = 1
        if delivery.installation_id is not None:
            announced = stored.announcements[f"installation:{delivery.installation_id}"]
            owner = stored.repositories.get(delivery.repository_id or 0)
            recorded = delivery.installation_id in stored.installations
            recorded = recorded and owner == delivery.installation_id
            unworked += status == "done" and (announced == 0 or not recorded)
        done_twice += done > 1
        announced_twice += announced > 1
        doubled += done > 1 or announced > 1
    return Tally(
        acknowledged=len(sending.acknowledged),
        lost=lost,
        done_twice=done_twice,
        announced_twice=announced_twice,
        doubled=doubled,
        unworked=unworked,
        stuck=stuck,
        reworked=reworked,
        statuses=dict(sorted(statuses.items())),
    )


@dataclass(frozen=True, slots=True)
class KillPoint:
    uptime_s: float  # from /healthz answering to the SIGKILL
    acknowledged_before: int
    restart_s: float  # from the SIGKILL to /healthz answering again


async def kill_and_restart(
    server: Incarnations, senders: Senders, rng: random.Random, args: argparse.Namespace
) -> list[KillPoint]:
    points = []
    for _ in range(args.kills):
        uptime = rng.uniform(0.0, args.max_uptime)
        await asyncio.sleep(uptime)
        acknowledged = len(senders.sending.acknowledged)
        server.kill()
        killed_at = time.perf_counter()
        await server.start()
        points.append(KillPoint(uptime, acknowledged, time.perf_counter() - killed_at))
    await asyncio.sleep(rng.uniform(0.0, args.max_uptime))
    return points


@dataclass(frozen=True, slots=True)
class Phase:
    """One server's run: its deliveries, timings and tally."""

    sending: Sending
    tally: Tally
    sending_s: float
    settle_s: float
    error_lines: int
    points: list[KillPoint]

    @property
    def ack_per_s(self) -> float:
        """Deliveries acknowledged per second while sending."""
        return len(self.sending.acknowledged) / self.sending_s if self.sending_s else 0.0

    @property
    def worked_per_s(self) -> float:
        """Deliveries acknowledged per second from the first sent to the last one worked."""
        elapsed = self.sending_s + self.settle_s
        return len(self.sending.acknowledged) / elapsed if elapsed else 0.0


async def run_phase(args: argparse.Namespace, workdir: Path, *, kills: bool) -> Phase:
    """The baseline (a fixed number of deliveries, no kill) or the kill phase."""
    label = "kills" if kills else "baseline"
    server = Incarnations(workdir, label)
    payloads = Payloads(f"{args.seed}-{label}-ids")
    url = f"{server.base}/webhooks/github"
    make = payloads.delivery
    if kills:
        senders = Senders(url, make, count=args.senders, burst=args.burst, period_s=args.period)
    else:
        senders = Senders(url, make, count=args.senders, limit=args.baseline)
    points: list[KillPoint] = []
    await server.start()
    try:
        started = time.perf_counter()
        sending = asyncio.create_task(senders.run())
        if kills:
            points = await kill_and_restart(server, senders, random.Random(args.seed), args)
            senders.stop.set()
        await sending
        sending_s = time.perf_counter() - started
        settle_s, _ = await wait_settled(server.base, timeout_s=args.settle_timeout)
    finally:
        senders.stop.set()
        server.stop()
    return Phase(
        senders.sending,
        tally(read_stored(server.db_path), senders.sending),
        sending_s,
        settle_s,
        server.error_lines(),
        points,
    )


def report(baseline: Phase, killed: Phase, args: argparse.Namespace) -> dict[str, Any]:
    figures, points = killed.tally, killed.points
    restarts = [point.restart_s for point in points]
    print()
    for number, point in enumerate(points, start=1):
        print(
            f"  kill {number:2d}: after {point.uptime_s:4.2f} s up,"
            f" {point.acknowledged_before:6d} acknowledged so far;"
            f" healthy again {point.restart_s:4.2f} s later"
        )
    print()
    print(
        f"  baseline (no kill, no pause): {baseline.tally.acknowledged} acknowledged in"
        f" {baseline.sending_s:.1f} s ({baseline.ack_per_s:.0f}/s), all worked"
        f" {baseline.settle_s:.1f} s later: {baseline.worked_per_s:.0f} deliveries/s end to end;"
        f" lost {baseline.tally.lost}, doubled {baseline.tally.doubled},"
        f" stuck {baseline.tally.stuck}"
    )
    print(
        f"  {len(points)} kills: {figures.acknowledged} acknowledged in {killed.sending_s:.1f} s,"
        f" all worked {killed.settle_s:.1f} s later: {killed.worked_per_s:.0f} deliveries/s"
        f" end to end with the restarts; {len(killed.sending.resent)} sent again after"
        f" {sum(killed.sending.failures.values())} failed requests"
        f" {dict(killed.sending.failures)}"
    )
    print(
        f"  lost {figures.lost}; doubled {figures.doubled} (done twice {figures.done_twice},"
        f" announced twice {figures.announced_twice}); unworked {figures.unworked};"
        f" stuck {figures.stuck}; by status {figures.statuses}"
    )
    print(
        f"  reworked after a kill (claimed again, at-least-once): {figures.reworked};"
        f" refused {dict(killed.sending.refused)};"
        f" ERROR lines in the server logs: {killed.error_lines}"
    )
    ok = figures.clean and baseline.tally.clean and not killed.sending.refused
    return {
        "bench": "kill_points",
        "seed": args.seed,
        "kills": len(points),
        "acknowledged": figures.acknowledged,
        "lost": figures.lost,
        "doubled": figures.doubled,
        "done_twice": figures.done_twice,
        "announced_twice": figures.announced_twice,
        "unworked": figures.unworked,
        "stuck": figures.stuck,
        "reworked": figures.reworked,
        "resent": len(killed.sending.resent),
        "refused": sum(killed.sending.refused.values()),
        "error_lines": killed.error_lines,
        "duration_s": round(killed.sending_s + killed.settle_s, 1),
        "per_s": round(killed.worked_per_s, 1),
        "baseline_per_s": round(baseline.worked_per_s, 1),
        "baseline_ack_per_s": round(baseline.ack_per_s, 1),
        "restart_s_median": round(statistics.median(restarts), 2) if restarts else None,
        "target": {"lost": 0, "doubled": 0, "stuck": 0},
        "ok": ok,
    }


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"kill_points: {args.senders} senders of signed deliveries (ping, review comment,"
        f" installation, installation_repositories) to python -m bot; baseline"
        f" {args.baseline} deliveries without a kill; then bursts of {args.burst} every"
        f" {args.period:g} s and {args.kills} kill -9 points (seed {args.seed}, up to"
        f" {args.max_uptime:g} s after each start)"
    )
    with scratch_directory("biagent-bench-kill-points-", keep=args.keep) as workdir:
        baseline = await run_phase(args, workdir, kills=False)
        killed = await run_phase(args, workdir, kills=True)
    return report(baseline, killed, args)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.kill_points",
        description=" ".join(__doc__.split("\n\n")[0].split()),
    )
    parser.add_argument("--seed", type=int, default=12, help="seeds the kill moments and ids")
    parser.add_argument("--kills", type=int, default=20, help="kill -9 points")
    parser.add_argument("--senders", type=int, default=20, help="concurrent senders")
    parser.add_argument(
        "--max-uptime", type=float, default=2.0, help="longest wait after a start before a kill"
    )
    parser.add_argument("--burst", type=int, default=200, help="deliveries per burst (kill phase)")
    parser.add_argument(
        "--period", type=float, default=0.5, help="seconds from one burst's start to the next"
    )
    parser.add_argument("--baseline", type=int, default=2000, help="deliveries without a kill")
    parser.add_argument(
        "--settle-timeout", type=float, default=60.0, help="seconds for the last backlog"
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases and logs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_files_limit(4096)
    figures = asyncio.run(run_bench(args))
    emit_result(figures)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
