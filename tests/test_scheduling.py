"""The periodic-job scheduler on a ManualClock: interval, no overlap, coalescing, errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bot.clock import ManualClock
from bot.scheduling import Scheduler, next_due
from tests.conftest import OpenDatabase


class Recorder:
    """A job that records the clock time of each run and signals each one."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.started_at: list[float] = []
        self.ran = asyncio.Event()

    async def __call__(self) -> None:
        self.started_at.append(self.clock.monotonic())
        self.ran.set()

    async def next_run(self) -> None:
        await asyncio.wait_for(self.ran.wait(), 5)
        self.ran.clear()


@pytest.fixture
async def scheduler(manual_clock: ManualClock) -> AsyncIterator[Scheduler]:
    made = Scheduler(manual_clock)
    yield made
    await made.stop()


def test_the_next_run_is_one_interval_after_the_last_due_time() -> None:
    assert next_due(100.0, 10.0, now=100.0) == 110.0
    assert next_due(100.0, 10.0, now=104.0) == 110.0


def test_runs_missed_while_one_was_slow_are_coalesced() -> None:
    assert next_due(100.0, 10.0, now=135.0) == 140.0
    assert next_due(100.0, 10.0, now=130.0) == 140.0


async def test_a_job_runs_at_its_interval(scheduler: Scheduler, manual_clock: ManualClock) -> None:
    job = Recorder(manual_clock)
    scheduler.add("tick", job, every_s=60.0)
    await manual_clock.advance(59.0)
    assert job.started_at == []
    await manual_clock.advance(1.0)
    await job.next_run()
    await manual_clock.advance(60.0)
    await job.next_run()
    assert job.started_at == [60.0, 120.0]


async def test_a_job_that_runs_at_start_runs_at_once(
    scheduler: Scheduler, manual_clock: ManualClock
) -> None:
    job = Recorder(manual_clock)
    scheduler.add("tick", job, every_s=60.0, run_at_start=True)
    await job.next_run()
    assert job.started_at == [0.0]


async def test_a_slow_job_is_not_started_twice(
    scheduler: Scheduler, manual_clock: ManualClock
) -> None:
    entered, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()
    starts: list[float] = []

    async def slow() -> None:
        starts.append(manual_clock.monotonic())
        entered.set()
        await release.wait()
        finished.set()

    scheduler.add("slow", slow, every_s=10.0, run_at_start=True)
    await asyncio.wait_for(entered.wait(), 5)
    for _ in range(5):
        await manual_clock.advance(10.0)  # four more due times pass while the first run works
    assert starts == [0.0]
    entered.clear()
    release.set()
    await asyncio.wait_for(finished.wait(), 5)
    await manual_clock.advance(10.0)
    await asyncio.wait_for(entered.wait(), 5)
    assert starts == [0.0, 60.0]  # one run for the missed ones, on the job's grid


async def test_an_error_is_logged_and_the_job_keeps_running(
    scheduler: Scheduler, manual_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    job = Recorder(manual_clock)

    async def fails_first() -> None:
        await job()
        if len(job.started_at) == 1:
            raise RuntimeError("the first run breaks")

    scheduled = scheduler.add("flaky", fails_first, every_s=30.0, run_at_start=True)
    await job.next_run()
    await manual_clock.advance(30.0)
    await job.next_run()
    assert job.started_at == [0.0, 30.0]
    assert scheduled.failures == 1
    assert "scheduled job flaky failed" in caplog.text


async def test_a_removed_job_does_not_run_again(
    scheduler: Scheduler, manual_clock: ManualClock
) -> None:
    job = Recorder(manual_clock)
    scheduler.add("tick", job, every_s=10.0, run_at_start=True)
    await job.next_run()
    await scheduler.remove("tick")
    await manual_clock.advance(30.0)
    assert job.started_at == [0.0]
    assert scheduler.job("tick") is None


async def test_a_name_is_scheduled_once(scheduler: Scheduler, manual_clock: ManualClock) -> None:
    scheduler.add("tick", Recorder(manual_clock), every_s=10.0)
    with pytest.raises(ValueError, match="already scheduled"):
        scheduler.add("tick", Recorder(manual_clock), every_s=10.0)


@pytest.mark.both_databases
async def test_two_instances_on_one_database_run_a_job_one_at_a_time(
    database_engine: str, open_database: OpenDatabase, manual_clock: ManualClock
) -> None:
    """Two schedulers on two connections to one database (two instances): while one runs the
    job, the other's run is skipped, and its next run, after the first is done, goes ahead.
    On SQLite (one process per file) every run is the process's own."""
    first, second = await open_database(), await open_database()
    running, release = asyncio.Event(), asyncio.Event()
    answers: list[bool] = []
    answered, left, unlocked = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def long_job() -> None:
        running.set()
        await release.wait()

    @contextlib.asynccontextmanager
    async def watched(name: str) -> AsyncIterator[bool]:
        async with second.exclusive(name) as mine:
            answers.append(mine)
            answered.set()
            yield mine
        # the scheduler goes on to sleep until its next run without pausing: once this is
        # seen, advancing the clock reaches that sleep
        left.set()

    @contextlib.asynccontextmanager
    async def holding(name: str) -> AsyncIterator[bool]:
        async with first.exclusive(name) as mine:
            yield mine
        unlocked.set()  # the first instance's lock is given back

    one = Scheduler(manual_clock, exclusive=holding)
    other = Scheduler(manual_clock, exclusive=watched)
    try:
        one.add("sweep", long_job, every_s=3600.0, run_at_start=True)
        await asyncio.wait_for(running.wait(), 5)
        later = Recorder(manual_clock)
        job = other.add("sweep", later, every_s=60.0, run_at_start=True)
        await asyncio.wait_for(answered.wait(), 5)
        if database_engine == "postgresql":
            assert (answers, job.skipped, job.runs) == ([False], 1, 0)
            release.set()
            await asyncio.wait_for(asyncio.gather(unlocked.wait(), left.wait()), 5)
            await manual_clock.advance(60.0)
        await later.next_run()
        assert answers[-1] is True and job.runs == 1
    finally:
        release.set()
        await one.stop()
        await other.stop()
