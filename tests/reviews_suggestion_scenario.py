"""Shared setup of the suggestion-block tests: biagent's pull request on a real local remote whose
branch holds greet.py, the Anthropic fake, and review comments carrying suggestion blocks.

The fixtures are registered under their plain names (`model`, `open_prepared`, `scenario`) by
importing them into a test module."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartApp
from tests.fakes.anthropic import FakeAnthropic
from tests.reviews_agent_scenario import (
    HEAD_REF,
    AgentScenario,
    open_scenario,
)
from tests.reviews_scenario import REVIEWER
from tests.worktree_helpers import Remote

GREET = (
    "def greet(name):\n"
    '    return "Hello " + name\n'
    "\n"
    "\n"
    "def farewell(name):\n"
    '    message = "Bye " + name\n'
    "    return message\n"
)
SECOND_REVIEWER = "octocat"


Prepare = Callable[[Remote], object]


@pytest.fixture(name="open_prepared")
def open_prepared_fixture(
    start_app: StartApp,
    tmp_path: Path,
    fake_github: Any,
    app_key: tuple[str, str],
    manual_clock: Any,
    model: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[Prepare], Awaitable[AgentScenario]]:
    """Opens biagent's pull request on a remote `prepare` adds to first."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")

    async def opened(prepare: Prepare) -> AgentScenario:
        return await open_scenario(
            start_app, tmp_path, fake_github, app_key, manual_clock, model, prepare=prepare
        )

    return opened


def say_goodbye_too(remote: Remote) -> None:
    remote.commit({"greet.py": GREET}, "Say goodbye too", branch=HEAD_REF)


@pytest.fixture(name="scenario")
async def scenario_fixture(
    open_prepared: Callable[[Prepare], Awaitable[AgentScenario]],
) -> AgentScenario:
    """biagent's pull request, whose branch holds GREET in greet.py."""
    return await open_prepared(say_goodbye_too)


def suggestion(
    scenario: AgentScenario,
    lines: str,
    *,
    line: int,
    start_line: int | None = None,
    author: str = REVIEWER,
    body: str | None = None,
) -> dict[str, Any]:
    """A diff comment on greet.py at the PR's first head, with a suggestion block."""
    text = body if body is not None else f"Like this:\n```suggestion\n{lines}```\n"
    return scenario.review_comment(
        text,
        author=author,
        line=line,
        fields={
            "path": "greet.py",
            "commit_id": scenario.start_sha,
            "original_commit_id": scenario.start_sha,
            "start_line": start_line,
            "original_start_line": start_line,
            "start_side": "RIGHT" if start_line else None,
            "side": "RIGHT",
        },
    )


async def review_with(scenario: AgentScenario, payloads: list[dict[str, Any]]) -> None:
    ids = [payload["comment"]["id"] for payload in payloads]
    for payload in payloads:
        await scenario.send("pull_request_review_comment", payload)
    await scenario.send(
        "pull_request_review", scenario.review("changes_requested", comment_ids=ids)
    )
    await scenario.settle()


def blob_at_head(scenario: AgentScenario, path: str) -> bytes:
    """The file's bytes on the PR branch of the remote, line endings and all."""
    return subprocess.run(
        ["git", "cat-file", "blob", f"{HEAD_REF}:{path}"],
        cwd=scenario.remote.bare, capture_output=True, check=True,
    ).stdout  # fmt: skip


def co_author(payload: dict[str, Any]) -> str:
    user = payload["comment"]["user"]
    return (
        f"Co-authored-by: {user['login']} <{user['id']}+{user['login']}@users.noreply.github.com>"
    )
