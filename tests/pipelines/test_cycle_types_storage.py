"""Cycle types live in the database: seeded by the migration, read back in order, replaced whole."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage import cycle_types
from storage.cycle_types import PhaseChoice
from storage.database import Database

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def phase_names(cycle_type: cycle_types.CycleType | None) -> list[str]:
    assert cycle_type is not None
    return [cycle_phase.phase.name for cycle_phase in cycle_type.phases]


async def test_the_migration_seeds_five_cycle_types(db: Database) -> None:
    names = [cycle_type.name for cycle_type in await cycle_types.list_cycle_types(db)]
    assert names == ["backend", "frontend", "fullstack", "oncall_bug", "spike"]


async def test_each_seeded_cycle_type_has_its_phases_in_order(db: Database) -> None:
    assert phase_names(await cycle_types.get_cycle_type(db, "spike")) == [
        "triage",
        "research",
        "report",
    ]
    assert phase_names(await cycle_types.get_cycle_type(db, "backend")) == [
        "triage",
        "plan",
        "risk",
        "implement",
        "test",
        "self_review",
        "pull_request",
    ]
    assert phase_names(await cycle_types.get_cycle_type(db, "oncall_bug")) == [
        "triage",
        "reproduce",
        "fix",
        "test",
        "pull_request",
    ]


async def test_the_plan_and_risk_phases_carry_their_gates(db: Database) -> None:
    backend = await cycle_types.get_cycle_type(db, "backend")
    assert backend is not None
    gates = {cycle_phase.phase.name: cycle_phase.gate for cycle_phase in backend.phases}
    assert gates["plan"] == "plan_approval"
    assert gates["risk"] == "risk_acknowledgement"
    assert gates["implement"] == "none"


async def test_saving_a_cycle_type_replaces_its_phases_and_keeps_overrides(db: Database) -> None:
    saved = await cycle_types.save_cycle_type(
        db,
        "backend",
        description="lean",
        max_cost_usd=12.5,
        step_max_cost_usd=None,
        phases=[
            PhaseChoice("triage"),
            PhaseChoice("plan", gate="none", max_cost_usd=0.75),
            PhaseChoice("pull_request"),
        ],
        now=NOW,
    )
    assert phase_names(saved) == ["triage", "plan", "pull_request"]
    plan = saved.phases[1]
    assert (plan.gate, plan.max_cost_usd, plan.phase.gate) == ("none", 0.75, "plan_approval")
    assert saved.max_cost_usd == 12.5
    assert phase_names(await cycle_types.get_cycle_type(db, "backend")) == phase_names(saved)


async def test_a_new_cycle_type_can_be_added(db: Database) -> None:
    await cycle_types.save_cycle_type(
        db,
        "docs",
        description="Documentation only.",
        max_cost_usd=None,
        step_max_cost_usd=1.0,
        phases=[PhaseChoice("triage"), PhaseChoice("implement")],
        now=NOW,
    )
    names = [cycle_type.name for cycle_type in await cycle_types.list_cycle_types(db)]
    assert "docs" in names
    assert phase_names(await cycle_types.get_cycle_type(db, "docs")) == ["triage", "implement"]


async def test_an_unknown_cycle_type_is_none(db: Database) -> None:
    assert await cycle_types.get_cycle_type(db, "nope") is None


async def test_detection_rules_come_in_their_order(db: Database) -> None:
    rules = await cycle_types.list_rules(db)
    assert [rule.position for rule in rules] == sorted(rule.position for rule in rules)
    assert rules[0].cycle_type == "oncall_bug" and rules[0].label == "oncall"


async def test_every_seeded_phase_names_a_defined_agent(db: Database) -> None:
    from bot.agents.definitions import load_agents_config

    agents = load_agents_config(None, default_model="claude-sonnet-4-5").agents
    phases = await cycle_types.list_phase_definitions(db)
    assert len(phases) == 11
    assert all(phase.agent in agents for phase in phases)
