"""The MCP bridge: a small MCP server started by the test becomes agent tools."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from bot.agents.definitions import load_agents_config
from bot.agents.loop import AgentContext
from storage import tool_calls
from storage.database import Database
from tests.agents.conftest import MODEL, MakeRunner
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def operator_file(tmp_path: Path) -> Path:
    path = tmp_path / "agents.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "mcp_servers": {
                    "notes": {
                        "command": sys.executable,
                        "args": ["-m", "tests.fakes.mcp_server"],
                        "env": {
                            "NOTES_PREFIX": "${TEST_NOTES_PREFIX}",
                            "PYTHONPATH": "${PWD_ROOT}",
                        },
                    }
                },
                "agents": {"planner": {"tools": ["file_read", "mcp:notes"]}},
            }
        ),
        encoding="utf-8",
    )
    return path


async def test_an_mcp_tool_is_called_through_the_bridge(
    make_runner: MakeRunner,
    fake: FakeAnthropic,
    context: AgentContext,
    db: Database,
    tmp_path: Path,
    monkeypatch,
) -> None:
    monkeypatch.setenv("TEST_NOTES_PREFIX", "found: ")
    monkeypatch.setenv("PWD_ROOT", str(PROJECT_ROOT))
    config = load_agents_config(operator_file(tmp_path), default_model=MODEL)
    runner = make_runner(config=config)
    await runner.start()
    fake.add(
        scripted.tool_use("notes__search_pages", {"word": "greeting"}),
        scripted.tool_use("notes__read_page", {"title": "Missing page"}),
        scripted.text("The policy says 'hi'."),
    )
    result = await runner.run_step("planner", context)
    assert result.status == "completed"
    offered = [tool["name"] for tool in fake.requests[0].body["tools"]]
    assert offered == ["file_read", "notes__search_pages", "notes__read_page"]
    searched = fake.requests[1].tool_results()[0]
    assert searched["content"] == "found: Greeting policy" and "is_error" not in searched
    missing = fake.requests[2].tool_results()[0]
    assert missing["is_error"] and "no page titled 'Missing page'" in missing["content"]
    calls = await tool_calls.for_run(db, result.run_id)
    assert [(c.tool, c.is_error) for c in calls] == [
        ("notes__search_pages", False),
        ("notes__read_page", True),
    ]


async def test_an_unreachable_mcp_server_leaves_its_tools_out(
    make_runner: MakeRunner, fake: FakeAnthropic, context: AgentContext, tmp_path: Path
) -> None:
    path = tmp_path / "agents.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "mcp_servers": {"gone": {"command": str(tmp_path / "no-such-server")}},
                "agents": {"planner": {"tools": ["file_read", "mcp:gone"]}},
            }
        ),
        encoding="utf-8",
    )
    runner = make_runner(config=load_agents_config(path, default_model=MODEL))
    await runner.start()
    fake.add(scripted.text("ok"))
    result = await runner.run_step("planner", context)
    assert result.status == "completed"
    assert [tool["name"] for tool in fake.requests[0].body["tools"]] == ["file_read"]
