"""The bash tool: a command in the worktree's sandbox, and the files it changed.

The command runs through bot/agents/sandbox.py (`run_bash`: the jail, the timeout, the output
cap). Around it, the worktree's changed paths are listed before and after (`git status` and a
digest of each path, never following a symlink); each path whose state differs is reported with
its change type and diff, one git call for all the tracked ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

from bot.agents.sandbox import bash_tool_text, run_bash
from bot.agents.tool_registry import ToolContext, ToolResult
from bot.agents.worktree_files import (
    MAX_DIFF_BYTES,
    MAX_FILE_BYTES,
    read_capped,
    read_text,
    unified_diff,
)
from bot.gitops.runner import git_environment
from storage.tool_calls import ChangeType

PATHS_PER_GIT_CALL = 500  # changed paths named in one git command (the argument list is finite)

WorktreeState = dict[str, tuple[str, str]]  # path -> (git status code, content digest)


def _git(worktree: Path, *args: str) -> bytes | None:
    try:
        # Outside the sandbox: with the repository's code switched off (bot/gitops/runner.py).
        completed = subprocess.run(
            ["git", *args],
            cwd=worktree,
            env=git_environment(),
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout if completed.returncode == 0 else None


def _digest(path: Path) -> str:
    """What a changed path holds, for change detection, never following a symlink: a link's
    target text, a regular file's content (its size and mtime beyond MAX_FILE_BYTES), or its
    kind for anything else."""
    try:
        status = path.lstat()
    except OSError:
        return "-"
    if stat.S_ISLNK(status.st_mode):
        return "link:" + os.readlink(path)
    if not stat.S_ISREG(status.st_mode):
        return f"kind:{stat.S_IFMT(status.st_mode)}"
    if status.st_size > MAX_FILE_BYTES:
        return f"large:{status.st_size}:{status.st_mtime_ns}"
    try:
        return hashlib.sha1(read_capped(path)).hexdigest()
    except OSError:
        return "-"


def worktree_state(worktree: Path) -> WorktreeState | None:
    """path -> (git status code, content digest) for every changed path; None outside git."""
    listing = _git(worktree, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    if listing is None:
        return None
    state: WorktreeState = {}
    entries = listing.decode("utf-8", errors="replace").split("\x00")
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        code, name = entry[:2], entry[3:]
        if code[0] in "RC":
            index += 1  # the rename's source path follows
        state[name] = (code, _digest(worktree / name))
    return state


def _untracked_diff(worktree: Path, name: str) -> str:
    """The diff of a new file: a symlink as its target text, never what it points to; a regular
    file's text (capped); nothing for anything else."""
    path = worktree / name
    try:
        status = path.lstat()
    except OSError:
        return ""
    if stat.S_ISLNK(status.st_mode):
        return unified_diff(name, "", f"symlink -> {os.readlink(path)}\n")
    if not stat.S_ISREG(status.st_mode):
        return ""
    try:
        return unified_diff(name, "", read_text(path))
    except OSError as error:
        return f"[{name}: not shown: {error}]"


def _split_diff(diff: str) -> dict[str, str]:
    """`git diff` output cut per file, by its `diff --git a/<path> b/<path>` header."""
    pieces: dict[str, str] = {}
    for chunk in re.split(r"(?m)^(?=diff --git )", diff):
        header = chunk.split("\n", 1)[0]
        match = re.fullmatch(r"diff --git a/(.*) b/(.*)", header)
        if match and match.group(1) == match.group(2):
            pieces[match.group(1)] = chunk
    return pieces


def _tracked_diffs(worktree: Path, names: list[str]) -> tuple[set[str], dict[str, str]]:
    """Which of `names` git tracks, and their diffs cut per path: one `ls-files` and one `diff`
    per PATHS_PER_GIT_CALL names."""
    tracked: set[str] = set()
    diffs: dict[str, str] = {}
    plain = ("--literal-pathspecs", "-c", "core.quotePath=false")
    for first in range(0, len(names), PATHS_PER_GIT_CALL):
        batch = names[first : first + PATHS_PER_GIT_CALL]
        listed = _git(worktree, *plain, "ls-files", "-z", "--", *batch)
        found = set((listed or b"").decode("utf-8", errors="replace").split("\x00")) - {""}
        tracked |= found
        if found:
            whole = _git(
                worktree, *plain, "diff", "--no-ext-diff", "--no-textconv", "--no-color", "--",
                *sorted(found),
            )  # fmt: skip
            diffs.update(_split_diff((whole or b"").decode("utf-8", errors="replace")))
    return tracked, diffs


def change_type_of(
    exists: bool, name: str, before: WorktreeState, after: WorktreeState
) -> ChangeType:
    """Deleted when it is gone, created when it is newly untracked, else modified."""
    if not exists:
        return ChangeType.DELETED
    if after.get(name, ("", ""))[0] == "??" and name not in before:
        return ChangeType.CREATED
    return ChangeType.MODIFIED


def _tracked_diff(worktree: Path, name: str, diffs: dict[str, str]) -> str:
    diff = diffs.get(name)
    if diff is None:  # a name the header does not show plainly: ask git for it alone
        one = _git(
            worktree, "--literal-pathspecs", "diff", "--no-ext-diff", "--no-textconv", "--", name,
        )  # fmt: skip
        diff = (one or b"").decode("utf-8", errors="replace")
    return diff[:MAX_DIFF_BYTES]


def changes_between(
    worktree: Path, before: WorktreeState, after: WorktreeState
) -> list[tuple[str, ChangeType, str]]:
    """(path, change type, diff) for each path whose state differs (blocking: run it in a
    thread). One git call lists the tracked paths and one diffs them all."""
    names = [
        name for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)
    ]
    if not names:
        return []
    tracked, diffs = _tracked_diffs(worktree, names)
    changed = []
    for name in names:
        exists = os.path.lexists(worktree / name)
        change_type = change_type_of(exists, name, before, after)
        if name in tracked:
            diff = _tracked_diff(worktree, name, diffs)
        else:
            diff = _untracked_diff(worktree, name)
        changed.append((name, change_type, diff))
    return changed


async def bash(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    before = await asyncio.to_thread(worktree_state, context.worktree)
    policy = context.bash_policy
    timeout_s = policy.timeout_for(arguments.get("timeout_s"))
    result = await run_bash(
        context.worktree,
        arguments["command"],
        policy,
        timeout_s=timeout_s,
        scope=context.sandbox,
    )
    if before is not None:
        after = await asyncio.to_thread(worktree_state, context.worktree)
        if after is not None:
            changes = await asyncio.to_thread(changes_between, context.worktree, before, after)
            for name, change_type, diff in changes:
                await context.file_changed(name, change_type, diff)
    text = bash_tool_text(result, timeout_s, policy.output_cap_bytes)
    return ToolResult(text, is_error=result.timed_out or result.exit_code != 0)
