"""The JIRA sync: a full sync per project, then incremental ones (docs/design.md, "Syncs JIRA").

A project's scope is `project = "KEY"`, narrowed by JIRA_JQL when that is set (bot/jira/
scope.py). The first run (or one a day, or after JIRA_JQL changed) is full: every issue, then
the mirrored issues Jira did not return are checked by id and those really gone are deleted
(bot/jira/deletions.py). Later runs ask only for `updated >= <watermark epoch ms> - lookback`:
epoch milliseconds, never a zone-less JQL date, which Jira reads in the account's timezone at
minute precision. The lookback is the overlap (a minute) or the last run's length if longer,
so a change made while a run was paging is seen by the next one; the boundary set of (issue
id, updated) already stored inside that window is skipped, so the overlap stores nothing
twice. Pages are ordered by key, which an update does not move, so offset paging cannot skip
an issue that changes mid-run. After the incremental search, one count compares Jira with the
mirror; a difference (a deletion, say) triggers an id sweep that repairs it.

Every run is a row in sync_status (bot/jira/runs.py); progress goes out as `sync_progress`, the
end as `sync_complete` or `sync_error`, changed tickets as `tickets_updated` (a page,
bot/jira/mirror.py) or `ticket_updated` (one, from a webhook: bot/jira/refresh.py). A run that
cannot start (the project list fails, or a project's start) is a failed row too. A lease per
project keeps two syncs of it apart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import timedelta

from bot.clock import Clock
from bot.events.bus import EventBus
from bot.jira.client import JiraClient
from bot.jira.deletions import DeletionCheck
from bot.jira.mirror import PAGE_SIZE, MirrorWriter
from bot.jira.refresh import IssueRefresher
from bot.jira.runs import (
    ProgressCallback,
    ProjectLeases,
    RunLog,
    SyncAlreadyRunning,
    SyncJob,
    SyncResult,
    Tally,
)
from bot.jira.scope import (
    ALL_PROJECTS,
    is_project_key,
    jql_filter_of,
    project_scope,
    projects_named_in,
)
from storage import jira_sync, tickets
from storage.database import Database
from storage.jira_sync import SyncCursor, SyncKind
from storage.timestamps import from_text

__all__ = [
    "ALL_PROJECTS",
    "PAGE_SIZE",
    "JiraSync",
    "SyncAlreadyRunning",
    "SyncJob",
    "SyncResult",
    "is_project_key",
]

log = logging.getLogger(__name__)

OVERLAP_MS = 60_000
FULL_SYNC_EVERY = timedelta(hours=24)


class JiraSync:
    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        clock: Clock,
        client: JiraClient,
        jql_filter: str | None = None,
        page_size: int = PAGE_SIZE,
        overlap_ms: int = OVERLAP_MS,
        holder: str | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.client = client
        self.jql_filter = jql_filter_of(jql_filter)
        self.overlap_ms = overlap_ms
        # the server's instance id (BIAGENT_INSTANCE_ID; bot/claims.py), else one of its own
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leases = ProjectLeases(db=db, clock=clock, holder=self.holder)
        self.runs = RunLog(db=db, bus=bus, clock=clock)
        self.writer = MirrorWriter(
            db=db, bus=bus, clock=clock, client=client, leases=self.leases, page_size=page_size
        )
        self.deletions = DeletionCheck(db=db, bus=bus, client=client, writer=self.writer)
        self.refresher = IssueRefresher(
            db=db,
            bus=bus,
            clock=clock,
            client=client,
            writer=self.writer,
            jql_filter=self.jql_filter,
        )

    # -- scope -----------------------------------------------------------------------------

    def scope_jql(self, project: str) -> str:
        return project_scope(project, self.jql_filter)

    async def projects(self) -> list[str]:
        """The projects the scheduled sync covers: named in JIRA_JQL, or all visible ones."""
        named = projects_named_in(self.jql_filter)
        if named is not None:
            return named
        return await self.client.project_keys()

    # -- runs ------------------------------------------------------------------------------

    async def begin(
        self,
        project: str,
        *,
        trigger: str,
        full: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> SyncJob:
        """Take the project's lease and record the run; raises SyncAlreadyRunning."""
        project = project.upper()
        if not is_project_key(project):
            raise ValueError(f"not a Jira project key: {project!r}")
        await self.leases.take(project)
        try:
            jql = self.scope_jql(project)
            cursor = await jira_sync.get_cursor(self.db, project)
            kind = SyncKind.FULL if full or self._needs_full(cursor, jql) else SyncKind.INCREMENTAL
            run_id = await self.runs.start(project, kind=kind, trigger=trigger, holder=self.holder)
        except BaseException:
            await self.leases.release(project)
            raise
        return SyncJob(self, project, kind, trigger, run_id, jql, cursor, on_progress)

    def _needs_full(self, cursor: SyncCursor | None, jql: str) -> bool:
        """No run yet, a changed scope, or a day since the last full run."""
        if cursor is None or cursor.jql != jql:
            return True
        return self.clock.now() - from_text(cursor.full_synced_at) > FULL_SYNC_EVERY

    async def sync_project(
        self,
        project: str,
        *,
        trigger: str,
        full: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> SyncResult:
        job = await self.begin(project, trigger=trigger, full=full, on_progress=on_progress)
        return await job.run()

    async def sync_all(self, *, trigger: str) -> list[SyncResult]:
        """Every project in scope, one after the other; a busy or failing one is skipped.

        Whatever fails (Jira, the database, a bug) fails that project alone, recorded in
        sync_status and published as `sync_error`; the others still run.
        """
        results = []
        try:
            projects = await self.projects()
        except Exception as error:
            await self.record_failure(
                ALL_PROJECTS,
                kind=SyncKind.PROJECTS,
                trigger=trigger,
                error=f"cannot list projects: {error}",
            )
            return []
        for project in projects:
            try:
                job = await self.begin(project, trigger=trigger)
            except SyncAlreadyRunning:
                log.info("JIRA sync of %s skipped: one is already running", project)
                continue
            except Exception as error:
                await self.record_failure(
                    project, kind=SyncKind.START, trigger=trigger, error=f"cannot start: {error}"
                )
                continue
            try:
                results.append(await job.run())
            except Exception as error:  # already recorded and published by the run
                log.debug("JIRA sync of %s failed: %s", project, error)
        return results

    async def record_failure(
        self, project: str, *, kind: SyncKind | str, trigger: str, error: str
    ) -> None:
        """A run that failed before it could start: a failed sync_status row and `sync_error`.

        `kind` is SyncKind.PROJECTS or SyncKind.START (its text is accepted too).
        """
        kind = SyncKind(kind)
        log.error("JIRA sync of %s (%s) failed: %s", project, trigger, error)
        try:
            run_id = await self.runs.start(project, kind=kind, trigger=trigger)
            await self.runs.fail(project, run_id, kind, error)
        except Exception:
            log.exception("JIRA sync of %s: cannot record the failure", project)

    async def abandon_job(self, job: SyncJob, reason: str) -> None:
        try:
            await self.runs.fail(job.project, job.run_id, job.kind, reason)
        finally:
            await self.leases.release(job.project)

    async def run_job(self, job: SyncJob) -> SyncResult:
        """Run a begun job: sync, advance the cursor, record and announce how it ended."""
        started = self.clock.monotonic()
        requests_before = self.client.requests_made
        tally = Tally()
        log.info("JIRA sync of %s (%s, run %d) started", job.project, job.kind, job.run_id)
        try:
            await self._sync(job, tally, started)
        except BaseException as error:
            message = str(error) or type(error).__name__
            if isinstance(error, asyncio.CancelledError):
                message = "cancelled"
            requests = self.client.requests_made - requests_before
            await self.runs.fail(
                job.project, job.run_id, job.kind, message, tally=tally, requests=requests
            )
            log.error("JIRA sync of %s (run %d) failed: %s", job.project, job.run_id, message)
            raise
        finally:
            await self.leases.release(job.project)
        result = await self.runs.complete(
            job,
            tally,
            requests=self.client.requests_made - requests_before,
            duration_s=self.clock.monotonic() - started,
        )
        log.info(
            "JIRA sync of %s (run %d) complete: %d seen, %d created, %d updated, %d deleted,"
            " %d requests, %.2fs",
            job.project,
            job.run_id,
            result.seen,
            result.created,
            result.updated,
            result.deleted,
            result.requests,
            result.duration_s,
        )
        return result

    async def _sync(self, job: SyncJob, tally: Tally, started: float) -> None:
        """The run's work, then the cursor the next incremental run starts from."""
        full = job.kind is SyncKind.FULL or job.cursor is None
        if job.cursor is not None and not full:
            await self._incremental(job, job.cursor, tally)
        else:
            await self._full(job, tally)
        duration_ms = int((self.clock.monotonic() - started) * 1000)
        previous = job.cursor.high_water_ms if job.cursor and not full else 0
        await jira_sync.save_cursor(
            self.db,
            project=job.project,
            jql=job.jql,
            high_water_ms=max(previous, tally.max_updated_ms or 0),
            lookback_ms=max(self.overlap_ms, duration_ms + 1000),
            full=full,
            now=self.clock.now(),
        )

    # -- the two kinds ---------------------------------------------------------------------

    async def _full(self, job: SyncJob, tally: Tally) -> None:
        # Only for the progress total (Server's pages carry it): None when Cloud cannot count.
        total = await self.client.count(job.jql) if self.client.is_cloud else None
        await self.writer.page_through(job, f"{job.jql} ORDER BY key ASC", tally, set(), total)
        mirrored = await tickets.ids_of_project(self.db, job.project)
        missing = [issue_id for issue_id in mirrored if issue_id not in tally.seen_ids]
        await self.deletions.verify_missing(job, missing, tally)

    async def _incremental(self, job: SyncJob, cursor: SyncCursor, tally: Tally) -> None:
        since_ms = cursor.high_water_ms - cursor.lookback_ms
        boundary = await jira_sync.boundary_of(self.db, job.project)
        jql = f"{job.jql} AND updated >= {since_ms} ORDER BY key ASC"
        await self.writer.page_through(job, jql, tally, boundary, None)
        remote = await self.client.count(job.jql)
        remote_ids = None
        if remote is None:
            # No count from Jira (Cloud without approximate-count): the id listing is the count.
            remote_ids = await self.client.issue_ids(f"{job.jql} ORDER BY key ASC")
            remote = len(remote_ids)
        local = await tickets.count_of_project(self.db, job.project)
        if remote != local:
            log.info(
                "JIRA sync of %s: Jira counts %d issues, the mirror %d; sweeping ids",
                job.project,
                remote,
                local,
            )
            await self.deletions.sweep_ids(job, tally, remote_ids)

    # -- one issue (webhooks) --------------------------------------------------------------

    async def refresh_issue(self, issue_id: str) -> str | None:
        """Bring one issue up to date now (a webhook said it changed); returns its key."""
        return await self.refresher.refresh_issue(issue_id)

    async def forget_issue(self, issue_id: str) -> str | None:
        """Delete one issue from the mirror (a webhook said it was deleted)."""
        return await self.refresher.forget_issue(issue_id)
