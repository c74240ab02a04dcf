"""Fixtures: the real app on a loopback port with a real SQLite file in tmp_path, migrated
databases that are closed whatever the test did, and the protocol fakes on loopback.

A module marked `pytest.mark.both_databases` runs each test that uses a database (`db`,
`open_database`, `database_url`, `settings`) twice: on SQLite and on a throwaway PostgreSQL
server (tests/postgres_server.py), one fresh database per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.clock import ManualClock
from bot.config import Settings
from storage.database import Database
from tests import helpers
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.jira import FakeJira
from tests.helpers import auth_headers, jira_settings, make_settings
from tests.postgres_server import PostgresServer, postgres_bindir
from web.app import create_app

pytest_plugins = ["tests.ci_rules", "tests.fuzz_tally"]

AppClient = TestClient[web.Request, web.Application]
StartApp = Callable[..., Awaitable[AppClient]]
OpenDatabase = Callable[..., Awaitable[Database]]


POSTGRES_BINDIR = postgres_bindir()
ENGINES = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            POSTGRES_BINDIR is None,
            reason="PostgreSQL's initdb and pg_ctl are missing (Debian: apt install postgresql)",
        ),
    ),
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_databases: run the module's database tests on SQLite and PostgreSQL"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marked = metafunc.definition.get_closest_marker("both_databases") is not None
    chosen = any(
        "database_engine" in str(mark.args[0])
        for mark in metafunc.definition.iter_markers("parametrize")
    )
    if marked and not chosen and "database_engine" in metafunc.fixturenames:
        metafunc.parametrize("database_engine", ENGINES, indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session, with the migrated template."""
    if POSTGRES_BINDIR is None:
        pytest.skip("PostgreSQL is not installed")
    server = PostgresServer(POSTGRES_BINDIR)
    try:
        server.start()
        server.make_template()
        yield server
    finally:
        server.stop()


def whole_suite_engine() -> str:
    """BIAGENT_TEST_DATABASE=postgresql runs every test on PostgreSQL that would use the default
    SQLite database (make_settings, the db fixtures); SQLite when unset."""
    return os.environ.get("BIAGENT_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"


@pytest.fixture
def database_engine(request: pytest.FixtureRequest) -> str:
    """The engine of the test's database: each in turn in a module marked both_databases,
    else BIAGENT_TEST_DATABASE's (SQLite by default)."""
    return str(getattr(request, "param", whole_suite_engine()))


@pytest.fixture(autouse=True)
def default_database_of_the_engine(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under BIAGENT_TEST_DATABASE=postgresql, make_settings(tmp_path) names a PostgreSQL
    database of the test's own (one per directory) instead of tmp_path's SQLite file."""
    if whole_suite_engine() != "postgresql":
        yield
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    made: dict[Path, str] = {}

    def database_for(directory: Path) -> str:
        if directory not in made:
            made[directory] = server.fresh_database()
        return made[directory]

    helpers.default_database = database_for
    try:
        yield
    finally:
        helpers.default_database = None
        for url in made.values():
            server.drop(url)


@pytest.fixture
def database_urls(
    request: pytest.FixtureRequest, database_engine: str, tmp_path: Path
) -> Iterator[Callable[[str], str]]:
    """`database_urls(name)`: the URL of a migrated database of the test's engine, one per
    name (a SQLite file in tmp_path, or a fresh PostgreSQL database dropped afterwards)."""
    made: dict[str, str] = {}

    def url_for(name: str) -> str:
        whole_suite = helpers.default_database is not None and database_engine == "postgresql"
        if name == "biagent.db" and whole_suite and helpers.default_database is not None:
            return helpers.default_database(tmp_path)  # make_settings(tmp_path)'s, the same
        if name not in made:
            if database_engine == "postgresql":
                server = request.getfixturevalue("postgres_server")
                made[name] = server.fresh_database()
            else:
                made[name] = f"sqlite:///{tmp_path / name}"
        return made[name]

    yield url_for
    if database_engine == "postgresql" and made:
        server = request.getfixturevalue("postgres_server")
        for url in made.values():
            server.drop(url)


@pytest.fixture
def database_url(database_urls: Callable[[str], str]) -> str:
    return database_urls("biagent.db")


@pytest.fixture
def shared_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """One migrated PostgreSQL database that several app instances in a test share (ask for it
    before `start_app`, or a fixture using it, so the apps close before it is dropped)."""
    url = postgres_server.fresh_database()
    yield url
    postgres_server.drop(url)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


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
async def two_instances(
    start_app: StartApp, database_url: str, tmp_path: Path
) -> tuple[AppClient, AppClient]:
    """Two apps, each on its own server on loopback, on one database."""
    first = await start_app(make_settings(tmp_path / "a", database_url=database_url))
    second = await start_app(make_settings(tmp_path / "b", database_url=database_url))
    return first, second


@pytest.fixture
async def open_database(database_urls: Callable[[str], str]) -> AsyncIterator[OpenDatabase]:
    """Opens a migrated database (`await open_database("x.db", **options)`): a SQLite file in
    tmp_path, or on PostgreSQL a database of its own per name; every database opened is
    closed after the test, passed or failed."""
    opened: list[Database] = []

    async def open_migrated(name: str = "biagent.db", **options: Any) -> Database:
        database = await Database.open(database_urls(name), **options)
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


@pytest.fixture
async def model() -> AsyncIterator[FakeAnthropic]:
    """The scripted Anthropic fake on loopback (tests/fakes/anthropic.py), instant answers."""
    fake = FakeAnthropic()
    await fake.start()
    yield fake
    await fake.close()
