"""JIRA sync throughput: biagent's full sync beside bare paging with the `jira` library.

Both read the same protocol fake (tests/fakes/jira/, Jira Server, on loopback) holding
`--tickets` issues (10,000 by default), with the same fields, changelog expansion and page
size. The baseline only pages: `JIRA.search_issues(maxResults=False)` builds the library's
Issue objects and stores nothing. The project's full sync also normalizes every issue, writes
tickets, links and attachment metadata to SQLite, records the run and publishes its events.
Target: at least half the baseline's tickets per second.

Then `--changed` issues (10) change among them and an incremental sync runs: the requests it
makes (target: at most 3) and its time.

    .venv/bin/python -m bench.jira_sync [--tickets N] [--changed N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

from jira import JIRA

from bench.common import emit_result, ratio_of, scratch_directory
from bot.clock import SystemClock
from bot.config import Secret
from bot.events.bus import EventBus
from bot.jira.client import JiraClient
from bot.jira.issues import SYNC_FIELDS
from bot.jira.runs import SyncResult
from bot.jira.sync import PAGE_SIZE, JiraSync
from storage.database import Database
from tests.fakes.jira import FakeJira

PROJECT = "BENCH"
TARGET_RATIO = 0.5
TARGET_INCREMENTAL_REQUESTS = 3


def fill(fake: FakeJira, count: int) -> list[str]:
    rng = random.Random(7)
    keys = []
    for number in range(count):
        keys.append(
            fake.add_issue(
                PROJECT,
                f"Ticket {number}: fix the thing",
                description=f"Steps to reproduce {number}.\nExpected: it works.",
                status=rng.choice(["To Do", "In Progress", "Done"]),
                assignee=rng.choice([None, "Ann Lee", "Leo Park"]),
                labels=("backend",) if number % 3 else ("frontend", "ui"),
                histories=2,
            )
        )
        fake.tick(50)
    for number in range(0, count - 1, 10):
        fake.link(keys[number], keys[number + 1])
    for number in range(0, count, 25):
        fake.add_attachment(keys[number], f"log-{number}.txt", size=2048)
    return keys


def baseline(fake: FakeJira) -> tuple[int, float]:
    """Bare paging with the jira library: every issue as the library's Issue objects."""
    started = time.perf_counter()
    jira = JIRA(server=fake.url, basic_auth=(fake.email, fake.token), max_retries=0, logging=False)
    issues = jira.search_issues(
        f'project = "{PROJECT}" ORDER BY key ASC',
        maxResults=False,
        fields=list(SYNC_FIELDS),
        expand="changelog",
    )
    elapsed = time.perf_counter() - started
    jira.close()
    return len(issues), elapsed


@dataclass(frozen=True, slots=True)
class Timed:
    """One sync run of the project: its result, its seconds and the requests it made."""

    result: SyncResult
    seconds: float
    requests: int


class BenchSync:
    """biagent's own sync of the fake into a fresh SQLite file, as the service wires it."""

    def __init__(self, fake: FakeJira, db: Database, client: JiraClient, sync: JiraSync) -> None:
        self.fake = fake
        self.db = db
        self.client = client
        self.sync = sync

    @classmethod
    async def open(cls, fake: FakeJira, workdir: Path) -> BenchSync:
        clock = SystemClock()
        db = await Database.open(f"sqlite:///{workdir / 'bench.db'}")
        await db.migrate()
        bus = EventBus(db, clock)
        await bus.start()
        client = JiraClient(
            url=fake.url, email=fake.email, api_token=Secret(fake.token), clock=clock
        )
        sync = JiraSync(
            db=db, bus=bus, clock=clock, client=client, jql_filter=f"project = {PROJECT}"
        )
        return cls(fake, db, client, sync)

    async def run(self) -> Timed:
        requests_before = len(self.fake.requests)
        started = time.perf_counter()
        result = await self.sync.sync_project(PROJECT, trigger="bench")
        seconds = time.perf_counter() - started
        return Timed(result, seconds, len(self.fake.requests) - requests_before)

    async def stored(self) -> int:
        return int(await self.db.fetchval("SELECT COUNT(*) FROM tickets"))

    async def close(self) -> None:
        self.client.close()
        await self.db.close()


def change_some(fake: FakeJira, keys: list[str], count: int) -> None:
    """Ten minutes later, `count` of the issues get a new summary."""
    fake.tick(10 * 60_000)
    for key in random.Random(11).sample(keys, count):
        fake.update_issue(key, summary=f"{key} changed")


@dataclass(frozen=True, slots=True)
class Figures:
    tickets: int
    changed: int
    fetched: int  # by the baseline
    baseline_s: float
    full: Timed
    stored: int
    incremental: Timed

    @property
    def baseline_per_s(self) -> float:
        return self.fetched / self.baseline_s

    @property
    def per_s(self) -> float:
        return self.full.result.seen / self.full.seconds

    @property
    def ratio(self) -> float:
        return ratio_of(self.per_s, self.baseline_per_s)

    @property
    def ok(self) -> bool:
        return (
            self.ratio >= TARGET_RATIO and self.incremental.requests <= TARGET_INCREMENTAL_REQUESTS
        )


async def measure(args: argparse.Namespace) -> Figures:
    fake = FakeJira(deployment="Server")
    await fake.start()
    print(f"filling the fake with {args.tickets} tickets ...", flush=True)
    keys = fill(fake, args.tickets)
    fetched, baseline_s = await asyncio.to_thread(baseline, fake)
    with scratch_directory("bench-jira-", keep=False) as workdir:
        bench_sync = await BenchSync.open(fake, workdir)
        full = await bench_sync.run()
        stored = await bench_sync.stored()
        change_some(fake, keys, args.changed)
        incremental = await bench_sync.run()
        await bench_sync.close()
    await fake.close()
    return Figures(args.tickets, args.changed, fetched, baseline_s, full, stored, incremental)


def print_report(figures: Figures) -> None:
    full, incremental = figures.full, figures.incremental
    print()
    print(f"JIRA sync, {figures.tickets} tickets from the fake (Jira Server), pages of {PAGE_SIZE}")
    print(
        f"  baseline, jira library paging only: {figures.fetched} issues in"
        f" {figures.baseline_s:.2f}s = {figures.baseline_per_s:,.0f} tickets/s"
    )
    print(
        f"  biagent full sync into SQLite:      {full.result.seen} issues in {full.seconds:.2f}s"
        f" = {figures.per_s:,.0f} tickets/s ({figures.stored} stored,"
        f" {full.result.requests} requests)"
    )
    print(f"  ratio: {figures.ratio:.2f} (target >= {TARGET_RATIO})")
    print(
        f"  incremental, {figures.changed} changed: {incremental.requests} requests"
        f" (target <= {TARGET_INCREMENTAL_REQUESTS}), {incremental.seconds * 1000:.0f} ms,"
        f" {incremental.result.updated} updated"
    )


def result_of(figures: Figures) -> dict[str, object]:
    """The bench's last line."""
    return {
        "bench": "jira_sync",
        "tickets": figures.tickets,
        "ratio": round(figures.ratio, 3),
        "target": TARGET_RATIO,
        "per_s": round(figures.per_s, 1),
        "baseline_per_s": round(figures.baseline_per_s, 1),
        "full_s": round(figures.full.seconds, 3),
        "incremental_requests": figures.incremental.requests,
        "incremental_s": round(figures.incremental.seconds, 4),
        "incremental_updated": figures.incremental.result.updated,
        "ok": figures.ok,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=10)
    figures = await measure(parser.parse_args())
    print_report(figures)
    emit_result(result_of(figures))


if __name__ == "__main__":
    asyncio.run(main())
