"""The MCP bridge: the tools of the MCP servers named in the agents file become agent tools.

Each server (stdio: a command; or streamable HTTP: a URL) is connected once through the `mcp`
package's `Client`, its tools listed, and each registered in the ToolRegistry as
`<server>__<tool>` with source `mcp:<server>` (an agent lists `mcp:<server>` to get them all).
A call goes to the server and its text content comes back as the tool result; the server's own
error flag becomes a tool error. This is how the Notion integration works: name Notion's MCP
server in the agents file.

Each connection lives in its own task (the mcp client's task groups must be entered and left
by the same task); `close()` ends them. `${NAME}` in a server's env, args, url or headers is
taken from the environment at connect time, so secrets stay out of the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import string
from dataclasses import dataclass, field
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from bot.agents.definitions import McpServerConfig
from bot.agents.tool_registry import Tool, ToolContext, ToolRegistry, ToolResult

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 120.0


def _expand(value: str) -> str:
    return string.Template(value).safe_substitute(os.environ)


def tool_name(server: str, tool: str) -> str:
    """A name the Messages API accepts (^[a-zA-Z0-9_-]{1,64}$)."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", f"{server}__{tool}")[:64]


def _result_text(result: Any) -> str:
    parts = []
    for item in getattr(result, "content", None) or []:
        text = getattr(item, "text", None)
        parts.append(text if text is not None else f"[{getattr(item, 'type', 'content')}]")
    structured = getattr(result, "structuredContent", None) or getattr(
        result, "structured_content", None
    )
    if not parts and structured is not None:
        parts.append(json.dumps(structured))
    return "\n".join(parts)


@dataclass
class _Connection:
    config: McpServerConfig
    client: Client | None = None
    task: asyncio.Task[None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None


class McpBridge:
    def __init__(self, servers: dict[str, McpServerConfig]) -> None:
        self.servers = servers
        self._connections: dict[str, _Connection] = {}

    def _client_for(self, config: McpServerConfig, stack: contextlib.AsyncExitStack) -> Client:
        if config.url is not None:
            if not config.headers:
                return Client(_expand(config.url))
            # Headers (an API token, say) need our own HTTP client for the transport.
            http_client = httpx2.AsyncClient(
                headers={key: _expand(value) for key, value in config.headers.items()},
                timeout=httpx2.Timeout(30.0, read=300.0),
            )
            stack.push_async_callback(http_client.aclose)
            return Client(streamable_http_client(_expand(config.url), http_client=http_client))
        if config.command is None:  # the agents file gives a server a url or a command
            raise ValueError(f"MCP server {config.name} has neither a url nor a command")
        parameters = StdioServerParameters(
            command=_expand(config.command),
            args=[_expand(arg) for arg in config.args],
            env={key: _expand(value) for key, value in config.env.items()} or None,
        )
        return Client(parameters)

    async def _hold(self, connection: _Connection) -> None:
        try:
            async with (
                contextlib.AsyncExitStack() as stack,
                self._client_for(connection.config, stack) as client,
            ):
                connection.client = client
                connection.ready.set()
                await connection.stop.wait()
        except BaseException as error:
            connection.error = error
            connection.ready.set()
            if isinstance(error, asyncio.CancelledError):
                raise
        finally:
            connection.client = None

    async def start(self, registry: ToolRegistry) -> list[str]:
        """Connect every server and register its tools; returns the tool names registered.
        A server that cannot be reached is logged and left out (its tools are missing)."""
        registered: list[str] = []
        for name, config in self.servers.items():
            connection = _Connection(config)
            connection.task = asyncio.create_task(self._hold(connection), name=f"mcp-{name}")
            self._connections[name] = connection
            try:
                await asyncio.wait_for(connection.ready.wait(), CONNECT_TIMEOUT_S)
            except TimeoutError:
                connection.error = TimeoutError("connection timed out")
            if connection.client is None:
                log.error("MCP server %s unavailable: %s", name, connection.error)
                continue
            listed = await connection.client.list_tools()
            for tool in listed.tools:
                agent_tool = self._agent_tool(name, tool)
                if registry.register(agent_tool, replace=True):  # False: a bad schema
                    registered.append(agent_tool.name)
            log.info("MCP server %s: %d tool(s)", name, len(listed.tools))
        return registered

    def _agent_tool(self, server: str, tool: Any) -> Tool:
        remote_name = tool.name
        schema = getattr(tool, "inputSchema", None) or getattr(tool, "input_schema", None)

        async def call(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
            connection = self._connections.get(server)
            if connection is None or connection.client is None:
                return ToolResult(f"MCP server {server} is not connected", is_error=True)
            result = await asyncio.wait_for(
                connection.client.call_tool(remote_name, arguments), CALL_TIMEOUT_S
            )
            is_error = bool(getattr(result, "isError", False) or getattr(result, "is_error", False))
            return ToolResult(_result_text(result), is_error=is_error)

        return Tool(
            name=tool_name(server, remote_name),
            description=(tool.description or f"{remote_name} (MCP server {server})")[:1024],
            input_schema=dict(schema or {"type": "object"}),
            handler=call,
            source=f"mcp:{server}",
        )

    async def close(self) -> None:
        for connection in self._connections.values():
            connection.stop.set()
        for connection in self._connections.values():
            if connection.task is not None:
                try:
                    await asyncio.wait_for(connection.task, 10)
                except (TimeoutError, asyncio.CancelledError):
                    connection.task.cancel()
                    with contextlib.suppress(BaseException):
                        await connection.task
                except Exception:
                    log.exception("closing MCP server %s", connection.config.name)
        self._connections.clear()
