"""Scale-out: webhook intake and dispatch throughput of one and of three instances on
PostgreSQL, beside one instance on SQLite, in the same run (issue 13, "Must show").

Three targets, every process started once before the rounds and stopped after them:

- `sqlite-1`: one `python -m bot` on a fresh SQLite file (the default deployment);
- `pg-1`: one `python -m bot` on a fresh PostgreSQL database;
- `pg-3`: three `python -m bot` on another fresh database of the same server, each with its
  own BIAGENT_INSTANCE_ID, the senders spread evenly over the three (as a load balancer would).

The PostgreSQL server is a throwaway one (tests/postgres_server.py: Debian's initdb/pg_ctl in a
temporary directory, fsync off as in the tests). Each round sends every target `--per-round`
signed `installation_repositories` deliveries (each adds one repository: a real write in its
handler) from `--senders` concurrent senders (bench/_github_senders.py, GitHub's redelivery
included), then waits until the database says every one is done. The figure is end-to-end:
deliveries accepted *and dispatched* per second, from the first post to the last `done`.
Rounds alternate between the targets (sqlite-1, pg-1, pg-3, sqlite-1, ...) after a warm-up,
so drift of the machine hits all alike. The CPU time of the bot processes, of the PostgreSQL
server (postmaster and its backends) and of this client is reported per 1,000 deliveries: it
says where the time goes.

At the end, from each database: `lost` counts acknowledged deliveries not stored or not done;
`duplicated` counts deliveries announced done more than once, and repositories added twice.

Target: on this 2-core machine three instances not below 0.8x one (`ratio_3_vs_1`), zero lost,
zero duplicated. Run: `.venv/bin/python -m bench.scale_out` (`--help` for sizes). The last line
is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench._github_senders import Delivery, Senders
from bench.common import (
    BENCH_API_TOKEN,
    BENCH_WEBHOOK_SECRET,
    ServerProcess,
    alternating_rounds,
    bench_environment,
    emit_result,
    fixture_bytes,
    free_port,
    print_table,
    process_cpu_seconds,
    python_module,
    ratio_of,
    running,
    scratch_directory,
)
from storage.database import Database
from tests.postgres_server import PostgresServer, postgres_bindir

TARGET_RATIO_3_VS_1 = 0.8
PAYLOAD = "github/installation_repositories/added.payload.json"
POLL_S = 0.02


@dataclass
class Target:
    """One deployment: its processes, its database, what it did over the measured rounds."""

    name: str
    database_url: str
    servers: list[ServerProcess]
    ports: list[int]
    elapsed_s: float = 0.0
    intake_s: float = 0.0  # of elapsed_s, until the last 202 (the rest: dispatch catching up)
    delivered: int = 0
    bot_cpu_s: float = 0.0
    database_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    acknowledged: set[str] = field(default_factory=set)

    @property
    def rate(self) -> float:
        return self.delivered / self.elapsed_s if self.elapsed_s else 0.0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-round", type=int, default=300, help="deliveries per target/round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--senders", type=int, default=24, help="concurrent senders per target")
    parser.add_argument(
        "--dispatch-concurrency", type=int, default=None, help="DISPATCH_CONCURRENCY (default 4)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and databases")
    return parser.parse_args()


def instance(
    name: str, directory: Path, database_url: str, more: dict[str, str]
) -> tuple[ServerProcess, int]:
    port = free_port()
    home = directory / name
    home.mkdir()
    env = bench_environment(
        {
            "PORT": str(port),
            "DATABASE_URL": database_url,
            "GITHUB_WEBHOOK_SECRET": BENCH_WEBHOOK_SECRET,
            "BIAGENT_API_TOKEN": BENCH_API_TOKEN,
            "BIAGENT_INSTANCE_ID": name,
            "WORKTREE_ROOT": str(home / "worktrees"),
            "LOG_LEVEL": "WARNING",
            **more,
        }
    )
    return ServerProcess(name, python_module("bot"), env=env, log_path=home / "log"), port


def make_targets(
    directory: Path, postgres: PostgresServer, args: argparse.Namespace
) -> list[Target]:
    more = {}
    if args.dispatch_concurrency is not None:
        more["DISPATCH_CONCURRENCY"] = str(args.dispatch_concurrency)
    targets = []
    layouts = (
        ("sqlite-1", f"sqlite:///{directory / 'biagent.db'}", 1),
        ("pg-1", postgres.fresh_database(), 1),
        ("pg-3", postgres.fresh_database(), 3),
    )
    for name, url, count in layouts:
        made = [instance(f"{name}-{n}", directory, url, more) for n in range(count)]
        targets.append(Target(name, url, [s for s, _ in made], [p for _, p in made]))
    return targets


class Bodies:
    """Unique `installation_repositories` deliveries: number n adds repository n."""

    def __init__(self) -> None:
        self.template = json.loads(fixture_bytes(PAYLOAD))

    def delivery(self, target: str, number: int) -> Delivery:
        payload = dict(self.template)
        payload["repositories_added"] = [
            {"id": 1_000_000 + number, "name": f"r{number}", "full_name": f"bench/r{number}",
             "private": False}
        ]  # fmt: skip
        payload["repositories_removed"] = []
        body = json.dumps(payload).encode()
        return Delivery(f"{target}-{number}", "installation_repositories", body)


def postgres_cpu_seconds(postgres: PostgresServer) -> float:
    """The postmaster's and its live children's CPU time (backends, writer, WAL writer)."""
    postmaster = int((postgres.data / "postmaster.pid").read_text().split()[0])
    total = process_cpu_seconds(postmaster)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]
            except (OSError, IndexError):
                continue
            if int(parent) == postmaster:
                total += process_cpu_seconds(int(entry))
    return total


async def done_count(db: Database) -> int:
    return int(await db.fetchval("SELECT COUNT(*) FROM deliveries WHERE status = 'done'"))


async def one_round(
    target: Target, db: Database, bodies: Bodies, first: int, count: int, senders: int
) -> tuple[float, float, set[str]]:
    """Send `count` deliveries spread over the target's instances; the seconds until the last
    was acknowledged, until the database says all are done, and the acknowledged ids."""
    before = await done_count(db)
    shares = len(target.ports)
    groups = [
        Senders(
            f"http://127.0.0.1:{port}/webhooks/github",
            lambda n, k=k: bodies.delivery(target.name, first + n * shares + k),
            count=max(1, senders // shares),
            limit=len(range(k, count, shares)),
        )
        for k, port in enumerate(target.ports)
    ]
    started = time.perf_counter()
    await asyncio.gather(*(group.run() for group in groups))
    intake = time.perf_counter() - started
    acknowledged = set().union(*(group.sending.acknowledged for group in groups))
    while True:  # the dispatcher has no "all done" signal to wait on: poll the database
        if await done_count(db) >= before + len(acknowledged):
            break
        await asyncio.sleep(POLL_S)
    return intake, time.perf_counter() - started, acknowledged


async def measure(
    targets: list[Target], postgres: PostgresServer, args: argparse.Namespace
) -> None:
    bodies = Bodies()
    databases = {t.name: await Database.open(t.database_url) for t in targets}
    issued = dict.fromkeys(databases, 0)
    try:
        for round_ in alternating_rounds(args.rounds, warmup=args.warmup, per_round=args.per_round):
            for target in targets:
                cpu_before = [s.cpu_seconds() for s in target.servers]
                pg_before, client_before = postgres_cpu_seconds(postgres), time.process_time()
                intake, elapsed, acknowledged = await one_round(
                    target, databases[target.name], bodies, issued[target.name], round_.count,
                    args.senders,
                )  # fmt: skip
                issued[target.name] += round_.count
                target.acknowledged |= acknowledged
                if round_.warmup:
                    continue
                target.elapsed_s += elapsed
                target.intake_s += intake
                target.delivered += len(acknowledged)
                target.bot_cpu_s += sum(s.cpu_seconds() for s in target.servers) - sum(cpu_before)
                target.database_cpu_s += postgres_cpu_seconds(postgres) - pg_before
                target.client_cpu_s += time.process_time() - client_before
    finally:
        for db in databases.values():
            await db.close()


async def count_outcomes(target: Target) -> tuple[int, int]:
    """(lost, duplicated) read back from the target's database."""
    db = await Database.open(target.database_url)
    try:
        rows = await db.fetchall("SELECT delivery_id, status FROM deliveries")
        done = {row[0] for row in rows if row[1] == "done"}
        lost = len(target.acknowledged - done)
        events = await db.fetchall("SELECT data FROM events WHERE type = 'delivery_processed'")
        announced = Counter(
            data["delivery_pk"]
            for data in (json.loads(row[0]) for row in events)
            if data["status"] == "done"
        )
        repositories = await db.fetchall(
            "SELECT full_name, COUNT(*) FROM installation_repositories GROUP BY full_name"
        )
        duplicated = sum(n - 1 for n in announced.values() if n > 1)
        duplicated += sum(row[1] - 1 for row in repositories if row[1] > 1)
        return lost, duplicated
    finally:
        await db.close()


def report(targets: list[Target], outcomes: dict[str, tuple[int, int]]) -> None:
    rows: list[list[object]] = [
        ["target", "delivered/s", "accepted/s", "bot CPU s/1k", "postgres CPU s/1k",
         "client CPU s/1k", "lost", "dup"]
    ]  # fmt: skip
    for target in targets:
        per_k = 1000 / target.delivered if target.delivered else 0.0
        rows.append(
            [target.name, f"{target.rate:.0f}",
             f"{target.delivered / target.intake_s if target.intake_s else 0:.0f}",
             f"{target.bot_cpu_s * per_k:.2f}",
             f"{target.database_cpu_s * per_k:.2f}" if target.name != "sqlite-1" else "-",
             f"{target.client_cpu_s * per_k:.2f}", *outcomes[target.name]]
        )  # fmt: skip
    print_table(rows)


async def run(args: argparse.Namespace) -> int:
    bindir = postgres_bindir()
    if bindir is None:
        print("PostgreSQL's initdb and pg_ctl are missing (Debian: apt install postgresql)")
        return 2
    postgres = PostgresServer(bindir)
    postgres.start()
    try:
        postgres.make_template()
        with scratch_directory("biagent-scale-", keep=args.keep) as directory:
            targets = make_targets(directory, postgres, args)
            servers = [server for target in targets for server in target.servers]
            with running(*servers):
                await asyncio.gather(
                    *(
                        server.wait_healthy(f"http://127.0.0.1:{port}/healthz", timeout_s=60)
                        for target in targets
                        for server, port in zip(target.servers, target.ports, strict=True)
                    )
                )
                await measure(targets, postgres, args)
            outcomes = {t.name: await count_outcomes(t) for t in targets}
    finally:
        postgres.stop()
    return finish(targets, outcomes)


def finish(targets: list[Target], outcomes: dict[str, tuple[int, int]]) -> int:
    by_name = {target.name: target for target in targets}
    report(targets, outcomes)
    lost = sum(lost for lost, _ in outcomes.values())
    duplicated = sum(duplicated for _, duplicated in outcomes.values())
    ratio_3_vs_1 = ratio_of(by_name["pg-3"].rate, by_name["pg-1"].rate)
    ratio_pg_vs_sqlite = ratio_of(by_name["pg-1"].rate, by_name["sqlite-1"].rate)
    ok = ratio_3_vs_1 >= TARGET_RATIO_3_VS_1 and lost == 0 and duplicated == 0
    emit_result(
        {
            "bench": "scale_out",
            "ratio_3_vs_1": round(ratio_3_vs_1, 3),
            "ratio_pg_vs_sqlite": round(ratio_pg_vs_sqlite, 3),
            "target": TARGET_RATIO_3_VS_1,
            "sqlite_1_per_s": round(by_name["sqlite-1"].rate, 1),
            "pg_1_per_s": round(by_name["pg-1"].rate, 1),
            "pg_3_per_s": round(by_name["pg-3"].rate, 1),
            "lost": lost,
            "duplicated": duplicated,
            "ok": ok,
        }
    )
    return 1 if lost or duplicated else 0  # a slow machine only reports; a lost one fails


def main() -> None:
    sys.exit(asyncio.run(run(parse_arguments())))


if __name__ == "__main__":
    main()
