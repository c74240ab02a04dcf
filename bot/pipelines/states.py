"""The statuses of a pipeline and of its steps, the gates a phase can carry, failure kinds.

Stored as their text in pipelines.status and pipeline_steps.status; the API shows the same text.
"""

from __future__ import annotations

from enum import StrEnum


class PipelineStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING_FOR_INPUT = "waiting_for_input"  # a clarification or a setup question
    WAITING_FOR_APPROVAL = "waiting_for_approval"  # the plan gate or a high risk
    WAITING_FOR_REVIEW = "waiting_for_review"  # its pull request is open
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in (PipelineStatus.COMPLETED, PipelineStatus.CANCELLED)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING_FOR_INPUT = "waiting_for_input"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    STALE = "stale"  # ran on an output that feedback has since replaced: runs again


class Gate(StrEnum):
    NONE = "none"
    PLAN_APPROVAL = "plan_approval"  # the step's output waits for a person's approval
    RISK_ACKNOWLEDGEMENT = "risk_acknowledgement"  # every high risk must be acknowledged


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class FailureKind(StrEnum):
    BUDGET = "budget"  # a step's or the pipeline's dollar cap
    LOOP = "loop"  # the same tool call with the same arguments, again and again
    TIME_LIMIT = "time_limit"
    AGENT = "agent"  # the agent failed or the model could not be reached
    SETUP = "setup"  # the worktree could not be made ready
    GITHUB = "github"  # the push or the pull request failed
    INTERNAL = "internal"
