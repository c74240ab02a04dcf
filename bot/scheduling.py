"""The one scheduler for periodic jobs, on the injected clock (docs/design.md, Layers).

Housekeeping (event and token pruning), the worktree sweeps and the JIRA scheduled sync are
registered here by the app factory's contexts: a name, an interval, and whether the first run
is at once or one interval in. Each job runs in a loop of its own, so two runs of one job never
overlap; runs missed while a run was slow (or the process was stopped) are coalesced into one;
an error is logged and the job keeps its schedule. Everything waits on the injected `Clock`, so
a test moves a `ManualClock` and sees the runs without sleeping.

APScheduler did this for the JIRA sync alone before; it reads the wall clock and cannot take
an injected one, so its job could not be driven by a test's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from bot.clock import Clock
from bot.tasks import stop_tasks

log = logging.getLogger(__name__)

JobFunction = Callable[[], Awaitable[object]]
Exclusive = Callable[[str], contextlib.AbstractAsyncContextManager[bool]]


@contextlib.asynccontextmanager
async def _always_mine(name: str) -> AsyncIterator[bool]:
    yield True


def next_due(last_due: float, every_s: float, now: float) -> float:
    """The first time on the job's grid (`last_due` + k * `every_s`, k >= 1) after `now`: the
    runs whose times passed while the last one ran are coalesced into none."""
    missed = max(0, math.floor((now - last_due) / every_s))
    return last_due + every_s * (missed + 1)


@dataclass(slots=True)
class ScheduledJob:
    """One registered job and what the scheduler knows of its runs."""

    name: str
    every_s: float
    run_at_start: bool
    function: JobFunction
    runs: int = 0
    failures: int = 0
    skipped: int = 0  # runs another instance had (Scheduler's `exclusive`)
    lock_name: str = ""  # what `exclusive` is asked for: the job's name unless given
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Scheduler:
    """Runs registered jobs at their interval on `clock` until stopped."""

    def __init__(self, clock: Clock, *, exclusive: Exclusive | None = None) -> None:
        self.clock = clock
        # `Database.exclusive`: with instances sharing a PostgreSQL database, a run is skipped
        # while another instance runs the same job (one instance at a time)
        self._exclusive = exclusive or _always_mine
        self._jobs: dict[str, ScheduledJob] = {}

    def add(
        self,
        name: str,
        function: JobFunction,
        *,
        every_s: float,
        run_at_start: bool = False,
        lock_name: str | None = None,
    ) -> ScheduledJob:
        """Register and start a job; a name already registered is refused (one job per name).
        `lock_name` is what runs one at a time across instances (the name by default; a job on
        each instance's own disk names its instance)."""
        if every_s <= 0:
            raise ValueError(f"job {name}: the interval must be positive, not {every_s}")
        if name in self._jobs:
            raise ValueError(f"a job named {name} is already scheduled")
        job = ScheduledJob(
            name=name,
            every_s=every_s,
            run_at_start=run_at_start,
            function=function,
            lock_name=lock_name or name,
        )
        # The first due time is fixed now, not when the task first runs: the clock may move
        # in between (a test's ManualClock.advance does).
        first_due = self.clock.monotonic() + (0.0 if run_at_start else every_s)
        job.task = asyncio.create_task(self._loop(job, first_due), name=f"job-{name}")
        self._jobs[name] = job
        return job

    def job(self, name: str) -> ScheduledJob | None:
        return self._jobs.get(name)

    async def remove(self, name: str) -> None:
        """Stop a job (a run in progress is cancelled) and forget it; unknown names are fine."""
        job = self._jobs.pop(name, None)
        if job is not None and job.task is not None:
            await stop_tasks([job.task])

    async def stop(self) -> None:
        for name in list(self._jobs):
            await self.remove(name)

    async def _loop(self, job: ScheduledJob, due: float) -> None:
        while True:
            await self.clock.sleep(due - self.clock.monotonic())
            await self._run_once(job)
            due = next_due(due, job.every_s, self.clock.monotonic())

    async def _run_once(self, job: ScheduledJob) -> None:
        try:
            async with self._exclusive(f"job:{job.lock_name}") as mine:
                if not mine:
                    job.skipped += 1
                    log.info("scheduled job %s skipped: another instance is running it", job.name)
                    return
                job.runs += 1
                await job.function()
        except Exception:
            job.failures += 1
            log.exception(
                "scheduled job %s failed (run %d); it stays scheduled", job.name, job.runs
            )
