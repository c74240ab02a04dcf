"""Commits what happened to a pipeline, each change with the event that announces it.

A step's verdict (bot/pipelines/outcomes.py) becomes rows: its output and artifacts, its risk
cards, its cost, its status, the pipeline's status, all in one commit with `step_completed`
(and `risk_identified`, `waiting_for_approval`, `pipeline_failed`...). The pull-request phase
pushes and opens the PR before its step is marked completed, so a crash in between opens it
again idempotently (bot/pipelines/pull_request.py finds the one already there).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from bot.agents import StepResult
from bot.clock import Clock
from bot.events.bus import EventBus
from bot.gitops.runner import GitError
from bot.pipelines import events, outcomes, prompts
from bot.pipelines.gates import Blocked
from bot.pipelines.notes import TicketNotes
from bot.pipelines.outcomes import StepVerdict, Verdict
from bot.pipelines.pull_request import (
    PullRequestFailed,
    PullRequestOpener,
    gather_facts,
    pull_request_body,
)
from bot.pipelines.states import FailureKind, PipelineStatus, StepStatus
from bot.pipelines.workspace import PipelineWorkspace, Workspace
from bot.worktrees.records import WorktreeError
from storage import claude_sessions, cycle_types, pipelines, risks, step_outputs, tool_calls
from storage.database import Database, Params
from storage.pipelines import Pipeline, Step

log = logging.getLogger(__name__)

LOG_EXCERPT_CHARS = 1500


class PipelineRecorder:
    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        clock: Clock,
        workspace: PipelineWorkspace,
        opener: PullRequestOpener,
        notes: TicketNotes,
    ) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.workspace = workspace
        self.opener = opener
        self.notes = notes

    async def record(
        self,
        pipeline: Pipeline,
        step: Step,
        workspace: Workspace,
        result: StepResult,
        verdict: StepVerdict,
    ) -> bool:
        """Commit a finished agent run's verdict; True when the pipeline goes on."""
        cost = pipelines.add_cost(pipeline.id, step.id, result.cost_usd)
        if verdict.verdict == Verdict.FAILED:
            kind = verdict.kind or FailureKind.AGENT
            await self.fail(pipeline, step, kind, verdict.message, result=result, extra=cost)
            return False
        if verdict.verdict == Verdict.NEEDS_INPUT:
            await self._waiting_for_input(pipeline, step, result, cost)
            return False
        output = result.output if isinstance(result.output, dict) else None
        text = prompts.with_revision_note(
            outcomes.output_text(result.final_text, output), step.attempt
        )
        artifacts = await self._artifacts(pipeline, step, workspace, output, text)
        if artifacts is None:
            return False
        changes = [
            *cost,
            step_outputs.save_output(step.id, step.attempt, text, output, now=self.clock.now()),
            *artifacts,
        ]
        new_risks = outcomes.reported_risks(output)
        if isinstance(output, dict) and "risks" in output:
            changes.extend(self._risk_cards(pipeline, step, new_risks))
        status = StepStatus.COMPLETED
        if verdict.verdict == Verdict.NEEDS_APPROVAL:
            status = StepStatus.WAITING_FOR_APPROVAL
        changes.append(pipelines.step_status(step.id, status, now=self.clock.now()))
        await self.bus.publish(
            events.stream_of(pipeline.id),
            events.StepCompleted(
                pipeline_id=pipeline.id,
                ticket=pipeline.ticket_key,
                step_id=step.id,
                phase=step.phase,
                attempt=step.attempt,
                cost_usd=round(result.step_cost_usd, 6),
                outcome=status.value,
            ),
            together_with=changes,
        )
        if new_risks:
            await self._announce_risks(pipeline, step)
        if pipeline.cycle_type is None:
            return await self._decide_cycle_type(pipeline, step, output)
        return True

    async def _artifacts(
        self, pipeline: Pipeline, step: Step, workspace: Workspace, output: Any, text: str
    ) -> list[tuple[str, Params]] | None:
        """The rows of the step's artifact: its text, or (the pull request phase) the PRs
        opened; None when opening failed (the pipeline is marked failed)."""
        if step.artifact_kind == "pr_link":
            return await self._open_pull_requests(pipeline, step, workspace, output)
        if step.artifact_kind is None:
            return []
        return [
            step_outputs.add_artifact(
                step.id, pipeline.id, step.attempt, step.artifact_kind, text, now=self.clock.now()
            )
        ]

    async def decide_after_triage(self, pipeline: Pipeline, triage: Step) -> bool:
        """A stop came between the triage step's commit and its choice of the cycle type:
        decide again from the triage step's stored report."""
        outputs = await step_outputs.outputs_of(self.db, pipeline.id)
        stored = outputs.get(triage.id)
        return await self._decide_cycle_type(pipeline, triage, stored.output if stored else None)

    async def stalled(self, pipeline: Pipeline, steps: Sequence[Step]) -> None:
        """No step can run and not all are done, yet the pipeline was set running (a resume,
        a gate released on a failed pipeline): it goes back to what its steps say."""
        for step in steps:
            if step.status == StepStatus.RUNNING:  # no task runs it: it continues later
                await self.db.write(
                    *pipelines.step_status(step.id, StepStatus.INTERRUPTED, now=self.clock.now())
                )
                return
            if step.status == StepStatus.WAITING_FOR_INPUT:
                event = events.PipelineWaitingForInput(
                    pipeline_id=pipeline.id,
                    ticket=pipeline.ticket_key,
                    step_id=step.id,
                    phase=step.phase,
                )
                await self._leave_running(pipeline, PipelineStatus.WAITING_FOR_INPUT, event)
                return
        failed = next((s for s in steps if s.status == StepStatus.FAILED), None)
        message = failed.error if failed and failed.error else "a step cannot go on"
        await self.fail(pipeline, failed, FailureKind.AGENT, message)

    def _risk_cards(
        self, pipeline: Pipeline, step: Step, reported: list[outcomes.ReportedRisk]
    ) -> list[tuple[str, Params]]:
        """A rerun's cards (none, maybe) replace the ones of its earlier attempt not yet
        acknowledged."""
        return [
            ("DELETE FROM risks WHERE step_id = ? AND acknowledged_at IS NULL", (step.id,)),
            *(
                risks.add_risk(
                    pipeline.id, step.id, title=risk.title, severity=risk.severity,
                    detail=risk.detail, now=self.clock.now(),
                )
                for risk in reported
            ),
        ]  # fmt: skip

    async def _decide_cycle_type(self, pipeline: Pipeline, step: Step, output: Any) -> bool:
        """The triage step of a pipeline no rule matched chose the cycle type: its phases
        follow the triage step, and the pipeline starts for real."""
        name = output.get("cycle_type") if isinstance(output, dict) else None
        chosen = await cycle_types.get_cycle_type(self.db, name) if isinstance(name, str) else None
        if chosen is None:
            await self.fail(
                pipeline,
                step,
                FailureKind.AGENT,
                f"the triage agent chose no known cycle type ({name!r})",
            )
            return False
        summary = str(output.get("summary") or "").strip() if isinstance(output, dict) else ""
        reason = f"triage agent: {summary}" if summary else "triage agent"
        steps = await pipelines.set_cycle_type(
            self.db, pipeline.id, chosen, reason=reason[:500], max_cost_usd=chosen.max_cost_usd,
            now=self.clock.now(), keep_done_triage=True,
        )  # fmt: skip
        decided = await pipelines.get_pipeline(self.db, pipeline.id)
        if decided is None:
            return False
        await self.bus.publish(events.stream_of(pipeline.id), events.started(decided, steps))
        return True

    async def _announce_risks(self, pipeline: Pipeline, step: Step) -> None:
        for risk in await risks.risks_of(self.db, pipeline.id):
            if risk.step_id == step.id and risk.acknowledged_at is None:
                await self.bus.publish(
                    events.stream_of(pipeline.id),
                    events.RiskIdentified(
                        pipeline_id=pipeline.id,
                        ticket=pipeline.ticket_key,
                        risk_id=risk.id,
                        title=risk.title,
                        severity=risk.severity,
                        step_id=step.id,
                    ),
                )

    async def _waiting_for_input(
        self, pipeline: Pipeline, step: Step, result: StepResult, cost: list[tuple[str, Params]]
    ) -> None:
        event = events.PipelineWaitingForInput(
            pipeline_id=pipeline.id,
            ticket=pipeline.ticket_key,
            step_id=step.id,
            phase=step.phase,
            clarification_id=result.clarification_id,
        )
        waiting = pipelines.step_status(step.id, StepStatus.WAITING_FOR_INPUT, now=self.clock.now())
        await self._leave_running(pipeline, PipelineStatus.WAITING_FOR_INPUT, event, *cost, waiting)
        if result.clarification_id is not None:
            await self.notes.clarification_asked(pipeline, result.clarification_id)

    async def _open_pull_requests(
        self, pipeline: Pipeline, step: Step, workspace: Workspace, output: Any
    ) -> list[tuple[str, Params]] | None:
        """Push each repository's branch and open its PR; the rows to commit, or None when it
        failed (the pipeline is marked failed)."""
        facts = await gather_facts(self.db, pipeline, self.notes.ticket_url(pipeline.ticket_key))
        summary = await self.notes.summary_of(pipeline.ticket_key)
        title, agent_body = outcomes.pull_request_text(output, pipeline.ticket_key, summary)
        changes: list[tuple[str, Params]] = []
        for repository in workspace.repositories:
            try:
                await self.workspace.push(
                    workspace, repository, f"{pipeline.ticket_key}: {title}"[:200]
                )
                opened = await self.opener.open(
                    repository,
                    branch=pipeline.branch or "",
                    title=title,
                    body=pull_request_body(agent_body, facts),
                    draft=not facts.tests_passed,
                )
            except (PullRequestFailed, WorktreeError, GitError) as error:
                await self.fail(pipeline, step, FailureKind.GITHUB, str(error))
                return None
            now = self.clock.now()
            changes.append(
                pipelines.record_pull_request(
                    pipeline.id, opened.repository, opened.number, opened.url,
                    draft=opened.draft, now=now,
                )
            )  # fmt: skip
            changes.append(
                step_outputs.add_artifact(
                    step.id, pipeline.id, step.attempt, "pr_link", title, url=opened.url, now=now
                )
            )
        return changes

    async def hold(self, pipeline: Pipeline, held: Blocked, steps: Sequence[Step]) -> None:
        """A gate holds: the pipeline waits for a person, and says for what."""
        step = next(s for s in steps if s.id == held.step_id)
        event = events.WaitingForApproval(
            pipeline_id=pipeline.id,
            ticket=pipeline.ticket_key,
            step_id=step.id,
            phase=step.phase,
            gate=held.gate.value,
            detail=held.detail,
        )
        await self._leave_running(pipeline, PipelineStatus.WAITING_FOR_APPROVAL, event)

    async def all_steps_done(self, pipeline: Pipeline) -> None:
        """Every step completed: wait for the PR's review, or (no PR, a spike) complete."""
        opened = await pipelines.pull_requests_of(self.db, pipeline.id)
        if opened:
            first = opened[0]
            review = events.PipelineWaitingForReview(
                pipeline_id=pipeline.id,
                ticket=pipeline.ticket_key,
                repository=first.repository,
                number=first.number,
                url=first.url,
            )
            await self._leave_running(pipeline, PipelineStatus.WAITING_FOR_REVIEW, review)
            await self.notes.pull_requests_opened(pipeline, opened)
            return
        completed = events.PipelineCompleted(pipeline_id=pipeline.id, ticket=pipeline.ticket_key)
        await self._leave_running(pipeline, PipelineStatus.COMPLETED, completed)

    async def _leave_running(
        self,
        pipeline: Pipeline,
        status: PipelineStatus,
        event: events.PipelineEvent,
        *changes: tuple[str, Params],
    ) -> None:
        """The engine's own move out of `running` (a wait, the end), committed with its event
        and `changes`; a pause or cancel a person committed meanwhile stands."""
        moved = pipelines.pipeline_status(
            pipeline.id,
            status,
            now=self.clock.now(),
            finished=status.ended,
            only_from=PipelineStatus.RUNNING,
        )
        await self.bus.publish(
            events.stream_of(pipeline.id), event, together_with=[*changes, moved]
        )

    async def fail(
        self,
        pipeline: Pipeline,
        step: Step | None,
        kind: FailureKind,
        message: str,
        *,
        result: StepResult | None = None,
        extra: Sequence[tuple[str, Params]] = (),
    ) -> None:
        """The pipeline stops failed, with the phase, the kind, the last tool call and an
        excerpt of what the agent last said, on its row, in its event and on the ticket."""
        last_call = await self._last_tool_call(step)
        excerpt = (result.final_text if result is not None else "")[-LOG_EXCERPT_CHARS:] or None
        detail = {"last_tool_call": last_call, "log_excerpt": excerpt}
        now = self.clock.now()
        changes = [*extra]
        if step is not None:
            changes.append(
                pipelines.step_status(step.id, StepStatus.FAILED, now=now, error=message)
            )
        changes.append(
            pipelines.pipeline_failure(
                pipeline.id,
                kind=kind.value,
                message=message,
                phase=step.phase if step else None,
                detail=detail,
                now=now,
            )
        )
        await self.bus.publish(
            events.stream_of(pipeline.id),
            events.PipelineFailed(
                pipeline_id=pipeline.id,
                ticket=pipeline.ticket_key,
                kind=kind.value,
                message=message,
                error=message,
                phase=step.phase if step else None,
                step_id=step.id if step else None,
                last_tool_call=last_call,
                log_excerpt=excerpt,
            ),
            together_with=changes,
        )
        log.warning(
            "pipeline %d (%s) failed: %s: %s", pipeline.id, pipeline.ticket_key, kind, message
        )
        await self.notes.failed(pipeline, step.phase if step else None, kind.value, message)

    async def _last_tool_call(self, step: Step | None) -> dict[str, Any] | None:
        if step is None:
            return None
        fresh = await pipelines.get_step(self.db, step.id)  # the session key set when it ran
        if fresh is None or fresh.session_key is None:
            return None
        session = await claude_sessions.find(self.db, fresh.session_key)
        if session is None:
            return None
        calls = await tool_calls.for_session(self.db, session.id)
        if not calls:
            return None
        last = calls[-1]
        return {"tool": last.tool, "arguments": last.arguments, "error": last.error}
