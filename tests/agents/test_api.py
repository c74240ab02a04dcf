"""The agent runtime wired into the real app: token catch-up, clarifications, costs, run_step."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from bot.agents.loop import AgentContext
from bot.agents.tokens import TokenCoalescer, TokenSequence
from tests.conftest import StartApp
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic
from tests.helpers import auth_headers, make_settings
from web.keys import SERVICES

STREAM = "pr:octo/demo#7"


def tokens_url(stream: str, after: int) -> str:
    return f"/api/streams/{quote(stream, safe='')}/tokens?after={after}"


@pytest.fixture
async def app_client(
    start_app: StartApp, tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    settings = make_settings(tmp_path, anthropic_configured=True, anthropic_base_url=fake.base_url)
    return await start_app(settings)


async def test_the_app_builds_a_runner_that_runs_a_step(
    app_client, fake: FakeAnthropic, worktree: Path
) -> None:
    runner = app_client.app[SERVICES].agents
    assert runner is not None
    fake.add(scripted.text("Hello from the wired runner."))
    context = AgentContext(
        "pr:octo/demo#7/batch:1", worktree, "Say hello.", STREAM, pr="octo/demo#7"
    )
    result = await runner.run_step("review_response", context)
    assert result.status == "completed"
    assert fake.requests[0].api_key == "test-key"
    costs = await app_client.get("/api/agent-costs?pr=octo/demo%237", headers=auth_headers())
    assert (await costs.json())["calls"] == 1


async def test_a_reconnecting_client_catches_up_on_tokens_after_its_last_seq(app_client) -> None:
    services = app_client.app[SERVICES]
    coalescer = TokenCoalescer(TokenSequence(services.db), services.bus, services.clock, STREAM)
    for piece in ("first frame. ", "second frame. ", "third frame."):
        await coalescer.add(piece)
        await coalescer.flush()
    response = await app_client.get(tokens_url(STREAM, 1), headers=auth_headers())
    assert response.status == 200
    body = await response.json()
    assert body["type"] == "token_catchup"
    assert body["data"] == {
        "stream": STREAM,
        "from_seq": 2,
        "last_seq": 3,
        "text": "second frame. third frame.",
    }
    nothing = await (await app_client.get(tokens_url(STREAM, 3), headers=auth_headers())).json()
    assert nothing["data"]["text"] == "" and nothing["data"]["last_seq"] == 3


async def test_token_catchup_needs_the_token(app_client) -> None:
    response = await app_client.get(tokens_url(STREAM, 0))
    assert response.status == 401


async def test_expired_token_frames_are_not_served(app_client, manual_clock) -> None:
    services = app_client.app[SERVICES]
    coalescer = TokenCoalescer(
        TokenSequence(services.db), services.bus, services.clock, STREAM, ttl_s=-1.0
    )
    await coalescer.add("already expired")
    await coalescer.flush()
    body = await (await app_client.get(tokens_url(STREAM, 0), headers=auth_headers())).json()
    assert body["data"]["text"] == "" and body["frames"] == 0


async def test_a_clarification_is_answered_over_the_api(
    app_client, fake: FakeAnthropic, worktree: Path
) -> None:
    runner = app_client.app[SERVICES].agents
    fake.add(scripted.tool_use("request_clarification", {"question": "Which branch?"}))
    context = AgentContext("pipeline:1/plan", worktree, "Plan it.", "pipeline:1", pipeline_id=1)
    paused = await runner.run_step("planner", context)
    listed = await (
        await app_client.get("/api/clarifications?status=open", headers=auth_headers())
    ).json()
    assert [c["question"] for c in listed["clarifications"]] == ["Which branch?"]
    url = f"/api/clarifications/{paused.clarification_id}/answer"
    answered = await app_client.post(
        url, json={"answer": "main", "answered_by": "ana"}, headers=auth_headers()
    )
    assert answered.status == 200
    assert (await answered.json())["status"] == "answered"
    again = await app_client.post(url, json={"answer": "dev"}, headers=auth_headers())
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "already_answered"
    missing = await app_client.post(
        "/api/clarifications/999/answer", json={"answer": "x"}, headers=auth_headers()
    )
    assert missing.status == 404
    fake.add(scripted.text("Planning on main."))
    resumed = await runner.run_step("planner", context)
    assert resumed.status == "completed"
    assert fake.requests[-1].tool_results()[0]["content"] == "A person answered: main"
