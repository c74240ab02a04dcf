"""The pipelines' pure decisions: cycle detection by rule, the human gates, cycle type edits."""

from __future__ import annotations

from dataclasses import replace

from bot.pipelines.cycle_types import problems_of, unknown_tools
from bot.pipelines.detection import TicketTraits, detect_by_rules
from bot.pipelines.gates import blocking_gate, next_step
from bot.pipelines.states import Gate
from storage.cycle_types import CycleRule, PhaseChoice
from storage.pipelines import Step
from storage.risks import Risk

RULES = [
    CycleRule(1, 1, "oncall_bug", None, "oncall", None, None),
    CycleRule(2, 2, "oncall_bug", "Bug", "production", None, None),
    CycleRule(3, 3, "spike", "Spike", None, None, None),
    CycleRule(4, 4, "frontend", None, None, "Web UI", None),
    CycleRule(5, 5, "backend", None, None, None, "endpoint"),
]


def traits(**changes: object) -> TicketTraits:
    base = TicketTraits(issue_type="Story", labels=(), components=(), summary="Tidy things")
    return replace(base, **changes)  # test-only field overrides


def test_the_first_matching_rule_decides_and_says_why() -> None:
    found = detect_by_rules(RULES, traits(labels=("OnCall", "backend")))
    assert found is not None
    assert (found.cycle_type, found.reason) == ("oncall_bug", "rule 1: label 'oncall'")


def test_a_rule_needs_every_condition_it_sets() -> None:
    assert detect_by_rules(RULES, traits(issue_type="Bug")) is None
    found = detect_by_rules(RULES, traits(issue_type="bug", labels=("production",)))
    assert found is not None and found.cycle_type == "oncall_bug"


def test_components_and_summary_words_match_whole_values() -> None:
    frontend = detect_by_rules(RULES, traits(components=("web ui",)))
    backend = detect_by_rules(RULES, traits(summary="Add an endpoint for refunds"))
    assert frontend is not None and frontend.cycle_type == "frontend"
    assert backend is not None and backend.cycle_type == "backend"
    assert detect_by_rules(RULES, traits(summary="Add endpoints for refunds")) is None


def test_no_rule_matching_leaves_it_to_the_triage_agent() -> None:
    assert detect_by_rules(RULES, traits()) is None


def test_a_rule_without_conditions_matches_nothing() -> None:
    empty = CycleRule(9, 0, "spike", None, None, None, None)
    assert detect_by_rules([empty], traits()) is None


def step(step_id: int, status: str, gate: str = "none", approved_at: str | None = None) -> Step:
    return Step(
        step_id, 1, step_id, f"phase{step_id}", "agent", "", None, gate, None, None, None,
        status, 1, None, 0.0, None, None, approved_at, None, None, None,
    )  # fmt: skip


def risk(risk_id: int, step_id: int, severity: str, acknowledged_at: str | None = None) -> Risk:
    return Risk(
        risk_id, 1, step_id, f"risk {risk_id}", severity, "", None, acknowledged_at, None, ""
    )


def test_the_plan_gate_holds_until_the_plan_is_approved() -> None:
    steps = [
        step(1, "completed"),
        step(2, "waiting_for_approval", "plan_approval"),
        step(3, "pending"),
    ]
    held = blocking_gate(steps, [])
    assert held is not None and (held.step_id, held.gate) == (2, Gate.PLAN_APPROVAL)
    assert next_step(steps, []) is None
    steps[1] = step(2, "completed", "plan_approval", approved_at="now")
    assert blocking_gate(steps, []) is None
    following = next_step(steps, [])
    assert following is not None and following.id == 3


def test_a_completed_plan_without_an_approval_still_holds() -> None:
    steps = [step(1, "completed", "plan_approval"), step(2, "pending")]
    assert next_step(steps, []) is None


def test_a_high_risk_holds_until_acknowledged_and_lower_ones_do_not() -> None:
    steps = [step(1, "completed", "risk_acknowledgement"), step(2, "pending")]
    lower = [risk(1, 1, "medium"), risk(2, 1, "low")]
    following = next_step(steps, lower)
    assert following is not None and following.id == 2
    high = [*lower, risk(3, 1, "high")]
    held = blocking_gate(steps, high)
    assert held is not None and "risk 3" in held.detail
    assert next_step(steps, high) is None
    acknowledged = [*lower, risk(3, 1, "high", acknowledged_at="now")]
    following = next_step(steps, acknowledged)
    assert following is not None and following.id == 2


def test_a_running_or_failed_step_starts_nothing_else() -> None:
    assert next_step([step(1, "running"), step(2, "pending")], []) is None
    assert next_step([step(1, "failed"), step(2, "pending")], []) is None


def test_stale_and_interrupted_steps_run_again() -> None:
    stale = next_step([step(1, "completed"), step(2, "stale")], [])
    interrupted = next_step([step(1, "interrupted"), step(2, "pending")], [])
    assert stale is not None and stale.id == 2
    assert interrupted is not None and interrupted.id == 1


def test_every_step_done_means_no_next_step() -> None:
    assert next_step([step(1, "completed"), step(2, "completed")], []) is None


KNOWN_PHASES = {"triage": "triage", "plan": "planner", "ghost": "nobody"}
KNOWN_AGENTS = {"triage", "planner"}


def test_a_good_cycle_type_edit_has_no_problems() -> None:
    phases = [PhaseChoice("triage"), PhaseChoice("plan", gate="plan_approval")]
    assert problems_of("docs", phases, known_phases=KNOWN_PHASES, known_agents=KNOWN_AGENTS) == []


def test_a_bad_cycle_type_edit_lists_every_problem() -> None:
    phases = [
        PhaseChoice("triage"),
        PhaseChoice("triage"),
        PhaseChoice("nope"),
        PhaseChoice("ghost"),
        PhaseChoice("plan", gate="maybe", max_cost_usd=-1.0),
    ]
    problems = problems_of(
        "bad name!", phases, known_phases=KNOWN_PHASES, known_agents=KNOWN_AGENTS
    )
    assert problems == [
        "name: letters, digits and underscores, 1 to 64 of them",
        "phases[2]: 'triage' appears twice",
        "phases[3]: unknown phase 'nope'",
        "phases[4]: phase 'ghost' names unknown agent 'nobody'",
        "phases[5]: unknown gate 'maybe'",
        "phases[5]: max_cost_usd must be above 0 and at most 1000",
    ]


def test_an_empty_phase_list_is_refused() -> None:
    assert problems_of("x", [], known_phases={}, known_agents=set()) == [
        "phases: a cycle type needs at least one phase"
    ]


def test_unknown_tools_are_named() -> None:
    assert unknown_tools(["bash", "teleport"], {"bash", "grep"}) == ["teleport"]
    assert unknown_tools(None, {"bash"}) == []
