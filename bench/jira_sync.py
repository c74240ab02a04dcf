"""JIRA sync throughput: biagent's full sync beside bare paging with the `jira` library.

Both read the same protocol fake (tests/fakes/jira.py, Jira Server, on loopback) holding
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
import json
import random
import tempfile
import time
from pathlib import Path

from jira import JIRA

from bot.clock import SystemClock
from bot.config import Secret
from bot.events.bus import EventBus
from bot.jira.client import JiraClient
from bot.jira.issues import SYNC_FIELDS
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=10)
    args = parser.parse_args()

    fake = FakeJira(deployment="Server")
    await fake.start()
    print(f"filling the fake with {args.tickets} tickets ...", flush=True)
    keys = fill(fake, args.tickets)

    fetched, baseline_s = await asyncio.to_thread(baseline, fake)
    baseline_per_s = fetched / baseline_s

    workdir = Path(tempfile.mkdtemp(prefix="bench-jira-"))
    clock = SystemClock()
    db = await Database.open(f"sqlite:///{workdir / 'bench.db'}")
    await db.migrate()
    bus = EventBus(db, clock)
    await bus.start()
    client = JiraClient(url=fake.url, email=fake.email, api_token=Secret(fake.token), clock=clock)
    sync = JiraSync(db=db, bus=bus, clock=clock, client=client, jql_filter=f"project = {PROJECT}")
    started = time.perf_counter()
    full = await sync.sync_project(PROJECT, trigger="bench")
    full_s = time.perf_counter() - started
    per_s = full.seen / full_s
    stored = await db.fetchval("SELECT COUNT(*) FROM tickets")

    fake.tick(10 * 60_000)
    for key in random.Random(11).sample(keys, args.changed):
        fake.update_issue(key, summary=f"{key} changed")
    requests_before = len(fake.requests)
    started = time.perf_counter()
    incremental = await sync.sync_project(PROJECT, trigger="bench")
    incremental_s = time.perf_counter() - started
    incremental_requests = len(fake.requests) - requests_before

    client.close()
    await db.close()
    await fake.close()

    ratio = per_s / baseline_per_s
    ok = ratio >= TARGET_RATIO and incremental_requests <= TARGET_INCREMENTAL_REQUESTS
    print()
    print(f"JIRA sync, {args.tickets} tickets from the fake (Jira Server), pages of {PAGE_SIZE}")
    print(
        f"  baseline, jira library paging only: {fetched} issues in {baseline_s:.2f}s"
        f" = {baseline_per_s:,.0f} tickets/s"
    )
    print(
        f"  biagent full sync into SQLite:      {full.seen} issues in {full_s:.2f}s"
        f" = {per_s:,.0f} tickets/s ({stored} stored, {full.requests} requests)"
    )
    print(f"  ratio: {ratio:.2f} (target >= {TARGET_RATIO})")
    print(
        f"  incremental, {args.changed} changed: {incremental_requests} requests"
        f" (target <= {TARGET_INCREMENTAL_REQUESTS}), {incremental_s * 1000:.0f} ms,"
        f" {incremental.updated} updated"
    )
    print(
        json.dumps(
            {
                "bench": "jira_sync",
                "tickets": args.tickets,
                "ratio": round(ratio, 3),
                "target": TARGET_RATIO,
                "per_s": round(per_s, 1),
                "baseline_per_s": round(baseline_per_s, 1),
                "full_s": round(full_s, 3),
                "incremental_requests": incremental_requests,
                "incremental_s": round(incremental_s, 4),
                "incremental_updated": incremental.updated,
                "ok": ok,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
