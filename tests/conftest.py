"""Fixtures: the real app on a loopback port with a real SQLite file in tmp_path, migrated
databases that are closed whatever the test did, and the protocol fakes on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.clock import ManualClock
from bot.config import Settings
from storage.database import Database
from tests.fakes.jira import FakeJira
from tests.helpers import auth_headers, jira_settings, make_settings
from web.app import create_app

pytest_plugins = ["tests.ci_rules", "tests.fuzz_tally"]

AppClient = TestClient[web.Request, web.Application]
StartApp = Callable[..., Awaitable[AppClient]]
OpenDatabase = Callable[..., Awaitable[Database]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def start_app(
    aiohttp_client: Callable[..., Awaitable[AppClient]],
) -> StartApp:
    """Start the real app (real server on loopback) for given settings; returns a client."""

    async def start(settings: Settings, *, clock: Any = None, **options: Any) -> AppClient:
        return await aiohttp_client(create_app(settings, clock=clock, **options))

    return start


@pytest.fixture
async def client(start_app: StartApp, settings: Settings) -> AppClient:
    return await start_app(settings)


@pytest.fixture
async def open_database(tmp_path: Path) -> AsyncIterator[OpenDatabase]:
    """Opens a migrated SQLite file in tmp_path (`await open_database("x.db", **options)`);
    every database opened is closed after the test, passed or failed."""
    opened: list[Database] = []

    async def open_migrated(name: str = "biagent.db", **options: Any) -> Database:
        database = await Database.open(f"sqlite:///{tmp_path / name}", **options)
        opened.append(database)
        await database.migrate()
        return database

    yield open_migrated
    for database in reversed(opened):
        await database.close()


@pytest.fixture
async def db(open_database: OpenDatabase) -> Database:
    """A migrated database in tmp_path, closed after the test."""
    return await open_database()


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def auth() -> dict[str, str]:
    return auth_headers()


@pytest.fixture(scope="session")
def app_key() -> tuple[str, str]:
    """The test GitHub App's RSA key pair (private PEM, public PEM), made once per run."""
    from tests.fakes.github import generate_app_key

    return generate_app_key()


@pytest.fixture
async def fake_github(app_key: tuple[str, str], manual_clock: ManualClock) -> Any:
    """The GitHub protocol fake on loopback, on the test's manual clock."""
    from tests.fakes.github import FakeGitHub

    fake = FakeGitHub(app_id=4242, public_key_pem=app_key[1], now=manual_clock.now)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def fake_jira() -> AsyncIterator[FakeJira]:
    """A Jira Server protocol fake on loopback."""
    fake = FakeJira(deployment="Server")
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def review_engine() -> Any:
    """The scripted review engine (no git, no model) for the review machinery's tests."""
    from tests.fakes.review_engine import ScriptedEngine

    return ScriptedEngine()


@pytest.fixture
async def scenario(
    start_app: StartApp,
    tmp_path: Path,
    fake_github: Any,
    app_key: tuple[str, str],
    manual_clock: ManualClock,
    review_engine: Any,
) -> Any:
    """The real app wired to the GitHub fake and a scripted engine, with biagent's own pull
    request opened (tests/reviews_scenario.py)."""
    from tests.reviews_scenario import Scenario, review_settings

    review = Scenario(
        start_app=start_app,
        settings=review_settings(tmp_path, fake_github, app_key),
        fake=fake_github,
        clock=manual_clock,
        engine=review_engine,
    )
    await review.start()
    await review.send("pull_request", review.opened())
    return review


@pytest.fixture
async def fake_jira_cloud() -> AsyncIterator[FakeJira]:
    """A Jira Cloud protocol fake on loopback (search/jql, token paging, /search is 410)."""
    fake = FakeJira(deployment="Cloud")
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def every_feature(start_app: StartApp, tmp_path: Path, fake_jira: FakeJira) -> AppClient:
    """The app with JIRA, worktrees, cycle types and pipelines on (none answers 503), and
    repository 1 registered, so a route that looks its id up first gets to the body."""
    client = await start_app(jira_settings(tmp_path, fake_jira))
    body = {"full_name": "octo/repo", "clone_url": "https://github.com/octo/repo.git"}
    registered = await client.post("/api/repositories", json=body, headers=auth_headers())
    assert (registered.status, (await registered.json())["repository"]["id"]) == (201, 1)
    return client
