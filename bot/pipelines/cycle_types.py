"""Checking an edit of a cycle type before it is stored (PUT /api/cycle-types/{name}).

Pure: given the known agents, tools and phases, say every problem of the edit at once, so the
API answers one 400 that lists them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from bot.pipelines.states import Gate
from storage.cycle_types import PhaseChoice

CYCLE_TYPE_NAME_MAX = 64


def problems_of(
    name: str,
    phases: Sequence[PhaseChoice],
    *,
    known_phases: dict[str, str],
    known_agents: Collection[str],
) -> list[str]:
    """Every reason the cycle type cannot be stored; empty when it can. `known_phases` maps each
    phase definition to its agent."""
    problems = []
    if not name or len(name) > CYCLE_TYPE_NAME_MAX or not name.replace("_", "").isalnum():
        problems.append("name: letters, digits and underscores, 1 to 64 of them")
    if not phases:
        problems.append("phases: a cycle type needs at least one phase")
    seen: set[str] = set()
    gates = {gate.value for gate in Gate}
    for position, choice in enumerate(phases, start=1):
        where = f"phases[{position}]"
        if choice.phase in seen:
            problems.append(f"{where}: {choice.phase!r} appears twice")
        seen.add(choice.phase)
        agent = known_phases.get(choice.phase)
        if agent is None:
            problems.append(f"{where}: unknown phase {choice.phase!r}")
        elif agent not in known_agents:
            problems.append(f"{where}: phase {choice.phase!r} names unknown agent {agent!r}")
        if choice.gate is not None and choice.gate not in gates:
            problems.append(f"{where}: unknown gate {choice.gate!r}")
        if choice.max_cost_usd is not None and not 0 < choice.max_cost_usd <= 1000:
            problems.append(f"{where}: max_cost_usd must be above 0 and at most 1000")
        if choice.time_limit_s is not None and not 0 < choice.time_limit_s <= 86400:
            problems.append(f"{where}: time_limit_s must be 1 to 86400")
    return problems


def unknown_tools(tools: Sequence[str] | None, known_tools: Collection[str]) -> list[str]:
    """The tools a phase names that no agent runtime offers."""
    return [tool for tool in tools or () if tool not in known_tools]
