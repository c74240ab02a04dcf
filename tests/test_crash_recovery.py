"""SIGKILL the real server mid-burst, restart it, and find every delivery processed once: on
SQLite and on PostgreSQL (the app served on each engine, deliveries accepted and dispatched)."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from storage.database import Database
from tests.bot_process import BotProcess, clean_environment
from tests.helpers import API_TOKEN, WEBHOOK_SECRET, github_headers, load_json

pytestmark = pytest.mark.both_databases

BURST = 300


def server(tmp_path: Path, database_url: str) -> BotProcess:
    """The server on the test's database, its output in a log file; not started yet."""
    environment = clean_environment(
        {
            "DATABASE_URL": database_url,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "BIAGENT_API_TOKEN": API_TOKEN,
            "LOG_LEVEL": "WARNING",
        }
    )
    return BotProcess(environment, tmp_path / "server.log")


async def wait_healthy(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError("server did not come up")


async def wait_until_every_delivery_is_done(session: aiohttp.ClientSession, base: str) -> None:
    """Follow `delivery_processed` on the WebSocket from the first event on (both runs') until
    every delivery of the burst has been announced done."""
    done: set[int] = set()
    address = f"{base}/ws?streams=deliveries&since=0"
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with session.ws_connect(address, headers=headers) as feed:
        try:
            async with asyncio.timeout(30):
                async for message in feed:
                    frame = message.json()
                    data = frame.get("data") or {}
                    if frame.get("type") == "delivery_processed" and data["status"] == "done":
                        done.add(data["delivery_pk"])
                    if len(done) == BURST:
                        return
        except TimeoutError:
            pass
    raise AssertionError(f"{len(done)} of {BURST} deliveries announced done after 30 s")


def delivery_bodies() -> list[tuple[str, bytes]]:
    template = load_json("github/installation_repositories/added.payload.json")
    bodies = []
    for n in range(BURST):
        payload = copy.deepcopy(template)
        payload["repositories_added"] = [
            {"id": 10_000 + n, "name": f"r{n}", "full_name": f"octo/r{n}", "private": False}
        ]
        payload["repositories_removed"] = []
        bodies.append((f"kill-{n}", json.dumps(payload).encode()))
    return bodies


async def send(
    session: aiohttp.ClientSession, base: str, delivery_id: str, body: bytes
) -> int | None:
    headers = github_headers("installation_repositories", body, delivery_id=delivery_id)
    try:
        async with session.post(f"{base}/webhooks/github", data=body, headers=headers) as reply:
            return reply.status
    except (TimeoutError, aiohttp.ClientError):
        return None


async def stored_delivery_ids(database_url: str) -> set[str]:
    db = await Database.open(database_url)
    try:
        return {row[0] for row in await db.fetchall("SELECT delivery_id FROM deliveries")}
    finally:
        await db.close()


async def check_each_delivery_done_once(database_url: str) -> None:
    db = await Database.open(database_url)
    try:
        assert await db.fetchval("SELECT COUNT(*) FROM deliveries") == BURST
        statuses = await db.fetchall("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
        assert {row[0]: row[1] for row in statuses} == {"done": BURST}
        repositories = [
            row[0] for row in await db.fetchall("SELECT full_name FROM installation_repositories")
        ]
        assert sorted(repositories) == sorted(f"octo/r{n}" for n in range(BURST))
        announced = Counter(
            data["delivery_pk"]
            for data in (
                json.loads(row[0])
                for row in await db.fetchall(
                    "SELECT data FROM events WHERE type = 'delivery_processed'"
                )
            )
            if data["status"] == "done"
        )
    finally:
        await db.close()
    assert len(announced) == BURST
    assert set(announced.values()) == {1}


async def test_sigkill_mid_burst_loses_nothing_and_repeats_nothing(
    tmp_path: Path, database_url: str
) -> None:
    bodies = delivery_bodies()
    acked: set[str] = set()
    bot = server(tmp_path, database_url)
    base = bot.base
    bot.start()
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base)
            semaphore = asyncio.Semaphore(20)

            async def one(delivery_id: str, body: bytes) -> None:
                async with semaphore:
                    if await send(session, base, delivery_id, body) == 202:
                        acked.add(delivery_id)
                    if len(acked) == BURST // 2:
                        bot.kill()

            await asyncio.gather(*(one(d, b) for d, b in bodies))
    finally:
        if bot.alive():
            bot.kill()
    assert BURST // 2 <= len(acked) < BURST

    assert acked <= await stored_delivery_ids(database_url), "an acknowledged delivery was lost"

    # GitHub redelivers what failed; here: everything again, acknowledged or not.
    bot.start()
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base)
            statuses = await asyncio.gather(*(send(session, base, d, b) for d, b in bodies))
            assert set(statuses) == {202}
            await wait_until_every_delivery_is_done(session, base)
    finally:
        bot.stop()

    await check_each_delivery_done_once(database_url)
