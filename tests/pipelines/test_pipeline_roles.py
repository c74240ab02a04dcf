"""A pipeline across the role split (docs/deploy.md): started and paused through a web
instance's API, run by a worker on the same PostgreSQL, which stops the step when it sees the
pause in the pipeline's row (bot/pipelines/adoption.py)."""

from __future__ import annotations

import asyncio
import json

from bot.events.bus import Frame
from bot.roles import Role
from tests.conftest import AppClient
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import Hold
from tests.pipelines.world import PipelineWorld
from web.keys import PIPELINES, SERVICES


def frames_of(client: AppClient, type_name: str) -> tuple[list[Frame], asyncio.Event]:
    seen: list[Frame] = []
    arrived = asyncio.Event()

    def listen(frame: Frame) -> None:
        if frame.type == type_name:
            seen.append(frame)
            arrived.set()

    client.app[SERVICES].bus.on_stored(listen)
    return seen, arrived


async def until_set(happened: asyncio.Event, world: PipelineWorld) -> None:
    """Move the clock a poll interval at a time (the worker's looks at the rows sleep on it)
    until `happened`, for 30 s of real time at most."""
    for _ in range(60):
        await world.clock.advance(0.5)
        try:
            await asyncio.wait_for(happened.wait(), 0.5)
            return
        except TimeoutError:
            continue
    raise AssertionError("the worker did not stop the paused pipeline's step")


async def test_a_pause_on_a_web_instance_stops_the_step_on_the_worker(
    shared_postgres_url: str, world: PipelineWorld
) -> None:
    web = await world.start(role=Role.WEB, database_url=shared_postgres_url, instance_id="web-1")
    key = await world.ticket()
    thinking = Hold(after_events=2)
    world.model.script(
        "triage", scripted.Reply(blocks=scripted.text("Reading.").blocks, hold=thinking)
    )
    pipeline = await world.create(key, cycle_type="spike")
    assert pipeline["status"] == "running" and not web.app[PIPELINES].engine.tasks.running(
        pipeline["id"]
    )

    worker_settings = world.settings(
        role=Role.WORKER,
        database_url=shared_postgres_url,
        instance_id="worker-1",
        worktree_root=world.tmp_path / "worker-disk",
        worker_poll_interval=0.5,
    )
    worker = await world.start_app(worker_settings, clock=world.clock)
    interrupted, stopped = frames_of(worker, "step_interrupted")
    await asyncio.wait_for(thinking.reached.wait(), 30)  # the worker took it and runs triage
    assert worker.app[PIPELINES].engine.tasks.running(pipeline["id"])

    paused = await world.api("POST", f"/api/pipelines/{pipeline['id']}/pause", {"reason": "lunch"})
    assert paused["pipeline"]["status"] == "paused"
    await until_set(stopped, world)
    assert json.loads(interrupted[0].text)["data"]["phase"] == "triage"
    assert not worker.app[PIPELINES].engine.tasks.running(pipeline["id"])
    view = await world.pipeline(pipeline["id"])
    assert view["status"] == "paused"
    assert view["steps"][0]["status"] == "interrupted"
    sessions = (await world.api("GET", "/api/worktrees"))["worktrees"]
    assert [session["instance"] for session in sessions] == ["worker-1"]  # made on its disk
