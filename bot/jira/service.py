"""The JIRA service the app factory builds when JIRA_URL is set: client, sync, schedule.

The scheduled sync is a job on the app's one `Scheduler` (bot/scheduling.py), every
JIRA_SYNC_INTERVAL (never two at once, missed runs coalesced), first at start-up unless
JIRA_SYNC_AT_START=0. It used to run under APScheduler, which reads the wall clock and cannot
take the injected one. Manual syncs from the API start here too (`start_manual_sync`), as
background tasks the service cancels on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from bot.clock import Clock
from bot.config import ConfigError, Settings
from bot.events.bus import EventBus
from bot.jira.client import JiraClient, JiraError
from bot.jira.sync import ALL_PROJECTS, JiraSync, SyncAlreadyRunning, SyncJob, SyncResult
from bot.scheduling import Scheduler
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


@dataclass(frozen=True, slots=True)
class ManualSync:
    """What a manual sync request did: the runs it started (their results, when it waited for
    them) and the projects it skipped because they were syncing already."""

    runs: list[dict[str, Any]]
    skipped: list[str]
    waited: bool


async def _result_of(job: SyncJob) -> dict[str, Any]:
    try:
        return (await job.run()).as_json()
    except Exception as error:  # recorded in sync_status and published by the run
        message = str(error) or type(error).__name__
        return {"project": job.project, "run_id": job.run_id, "error": message}


class JiraService:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        bus: EventBus,
        clock: Clock,
        scheduler: Scheduler | None = None,
        client: JiraClient | None = None,
        attachment_max_bytes: int = ATTACHMENT_MAX_BYTES,
        instance: str | None = None,
    ) -> None:
        self.settings = settings
        self.client = client or client_from_settings(settings, clock)
        self.sync = JiraSync(
            db=db,
            bus=bus,
            clock=clock,
            client=self.client,
            jql_filter=settings.jira_jql,
            holder=instance,
        )
        self.db = db
        self.clock = clock
        self.attachment_max_bytes = attachment_max_bytes
        self.scheduler = scheduler
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, *, schedule: bool = True, sync_at_start: bool = True) -> None:
        """Fail the runs a stop interrupted, then schedule the sync (when there is a scheduler
        and `schedule`): at once when `sync_at_start`, else one interval in."""
        failed = await jira_sync.fail_abandoned_runs(self.db, now=self.clock.now())
        if failed:
            log.info("marked %d JIRA sync runs interrupted by the last stop as failed", failed)
        if not schedule or self.scheduler is None:
            return
        self.scheduler.add(
            SYNC_JOB_ID,
            self.scheduled_sync,
            every_s=self.settings.jira_sync_interval,
            run_at_start=sync_at_start,
        )

    async def scheduled_sync(self) -> list[SyncResult]:
        try:
            # Owned by the service, so shutting down cancels a sync in progress.
            return await self.spawn(self.sync.sync_all(trigger="schedule"), "jira-scheduled-sync")
        except Exception:
            log.exception("scheduled JIRA sync failed")
            return []

    async def start_manual_sync(
        self, project: str | None, *, full: bool = False, wait: bool = False
    ) -> ManualSync:
        """Begin a sync of `project` (else of every project in scope) and run it in the
        background, or here when `wait`. Raises JiraError when the projects cannot be listed,
        SyncAlreadyRunning when the one project asked for is syncing, ValueError for a name
        that is no project key; projects of "every" that are syncing already are skipped."""
        projects = [project] if project else await self._projects_in_scope()
        started: list[SyncJob] = []
        skipped: list[str] = []
        try:
            for name in projects:
                try:
                    started.append(await self.sync.begin(name, trigger="manual", full=full))
                except SyncAlreadyRunning:
                    if project:
                        raise
                    skipped.append(name)
            if wait:
                results = [await _result_of(job) for job in started]
                return ManualSync(runs=results, skipped=skipped, waited=True)
            for job in started:
                self.spawn(job.run(), f"jira-sync-{job.project}-{job.run_id}")
                job.started = True  # the task owns it now: it runs, or the service cancels it
        finally:
            # Whatever ended this early, no begun job may keep its project "running".
            for job in started:
                await job.abandon("not run: the request that started it ended first")
        begun = [
            {"project": job.project, "run_id": job.run_id, "kind": job.kind} for job in started
        ]
        return ManualSync(runs=begun, skipped=skipped, waited=False)

    async def _projects_in_scope(self) -> list[str]:
        try:
            return await self.sync.projects()
        except JiraError as error:
            await self.sync.record_failure(
                ALL_PROJECTS,
                kind="projects",
                trigger="manual",
                error=f"cannot list projects: {error}",
            )
            raise

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
        if self.scheduler is not None:
            await self.scheduler.remove(SYNC_JOB_ID)
        for task in tuple(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.client.close()
