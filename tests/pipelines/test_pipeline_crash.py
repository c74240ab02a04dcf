"""SIGKILL the real server in the middle of a pipeline step; a restart finishes the pipeline.

`python -m bot` runs as a subprocess, configured by its environment, pointed at the fakes of
this process (tests/pipelines/world.py's scripted model, JIRA and GitHub) and at a local bare
remote. The implementer's second turn answers slowly, so the kill lands while its step runs;
the server started again on the same database and worktree root resumes the step from its
stored conversation and opens the pull request.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp

from tests.bot_process import BotProcess
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic, RecordedRequest
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.pipelines.bot_process import DEADLINE_S, Api, make_pipeline, until
from tests.pipelines.world import FILES, PROJECT, PipelineModel, agent_of, done, report
from tests.worktree_helpers import make_remote

SLOW_TURN_S = 30.0  # far longer than the kill takes: the step is mid-turn when it dies


def implementer_requests(fake: FakeAnthropic) -> list[RecordedRequest]:
    return [request for request in fake.requests if agent_of(request) == "implementer"]


async def wait_for_implementer_turn(fake: FakeAnthropic, server: BotProcess, count: int) -> None:
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


async def test_a_pipeline_killed_mid_step_finishes_after_a_restart(
    tmp_path: Path,
    bot_server: BotProcess,
    fake_jira: FakeJira,
    anthropic: FakeAnthropic,
    real_clock_github: FakeGitHub,
) -> None:
    server, github = bot_server, real_clock_github
    remote = make_remote(tmp_path, "hello-world", FILES)
    script_implementer(PipelineModel(anthropic))
    key = fake_jira.add_issue(PROJECT, "Greeting is wrong in production", labels=("oncall",))
    server.start()
    async with aiohttp.ClientSession() as session:
        api = Api(session, server)
        await api.healthy()
        pipeline_id = await make_pipeline(api, key, remote.url, cycle_type="oncall_bug")
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
