"""What the API and the status page show of a pipeline: typed views read from its rows.

`GET /api/pipelines/{id}` answers `{"pipeline": PipelineView}`; the list answers summaries
(`PipelineSummary`). The field names are the contract of issue 10's API section; more fields
are welcome, none is renamed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from storage import clarifications, pipelines, risks, step_outputs
from storage.clarifications import Clarification
from storage.database import Database
from storage.pipelines import Pipeline, Step
from storage.risks import Risk
from storage.step_outputs import Artifact, Feedback, StepOutput


class ArtifactView(msgspec.Struct):
    id: int
    kind: str
    attempt: int
    content: str
    url: str | None
    created_at: str


class HistoryView(msgspec.Struct):
    attempt: int
    output: str
    created_at: str


class FeedbackView(msgspec.Struct):
    attempt: int
    text: str
    given_by: str | None
    created_at: str


class StepView(msgspec.Struct):
    id: int
    position: int
    phase: str
    agent: str
    status: str
    attempt: int
    gate: str
    output: str | None
    reported: dict[str, Any] | None
    artifacts: list[ArtifactView]
    cost_usd: float
    error: str | None
    approved_by: str | None
    approved_at: str | None
    approval_note: str | None
    started_at: str | None
    finished_at: str | None
    history: list[HistoryView]
    feedback: list[FeedbackView]


class RiskView(msgspec.Struct):
    id: int
    title: str
    severity: str
    detail: str
    step_id: int | None
    acknowledged_at: str | None
    acknowledged_by: str | None
    note: str | None


class ClarificationView(msgspec.Struct):
    id: int
    question: str
    choices: list[str] | None
    status: str
    answer: str | None
    answered_by: str | None
    step_id: int | None


class PullRequestView(msgspec.Struct):
    repository: str
    number: int
    url: str
    draft: bool
    state: str


class FailureView(msgspec.Struct):
    kind: str
    message: str | None
    phase: str | None
    detail: dict[str, Any] | None


class PipelineSummary(msgspec.Struct):
    id: int
    ticket: str
    cycle_type: str | None
    cycle_reason: str | None
    status: str
    cost_usd: float
    repositories: list[str]
    branch: str | None
    trigger: str
    created_by: str | None
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    failure: FailureView | None
    max_cost_usd: float | None


class PipelineView(PipelineSummary):
    steps: list[StepView] = msgspec.field(default_factory=list)
    risks: list[RiskView] = msgspec.field(default_factory=list)
    clarifications: list[ClarificationView] = msgspec.field(default_factory=list)
    pull_requests: list[PullRequestView] = msgspec.field(default_factory=list)


def summary_of(pipeline: Pipeline) -> PipelineSummary:
    return PipelineSummary(**_summary_fields(pipeline))


def _summary_fields(pipeline: Pipeline) -> dict[str, Any]:
    failure = None
    if pipeline.error_kind is not None:
        failure = FailureView(
            pipeline.error_kind, pipeline.error_message, pipeline.error_phase, pipeline.error_detail
        )
    return {
        "id": pipeline.id,
        "ticket": pipeline.ticket_key,
        "cycle_type": pipeline.cycle_type,
        "cycle_reason": pipeline.cycle_reason,
        "status": pipeline.status,
        "cost_usd": round(pipeline.cost_usd, 6),
        "repositories": list(pipeline.repositories),
        "branch": pipeline.branch,
        "trigger": pipeline.trigger,
        "created_by": pipeline.created_by,
        "created_at": pipeline.created_at,
        "updated_at": pipeline.updated_at,
        "started_at": pipeline.started_at,
        "finished_at": pipeline.finished_at,
        "failure": failure,
        "max_cost_usd": pipeline.max_cost_usd,
    }


def _step_view(
    step: Step,
    current: StepOutput | None,
    artifacts: list[Artifact],
    history: list[StepOutput],
    feedback: list[Feedback],
) -> StepView:
    return StepView(
        id=step.id,
        position=step.position,
        phase=step.phase,
        agent=step.agent,
        status=step.status,
        attempt=step.attempt,
        gate=step.gate,
        output=current.text if current else None,
        reported=current.output if current else None,
        artifacts=[
            ArtifactView(a.id, a.kind, a.attempt, a.content, a.url, a.created_at)
            for a in artifacts
            if a.step_id == step.id
        ],
        cost_usd=round(step.cost_usd, 6),
        error=step.error,
        approved_by=step.approved_by,
        approved_at=step.approved_at,
        approval_note=step.approval_note,
        started_at=step.started_at,
        finished_at=step.finished_at,
        history=[HistoryView(old.attempt, old.text, old.created_at) for old in history],
        feedback=[
            FeedbackView(given.attempt, given.text, given.given_by, given.created_at)
            for given in feedback
        ],
    )


def _risk_view(risk: Risk) -> RiskView:
    return RiskView(
        id=risk.id,
        title=risk.title,
        severity=risk.severity,
        detail=risk.detail,
        step_id=risk.step_id,
        acknowledged_at=risk.acknowledged_at,
        acknowledged_by=risk.acknowledged_by,
        note=risk.note,
    )


def _clarification_view(asked: Clarification) -> ClarificationView:
    return ClarificationView(
        id=asked.id,
        question=asked.question,
        choices=asked.choices,
        status=asked.status,
        answer=asked.answer,
        answered_by=asked.answered_by,
        step_id=asked.step_id,
    )


async def detail_of(db: Database, pipeline: Pipeline) -> PipelineView:
    """Everything a person needs to drive the pipeline, read in a fixed number of queries."""
    outputs = await step_outputs.outputs_of(db, pipeline.id)
    artifacts = await step_outputs.artifacts_of(db, pipeline.id)
    histories = await step_outputs.histories_of(db, pipeline.id)
    feedback = await step_outputs.feedback_by_step(db, pipeline.id)
    return PipelineView(
        **_summary_fields(pipeline),
        steps=[
            _step_view(
                step,
                outputs.get(step.id),
                artifacts,
                histories.get(step.id, []),
                feedback.get(step.id, []),
            )
            for step in await pipelines.list_steps(db, pipeline.id)
        ],
        risks=[_risk_view(risk) for risk in await risks.risks_of(db, pipeline.id)],
        clarifications=[
            _clarification_view(asked)
            for asked in await clarifications.for_pipeline(db, pipeline.id)
        ],
        pull_requests=[
            PullRequestView(p.repository, p.number, p.url, p.draft, p.state)
            for p in await pipelines.pull_requests_of(db, pipeline.id)
        ],
    )
