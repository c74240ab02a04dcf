"""Suggestion blocks end to end: signed real payloads into the real app, the real engine in a
real worktree of a local bare repository, the GitHub fake over HTTP, the Anthropic fake counting
every model request (none, when every comment is a suggestion). This file: suggestions applied,
mixed batches, moved lines, and a batch worked again after a stop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.reviews.engine import EngineResult
from bot.reviews.running import build_review_batch
from storage import pull_requests, review_batches, review_iterations
from tests.fakes import anthropic as scripted
from tests.reviews_agent_scenario import (
    HEAD_REF,
    AgentScenario,
    push_as_someone_else,
    replies_by_comment,
    report,
    run_tests,
)
from tests.reviews_scenario import NUMBER, REPO, REVIEWER
from tests.reviews_suggestion_scenario import (  # noqa: F401  (pytest fixtures, by name)
    GREET,
    SECOND_REVIEWER,
    Prepare,
    blob_at_head,
    co_author,
    open_prepared_fixture,
    review_with,
    say_goodbye_too,
    scenario_fixture,
    suggestion,
)
from tests.worktree_helpers import Remote
from web.keys import SERVICES


async def test_two_suggestions_are_one_commit_with_co_authors_and_no_model_at_all(
    scenario: AgentScenario,
) -> None:
    scenario.fake.set_permission(REPO, SECOND_REVIEWER, "write")  # a collaborator too
    single = suggestion(scenario, '    return "Hello, " + name\n', line=2)
    multi = suggestion(
        scenario, '    return "Bye, " + name\n', start_line=6, line=7, author=SECOND_REVIEWER
    )
    await review_with(scenario, [single, multi])

    assert scenario.model.requests == []
    assert scenario.file_at_head("greet.py") + "\n" == GREET.replace(
        '"Hello "', '"Hello, "'
    ).replace('    message = "Bye " + name\n    return message\n', '    return "Bye, " + name\n')
    assert scenario.commits_since_start() == ["Apply suggestions from code review"]
    message = scenario.message(scenario.head())
    assert co_author(single) in message.splitlines()
    assert co_author(multi) in message.splitlines()
    replies = replies_by_comment(scenario)
    head = scenario.head()
    assert sorted(replies) == sorted([single["comment"]["id"], multi["comment"]["id"]])
    assert all(f"**Fixed** in {head[:7]}" in body for body in replies.values())
    (check_run,) = scenario.check_runs()
    assert scenario.fake.check_run_history[check_run["id"]][-1] == ("completed", "success")
    assert "Applied suggestion" in check_run["output"]["summary"]
    assert "`python3 -m unittest -q` passed" in check_run["output"]["summary"]
    (summary,) = scenario.pr_comments()
    assert "2 applied as suggestions" in summary["body"] and "$0.00" in summary["body"]
    threads = scenario.fake.threads  # part B, after the push: resolved, re-requested once
    assert sorted(threads.resolved_by_mutation) == sorted(replies)
    assert len(threads.review_requests) == 1
    assert sorted(threads.requested_of(REPO, NUMBER)) == sorted([REVIEWER, SECOND_REVIEWER])


async def test_a_mixed_batch_commits_the_suggestion_and_gives_the_agent_the_rest(
    scenario: AgentScenario,
) -> None:
    applied = suggestion(scenario, '    return "Hello, " + name\n', line=2)
    plain = scenario.review_comment("Say something about greetings in the notes.")
    plain_id = plain["comment"]["id"]
    scenario.model.add(
        scripted.tool_use(
            "edit_file", {"path": "NOTES.md", "old_text": "Notes", "new_text": "Greeting notes"}
        ),
        run_tests(),
        report([(plain_id, "fixed", "Noted.")]),
        scripted.text("Done."),
    )
    await review_with(scenario, [applied, plain])

    task = scenario.model.requests[0].messages[0]["content"][0]["text"]
    assert f"Comment {plain_id}" in task and f"Comment {applied['comment']['id']}" not in task
    assert scenario.commits_since_start() == [
        "Address review comments on #2",
        "Apply suggestions from code review",
    ]
    assert '"Hello, "' in scenario.file_at_head("greet.py")
    assert scenario.file_at_head("NOTES.md") == "Greeting notes"
    replies = replies_by_comment(scenario)
    suggestion_commit = scenario.remote.sha(f"{HEAD_REF}~1")
    assert f"**Fixed** in {suggestion_commit[:7]}" in replies[applied["comment"]["id"]]
    assert f"**Fixed** in {scenario.head()[:7]}" in replies[plain_id]
    (check_run,) = scenario.check_runs()
    table = check_run["output"]["summary"]
    assert "Applied suggestion" in table and "| agent |" in table


async def test_a_suggestion_on_lines_that_changed_is_handed_to_the_agent_not_misapplied(
    scenario: AgentScenario,
) -> None:
    moved = suggestion(scenario, '    return "Hello, " + name\n', line=2)
    theirs = GREET.replace('"Hello "', '"Hi there "')
    push_as_someone_else(scenario.remote, {"greet.py": theirs}, "Greet differently")
    moved_id = moved["comment"]["id"]
    scenario.model.add(
        report([(moved_id, "question", "The greeting changed since: keep 'Hi there'?")]),
        scripted.text("Done."),
    )
    await review_with(scenario, [moved])

    task = scenario.model.requests[0].messages[0]["content"][0]["text"]
    assert "Its ```suggestion block was NOT applied" in task
    assert "lines 2-2 of greet.py changed since" in task
    assert scenario.file_at_head("greet.py") + "\n" == theirs
    assert scenario.commits_since_start() == ["Greet differently"]
    assert "**Question**" in replies_by_comment(scenario)[moved_id]


async def test_a_suggestion_on_lines_that_only_moved_is_applied_where_they_are_now(
    scenario: AgentScenario,
) -> None:
    farewell = suggestion(scenario, '    return "Bye, " + name\n', start_line=6, line=7)
    header = '"""Greetings."""\n\nimport sys\n\n'
    push_as_someone_else(scenario.remote, {"greet.py": header + GREET}, "A docstring")
    await review_with(scenario, [farewell])

    assert scenario.model.requests == []
    expected = header + GREET.replace(
        '    message = "Bye " + name\n    return message\n', '    return "Bye, " + name\n'
    )
    assert scenario.file_at_head("greet.py") + "\n" == expected
    assert scenario.commits_since_start() == ["Apply suggestions from code review", "A docstring"]


async def work_the_batch_again(scenario: AgentScenario) -> EngineResult:
    """A stop after the push, before the report was stored: the engine is called again for
    the same batch (and iteration), as the resumed worker does."""
    service = scenario.client.app[SERVICES].reviews  # type: ignore[union-attr]
    pr = await pull_requests.find_pull_request(scenario.db, REPO, NUMBER)
    assert pr is not None and service is not None and service.engine is not None
    (batch,) = await review_batches.list_batches(scenario.db, pr.id)
    again = await build_review_batch(service, pr, batch, 1, {})
    return await service.engine.work(again)


async def test_the_same_batch_worked_again_after_a_stop_applies_nothing_twice(
    scenario: AgentScenario,
) -> None:
    single = suggestion(scenario, '    return "Hello, " + name\n', line=2)
    await review_with(scenario, [single])
    head = scenario.head()
    result = await work_the_batch_again(scenario)
    assert result.status == "completed" and result.commit_sha == head
    assert [(o.comment_id, o.suggestion, o.commit_sha) for o in result.outcomes] == [
        (single["comment"]["id"], True, head)
    ]
    assert scenario.head() == head and scenario.model.requests == []
    (iteration,) = await review_iterations.list_iterations(scenario.db, 1)
    assert iteration.cost_usd == 0.0


async def test_a_mixed_batch_worked_again_after_a_stop_asks_and_pushes_nothing_new(
    scenario: AgentScenario,
) -> None:
    applied = suggestion(scenario, '    return "Hello, " + name\n', line=2)
    plain = scenario.review_comment("Say something about greetings in the notes.")
    scenario.model.add(
        scripted.tool_use(
            "edit_file", {"path": "NOTES.md", "old_text": "Notes", "new_text": "Greeting notes"}
        ),
        report([(plain["comment"]["id"], "fixed", "Noted.")]),
        scripted.text("Done."),
    )
    await review_with(scenario, [applied, plain])
    head, requests = scenario.head(), len(scenario.model.requests)
    suggestion_commit = scenario.remote.sha(f"{HEAD_REF}~1")

    result = await work_the_batch_again(scenario)
    assert result.status == "completed" and result.commit_sha == head
    assert [(o.comment_id, o.suggestion, o.commit_sha) for o in result.outcomes] == [
        (applied["comment"]["id"], True, suggestion_commit),
        (plain["comment"]["id"], False, head),
    ]
    assert scenario.head() == head and len(scenario.model.requests) == requests
    assert len(scenario.commits_since_start()) == 2


STOP_ONCE = (
    "if [ -e .stopped-once ]; then python3 -m unittest -q; else touch .stopped-once; sleep 120; fi"
)


async def test_a_stop_between_the_suggestions_commit_and_its_push_applies_them_once(
    open_prepared: Callable[[Prepare], Awaitable[AgentScenario]],
    fake_github: Any,
    tmp_path: Path,
) -> None:
    """The app stops while the tests run on the suggestions' commit (made, not pushed); the
    batch resumed after the restart finds that commit, tests and pushes it: applied once."""
    fake_github.set_file(REPO, ".github/biagent.yml", f"test: {json.dumps(STOP_ONCE)}\n")
    scenario = await open_prepared(say_goodbye_too)
    single = suggestion(scenario, '    return "Hello, " + name\n', line=2)
    multi = suggestion(scenario, '    return "Bye, " + name\n', start_line=6, line=7)
    ids = [single["comment"]["id"], multi["comment"]["id"]]
    for payload in (single, multi):
        await scenario.send("pull_request_review_comment", payload)
    await scenario.send(
        "pull_request_review", scenario.review("changes_requested", comment_ids=ids)
    )
    for _ in range(3000):  # the scheduler's own loop works the batch: wait for its tests
        if any(tmp_path.rglob(".stopped-once")):
            break
        await asyncio.sleep(0.01)
    assert any(tmp_path.rglob(".stopped-once")), "the tests never started"
    assert scenario.commits_since_start() == []  # committed in the worktree, not pushed
    await scenario.restart()
    await scenario.settle()

    assert scenario.commits_since_start() == ["Apply suggestions from code review"]
    assert '"Hello, "' in scenario.file_at_head("greet.py")
    assert scenario.file_at_head("greet.py").count('"Bye, "') == 1
    replies = replies_by_comment(scenario)
    assert sorted(replies) == sorted(ids) and len(scenario.replies()) == 2
    assert all(f"**Fixed** in {scenario.head()[:7]}" in body for body in replies.values())
    assert scenario.model.requests == []


async def test_a_crlf_file_keeps_crlf_and_its_last_line_stays_without_a_newline(
    open_prepared: Callable[[Prepare], Awaitable[AgentScenario]],
) -> None:

    def windows_file(remote: Remote) -> None:
        remote.commit({"win.txt": "one\r\ntwo\r\nthree"}, "A CRLF file", branch=HEAD_REF)

    scenario = await open_prepared(windows_file)
    last_line = scenario.review_comment(
        "Two lines here, please:\r\n```suggestion\r\nTHREE\r\nfour\r\n```\r\n",
        line=3,
        fields={"path": "win.txt", "commit_id": scenario.start_sha, "side": "RIGHT"},
    )
    await review_with(scenario, [last_line])

    assert blob_at_head(scenario, "win.txt") == b"one\r\ntwo\r\nTHREE\r\nfour"
    assert scenario.model.requests == []
