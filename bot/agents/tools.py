"""Agent tools: the built-in tools and the registry other features add to.

Built-in tools, all confined to the step's worktree by bot/agents/sandbox.py: file_read,
file_write, edit_file (replace one exact text) and glob (bot/agents/file_tools.py), grep
(bot/agents/grep_tool.py) and bash (bot/agents/bash_tool.py). Two control tools,
request_clarification and report_output, have no handler: the loop answers them itself
(bot/agents/tool_use.py). What a tool is, and the registry: bot/agents/tool_registry.py.

Registration point: `ToolRegistry.register(tool)` (for tools every step may use, such as the
GitHub and JIRA adapters when those features land) or `AgentContext.extra_tools` (for tools
bound to one step, such as a GitHub client for one installation). An agent uses a tool only
when its definition in agents.yml lists the tool's name (or `mcp:<server>` for all of an MCP
server's tools).
"""

from __future__ import annotations

from typing import Any

from bot.agents.bash_tool import bash
from bot.agents.file_tools import edit_file, file_read, file_write, glob_files
from bot.agents.grep_tool import grep_files
from bot.agents.tool_registry import Tool, ToolRegistry

CLARIFICATION_TOOL = "request_clarification"
REPORT_TOOL = "report_output"


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
