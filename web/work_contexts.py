"""The composition root's background-work contexts (web/composition.py lists them all, in
order): the dispatcher, housekeeping, the review scheduler at work and the JIRA sync. Each runs
only where the instance's role works (bot/roles.py); a web instance keeps its intake alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from bot import routers
from bot.dispatcher import IDLE_POLL_S, Dispatcher
from bot.housekeeping import PRUNE_EVERY_S, Housekeeping
from bot.intake import DeliveryIntake
from bot.tasks import SHUTDOWN_GRACE_S, stop_tasks
from web.keys import (
    BUS,
    CLOCK,
    DB,
    DISPATCHER,
    GITHUB_CONNECTION,
    INTAKE,
    JIRA,
    REVIEW_SCHEDULER,
    SCHEDULER,
    SERVICES,
    SESSIONS,
    SETTINGS,
)

HOUSEKEEPING_JOB = "housekeeping"


async def stop_at_shutdown(task: asyncio.Task[None]) -> None:
    """Stop a background task at shutdown; an error it ended with is logged, not raised, so
    the contexts opened before it still close. The grace is longer than the one the task
    gives its own children (the dispatcher's handlers, the review runs), so they stop first."""
    await stop_tasks([task], grace_s=SHUTDOWN_GRACE_S + 5.0)


def idle_poll_s(app: web.Application) -> float | None:
    """How long a worker's loops wait without a wake-up before looking for work again: on a
    worker the work is written by web instances, whose doorbells cannot reach it (None: the
    loops' own idle interval)."""
    settings = app[SETTINGS]
    return settings.worker_poll_interval if settings.role.polls_for_work else None


def _no_one() -> None:
    """A web instance's doorbell: the workers find the work by polling (bot/roles.py)."""


async def dispatcher(app: web.Application) -> AsyncIterator[None]:
    """DISPATCHER and INTAKE: deliveries a stop left in flight recovered, then worked in the
    background; the intake that stores new ones and wakes the dispatcher. A web instance has
    the intake alone: its deliveries are worked by the workers."""
    settings = app[SETTINGS]
    if not settings.role.works:
        app[INTAKE] = DeliveryIntake(db=app[DB], clock=app[CLOCK], wake=_no_one)
        yield
        return
    working = Dispatcher(
        app[SERVICES],
        routers.concerns(),
        concurrency=settings.dispatch_concurrency,
        max_attempts=settings.delivery_max_attempts,
        idle_poll_s=idle_poll_s(app) or IDLE_POLL_S,
    )
    app[DISPATCHER] = working
    app[INTAKE] = DeliveryIntake(db=app[DB], clock=app[CLOCK], wake=working.wake)
    await working.recover()
    task = asyncio.create_task(working.run(), name="dispatcher")
    try:
        yield
    finally:
        await stop_at_shutdown(task)


async def housekeeping(app: web.Application) -> AsyncIterator[None]:
    """The pruning of the event log, the token buffer and the sessions, on the scheduler
    (where jobs run: not on a web instance)."""
    if not app[SETTINGS].role.works:
        yield
        return
    pruning = Housekeeping(
        db=app[DB],
        bus=app[BUS],
        clock=app[CLOCK],
        events_kept=app[SETTINGS].events_kept,
        sessions=app[SESSIONS],
    )
    app[SCHEDULER].add(HOUSEKEEPING_JOB, pruning.prune, every_s=PRUNE_EVERY_S)
    try:
        yield
    finally:
        await app[SCHEDULER].remove(HOUSEKEEPING_JOB)


async def review_batches(app: web.Application) -> AsyncIterator[None]:
    """The review scheduler at work once the GitHub App is there (at start-up, or when the
    manifest flow connects it): batches a stop interrupted resumed, due ones fired."""
    review_scheduler, connection = app[REVIEW_SCHEDULER], app[GITHUB_CONNECTION]
    started: list[asyncio.Task[None]] = []
    if not app[SETTINGS].role.works:
        yield
        return

    async def work() -> None:
        await review_scheduler.recover()
        await review_scheduler.run()

    def start() -> None:
        started.append(asyncio.create_task(work(), name="review-scheduler"))

    if connection.app is not None:
        await review_scheduler.recover()
        started.append(asyncio.create_task(review_scheduler.run(), name="review-scheduler"))
    else:
        connection.on_connect(start)
    try:
        yield
    finally:
        connection.forget(start)
        for task in started:
            await stop_at_shutdown(task)


async def jira_sync(app: web.Application) -> AsyncIterator[None]:
    """Runs a stop interrupted marked failed; the scheduled sync registered (at once unless
    JIRA_SYNC_AT_START=0). JiraService.close, in the jira context, unschedules it."""
    service = app.get(JIRA)
    if service is not None and app[SETTINGS].role.works:
        await service.start(sync_at_start=app[SETTINGS].jira_sync_at_start)
    yield
