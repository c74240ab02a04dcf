"""A JIRA sync run's bookkeeping: its job, its tally, its lease and its sync_status row.

`ProjectLeases` keeps two syncs of one project apart (within this process and, through the
lease row, across processes: the server and the CLI share the database). `RunLog` records a
run in sync_status and announces its end as `sync_complete` or `sync_error`. A `SyncJob` is a
begun run (lease held, row written) that the sync (bot/jira/sync.py) runs or abandons.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from bot.clock import Clock
from bot.events.bus import EventBus
from bot.jira.events import SyncComplete, SyncError
from bot.jira.scope import stream_of
from storage import jira_sync
from storage.database import Database
from storage.jira_sync import RunStatus, SyncCursor, SyncKind

log = logging.getLogger(__name__)

LEASE_TTL_S = 300.0

ProgressCallback = Callable[[int, int | None], None]


class SyncAlreadyRunning(Exception):
    """Another sync of this project holds its lease."""

    def __init__(self, project: str, holder: str | None) -> None:
        super().__init__(f"a sync of {project} is already running")
        self.project = project
        self.holder = holder


@dataclass(frozen=True, slots=True)
class SyncResult:
    run_id: int
    project: str
    kind: SyncKind
    seen: int
    created: int
    updated: int
    deleted: int
    requests: int
    duration_s: float

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "project": self.project,
            "kind": self.kind,
            "seen": self.seen,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class Tally:
    """What a run has done so far."""

    seen: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    max_updated_ms: int | None = None
    seen_ids: set[str] = field(default_factory=set)


class JobState(StrEnum):
    """Where a begun sync job is."""

    BEGUN = "begun"  # lease held and row written; nothing owns it yet
    RUNNING = "running"  # run, or handed to a task that runs it (or cancels it on shutdown)
    ABANDONED = "abandoned"  # given up before it ran: row failed, lease freed


class JobRunner(Protocol):
    async def run_job(self, job: SyncJob) -> SyncResult: ...

    async def abandon_job(self, job: SyncJob, reason: str) -> None: ...


@dataclass
class SyncJob:
    """A started sync: its lease is held and its sync_status row exists; `run()` does it."""

    runner: JobRunner
    project: str
    kind: SyncKind
    trigger: str
    run_id: int
    jql: str
    cursor: SyncCursor | None
    on_progress: ProgressCallback | None = None
    state: JobState = JobState.BEGUN

    @property
    def started(self) -> bool:
        """Whether something owns the job now (it runs, or its task will run or cancel it)."""
        return self.state is not JobState.BEGUN

    @started.setter
    def started(self, value: bool) -> None:
        if value and self.state is JobState.BEGUN:
            self.state = JobState.RUNNING

    async def run(self) -> SyncResult:
        self.state = JobState.RUNNING
        return await self.runner.run_job(self)

    async def abandon(self, reason: str) -> None:
        """Give up a job that will never run: its row fails, its lease and slot are freed."""
        if self.state is JobState.BEGUN:
            self.state = JobState.ABANDONED
            await self.runner.abandon_job(self, reason)


class ProjectLeases:
    """Who may sync a project now: one run per project, in this process and across them."""

    def __init__(self, *, db: Database, clock: Clock, holder: str) -> None:
        self.db = db
        self.clock = clock
        self.holder = holder
        self._running: set[str] = set()  # the lease is per process; this is per instance

    async def take(self, project: str) -> None:
        """Hold the project's lease; raises SyncAlreadyRunning when a sync of it runs."""
        if project in self._running:
            raise SyncAlreadyRunning(project, self.holder)
        self._running.add(project)  # before any await: two callers here cannot both pass
        try:
            now = self.clock.now()
            acquired = await jira_sync.acquire_lease(
                self.db, project, holder=self.holder, now=now, ttl_s=LEASE_TTL_S
            )
            if not acquired:
                holder = await jira_sync.lease_holder(self.db, project, now=now)
                raise SyncAlreadyRunning(project, holder)
        except BaseException:
            self._running.discard(project)
            raise

    async def renew(self, project: str) -> None:
        """Push the lease's expiry on (a long run renews it with every page)."""
        await jira_sync.acquire_lease(
            self.db, project, holder=self.holder, now=self.clock.now(), ttl_s=LEASE_TTL_S
        )

    async def release(self, project: str) -> None:
        self._running.discard(project)
        await jira_sync.release_lease(self.db, project, holder=self.holder)


class RunLog:
    """Runs in sync_status, and the events that announce how they ended."""

    def __init__(self, *, db: Database, bus: EventBus, clock: Clock) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock

    async def start(
        self, project: str, *, kind: SyncKind, trigger: str, holder: str | None = None
    ) -> int:
        """Record a new run of `project`. With `holder`, who has just taken the project's
        lease: a run still `running` there was left by a process that stopped (its lease
        lapsed), and fails."""
        if holder is not None:
            await jira_sync.fail_abandoned_runs(
                self.db, now=self.clock.now(), project=project, holder=holder
            )
        return await jira_sync.start_run(
            self.db, project=project, kind=kind, trigger=trigger, now=self.clock.now()
        )

    async def fail(
        self,
        project: str,
        run_id: int,
        kind: SyncKind,
        error: str,
        *,
        tally: Tally | None = None,
        requests: int = 0,
    ) -> None:
        """The run's row failed with `error` (with what it did, if anything), and `sync_error`."""
        await self._finish(run_id, RunStatus.FAILED, tally or Tally(), requests, error)
        await self.bus.publish(
            stream_of(project), SyncError(project=project, error=error, run_id=run_id, kind=kind)
        )

    async def complete(
        self, job: SyncJob, tally: Tally, *, requests: int, duration_s: float
    ) -> SyncResult:
        """The run's row complete with its counts, and `sync_complete`."""
        await self._finish(job.run_id, RunStatus.COMPLETE, tally, requests, None)
        await self.bus.publish(
            stream_of(job.project),
            SyncComplete(
                project=job.project,
                created=tally.created,
                updated=tally.updated,
                deleted=tally.deleted,
                duration_s=round(duration_s, 3),
                run_id=job.run_id,
                kind=job.kind,
                seen=tally.seen,
                requests=requests,
            ),
        )
        return SyncResult(
            job.run_id,
            job.project,
            job.kind,
            tally.seen,
            tally.created,
            tally.updated,
            tally.deleted,
            requests,
            duration_s,
        )

    async def _finish(
        self, run_id: int, status: RunStatus, tally: Tally, requests: int, error: str | None
    ) -> None:
        await jira_sync.finish_run(
            self.db,
            run_id,
            status=status,
            seen=tally.seen,
            created=tally.created,
            updated=tally.updated,
            deleted=tally.deleted,
            requests=requests,
            error=error,
            now=self.clock.now(),
        )
