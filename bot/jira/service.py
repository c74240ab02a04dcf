"""The JIRA service the app factory builds when JIRA_URL is set: client, sync, schedule.

The scheduled sync runs under apscheduler every JIRA_SYNC_INTERVAL (one job, never two at
once, missed runs coalesced), first at start-up. Manual syncs from the API start here too, as
background tasks the service cancels on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.clock import Clock
from bot.config import ConfigError, Settings
from bot.events.bus import EventBus
from bot.jira.client import JiraClient
from bot.jira.sync import JiraSync, SyncResult
from storage import jira_sync
from storage.database import Database

log = logging.getLogger(__name__)

ATTACHMENT_MAX_BYTES = 100 * 1024 * 1024
SYNC_JOB_ID = "jira-sync"


def client_from_settings(settings: Settings, clock: Clock) -> JiraClient:
    """The JIRA client the settings describe; ConfigError when JIRA is not configured."""
    if not settings.jira_url or settings.jira_api_token is None:
        raise ConfigError(["JIRA_URL and JIRA_API_TOKEN are needed"])
    return JiraClient(
        url=settings.jira_url,
        email=settings.jira_email,
        api_token=settings.jira_api_token,
        clock=clock,
    )


class JiraService:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        bus: EventBus,
        clock: Clock,
        client: JiraClient | None = None,
        attachment_max_bytes: int = ATTACHMENT_MAX_BYTES,
    ) -> None:
        self.settings = settings
        self.client = client or client_from_settings(settings, clock)
        self.sync = JiraSync(
            db=db, bus=bus, clock=clock, client=self.client, jql_filter=settings.jira_jql
        )
        self.db = db
        self.clock = clock
        self.attachment_max_bytes = attachment_max_bytes
        self.scheduler: AsyncIOScheduler | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, *, schedule: bool = True, sync_at_start: bool = True) -> None:
        failed = await jira_sync.fail_abandoned_runs(self.db, now=self.clock.now())
        if failed:
            log.info("marked %d JIRA sync runs interrupted by the last stop as failed", failed)
        if not schedule:
            return
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.scheduler.add_job(
            self.scheduled_sync,
            IntervalTrigger(seconds=self.settings.jira_sync_interval, timezone=UTC),
            id=SYNC_JOB_ID,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC) if sync_at_start else None,
        )
        if not sync_at_start:
            # add_job with next_run_time=None would pause the job; schedule it normally instead.
            job = self.scheduler.get_job(SYNC_JOB_ID)
            assert job is not None
            job.resume()
        self.scheduler.start()

    async def scheduled_sync(self) -> list[SyncResult]:
        try:
            # Owned by the service, so shutting down cancels a sync in progress.
            return await self.spawn(self.sync.sync_all(trigger="schedule"), "jira-scheduled-sync")
        except Exception:
            log.exception("scheduled JIRA sync failed")
            return []

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a background job (a manual sync) owned by the service."""
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("%s ended with an error: %s", task.get_name(), task.exception())

    async def close(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for task in tuple(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.client.close()
