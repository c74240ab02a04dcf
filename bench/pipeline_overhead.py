"""What the pipeline engine costs around the model: a backend ticket from the API to its PR.

The project side is the whole production path (tests/pipelines/world.py builds it): the real
app on loopback with the engine wired in, the ticket synced from the JIRA fake, the repository
registered through the API with a local bare repository as its remote, every agent of the
backend cycle (triage, plan, risk, implement, test, self_review, pull_request) on the real SDK
against the Anthropic fake answering at once, the implementer's edit in the pipeline's worktree,
the branch pushed and the pull request opened on the GitHub fake. Each run creates a pipeline
with `POST /api/pipelines`, approves the plan as soon as its gate holds, acknowledges the high
risk as soon as that gate holds, and stops the clock when the GitHub fake receives
`POST /repos/.../pulls`. A warm-up run first clones the mirror.

Not overhead, and subtracted: the model's own time (each Messages API call from its arrival
at the fake to the end of its streamed reply) and the time the pipeline waited for a person
(from each `waiting_for_approval` event to the `approval_given` or `risk_acknowledged` event of
the action, by their stored timestamps; the bench acts at once, so this is its own reaction).

Per phase transition: from a step's `step_completed` to the next step's `step_started`, by the
events' stored timestamps, less any gate wait in between: the commit of the step's verdict with
its event, the gates read again, the worktree found, the next step committed as running. The
floor, measured in the same run on the same database, is two committed events in a row on the
app's own bus (what a transition must write, and nothing else). The report also gives the
time to the first step (the worktree made) and each phase's time inside its step, less its
agent's model time (the agent loop, its tools, the pull request's push and opening).

Targets (issue 10): median overhead < 3 s per pipeline, median transition < 100 ms.

    .venv/bin/python -m bench.pipeline_overhead [--runs 5] [--spares 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bench.common import emit_result
from bot.clock import SystemClock
from bot.config import DEFAULT_SETTINGS, Settings
from bot.pipelines.events import StepCompleted, StepStarted
from storage.timestamps import from_text
from tests.fakes.anthropic import FakeAnthropic, RecordedRequest
from tests.fakes.github import FakeGitHub, generate_app_key
from tests.fakes.jira import FakeJira
from tests.pipelines.world import PROJECT, REPO, PipelineWorld, step_of
from web.app import create_app
from web.keys import SERVICES

TARGET_OVERHEAD_S = 3.0
TARGET_TRANSITION_MS = 100.0
FLOOR_SAMPLES = 50
GATE_RELEASES = ("approval_given", "risk_acknowledged")


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """One pipeline, POST to PR opened; every duration in seconds."""

    total_s: float
    model_s: float
    gate_wait_s: float
    first_step_s: float  # pipeline_started to the first step_started (the worktree made)
    transitions_s: tuple[float, ...]
    phases_s: dict[str, float]  # step_started to step_completed, less its agent's model time

    @property
    def overhead_s(self) -> float:
        return self.total_s - self.model_s - self.gate_wait_s


@contextlib.asynccontextmanager
async def bench_world(base: Path, *, spares: int) -> AsyncIterator[PipelineWorld]:
    """The pipeline world of the tests on the system clock, its fakes started and stopped."""
    app_key = generate_app_key()
    github = FakeGitHub(app_id=4242, public_key_pem=app_key[1])
    jira = FakeJira(deployment="Server")
    model = FakeAnthropic()
    clients: list[TestClient[Any, Any]] = []

    async def start_app(settings: Settings, **options: Any) -> TestClient[Any, Any]:
        # The tests keep no spare worktree; production keeps WORKTREE_SPARES (1) of them.
        ours = dataclasses.replace(settings, worktree_spares=spares)
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(ours, **options)))
        await client.start_server()
        clients.append(client)
        return client

    for fake in (github, jira, model):
        await fake.start()
    try:
        world = PipelineWorld(
            start_app=start_app,
            tmp_path=base,
            github=github,
            jira=jira,
            anthropic=model,
            app_key=app_key,
            clock=SystemClock(),  # type: ignore[arg-type]  # real time: the events' timestamps
        )
        await world.start()
        yield world
    finally:
        for client in clients:
            await client.close()
        for fake in (model, jira, github):
            await fake.close()


async def make_tickets(world: PipelineWorld, count: int) -> list[str]:
    """`count` backend tickets synced from the JIRA fake, each linked to the repository."""
    keys = [
        world.jira.add_issue(PROJECT, f"Greet people by saying Hello ({n})", labels=("backend",))
        for n in range(count)
    ]
    await world.api("POST", "/api/tickets/sync", {"project": PROJECT, "wait": True})
    await world.register()
    for key in keys:
        await world.api("PUT", f"/api/tickets/{key}/repositories", {"repositories": [REPO]})
    return keys


async def drive(world: PipelineWorld, key: str) -> tuple[float, int]:
    """Create the pipeline, release its gates as soon as they hold; (created at, its id)."""
    created_at = time.monotonic()
    created = await world.create(key)
    pipeline_id = int(created["id"])
    held = await world.settle(pipeline_id)
    plan = step_of(held, "plan")
    assert plan["status"] == "waiting_for_approval", held
    at_risk = await world.act(pipeline_id, f"steps/{plan['id']}/approve", {"approved_by": "mia"})
    [risk] = at_risk["risks"]
    opened = await world.act(
        pipeline_id, f"risks/{risk['id']}/acknowledge", {"acknowledged_by": "mia"}
    )
    assert opened["status"] == "waiting_for_review", opened.get("failure")
    return created_at, pipeline_id


@dataclasses.dataclass
class Timeline:
    """What a pipeline's events say about its time, by their stored timestamps."""

    gate_wait_s: float = 0.0
    first_step_s: float = 0.0  # pipeline_started to the first step_started (the worktree made)
    transitions_s: list[float] = dataclasses.field(default_factory=list)
    in_step_s: dict[str, float] = dataclasses.field(default_factory=dict)  # by phase
    agents: dict[str, str] = dataclasses.field(default_factory=dict)  # phase -> agent

    @classmethod
    def of(cls, events: Sequence[dict[str, Any]]) -> Timeline:
        """From the pipeline's events in id order: each transition is less the gate wait in
        it (from `waiting_for_approval` to the person's action)."""
        timeline = cls()
        pipeline_started = waiting_since = completed_at = None
        step_started: dict[str, float] = {}
        waited = 0.0
        for event in events:
            kind, data = event["type"], event["data"]
            at = from_text(event["ts"]).timestamp()
            if kind == "pipeline_started" and pipeline_started is None:
                pipeline_started = at
            elif kind == "waiting_for_approval":
                waiting_since = at
            elif kind in GATE_RELEASES and waiting_since is not None:
                timeline.gate_wait_s += at - waiting_since
                waited += at - waiting_since
                waiting_since = None
            elif kind == "step_completed":
                timeline.in_step_s[data["phase"]] = at - step_started[data["phase"]]
                completed_at, waited = at, 0.0
            elif kind == "step_started":
                step_started[data["phase"]] = at
                timeline.agents[data["phase"]] = data["agent"]
                if completed_at is not None:
                    timeline.transitions_s.append(at - completed_at - waited)
                elif pipeline_started is not None:
                    timeline.first_step_s = at - pipeline_started
                completed_at = None
        return timeline


def model_seconds(requests: Sequence[RecordedRequest]) -> float:
    """The model's own time: each request from its arrival to the end of its reply."""
    return sum((r.answered_at or r.received_at) - r.received_at for r in requests)


async def one_run(world: PipelineWorld, key: str) -> Run:
    world.model.script_gated_change()
    requests_before = len(world.anthropic.requests)
    asked_before = len(world.model.asked)
    calls_before = len(world.github.calls)
    created_at, pipeline_id = await drive(world, key)
    [opened] = [
        call
        for call in world.github.calls[calls_before:]
        if call.method == "POST" and call.path == f"/repos/{REPO}/pulls"
    ]
    timeline = Timeline.of(await world.events(pipeline_id))
    asked = world.model.asked[asked_before:]
    phases = {
        phase: seconds
        - model_seconds([request for agent, request in asked if agent == timeline.agents[phase]])
        for phase, seconds in timeline.in_step_s.items()
    }
    return Run(
        total_s=opened.at - created_at,
        model_s=model_seconds(world.anthropic.requests[requests_before:]),
        gate_wait_s=timeline.gate_wait_s,
        first_step_s=timeline.first_step_s,
        transitions_s=tuple(timeline.transitions_s),
        phases_s=phases,
    )


async def commit_floor(world: PipelineWorld, samples: int) -> list[float]:
    """Two committed events in a row on the app's bus and database: a transition's floor."""
    bus = world.app_client.app[SERVICES].bus
    timings = []
    for n in range(samples):
        completed = StepCompleted(
            pipeline_id=0, ticket="BENCH-0", step_id=n, phase="floor", attempt=1, cost_usd=0.0
        )
        next_started = StepStarted(
            pipeline_id=0, ticket="BENCH-0", step_id=n + 1, phase="floor", agent="-", attempt=1
        )
        started = time.perf_counter()
        await bus.publish("bench:floor", completed)
        await bus.publish("bench:floor", next_started)
        timings.append(time.perf_counter() - started)
    return timings


async def measure(runs: int, spares: int) -> tuple[list[Run], list[float]]:
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as scratch:
        async with bench_world(Path(scratch), spares=spares) as world:
            keys = await make_tickets(world, runs + 1)
            await one_run(world, keys[0])  # warm-up: the mirror cloned, code paths and caches
            measured = [await one_run(world, key) for key in keys[1:]]
            return measured, await commit_floor(world, FLOOR_SAMPLES)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def phase_medians(measured: list[Run]) -> dict[str, float]:
    """Each phase's time inside its step, less its agent's model time: median over the runs."""
    return {
        phase: statistics.median(run.phases_s[phase] for run in measured)
        for phase in measured[0].phases_s
    }


def print_report(measured: list[Run], floor_s: float, spares: int) -> None:
    print(f"pipeline overhead: {len(measured)} backend pipelines after a warm-up, {spares} spare")
    print("run  total_s  model_s  gate_wait_s  overhead_s  first_step_ms  transitions_ms")
    for number, run in enumerate(measured, start=1):
        transitions = " ".join(f"{ms(t):.0f}" for t in run.transitions_s)
        print(
            f"{number:3d}  {run.total_s:7.3f}  {run.model_s:7.3f}  {run.gate_wait_s:11.3f}"
            f"  {run.overhead_s:10.3f}  {ms(run.first_step_s):13.1f}  {transitions}"
        )
    inside = phase_medians(measured)
    print(
        "inside the steps, less the model (median ms): "
        + ", ".join(f"{phase} {ms(seconds):.0f}" for phase, seconds in inside.items())
    )
    print(f"floor: two committed events in a row, median {ms(floor_s)} ms")


def figures(measured: list[Run], floor: list[float], spares: int) -> dict[str, Any]:
    overhead = statistics.median(run.overhead_s for run in measured)
    transitions = [t for run in measured for t in run.transitions_s]
    per_transition = statistics.median(transitions)
    floor_s = statistics.median(floor)
    overhead_ok = overhead < TARGET_OVERHEAD_S
    transition_ok = per_transition * 1000 < TARGET_TRANSITION_MS
    return {
        "bench": "pipeline_overhead",
        "overhead_s": round(overhead, 4),
        "target_overhead_s": TARGET_OVERHEAD_S,
        "overhead_ok": overhead_ok,
        "per_transition_ms": ms(per_transition),
        "per_transition_max_ms": ms(max(transitions)),
        "target_transition_ms": TARGET_TRANSITION_MS,
        "transition_ok": transition_ok,
        "transition_max_ok": max(transitions) * 1000 < TARGET_TRANSITION_MS,
        "floor_ms": ms(floor_s),
        "transition_floor_ratio": round(per_transition / floor_s, 2),
        "total_s": round(statistics.median(run.total_s for run in measured), 4),
        "model_s": round(statistics.median(run.model_s for run in measured), 4),
        "gate_wait_s": round(statistics.median(run.gate_wait_s for run in measured), 4),
        "first_step_ms": ms(statistics.median(run.first_step_s for run in measured)),
        "phases_ms": {phase: ms(seconds) for phase, seconds in phase_medians(measured).items()},
        "overheads_s": [round(run.overhead_s, 4) for run in measured],
        "transitions_ms": [[ms(t) for t in run.transitions_s] for run in measured],
        "runs": len(measured),
        "spares": spares,
        "ok": overhead_ok and transition_ok,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured pipelines")
    parser.add_argument(
        "--spares", type=int, default=DEFAULT_SETTINGS.worktree_spares, help="WORKTREE_SPARES"
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-bench"  # for the fake on loopback; the SDK reads it
    measured, floor = asyncio.run(measure(arguments.runs, arguments.spares))
    result = figures(measured, floor, arguments.spares)
    print_report(measured, statistics.median(floor), arguments.spares)
    print(
        f"median overhead {result['overhead_s']:.3f} s (target < {TARGET_OVERHEAD_S:.0f} s);"
        f" median transition {result['per_transition_ms']} ms, max"
        f" {result['per_transition_max_ms']} ms (target < {TARGET_TRANSITION_MS:.0f} ms)"
    )
    emit_result(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
