"""Several `python -m bot` processes on one PostgreSQL database, for the scale-out test (issue 13).

`Fleet` is the instances: each a `BotProcess` (tests/bot_process.py) with its own port,
worktree root and `BIAGENT_INSTANCE_ID` (kept across a restart, as a deployment names its
units), all pointed at the same database and at the fakes of the test process (GitHub, JIRA
and the scripted model on the real clock). `EventFeed` is one WebSocket client of one instance
following every stream: it keeps the ids it was sent, in the order it got them, and after its
instance was killed it connects again with `since` its last id, as the status page does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.bot_process import BotProcess, clean_environment
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.helpers import API_TOKEN, WEBHOOK_SECRET

DEADLINE_S = 60.0  # a bound for a loaded machine, not an expected time: each wait polls
LEASE_S = 3.0  # WORK_LEASE_SECONDS' lowest: a dead instance's work moves after it


def instance_environment(
    home: Path,
    name: str,
    database_url: str,
    github: FakeGitHub,
    app_key: tuple[str, str],
    jira: FakeJira,
    model: FakeAnthropic,
) -> dict[str, str]:
    """One instance's settings, and none of the caller's."""
    return clean_environment(
        {
            "DATABASE_URL": database_url,
            "BIAGENT_INSTANCE_ID": name,
            "BIAGENT_API_TOKEN": API_TOKEN,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GITHUB_APP_ID": str(github.app_id),
            "GITHUB_PRIVATE_KEY": app_key[0],
            "GITHUB_API_URL": github.base_url,
            "GITHUB_WRITE_SPACING_SECONDS": "0",
            "ANTHROPIC_API_KEY": "sk-ant-test",
            "ANTHROPIC_BASE_URL": model.base_url,
            "JIRA_URL": jira.url,
            "JIRA_EMAIL": jira.email,
            "JIRA_API_TOKEN": jira.token,
            "JIRA_SYNC_AT_START": "0",
            "WORKTREE_ROOT": str(home / "worktrees"),
            "WORKTREE_SPARES": "0",
            "WORK_LEASE_SECONDS": str(LEASE_S),
            "REVIEW_DEBOUNCE_SECONDS": "1",
            "REVIEW_MAX_WAIT_SECONDS": "5",
            "LOG_LEVEL": "WARNING",
        }
    )


class Fleet:
    """The instances, by name; `alive` ones answer requests."""

    def __init__(self, instances: dict[str, BotProcess]) -> None:
        self.instances = instances

    @property
    def names(self) -> list[str]:
        return list(self.instances)

    def __getitem__(self, name: str) -> BotProcess:
        return self.instances[name]

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{bot.log()}" for name, bot in self.instances.items())

    async def start(self, session: aiohttp.ClientSession, *names: str) -> None:
        """Start the named instances (all by default) at once, and wait until each is ready."""
        chosen = names or tuple(self.instances)
        for name in chosen:
            self.instances[name].start()
        await asyncio.gather(*(self.healthy(session, name) for name in chosen))

    async def healthy(self, session: aiohttp.ClientSession, name: str) -> None:
        bot = self.instances[name]
        await bot.listening()

        async def answers() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{bot.base}/healthz") as answer:
                    return answer.status == 200
            return False

        await until(answers, f"{name} answers /healthz", self)

    def stop(self) -> None:
        for bot in self.instances.values():
            bot.stop()


async def until(condition: Callable[[], Awaitable[bool]], what: str, fleet: Fleet) -> None:
    """Poll `condition` until it holds, within the deadline; the fleet's logs on failure."""
    deadline = time.monotonic() + DEADLINE_S
    while not await condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S}s: {what}\n{fleet.logs()}"
        await asyncio.sleep(0.05)


class EventFeed:
    """A WebSocket client of one instance following every stream from the first event on."""

    def __init__(self, session: aiohttp.ClientSession, bot: BotProcess) -> None:
        self.session = session
        self.bot = bot
        self.ids: list[int] = []  # every stored event's id, as received, across reconnects
        self.epoch: str | None = None
        self.problems: list[dict[str, Any]] = []
        self.connections = 0
        self._expected = 1
        self._task: asyncio.Task[None] | None = None

    def follow(self) -> None:
        """Connect (again: from the last id seen) and read in the background."""
        assert self.closed()
        self._expected = self.connections + 1
        self._task = asyncio.create_task(self._read(), name=f"feed-{self.bot.port}")

    async def connected(self) -> None:
        """Until this connection has had its `hello`."""
        deadline = time.monotonic() + DEADLINE_S
        while self.connections < self._expected:
            assert not self.closed(), "the WebSocket closed before its hello"
            assert time.monotonic() < deadline, "the WebSocket did not connect"
            await asyncio.sleep(0.02)

    async def _read(self) -> None:
        since = self.ids[-1] if self.ids else 0
        params: dict[str, Any] = {"token": API_TOKEN, "streams": "*", "since": since}
        if self.epoch is not None:
            params["epoch"] = self.epoch
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            async with self.session.ws_connect(f"{self.bot.base}/ws", params=params) as ws:
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    self._take(message.json())

    def _take(self, frame: dict[str, Any]) -> None:
        control = frame.get("control")
        if control == "hello":
            self.epoch = str(frame["epoch"])
            self.connections += 1
        if control in ("resync_required", "error"):
            self.problems.append(frame)  # asserted empty by the test
        if control is None and isinstance(frame.get("id"), int):
            self.ids.append(frame["id"])  # stored events; token and state frames carry none

    def closed(self) -> bool:
        return self._task is None or self._task.done()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
