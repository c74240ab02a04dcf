"""The loop's pure parts: content blocks, event payloads, change types."""

from __future__ import annotations

import json

import msgspec

from bot.agents.bash_tool import change_type_of
from bot.agents.events import AgentStepFinished, ToolCallCompleted
from bot.agents.messages import EVENT_TEXT_CAP, capped, text_of, tool_result_block, tool_uses
from bot.agents.tool_registry import ToolResult
from storage.agent_runs import RunStatus
from storage.tool_calls import ChangeType


def test_long_strings_are_cut_for_events_wherever_they_are_nested() -> None:
    long = "x" * (EVENT_TEXT_CAP + 5)
    shown = capped({"command": long, "paths": [long, "short"], "timeout_s": 3})
    assert shown["command"] == "x" * EVENT_TEXT_CAP + f"... [{EVENT_TEXT_CAP + 5} chars]"
    assert shown["paths"][0] == shown["command"] and shown["paths"][1] == "short"
    assert shown["timeout_s"] == 3


def test_the_text_of_a_message_joins_its_text_blocks_only() -> None:
    message = {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Done. "},
            {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {}},
            {"type": "text", "text": "All green."},
        ],
    }
    assert text_of(message) == "Done. All green."
    assert text_of({"role": "user", "content": "plain"}) == "plain"
    assert text_of(None) == ""
    assert [use["id"] for use in tool_uses(message)] == ["toolu_1"]


def test_a_tool_result_block_is_marked_as_an_error_only_when_it_is_one() -> None:
    assert tool_result_block("toolu_1", ToolResult("ok")) == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "ok",
    }
    assert tool_result_block("toolu_2", ToolResult("no", is_error=True))["is_error"] is True


def test_a_path_is_deleted_when_gone_created_when_newly_untracked_else_modified() -> None:
    before = {"old.txt": (" M", "a")}
    after = {"old.txt": (" M", "b"), "new.txt": ("??", "c")}
    assert change_type_of(False, "old.txt", before, after) is ChangeType.DELETED
    assert change_type_of(True, "new.txt", before, after) is ChangeType.CREATED
    assert change_type_of(True, "old.txt", before, after) is ChangeType.MODIFIED


def test_event_payloads_keep_their_wire_text_and_send_absent_optionals_as_null() -> None:
    finished = AgentStepFinished(
        run_id=1,
        agent="planner",
        session_key="pr:octo/demo#7/batch:1",
        status=RunStatus.BUDGET_STOPPED,
        cost_usd=0.5,
        step_cost_usd=1.25,
        reason="step budget reached",
    )
    data = json.loads(msgspec.json.encode(finished))
    assert data["status"] == "budget_stopped" and data["error"] is None
    completed = ToolCallCompleted(call_id=3, tool="bash", result="", duration_ms=12.0, run_id=1)
    assert json.loads(msgspec.json.encode(completed))["duration_ms"] == 12.0


def test_a_call_repeated_turn_after_turn_is_named_and_one_in_between_resets_it() -> None:
    from bot.agents.messages import repeated_call

    def turn(*calls: tuple[str, dict[str, object]]) -> dict[str, object]:
        return {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": f"t{n}", "name": name, "input": args}
                for n, (name, args) in enumerate(calls)
            ],
        }

    same = ("grep", {"pattern": "x", "path": "."})
    other = ("grep", {"pattern": "y", "path": "."})
    messages = [turn(same), turn(other), turn(same), turn(same), turn(same)]
    last = messages[-1]["content"]
    assert repeated_call(messages, last, 3) == ("grep", 3)
    assert repeated_call(messages, last, 4) is None  # the other call in between reset it
    edits = [turn(("pytest", {})), turn(("edit", {"n": 1})), turn(("pytest", {}))]
    assert repeated_call(edits, edits[-1]["content"], 2) is None
