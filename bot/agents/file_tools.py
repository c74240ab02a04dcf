"""The file tools: file_read, file_write, edit_file and glob, confined to the step's worktree.

Every path goes through bot/agents/sandbox.py's `resolve_inside` (no `..`, no symlink out, no
`.git`); every read and write through bot/agents/worktree_files.py (regular files only, capped).
A write reports what it changed (`ToolContext.file_changed`), which the loop records in
file_changes and publishes as file_changed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
from pathlib import Path
from typing import Any

from bot.agents.sandbox import PathRefused, relative_name, resolve_inside
from bot.agents.tool_registry import ToolContext, ToolResult
from bot.agents.worktree_files import (
    NotARegularFile,
    kind_problem,
    read_regular,
    read_text,
    unified_diff,
    walk_files,
    write_text,
)
from storage.tool_calls import ChangeType

MAX_READ_BYTES = 200_000
MAX_LISTED = 500


async def file_read(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    target = resolve_inside(context.worktree, arguments["path"])
    try:
        text = await asyncio.to_thread(read_regular, target, arguments["path"])
    except OSError as error:
        return ToolResult(str(error), is_error=True)
    offset = int(arguments.get("offset", 1))
    limit = arguments.get("limit")
    lines = text.splitlines(keepends=True)
    chosen = lines[offset - 1 : None if limit is None else offset - 1 + int(limit)]
    body = "".join(chosen)
    if len(body) > MAX_READ_BYTES:
        body = body[:MAX_READ_BYTES] + f"\n[cut at {MAX_READ_BYTES} bytes; use offset/limit]"
    return ToolResult(body)


def _write_file(worktree: Path, target: Path, name: str, content: str) -> tuple[bool, str]:
    """(existed, text before) after writing `content`; raises for what is not a regular file."""
    existed = os.path.lexists(target)
    before = ""
    if existed:
        problem = kind_problem(target, name)
        if problem is not None:
            raise NotARegularFile(problem)
        before = read_text(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The parent may have been created through a path the check already resolved; check again.
    resolve_inside(worktree, name)
    write_text(target, content)
    return existed, before


async def file_write(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    target = resolve_inside(context.worktree, arguments["path"])
    name = relative_name(context.worktree, target)
    content = arguments["content"]
    try:
        existed, before = await asyncio.to_thread(
            _write_file, context.worktree, target, name, content
        )
    except NotARegularFile as error:
        return ToolResult(str(error), is_error=True)
    change_type = ChangeType.MODIFIED if existed else ChangeType.CREATED
    await context.file_changed(name, change_type, unified_diff(name, before, content))
    return ToolResult(f"wrote {name} ({len(content.encode())} bytes)")


async def edit_file(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    target = resolve_inside(context.worktree, arguments["path"])
    name = relative_name(context.worktree, target)
    try:
        before = await asyncio.to_thread(read_regular, target, name)
    except OSError as error:
        return ToolResult(str(error), is_error=True)
    old_text, new_text = arguments["old_text"], arguments["new_text"]
    found = before.count(old_text)
    if found == 0:
        return ToolResult(f"{name}: old_text was not found; read the file first", is_error=True)
    if found > 1 and not arguments.get("replace_all", False):
        return ToolResult(
            f"{name}: old_text occurs {found} times; give more context or set replace_all",
            is_error=True,
        )
    after = before.replace(old_text, new_text)
    try:
        await asyncio.to_thread(write_text, target, after)
    except OSError as error:
        return ToolResult(f"{name}: {error}", is_error=True)
    await context.file_changed(name, ChangeType.MODIFIED, unified_diff(name, before, after))
    return ToolResult(f"edited {name}: {found} replacement(s)")


def _glob(root: Path, pattern: str) -> list[str]:
    matched = []
    for path in walk_files(root):
        name = path.relative_to(root).as_posix()
        if fnmatch.fnmatch(name, pattern) or (
            pattern.startswith("**/") and fnmatch.fnmatch(name, pattern[3:])
        ):
            matched.append(name)
            if len(matched) >= MAX_LISTED:
                break
    return matched


async def glob_files(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    pattern = arguments["pattern"]
    if pattern.startswith("/") or ".." in Path(pattern).parts:
        raise PathRefused(f"{pattern}: patterns are relative to the worktree, without '..'")
    root = context.worktree.resolve()
    matched = await asyncio.to_thread(_glob, root, pattern)
    if not matched:
        return ToolResult("no files match")
    suffix = f"\n[first {MAX_LISTED} shown]" if len(matched) >= MAX_LISTED else ""
    return ToolResult("\n".join(matched) + suffix)
