"""The worktree tools and their sandbox: path confinement, bash limits, scrubbed environment."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from bot.agents import grep_tool, tools
from bot.agents.sandbox import BashPolicy, PathRefused, bash_tool_text, resolve_inside, run_bash
from bot.agents.tool_registry import ToolContext, ToolResult
from bot.isolation.sandbox import bwrap_path
from tests.fakes.anthropic import FakeAnthropic

needs_bwrap = pytest.mark.skipif(
    bwrap_path() is None, reason="bwrap not installed (Debian package bubblewrap)"
)


class Changes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    async def __call__(self, path: str, change_type: str, diff: str) -> None:
        self.seen.append((path, change_type, diff))


def tool_context(worktree: Path, **policy: Any) -> tuple[ToolContext, Changes]:
    changes = Changes()
    return ToolContext(worktree, BashPolicy(**policy), changes), changes


async def call(name: str, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    tool = tools.builtin_registry().get(name)
    problem = tool.validation_error(arguments)
    assert problem is None, problem
    assert tool.handler is not None
    return await tool.handler(arguments, context)


@pytest.mark.parametrize(
    "path",
    ["../outside.txt", "src/../../outside.txt", "/etc/passwd", "/tmp", ".git/config", ""],
)
def test_paths_that_leave_the_worktree_are_refused(worktree: Path, path: str) -> None:
    with pytest.raises(PathRefused):
        resolve_inside(worktree, path)


def test_an_absolute_path_inside_the_worktree_is_accepted(worktree: Path) -> None:
    assert resolve_inside(worktree, str(worktree / "src/app.py")) == (
        worktree.resolve() / "src/app.py"
    )


async def test_a_symlink_pointing_out_is_refused_for_read_and_write(
    worktree: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    (worktree / "link.txt").symlink_to(secret)
    (worktree / "linkdir").symlink_to(tmp_path)
    context, changes = tool_context(worktree)
    for name, arguments in [
        ("file_read", {"path": "link.txt"}),
        ("file_write", {"path": "link.txt", "content": "overwritten"}),
        ("file_write", {"path": "linkdir/new.txt", "content": "escaped"}),
        ("edit_file", {"path": "link.txt", "old_text": "do", "new_text": "did"}),
    ]:
        with pytest.raises(PathRefused):
            await call(name, arguments, context)
    assert secret.read_text() == "do not read"
    assert not (tmp_path / "new.txt").exists()
    assert changes.seen == []


async def test_file_write_records_created_and_modified_with_diffs(worktree: Path) -> None:
    context, changes = tool_context(worktree)
    await call("file_write", {"path": "docs/new.md", "content": "one\n"}, context)
    await call("file_write", {"path": "docs/new.md", "content": "two\n"}, context)
    assert [(path, kind) for path, kind, _ in changes.seen] == [
        ("docs/new.md", "created"),
        ("docs/new.md", "modified"),
    ]
    assert "+one" in changes.seen[0][2] and "-one\n+two" in changes.seen[1][2]


async def test_edit_file_refuses_an_ambiguous_replacement(worktree: Path) -> None:
    (worktree / "twice.txt").write_text("x = 1\nx = 1\n")
    context, changes = tool_context(worktree)
    ambiguous = await call(
        "edit_file", {"path": "twice.txt", "old_text": "x = 1", "new_text": "x = 2"}, context
    )
    assert ambiguous.is_error and "occurs 2 times" in ambiguous.content
    everywhere = await call(
        "edit_file",
        {"path": "twice.txt", "old_text": "x = 1", "new_text": "x = 2", "replace_all": True},
        context,
    )
    assert not everywhere.is_error
    assert (worktree / "twice.txt").read_text() == "x = 2\nx = 2\n"
    assert len(changes.seen) == 1


async def test_glob_and_grep_stay_in_the_worktree_and_skip_git(worktree: Path) -> None:
    context, _ = tool_context(worktree)
    listed = await call("glob", {"pattern": "**/*.py"}, context)
    assert listed.content == "src/app.py"
    found = await call("grep", {"pattern": "GREETING"}, context)
    assert found.content == 'src/app.py:1: GREETING = "hello"'
    with pytest.raises(PathRefused):
        await call("glob", {"pattern": "../*"}, context)


def test_schema_validation_names_the_bad_argument() -> None:
    bash = tools.builtin_registry().get("bash")
    assert bash.validation_error({"command": "ls"}) is None
    problem = bash.validation_error({"command": 3, "extra": True})
    assert problem is not None
    assert "command: 3 is not of type 'string'" in problem
    assert "Additional properties are not allowed" in problem
    assert bash.validation_error(["ls"]) == "arguments must be a JSON object"


async def test_bash_is_killed_at_its_timeout(worktree: Path) -> None:
    started = time.monotonic()
    result = await run_bash(worktree, "sleep 20; echo late", BashPolicy(timeout_s=0.5))
    assert result.timed_out
    assert time.monotonic() - started < 5
    assert "late" not in result.output
    assert "[timed out after 0.5s" in bash_tool_text(result, 0.5, 1000)


async def test_bash_output_is_capped(worktree: Path) -> None:
    result = await run_bash(
        worktree, "yes biagent | head -c 500000", BashPolicy(output_cap_bytes=1000)
    )
    assert result.truncated and len(result.output) == 1000
    assert "[output cut at 1000 bytes" in bash_tool_text(result, 120, 1000)


async def test_bash_sees_no_secret_of_the_service(
    worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "ANTHROPIC_API_KEY": "sk-ant-test-secret",
        "GITHUB_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----",
        "BIAGENT_API_TOKEN": "api-token-secret-value",
        "JIRA_API_TOKEN": "jira-secret-value",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    context, _ = tool_context(worktree)
    result = await call("bash", {"command": "env"}, context)
    for name, value in secrets.items():
        assert name not in result.content and value not in result.content
    assert f"HOME={worktree.resolve()}" in result.content


async def test_bash_changes_to_files_are_recorded(worktree: Path) -> None:
    context, changes = tool_context(worktree)
    result = await call(
        "bash",
        {"command": "echo new > made.txt && sed -i s/hello/hey/ src/app.py && rm README.md"},
        context,
    )
    assert not result.is_error, result.content
    kinds = {path: kind for path, kind, _ in changes.seen}
    assert kinds == {"made.txt": "created", "src/app.py": "modified", "README.md": "deleted"}
    diffs = {path: diff for path, _, diff in changes.seen}
    assert '+GREETING = "hey"' in diffs["src/app.py"]


@needs_bwrap
async def test_bash_under_bubblewrap_has_no_network(worktree: Path, fake: FakeAnthropic) -> None:
    port = fake.base_url.rsplit(":", 1)[1]
    probe = (
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', "
        + port
        + "), timeout=2); print('connected')\""
    )
    jailed = await run_bash(worktree, probe, BashPolicy())
    assert jailed.isolated and jailed.exit_code != 0 and "connected" not in jailed.output
    free = await run_bash(worktree, probe, BashPolicy(use_bwrap=False))
    assert free.exit_code == 0 and "connected" in free.output


@needs_bwrap
async def test_bash_under_bubblewrap_cannot_write_outside_the_worktree(
    worktree: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    result = await run_bash(worktree, f"echo x > {outside}; echo ok > inside.txt", BashPolicy())
    assert not outside.exists()
    assert (worktree / "inside.txt").read_text() == "ok\n"
    assert result.isolated


async def test_bash_without_bubblewrap_says_so(worktree: Path) -> None:
    result = await run_bash(worktree, "echo hi", BashPolicy(use_bwrap=False))
    text = bash_tool_text(result, 120, 1000)
    assert text.startswith("note: no sandbox (bwrap not found)")
    assert "hi\n[exit code 0]" in text


def test_the_home_directory_of_the_test_process_is_not_the_worktree(worktree: Path) -> None:
    assert os.environ.get("HOME") != str(worktree)


async def test_a_symlink_made_in_bash_is_recorded_as_a_link_never_its_target(
    worktree: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside-secret.txt"
    outside.write_text("TOP-SECRET-CONTENT\n")
    context, changes = tool_context(worktree, use_bwrap=False)
    result = await call("bash", {"command": f"ln -s {outside} leak"}, context)
    assert not result.is_error, result.content
    diffs = {path: diff for path, _, diff in changes.seen}
    assert f"symlink -> {outside}" in diffs["leak"]
    assert "TOP-SECRET" not in "".join(diffs.values())


async def test_fifos_are_refused_by_the_file_tools_and_skipped_by_grep(worktree: Path) -> None:
    os.mkfifo(worktree / "pipe")
    context, _ = tool_context(worktree)
    started = time.monotonic()
    found = await call("grep", {"pattern": "hello"}, context)
    assert not found.is_error and "pipe" not in found.content
    for name, arguments in (
        ("grep", {"pattern": "x", "path": "pipe"}),
        ("file_read", {"path": "pipe"}),
        ("file_write", {"path": "pipe", "content": "x"}),
        ("edit_file", {"path": "pipe", "old_text": "a", "new_text": "b"}),
    ):
        result = await call(name, arguments, context)
        if name == "grep":
            assert result.content == "no matches"
        else:
            assert result.is_error and "not a regular file" in result.content, result.content
    assert time.monotonic() - started < 10


async def test_a_catastrophic_pattern_is_stopped_and_the_loop_keeps_running(
    worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grep_tool, "GREP_TIMEOUT_S", 1.0)
    (worktree / "slow.txt").write_text("a" * 40 + "!\n")
    context, _ = tool_context(worktree)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    result = await call("grep", {"pattern": "(a+)+$", "path": "slow.txt"}, context)
    ticker.cancel()
    assert result.is_error and "too slow" in result.content
    assert ticks >= 10  # the event loop was not blocked while the search ran


def test_a_tool_with_a_broken_schema_is_dropped_at_registration() -> None:
    registry = tools.builtin_registry()
    for name, schema in (
        ("bad_ref", {"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}),
        ("bad_type", {"type": "object", "properties": {"x": {"type": "nonsense"}}}),
    ):
        tool = tools.Tool(name, "broken", schema, None, source="mcp:broken")
        assert registry.register(tool) is False and name not in registry
    good = {
        "type": "object",
        "$defs": {"n": {"type": "integer"}},
        "properties": {"x": {"$ref": "#/$defs/n"}},
    }
    assert registry.register(tools.Tool("good", "fine", good, None))


def test_a_broken_schema_at_call_time_is_a_tool_error() -> None:
    tool = tools.Tool("late", "broken", {"properties": {"x": {"$ref": "#/nowhere"}}}, None)
    problem = tool.validation_error({"x": 1})
    assert problem is not None and "cannot be used" in problem
