"""Fixtures for the agent runtime: the Anthropic fake, a real SQLite database and event bus,
a real git repository as the worktree, and an AgentRunner on the real SDK pointed at the fake."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.agents.client import build_client
from bot.agents.definitions import AgentsConfig, load_agents_config
from bot.agents.loop import AgentContext
from bot.agents.runner import AgentRunner
from bot.agents.sandbox import BashPolicy
from bot.clock import ManualClock
from bot.config import DEFAULT_MODEL
from bot.events.bus import EventBus, Subscription
from storage.database import Database
from tests.fakes.anthropic import FakeAnthropic

MODEL = DEFAULT_MODEL


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def bus(db: Database, clock: ManualClock) -> EventBus:
    event_bus = EventBus(db, clock)
    await event_bus.start()
    return event_bus


def git(worktree: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", *args], cwd=worktree, capture_output=True, text=True, check=True
    )
    return completed.stdout


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    """A real git repository with one commit: the step's working directory."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "bot@example.com")
    git(root, "config", "user.name", "biagent test")
    (root / "README.md").write_text("# Demo\n\nGreeting: hello\n", encoding="utf-8")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text('GREETING = "hello"\n', encoding="utf-8")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def agents_config() -> AgentsConfig:
    return load_agents_config(None, default_model=MODEL)


MakeRunner = Callable[..., AgentRunner]


@pytest.fixture
async def make_runner(
    fake: FakeAnthropic,
    db: Database,
    bus: EventBus,
    clock: ManualClock,
    agents_config: AgentsConfig,
) -> AsyncIterator[MakeRunner]:
    made: list[AgentRunner] = []

    def make(**overrides: Any) -> AgentRunner:
        values: dict[str, Any] = {
            "db": db,
            "bus": bus,
            "clock": clock,
            "client": build_client(base_url=fake.base_url, api_key="test-key", max_retries=2),
            "config": agents_config,
            "bash_policy": BashPolicy(timeout_s=20.0, output_cap_bytes=20_000),
            "interruption_backoff_s": 0.0,
        }
        values.update(overrides)
        runner = AgentRunner(**values)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        await runner.close()


@pytest.fixture
async def runner(make_runner: MakeRunner) -> AgentRunner:
    made = make_runner()
    await made.start()
    return made


@pytest.fixture
def context(worktree: Path) -> AgentContext:
    return AgentContext(
        session_key="pr:octo/demo#7/batch:1",
        worktree=worktree,
        task="Change the greeting to 'hi' and check the tests.",
        stream="pr:octo/demo#7",
        pr="octo/demo#7",
    )


@dataclass
class Recorder:
    """Every frame the bus fans out, decoded."""

    subscription: Subscription

    def take(self) -> list[dict[str, Any]]:
        frames, self.subscription.frames = self.subscription.frames, []
        return [json.loads(frame.text) for frame in frames]


@pytest.fixture
def events(bus: EventBus) -> Recorder:
    return Recorder(bus.subscribe(None, maxsize=100_000))
