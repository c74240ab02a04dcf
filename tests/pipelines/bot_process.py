"""`python -m bot` as a subprocess for the pipeline tests that kill it (SIGKILL) and start it again.

The process is configured by its environment, pointed at the fakes of the test process (the
scripted model, JIRA, GitHub on the real clock) and a database in tmp_path; its output goes to a
log file the assertions quote. It starts again on the same port and database, as a service
manager would restart it. `Api` is its REST API as a test calls it, each answer's status checked;
`until` polls a condition within a deadline meant for a loaded machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.bot_process import BotProcess, clean_environment
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.helpers import API_TOKEN, auth_headers
from tests.pipelines.world import INSTALLATION, PROJECT, REPO

DEADLINE_S = 60.0  # a bound for a loaded machine, not an expected time: each wait polls


def server_environment(
    tmp_path: Path, github: FakeGitHub, app_key: tuple[str, str], jira: FakeJira, model_url: str
) -> dict[str, str]:
    """This test's settings, and none of the caller's (nor the SDK's own ANTHROPIC_ ones)."""
    return clean_environment(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'biagent.db'}",
            "BIAGENT_API_TOKEN": API_TOKEN,
            "GITHUB_APP_ID": str(github.app_id),
            "GITHUB_PRIVATE_KEY": app_key[0],
            "GITHUB_API_URL": github.base_url,
            "GITHUB_WRITE_SPACING_SECONDS": "0",
            "ANTHROPIC_API_KEY": "sk-ant-test",
            "ANTHROPIC_BASE_URL": model_url,
            "JIRA_URL": jira.url,
            "JIRA_EMAIL": jira.email,
            "JIRA_API_TOKEN": jira.token,
            "JIRA_SYNC_AT_START": "0",
            "WORKTREE_ROOT": str(tmp_path / "worktrees"),
            "WORKTREE_SPARES": "0",
            "LOG_LEVEL": "WARNING",
        }
    )


class Api:
    """The server's REST API, each answer checked for its status."""

    def __init__(self, session: aiohttp.ClientSession, server: BotProcess) -> None:
        self.session = session
        self.server = server

    async def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        url = self.server.base + path
        async with self.session.request(method, url, json=body, headers=auth_headers()) as sent:
            answer = await sent.json()
            assert sent.status == status, answer
            return answer

    async def healthy(self) -> None:
        await until(self.server, self.answers_health, "the server answers /healthz")

    async def answers_health(self) -> bool:
        try:
            async with self.session.get(self.server.base + "/healthz") as answer:
                return answer.status == 200
        except aiohttp.ClientError:
            return False

    async def pipeline(self, pipeline_id: int) -> dict[str, Any]:
        return (await self.call("GET", f"/api/pipelines/{pipeline_id}"))["pipeline"]


async def until(server: BotProcess, condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `condition` until it holds, within the deadline, while the server lives."""
    deadline = time.monotonic() + DEADLINE_S
    while not await condition():
        assert server.alive(), server.log()
        assert time.monotonic() < deadline, f"not within {DEADLINE_S}s: {what}\n{server.log()}"
        await asyncio.sleep(0.05)


async def make_pipeline(
    api: Api, key: str, clone_url: str, *, cycle_type: str, start: bool = True
) -> int:
    """The ticket synced and linked to the registered repository; its pipeline of
    `cycle_type`, started or not."""
    await api.call("POST", "/api/tickets/sync", {"project": PROJECT, "wait": True})
    repository = {"full_name": REPO, "clone_url": clone_url, "installation_id": INSTALLATION}
    await api.call("POST", "/api/repositories", repository, status=201)
    await api.call("PUT", f"/api/tickets/{key}/repositories", {"repositories": [REPO]})
    body = {"ticket": key, "cycle_type": cycle_type, "start": start}
    created = await api.call("POST", "/api/pipelines", body, status=201)
    return int(created["pipeline"]["id"])
