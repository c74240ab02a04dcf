"""The dashboard's read model: what needs a person now, then what is under way (issue 11).

The status page (`GET /`, web/status.py) leads with what waits for a person: plans to approve
(steps held at the plan gate), high risks to acknowledge, questions agents asked, failed
pipelines, pipelines waiting for a setup answer and pull requests biagent paused itself on.
Then the pipelines under way, the pull requests under review with their pending batch's due
time, and the last JIRA sync of each project. All of it is read from storage on each render
(the pipelines, risks and clarifications tables, the review read model, the sync log): a few
indexed queries, no cache to go stale. `GET /dashboard/state` renders the same part alone for
the page to swap in when an event says it changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.pipelines.states import Gate, PipelineStatus, Severity, StepStatus
from bot.pipelines.views import PipelineSummary, summary_of
from bot.reviews import overview
from bot.services import Services
from storage import clarifications, jira_sync, pipelines, risks, tickets
from storage.clarifications import Clarification, ClarificationStatus
from storage.database import Database
from storage.jira_sync import RunStatus, SyncRun
from storage.pipelines import Pipeline
from storage.risks import Risk

ENDED = (PipelineStatus.COMPLETED, PipelineStatus.CANCELLED)
UNDER_WAY = (PipelineStatus.CREATED, PipelineStatus.RUNNING, PipelineStatus.PAUSED)
SHOWN = 50  # of each list; the pipelines page and the API have the rest


@dataclass(frozen=True, slots=True)
class PlanWaiting:
    """A step's output held at the plan gate until a person approves it."""

    pipeline_id: int
    ticket: str
    step_id: int
    phase: str
    since: str | None


@dataclass(frozen=True, slots=True)
class RiskWaiting:
    risk: Risk
    ticket: str | None


@dataclass(frozen=True, slots=True)
class QuestionWaiting:
    """An open clarification, with the pipeline whose step asked it (None for other agents)."""

    clarification: Clarification
    pipeline_id: int | None
    ticket: str | None


@dataclass(frozen=True, slots=True)
class Attention:
    """What needs a person now, in the order the page shows it."""

    plans: list[PlanWaiting]
    risks: list[RiskWaiting]
    questions: list[QuestionWaiting]
    failed: list[PipelineSummary]
    waiting_for_input: list[PipelineSummary]  # held by a worktree setup question
    paused_pull_requests: list[dict[str, Any]]

    @property
    def count(self) -> int:
        return sum(
            len(part)
            for part in (
                self.plans,
                self.risks,
                self.questions,
                self.failed,
                self.waiting_for_input,
                self.paused_pull_requests,
            )
        )


@dataclass(frozen=True, slots=True)
class SyncState:
    """The last JIRA sync run of each project, newest first; `failures` counts the failed ones
    among the recent runs."""

    enabled: bool
    latest: list[SyncRun]
    failures: int


class PipelineCache:
    """Pipelines by id, each read once per render."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.found: dict[int, Pipeline | None] = {}

    async def get(self, pipeline_id: int) -> Pipeline | None:
        if pipeline_id not in self.found:
            self.found[pipeline_id] = await pipelines.get_pipeline(self.db, pipeline_id)
        return self.found[pipeline_id]

    async def ticket_of(self, pipeline_id: int | None) -> str | None:
        pipeline = None if pipeline_id is None else await self.get(pipeline_id)
        return None if pipeline is None else pipeline.ticket_key


async def plans_waiting(db: Database, cache: PipelineCache) -> list[PlanWaiting]:
    held = await pipelines.steps_at_gate(
        db, gate=Gate.PLAN_APPROVAL, status=StepStatus.WAITING_FOR_APPROVAL, limit=SHOWN
    )
    return [
        PlanWaiting(
            pipeline_id=step.pipeline_id,
            ticket=await cache.ticket_of(step.pipeline_id) or "?",
            step_id=step.id,
            phase=step.phase,
            since=step.finished_at or step.started_at,
        )
        for step in held
        if step.approved_at is None
    ]


async def questions_waiting(db: Database, cache: PipelineCache) -> list[QuestionWaiting]:
    found = await clarifications.listed(db, status=ClarificationStatus.OPEN, limit=SHOWN)
    waiting = []
    for question in reversed(found):  # oldest first, as the other lists
        step = None if question.step_id is None else await pipelines.get_step(db, question.step_id)
        pipeline_id = None if step is None else step.pipeline_id
        waiting.append(QuestionWaiting(question, pipeline_id, await cache.ticket_of(pipeline_id)))
    return waiting


async def attention_of(db: Database, pull_requests: list[dict[str, Any]]) -> Attention:
    cache = PipelineCache(db)
    high = await risks.unacknowledged(db, severity=Severity.HIGH, ended=ENDED, limit=SHOWN)
    questions = await questions_waiting(db, cache)
    asked = {question.pipeline_id for question in questions}
    waiting = await pipelines.list_pipelines(
        db, statuses=[PipelineStatus.WAITING_FOR_INPUT], limit=SHOWN
    )
    failed = await pipelines.list_pipelines(db, statuses=[PipelineStatus.FAILED], limit=SHOWN)
    return Attention(
        plans=await plans_waiting(db, cache),
        risks=[RiskWaiting(risk, await cache.ticket_of(risk.pipeline_id)) for risk in high],
        questions=questions,
        failed=[summary_of(pipeline) for pipeline in failed],
        waiting_for_input=[summary_of(p) for p in waiting if p.id not in asked],
        paused_pull_requests=[pr for pr in pull_requests if pr["paused"]],
    )


async def sync_state_of(db: Database, *, enabled: bool) -> SyncState:
    recent = await jira_sync.recent_runs(db, limit=100)
    latest: dict[str, SyncRun] = {}
    for run in recent:
        latest.setdefault(run.project, run)
    failures = sum(1 for run in recent[:20] if run.status == RunStatus.FAILED)
    return SyncState(enabled=enabled, latest=list(latest.values()), failures=failures)


async def state_of(services: Services) -> dict[str, Any]:
    """What the dashboard's changing part (status_state.html) shows."""
    db = services.db
    pull_requests = await overview.list_pull_requests(db, services.clock.now(), open_only=True)
    attention = await attention_of(db, pull_requests)
    under_way = await pipelines.list_pipelines(db, statuses=UNDER_WAY, limit=SHOWN)
    keys = {p.ticket_key for p in under_way} | {p.ticket for p in attention.failed}
    summaries = await tickets.summaries_by_key(db, sorted(keys))
    return {
        "attention": attention,
        "under_way": [summary_of(pipeline) for pipeline in under_way],
        "summaries": {key: ticket.summary for key, ticket in summaries.items()},
        "pull_requests": pull_requests,
        "sync": await sync_state_of(db, enabled=services.jira is not None),
        "pipelines_enabled": services.pipelines is not None,
    }
