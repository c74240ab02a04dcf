"""Reading and editing cycle types (GET/PUT /api/cycle-types): the checks, then the rows.

An edit names its phases in order with optional overrides; every problem (an empty list, a
phase twice, an unknown phase, agent, gate or tool, a limit out of range) is reported at once
as `InvalidCycleType`, and nothing is stored. Known agents come from the agents file, known
tools from the agent runtime's built-in tools and the pipeline's own (jira_cli, github_cli:
bot/pipelines/agent_tools.py); an `mcp:<server>` tool is accepted as named.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from bot.clock import Clock
from bot.pipelines.cycle_types import problems_of, unknown_tools
from storage import cycle_types
from storage.cycle_types import CycleType, PhaseChoice
from storage.database import Database


class InvalidCycleType(ValueError):
    """The edit cannot be stored; `problems` says every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class CycleTypeEdit:
    description: str
    max_cost_usd: float | None
    step_max_cost_usd: float | None
    phases: tuple[PhaseChoice, ...]


class CycleTypes:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        known_agents: Collection[str],
        known_tools: Collection[str],
    ) -> None:
        self.db = db
        self.clock = clock
        self.known_agents = frozenset(known_agents)
        self.known_tools = frozenset(known_tools)

    async def list(self) -> list[CycleType]:
        return await cycle_types.list_cycle_types(self.db)

    async def get(self, name: str) -> CycleType | None:
        return await cycle_types.get_cycle_type(self.db, name)

    async def save(self, name: str, edit: CycleTypeEdit) -> CycleType:
        definitions = {
            phase.name: phase for phase in await cycle_types.list_phase_definitions(self.db)
        }
        problems = problems_of(
            name,
            edit.phases,
            known_phases={phase.name: phase.agent for phase in definitions.values()},
            known_agents=self.known_agents,
        )
        for choice in edit.phases:
            definition = definitions.get(choice.phase)
            if definition is None:
                continue
            tools = [tool for tool in definition.tools or () if not tool.startswith("mcp:")]
            for tool in unknown_tools(tools, self.known_tools):
                problems.append(f"phase {choice.phase!r} names unknown tool {tool!r}")
        for label, cap in (("max_cost_usd", edit.max_cost_usd),
                           ("step_max_cost_usd", edit.step_max_cost_usd)):  # fmt: skip
            if cap is not None and not 0 < cap <= 10_000:
                problems.append(f"{label} must be above 0 and at most 10000")
        if problems:
            raise InvalidCycleType(problems)
        return await cycle_types.save_cycle_type(
            self.db,
            name,
            description=edit.description,
            max_cost_usd=edit.max_cost_usd,
            step_max_cost_usd=edit.step_max_cost_usd,
            phases=list(edit.phases),
            now=self.clock.now(),
        )
