"""Agent tools: the worktree tools, schema validation, and the registry other features add to.

A `Tool` is a name, a description, a JSON schema for its input and an async handler. The loop
(bot/agents/loop.py) validates the model's arguments against the schema before calling the
handler, so a bad call comes back to the model as a tool error and never reaches the handler.

Built-in tools, all confined to the step's worktree by bot/agents/sandbox.py: file_read,
file_write, edit_file (replace one exact text), glob, grep and bash. Two control tools,
request_clarification and report_output, are answered by the loop itself.

Registration point: `ToolRegistry.register(tool)` (for tools every step may use, such as the
GitHub and JIRA adapters when those features land) or `AgentContext.extra_tools` (for tools
bound to one step, such as a GitHub client for one installation). An agent uses a tool only
when its definition in agents.yml lists the tool's name (or `mcp:<server>` for all of an MCP
server's tools).
"""

from __future__ import annotations

import asyncio
import difflib
import fnmatch
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from bot.agents.sandbox import (
    BashPolicy,
    PathRefused,
    bash_tool_text,
    relative_name,
    resolve_inside,
    run_bash,
)
from bot.sandbox import SandboxScope
from bot.worktrees.git import git_environment

MAX_READ_BYTES = 200_000
MAX_DIFF_BYTES = 100_000
MAX_LISTED = 500
MAX_GREP_LINES = 300
CLARIFICATION_TOOL = "request_clarification"
REPORT_TOOL = "report_output"


@dataclass(frozen=True, slots=True)
class ToolResult:
    content: str
    is_error: bool = False


FileChangedCallback = Callable[[str, str, str], Awaitable[None]]


async def _ignore_change(path: str, change_type: str, diff: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a handler may use: the worktree, the bash policy, the file-change recorder, and
    the worktree's sandbox scope (ports, caches, paths) when the WorktreeManager made it."""

    worktree: Path
    bash_policy: BashPolicy = field(default_factory=BashPolicy)
    file_changed: FileChangedCallback = _ignore_change
    sandbox: SandboxScope | None = None


ToolHandler = Callable[[dict[str, Any], ToolContext], Awaitable[ToolResult]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    handler: ToolHandler | None  # None: answered by the loop (control tools)
    source: str = "builtin"  # builtin, mcp:<server>, or the feature that registered it

    def definition(self) -> dict[str, Any]:
        """The tool as the Messages API takes it."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }

    def validation_error(self, arguments: Any) -> str | None:
        """None when `arguments` fits the schema, else a message for the model."""
        if not isinstance(arguments, dict):
            return "arguments must be a JSON object"
        validator = jsonschema.Draft202012Validator(self.input_schema)
        problems = sorted(validator.iter_errors(arguments), key=lambda error: list(error.path))
        if not problems:
            return None
        described = []
        for problem in problems[:5]:
            where = "/".join(str(part) for part in problem.path) or "(arguments)"
            described.append(f"{where}: {problem.message}")
        return f"invalid arguments for {self.name}: " + "; ".join(described)


class UnknownTool(KeyError):
    pass


class ToolRegistry:
    """Every tool an agent may be given, by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool, *, replace: bool = False) -> None:
        if tool.name in self._tools and not replace:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownTool(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def select(self, wanted: Iterable[str]) -> tuple[list[Tool], list[str]]:
        """The tools named (`mcp:<server>` means all of that server's), and the names missing."""
        chosen: list[Tool] = []
        missing: list[str] = []
        for name in wanted:
            if name.startswith("mcp:"):
                matches = [tool for tool in self._tools.values() if tool.source == name]
                if matches:
                    chosen.extend(matches)
                else:
                    missing.append(name)
            elif name in self._tools:
                chosen.append(self._tools[name])
            else:
                missing.append(name)
        unique = list({tool.name: tool for tool in chosen}.values())
        return unique, missing


# -- file tools -----------------------------------------------------------------------------


def _unified_diff(path: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"a/{path}" if before else "/dev/null",
        tofile=f"b/{path}",
    )
    diff = "".join(lines)
    if len(diff) > MAX_DIFF_BYTES:
        diff = diff[:MAX_DIFF_BYTES] + "\n[diff cut]\n"
    return diff


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


async def file_read(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    target = resolve_inside(context.worktree, arguments["path"])
    if not target.is_file():
        return ToolResult(f"{arguments['path']}: no such file", is_error=True)
    text = _read_text(target)
    offset = int(arguments.get("offset", 1))
    limit = arguments.get("limit")
    lines = text.splitlines(keepends=True)
    chosen = lines[offset - 1 : None if limit is None else offset - 1 + int(limit)]
    body = "".join(chosen)
    if len(body) > MAX_READ_BYTES:
        body = body[:MAX_READ_BYTES] + f"\n[cut at {MAX_READ_BYTES} bytes; use offset/limit]"
    return ToolResult(body)


async def file_write(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    target = resolve_inside(context.worktree, arguments["path"])
    name = relative_name(context.worktree, target)
    if target.is_dir():
        return ToolResult(f"{name} is a directory", is_error=True)
    existed = target.exists()
    before = _read_text(target) if existed else ""
    target.parent.mkdir(parents=True, exist_ok=True)
    # The parent may have been created through a path the check already resolved; check again.
    resolve_inside(context.worktree, name)
    target.write_text(arguments["content"], encoding="utf-8")
    await context.file_changed(
        name,
        "modified" if existed else "created",
        _unified_diff(name, before, arguments["content"]),
    )
    return ToolResult(f"wrote {name} ({len(arguments['content'].encode())} bytes)")


async def edit_file(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    target = resolve_inside(context.worktree, arguments["path"])
    name = relative_name(context.worktree, target)
    if not target.is_file():
        return ToolResult(f"{name}: no such file", is_error=True)
    before = _read_text(target)
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
    target.write_text(after, encoding="utf-8")
    await context.file_changed(name, "modified", _unified_diff(name, before, after))
    return ToolResult(f"edited {name}: {found} replacement(s)")


def _walk_files(root: Path) -> Iterable[Path]:
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        subdirectories[:] = sorted(name for name in subdirectories if name != ".git")
        for file_name in sorted(files):
            yield Path(directory) / file_name


async def glob_files(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    pattern = arguments["pattern"]
    if pattern.startswith("/") or ".." in Path(pattern).parts:
        raise PathRefused(f"{pattern}: patterns are relative to the worktree, without '..'")
    root = context.worktree.resolve()
    matched = []
    for path in _walk_files(root):
        name = path.relative_to(root).as_posix()
        if fnmatch.fnmatch(name, pattern) or (
            pattern.startswith("**/") and fnmatch.fnmatch(name, pattern[3:])
        ):
            matched.append(name)
            if len(matched) >= MAX_LISTED:
                break
    if not matched:
        return ToolResult("no files match")
    suffix = f"\n[first {MAX_LISTED} shown]" if len(matched) >= MAX_LISTED else ""
    return ToolResult("\n".join(matched) + suffix)


async def grep_files(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    try:
        expression = re.compile(arguments["pattern"])
    except re.error as error:
        return ToolResult(f"bad regular expression: {error}", is_error=True)
    root = context.worktree.resolve()
    start = resolve_inside(context.worktree, arguments.get("path", ".") or ".")
    only = arguments.get("glob")
    candidates = [start] if start.is_file() else list(_walk_files(start))
    hits: list[str] = []
    for path in candidates:
        name = path.relative_to(root).as_posix()
        if only and not fnmatch.fnmatch(name, only):
            continue
        try:
            resolve_inside(context.worktree, name)
            text = _read_text(path)
        except (PathRefused, OSError):
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if expression.search(line):
                hits.append(f"{name}:{number}: {line[:300]}")
                if len(hits) >= MAX_GREP_LINES:
                    return ToolResult("\n".join(hits) + f"\n[first {MAX_GREP_LINES} shown]")
    return ToolResult("\n".join(hits) if hits else "no matches")


# -- bash, with the files it changed ----------------------------------------------------------


def _git(worktree: Path, *args: str) -> bytes | None:
    try:
        # Outside the sandbox: with the repository's code switched off (bot/worktrees/git.py).
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


def worktree_state(worktree: Path) -> dict[str, tuple[str, str]] | None:
    """path -> (git status code, content digest) for every changed path; None outside git."""
    listing = _git(worktree, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    if listing is None:
        return None
    state: dict[str, tuple[str, str]] = {}
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
        path = worktree / name
        digest = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else "-"
        state[name] = (code, digest)
    return state


def changes_between(
    worktree: Path, before: dict[str, tuple[str, str]], after: dict[str, tuple[str, str]]
) -> list[tuple[str, str, str]]:
    """(path, change type, diff) for each path whose state differs."""
    changed = []
    for name in sorted(set(before) | set(after)):
        if before.get(name) == after.get(name):
            continue
        path = worktree / name
        if not path.exists():
            change_type = "deleted"
        elif after.get(name, ("", ""))[0] == "??" and name not in before:
            change_type = "created"
        else:
            change_type = "modified"
        tracked = _git(worktree, "ls-files", "--error-unmatch", "--", name) is not None
        if tracked:
            diff_bytes = _git(worktree, "diff", "--no-ext-diff", "--no-textconv", "--", name)
            diff = (diff_bytes or b"").decode("utf-8", errors="replace")[:MAX_DIFF_BYTES]
        elif path.is_file():
            diff = _unified_diff(name, "", _read_text(path))
        else:
            diff = ""
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
            for name, change_type, diff in changes_between(context.worktree, before, after):
                await context.file_changed(name, change_type, diff)
    text = bash_tool_text(result, timeout_s, policy.output_cap_bytes)
    return ToolResult(text, is_error=result.timed_out or result.exit_code != 0)


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_PATH = {"type": "string", "description": "Path relative to the worktree root."}

BUILTIN_TOOLS: tuple[Tool, ...] = (
    Tool(
        "file_read",
        "Read a text file of the worktree. Optional 1-based line offset and line limit.",
        _schema(
            {
                "path": _PATH,
                "offset": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "minimum": 1},
            },
            ["path"],
        ),
        file_read,
    ),
    Tool(
        "file_write",
        "Create or overwrite a file of the worktree with the given content.",
        _schema({"path": _PATH, "content": {"type": "string"}}, ["path", "content"]),
        file_write,
    ),
    Tool(
        "edit_file",
        "Replace an exact piece of text in a file. old_text must occur once unless "
        "replace_all is true. Read the file first.",
        _schema(
            {
                "path": _PATH,
                "old_text": {"type": "string", "minLength": 1},
                "new_text": {"type": "string"},
                "replace_all": {"type": "boolean"},
            },
            ["path", "old_text", "new_text"],
        ),
        edit_file,
    ),
    Tool(
        "glob",
        "List files of the worktree matching a glob pattern such as 'src/**/*.py'.",
        _schema({"pattern": {"type": "string", "minLength": 1}}, ["pattern"]),
        glob_files,
    ),
    Tool(
        "grep",
        "Search files of the worktree for a regular expression; answers path:line: text.",
        _schema(
            {
                "pattern": {"type": "string", "minLength": 1},
                "path": _PATH,
                "glob": {"type": "string", "description": "Only files matching this glob."},
            },
            ["pattern"],
        ),
        grep_files,
    ),
    Tool(
        "bash",
        "Run a shell command in the worktree (no network, a timeout, output capped). "
        "Use it to run tests, git and build commands.",
        _schema(
            {
                "command": {"type": "string", "minLength": 1},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0},
            },
            ["command"],
        ),
        bash,
    ),
    Tool(
        CLARIFICATION_TOOL,
        "Ask a person a question when you cannot go on without their decision. The step "
        "pauses until they answer; the answer comes back as this tool's result.",
        _schema(
            {
                "question": {"type": "string", "minLength": 1},
                "choices": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            },
            ["question"],
        ),
        None,
    ),
)


def report_tool(output_schema: dict[str, Any] | None) -> Tool:
    """The tool an agent calls to hand back its structured result (schema from agents.yml)."""
    return Tool(
        REPORT_TOOL,
        "Report the structured result of this step. Call it once, when your work is done.",
        output_schema or {"type": "object"},
        None,
    )


def builtin_registry() -> ToolRegistry:
    return ToolRegistry(BUILTIN_TOOLS)


def tool_result_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
