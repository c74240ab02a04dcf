"""How long biagent takes, around the model, to answer a review: submission to the last reply.

The project side is the whole production path with the real review engine: the app on
loopback, signed webhooks into the durable intake, the dispatcher and the debounce scheduler,
the GitHub fake over HTTP (real gidgethub client), the review_response agent on the real SDK
against the Anthropic fake answering at once (edit a file, run the tests, report three
outcomes, end), the PR worktree fetched from a warm mirror, the tests run in the sandbox, the
commit pushed with a lease to a local bare repository, three threaded replies, the summary and
the check run. Each round posts three review comments, then the review submission; the clock
runs from that webhook to the last thread reply GitHub received, less the model's own time
(each Messages API call from its arrival at the fake to the end of its streamed reply). A
warm-up round first clones the mirror and makes the worktree ("with a warm mirror").

The suggestions-only case runs in the same world once the agent rounds are done (the mirror
warm): each round two review comments hold ```suggestion blocks (one on a line of greet.py, one
on two lines of test_greet.py, written on the current head), then the review submission; no
model request at all (checked), the suggestions committed, the tests run, the push, two
replies. Its figure is the whole time from the submission to the last reply (there is no model
time to take off). Target: the median < 0.5 s (`suggestions_overhead_s`).

The baseline, in the same run, is the same flow with phase 1's scripted engine (no git, no
agent): the floor of the review machinery itself; the difference is what the engine adds.
GitHub write spacing (GITHUB_WRITE_SPACING_SECONDS, 1 s by default, a deliberate courtesy to
GitHub's secondary rate limits) is set to 0 for both and reported separately. Target: the
median overhead < 1 s.

    .venv/bin/python -m bench.review_latency [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bot.clock import SystemClock
from bot.config import Settings
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub, generate_app_key
from tests.fakes.review_engine import ScriptedEngine
from tests.reviews_agent_scenario import (
    TEST_COMMAND,
    AgentScenario,
    agent_settings,
    make_pr_remote,
    report,
)
from tests.reviews_scenario import Scenario, review_settings
from web.app import create_app

TARGET_S = 1.0
SUGGESTIONS_TARGET_S = 0.5
COMMENTS = ("Greet with a comma.", "Name the parameter person.", "Why not an f-string?")


@dataclasses.dataclass(frozen=True, slots=True)
class Round:
    total_s: float
    model_s: float

    @property
    def overhead_s(self) -> float:
        return self.total_s - self.model_s


@contextlib.asynccontextmanager
async def world(base: Path, *, with_agent: bool) -> AsyncIterator[Scenario]:
    app_key = generate_app_key()
    github = FakeGitHub(app_id=4242, public_key_pem=app_key[1])
    model = FakeAnthropic()
    await github.start()
    await model.start()
    clients: list[TestClient[Any, Any]] = []

    async def start_app(settings: Settings, **options: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings, **options)))
        await client.start_server()
        clients.append(client)
        return client

    caps = {"review_max_runs_per_hour": 10_000, "review_max_consecutive_commits": 10_000}
    scenario: Scenario
    if with_agent:
        settings = agent_settings(base, github, app_key, model, **caps)
        scenario = AgentScenario(
            start_app=start_app,  # type: ignore[arg-type]
            settings=settings,
            fake=github,
            clock=SystemClock(),  # type: ignore[arg-type]
            model=model,
            remote=make_pr_remote(base),
        )
    else:
        settings = dataclasses.replace(review_settings(base, github, app_key), **caps)
        scenario = Scenario(
            start_app=start_app,  # type: ignore[arg-type]
            settings=settings,
            fake=github,
            clock=SystemClock(),  # type: ignore[arg-type]
            engine=ScriptedEngine(),
        )
    try:
        await scenario.start()
        await scenario.send("pull_request", scenario.opened())
        yield scenario
    finally:
        for client in clients:
            await client.close()
        await model.close()
        await github.close()


def script_round(model: FakeAnthropic, number: int, ids: list[int]) -> None:
    greeting = f'def greet(name):\n    return "Hello, " + name  # round {number}\n'
    model.add(
        scripted.tool_use("file_write", {"path": "greet.py", "content": greeting}),
        scripted.tool_use("bash", {"command": TEST_COMMAND}),
        report(
            [
                (ids[0], "fixed", "Comma added."),
                (ids[1], "declined", "`name` is what the callers pass."),
                (ids[2], "question", "Which Python versions must this support?"),
            ]
        ),
        scripted.text("Done."),
    )


async def one_round(scenario: Scenario, number: int) -> Round:
    payloads = [scenario.review_comment(f"{text} ({number})") for text in COMMENTS]
    ids = [payload["comment"]["id"] for payload in payloads]
    model = scenario.model if isinstance(scenario, AgentScenario) else None
    if model is not None:
        script_round(model, number, ids)
    requests_before = len(model.requests) if model is not None else 0
    total_s = await submit_and_wait(scenario, number, payloads)
    model_s = 0.0
    if model is not None:
        for request in model.requests[requests_before:]:
            model_s += (request.answered_at or request.received_at) - request.received_at
    return Round(total_s, model_s)


def suggestion_payloads(scenario: AgentScenario, number: int) -> list[dict[str, Any]]:
    """Two suggestions written on the current head: one line of greet.py, two of the test."""
    head = scenario.head()

    def on(path: str, first: int, last: int, lines: str) -> dict[str, Any]:
        return scenario.review_comment(
            f"Suggested ({number}):\n```suggestion\n{lines}```\n",
            line=last,
            fields={
                "path": path, "commit_id": head, "original_commit_id": head, "side": "RIGHT",
                "start_line": first if first != last else None,
                "original_start_line": first if first != last else None,
                "start_side": "RIGHT" if first != last else None,
            },
        )  # fmt: skip

    return [
        on("greet.py", 2, 2, f'    return "Hello, " + name  # round {number}\n'),
        on(
            "test_greet.py",
            7,
            8,
            f"    def test_greets_by_name(self):  # round {number}\n"
            '        self.assertIn("Ada", greet("Ada"))\n',
        ),
    ]


async def suggestion_round(scenario: AgentScenario, number: int) -> Round:
    requests_before = len(scenario.model.requests)
    payloads = suggestion_payloads(scenario, number)
    total_s = await submit_and_wait(scenario, 900 + number, payloads)
    if len(scenario.model.requests) != requests_before:
        raise RuntimeError(f"suggestion round {number}: the model was asked")
    return Round(total_s, 0.0)


async def submit_and_wait(
    scenario: Scenario, review_number: int, payloads: list[dict[str, Any]]
) -> float:
    """Send the comments, then time the review submission to the last thread reply."""
    ids = [payload["comment"]["id"] for payload in payloads]
    for payload in payloads:
        await scenario.send("pull_request_review_comment", payload)
    calls_before = len(scenario.fake.calls)
    review = scenario.review("changes_requested", review_id=900 + review_number, comment_ids=ids)
    started = time.monotonic()
    await scenario.send("pull_request_review", review)
    deadline = started + 30.0
    while True:
        replies = [
            call
            for call in scenario.fake.calls[calls_before:]
            if call.method == "POST" and call.path.endswith("/replies")
        ]
        if len(replies) >= len(ids):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"round {review_number}: only {len(replies)} replies after 30 s")
        await asyncio.sleep(0.002)
    finished = max(call.at for call in replies)
    await settle(scenario, calls_before)
    return finished - started


async def settle(scenario: Scenario, calls_before: int) -> None:
    """Let the round finish (summary, check run) before the next one starts."""
    for _ in range(5000):
        done = [
            call
            for call in scenario.fake.calls[calls_before:]
            if call.method == "PATCH" and "/check-runs/" in call.path
            if (call.body or {}).get("status") == "completed"
        ]
        if done:
            return
        await asyncio.sleep(0.002)


async def measure(
    base: Path, *, with_agent: bool, rounds: int
) -> tuple[list[Round], int, list[Round]]:
    """The rounds, GitHub writes per batch, and (with the agent engine) suggestion rounds."""
    async with world(base, with_agent=with_agent) as scenario:
        await one_round(scenario, 0)  # warm-up: the mirror, the worktree, the caches
        measured = [await one_round(scenario, number) for number in range(1, rounds + 1)]
        writes = sum(
            1
            for call in scenario.fake.calls
            if call.method in ("POST", "PATCH", "PUT", "DELETE")
            and not call.path.startswith("/app/")
        )
        suggested = []
        if isinstance(scenario, AgentScenario):
            suggested = [
                await suggestion_round(scenario, number) for number in range(100, 100 + rounds)
            ]
        return measured, round(writes / (rounds + 1)), suggested


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


async def run(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-review-") as scratch:
        base = Path(scratch)
        (base / "engine").mkdir()
        (base / "baseline").mkdir()
        engine, writes, suggested = await measure(base / "engine", with_agent=True, rounds=rounds)
        baseline, _, _ = await measure(base / "baseline", with_agent=False, rounds=rounds)
    overhead = median([r.overhead_s for r in engine])
    suggestions = median([r.total_s for r in suggested])
    floor = median([r.total_s for r in baseline])
    print(f"review latency, {rounds} rounds after a warm-up (3 comments + review each)")
    print("round  total_s  model_s  overhead_s  baseline_s")
    for number, (ours, theirs) in enumerate(zip(engine, baseline, strict=True), start=1):
        print(
            f"{number:5d}  {ours.total_s:7.3f}  {ours.model_s:7.3f}  {ours.overhead_s:10.3f}"
            f"  {theirs.total_s:10.3f}"
        )
    print(
        f"median overhead {overhead:.3f} s (target < {TARGET_S:.0f} s); scripted-engine floor"
        f" {floor:.3f} s, so the engine (fetch, worktree, agent loop, tests, commit, push) adds"
        f" {overhead - floor:.3f} s"
    )
    print(
        "suggestions only (2 suggestion comments + review, no model): "
        + " ".join(f"{r.total_s:.3f}" for r in suggested)
        + f" s; median {suggestions:.3f} s (target < {SUGGESTIONS_TARGET_S} s)"
    )
    print(
        f"not counted: GitHub write spacing, {writes} content-creating calls per batch x"
        " GITHUB_WRITE_SPACING_SECONDS (1 s by default) in production"
    )
    return {
        "bench": "review_latency",
        "overhead_s": round(overhead, 4),
        "target": TARGET_S,
        "ok": overhead < TARGET_S and suggestions < SUGGESTIONS_TARGET_S,
        "max_overhead_s": round(max(r.overhead_s for r in engine), 4),
        "model_s": round(median([r.model_s for r in engine]), 4),
        "baseline_s": round(floor, 4),
        "engine_added_s": round(overhead - floor, 4),
        "writes_per_batch": writes,
        "rounds": rounds,
        "suggestions_overhead_s": round(suggestions, 4),
        "suggestions_target": SUGGESTIONS_TARGET_S,
        "suggestions_max_s": round(max(r.total_s for r in suggested), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-bench"  # for the fake on loopback; the SDK reads it
    figures = asyncio.run(run(arguments.rounds))
    print(json.dumps(figures))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
