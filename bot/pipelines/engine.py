"""The pipeline engine: what people (and webhooks) can do to a pipeline, and its running tasks.

Each action checks the pipeline's state (a wrong one raises `ConflictingState`, naming it: the
API's 409), commits the change with its event, and then starts or cancels the pipeline's task.
A task runs `PipelineDriver.advance` while the row says `running`; there is at most one per
pipeline, and none for a pipeline whose row says otherwise. At start-up `recover()` marks steps
a stopped process left running as interrupted and starts a task for every running pipeline, so
no row says `running` without a live task after start-up.

With instances sharing a database, a task first claims its pipeline (bot/claims.py): one
instance at a time advances it, under a lease the heartbeat renews. `recover()` at start-up,
and `adopt()` every half lease after it, take only running pipelines whose lease is free or
has run out (their instance died): each such pipeline is resumed once, on one instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from bot.claims import WorkClaims
from bot.clock import Clock
from bot.events.bus import EventBus
from bot.pipelines import events
from bot.pipelines.driver import PipelineDriver
from bot.pipelines.states import PipelineStatus, StepStatus
from bot.tasks import stop_tasks
from storage import claims as claims_storage
from storage import clarifications, pipelines
from storage.clarifications import ClarificationStatus
from storage.database import Database, Params
from storage.pipelines import Pipeline

log = logging.getLogger(__name__)

ACTIVE = frozenset(
    {
        PipelineStatus.RUNNING,
        PipelineStatus.WAITING_FOR_INPUT,
        PipelineStatus.WAITING_FOR_APPROVAL,
    }
)


class PipelineNotFound(LookupError):
    """No pipeline (or step, or risk) with that id."""


class ConflictingState(Exception):
    """The action does not fit the pipeline's (or step's) current state."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


P = ParamSpec("P")
T = TypeVar("T")


def one_action_at_a_time(
    method: Callable[Concatenate[Any, int, P], Awaitable[T]],
) -> Callable[Concatenate[Any, int, P], Awaitable[T]]:
    """A person's action on a pipeline (its first argument after self is the pipeline id)
    runs alone among the actions on that pipeline: two approvals or starts at once are one
    and a 409, never two events."""

    @functools.wraps(method)
    async def serialized(owner: Any, pipeline_id: int, *args: P.args, **kwargs: P.kwargs) -> T:
        engine: PipelineEngine = getattr(owner, "engine", owner)
        async with engine.acting(pipeline_id):
            return await method(owner, pipeline_id, *args, **kwargs)

    return serialized


class PipelineTasks:
    """The running task of each pipeline, at most one each (and one instance at a time).
    Without `runs_here` (a web instance, bot/roles.py) none: a worker adopts the pipelines a
    web instance set running (bot/pipelines/adoption.py)."""

    def __init__(
        self, driver: PipelineDriver, claims: WorkClaims, *, runs_here: bool = True
    ) -> None:
        self.driver = driver
        self.claims = claims
        self.runs_here = runs_here
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def spawn(self, pipeline_id: int) -> None:
        if not self.runs_here:
            return
        running = self._tasks.get(pipeline_id)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self._advance(pipeline_id), name=f"pipeline-{pipeline_id}")
        self._tasks[pipeline_id] = task

    async def _advance(self, pipeline_id: int) -> None:
        claims, db = self.claims, self.driver.db
        try:
            # An instance older than the schema leaves it to a newer one (it adopts it).
            if not await claims.may_claim() or not await claims_storage.claim_one(
                db, "pipelines", pipeline_id, claims.lease(), where="status = 'running'"
            ):
                log.info("pipeline %d: advanced by another instance, not here", pipeline_id)
                return
            try:
                await self.driver.advance(pipeline_id)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.exception("pipeline %d: the engine failed", pipeline_id)
                await self.driver.fail_internal(pipeline_id, f"{type(error).__name__}: {error}")
            finally:
                # Another instance may take it at once (a pause or a stop ended the task here).
                await claims_storage.release(db, "pipelines", pipeline_id, claims.instance)
        finally:
            if self._tasks.get(pipeline_id) is asyncio.current_task():
                del self._tasks[pipeline_id]

    async def stop(self, pipeline_id: int) -> None:
        """Cancel the pipeline's task and wait for it to record its interrupted step."""
        task = self._tasks.pop(pipeline_id, None)
        if task is not None:
            await stop_tasks([task])

    def running_ids(self) -> list[int]:
        """The pipelines with a live task here."""
        return [pipeline_id for pipeline_id, task in self._tasks.items() if not task.done()]

    def running(self, pipeline_id: int) -> bool:
        task = self._tasks.get(pipeline_id)
        return task is not None and not task.done()

    async def wait(self, pipeline_id: int) -> None:
        """Until the pipeline's task ends (tests, the bench)."""
        task = self._tasks.get(pipeline_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def close(self) -> None:
        for pipeline_id in list(self._tasks):
            await self.stop(pipeline_id)


class PipelineEngine:
    def __init__(self, *, db: Database, bus: EventBus, clock: Clock, tasks: PipelineTasks) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.tasks = tasks
        self._acting: dict[int, asyncio.Lock] = {}

    def acting(self, pipeline_id: int) -> asyncio.Lock:
        """The lock a person's action on the pipeline holds (one_action_at_a_time)."""
        return self._acting.setdefault(pipeline_id, asyncio.Lock())

    async def get(self, pipeline_id: int) -> Pipeline:
        pipeline = await pipelines.get_pipeline(self.db, pipeline_id)
        if pipeline is None:
            raise PipelineNotFound(f"no pipeline {pipeline_id}")
        return pipeline

    async def _publish(
        self, pipeline: Pipeline, event: events.PipelineEvent, *changes: tuple[str, Params]
    ) -> None:
        await self.bus.publish(events.stream_of(pipeline.id), event, together_with=changes)

    def _running(self, pipeline: Pipeline) -> tuple[str, Params]:
        return pipelines.pipeline_status(pipeline.id, PipelineStatus.RUNNING, now=self.clock.now())

    @one_action_at_a_time
    async def start(self, pipeline_id: int) -> Pipeline:
        pipeline = await self.get(pipeline_id)
        if pipeline.status != PipelineStatus.CREATED:
            raise ConflictingState(f"pipeline {pipeline_id} is {pipeline.status}", pipeline.status)
        steps = await pipelines.list_steps(self.db, pipeline_id)
        if not steps:
            raise ConflictingState(f"pipeline {pipeline_id} has no steps yet", pipeline.status)
        # Without a cycle type (no rule matched) the lone triage step runs first and decides
        # it; pipeline_started comes again then, with the cycle type and all its phases.
        await self._publish(pipeline, events.started(pipeline, steps), self._running(pipeline))
        self.tasks.spawn(pipeline_id)
        return await self.get(pipeline_id)

    @one_action_at_a_time
    async def pause(self, pipeline_id: int, reason: str | None = None) -> Pipeline:
        pipeline = await self.get(pipeline_id)
        if pipeline.status not in ACTIVE:
            raise ConflictingState(f"pipeline {pipeline_id} is {pipeline.status}", pipeline.status)
        paused = pipelines.pipeline_status(pipeline_id, PipelineStatus.PAUSED, now=self.clock.now())
        await self._publish(
            pipeline,
            events.PipelinePaused(
                pipeline_id=pipeline.id, ticket=pipeline.ticket_key, reason=reason
            ),
            paused,
        )
        await self.tasks.stop(pipeline_id)  # the running step commits itself interrupted
        return await self.get(pipeline_id)

    @one_action_at_a_time
    async def resume(
        self,
        pipeline_id: int,
        *,
        max_cost_usd: float | None = None,
        step_max_cost_usd: float | None = None,
    ) -> Pipeline:
        """Go on after a pause, or after a failure (from the failed step, same conversation),
        with new dollar caps when given: the pipeline's, and the failed step's (a budget
        failure goes on after a raise)."""
        pipeline = await self.get(pipeline_id)
        if pipeline.status not in (PipelineStatus.PAUSED, PipelineStatus.FAILED):
            raise ConflictingState(f"pipeline {pipeline_id} is {pipeline.status}", pipeline.status)
        changes = [self._running(pipeline), pipelines.clear_failure(pipeline_id)]
        if max_cost_usd is not None:
            changes.append(pipelines.set_max_cost(pipeline_id, max_cost_usd))
        if step_max_cost_usd is not None:
            changes.append(pipelines.set_failed_steps_max_cost(pipeline_id, step_max_cost_usd))
        asked = await clarifications.for_pipeline(self.db, pipeline_id)
        waiting_on = {c.step_id for c in asked if c.status == ClarificationStatus.OPEN}
        for step in await pipelines.list_steps(self.db, pipeline_id):
            answered = step.status == StepStatus.WAITING_FOR_INPUT and step.id not in waiting_on
            if step.status in (StepStatus.FAILED, StepStatus.RUNNING) or answered:
                changes.append(
                    pipelines.step_status(step.id, StepStatus.INTERRUPTED, now=self.clock.now())
                )
        resumed = events.PipelineResumed(pipeline_id=pipeline.id, ticket=pipeline.ticket_key)
        await self._publish(pipeline, resumed, *changes)
        self.tasks.spawn(pipeline_id)
        return await self.get(pipeline_id)

    @one_action_at_a_time
    async def cancel(self, pipeline_id: int, reason: str | None = None) -> Pipeline:
        pipeline = await self.get(pipeline_id)
        if pipeline.status in (PipelineStatus.COMPLETED, PipelineStatus.CANCELLED):
            raise ConflictingState(f"pipeline {pipeline_id} is {pipeline.status}", pipeline.status)
        cancelled = pipelines.pipeline_status(
            pipeline_id, PipelineStatus.CANCELLED, now=self.clock.now(), finished=True
        )
        event = events.PipelineCancelled(
            pipeline_id=pipeline.id, ticket=pipeline.ticket_key, reason=reason
        )
        await self._publish(pipeline, event, cancelled)
        await self.tasks.stop(pipeline_id)
        return await self.get(pipeline_id)

    async def go_on(
        self,
        pipeline: Pipeline,
        event: events.PipelineEvent,
        *changes: tuple[str, Params],
        wake_failed: bool = True,
    ) -> Pipeline:
        """Commit a person's release of a gate or a restart, and run again unless paused (or,
        without `wake_failed`, failed: a gate released on a failed pipeline waits for its
        resume)."""
        waking = {
            PipelineStatus.WAITING_FOR_APPROVAL,
            PipelineStatus.WAITING_FOR_INPUT,
            PipelineStatus.RUNNING,
        }
        if wake_failed:
            waking.add(PipelineStatus.FAILED)
        if pipeline.status in waking:
            changes = (*changes, self._running(pipeline), pipelines.clear_failure(pipeline.id))
        await self._publish(pipeline, event, *changes)
        fresh = await self.get(pipeline.id)
        if fresh.status == PipelineStatus.RUNNING:
            self.tasks.spawn(pipeline.id)
        return fresh

    async def recover(self) -> int:
        """At start-up: steps a stopped process left running are interrupted, and every
        running pipeline gets its task back: on a database other instances share, those whose
        lease is free, lapsed or this instance's own. Returns how many were resumed."""
        resumed = await self.adopt(at_start=True)
        if resumed:
            log.info("resuming %d pipelines left running by the last stop", resumed)
        return resumed

    async def run(self) -> None:
        """Every half lease: take over the running pipelines whose instance stopped renewing
        its lease (it died), until cancelled."""
        claims = self.tasks.claims
        while True:
            await self.clock.sleep(claims.lease_s / 2)
            try:
                adopted = await self.adopt()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pipelines: taking over lapsed ones failed; next round retries")
                continue
            if adopted:
                log.info("took over %d pipelines whose instance stopped", adopted)

    async def adopt(self, *, at_start: bool = False) -> int:
        """Claim the running pipelines without a live lease (or, at the start of a SQLite
        file's one process, all of them) and resume those with no task here: their running
        steps are interrupted, then their tasks started. How many were resumed."""
        claims = self.tasks.claims
        if not await claims.may_claim():
            return 0
        claimed = await claims_storage.claim_many(
            self.db,
            "pipelines",
            claims.lease(),
            where="status = ?",
            params=(PipelineStatus.RUNNING,),
            limit=10_000,
            held_too=at_start and not claims.shared,
        )
        resumed = [pid for pid in claimed if not self.tasks.running(pid)]
        for pipeline_id in resumed:
            await self._resume_claimed(await self.get(pipeline_id))
        return len(resumed)

    async def _resume_claimed(self, pipeline: Pipeline) -> None:
        """A claimed running pipeline without a task here: what its step was doing when its
        process stopped is interrupted, and its task started."""
        for step in await pipelines.list_steps(self.db, pipeline.id):
            if step.status == StepStatus.RUNNING:
                await self._publish(
                    pipeline,
                    events.StepInterrupted(
                        pipeline_id=pipeline.id,
                        ticket=pipeline.ticket_key,
                        step_id=step.id,
                        phase=step.phase,
                        reason="the process stopped during the step",
                    ),
                    pipelines.step_status(step.id, StepStatus.INTERRUPTED, now=self.clock.now()),
                )
        self.tasks.spawn(pipeline.id)

    async def close(self) -> None:
        await self.tasks.close()
