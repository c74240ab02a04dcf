"""The agents file (shipped and overridden), price lookup, and token coalescing by interval."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.agents.costs import PriceTable, Usage
from bot.agents.definitions import AgentConfigError, load_agents_config
from bot.agents.tokens import TokenCoalescer, TokenSequence
from bot.clock import ManualClock
from bot.events.bus import EventBus
from storage import token_buffer
from storage.database import Database
from tests.agents.conftest import MODEL, Recorder

pytestmark = pytest.mark.both_databases

SHIPPED_AGENTS = {
    "triage",
    "researcher",
    "planner",
    "risk",
    "implementer",
    "tester",
    "reviewer",
    "pr_author",
    "review_response",
}


def test_the_shipped_file_defines_every_agent_with_limits() -> None:
    config = load_agents_config(None, default_model=MODEL)
    assert set(config.agents) == SHIPPED_AGENTS
    for agent in config.agents.values():
        assert agent.model == MODEL and agent.system_prompt
        assert agent.max_turns > 0 and agent.max_output_tokens > 0 and agent.max_cost_usd > 0
    assert "bash" not in config.agents["planner"].tools
    assert "edit_file" in config.agents["review_response"].tools


def test_an_operator_file_overrides_fields_prices_and_adds_agents(tmp_path: Path) -> None:
    operator = tmp_path / "agents.yml"
    operator.write_text(
        """
defaults: {max_turns: 10}
prices:
  claude-sonnet: {input: 1, output: 2, cache_write: 3, cache_read: 4}
agents:
  planner: {model: claude-opus-4-5, max_cost_usd: 0.25}
  docs_writer:
    system_prompt: Write documentation.
    tools: [file_read, file_write]
""",
        encoding="utf-8",
    )
    config = load_agents_config(operator, default_model=MODEL)
    planner = config.agents["planner"]
    assert (planner.model, planner.max_cost_usd) == ("claude-opus-4-5", 0.25)
    assert planner.system_prompt.startswith("You plan the implementation")  # kept
    assert config.agents["docs_writer"].max_turns == 10
    assert config.prices.price_for("claude-sonnet-4-5").input == 1
    assert config.sources == ("bot/agents/agents.yml", str(operator))


def test_a_bad_operator_file_reports_every_problem(tmp_path: Path) -> None:
    operator = tmp_path / "agents.yml"
    operator.write_text(
        """
agents:
  planner: {max_turns: -1, colour: blue}
  empty: {tools: [file_read]}
prices:
  claude-x: {input: 1}
mcp_servers:
  both: {command: x, url: "http://localhost"}
""",
        encoding="utf-8",
    )
    with pytest.raises(AgentConfigError) as raised:
        load_agents_config(operator, default_model=MODEL)
    problems = "\n".join(raised.value.problems)
    assert "agents.planner.max_turns: expected a positive whole number" in problems
    assert "agents.planner: unknown field 'colour'" in problems
    assert "agents.empty.system_prompt: required text" in problems
    assert "prices.claude-x: give exactly input, output, cache_write, cache_read" in problems
    assert "mcp_servers.both: give either command (stdio) or url" in problems


def test_prices_take_the_longest_matching_prefix() -> None:
    table = load_agents_config(None, default_model=MODEL).prices
    assert table.price_for("claude-haiku-4-5-20251001").input == 1.0
    assert table.price_for("claude-haiku-3").input == 0.8
    assert table.price_for("some-other-model") == table.entries["default"]
    usage = Usage(
        input_tokens=1000, output_tokens=100, cache_write_tokens=2000, cache_read_tokens=0
    )
    assert table.cost("claude-sonnet-4-5", usage) == pytest.approx(
        (1000 * 3 + 100 * 15 + 2000 * 3.75) / 1e6
    )
    assert isinstance(table, PriceTable)


async def test_token_frames_are_cut_by_interval_and_numbered_per_stream(
    db: Database, bus: EventBus, clock: ManualClock, events: Recorder
) -> None:
    sequence = TokenSequence(db)
    coalescer = TokenCoalescer(sequence, bus, clock, "pipeline:1", interval_s=0.1)
    other = TokenCoalescer(sequence, bus, clock, "pipeline:2", interval_s=0.1)
    await coalescer.add("a")
    await coalescer.add("b")
    await clock.advance(0.1)
    await coalescer.add("c")  # the interval passed: "abc" goes out as one frame
    await other.add("x")
    await other.flush()
    await coalescer.add("d")
    await coalescer.flush()
    frames = [(e["stream"], e["data"]["seq"], e["data"]["text"]) for e in events.take()]
    assert frames == [("pipeline:1", 1, "abc"), ("pipeline:2", 1, "x"), ("pipeline:1", 2, "d")]
    assert await token_buffer.last_seq(db, "pipeline:1") == 2
    fresh = TokenCoalescer(TokenSequence(db), bus, clock, "pipeline:1")  # after a restart
    await fresh.add("e")
    assert await fresh.flush() == 3


def test_agent_settings_are_read_and_checked(tmp_path: Path) -> None:
    from bot.config import ConfigError, load_settings

    operator = tmp_path / "agents.yml"
    operator.write_text("agents: {}\n", encoding="utf-8")
    settings = load_settings(
        {
            "BIAGENT_AGENTS_FILE": str(operator),
            "AGENT_MAX_RETRIES": "6",
            "AGENT_BASH_TIMEOUT": "2m",
            "TOKEN_BUFFER_TTL": "30m",
        }
    )
    assert settings.agents_file == operator
    assert (settings.agent_max_retries, settings.agent_bash_timeout) == (6, 120.0)
    assert settings.token_buffer_ttl == 1800.0
    with pytest.raises(ConfigError) as raised:
        load_settings({"BIAGENT_AGENTS_FILE": str(tmp_path / "missing.yml")})
    assert raised.value.problems == [
        f"BIAGENT_AGENTS_FILE: {tmp_path / 'missing.yml'} is not a readable file"
    ]
