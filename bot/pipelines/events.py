"""The message types ticket pipelines emit (docs/design.md, Events; bot.events.message).

Every pipeline event is published on the stream `pipeline:<id>`, committed together with the
row change it announces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec

from bot.events.message import Event
from storage.pipelines import Pipeline, Step


def stream_of(pipeline_id: int) -> str:
    return f"pipeline:{pipeline_id}"


def started(pipeline: Pipeline, steps: Sequence[Step]) -> PipelineStarted:
    return PipelineStarted(
        pipeline_id=pipeline.id,
        ticket=pipeline.ticket_key,
        cycle_type=pipeline.cycle_type or "",
        cycle_reason=pipeline.cycle_reason,
        phases=[step.phase for step in steps],
    )


class PipelineEvent(Event):
    """The fields every pipeline event carries."""

    concern: ClassVar[str] = "pipelines"
    pipeline_id: int
    ticket: str


class PipelineStarted(PipelineEvent):
    """A ticket pipeline started, with its cycle type, why that one, and its phases."""

    type_name: ClassVar[str] = "pipeline_started"
    cycle_type: str
    cycle_reason: str | None = None
    phases: list[str] = msgspec.field(default_factory=list)


class StepStarted(PipelineEvent):
    """A pipeline step started (or continued its stored conversation)."""

    type_name: ClassVar[str] = "step_started"
    step_id: int
    phase: str
    agent: str
    attempt: int


class StepCompleted(PipelineEvent):
    """A pipeline step finished, with its cost and a short outcome."""

    type_name: ClassVar[str] = "step_completed"
    step_id: int
    phase: str
    attempt: int
    cost_usd: float
    outcome: str | None = None


class StepRestarted(PipelineEvent):
    """A step was restarted: by a person, with feedback, or because an earlier one changed."""

    type_name: ClassVar[str] = "step_restarted"
    step_id: int
    phase: str
    attempt: int
    reason: str
    feedback: str | None = None


class StepInterrupted(PipelineEvent):
    """A step stopped before its end (a pause, a crash, a broken stream); it continues later."""

    type_name: ClassVar[str] = "step_interrupted"
    step_id: int
    phase: str
    reason: str


class PipelinePaused(PipelineEvent):
    """A pipeline was paused; its running step was interrupted and keeps its conversation."""

    type_name: ClassVar[str] = "pipeline_paused"
    reason: str | None = None


class PipelineResumed(PipelineEvent):
    """A paused, failed or restarted pipeline goes on."""

    type_name: ClassVar[str] = "pipeline_resumed"
    reason: str | None = None


class PipelineCompleted(PipelineEvent):
    """A pipeline finished: its pull request merged, or its spike report written."""

    type_name: ClassVar[str] = "pipeline_completed"
    pr_url: str | None = None


class PipelineCancelled(PipelineEvent):
    """A pipeline was cancelled by a person, or its pull request closed unmerged."""

    type_name: ClassVar[str] = "pipeline_cancelled"
    reason: str | None = None


class PipelineFailed(PipelineEvent):
    """A pipeline failed: the phase, the kind (budget, loop, agent, ...), the message, the last
    tool call and a log excerpt."""

    type_name: ClassVar[str] = "pipeline_failed"
    kind: str
    message: str
    error: str  # the message again, under the name the first catalogue gave it
    phase: str | None = None
    step_id: int | None = None
    last_tool_call: dict[str, Any] | None = None
    log_excerpt: str | None = None


class WaitingForApproval(PipelineEvent):
    """A gate holds the pipeline: the plan waits for approval, or high risks for acknowledgement."""

    type_name: ClassVar[str] = "waiting_for_approval"
    step_id: int
    phase: str
    gate: str
    detail: str


class ApprovalGiven(PipelineEvent):
    """A person approved a step's output (the plan); the next phase may start."""

    type_name: ClassVar[str] = "approval_given"
    step_id: int
    phase: str
    approved_by: str
    note: str | None = None


class RiskIdentified(PipelineEvent):
    """The risk phase identified a risk; a high one blocks the next phase until acknowledged."""

    type_name: ClassVar[str] = "risk_identified"
    risk_id: int
    title: str
    severity: str
    step_id: int | None = None


class RiskAcknowledged(PipelineEvent):
    """A person acknowledged a risk card."""

    type_name: ClassVar[str] = "risk_acknowledged"
    risk_id: int
    acknowledged_by: str
    note: str | None = None


class PipelineWaitingForInput(PipelineEvent):
    """A step asked a person a question (clarification_requested carries it); the pipeline waits."""

    type_name: ClassVar[str] = "pipeline_waiting_for_input"
    step_id: int
    phase: str
    clarification_id: int | None = None


class PipelineWaitingForReview(PipelineEvent):
    """The pipeline's pull request is open; review response answers its reviewers, and its merge
    completes the pipeline. (`waiting_for_review` itself comes from the reviews concern, on the
    pull request's stream.)"""

    type_name: ClassVar[str] = "pipeline_waiting_for_review"
    repository: str
    number: int
    url: str
