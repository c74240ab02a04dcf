"""Each cycle type runs its own phases; detection by rule, by the triage agent, by a person."""

from __future__ import annotations

import pytest

from tests.pipelines.world import PipelineWorld, report, step_of

PHASES = {
    "spike": ["triage", "research", "report"],
    "frontend": ["triage", "plan", "risk", "implement", "test", "self_review", "pull_request"],
    "fullstack": ["triage", "plan", "risk", "implement", "test", "self_review", "pull_request"],
    "oncall_bug": ["triage", "reproduce", "fix", "test", "pull_request"],
}


@pytest.mark.parametrize("cycle_type", sorted(PHASES))
async def test_each_cycle_type_runs_its_own_phases(world: PipelineWorld, cycle_type: str) -> None:
    await world.start()
    key = await world.ticket()
    created = await world.create(key, cycle_type=cycle_type)
    assert created["cycle_reason"] == "chosen by a person"
    done = await world.drive(created["id"])
    assert [step["phase"] for step in done["steps"]] == PHASES[cycle_type]
    assert all(step["status"] == "completed" for step in done["steps"])
    agents = [agent for agent, _ in world.model.asked]
    if cycle_type == "spike":  # no code change, no pull request: done when the report is
        assert done["status"] == "completed"
        assert done["pull_requests"] == [] and world.github.opened_pulls == []
        assert step_of(done, "report")["artifacts"][0]["kind"] == "spike_notes"
        assert "implementer" not in agents
    else:
        assert done["status"] == "waiting_for_review"
        assert len(world.github.opened_pulls) == 1
    if cycle_type == "oncall_bug":
        assert "planner" not in agents and "risk" not in agents
        assert done["risks"] == []


async def test_the_triage_agent_decides_when_no_rule_matches(world: PipelineWorld) -> None:
    await world.start()
    key = await world.ticket(summary="Look into how greetings work")  # no rule matches
    world.model.script(
        "triage", report({"cycle_type": "spike", "summary": "A question, not a change."})
    )
    created = await world.create(key, start=False)
    assert created["cycle_type"] is None
    assert created["cycle_reason"].startswith("no rule matched")
    assert [step["phase"] for step in created["steps"]] == ["triage"]

    await world.api("POST", f"/api/pipelines/{created['id']}/start")
    done = await world.drive(created["id"])
    assert done["cycle_type"] == "spike"
    assert done["cycle_reason"] == "triage agent: A question, not a change."
    assert [step["phase"] for step in done["steps"]] == PHASES["spike"]
    assert done["status"] == "completed"
    assert [agent for agent, _ in world.model.asked].count("triage") == 2  # one step, 2 turns
    started = [e for e in await world.events(created["id"]) if e["type"] == "pipeline_started"]
    assert [e["data"]["cycle_type"] for e in started] == ["", "spike"]


async def test_a_person_overrides_the_cycle_type_before_the_start_only(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket(labels=("backend",))
    created = await world.create(key, start=False)
    assert created["cycle_type"] == "backend" and created["cycle_reason"].startswith("rule")
    chosen = await world.api(
        "PUT",
        f"/api/pipelines/{created['id']}/cycle-type",
        {"cycle_type": "oncall_bug", "by": "mia"},
    )
    assert chosen["pipeline"]["cycle_type"] == "oncall_bug"
    assert chosen["pipeline"]["cycle_reason"] == "chosen by mia"
    assert [s["phase"] for s in chosen["pipeline"]["steps"]] == PHASES["oncall_bug"]
    await world.api("POST", f"/api/pipelines/{created['id']}/start")
    refused = await world.api(
        "PUT", f"/api/pipelines/{created['id']}/cycle-type", {"cycle_type": "spike"}, status=409
    )
    assert refused["state"] in ("running", "waiting_for_review")
    unknown = await world.api(
        "PUT", f"/api/pipelines/{created['id']}/cycle-type", {"cycle_type": "nope"}, status=409
    )
    assert unknown["error"]["code"] == "conflicting_state"
