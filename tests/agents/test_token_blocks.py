"""Token blocks from real agent runs (the SDK against the Anthropic fake, the real app and /ws):
a text block that ran to its end is completed, one whose stream broke upstream is interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.agents.loop import AgentContext
from tests.conftest import AppClient, StartApp
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic
from tests.helpers import make_settings
from tests.test_websocket import connect, next_json
from web.keys import SERVICES

STREAM = "pr:octo/demo#7"
SAID = "The greeting lives in src/app.py; I will change it."


@pytest.fixture
async def app_client(
    start_app: StartApp, tmp_path: Path, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> AppClient:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    settings = make_settings(tmp_path, anthropic_configured=True, anthropic_base_url=fake.base_url)
    return await start_app(settings)


async def run(app_client: AppClient, worktree: Path) -> Any:
    runner = app_client.app[SERVICES].agents
    assert runner is not None
    runner.runtime.stream_retries = 0  # the first break ends the step
    context = AgentContext("pr:octo/demo#7/batch:1", worktree, "Say it.", STREAM, pr="octo/demo#7")
    return await runner.run_step("review_response", context)


async def catchup_after(app_client: AppClient) -> dict[str, Any]:
    ws = await connect(app_client, streams=STREAM, since=0)
    frame = await next_json(ws)
    while frame.get("type") != "token_catchup":
        assert frame.get("control") != "live", "no token_catchup was sent"
        frame = await next_json(ws)
    await ws.close()
    data: dict[str, Any] = frame["data"]
    return data


def text_of(data: dict[str, Any]) -> str:
    return data["snapshot"]["text"] + "".join(frame["text"] for frame in data["tail"])


async def test_a_text_block_that_ran_to_its_end_is_completed(
    app_client: AppClient, fake: FakeAnthropic, worktree: Path
) -> None:
    fake.add(scripted.text(SAID))
    assert (await run(app_client, worktree)).status == "completed"
    data = await catchup_after(app_client)
    assert (data["state"], text_of(data)) == ("completed", SAID)


async def test_a_stream_that_broke_upstream_is_shown_interrupted_never_completed(
    app_client: AppClient, fake: FakeAnthropic, worktree: Path
) -> None:
    # message_start, content_block_start, ping, then three text deltas of 6 characters: cut.
    fake.add(scripted.text(SAID, break_after_events=6))
    result = await run(app_client, worktree)
    assert result.status == "interrupted"
    data = await catchup_after(app_client)
    assert data["state"] == "interrupted"
    assert text_of(data) == SAID[:18]
