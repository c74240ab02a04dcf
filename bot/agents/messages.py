"""Messages API content as the loop stores and sends it: pure functions, no I/O.

A response's content blocks go back into the history with only the API's fields
(`block_dict`); a stored message's tool_use blocks and text are read back (`tool_uses`,
`text_of`); a ToolResult becomes a tool_result block (`tool_result_block`); and what an event
shows of a tool's arguments or result is cut to EVENT_TEXT_CAP (`capped`, the full text is in
tool_calls).
"""

from __future__ import annotations

import json
from typing import Any

from bot.agents.tool_registry import ToolResult

EVENT_TEXT_CAP = 2000


def capped(value: Any) -> Any:
    """Arguments as published: long strings cut (the full call is in tool_calls)."""
    if isinstance(value, str) and len(value) > EVENT_TEXT_CAP:
        return value[:EVENT_TEXT_CAP] + f"... [{len(value)} chars]"
    if isinstance(value, dict):
        return {key: capped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [capped(item) for item in value]
    return value


def block_dict(block: Any) -> dict[str, Any]:
    """A response content block as it goes back into the history (only the API's fields)."""
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    dumped: dict[str, Any] = block.model_dump(exclude_none=True)
    return dumped


def tool_uses(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_use blocks of a stored message, in order."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [block for block in content if block.get("type") == "tool_use"]


def text_of(message: dict[str, Any] | None) -> str:
    """The text of a stored message (its text blocks joined), "" for none."""
    if message is None:
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content or [] if block.get("type") == "text")


def tool_result_block(tool_use_id: str, result: ToolResult) -> dict[str, Any]:
    """The tool_result block answering the call `tool_use_id`."""
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "content": result.content,
    }
    if result.is_error:
        block["is_error"] = True
    return block


def repeated_call(
    messages: list[dict[str, Any]], last_uses: list[dict[str, Any]], limit: int
) -> tuple[str, int] | None:
    """The tool of the last turn whose exact call (name and arguments) came in each of the last
    `limit` or more turns in a row, with that count; None otherwise. A different call in
    between resets the count, so rerunning the tests after each edit is no loop."""
    turns = [
        {_call_key(use) for use in tool_uses(message)}
        for message in messages
        if message.get("role") == "assistant"
    ]
    for use in last_uses:
        key = _call_key(use)
        streak = 0
        for calls in reversed(turns):
            if calls != {key}:
                break
            streak += 1
        if streak >= limit:
            return str(use.get("name")), streak
    return None


def _call_key(use: dict[str, Any]) -> str:
    return json.dumps([use.get("name"), use.get("input")], sort_keys=True, default=str)
