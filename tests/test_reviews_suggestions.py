"""Suggestion blocks end to end: signed real payloads into the real app, the real engine in a
real worktree of a local bare repository, the GitHub fake over HTTP, the Anthropic fake counting
every model request (none, when every comment is a suggestion)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.reviews.engine import EngineResult
from bot.reviews.running import build_review_batch
from storage import pull_requests, review_batches, review_iterations
from tests.conftest import StartApp
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic
from tests.reviews_agent_scenario import (
    HEAD_REF,
    AgentScenario,
    open_scenario,
    push_as_someone_else,
    replies_by_comment,
    report,
    run_tests,
)
from tests.reviews_scenario import NUMBER, REPO, REVIEWER, thread_event
from tests.worktree_helpers import Remote, git
from web.keys import SERVICES

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


@pytest.fixture
async def model() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic()
    await fake.start()
    yield fake
    await fake.close()


Prepare = Callable[[Remote], object]


@pytest.fixture
def open_prepared(
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


@pytest.fixture
async def scenario(open_prepared: Callable[[Prepare], Awaitable[AgentScenario]]) -> AgentScenario:
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


async def test_a_suggestion_on_a_symlink_or_outside_the_tree_is_never_written(
    open_prepared: Callable[[Prepare], Awaitable[AgentScenario]], tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")

    def add_symlink(remote: Remote) -> None:
        (remote.work / "link.txt").symlink_to(outside)
        git("add", "link.txt", cwd=remote.work)
        git("commit", "-q", "-m", "A link", cwd=remote.work)
        git("push", "-q", "origin", f"{HEAD_REF}:{HEAD_REF}", cwd=remote.work)

    scenario = await open_prepared(add_symlink)
    fields = {"commit_id": scenario.start_sha, "side": "RIGHT"}
    on_link = scenario.review_comment(
        "```suggestion\nreplaced\n```", line=1, fields={**fields, "path": "link.txt"}
    )
    escaping = scenario.review_comment(
        "```suggestion\nreplaced\n```", line=1, fields={**fields, "path": "../outside.txt"}
    )
    ids = [on_link["comment"]["id"], escaping["comment"]["id"]]
    scenario.model.add(
        report([(i, "declined", "Not a file of this repository.") for i in ids]),
        scripted.text("Done."),
    )
    await review_with(scenario, [on_link, escaping])

    task = scenario.model.requests[0].messages[0]["content"][0]["text"]
    assert "link.txt is not a regular file on the head" in task
    assert task.count("Its ```suggestion block was NOT applied") == 2
    assert outside.read_text() == "keep me\n"
    assert scenario.commits_since_start() == []


async def test_a_suggestion_someone_committed_meanwhile_is_answered_without_the_agent(
    scenario: AgentScenario,
) -> None:
    done = suggestion(scenario, '    return "Hello, " + name\n', line=2)
    by_hand = "# greetings\n" + GREET.replace('"Hello "', '"Hello, "')
    push_as_someone_else(scenario.remote, {"greet.py": by_hand}, "Apply suggestion by hand")
    await review_with(scenario, [done])

    assert scenario.model.requests == []
    assert scenario.commits_since_start() == ["Apply suggestion by hand"]
    reply = replies_by_comment(scenario)[done["comment"]["id"]]
    assert "**Not changed**: the branch already reads as this suggestion makes it" in reply
    check_run = scenario.check_runs()[-1]  # (the first was left on the commit before theirs)
    assert scenario.fake.check_run_history[check_run["id"]][-1] == ("completed", "success")
    assert "| Not changed | suggestion | $0.00 |" in check_run["output"]["summary"]


async def test_a_reopened_suggestion_thread_goes_to_the_agent_not_applied_again(
    scenario: AgentScenario,
) -> None:
    applied = suggestion(scenario, '    return "Hello, " + name\n', line=2)
    root = applied["comment"]["id"]
    await review_with(scenario, [applied])
    assert scenario.fake.threads.resolved_by_mutation == [root]
    applied_in = scenario.head()

    scenario.model.add(
        report([(root, "question", "It reads as you suggested: what is still missing?")]),
        scripted.text("Done."),
    )
    scenario.fake.threads.resolved.discard(root)  # the reviewer clicks "Unresolve"
    await scenario.send(
        "pull_request_review_thread", thread_event(scenario, "unresolved", root, sender=REVIEWER)
    )
    await scenario.advance(31)

    task = scenario.model.requests[0].messages[0]["content"][0]["text"]
    assert f"Comment {root}" in task and "it is back for work" in task
    assert "was NOT applied" not in task
    assert scenario.head() == applied_in
    assert scenario.commits_since_start() == ["Apply suggestions from code review"]
    assert "**Question**" in scenario.fake.replies_to(root)[-1]["body"]


async def test_a_suggestion_repeating_its_lines_goes_to_the_agent_with_its_words(
    scenario: AgentScenario,
) -> None:
    """The reviewer left the pre-filled lines as they were and wrote what they want: nothing to
    apply, the ask is in the prose; the other suggestion of the batch is still applied."""
    same = suggestion(
        scenario,
        "",
        line=2,
        body='Log the name here too.\n```suggestion\n    return "Hello " + name\n```\n',
    )
    applied = suggestion(scenario, '    return "Bye, " + name\n', start_line=6, line=7)
    same_id = same["comment"]["id"]
    scenario.model.add(report([(same_id, "question", "Log it where?")]), scripted.text("Done."))
    await review_with(scenario, [same, applied])

    task = scenario.model.requests[0].messages[0]["content"][0]["text"]
    assert f"Comment {same_id}" in task and "Log the name here too." in task
    assert "its block repeats lines 2-2 of greet.py unchanged" in task
    assert scenario.commits_since_start() == ["Apply suggestions from code review"]
    replies = replies_by_comment(scenario)
    assert "**Question**" in replies[same_id]
    assert f"**Fixed** in {scenario.head()[:7]}" in replies[applied["comment"]["id"]]
    (check_run,) = scenario.check_runs()
    assert scenario.fake.check_run_history[check_run["id"]][-1][0] == "completed"


async def test_a_suggestion_differing_only_in_line_endings_is_not_committed_empty(
    open_prepared: Callable[[Prepare], Awaitable[AgentScenario]],
) -> None:
    def windows_file(remote: Remote) -> None:
        remote.commit({"win.txt": "one\r\ntwo\r\nthree\r\n"}, "A CRLF file", branch=HEAD_REF)

    scenario = await open_prepared(windows_file)
    prose = scenario.review_comment(
        "Spell it out in the README.\n```suggestion\ntwo\n```\n",
        line=2,
        fields={"path": "win.txt", "commit_id": scenario.start_sha, "side": "RIGHT"},
    )
    prose_id = prose["comment"]["id"]
    scenario.model.add(report([(prose_id, "declined", "Not needed.")]), scripted.text("Done."))
    await review_with(scenario, [prose])

    task = scenario.model.requests[0].messages[0]["content"][0]["text"]
    assert "its block repeats lines 2-2 of win.txt unchanged" in task
    assert scenario.commits_since_start() == []
    assert blob_at_head(scenario, "win.txt") == b"one\r\ntwo\r\nthree\r\n"
    assert "**Not changed**" in replies_by_comment(scenario)[prose_id]


async def test_a_comment_github_moved_to_a_commit_the_worktree_lacks_is_placed_where_written(
    scenario: AgentScenario,
) -> None:
    """GitHub moves a current comment's `commit_id` to the newest head; pushed after the
    worktree was fetched, that commit is not there: the lines are read where it was written."""
    later = "0123456789abcdef" * 2 + "01234567"  # a head this worktree never fetched
    moved = scenario.review_comment(
        'Like this:\n```suggestion\n    return "Hello, " + name\n```\n',
        line=2,
        fields={
            "path": "greet.py",
            "commit_id": later,
            "original_commit_id": scenario.start_sha,
            "side": "RIGHT",
        },
    )
    await review_with(scenario, [moved])

    assert scenario.model.requests == []
    assert '"Hello, "' in scenario.file_at_head("greet.py")
    assert scenario.commits_since_start() == ["Apply suggestions from code review"]
    assert "**Fixed**" in replies_by_comment(scenario)[moved["comment"]["id"]]


async def test_a_file_holding_a_replacement_character_is_text_and_gets_its_suggestion(
    open_prepared: Callable[[Prepare], Awaitable[AgentScenario]],
) -> None:
    """U+FFFD written in UTF-8 is text; a Latin-1 byte is not (handed to the agent)."""

    def two_files(remote: Remote) -> None:
        (remote.work / "latin.txt").write_bytes(b"caf\xe9\n")
        remote.commit({"odd.txt": "bad byte: \ufffd\nkeep\n"}, "Two files", branch=HEAD_REF)

    scenario = await open_prepared(two_files)
    fields = {"commit_id": scenario.start_sha, "side": "RIGHT"}
    fixed = scenario.review_comment(
        "```suggestion\nKEEP\n```\n", line=2, fields={**fields, "path": "odd.txt"}
    )
    latin = scenario.review_comment(
        "```suggestion\ncafe\n```\n", line=1, fields={**fields, "path": "latin.txt"}
    )
    latin_id = latin["comment"]["id"]
    scenario.model.add(report([(latin_id, "declined", "Not text.")]), scripted.text("Done."))
    await review_with(scenario, [fixed, latin])

    task = scenario.model.requests[0].messages[0]["content"][0]["text"]
    assert "latin.txt is not UTF-8 text" in task and f"Comment {fixed['comment']['id']}" not in task
    assert blob_at_head(scenario, "odd.txt") == "bad byte: \ufffd\nKEEP\n".encode()
    assert blob_at_head(scenario, "latin.txt") == b"caf\xe9\n"
