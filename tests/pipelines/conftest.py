"""Fixtures for the pipeline end-to-end tests (tests/pipelines/world.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.clock import ManualClock
from tests.conftest import StartApp
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.jira import FakeJira
from tests.pipelines.world import PipelineWorld


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic()
    await fake.start()
    yield fake
    await fake.close()


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
