"""A reviewer's follow-up through the real engine: the review_response agent (real SDK, the
Anthropic fake) is told what it answered before in the thread, the commit it made and what the
branch did since; its answer lands in the same thread, and the thread it fixed was resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartApp
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic
from tests.reviews_agent_scenario import (
    AgentScenario,
    agent_settings,
    fix_and_report,
    make_pr_remote,
    report,
    run_tests,
)
from tests.reviews_scenario import BOT, NUMBER, REPO, REVIEWER


@pytest.fixture
async def scenario(
    start_app: StartApp,
    tmp_path: Path,
    fake_github: Any,
    app_key: tuple[str, str],
    manual_clock: Any,
    model: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
) -> AgentScenario:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    scenario = AgentScenario(
        start_app=start_app,
        settings=agent_settings(tmp_path, fake_github, app_key, model),
        fake=fake_github,
        clock=manual_clock,
        model=model,
        remote=make_pr_remote(tmp_path),
    )
    await scenario.start()
    await scenario.send("pull_request", scenario.opened())
    return scenario


def tasks(scenario: AgentScenario) -> list[str]:
    """The task of each agent run, in order."""
    found: list[str] = []
    for request in scenario.model.requests:
        text = request.messages[0]["content"][0]["text"]
        if text not in found:
            found.append(text)
    return found


async def test_a_follow_up_is_worked_with_the_earlier_answer_and_commit_in_the_same_thread(
    scenario: AgentScenario,
) -> None:
    first = scenario.review_comment("Please greet with a comma.")
    root = first["comment"]["id"]
    scenario.model.add(*fix_and_report([(root, "fixed", "Added the comma.")]))
    await scenario.send("pull_request_review_comment", first)
    await scenario.send("pull_request_review", scenario.review("changes_requested",
                        comment_ids=[root]))  # fmt: skip
    await scenario.settle()
    fixed_in = scenario.head()
    assert scenario.fake.threads.resolved_by_mutation == [root]
    assert scenario.fake.threads.review_requests == [(REPO, NUMBER, [REVIEWER])]

    await scenario.advance(60)
    follow_up = scenario.review_comment(
        "No, greet with an exclamation mark instead.", in_reply_to=root, review_id=903
    )
    scenario.model.add(
        scripted.tool_use(
            "edit_file", {"path": "greet.py", "old_text": '"Hello, "', "new_text": '"Hello! "'}
        ),
        run_tests(),
        report([(follow_up["comment"]["id"], "fixed", "An exclamation mark, then.")]),
        scripted.text("Done."),
    )
    await scenario.send("pull_request_review_comment", follow_up)
    await scenario.advance(31)

    _, task = tasks(scenario)
    assert "No, greet with an exclamation mark instead." in task
    assert "You answered in this thread before:" in task
    assert f"fixed in commit {fixed_in[:12]}. Added the comma." in task
    assert f"What commit {fixed_in[:12]} changed" in task and "greet.py" in task
    assert "This comment follows up on that answer" in task
    assert "<!-- biagent:" not in task
    assert scenario.file_at_head("greet.py").count('"Hello! "') == 1
    answers = [a for a in scenario.fake.replies_to(root) if a["user"]["login"] == BOT]
    assert len(answers) == 2 and f"**Fixed** in {scenario.head()[:7]}" in answers[-1]["body"]
    assert scenario.fake.threads.resolved_by_mutation == [root]  # resolved already
    assert len(scenario.fake.threads.review_requests) == 2  # once per pushed iteration
