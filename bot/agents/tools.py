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
import logging
import os
import re
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

from bot.agents.sandbox import (
    BashPolicy,
    PathRefused,
    bash_tool_text,
    relative_name,
    resolve_inside,
    run_bash,
)
from bot.gitops.runner import git_environment
from bot.isolation.sandbox import SandboxScope

log = logging.getLogger(__name__)

MAX_READ_BYTES = 200_000
MAX_DIFF_BYTES = 100_000
MAX_LISTED = 500
MAX_GREP_LINES = 300
MAX_FILE_BYTES = 5 * 1024 * 1024  # files larger than this are not read, grepped or diffed
MAX_GREP_BYTES = 50 * 1024 * 1024  # all the files one grep reads together
GREP_TIMEOUT_S = 10.0
PATHS_PER_GIT_CALL = 500  # changed paths named in one git command (the argument list is finite)
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
        try:
            validator = jsonschema.Draft202012Validator(self.input_schema)
            problems = sorted(validator.iter_errors(arguments), key=lambda error: list(error.path))
        except Exception as error:  # a broken schema is the tool's error, never the step's
            first = str(error).splitlines()[0][:300] if str(error) else ""
            return (
                f"the input schema of {self.name} cannot be used: {type(error).__name__}: {first}"
            )
        if not problems:
            return None
        described = []
        for problem in problems[:5]:
            where = "/".join(str(part) for part in problem.path) or "(arguments)"
            described.append(f"{where}: {problem.message}")
        return f"invalid arguments for {self.name}: " + "; ".join(described)


class UnknownTool(KeyError):
    pass


def schema_problem(schema: Any) -> str | None:
    """None when `schema` is a usable JSON schema (its types are known, its local `$ref`s
    resolve), else what is wrong. Checked once, when a tool is registered."""
    if not isinstance(schema, dict):
        return "the schema must be a JSON object"
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
        resource = referencing.jsonschema.DRAFT202012.create_resource(schema)
        resolver = referencing.Registry().with_resource("", resource).resolver()
        for reference in _local_refs(schema):
            resolver.lookup(reference)
    except Exception as error:  # whatever fails here would fail in the middle of a step
        first = str(error).splitlines()[0][:300] if str(error) else ""
        return f"{type(error).__name__}: {first}"
    return None


def _local_refs(node: Any) -> Iterable[str]:
    """Every `$ref` within the schema itself (`#...`)."""
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith("#"):
            yield reference
        for value in node.values():
            yield from _local_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _local_refs(value)


class ToolRegistry:
    """Every tool an agent may be given, by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool, *, replace: bool = False) -> bool:
        """Add `tool`; one whose input schema is not a valid JSON schema is dropped (with a
        warning) and False returned, so a broken MCP server cannot break the steps."""
        if tool.name in self._tools and not replace:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        problem = schema_problem(tool.input_schema)
        if problem is not None:
            log.warning(
                "tool %s (%s) dropped: bad input schema: %s", tool.name, tool.source, problem
            )
            return False
        self._tools[tool.name] = tool
        return True

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


class NotARegularFile(OSError):
    """A FIFO, a device, a socket or a directory where a file was wanted, or a file too large."""


def _open_regular(path: Path, flags: int) -> int:
    """A descriptor of `path`, refused unless it is a regular file (never blocks on a FIFO)."""
    descriptor = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotARegularFile(f"{path.name} is not a regular file")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _read_capped(path: Path, cap: int = MAX_FILE_BYTES) -> bytes:
    descriptor = _open_regular(path, os.O_RDONLY)
    with os.fdopen(descriptor, "rb") as opened:
        if os.fstat(opened.fileno()).st_size > cap:
            raise NotARegularFile(f"{path.name} is larger than {cap} bytes")
        return opened.read(cap + 1)[:cap]


def _read_text(path: Path) -> str:
    return _read_capped(path).decode("utf-8", errors="replace")


def _write_text(path: Path, text: str) -> None:
    descriptor = _open_regular(path, os.O_WRONLY | os.O_CREAT)
    with os.fdopen(descriptor, "wb") as written:
        written.truncate(0)
        written.write(text.encode("utf-8"))


def _kind_problem(target: Path, shown: str) -> str | None:
    """Why `target` cannot be read as a file, or None when it is a regular one."""
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return f"{shown}: no such file"
    if stat.S_ISDIR(mode):
        return f"{shown} is a directory"
    if not stat.S_ISREG(mode):
        return f"{shown} is not a regular file (a FIFO, socket or device); it is not read"
    return None


def _read_regular(target: Path, shown: str) -> str:
    """The text of the regular file `target`, or an OSError whose text tells the model why not
    (`shown` is the name it gave)."""
    problem = _kind_problem(target, shown)
    if problem is not None:
        raise NotARegularFile(problem)
    try:
        return _read_text(target)
    except OSError as error:
        raise OSError(f"{shown}: {error}") from None


async def file_read(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    target = resolve_inside(context.worktree, arguments["path"])
    try:
        text = await asyncio.to_thread(_read_regular, target, arguments["path"])
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
        problem = _kind_problem(target, name)
        if problem is not None:
            raise NotARegularFile(problem)
        before = _read_text(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The parent may have been created through a path the check already resolved; check again.
    resolve_inside(worktree, name)
    _write_text(target, content)
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
    await context.file_changed(
        name, "modified" if existed else "created", _unified_diff(name, before, content)
    )
    return ToolResult(f"wrote {name} ({len(content.encode())} bytes)")


async def edit_file(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    target = resolve_inside(context.worktree, arguments["path"])
    name = relative_name(context.worktree, target)
    try:
        before = await asyncio.to_thread(_read_regular, target, name)
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
        await asyncio.to_thread(_write_text, target, after)
    except OSError as error:
        return ToolResult(f"{name}: {error}", is_error=True)
    await context.file_changed(name, "modified", _unified_diff(name, before, after))
    return ToolResult(f"edited {name}: {found} replacement(s)")


def _walk_files(root: Path) -> Iterable[Path]:
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        subdirectories[:] = sorted(name for name in subdirectories if name != ".git")
        for file_name in sorted(files):
            yield Path(directory) / file_name


def _glob(root: Path, pattern: str) -> list[str]:
    matched = []
    for path in _walk_files(root):
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


def _grep_candidates(worktree: Path, start: Path, only: str | None) -> list[tuple[str, str]]:
    """(shown name, absolute path) of the regular files to search: inside the worktree, no
    symlink out of it, no FIFO or device, none larger than MAX_FILE_BYTES, MAX_GREP_BYTES in all."""
    root = worktree.resolve()
    candidates = [start] if start.is_file() else list(_walk_files(start))
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
        return hashlib.sha1(_read_capped(path)).hexdigest()
    except OSError:
        return "-"


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
        return _unified_diff(name, "", f"symlink -> {os.readlink(path)}\n")
    if not stat.S_ISREG(status.st_mode):
        return ""
    try:
        return _unified_diff(name, "", _read_text(path))
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


def changes_between(
    worktree: Path, before: dict[str, tuple[str, str]], after: dict[str, tuple[str, str]]
) -> list[tuple[str, str, str]]:
    """(path, change type, diff) for each path whose state differs (blocking: run it in a
    thread). One git call lists the tracked paths and one diffs them all."""
    names = [
        name for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)
    ]
    if not names:
        return []
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
    changed = []
    for name in names:
        if not os.path.lexists(worktree / name):
            change_type = "deleted"
        elif after.get(name, ("", ""))[0] == "??" and name not in before:
            change_type = "created"
        else:
            change_type = "modified"
        if name in tracked:
            diff = diffs.get(name)
            if diff is None:  # a name the header does not show plainly: ask git for it alone
                one = _git(
                    worktree, "--literal-pathspecs", "diff", "--no-ext-diff", "--no-textconv",
                    "--", name,
                )  # fmt: skip
                diff = (one or b"").decode("utf-8", errors="replace")
            diff = diff[:MAX_DIFF_BYTES]
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
