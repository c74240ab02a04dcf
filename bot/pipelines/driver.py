"""Drives one running pipeline forward: the next step by the gates, its agent run, its verdict.

`PipelineDriver.advance(pipeline_id)` loops while the pipeline's row says `running`: it asks
bot/pipelines/gates.py for the next step (so nothing steps past a gate, whatever path led here),
commits the step as running with `step_started`, runs its agent in the pipeline's worktree, and
commits the verdict with its events (bot/pipelines/recorder.py). A cancellation (a pause, a
shutdown) commits the step as interrupted; its conversation is kept, and the next run of the
same step continues it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bot.agents import AgentContext, AgentRunner, StepResult
from bot.pipelines import gates, prompts
from bot.pipelines.agent_tools import pipeline_tools
from bot.pipelines.events import StepInterrupted, StepStarted, stream_of
from bot.pipelines.outcomes import judge
from bot.pipelines.recorder import PipelineRecorder
from bot.pipelines.states import FailureKind, PipelineStatus, StepStatus
from bot.pipelines.workspace import PipelineWorkspace, Workspace, WorkspaceError
from storage import pipelines, risks, step_outputs, tickets
from storage.pipelines import Pipeline, Step

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineLimits:
    """Dollar caps when neither the pipeline nor its cycle type sets one."""

    pipeline_max_cost_usd: float = 25.0
    step_max_cost_usd: float | None = None  # None: the agent's own max_cost_usd
    repeat_limit: int = 5  # the same tool call this often in a step stops it (kind `loop`)


class PipelineDriver:
    def __init__(
        self,
        *,
        agents: AgentRunner | None,
        workspace: PipelineWorkspace,
        recorder: PipelineRecorder,
        limits: PipelineLimits,
    ) -> None:
        self.agents = agents
        self.workspace = workspace
        self.recorder = recorder
        self.db = recorder.db
        self.clock = recorder.clock
        self.limits = limits

    async def advance(self, pipeline_id: int) -> None:
        """Run steps until the pipeline's row no longer says `running`.

        Each turn commits a change that leaves `running` (a gate holds, a step waits or
        fails, the pipeline ends) or runs a step; the loop then reads the row again, so a
        person who set the pipeline running meanwhile (an answer, a resume) is served by this
        same task rather than by none."""
        while True:
            pipeline = await pipelines.get_pipeline(self.db, pipeline_id)
            if pipeline is None or pipeline.status != PipelineStatus.RUNNING:
                return
            steps = await pipelines.list_steps(self.db, pipeline_id)
            found_risks = await risks.risks_of(self.db, pipeline_id)
            held = gates.blocking_gate(steps, found_risks)
            if held is not None:
                await self.recorder.hold(pipeline, held, steps)
                continue
            step = gates.next_step(steps, found_risks)
            if step is not None:
                await self.run_step(pipeline, step, steps)
            elif pipeline.cycle_type is None and steps:  # a kill came right after triage
                await self.recorder.decide_after_triage(pipeline, steps[0])
            elif all(s.status == StepStatus.COMPLETED for s in steps):
                await self.recorder.all_steps_done(pipeline)
            else:
                await self.recorder.stalled(pipeline, steps)

    async def fail_internal(self, pipeline_id: int, message: str) -> None:
        """The engine itself broke on this pipeline: it stops failed, never stays `running`."""
        pipeline = await pipelines.get_pipeline(self.db, pipeline_id)
        if pipeline is not None and pipeline.status == PipelineStatus.RUNNING:
            await self.recorder.fail(pipeline, None, FailureKind.INTERNAL, message)

    async def run_step(self, pipeline: Pipeline, step: Step, steps: Sequence[Step]) -> bool:
        """Run one step; True when the pipeline goes on to the next one."""
        if self.agents is None:
            message = "the agents are off: set ANTHROPIC_API_KEY and restart, then resume"
            await self.recorder.fail(pipeline, step, FailureKind.SETUP, message)
            return False
        try:
            ticket = await self._ticket_facts(pipeline.ticket_key)
            workspace = await self.workspace.ensure(
                pipeline, ticket.summary, stream_of(pipeline.id)
            )
        except WorkspaceError as error:
            await self.recorder.fail(pipeline, step, FailureKind.SETUP, str(error))
            return False
        session_key = f"pipeline:{pipeline.id}/step:{step.id}/attempt:{step.attempt}"
        await self.recorder.bus.publish(
            stream_of(pipeline.id),
            StepStarted(
                pipeline_id=pipeline.id,
                ticket=pipeline.ticket_key,
                step_id=step.id,
                phase=step.phase,
                agent=step.agent,
                attempt=step.attempt,
            ),
            together_with=[
                pipelines.step_status(
                    step.id, StepStatus.RUNNING, now=self.clock.now(), session_key=session_key
                )
            ],
        )
        try:
            result = await self._run_agent(pipeline, step, steps, workspace, ticket, session_key)
        except asyncio.CancelledError:
            await asyncio.shield(self._interrupted(pipeline, step, "paused or stopped"))
            raise
        except TimeoutError:
            limit = step.time_limit_s
            await self.recorder.fail(
                pipeline, step, FailureKind.TIME_LIMIT, f"the step ran over its {limit}s limit"
            )
            return False
        verdict = judge(result.status, step.gate, reason=result.reason, error=result.error)
        try:  # the pull request phase pushes and opens the PR here: a pause may land in it
            return await self.recorder.record(pipeline, step, workspace, result, verdict)
        except asyncio.CancelledError:
            await asyncio.shield(self._interrupted(pipeline, step, "paused or stopped"))
            raise

    async def _run_agent(
        self,
        pipeline: Pipeline,
        step: Step,
        steps: Sequence[Step],
        workspace: Workspace,
        ticket: prompts.TicketFacts,
        session_key: str,
    ) -> StepResult:
        earlier = await self._earlier_outputs(pipeline.id, step, steps)
        feedback = [
            given.text
            for given in await step_outputs.feedback_of(self.db, step.id)
            if given.attempt == step.attempt
        ]
        context = AgentContext(
            session_key=session_key,
            worktree=workspace.path_of(workspace.primary),
            task=prompts.task_text(step.prompt_template, ticket, earlier, feedback),
            stream=stream_of(pipeline.id),
            repository_context=f"Repository: {workspace.primary.full_name}",
            pipeline_id=pipeline.id,
            step_id=step.id,
            budget_usd=step.max_cost_usd or self.limits.step_max_cost_usd,
            pipeline_budget_usd=pipeline.max_cost_usd or self.limits.pipeline_max_cost_usd,
            repeat_limit=self.limits.repeat_limit,
            sandbox=await self.workspace.sandbox(workspace),
            tool_names=step.tools,
            extra_tools=pipeline_tools(
                db=self.db,
                pipeline_id=pipeline.id,
                ticket_key=pipeline.ticket_key,
                repository_full_name=workspace.primary.full_name,
                installation_id=workspace.primary.installation_id,
                jira=self.recorder.notes.jira,
                github=self.recorder.opener.github,
            ),
        )
        await self.workspace.hold(workspace, pipeline.id)
        assert self.agents is not None  # run_step checked
        try:
            async with asyncio.timeout(step.time_limit_s):
                return await self.agents.run_step(step.agent, context)
        finally:
            await asyncio.shield(self.workspace.release(workspace))

    async def _earlier_outputs(
        self, pipeline_id: int, step: Step, steps: Sequence[Step]
    ) -> list[prompts.EarlierOutput]:
        outputs = await step_outputs.outputs_of(self.db, pipeline_id)
        return [
            prompts.EarlierOutput(s.phase, outputs[s.id].text, outputs[s.id].output)
            for s in steps
            if s.position < step.position and s.id in outputs
        ]

    async def _ticket_facts(self, key: str) -> prompts.TicketFacts:
        ticket = await tickets.get_ticket(self.db, key)
        if ticket is None:
            return prompts.TicketFacts(key, key, "")
        return prompts.TicketFacts(key, ticket.summary, ticket.description or "")

    async def _interrupted(self, pipeline: Pipeline, step: Step, reason: str) -> None:
        event = StepInterrupted(
            pipeline_id=pipeline.id,
            ticket=pipeline.ticket_key,
            step_id=step.id,
            phase=step.phase,
            reason=reason,
        )
        statement = pipelines.step_status(step.id, StepStatus.INTERRUPTED, now=self.clock.now())
        await self.recorder.bus.publish(stream_of(pipeline.id), event, together_with=[statement])
