"""Slash commands and @-mentions on pull requests, end to end through the real app."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from bot.clock import ManualClock
from storage import review_batches
from tests.conftest import StartApp
from tests.fakes.github import FakeGitHub
from tests.fakes.review_engine import ScriptedEngine
from tests.reviews_scenario import NUMBER, REPO, Scenario, review_settings


def answers(scenario: Scenario) -> list[str]:
    return [c["body"] for c in scenario.pr_comments()]


@pytest.fixture
async def foreign(
    start_app: StartApp,
    tmp_path: Path,
    fake_github: FakeGitHub,
    app_key: tuple[str, str],
    manual_clock: ManualClock,
) -> Scenario:
    """The real app and a pull request someone else opened: biagent watches it only when asked."""
    scenario = Scenario(
        start_app=start_app,
        settings=review_settings(tmp_path, fake_github, app_key),
        fake=fake_github,
        clock=manual_clock,
        engine=ScriptedEngine(),
        opened_by_biagent=False,
    )
    await scenario.start()
    return scenario


async def test_a_command_from_someone_without_write_access_is_refused_once(
    scenario: Scenario,
) -> None:
    scenario.fake.set_permission(REPO, "visitor", "read")
    await scenario.send("pull_request_review_comment", scenario.review_comment("pending"))
    for command in ("/biagent address", "/biagent ignore"):
        await scenario.send("issue_comment", scenario.issue_comment(command, author="visitor"))
    (refusal,) = answers(scenario)
    assert refusal.startswith("@visitor thanks for asking!") and "write access" in refusal
    await scenario.advance(31)
    assert len(scenario.engine.batches) == 1  # the pending batch was neither forced nor dropped
    permission_calls = scenario.fake.calls_to("GET", f"/repos/{REPO}/collaborators/visitor")
    assert len(permission_calls) == 1  # cached


async def test_address_works_the_pending_batch_at_once(scenario: Scenario) -> None:
    await scenario.send("pull_request_review_comment", scenario.review_comment("pending"))
    await scenario.send("issue_comment", scenario.issue_comment("Thanks!\n/biagent address"))
    await scenario.settle()
    assert len(scenario.engine.batches) == 1
    assert any("working the 1 pending review comment" in body for body in answers(scenario))


async def test_commands_only_count_at_the_start_of_a_line(scenario: Scenario) -> None:
    quoted = "> /biagent help\n\nplease run `/biagent help` and\n```\n/biagent help\n```"
    await scenario.send("issue_comment", scenario.issue_comment(quoted))
    assert answers(scenario) == []


async def test_unknown_command_gets_the_help(scenario: Scenario) -> None:
    await scenario.send("issue_comment", scenario.issue_comment("/biagent frobnicate"))
    (answer,) = answers(scenario)
    assert "I don't know `/biagent frobnicate`" in answer
    assert "`/biagent pause`" in answer and "`/biagent cost`" in answer


async def test_pause_keeps_pending_comments_until_resume(scenario: Scenario) -> None:
    await scenario.send("pull_request_review_comment", scenario.review_comment("pending"))
    await scenario.send("issue_comment", scenario.issue_comment("/biagent pause"))
    await scenario.advance(400)
    assert scenario.engine.batches == []
    (check_run,) = scenario.check_runs()
    assert check_run["conclusion"] == "neutral"
    await scenario.send("issue_comment", scenario.issue_comment("/biagent resume"))
    await scenario.settle()
    assert len(scenario.engine.batches) == 1


async def test_ignore_drops_the_pending_batch(scenario: Scenario) -> None:
    await scenario.send("pull_request_review_comment", scenario.review_comment("pending"))
    await scenario.send("issue_comment", scenario.issue_comment("/biagent ignore"))
    await scenario.advance(400)
    assert scenario.engine.batches == []
    assert any("dropped the 1 pending" in body for body in answers(scenario))


async def test_retry_status_and_cost(scenario: Scenario) -> None:
    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    await scenario.advance(31)
    await scenario.send("issue_comment", scenario.issue_comment("/biagent retry"))
    await scenario.settle()
    assert len(scenario.engine.batches) == 2
    await scenario.send("issue_comment", scenario.issue_comment("/biagent status\n/biagent cost"))
    status, cost = answers(scenario)[-2:]
    assert "last batch" in status and "spent: $0.50" in status
    assert "$0.50 on this pull request over 2 run(s)" in cost


async def test_a_redelivered_command_is_answered_once(scenario: Scenario) -> None:
    payload = scenario.issue_comment("/biagent help")
    await scenario.send("issue_comment", payload)
    await scenario.send("issue_comment", payload)  # same event, new delivery id
    assert len(answers(scenario)) == 1


async def test_a_mention_on_someone_elses_pr_asks_biagent_in(foreign: Scenario) -> None:
    chatter = foreign.review_comment("Looks odd to me.")
    await foreign.send("pull_request_review_comment", chatter)
    await foreign.advance(400)
    assert foreign.engine.batches == []  # not watched, nobody asked
    foreign.fake.set_permission(REPO, "visitor", "read")
    refused = foreign.review_comment("@biagent-test please fix", author="visitor")
    await foreign.send("pull_request_review_comment", refused)
    asked = foreign.review_comment("@biagent-test can you rename this?")
    await foreign.send("pull_request_review_comment", asked)
    unrelated = foreign.review_comment("human-to-human remark")
    await foreign.send("pull_request_review_comment", unrelated)
    await foreign.advance(31)
    (batch,) = foreign.engine.batches
    assert [c.body for c in batch.comments] == ["@biagent-test can you rename this?"]
    detail: Any = await foreign.api("/api/pull-requests")
    assert detail["pull_requests"][0]["watched_because"] == "requested"


async def test_an_edit_that_adds_a_mention_needs_write_access(foreign: Scenario) -> None:
    await foreign.send("issue_comment", foreign.issue_comment("/biagent status"))  # watched
    foreign.fake.set_permission(REPO, "mallory", "read")
    created = foreign.review_comment("please change this", author="mallory")
    await foreign.send("pull_request_review_comment", created)
    edited = copy.deepcopy(created)
    edited["action"] = "edited"
    edited["comment"]["body"] = "@biagent-test please delete the tests"
    await foreign.send("pull_request_review_comment", edited)
    await foreign.advance(400)
    assert foreign.engine.batches == []
    refusals = [body for body in answers(foreign) if body.startswith("@mallory thanks")]
    assert len(refusals) == 1


async def test_a_command_runs_once_when_its_answer_is_retried(scenario: Scenario) -> None:
    await scenario.send("pull_request_review_comment", scenario.review_comment("one"))
    await scenario.advance(31)
    scenario.fake.script_failure(
        "POST", rf"/repos/{REPO}/issues/{NUMBER}/comments", status=502, times=1
    )
    await scenario.send("issue_comment", scenario.issue_comment("/biagent retry"))
    await scenario.settle()
    assert len(scenario.engine.batches) == 2
    for _ in range(3):  # the dispatcher retries the delivery whose answer failed
        await scenario.advance(120)
    assert len(scenario.engine.batches) == 2
    batches = await review_batches.list_batches(scenario.db, 1)
    assert [b.trigger for b in batches] == ["comments", "retry"]
    (answer,) = [body for body in answers(scenario) if "again" in body]
    assert answer.startswith("@Codertocat working the comments of batch 1 again.")
    rows = await scenario.db.fetchall(
        "SELECT status, attempts FROM deliveries WHERE event = 'issue_comment'"
    )
    assert [tuple(row) for row in rows] == [("done", 2)]  # it was retried, and then done
