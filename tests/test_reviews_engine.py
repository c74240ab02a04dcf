"""The real review engine end to end: signed real payloads into the real app, the
review_response agent on the real SDK against the Anthropic fake, a real worktree, tests run,
commit and push with a lease to a local bare repository standing for GitHub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.isolation.sandbox import SandboxResult, bwrap_path
from bot.reviews.agent_texts import summarize_tests
from bot.reviews.running import build_review_batch
from storage import pull_requests, review_batches
from tests.conftest import StartApp
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic, RecordedRequest, Reply
from tests.reviews_agent_scenario import (
    AgentScenario,
    edit_greeting,
    fix_and_report,
    open_scenario,
    push_as_someone_else,
    replies_by_comment,
    report,
    run_tests,
)
from tests.reviews_scenario import BOT, NUMBER, REPO, Scenario, review_settings
from tests.worktree_helpers import git
from web.keys import SERVICES

COMMENTS = ("Please greet with a comma.", "Rename greet to salute.", "Why not f-strings?")


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
    return await open_scenario(start_app, tmp_path, fake_github, app_key, manual_clock, model)


async def deliver(
    scenario: AgentScenario,
    ids: list[int],
    payloads: list[dict[str, Any]],
    *,
    review_id: int = 900,
) -> None:
    for payload in payloads:
        await scenario.send("pull_request_review_comment", payload)
        await scenario.advance(5)
    await scenario.send(
        "pull_request_review",
        scenario.review("changes_requested", review_id=review_id, comment_ids=ids),
    )
    await scenario.settle()


async def three_comments(scenario: AgentScenario) -> tuple[list[int], list[dict[str, Any]]]:
    payloads = [scenario.review_comment(text) for text in COMMENTS]
    return [payload["comment"]["id"] for payload in payloads], payloads


def agent_runs(scenario: AgentScenario) -> set[str]:
    """Distinct agent conversations the model saw (one per run of the review_response step)."""
    return {request.messages[0]["content"][0]["text"] for request in scenario.model.requests}


async def test_three_comments_and_a_review_make_one_run_one_pushed_commit_and_three_replies(
    scenario: AgentScenario,
) -> None:
    ids, payloads = await three_comments(scenario)
    scenario.model.add(
        *fix_and_report(
            [
                (ids[0], "fixed", "Added the comma."),
                (ids[1], "declined", "greet is the public name; renaming breaks callers."),
                (ids[2], "question", "Which Python versions must this support?"),
            ]
        )
    )
    await deliver(scenario, ids, payloads)

    assert len(agent_runs(scenario)) == 1 and len(scenario.model.requests) == 4
    task = scenario.model.requests[0].messages[0]["content"][0]["text"]
    assert all(f"Comment {i}" in task for i in ids) and "Diff hunk:" in task
    assert "python3 -m unittest -q" in task
    assert scenario.commits_since_start() == ["Address review comments on #2"]
    head = scenario.head()
    message = scenario.message(head)
    assert "Please greet with a comma." in message and "Rename greet" not in message
    assert "Biagent-Batch: " in message
    assert scenario.file_at_head("greet.py").count('"Hello, "') == 1
    replies = replies_by_comment(scenario)
    assert sorted(replies) == sorted(ids)
    assert f"**Fixed** in {head[:7]}" in replies[ids[0]]
    assert "renaming breaks callers" in replies[ids[1]]
    assert "Which Python versions" in replies[ids[2]]
    (summary,) = scenario.pr_comments()
    assert "1 fixed" in summary["body"] and "passed" in summary["body"]
    (check_run,) = scenario.check_runs()
    assert scenario.fake.check_run_history[check_run["id"]][-1] == ("completed", "success")
    assert "`python3 -m unittest -q` passed" in check_run["output"]["summary"]


async def test_replayed_deliveries_run_nothing_and_push_nothing(scenario: AgentScenario) -> None:
    ids, payloads = await three_comments(scenario)
    scenario.model.add(*fix_and_report([(i, "fixed", "Done.") for i in ids]))
    await deliver(scenario, ids, payloads)
    head, requests, calls = scenario.head(), len(scenario.model.requests), len(scenario.fake.calls)
    for payload in payloads:
        await scenario.send("pull_request_review_comment", payload)
    await scenario.send(
        "pull_request_review", scenario.review("changes_requested", comment_ids=ids)
    )
    await scenario.advance(600)
    assert scenario.head() == head and len(scenario.model.requests) == requests
    writes = [c for c in scenario.fake.calls[calls:] if c.method in ("POST", "PATCH")]
    assert writes == []
    assert len(scenario.replies()) == 3 and len(scenario.pr_comments()) == 1


async def test_a_comment_the_model_left_out_is_answered_not_addressed(
    scenario: AgentScenario,
) -> None:
    ids, payloads = await three_comments(scenario)
    scenario.model.add(
        *fix_and_report([(ids[0], "fixed", "Comma added."), (ids[1], "declined", "Public API.")])
    )
    await deliver(scenario, ids, payloads)
    replies = replies_by_comment(scenario)
    assert "**Not addressed**" in replies[ids[2]]
    assert "without reporting on this comment" in replies[ids[2]]
    assert "**Fixed**" in replies[ids[0]]
    (check_run,) = scenario.check_runs()
    assert scenario.fake.check_run_history[check_run["id"]][-1] == ("completed", "neutral")


async def test_a_push_by_someone_else_during_the_run_is_kept_and_ours_goes_on_top(
    scenario: AgentScenario,
) -> None:
    ids, payloads = await three_comments(scenario)
    theirs: list[str] = []

    def tests_while_a_person_pushes(request: RecordedRequest) -> Reply:
        theirs.append(push_as_someone_else(scenario.remote, {"NOTES.md": "Theirs\n"}, "Notes"))
        return run_tests()  # type: ignore[return-value]

    scenario.model.add(
        edit_greeting(),
        tests_while_a_person_pushes,
        report([(i, "fixed", "Done.") for i in ids]),
        scripted.text("Done."),
    )
    await deliver(scenario, ids, payloads)
    assert scenario.commits_since_start() == ["Address review comments on #2", "Notes"]
    head = scenario.head()
    assert scenario.remote.sha(f"{head}~1") == theirs[0]
    assert scenario.file_at_head("NOTES.md") == "Theirs"
    assert '"Hello, "' in scenario.file_at_head("greet.py")
    assert all(f"**Fixed** in {head[:7]}" in body for body in replies_by_comment(scenario).values())


async def test_a_conflicting_push_meanwhile_makes_the_agent_start_over_on_their_head(
    scenario: AgentScenario,
) -> None:
    ids, payloads = await three_comments(scenario)
    theirs: list[str] = []

    def report_after_a_conflicting_push(request: RecordedRequest) -> Reply:
        mine = 'def greet(name):\n    return "Hello there " + name\n'
        theirs.append(push_as_someone_else(scenario.remote, {"greet.py": mine}, "Their greeting"))
        return report([(i, "fixed", "Done.") for i in ids])  # type: ignore[return-value]

    scenario.model.add(
        edit_greeting(),
        report_after_a_conflicting_push,
        scripted.text("Done."),
        scripted.tool_use(
            "edit_file",
            {"path": "greet.py", "old_text": '"Hello there "', "new_text": '"Hello there, "'},
        ),
        report([(i, "fixed", "Done again.") for i in ids]),
        scripted.text("Done."),
    )
    await deliver(scenario, ids, payloads)
    restarted = scenario.model.requests[3].messages[0]["content"][0]["text"]
    assert "the branch moved" in restarted
    assert len(agent_runs(scenario)) == 2
    assert scenario.commits_since_start() == ["Address review comments on #2", "Their greeting"]
    assert scenario.remote.sha(f"{scenario.head()}~1") == theirs[0]
    assert '"Hello there, "' in scenario.file_at_head("greet.py")


async def test_the_synchronize_caused_by_its_own_push_is_ignored(scenario: AgentScenario) -> None:
    ids, payloads = await three_comments(scenario)
    scenario.model.add(*fix_and_report([(i, "fixed", "Done.") for i in ids]))
    await deliver(scenario, ids, payloads)
    pr = await pull_requests.find_pull_request(scenario.db, REPO, NUMBER)
    assert pr is not None and pr.consecutive_commits == 1
    pushed = scenario.head()
    # Recognised by the pushed sha itself, not only by the sender's login.
    await scenario.send("pull_request", scenario.synchronize(pushed, sender="Codertocat"))
    await scenario.send("pull_request", scenario.synchronize(pushed, sender=BOT))
    await scenario.advance(600)
    pr = await pull_requests.find_pull_request(scenario.db, REPO, NUMBER)
    assert pr is not None and pr.consecutive_commits == 1 and pr.head_sha == pushed
    assert len(agent_runs(scenario)) == 1 and len(scenario.check_runs()) == 1


async def test_a_budget_stop_pushes_nothing_and_concludes_the_check_run_neutral(
    start_app: StartApp,
    tmp_path: Path,
    fake_github: Any,
    app_key: tuple[str, str],
    manual_clock: Any,
    model: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    agents_file = tmp_path / "agents.yml"
    agents_file.write_text("agents:\n  review_response:\n    max_cost_usd: 0.000001\n")
    scenario = await open_scenario(
        start_app, tmp_path, fake_github, app_key, manual_clock, model, agents_file=agents_file
    )
    ids, payloads = await three_comments(scenario)
    scenario.model.add(*fix_and_report([(i, "fixed", "Done.") for i in ids]))
    await deliver(scenario, ids, payloads)
    assert len(scenario.model.requests) == 1
    assert scenario.commits_since_start() == []
    replies = replies_by_comment(scenario)
    assert all("**Not addressed**" in body and "budget" in body for body in replies.values())
    (check_run,) = scenario.check_runs()
    assert scenario.fake.check_run_history[check_run["id"]][-1] == ("completed", "neutral")
    assert "Stopped at the budget" in check_run["output"]["title"]


async def test_the_same_batch_worked_again_after_a_stop_asks_nothing_and_pushes_nothing_new(
    scenario: AgentScenario,
) -> None:
    """A stop after the push but before the report was stored: the worker calls the engine
    again for the same batch; the stored conversation is complete and the commit is there."""
    ids, payloads = await three_comments(scenario)
    scenario.model.add(*fix_and_report([(i, "fixed", "Done.") for i in ids]))
    await deliver(scenario, ids, payloads)
    head, requests = scenario.head(), len(scenario.model.requests)
    service = scenario.client.app[SERVICES].reviews  # type: ignore[union-attr]
    pr = await pull_requests.find_pull_request(scenario.db, REPO, NUMBER)
    assert pr is not None and service is not None and service.engine is not None
    (batch,) = await review_batches.list_batches(scenario.db, pr.id)
    again = await build_review_batch(service, pr, batch, 1, {})
    result = await service.engine.work(again)
    assert result.status == "completed" and result.commit_sha == head
    assert [outcome.commit_sha for outcome in result.outcomes] == [head] * 3
    assert scenario.head() == head and len(scenario.model.requests) == requests


async def test_without_the_agents_configured_a_batch_is_skipped_with_a_neutral_check_run(
    start_app: StartApp,
    tmp_path: Path,
    fake_github: Any,
    app_key: tuple[str, str],
    manual_clock: Any,
) -> None:
    scenario = Scenario(
        start_app=start_app,
        settings=review_settings(tmp_path, fake_github, app_key),  # no ANTHROPIC_API_KEY
        fake=fake_github,
        clock=manual_clock,
        engine=None,  # type: ignore[arg-type]
    )
    await scenario.start()
    await scenario.send("pull_request", scenario.opened())
    comment = scenario.review_comment("Please greet with a comma.")
    await scenario.send("pull_request_review_comment", comment)
    await scenario.send(
        "pull_request_review",
        scenario.review("changes_requested", comment_ids=[comment["comment"]["id"]]),
    )
    await scenario.settle()
    assert scenario.replies() == []
    (check_run,) = scenario.check_runs()
    assert scenario.fake.check_run_history[check_run["id"]][-1] == ("completed", "neutral")
    assert "no review engine" in check_run["output"]["title"]


def sandbox_result(output: str, exit_code: int | None, timed_out: bool = False) -> SandboxResult:
    return SandboxResult(exit_code, output, False, timed_out, 0.1, True)


def test_the_tests_line_is_the_command_its_verdict_and_its_own_summary() -> None:
    pytest_output = "....F\nFAILED test_x.py::test_y\n==== 1 failed, 4 passed in 0.12s ====\n"
    assert summarize_tests("pytest -q", sandbox_result(pytest_output, 1)) == (
        "`pytest -q` FAILED (exit 1): 1 failed, 4 passed in 0.12s"
    )
    unittest_output = "..\n------\nRan 2 tests in 0.001s\n\nOK\n"
    assert summarize_tests("python3 -m unittest", sandbox_result(unittest_output, 0)) == (
        "`python3 -m unittest` passed: OK"
    )
    assert summarize_tests("make test", sandbox_result("", None, timed_out=True)) == (
        "`make test` timed out"
    )


def plant_git_payloads(marker: Path) -> str:
    """An agent's bash trying every way to make biagent's own git (outside the jail) run
    `touch <marker>`: hooks, a hooks path, fsmonitor, a filter driver, redirected links."""
    payload = f"#!/bin/sh\ntouch {marker}\ncat\n"
    return "; ".join(
        [
            'G="$(sed -n "s/^gitdir: //p" .git)"',
            'C="$(cd "$G" && cd "$(cat commondir)" && pwd)"',
            f"printf '{payload}' > .cache-hook && chmod +x .cache-hook",
            "for h in pre-commit post-commit pre-push reference-transaction post-checkout; do"
            ' cp .cache-hook "$C/hooks/$h"; done',
            'git config core.hooksPath "$PWD"',
            'git config core.fsmonitor "$PWD/.cache-hook"',
            'git config filter.evil.clean "$PWD/.cache-hook"',
            "echo '* filter=evil' > .gitattributes",
            'echo "[core]\n\thooksPath = $PWD" > "$G/config.worktree"',
            'echo "$PWD" > "$G/commondir"',
            'echo "$PWD" > "$C/commondir"',
            "echo 'gitdir: /tmp' > .git",
            "echo planted",
        ]
    )


@pytest.mark.skipif(bwrap_path() is None, reason="bwrap not installed (Debian package bubblewrap)")
async def test_what_the_agent_plants_in_the_git_dirs_never_runs_when_biagent_commits_and_pushes(
    scenario: AgentScenario, tmp_path: Path
) -> None:
    """biagent's own git runs outside the agent's jail: the jail keeps everything that steers
    git read-only, and the run commits and pushes as usual without running any payload."""
    ids, payloads = await three_comments(scenario)
    marker = tmp_path / "payload-ran"
    scenario.model.add(
        edit_greeting(),
        scripted.tool_use("bash", {"command": plant_git_payloads(marker)}),
        report([(i, "fixed", "Done.") for i in ids]),
        scripted.text("Done."),
    )
    await deliver(scenario, ids, payloads)
    shown = scenario.model.requests[2].tool_results()[0]["content"]
    assert shown.count("Read-only file system") >= 5 and "planted" in shown
    assert "could not lock config file" in shown
    assert scenario.commits_since_start() == ["Address review comments on #2"]
    assert '"Hello, "' in scenario.file_at_head("greet.py")
    assert not marker.exists()
    (session,) = (await scenario.api("/api/worktrees"))["worktrees"]
    worktree = Path(session["repositories"][0]["path"])
    private = Path((worktree / ".git").read_text().removeprefix("gitdir:").strip())
    assert (private / "commondir").read_text().strip() == "../.."
    assert (private / "config.worktree").read_text() == ""
    mirror_config = (private / "../../config").resolve().read_text()
    assert not any(key in mirror_config for key in ("hooksPath", "fsmonitor", "evil"))


async def test_a_worktree_standing_off_the_fetched_head_is_reset_before_the_agent_runs(
    scenario: AgentScenario,
) -> None:
    """A branch kept from an earlier job can hold a commit that was never pushed: the next
    push, leased on the real head, must not carry it over anyone's commits."""
    ids, payloads = await three_comments(scenario)
    scenario.model.add(*fix_and_report([(i, "fixed", "Done.") for i in ids]))
    await deliver(scenario, ids, payloads)
    first = scenario.head()
    (session,) = (await scenario.api("/api/worktrees"))["worktrees"]
    worktree = Path(session["repositories"][0]["path"])
    (worktree / "stray.txt").write_text("never pushed\n")
    git("add", "stray.txt", cwd=worktree)
    git("commit", "-q", "-m", "Stray", cwd=worktree)
    comment = scenario.review_comment("One more: a docstring, please.", review_id=901)
    scenario.model.add(
        scripted.tool_use("file_write", {"path": "NOTES.md", "content": "Documented\n"}),
        report([(comment["comment"]["id"], "fixed", "Added.")]),
        scripted.text("Done."),
    )
    await deliver(scenario, [comment["comment"]["id"]], [comment], review_id=901)
    assert scenario.commits_since_start() == ["Address review comments on #2"] * 2
    assert scenario.remote.sha(f"{scenario.head()}~1") == first
    assert "Stray" not in git("log", "--format=%s", "changes", cwd=scenario.remote.bare)
