"""Tool, ToolResult, ToolContext and the ToolRegistry: what a tool is and where it is found.

A `Tool` is a name, a description, a JSON schema for its input and an async handler. The loop
validates the model's arguments against the schema before calling the handler
(`Tool.validation_error`), so a bad call comes back to the model as a tool error and never
reaches the handler. A schema is checked once, when the tool is registered (`schema_problem`):
a tool whose schema is broken is dropped, so a broken MCP server cannot break the steps.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

from bot.agents.sandbox import BashPolicy
from bot.isolation.sandbox import SandboxScope
from storage.tool_calls import ChangeType

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToolResult:
    content: str
    is_error: bool = False


# (path relative to the worktree, what happened to it, its diff)
FileChangedCallback = Callable[[str, ChangeType, str], Awaitable[None]]


async def _ignore_change(path: str, change_type: ChangeType, diff: str) -> None:
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
