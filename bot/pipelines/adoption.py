"""A worker's watch over the pipelines' rows (bot/roles.py): what a web instance changed.

A web instance's API starts, resumes, pauses and cancels pipelines by committing their rows;
it runs no pipeline task (`PipelineTasks.runs_here` is off there), and its in-process wake-up
cannot reach a worker. So every `WORKER_POLL_INTERVAL` a worker gives a task to each pipeline
whose row says `running` and that has none here, and stops its tasks whose pipeline no longer
says `running` (paused or cancelled elsewhere): the step commits itself interrupted, as a pause
on the same process does. On the one-process role (`all`) the actions start and stop the tasks
themselves, and this does not run.

With several workers a running pipeline must be taken by one of them alone: that is the claim
with a lease of issue 13's `pg-claims` part; `adopt_once` is where it plugs in.
"""

from __future__ import annotations

import logging

from bot.pipelines.engine import PipelineEngine
from bot.pipelines.states import PipelineStatus
from storage import pipelines

log = logging.getLogger(__name__)

ADOPT_LIMIT = 10_000


class PipelineAdoption:
    def __init__(self, engine: PipelineEngine, *, every_s: float | None) -> None:
        self.engine = engine
        self.every_s = every_s or 1.0

    async def adopt_once(self) -> tuple[int, int]:
        """One look: how many pipelines got a task here, and how many tasks were stopped."""
        engine = self.engine
        running = await pipelines.list_pipelines(
            engine.db, statuses=[PipelineStatus.RUNNING], limit=ADOPT_LIMIT
        )
        running_ids = {pipeline.id for pipeline in running}
        stopped = 0
        for pipeline_id in engine.tasks.running_ids():
            if pipeline_id not in running_ids:
                log.info(
                    "pipeline %d: no longer running (changed elsewhere): stopping", pipeline_id
                )
                await engine.tasks.stop(pipeline_id)
                stopped += 1
        adopted = 0
        for pipeline_id in sorted(running_ids):
            if not engine.tasks.running(pipeline_id):
                log.info("pipeline %d: running with no task here: taking it", pipeline_id)
                engine.tasks.spawn(pipeline_id)
                adopted += 1
        return adopted, stopped

    async def run(self) -> None:
        """Look every `every_s` until cancelled; a failed look is logged and tried again."""
        while True:
            try:
                await self.adopt_once()
            except Exception:
                log.exception("pipelines: looking for work failed; trying again")
            await self.engine.clock.sleep(self.every_s)
