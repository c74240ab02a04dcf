"""Fixtures: the real app on a loopback port with a real SQLite file in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.clock import ManualClock
from bot.config import Settings
from tests.fakes.jira import FakeJira
from tests.helpers import auth_headers, make_settings
from web.app import create_app

AppClient = TestClient[web.Request, web.Application]
StartApp = Callable[..., Awaitable[AppClient]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def start_app(
    aiohttp_client: Callable[..., Awaitable[AppClient]],
) -> StartApp:
    """Start the real app (real server on loopback) for given settings; returns a client."""

    async def start(settings: Settings, *, clock: Any = None) -> AppClient:
        return await aiohttp_client(create_app(settings, clock=clock))

    return start


@pytest.fixture
async def client(start_app: StartApp, settings: Settings) -> AppClient:
    return await start_app(settings)


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def auth() -> dict[str, str]:
    return auth_headers()


@pytest.fixture
async def fake_jira() -> AsyncIterator[FakeJira]:
    """A Jira Server protocol fake on loopback."""
    fake = FakeJira(deployment="Server")
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def fake_jira_cloud() -> AsyncIterator[FakeJira]:
    """A Jira Cloud protocol fake on loopback (search/jql, token paging, /search is 410)."""
    fake = FakeJira(deployment="Cloud")
    await fake.start()
    yield fake
    await fake.close()
