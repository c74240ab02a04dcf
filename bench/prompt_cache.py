"""Prompt caching in the agent loop: how much of each later turn's input is a cache read.

A scripted 10-turn tool loop (read, search, run commands in a real git repository) runs through
the real AgentRunner and the real SDK against the Anthropic fake, which records every request
and models the prompt cache (each cache_control breakpoint writes its prefix; a later request
reads the longest prefix written before). The figure is the share of the input bytes of turns
2-10 that lie inside the cached prefix. Baselines in the same run: the same loop with only the
system prompt marked for caching (a common first setup), and with no caching at all.

    .venv/bin/python -m bench.prompt_cache [--turns 10]

Last line: JSON with `cached_share` (target >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bot.agents.client import build_client
from bot.agents.definitions import load_agents_config
from bot.agents.loop import CACHE_CONTROL, AgentContext, BaseAgent
from bot.agents.runner import AgentRunner
from bot.agents.tools import Tool
from bot.clock import SystemClock
from bot.config import DEFAULT_MODEL
from bot.events.bus import EventBus
from storage.database import Database
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic

TARGET = 0.9
AGENT = "implementer"


class SystemOnlyCaching(BaseAgent):
    """The baseline: one breakpoint on the system prompt, none on tools or messages."""

    def build_request(
        self, messages: list[dict[str, Any]], tools: list[Tool], system: list[str]
    ) -> dict[str, Any]:
        request = super().build_request(messages, tools, system)
        request["tools"] = [
            {k: v for k, v in tool.items() if k != "cache_control"} for tool in request["tools"]
        ]
        request["messages"] = scripted._strip_cache_control(request["messages"])
        request["system"][-1]["cache_control"] = CACHE_CONTROL
        return request


def make_repository(root: Path) -> str:
    """A small but real repository; returns a repository context (its file list)."""
    root.mkdir(parents=True)
    for index in range(12):
        module = root / "src" / f"module_{index:02d}.py"
        module.parent.mkdir(exist_ok=True)
        body = "".join(
            f"def handler_{index}_{n}(request):\n    return {{'module': {index}, 'n': {n}}}\n\n"
            for n in range(25)
        )
        module.write_text(f'"""Module {index}."""\n\n{body}', encoding="utf-8")
    (root / "README.md").write_text("# Bench service\n\nRun `make test`.\n", encoding="utf-8")
    for command in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "."],
        [
            "git",
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "commit",
            "-q",
            "-m",
            "initial",
        ],
    ):
        subprocess.run(command, cwd=root, check=True, capture_output=True)
    listing = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))
    return "Files:\n" + "\n".join(listing) + "\nTests: pytest. Style: ruff, type hints."


def script(fake: FakeAnthropic, turns: int) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("glob", {"pattern": "src/*.py"}),
        ("file_read", {"path": "src/module_00.py", "limit": 20}),
        ("grep", {"pattern": "handler_3_1[0-9]", "path": "src"}),
        ("file_read", {"path": "src/module_03.py", "offset": 30, "limit": 20}),
        (
            "edit_file",
            {"path": "src/module_03.py", "old_text": "'n': 12}", "new_text": "'n': 12, 'v': 2}"},
        ),
        (
            "bash",
            {
                "command": "git diff --stat && python3 -c "
                "'import ast; ast.parse(open(\"src/module_03.py\").read())'"
            },
        ),
        ("file_read", {"path": "README.md"}),
        (
            "bash",
            {
                "command": "git add -A && git -c user.name=bot -c user.email=bot@example.com"
                " commit -q -m 'Add v to handler_3_12' && git log --oneline | head -3"
            },
        ),
        ("grep", {"pattern": "'v': 2"}),
    ]
    for turn in range(turns - 1):
        name, arguments = calls[turn % len(calls)]
        fake.add(scripted.tool_use(name, arguments, say=f"Step {turn + 1}: {name}."))
    fake.add(scripted.text("Done: handler_3_12 now returns v=2, committed."))


@dataclasses.dataclass
class Measured:
    label: str
    shares: list[float]
    cached_share: float
    cost_usd: float
    status: str


async def measure(
    label: str, tmp: Path, turns: int, *, caching: bool, agent_class: type[BaseAgent] | None
) -> Measured:
    fake = FakeAnthropic()
    await fake.start()
    db = await Database.open(f"sqlite:///{tmp / (label + '.db')}")
    await db.migrate()
    clock = SystemClock()
    bus = EventBus(db, clock)
    await bus.start()
    config = load_agents_config(None, default_model=DEFAULT_MODEL)
    agent = dataclasses.replace(config.agents[AGENT], prompt_caching=caching, max_turns=turns + 1)
    config = dataclasses.replace(config, agents={**config.agents, AGENT: agent})
    runner = AgentRunner(
        db=db,
        bus=bus,
        clock=clock,
        client=build_client(base_url=fake.base_url, api_key="bench-key", max_retries=0),
        config=config,
        agent_classes={AGENT: agent_class} if agent_class else None,
    )
    repository = tmp / f"repo-{label}"
    repository_context = make_repository(repository)
    script(fake, turns)
    context = AgentContext(
        session_key=f"bench:{label}",
        worktree=repository,
        task="handler_3_12 must also return v=2. Make the change, check it parses, commit.",
        stream="bench",
        repository_context=repository_context,
        budget_usd=100.0,
    )
    try:
        result = await runner.run_step(AGENT, context)
    finally:
        await runner.close()
        await fake.close()
        await db.close()
    later = fake.requests[1:]
    shares = [r.cache_read_bytes / r.total_bytes for r in later]
    cached = sum(r.cache_read_bytes for r in later) / sum(r.total_bytes for r in later)
    return Measured(label, shares, cached, result.step_cost_usd, result.status)


async def main(turns: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-prompt-cache-") as directory:
        tmp = Path(directory)
        project = await measure("project", tmp, turns, caching=True, agent_class=None)
        system_only = await measure(
            "system_only", tmp, turns, caching=True, agent_class=SystemOnlyCaching
        )
        uncached = await measure("no_cache", tmp, turns, caching=False, agent_class=None)
    print(f"prompt caching over a {turns}-turn tool loop (turns 2-{turns}, bytes read from cache)")
    for measured in (project, system_only, uncached):
        per_turn = " ".join(f"{share:.2f}" for share in measured.shares)
        print(
            f"  {measured.label:<12} cached share {measured.cached_share:6.3f}"
            f"  cost ${measured.cost_usd:.4f}  ({measured.status})  per turn: {per_turn}"
        )
    ok = project.cached_share >= TARGET and project.status == "completed"
    print(f"  target >= {TARGET}: {'met' if ok else 'NOT met'}")
    return {
        "bench": "prompt_cache",
        "turns": turns,
        "cached_share": round(project.cached_share, 4),
        "target": TARGET,
        "ok": ok,
        "baseline_system_only_share": round(system_only.cached_share, 4),
        "baseline_no_cache_share": round(uncached.cached_share, 4),
        "cost_usd": round(project.cost_usd, 6),
        "baseline_no_cache_cost_usd": round(uncached.cost_usd, 6),
        "cost_ratio": round(project.cost_usd / uncached.cost_usd, 4),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    figures = asyncio.run(main(parser.parse_args().turns))
    print(json.dumps(figures))
