"""Suggestion blocks end to end, the edge cases: paths outside the tree, suggestions already
committed or reopened, repeated lines, line endings, comments on commits the worktree lacks, and
odd file contents. Real app, real engine and worktree, GitHub and Anthropic fakes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.fakes import anthropic as scripted
from tests.reviews_agent_scenario import (
    HEAD_REF,
    AgentScenario,
    push_as_someone_else,
    replies_by_comment,
    report,
)
from tests.reviews_scenario import REVIEWER, thread_event
from tests.reviews_suggestion_scenario import (  # noqa: F401  (pytest fixtures, by name)
    GREET,
    Prepare,
    blob_at_head,
    open_prepared_fixture,
    review_with,
    scenario_fixture,
    suggestion,
)
from tests.worktree_helpers import Remote, git


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
