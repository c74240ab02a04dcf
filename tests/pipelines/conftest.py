"""Fixtures for the pipeline end-to-end tests: the in-process world (tests/pipelines/world.py)
and the server as a subprocess (tests/pipelines/bot_process.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.clock import ManualClock
from tests.bot_process import BotProcess
from tests.conftest import StartApp
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.pipelines.bot_process import server_environment
from tests.pipelines.world import INSTALLATION, REPO, PipelineWorld


@pytest.fixture
def anthropic(model: FakeAnthropic) -> FakeAnthropic:
    """The model the pipeline tests script (tests/conftest.py's `model`)."""
    return model


@pytest.fixture
async def world(
    start_app: StartApp,
    tmp_path: Path,
    fake_github: Any,
    fake_jira: FakeJira,
    anthropic: FakeAnthropic,
    app_key: tuple[str, str],
    manual_clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> PipelineWorld:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    return PipelineWorld(
        start_app=start_app,
        tmp_path=tmp_path,
        github=fake_github,
        jira=fake_jira,
        anthropic=anthropic,
        app_key=app_key,
        clock=manual_clock,
    )


@pytest.fixture
async def real_clock_github(app_key: tuple[str, str]) -> AsyncIterator[FakeGitHub]:
    """The GitHub fake on the real clock: a server in a subprocess keeps real time."""
    fake = FakeGitHub(app_id=4242, public_key_pem=app_key[1])
    fake.installations[INSTALLATION] = {"repositories": [REPO]}
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def bot_server(
    tmp_path: Path,
    real_clock_github: FakeGitHub,
    app_key: tuple[str, str],
    fake_jira: FakeJira,
    anthropic: FakeAnthropic,
) -> Iterator[BotProcess]:
    """`python -m bot` pointed at this test's fakes, not started yet; stopped at the end."""
    environment = server_environment(
        tmp_path, real_clock_github, app_key, fake_jira, anthropic.base_url
    )
    running = BotProcess(environment, tmp_path / "server.log")
    yield running
    running.stop()
