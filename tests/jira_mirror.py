"""Shared setup of the JIRA sync tests: a JiraSync on a real database, through the real `jira`
library, against the protocol fake on loopback.

The fixtures are registered under their plain names (`mirror`, over Server and Cloud, and
`cloud`) by importing them into a test module."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bot.clock import Clock, SystemClock
from bot.config import Secret
from bot.events.bus import EventBus
from bot.jira.client import JiraClient
from bot.jira.sync import JiraSync
from storage.database import Database
from tests.fakes.jira import FakeJira


@dataclass
class Mirror:
    fake: FakeJira
    db: Database
    bus: EventBus
    client: JiraClient
    sync: JiraSync

    async def keys(self) -> list[str]:
        rows = await self.db.fetchall("SELECT key FROM tickets ORDER BY key")
        return [row[0] for row in rows]

    async def events(self, type_name: str) -> list[dict[str, object]]:
        rows = await self.db.fetchall(
            "SELECT data FROM events WHERE type = ? ORDER BY id", (type_name,)
        )
        import json

        return [json.loads(row[0]) for row in rows]


async def open_mirror(
    database_url: str, fake: FakeJira, clock: Clock, **sync_options: object
) -> Mirror:
    db = await Database.open(database_url)
    await db.migrate()
    bus = EventBus(db, clock)
    await bus.start()
    client = JiraClient(url=fake.url, email=fake.email, api_token=Secret(fake.token), clock=clock)
    sync = JiraSync(db=db, bus=bus, clock=clock, client=client, **sync_options)  # type: ignore[arg-type]
    return Mirror(fake, db, bus, client, sync)


@contextlib.asynccontextmanager
async def mirror_of(database_url: str, deployment: str) -> AsyncIterator[Mirror]:
    """A Jira fake of that deployment on loopback and a mirror syncing it, 10 issues a page."""
    fake = FakeJira(deployment=deployment)
    await fake.start()
    opened = await open_mirror(database_url, fake, SystemClock(), page_size=10)
    try:
        yield opened
    finally:
        opened.client.close()
        await opened.db.close()
        await fake.close()


@pytest.fixture(name="mirror", params=["Server", "Cloud"])
async def mirror_fixture(
    request: pytest.FixtureRequest, database_url: str
) -> AsyncIterator[Mirror]:
    async with mirror_of(database_url, request.param) as opened:
        yield opened


@pytest.fixture(name="cloud")
async def cloud_fixture(database_url: str) -> AsyncIterator[Mirror]:
    async with mirror_of(database_url, "Cloud") as opened:
        yield opened
