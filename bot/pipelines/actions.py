"""A person's actions on a pipeline's steps: approve, acknowledge a risk, give feedback, restart.

Each checks the step's state (409 naming it when it does not fit), commits the change with its
event, and lets the pipeline go on (bot/pipelines/engine.py `go_on`) unless it is paused.
"""

from __future__ import annotations

from bot.pipelines import events
from bot.pipelines.engine import (
    ConflictingState,
    PipelineEngine,
    PipelineNotFound,
    one_action_at_a_time,
)
from bot.pipelines.states import Gate, StepStatus
from storage import pipelines, risks, step_outputs
from storage.database import Params
from storage.pipelines import Pipeline, Step

FEEDBACK_MAX_CHARS = 20_000
RESTARTABLE = frozenset(
    {
        StepStatus.COMPLETED,
        StepStatus.FAILED,
        StepStatus.INTERRUPTED,
        StepStatus.WAITING_FOR_APPROVAL,
        StepStatus.WAITING_FOR_INPUT,
        StepStatus.STALE,
    }
)


class PipelineActions:
    def __init__(self, engine: PipelineEngine) -> None:
        self.engine = engine
        self.db = engine.db
        self.clock = engine.clock

    async def _step(self, pipeline: Pipeline, step_id: int) -> Step:
        step = await pipelines.get_step(self.db, step_id)
        if step is None or step.pipeline_id != pipeline.id:
            raise PipelineNotFound(f"pipeline {pipeline.id} has no step {step_id}")
        return step

    @one_action_at_a_time
    async def approve(
        self, pipeline_id: int, step_id: int, *, by: str, note: str | None
    ) -> Pipeline:
        pipeline = await self.engine.get(pipeline_id)
        step = await self._step(pipeline, step_id)
        if step.gate != Gate.PLAN_APPROVAL or step.status != StepStatus.WAITING_FOR_APPROVAL:
            raise ConflictingState(
                f"step {step_id} ({step.phase}) is {step.status}, not waiting for approval",
                step.status,
            )
        given = events.ApprovalGiven(
            pipeline_id=pipeline.id,
            ticket=pipeline.ticket_key,
            step_id=step.id,
            phase=step.phase,
            approved_by=by,
            note=note,
        )
        approval = pipelines.approval(step.id, by=by, note=note, now=self.clock.now())
        return await self.engine.go_on(pipeline, given, approval, wake_failed=False)

    @one_action_at_a_time
    async def acknowledge_risk(
        self, pipeline_id: int, risk_id: int, *, by: str, note: str | None
    ) -> Pipeline:
        pipeline = await self.engine.get(pipeline_id)
        risk = await risks.get_risk(self.db, risk_id)
        if risk is None or risk.pipeline_id != pipeline.id:
            raise PipelineNotFound(f"pipeline {pipeline_id} has no risk {risk_id}")
        if risk.acknowledged_at is not None:
            raise ConflictingState(
                f"risk {risk_id} was acknowledged by {risk.acknowledged_by}", "acknowledged"
            )
        acknowledged = events.RiskAcknowledged(
            pipeline_id=pipeline.id,
            ticket=pipeline.ticket_key,
            risk_id=risk.id,
            acknowledged_by=by,
            note=note,
        )
        statement = risks.acknowledge(risk.id, by=by, note=note, now=self.clock.now())
        return await self.engine.go_on(pipeline, acknowledged, statement, wake_failed=False)

    @one_action_at_a_time
    async def feedback(
        self, pipeline_id: int, step_id: int, *, text: str, by: str | None
    ) -> Pipeline:
        """The step's output goes to its history and the step runs again with the feedback;
        the later steps that used its output are marked stale and run again after it."""
        pipeline = await self.engine.get(pipeline_id)
        step = await self._step(pipeline, step_id)
        if step.status not in RESTARTABLE or step.status == StepStatus.STALE:
            raise ConflictingState(f"step {step_id} ({step.phase}) is {step.status}", step.status)
        changes = step_outputs.feedback_restart(
            pipeline_id=pipeline.id,
            step_id=step.id,
            position=step.position,
            attempt=step.attempt,
            text=text[:FEEDBACK_MAX_CHARS],
            given_by=by,
            now=self.clock.now(),
        )
        restarted = self._restarted(pipeline, step, "feedback", feedback=text[:FEEDBACK_MAX_CHARS])
        return await self._restart(pipeline, restarted, changes)

    @one_action_at_a_time
    async def restart_step(self, pipeline_id: int, step_id: int, *, from_here: bool) -> Pipeline:
        """Run one step again from a fresh conversation (and, `from_here`, every later one)."""
        pipeline = await self.engine.get(pipeline_id)
        step = await self._step(pipeline, step_id)
        if step.status not in RESTARTABLE:
            raise ConflictingState(f"step {step_id} ({step.phase}) is {step.status}", step.status)
        changes: list[tuple[str, Params]] = [
            (
                "UPDATE pipeline_steps SET status = 'pending', attempt = attempt + 1,"
                " session_key = NULL, error = NULL, approved_by = NULL, approved_at = NULL,"
                " approval_note = NULL, started_at = NULL, finished_at = NULL WHERE id = ?",
                (step.id,),
            )
        ]
        if from_here:
            changes.append(
                pipelines.later_steps_stale(pipeline.id, step.position, now=self.clock.now())
            )
        reason = "restarted from here" if from_here else "restarted"
        return await self._restart(pipeline, self._restarted(pipeline, step, reason), changes)

    def _restarted(
        self, pipeline: Pipeline, step: Step, reason: str, *, feedback: str | None = None
    ) -> events.StepRestarted:
        return events.StepRestarted(
            pipeline_id=pipeline.id,
            ticket=pipeline.ticket_key,
            step_id=step.id,
            phase=step.phase,
            attempt=step.attempt + 1,
            reason=reason,
            feedback=feedback,
        )

    async def _restart(
        self,
        pipeline: Pipeline,
        restarted: events.StepRestarted,
        changes: list[tuple[str, Params]],
    ) -> Pipeline:
        if pipeline.status in ("completed", "cancelled", "waiting_for_review"):
            raise ConflictingState(f"pipeline {pipeline.id} is {pipeline.status}", pipeline.status)
        await self.engine.tasks.stop(pipeline.id)  # a running step is interrupted first
        return await self.engine.go_on(pipeline, restarted, *changes)
