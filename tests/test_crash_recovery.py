"""SIGKILL the real server mid-burst, restart it, and find every delivery processed once."""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
import time
from pathlib import Path

import aiohttp

from tests.bot_process import BotProcess, clean_environment
from tests.helpers import API_TOKEN, WEBHOOK_SECRET, github_headers, load_json

BURST = 300


def server(tmp_path: Path) -> BotProcess:
    """The server on the test's database, its output in a log file; not started yet."""
    environment = clean_environment(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'biagent.db'}",
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


async def test_sigkill_mid_burst_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    database = tmp_path / "biagent.db"
    bodies = delivery_bodies()
    acked: set[str] = set()
    bot = server(tmp_path)
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

    with sqlite3.connect(database) as connection:
        stored = {row[0] for row in connection.execute("SELECT delivery_id FROM deliveries")}
    assert acked <= stored, "an acknowledged delivery was lost"

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

    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == BURST
        statuses = dict(
            connection.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
        )
        assert statuses == {"done": BURST}
        repositories = [
            row[0] for row in connection.execute("SELECT full_name FROM installation_repositories")
        ]
        assert sorted(repositories) == sorted(f"octo/r{n}" for n in range(BURST))
        announced = connection.execute(
            "SELECT json_extract(data, '$.delivery_pk'), COUNT(*) FROM events"
            " WHERE type = 'delivery_processed' AND json_extract(data, '$.status') = 'done'"
            " GROUP BY 1"
        ).fetchall()
        assert len(announced) == BURST
        assert {count for _, count in announced} == {1}
