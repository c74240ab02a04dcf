"""The pipelines as the rest of the app sees them: built once by the composition root.

`build_pipelines` puts the engine's parts together (workspace, PR opener, ticket notes,
recorder, driver, tasks, engine, actions, creation). `Pipelines` is what routes and webhook
handlers call: the actions of bot/pipelines/engine.py and actions.py, the answer to a
clarification that resumes its step, and a pipeline PR closed or merged on GitHub.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.agents.runner import AgentRunner
from bot.claims import WorkClaims
from bot.clock import Clock
from bot.config import Settings
from bot.events.bus import EventBus
from bot.github.connection import GitHubConnection
from bot.jira.client import JiraClient
from bot.pipelines import events
from bot.pipelines.actions import PipelineActions
from bot.pipelines.creation import PipelineCreation
from bot.pipelines.driver import PipelineDriver, PipelineLimits
from bot.pipelines.engine import PipelineEngine, PipelineTasks
from bot.pipelines.notes import TicketNotes
from bot.pipelines.pull_request import PullRequestOpener
from bot.pipelines.recorder import PipelineRecorder
from bot.pipelines.states import PipelineStatus, StepStatus
from bot.pipelines.workspace import PipelineWorkspace
from bot.worktrees.manager import WorktreeManager
from storage import clarifications, pipelines
from storage.clarifications import Clarification, ClarificationStatus
from storage.database import Database
from storage.pipelines import Pipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pipelines:
    engine: PipelineEngine
    actions: PipelineActions
    creation: PipelineCreation
    workspace: PipelineWorkspace

    async def clarification_answered(self, answered: Clarification) -> Pipeline | None:
        """The step that asked continues its conversation with the answer (the answer is the
        result of its request_clarification call); None when no waiting pipeline asked it."""
        if answered.step_id is None:
            return None
        step = await pipelines.get_step(self.engine.db, answered.step_id)
        if step is None or step.status != StepStatus.WAITING_FOR_INPUT:
            return None
        pipeline = await self.engine.get(step.pipeline_id)
        if pipeline.status != PipelineStatus.WAITING_FOR_INPUT:
            return None
        continued = pipelines.step_status(
            step.id, StepStatus.INTERRUPTED, now=self.engine.clock.now()
        )
        resumed = events.PipelineResumed(
            pipeline_id=pipeline.id, ticket=pipeline.ticket_key, reason="clarification answered"
        )
        return await self.engine.go_on(pipeline, resumed, continued)

    async def resume_answered(self) -> int:
        """At start-up: pipelines whose question was answered before a stop go on."""
        waiting = await pipelines.list_pipelines(
            self.engine.db, statuses=[PipelineStatus.WAITING_FOR_INPUT], limit=10_000
        )
        resumed = 0
        for pipeline in waiting:
            asked = await clarifications.for_pipeline(self.engine.db, pipeline.id)
            still_open = {c.step_id for c in asked if c.status == ClarificationStatus.OPEN}
            for question in asked:  # a step with a question still open keeps waiting
                answered = question.status == ClarificationStatus.ANSWERED
                if answered and question.step_id not in still_open:
                    resumed += await self.clarification_answered(question) is not None
        return resumed

    async def pull_request_closed(self, repository: str, number: int, *, merged: bool) -> None:
        """A pipeline's PR merged completes it (its worktrees removed) once every PR it opened
        is merged; one closed unmerged cancels it. A PR no pipeline opened is none of ours."""
        db, clock = self.engine.db, self.engine.clock
        opened = await pipelines.pipeline_of_pull_request(db, repository, number)
        if opened is None:
            return
        pipeline = await self.engine.get(opened.pipeline_id)
        state = "merged" if merged else "closed"
        changes = [pipelines.pull_request_state(repository, number, state)]
        others = [
            pull
            for pull in await pipelines.pull_requests_of(db, pipeline.id)
            if (pull.repository, pull.number) != (repository, number) and pull.state != "merged"
        ]
        if PipelineStatus(pipeline.status).ended or (merged and others):
            await db.write(*changes[0])  # one repository of several merged: the rest to come
            return
        await self.engine.tasks.stop(pipeline.id)
        event: events.PipelineEvent
        if merged:
            status = PipelineStatus.COMPLETED
            event = events.PipelineCompleted(
                pipeline_id=pipeline.id, ticket=pipeline.ticket_key, pr_url=opened.url
            )
        else:
            status = PipelineStatus.CANCELLED
            event = events.PipelineCancelled(
                pipeline_id=pipeline.id,
                ticket=pipeline.ticket_key,
                reason=f"{repository}#{number} was closed without merging",
            )
        changes.append(
            pipelines.pipeline_status(pipeline.id, status, now=clock.now(), finished=True)
        )
        await self.engine.bus.publish(events.stream_of(pipeline.id), event, together_with=changes)
        try:
            await self.workspace.remove(pipeline, f"pull request {state}", merged=merged)
        except Exception as error:  # the sweeps remove it later; the pipeline is done
            log.warning("pipeline %d: its worktrees stay for now: %s", pipeline.id, error)


def build_pipelines(
    settings: Settings,
    *,
    db: Database,
    bus: EventBus,
    clock: Clock,
    agents: AgentRunner | None,
    worktrees: WorktreeManager,
    github: GitHubConnection,
    jira: JiraClient | None,
    claims: WorkClaims,
) -> Pipelines:
    workspace = PipelineWorkspace(db=db, worktrees=worktrees)
    notes = TicketNotes(
        db=db,
        jira=jira,
        jira_url=settings.jira_url,
        done_transition=settings.pipeline_pr_transition,
    )
    recorder = PipelineRecorder(
        db=db,
        bus=bus,
        clock=clock,
        workspace=workspace,
        opener=PullRequestOpener(github),
        notes=notes,
    )
    limits = PipelineLimits(
        pipeline_max_cost_usd=settings.pipeline_max_usd,
        step_max_cost_usd=settings.pipeline_step_max_usd,
        repeat_limit=settings.pipeline_repeat_limit,
    )
    driver = PipelineDriver(agents=agents, workspace=workspace, recorder=recorder, limits=limits)
    tasks = PipelineTasks(driver, claims, runs_here=settings.role.works)
    engine = PipelineEngine(db=db, bus=bus, clock=clock, tasks=tasks)
    return Pipelines(
        engine=engine,
        actions=PipelineActions(engine),
        creation=PipelineCreation(db=db, clock=clock, engine=engine),
        workspace=workspace,
    )
