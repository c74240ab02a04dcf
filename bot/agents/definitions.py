"""Agent definitions: the declarative agents file, loaded and validated once at start-up.

The package ships bot/agents/agents.yml (triage, researcher, planner, risk, implementer,
tester, reviewer, pr_author, review_response, the price table, MCP servers). An operator file
named by BIAGENT_AGENTS_FILE is merged over it (docs/agents.md says how). Every problem is
reported at once with where it is, like bot/config.py does for the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bot.agents.costs import Price, PriceTable

AGENT_FIELDS = {
    "description",
    "system_prompt",
    "tools",
    "model",
    "max_turns",
    "max_output_tokens",
    "max_cost_usd",
    "prompt_caching",
    "output_schema",
}
DEFAULT_FIELDS = {"model", "max_turns", "max_output_tokens", "max_cost_usd", "prompt_caching"}
TOP_LEVEL = {"defaults", "prices", "mcp_servers", "agents"}
PRICE_FIELDS = ("input", "output", "cache_write", "cache_read")


class AgentConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class AgentDefinition:
    name: str
    description: str
    system_prompt: str
    tools: tuple[str, ...]
    model: str
    max_turns: int
    max_output_tokens: int
    max_cost_usd: float
    prompt_caching: bool = True
    output_schema: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class McpServerConfig:
    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentsConfig:
    agents: dict[str, AgentDefinition]
    prices: PriceTable
    mcp_servers: dict[str, McpServerConfig]
    sources: tuple[str, ...]

    def agent(self, name: str) -> AgentDefinition:
        try:
            return self.agents[name]
        except KeyError:
            known = ", ".join(sorted(self.agents))
            raise KeyError(f"no agent named {name!r} (known: {known})") from None


def shipped_text() -> str:
    return resources.files("bot.agents").joinpath("agents.yml").read_text(encoding="utf-8")


def _parse(text: str, source: str, problems: list[str]) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        problems.append(f"{source}: not valid YAML: {error}")
        return {}
    if not isinstance(loaded, dict):
        problems.append(f"{source}: the top level must be a mapping")
        return {}
    for key in loaded:
        if key not in TOP_LEVEL:
            problems.append(f"{source}: unknown section {key!r} (known: {sorted(TOP_LEVEL)})")
    return loaded


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for section in ("defaults", "prices", "mcp_servers"):
        merged[section] = {**(base.get(section) or {}), **(override.get(section) or {})}
    agents = {name: dict(values or {}) for name, values in (base.get("agents") or {}).items()}
    for name, values in (override.get("agents") or {}).items():
        agents[name] = {**agents.get(name, {}), **(values or {})}
    merged["agents"] = agents
    return merged


def _number(value: Any, where: str, problems: list[str], *, whole: bool = False) -> float:
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        kind = "a positive whole number" if whole else "a positive number"
        problems.append(f"{where}: expected {kind}, got {value!r}")
        return 1
    return value


def _agent(
    name: str, values: Any, defaults: dict[str, Any], default_model: str, problems: list[str]
) -> AgentDefinition | None:
    where = f"agents.{name}"
    if not isinstance(values, dict):
        problems.append(f"{where}: expected a mapping")
        return None
    for key in values:
        if key not in AGENT_FIELDS:
            problems.append(f"{where}: unknown field {key!r}")
    merged = {**defaults, **values}
    prompt = merged.get("system_prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append(f"{where}.system_prompt: required text")
        prompt = ""
    tools = merged.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(item, str) for item in tools):
        problems.append(f"{where}.tools: expected a list of tool names")
        tools = []
    schema = merged.get("output_schema")
    if schema is not None and not isinstance(schema, dict):
        problems.append(f"{where}.output_schema: expected a JSON schema mapping")
        schema = None
    model = merged.get("model") or default_model
    return AgentDefinition(
        name=name,
        description=str(merged.get("description") or ""),
        system_prompt=prompt.strip(),
        tools=tuple(tools),
        model=str(model),
        max_turns=int(_number(merged.get("max_turns"), f"{where}.max_turns", problems, whole=True)),
        max_output_tokens=int(
            _number(
                merged.get("max_output_tokens"), f"{where}.max_output_tokens", problems, whole=True
            )
        ),
        max_cost_usd=float(_number(merged.get("max_cost_usd"), f"{where}.max_cost_usd", problems)),
        prompt_caching=bool(merged.get("prompt_caching", True)),
        output_schema=schema,
    )


def _prices(values: dict[str, Any], problems: list[str]) -> PriceTable:
    entries: dict[str, Price] = {}
    for model, fields in values.items():
        where = f"prices.{model}"
        if not isinstance(fields, dict) or set(fields) != set(PRICE_FIELDS):
            problems.append(f"{where}: give exactly {', '.join(PRICE_FIELDS)} (dollars per MTok)")
            continue
        numbers = [fields[name] for name in PRICE_FIELDS]
        if not all(isinstance(n, int | float) and n >= 0 for n in numbers):
            problems.append(f"{where}: prices must be numbers >= 0")
            continue
        entries[str(model)] = Price(*(float(n) for n in numbers))
    if "default" not in entries:
        problems.append("prices.default: required (the price of a model not listed)")
    return PriceTable(entries)


def _mcp_server(name: str, values: Any, problems: list[str]) -> McpServerConfig | None:
    where = f"mcp_servers.{name}"
    if not isinstance(values, dict):
        problems.append(f"{where}: expected a mapping")
        return None
    command, url = values.get("command"), values.get("url")
    if (command is None) == (url is None):
        problems.append(f"{where}: give either command (stdio) or url (streamable HTTP)")
        return None
    return McpServerConfig(
        name=name,
        command=command,
        args=tuple(str(arg) for arg in values.get("args") or ()),
        env={str(k): str(v) for k, v in (values.get("env") or {}).items()},
        url=url,
        headers={str(k): str(v) for k, v in (values.get("headers") or {}).items()},
    )


def load_agents_config(operator_file: Path | None, *, default_model: str) -> AgentsConfig:
    """The shipped agents file with the operator's merged over it; AgentConfigError if bad."""
    problems: list[str] = []
    merged = _parse(shipped_text(), "bot/agents/agents.yml", problems)
    sources = ["bot/agents/agents.yml"]
    if operator_file is not None:
        try:
            text = operator_file.read_text(encoding="utf-8")
        except OSError as error:
            raise AgentConfigError(
                [f"BIAGENT_AGENTS_FILE: cannot read {operator_file}: {error.strerror}"]
            ) from None
        merged = _merge(merged, _parse(text, str(operator_file), problems))
        sources.append(str(operator_file))
    defaults = merged.get("defaults") or {}
    for key in defaults:
        if key not in DEFAULT_FIELDS:
            problems.append(f"defaults: unknown field {key!r}")
    agents = {}
    for name, values in (merged.get("agents") or {}).items():
        definition = _agent(str(name), values, defaults, default_model, problems)
        if definition is not None:
            agents[definition.name] = definition
    prices = _prices(merged.get("prices") or {}, problems)
    servers = {}
    for name, values in (merged.get("mcp_servers") or {}).items():
        server = _mcp_server(str(name), values, problems)
        if server is not None:
            servers[server.name] = server
    if problems:
        raise AgentConfigError(problems)
    return AgentsConfig(agents, prices, servers, tuple(sources))
