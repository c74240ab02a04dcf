"""The grep tool: a regular expression over the worktree's files, in a child process.

The files are chosen here (inside the worktree, no symlink out, regular files only, capped in
size one by one and together); the search runs in a child Python so that a pattern that
backtracks catastrophically is killed after GREP_TIMEOUT_S instead of blocking the event loop.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

from bot.agents.sandbox import PathRefused, resolve_inside
from bot.agents.tool_registry import ToolContext, ToolResult
from bot.agents.worktree_files import MAX_FILE_BYTES, walk_files

MAX_GREP_LINES = 300
MAX_GREP_BYTES = 50 * 1024 * 1024  # all the files one grep reads together
GREP_TIMEOUT_S = 10.0


def _grep_candidates(worktree: Path, start: Path, only: str | None) -> list[tuple[str, str]]:
    """(shown name, absolute path) of the regular files to search: inside the worktree, no
    symlink out of it, no FIFO or device, none larger than MAX_FILE_BYTES, MAX_GREP_BYTES in all."""
    root = worktree.resolve()
    candidates = [start] if start.is_file() else list(walk_files(start))
    chosen: list[tuple[str, str]] = []
    total = 0
    for path in candidates:
        name = path.relative_to(root).as_posix()
        if only and not fnmatch.fnmatch(name, only):
            continue
        try:
            resolved = resolve_inside(worktree, name)
            status = resolved.stat()
        except (PathRefused, OSError):
            continue
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_FILE_BYTES:
            continue
        total += status.st_size
        if total > MAX_GREP_BYTES:
            break
        chosen.append((name, str(resolved)))
    return chosen


# Run in a child process, so that a pattern with catastrophic backtracking can be stopped.
_GREP_PROGRAM = """
import json, os, re, stat, sys
request = json.load(sys.stdin)
expression = re.compile(request["pattern"])
hits = []
for name, path in request["files"]:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        with os.fdopen(descriptor, "rb") as opened:
            if not stat.S_ISREG(os.fstat(opened.fileno()).st_mode):
                continue
            text = opened.read(request["cap"]).decode("utf-8", errors="replace")
    except OSError:
        continue
    for number, line in enumerate(text.splitlines(), start=1):
        if expression.search(line):
            hits.append(f"{name}:{number}: {line[:300]}")
            if len(hits) >= request["limit"]:
                break
    if len(hits) >= request["limit"]:
        break
json.dump(hits, sys.stdout)
"""


async def _grep_in_child(pattern: str, files: list[tuple[str, str]]) -> list[str] | None:
    """The matching lines, or None when the search ran past GREP_TIMEOUT_S (and was killed)."""
    request = {"pattern": pattern, "files": files, "cap": MAX_FILE_BYTES, "limit": MAX_GREP_LINES}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", _GREP_PROGRAM,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
    )  # fmt: skip
    try:
        stdout, _ = await asyncio.wait_for(
            process.communicate(json.dumps(request).encode()), GREP_TIMEOUT_S
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    except BaseException:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        return []
    found = json.loads(stdout or b"[]")
    return [str(hit) for hit in found] if isinstance(found, list) else []


async def grep_files(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    try:
        re.compile(arguments["pattern"])
    except re.error as error:
        return ToolResult(f"bad regular expression: {error}", is_error=True)
    start = resolve_inside(context.worktree, arguments.get("path", ".") or ".")
    files = await asyncio.to_thread(
        _grep_candidates, context.worktree, start, arguments.get("glob")
    )
    hits = await _grep_in_child(arguments["pattern"], files)
    if hits is None:
        return ToolResult(
            f"grep stopped after {GREP_TIMEOUT_S:g}s: the pattern is too slow (nested"
            " repetition such as (a+)+ backtracks); use a simpler one or a narrower path",
            is_error=True,
        )
    if len(hits) >= MAX_GREP_LINES:
        return ToolResult("\n".join(hits) + f"\n[first {MAX_GREP_LINES} shown]")
    return ToolResult("\n".join(hits) if hits else "no matches")
