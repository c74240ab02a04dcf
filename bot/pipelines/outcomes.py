"""What an agent step's result means for its pipeline step: pure, decided from the result.

The agent runtime reports `completed`, `paused_for_clarification`, `budget_stopped`, `failed` or
`interrupted` (docs/agents.md); a pipeline step becomes completed, waiting for approval (its gate
is the plan approval), waiting for input, or failed with a kind a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.pipelines.states import FailureKind, Gate, Severity


class Verdict(StrEnum):
    COMPLETED = "completed"
    NEEDS_APPROVAL = "needs_approval"
    NEEDS_INPUT = "needs_input"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StepVerdict:
    verdict: Verdict
    kind: FailureKind | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class ReportedRisk:
    title: str
    severity: Severity
    detail: str


def judge(status: str, gate: str, *, reason: str | None, error: str | None) -> StepVerdict:
    """The pipeline step's verdict from the agent run's status."""
    if status == "completed":
        if gate == Gate.PLAN_APPROVAL:
            return StepVerdict(Verdict.NEEDS_APPROVAL)
        return StepVerdict(Verdict.COMPLETED)
    if status == "paused_for_clarification":
        return StepVerdict(Verdict.NEEDS_INPUT, message=reason or "waiting for an answer")
    if status == "budget_stopped":
        text = reason or "budget reached"
        kind = FailureKind.AGENT if text.startswith("turn limit") else FailureKind.BUDGET
        return StepVerdict(Verdict.FAILED, kind, text)
    if status == "loop_stopped":
        return StepVerdict(Verdict.FAILED, FailureKind.LOOP, reason or "the agent repeated itself")
    if status == "interrupted":
        return StepVerdict(Verdict.FAILED, FailureKind.AGENT, reason or "the model stream broke")
    return StepVerdict(Verdict.FAILED, FailureKind.AGENT, error or reason or f"agent {status}")


def reported_risks(output: Any) -> list[ReportedRisk]:
    """The risk cards in a risk agent's report; malformed entries are skipped."""
    if not isinstance(output, dict) or not isinstance(output.get("risks"), list):
        return []
    found = []
    for entry in output["risks"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("title"), str):
            continue
        try:
            severity = Severity(str(entry.get("severity", "")).casefold())
        except ValueError:
            continue
        detail = entry.get("detail")
        found.append(ReportedRisk(entry["title"][:300], severity, str(detail or "")[:4000]))
    return found


def tests_passed(output: Any) -> bool:
    return isinstance(output, dict) and output.get("passed") is True


def pull_request_text(output: Any, ticket_key: str, summary: str) -> tuple[str, str]:
    """The PR's title and body from the pr_author's report, with a plain fallback."""
    title = f"{ticket_key}: {summary}"[:120]
    body = ""
    if isinstance(output, dict):
        if isinstance(output.get("title"), str) and output["title"].strip():
            title = output["title"].strip()[:120]
        if isinstance(output.get("body"), str):
            body = output["body"]
    return title, body


# The report fields that hold a step's main text, by the agents' output schemas (agents.yml).
MAIN_FIELDS = ("plan", "findings", "recommendation", "summary")


def output_text(final_text: str, output: Any) -> str:
    """What a person reads as a step's output: the report's main fields (the plan, the
    findings...) and then what the agent said last, when it says more than that."""
    parts = []
    if isinstance(output, dict):
        parts = [
            output[name].strip()
            for name in MAIN_FIELDS
            if isinstance(output.get(name), str) and output[name].strip()
        ]
    said = final_text.strip()
    if said and not (parts and len(said) < 80 and said.rstrip(".").casefold() in ("done", "ok")):
        parts.append(said)
    return "\n\n".join(parts)
