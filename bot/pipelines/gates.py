"""May the next phase start? The human gates, decided from the rows alone, enforced in code.

A step whose gate is plan approval ends `waiting_for_approval` and counts as done only once a
person approved it; a step whose gate is risk acknowledgement holds the pipeline while any high
risk of the pipeline is unacknowledged. The engine asks `blocking_gate` before it starts any
step, so no path (resume, restart, a crash) can step past a gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.pipelines.states import Gate, Severity, StepStatus
from storage.pipelines import Step
from storage.risks import Risk


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why the pipeline cannot go on: which step holds it, and what it waits for."""

    step_id: int
    gate: Gate
    detail: str


def unacknowledged_high_risks(risks: Sequence[Risk]) -> list[Risk]:
    return [
        risk for risk in risks if risk.severity == Severity.HIGH and risk.acknowledged_at is None
    ]


def blocking_gate(steps: Sequence[Step], risks: Sequence[Risk]) -> Blocked | None:
    """The first gate, among steps that already ran, that is not released; None if all are."""
    for step in steps:
        if step.status not in (StepStatus.COMPLETED, StepStatus.WAITING_FOR_APPROVAL):
            return None  # this step has not reached its gate, nor have the ones after it
        if step.gate == Gate.PLAN_APPROVAL and step.approved_at is None:
            return Blocked(step.id, Gate.PLAN_APPROVAL, f"{step.phase} waits for approval")
        if step.gate == Gate.RISK_ACKNOWLEDGEMENT and step.status == StepStatus.COMPLETED:
            waiting = unacknowledged_high_risks([r for r in risks if r.step_id == step.id])
            if waiting:
                titles = ", ".join(risk.title for risk in waiting)
                return Blocked(
                    step.id, Gate.RISK_ACKNOWLEDGEMENT, f"high risks to acknowledge: {titles}"
                )
    return None


def next_step(steps: Sequence[Step], risks: Sequence[Risk]) -> Step | None:
    """The step to run next: the first pending, stale or interrupted one, unless a gate before
    it holds. None when every step is done or a gate holds."""
    if blocking_gate(steps, risks) is not None:
        return None
    for step in steps:
        if step.status in (StepStatus.PENDING, StepStatus.STALE, StepStatus.INTERRUPTED):
            return step
        if step.status != StepStatus.COMPLETED:
            return None  # running, waiting or failed: nothing else starts
    return None
