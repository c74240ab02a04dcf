"""SIGKILL the real server in the middle of a pipeline step; a restart finishes the pipeline.

`python -m bot` runs as a subprocess, configured by its environment, pointed at the fakes of
this process (tests/pipelines/world.py's scripted model, JIRA and GitHub) and at a local bare
remote. The implementer's second turn answers slowly, so the kill lands while its step runs;
the server started again on the same database and worktree root resumes the step from its
stored conversation and opens the pull request.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import variables
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic, RecordedRequest
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.helpers import API_TOKEN, auth_headers
from tests.pipelines.world import (
    FILES,
    INSTALLATION,
    PROJECT,
    REPO,
    PipelineModel,
    agent_of,
    done,
    report,
)
from tests.worktree_helpers import make_remote

ROOT = Path(__file__).resolve().parent.parent.parent
DEADLINE_S = 60.0  # a bound for a loaded machine, not an expected time: each wait polls
SLOW_TURN_S = 30.0  # far longer than the kill takes: the step is mid-turn when it dies


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """`python -m bot` in a subprocess, its output in a log file."""

    environment: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.environment['PORT']}"

    def start(self) -> None:
        self.environment["PORT"] = str(free_port())
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot"],
                cwd=ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]


def server_environment(
    tmp_path: Path, github: FakeGitHub, app_key: tuple[str, str], jira: FakeJira, model_url: str
) -> dict[str, str]:
    """This test's settings, and none of the caller's (nor the SDK's own ANTHROPIC_ ones)."""
    settings = {env.name for env in variables().values()}
    kept = {
        key: value
        for key, value in os.environ.items()
        if key not in settings and not key.startswith("ANTHROPIC_")
    }
    return kept | {
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


@pytest.fixture
async def github(app_key: tuple[str, str]) -> AsyncIterator[FakeGitHub]:
    """The GitHub fake on the real clock: the server in the subprocess keeps real time."""
    fake = FakeGitHub(app_id=4242, public_key_pem=app_key[1])
    fake.installations[INSTALLATION] = {"repositories": [REPO]}
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def server(
    tmp_path: Path,
    github: FakeGitHub,
    app_key: tuple[str, str],
    fake_jira: FakeJira,
    anthropic: FakeAnthropic,
) -> Iterator[Server]:
    environment = server_environment(tmp_path, github, app_key, fake_jira, anthropic.base_url)
    running = Server(environment, tmp_path / "server.log")
    yield running
    running.stop()


class Api:
    """The server's REST API, each answer checked for its status."""

    def __init__(self, session: aiohttp.ClientSession, server: Server) -> None:
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


async def until(server: Server, condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `condition` until it holds, within the deadline, while the server lives."""
    deadline = time.monotonic() + DEADLINE_S
    while not await condition():
        assert server.process is not None and server.process.poll() is None, server.log()
        assert time.monotonic() < deadline, f"not within {DEADLINE_S}s: {what}\n{server.log()}"
        await asyncio.sleep(0.05)


def implementer_requests(fake: FakeAnthropic) -> list[RecordedRequest]:
    return [request for request in fake.requests if agent_of(request) == "implementer"]


async def wait_for_implementer_turn(fake: FakeAnthropic, server: Server, count: int) -> None:
    """Until the implementer's `count`th request has arrived at the model."""
    try:
        async with asyncio.timeout(DEADLINE_S):
            while len(implementer_requests(fake)) < count:
                await fake.wait_for_requests(len(fake.requests) + 1)
    except TimeoutError:
        raise AssertionError(f"no implementer turn {count}\n{server.log()}") from None


def script_implementer(model: PipelineModel) -> None:
    """An edit, then a turn slow enough to be cut off by the kill, then the step's end."""
    edit = {"path": "test_greet.py", "old_text": '"Ada"', "new_text": '"Hello Ada"'}
    model.script(
        "implementer",
        scripted.tool_use("edit_file", edit),
        scripted.tool_use("report_output", {"summary": "never sent"}, delay_s=SLOW_TURN_S),
        report({"summary": "A failing test shows the greeting."}),
        done(),
    )


async def start_pipeline(api: Api, key: str, clone_url: str) -> int:
    """The ticket synced and linked to the registered repository; its oncall_bug pipeline."""
    await api.call("POST", "/api/tickets/sync", {"project": PROJECT, "wait": True})
    repository = {"full_name": REPO, "clone_url": clone_url, "installation_id": INSTALLATION}
    await api.call("POST", "/api/repositories", repository, status=201)
    await api.call("PUT", f"/api/tickets/{key}/repositories", {"repositories": [REPO]})
    body = {"ticket": key, "cycle_type": "oncall_bug"}
    created = await api.call("POST", "/api/pipelines", body, status=201)
    return int(created["pipeline"]["id"])


async def test_a_pipeline_killed_mid_step_finishes_after_a_restart(
    tmp_path: Path,
    server: Server,
    fake_jira: FakeJira,
    anthropic: FakeAnthropic,
    github: FakeGitHub,
) -> None:
    remote = make_remote(tmp_path, "hello-world", FILES)
    script_implementer(PipelineModel(anthropic))
    key = fake_jira.add_issue(PROJECT, "Greeting is wrong in production", labels=("oncall",))
    server.start()
    async with aiohttp.ClientSession() as session:
        api = Api(session, server)
        await api.healthy()
        pipeline_id = await start_pipeline(api, key, remote.url)
        await wait_for_implementer_turn(anthropic, server, 2)
        before_kill = implementer_requests(anthropic)[-1].messages
        [killed] = [
            s for s in (await api.pipeline(pipeline_id))["steps"] if s["status"] == "running"
        ]
        server.kill()
        asked_before_kill = len(anthropic.requests)

        server.start()
        await api.healthy()
        await until(server, lambda: waits_for_review(api, pipeline_id), "the PR opened")
        finished = await api.pipeline(pipeline_id)
        path = f"/api/events?stream=pipeline:{pipeline_id}&limit=1000"
        events = (await api.call("GET", path))["events"]

    assert killed["phase"] == "reproduce"
    resumed = [r for r in anthropic.requests[asked_before_kill:] if agent_of(r) == "implementer"]
    assert len(before_kill) == 3  # the task, the edit and its result
    assert resumed[0].messages[: len(before_kill)] == before_kill
    assert [pull["head"]["ref"] for pull in github.opened_pulls] == [finished["branch"]]
    assert {step["status"] for step in finished["steps"]} == {"completed"}
    interrupted = [e["data"]["step_id"] for e in events if e["type"] == "step_interrupted"]
    assert interrupted == [killed["id"]]
    server.stop()
    with sqlite3.connect(tmp_path / "biagent.db") as database:
        query = "SELECT DISTINCT status FROM pipeline_steps WHERE pipeline_id = ?"
        assert database.execute(query, (pipeline_id,)).fetchall() == [("completed",)]


async def waits_for_review(api: Api, pipeline_id: int) -> bool:
    """The pipeline's PR is open (and it did not fail on the way)."""
    view = await api.pipeline(pipeline_id)
    assert view["status"] not in ("failed", "cancelled"), view
    return bool(view["status"] == "waiting_for_review")
